/**
 * RecoveringConnection's options, checked before anything connects (it connects on first use), and the hub's
 * derived message ids for periodic reports.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AmqpError, RecoveringConnection, type RecoveryOptions } from '../../../src/amqp/index.js';
import { derivedUuid } from '../../../src/device/hub.js';

function refused(o: RecoveryOptions, what: string): void {
  try {
    new RecoveringConnection(o);
  } catch (err) {
    assert.instance(err, AmqpError);
    assert.is((err as AmqpError).code, 'OPTION_INVALID');
    assert.match((err as Error).message, what);
    return;
  }
  assert.unreachable(`${what}: accepted`);
}

test('EP-2: a reconnect delay below 2 s, a cap below it, and bad buffer limits are refused', () => {
  refused({ reconnectDelay: 1999 }, 'reconnectDelay');
  refused({ reconnectDelay: 5000, maxReconnectDelay: 4000 }, 'maxReconnectDelay');
  refused({ authFailureDelay: 100 }, 'authFailureDelay');
  refused({ bufferMessages: -1 }, 'bufferMessages');
  refused({ bufferBytes: 1.5 }, 'bufferBytes');
  refused({ overflow: 'block' as never }, 'overflow');
  refused({ initialAttempts: 0 }, 'initialAttempts');
  refused({ ackWarningAfter: 10 }, 'ackWarningAfter');
});

test('EP-1: endpoints are "host:port" (IPv6 in brackets); anything else is refused', () => {
  for (const bad of ['localhost', 'host:', ':5672', 'host:0', 'host:65536', 'host:12a'])
    refused({ endpoints: [bad] }, 'endpoints');
  const rc = new RecoveringConnection({ endpoints: ['127.0.0.1:5672', '[::1]:5673', { hostname: 'b', port: 5674 }] });
  assert.is(rc.isOpen, false, 'nothing connects before the first use');
  assert.is(rc.connection, null);
});

test('defaults: 5 s first delay, 60 s cap and auth delay, 10,000 messages / 16 MiB buffer, reject-new, 25 min ack warning', () => {
  const o = new RecoveringConnection().options;
  assert.equal(
    [
      o.reconnectDelay,
      o.maxReconnectDelay,
      o.authFailureDelay,
      o.bufferMessages,
      o.bufferBytes,
      o.overflow,
      o.ackWarningAfter,
      o.initialAttempts,
    ],
    [5000, 60_000, 60_000, 10_000, 16 << 20, 'reject-new', 25 * 60_000, Infinity],
  );
});

test('close() before any use settles at once and later use is refused', async () => {
  const rc = new RecoveringConnection({ endpoints: ['127.0.0.1:1'] });
  await rc.close();
  await rc.whenOpen().then(
    () => assert.unreachable('opened'),
    (err: AmqpError) => assert.is(err.code, 'CLOSED'),
  );
  await rc.createChannel().then(
    () => assert.unreachable('channel'),
    (err: AmqpError) => assert.is(err.code, 'CLOSED'),
  );
});

test("PUB-4: a periodic report's message id is derived from its period: the same period, the same id; a valid UUID", () => {
  const a = derivedUuid('heh-1|periodic|vpp|r1|60|1|1700000000000');
  assert.is(a, derivedUuid('heh-1|periodic|vpp|r1|60|1|1700000000000'));
  assert.is.not(a, derivedUuid('heh-1|periodic|vpp|r1|60|1|1700000060000'));
  assert.match(a, /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});

test.run();
