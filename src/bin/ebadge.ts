/** The entry of dist/ebadge.js: the CLI, with the MQTT bus for mqtt:// URLs, loaded only when one is used. */

import { useMqtt } from '../cli/bus.js';
import { run } from '../cli.js';

useMqtt(async () => (await import('../mqtt/index.js')).mqttBus);
run();
