/**
 * What src/bin/hub-mqtt.ts loads after `--version`: the three names it calls, and nothing else (see hub-loaded.ts:
 * esbuild keeps every export of a dynamically imported module, so each of main.ts, cli/keys.ts and mqtt/index.ts
 * imported that way was bundled whole; re-exported from here they are tree-shaken, 3.1 KB out of dist/hub-mqtt.js).
 */

export { keygen } from '../cli/keys.js';
export { runHubProcess } from '../device/main.js';
export { mqttSettings } from '../device/mqtt-settings.js';
export { mqttBus } from '../mqtt/index.js';
