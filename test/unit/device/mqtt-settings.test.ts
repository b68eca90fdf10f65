/**
 * The MQTT hub's bus settings from hub.json (src/device/mqtt-settings.ts): `broker.heartbeatS` is its keep-alive, as
 * it is the AMQP hub's heartbeat; 0 (the broker's value under AMQP, which MQTT has no way to ask) leaves the
 * transport's own 30 s.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { exampleConfig, parseConfig } from '../../../src/device/config/index.js';
import { mqttSettings } from '../../../src/device/mqtt-settings.js';

const config = (heartbeatS?: number) => {
  const c = exampleConfig('/tmp/ebadge-test-state') as { broker: Record<string, unknown> };
  c.broker = { url: 'mqtt://127.0.0.1:1883', ...(heartbeatS === undefined ? {} : { heartbeatS }) };
  return parseConfig(c);
};

test('broker.heartbeatS is the MQTT keep-alive; 0 leaves the transport its own', () => {
  assert.is(mqttSettings(config(45), undefined).keepaliveSeconds, 45);
  assert.is(mqttSettings(config(), undefined).keepaliveSeconds, 20, 'the default, as over AMQP');
  assert.not.ok('keepaliveSeconds' in mqttSettings(config(0), undefined));
});

test.run();
