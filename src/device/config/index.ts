/**
 * The hub's configuration file (`node hub.js --config /etc/ebadge/hub.json`): read once at start, checked whole,
 * and returned with every default filled in, so that the rest of the hub never asks "was this given?".
 *
 * A hub runs unattended on a Raspberry Pi, so a mistake must stop it at start with a message that says where and
 * what, rather than surface hours later as a device that never reports:
 *
 *   hub.json: $.devices[1].meter.kind: expected one of "simulated", "csv", "command", "file", found "modbus"
 *
 * Unknown keys are errors everywhere (a typo such as "peer" for "peers" would otherwise be a silently ignored
 * setting), and so is a key written twice (JSON.parse would keep the last one without a word). The file holds no
 * secrets: the broker password lives in its own file (broker.passwordFile), and a password written into the URL
 * is refused without ever being quoted. loadConfig also makes the file's relative paths absolute against its own
 * folder and checks the files it names the way the run will read them (load.ts).
 */
export { exampleConfig } from './example.js';
export { checkPeerKeys } from './keys.js';
export { loadConfig, readPasswordFile } from './load.js';
export { parseConfig } from './parse.js';
export * from './types.js';
