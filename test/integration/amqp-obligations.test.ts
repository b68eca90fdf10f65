/**
 * The obligations of ../shared/docs/peers-and-reliability.md §3 that no other test names: persistent messages into
 * durable quorum queues (PUB-5), a publish deadline never shorter than the heartbeat timeout (PUB-7), and frames of
 * concurrent multi-frame publishes that never interleave (PUB-9). docs/RELIABILITY.md lists all thirty.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type AmqpError, type Connection, connect, RecoveringConnection } from '../../src/amqp/index.js';
import { decode } from '../../src/codec/index.js';
import { rejection, timed, unique, withConnection } from '../helpers/amqp.js';
import { entity, rawOf, until, withBus } from '../helpers/bus.js';
import { generate } from '../helpers/codec-messages.js';
import { FaultProxy } from '../helpers/proxy.js';
import { Random } from '../helpers/random.js';

test(
  'PUB-5: the bus publishes persistent messages (delivery_mode 2) into durable quorum queues',
  timed(
    () =>
      withBus(async (f) => {
        const hub = entity('heh');
        const vpp = entity('vpp');
        const v = f.create({ name: vpp, peers: [hub] });
        const h = f.create({ name: hub, peers: [vpp] });
        const modes: (number | undefined)[] = [];
        v.onStatusReport((_m, ctx) => {
          modes.push(rawOf(ctx).properties.deliveryMode);
        });
        await f.start();
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
  'PUB-7: no publish deadline is shorter than the heartbeat timeout: a shorter one is refused, the default is raised to it, and confirms held back for less than it fail nothing',
  timed(async () => {
    const proxy = await FaultProxy.start();
    const conns: Connection[] = [];
    const rc = new RecoveringConnection({
      port: proxy.port,
      heartbeat: 5,
      publishTimeout: 1000,
      connectionName: 'pub7',
    });
    const rc0 = new RecoveringConnection({
      port: proxy.port,
      heartbeat: 0,
      publishTimeout: 1000,
      connectionName: 'pub7',
    });
    try {
      const open = async (heartbeat: number): Promise<Connection> => {
        const c = await connect({ port: proxy.port, heartbeat, publishTimeout: 1000, connectionName: 'pub7' });
        conns.push(c);
        return c;
      };
      const q = unique('pub7');
      const refused = async (p: Promise<void>, floorS: number, what: string): Promise<void> => {
        const err = await p.then(
          () => null,
          (e: AmqpError) => e,
        );
        if (err === null) return assert.unreachable(`${what}: a deadline below the heartbeat timeout was accepted`);
        assert.is(err.code, 'ARGUMENT_INVALID', what);
        assert.match(err.message, `shorter than the heartbeat timeout of ${floorS} s`, what);
      };

      // A 5 s heartbeat: 5,000 ms is the shortest deadline.
      const conn = await open(5);
      assert.is(conn.heartbeat, 5);
      assert.is(conn.options.publishTimeout, 5000, 'the default deadline (1 s asked for) is raised to 5 s');
      const ch = await conn.createConfirmChannel();
      await ch.queueDeclare(q, { autoDelete: true, arguments: { 'x-expires': 60_000 } });
      for (const timeout of [2, 1000, 4999])
        await refused(ch.basicPublish('', q, 'x', {}, { timeout }), 5, `${timeout}`);
      assert.is((await rejection(ch.basicPublish('', q, 'x', {}, { timeout: 0 }))).code, 'ARGUMENT_INVALID');
      assert.ok(ch.isOpen, 'a refused deadline leaves the channel usable');

      // Heartbeat 0 takes the broker's 60 s, known only after the handshake: the default deadline follows it.
      const lazy = await open(0);
      assert.is(lazy.heartbeat, 60);
      const lch = await lazy.createConfirmChannel();
      await refused(lch.basicPublish('', q, 'x', {}, { timeout: 59_999 }), 60, 'heartbeat 60 s');

      // The recovering channel keeps the same rule.
      const rch = await rc.createChannel();
      await refused(rch.basicPublish('', q, 'x', {}, { timeout: 2 }), 5, 'recovering channel, before it connected');
      await rc.whenOpen();
      await refused(rch.basicPublish('', q, 'x', {}, { timeout: 2 }), 5, 'recovering channel');
      const rch0 = await rc0.createChannel();
      await rc0.whenOpen();
      await refused(rch0.basicPublish('', q, 'x', {}, { timeout: 59_999 }), 60, 'recovering channel, heartbeat 60 s');

      // The broker's confirms held back 3.5 s: longer than the 1 s asked for as a default, shorter than either
      // heartbeat timeout. Every publish, on each channel, must wait for its confirm and get it.
      proxy.delay(3500, 's2c');
      const t0 = Date.now();
      const pubs = [
        ...Array.from({ length: 50 }, (_, i) => ch.basicPublish('', q, `default ${i}`)),
        ...Array.from({ length: 50 }, (_, i) => ch.basicPublish('', q, `floor ${i}`, {}, { timeout: 5000 })),
        ...Array.from({ length: 50 }, (_, i) => lch.basicPublish('', q, `lazy ${i}`)),
        ...Array.from({ length: 50 }, (_, i) => rch.basicPublish('', q, `recovering ${i}`)),
        ...Array.from({ length: 50 }, (_, i) => rch0.basicPublish('', q, `recovering lazy ${i}`)),
      ];
      const outcomes = await Promise.allSettled(pubs);
      const waited = Date.now() - t0;
      proxy.delay(0, 's2c');
      const failed = outcomes.flatMap((o, i) => (o.status === 'rejected' ? [`#${i} ${String(o.reason)}`] : []));
      assert.equal(failed, [], 'no publish failed before its confirm came');
      assert.ok(waited >= 3500, `the confirms were held back (${waited} ms)`);
      assert.is((await ch.queueDeclare(q, { passive: true })).messageCount, 250);
    } finally {
      await rc.close();
      await rc0.close();
      for (const c of conns) await c.close();
      await proxy.close();
    }
  }, 30_000),
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
