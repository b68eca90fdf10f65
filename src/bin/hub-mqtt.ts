/**
 * The entry of dist/hub-mqtt.js: the same hub as dist/hub.js (same config, `--version`, `check-config`, `keygen`),
 * with the MQTT bus (src/mqtt, MQTT.js) for an mqtt:// or mqtts:// broker.url. A file of its own, so that the AMQP
 * hub, dist/hub.js, carries not a byte of MQTT.js.
 */
import { versionLine } from '../device/about.js';

if (process.argv[2] === '--version' || process.argv[2] === '-v') {
  process.stdout.write(`${versionLine()}\n`);
} else {
  import('./hub-mqtt-loaded.js').then(
    (m) =>
      m.runHubProcess({ keygen: m.keygen }, (config, sealer) => {
        const s = m.mqttSettings(config, sealer);
        return m.mqttBus({
          name: s.name,
          peers: s.peers,
          url: s.url,
          ...(s.username === undefined || (s.username === 'guest' && s.password === 'guest')
            ? {}
            : { username: s.username, password: s.password ?? '' }),
          ...(s.tls === undefined ? {} : { tls: s.tls }),
          prefetch: s.prefetch,
          ...(s.keepaliveSeconds === undefined ? {} : { keepaliveSeconds: s.keepaliveSeconds }),
          reconnectDelay: s.reconnectDelay,
          maxReconnectDelay: s.maxReconnectDelay,
          ...(s.sealer === undefined ? {} : { sealer: s.sealer }),
          ...(s.budget === undefined ? {} : { budget: s.budget }),
        });
      }),
    (err: unknown) => {
      process.stderr.write(`fatal: ${String(err)}\n`);
      process.exitCode = 70;
    },
  );
}
