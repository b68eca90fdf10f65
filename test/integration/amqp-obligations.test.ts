/**
 * The obligations of ../shared/docs/peers-and-reliability.md §3 that no other test names: persistent messages into
 * durable quorum queues (PUB-5), a publish deadline never shorter than the heartbeat timeout (PUB-7), and frames of
 * concurrent multi-frame publishes that never interleave (PUB-9). docs/RELIABILITY.md lists all thirty.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connect, type AmqpError } from '../../src/amqp/index.js';
import { AMQP_URL, rejection, timed, unique, withConnection } from '../helpers/amqp.js';
import { entity, rawOf, until, withBus } from '../helpers/bus.js';
import { generate } from '../helpers/codec-messages.js';
import { Random } from '../helpers/random.js';
import { decode } from '../../src/codec/index.js';

test(
  'PUB-5: the bus publishes persistent messages (delivery_mode 2) into durable quorum queues',
  timed(
    () =>
      withBus(async (f) => {
        const hub = entity('heh');
        const vpp = entity('vpp');
        const v = await f.connector({ name: vpp, peers: [hub] });
        const h = await f.connector({ name: hub, peers: [vpp] });
        const modes: (number | undefined)[] = [];
        v.onStatusReport((_m, ctx) => {
          modes.push(rawOf(ctx).properties.deliveryMode);
        });
        await h.publish(vpp, decode(JSON.stringify(generate('status_report', new Random(5)))).message);
        await until(() => modes.length > 0, 'a delivery');
        assert.equal(modes, [2]);
        // The broker says what the queue is by refusing a declaration that disagrees with it (406 PRECONDITION_FAILED).
        await withConnection(async (conn) => {
          for (const args of [
            { durable: false, arguments: { 'x-queue-type': 'quorum' } },
            { durable: true, arguments: { 'x-queue-type': 'classic' } },
          ]) {
            const ch = await conn.createChannel();
            const err = await rejection(ch.queueDeclare(`private-${vpp}-in`, args));
            assert.is((err as AmqpError).code, 'PRECONDITION_FAILED', JSON.stringify(args));
          }
        });
      }),
    20_000,
  ),
);

test(
  'PUB-7: every publish has a deadline, never shorter than the heartbeat timeout',
  timed(async () => {
    const conn = await connect(AMQP_URL, { heartbeat: 30, publishTimeout: 1000 });
    try {
      assert.is(conn.options.publishTimeout, 30_000, 'raised to the heartbeat timeout');
      const ch = await conn.createConfirmChannel();
      const q = unique('pub7');
      await ch.queueDeclare(q, { autoDelete: true, exclusive: true });
      const err = await rejection(ch.basicPublish('', q, 'x', {}, { timeout: 0 }));
      assert.match(err.message, 'timeout', 'a deadline of 0 is refused: none means the default, never "forever"');
    } finally {
      await conn.close();
    }
  }),
);

test(
  'PUB-9: concurrent multi-frame publishes on one channel never interleave their frames',
  timed(
    () =>
      withConnection(
        async (conn) => {
          const ch = await conn.createConfirmChannel();
          const q = unique('pub9');
          await ch.queueDeclare(q, { exclusive: true, autoDelete: true });
          // 8 KiB frames, bodies of 1 to 6 frames, each body a repeated byte of its own: a mixed frame would show.
          const bodies = Array.from({ length: 60 }, (_, i) => Buffer.alloc(1000 + ((i * 7919) % 45_000), i + 1));
          await Promise.all(
            bodies.map(async (b, i) => {
              await new Promise((r) => setImmediate(r));
              await ch.basicPublish('', q, b, { messageId: String(i) });
            }),
          );
          for (let n = 0; n < bodies.length; n++) {
            const m = await ch.basicGet(q, { noAck: true });
            assert.ok(m !== null);
            const i = Number(m.properties.messageId);
            assert.ok(m.body.equals(bodies[i] as Buffer), `body ${i} arrived whole and unmixed`);
          }
        },
        { frameMax: 8192 },
      ),
    15_000,
  ),
);

test.run();
