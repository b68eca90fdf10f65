/** Publishing and consuming against the local RabbitMQ: get, consume (callback and iterator), qos, acks, tx. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { AmqpError, Message } from '../../src/amqp/index.js';
import { timed, unique, withConnection } from '../helpers/amqp.js';
import { until, withDeadline } from '../helpers/deadline.js';

test(
  'basic.get: null on empty, then a message with properties, body and message count',
  timed(() =>
    withConnection(async (conn) => {
      const ch = await conn.createConfirmChannel();
      const { queue } = await ch.queueDeclare('', { exclusive: true });
      assert.is(await ch.basicGet(queue), null);
      const ts = new Date('2026-11-25T10:00:00Z');
      const props = {
        contentType: 'application/json',
        contentEncoding: 'identity',
        headers: { a: 1, b: 'two', c: true },
        deliveryMode: 2,
        priority: 3,
        correlationId: 'corr',
        replyTo: 'reply',
        expiration: '60000',
        messageId: 'msg-1',
        timestamp: ts,
        type: 'report',
        userId: 'guest',
        appId: 'hub',
        clusterId: 'c1',
      };
      await ch.basicPublish('', queue, '{"hello":"wörld"}', props);
      await ch.basicPublish('', queue, Buffer.alloc(0));
      const m = await ch.basicGet(queue);
      assert.ok(m);
      assert.is(m.text(), '{"hello":"wörld"}');
      assert.equal(m.properties, props);
      assert.is(m.messageCount, 1);
      assert.is(m.redelivered, false);
      assert.is(m.routingKey, queue);
      m.ack();
      const empty = await ch.basicGet(queue, { noAck: true });
      assert.ok(empty);
      assert.is(empty.body.length, 0);
      assert.throws(
        () => empty.ack(),
        (e: AmqpError) => e.code === 'NOT_SETTLEABLE',
      );
    }),
  ),
);

test(
  'bodies across frames (frame_max 8192): 0 B .. 300 KiB arrive identical',
  timed(() =>
    withConnection(
      async (conn) => {
        assert.is(conn.frameMax, 8192);
        const ch = await conn.createConfirmChannel();
        const { queue } = await ch.queueDeclare('', { exclusive: true });
        const sizes = [0, 1, 8183, 8184, 8185, 16368, 100_000, 300 * 1024];
        const bodies = sizes.map((n) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + n) & 0xff)));
        await Promise.all(bodies.map((b) => ch.basicPublish('', queue, b)));
        // A string that spans frames, with multi-byte characters cut at frame boundaries.
        const text = 'Ωmega-'.repeat(3000);
        await ch.basicPublish('', queue, text);
        for (const b of bodies) {
          const m = await ch.basicGet(queue, { noAck: true });
          assert.ok(m);
          assert.ok(m.body.equals(b), `body of ${b.length} bytes`);
        }
        assert.is((await ch.basicGet(queue, { noAck: true }))?.text(), text);
      },
      { frameMax: 8192 },
    ),
  ),
);

test(
  'BodyWriter writes the body in place, split over frames when large',
  timed(() =>
    withConnection(
      async (conn) => {
        const ch = await conn.createConfirmChannel();
        const { queue } = await ch.queueDeclare('', { exclusive: true });
        const big = Buffer.from(Array.from({ length: 20_000 }, (_, i) => i & 0xff));
        await ch.basicPublish('', queue, { maxBytes: 100, writeTo: (t, o) => o + t.write('{"in":"place"}', o) });
        await ch.basicPublish('', queue, { maxBytes: 30_000, writeTo: (t, o) => o + big.copy(t, o) });
        await ch.basicPublish('', queue, { maxBytes: 10, writeTo: (_t, o) => o });
        assert.is((await ch.basicGet(queue, { noAck: true }))?.text(), '{"in":"place"}');
        assert.ok((await ch.basicGet(queue, { noAck: true }))?.body.equals(big));
        assert.is((await ch.basicGet(queue, { noAck: true }))?.body.length, 0);
        const err = await ch
          .basicPublish('', queue, { maxBytes: 4, writeTo: (_t, o) => o + 5 })
          .catch((e: AmqpError) => e);
        assert.is((err as AmqpError).code, 'ARGUMENT_INVALID');
        assert.ok(ch.isOpen, 'a refused body writer leaves the channel usable');
      },
      { frameMax: 8192 },
    ),
  ),
);

test(
  'CON-1, CON-3: manual acks and a per-consumer prefetch (never global: a quorum queue refuses it) bound the unacked deliveries of each consumer on a quorum queue; acks release more',
  timed(
    () =>
      withConnection(async (conn) => {
        const ch = await conn.createChannel();
        const queue = unique('con3-quorum');
        await ch.queueDeclare(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
        try {
          const ready = async (): Promise<number> => (await ch.queueDeclare(queue, { passive: true })).messageCount;
          for (let i = 0; i < 10; i++) await ch.basicPublish('', queue, `m${i}`);
          await until(async () => (await ready()) === 10, 'the quorum queue to count 10 ready messages', 5000, 50);
          // Two consumers on one channel, prefetch 3 each. A global prefetch would be one limit for the channel, and
          // RabbitMQ refuses it on a quorum queue (540 NOT_IMPLEMENTED): each consumer gets its own 3.
          const qch = await conn.createChannel();
          const a: Message[] = [];
          const b: Message[] = [];
          const ca = await qch.basicConsume(queue, (m) => void a.push(m), { prefetch: 3 });
          const cb = await qch.basicConsume(queue, (m) => void b.push(m), { prefetch: 3 });
          // The queue's count is the barrier: 4 ready means 6 are out, and 6 arrived means none is still on its way.
          await until(
            async () => a.length + b.length === 6 && (await ready()) === 4,
            () => `6 deliveries out, 4 ready (got ${a.length} + ${b.length})`,
            5000,
            50,
          );
          assert.equal([a.length, b.length], [3, 3], 'each consumer holds its prefetch of 3, no more');
          (a[2] as Message).ack(true); // multiple: settles a's three
          await until(
            async () => a.length === 6 && (await ready()) === 1,
            () => `a's next 3 (got ${a.length}), 1 ready`,
            5000,
            50,
          );
          assert.is(b.length, 3, 'acks of one consumer release deliveries to that consumer only');
          assert.equal(
            [...a, ...b].map((m) => m.text()).sort(),
            ['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7', 'm8'],
            'nine distinct messages out',
          );
          for (const m of [...a.slice(3), ...b]) m.ack();
          await until(async () => a.length + b.length === 10 && (await ready()) === 0, 'the last delivery', 5000, 50);
          await ca.cancel();
          await cb.cancel();
          assert.ok(ca.cancelled && cb.cancelled);
        } finally {
          // On a connection of its own: a failure above may have closed this one.
          await withConnection(async (c) => void (await (await c.createChannel()).queueDelete(queue)));
        }
      }),
    20_000,
  ),
);

test(
  'consume as an async iterator; cancel ends the loop',
  timed(() =>
    withConnection(async (conn) => {
      const ch = await conn.createChannel();
      const { queue } = await ch.queueDeclare('', { exclusive: true });
      for (let i = 0; i < 5; i++) await ch.basicPublish('', queue, `n${i}`, { headers: { i } });
      const consumer = await ch.basicConsume(queue, null, { prefetch: 10 });
      const seen: number[] = [];
      for await (const m of consumer) {
        seen.push(m.headers?.['i'] as number);
        m.ack();
        if (seen.length === 5) await consumer.cancel();
      }
      assert.equal(seen, [0, 1, 2, 3, 4]);
    }),
  ),
);

test(
  'CON-4: nack with requeue redelivers (redelivered flag), reject without requeue drops',
  timed(() =>
    withConnection(async (conn) => {
      const ch = await conn.createChannel();
      const { queue } = await ch.queueDeclare('', { exclusive: true });
      await ch.basicPublish('', queue, 'again');
      const first = await ch.basicGet(queue);
      assert.ok(first);
      assert.is(first.redelivered, false);
      first.nack(true);
      const second = await ch.basicGet(queue);
      assert.ok(second);
      assert.is(second.redelivered, true);
      second.reject(false);
      assert.is(await ch.basicGet(queue), null);
      await ch.basicPublish('', queue, 'raw tags');
      const third = await ch.basicGet(queue);
      assert.ok(third);
      ch.basicNack(third.deliveryTag, false, false);
      assert.is(await ch.basicGet(queue), null);
    }),
  ),
);

test(
  'CON-2: a second ack of one tag is refused locally and the channel stays open',
  timed(() =>
    withConnection(async (conn) => {
      const ch = await conn.createChannel();
      const { queue } = await ch.queueDeclare('', { exclusive: true });
      await ch.basicPublish('', queue, 'once');
      await ch.basicPublish('', queue, 'twice');
      const m = await ch.basicGet(queue);
      assert.ok(m);
      m.ack();
      assert.throws(
        () => m.ack(),
        (e: AmqpError) => e.code === 'ALREADY_SETTLED',
      );
      assert.throws(
        () => m.nack(),
        (e: AmqpError) => e.code === 'ALREADY_SETTLED',
      );
      assert.throws(
        () => ch.basicAck(9999),
        (e: AmqpError) => e.code === 'UNKNOWN_DELIVERY_TAG',
      );
      // A round trip after the refused acks: a bad ack that reached the broker would have closed the channel first.
      const n = await ch.basicGet(queue);
      assert.ok(ch.isOpen, 'no PRECONDITION_FAILED reached the broker');
      assert.is(n?.text(), 'twice');
      n?.ack();
      await ch.close();
      assert.throws(
        () => m.ack(),
        (e: AmqpError) => e.code === 'CHANNEL_CLOSED',
      );
    }),
  ),
);

test(
  'ack multiple with tag 0 settles everything outstanding',
  timed(() =>
    withConnection(async (conn) => {
      const ch = await conn.createChannel();
      const { queue } = await ch.queueDeclare('', { exclusive: true });
      for (let i = 0; i < 3; i++) await ch.basicPublish('', queue, `r${i}`);
      const a = await ch.basicGet(queue);
      const b = await ch.basicGet(queue);
      assert.ok(a && b);
      ch.basicAck(0, true);
      assert.throws(
        () => a.ack(),
        (e: AmqpError) => e.code === 'ALREADY_SETTLED',
      );
      assert.is((await ch.queueDeclare(queue, { passive: true })).messageCount, 1);
    }),
  ),
);

test(
  'basic.recover redelivers unacked messages; their old tags are refused afterwards',
  timed(() =>
    withConnection(async (conn) => {
      const ch = await conn.createChannel();
      const { queue } = await ch.queueDeclare('', { exclusive: true });
      for (let i = 0; i < 2; i++) await ch.basicPublish('', queue, `r${i}`);
      const a = await ch.basicGet(queue);
      assert.ok(a);
      await ch.basicRecover(true);
      assert.throws(
        () => a.ack(),
        (e: AmqpError) => e.code === 'ALREADY_SETTLED',
      );
      const again: string[] = [];
      for (let m = await ch.basicGet(queue, { noAck: true }); m !== null; m = await ch.basicGet(queue, { noAck: true }))
        again.push(m.text());
      assert.equal(again.sort(), ['r0', 'r1']);
      assert.ok(ch.isOpen);
    }),
  ),
);

test(
  'a handler that throws: the message is nacked with requeue and the error reported; consuming goes on',
  timed(() =>
    withConnection(async (conn) => {
      const ch = await conn.createChannel();
      const { queue } = await ch.queueDeclare('', { exclusive: true });
      const errors: string[] = [];
      conn.on('handler-error', (err) => errors.push((err as Error).message));
      let calls = 0;
      const done = new Promise<Message>((resolve) => {
        void ch.basicConsume(queue, async (m) => {
          calls++;
          if (!m.redelivered) throw new Error('boom');
          m.ack();
          resolve(m);
        });
      });
      await ch.basicPublish('', queue, 'poison once');
      const m = await withDeadline(done, 5000, 'redelivery');
      assert.is(m.text(), 'poison once');
      assert.is(calls, 2);
      assert.equal(errors, ['boom']);
    }),
  ),
);

test(
  'tx.select / commit / rollback',
  timed(() =>
    withConnection(async (conn) => {
      const ch = await conn.createChannel();
      const { queue } = await ch.queueDeclare('', { exclusive: true });
      await ch.txSelect();
      await ch.basicPublish('', queue, 'rolled back');
      await ch.txRollback();
      await ch.basicPublish('', queue, 'committed');
      await ch.txCommit();
      const m = await ch.basicGet(queue, { noAck: true });
      assert.is(m?.text(), 'committed');
      await ch.txCommit();
      assert.is(await ch.basicGet(queue), null);
    }),
  ),
);

test(
  'PUB-9: a synchronous call never overtakes publishes still waiting in the client (passive declare, tx.commit)',
  timed(
    () =>
      withConnection(
        async (conn) => {
          const ch = await conn.createChannel();
          const { queue } = await ch.queueDeclare('', { exclusive: true });
          const body = Buffer.alloc(200, 1);
          // 2 MiB of publishes in one go: more than the 64 KiB write buffer, so most of them wait in the client.
          const sent = Array.from({ length: 10_000 }, () => ch.basicPublish('', queue, body));
          // The declare goes out after all 10,000. RabbitMQ counts a message once the queue process has it, which can lag
          // the channel by a few hundred, so this bound is loose; overtaking would have shown about 300 (64 KiB / 258 B).
          const seen = (await ch.queueDeclare(queue, { passive: true })).messageCount;
          assert.ok(seen > 9000, `the passive declare saw ${seen} messages`);
          await Promise.all(sent);
          await ch.queuePurge(queue);
          await ch.txSelect();
          const inTx = Array.from({ length: 10_000 }, () => ch.basicPublish('', queue, body));
          await ch.txCommit(); // before the fix, RabbitMQ closed the connection: 504 unexpected command during tx.commit
          await Promise.all(inTx);
          // tx.commit-ok means every publish of the transaction is enqueued: here the count is exact.
          assert.is((await ch.queueDeclare(queue, { passive: true })).messageCount, 10_000);
          assert.ok(conn.isOpen);
        },
        { writeBufferBytes: 64 * 1024 },
      ),
    30_000,
  ),
);

test(
  'CON-5: consumer cancelled by the broker when its queue is deleted: onCancel, channel event, iterator ends',
  timed(() =>
    withConnection(async (conn) => {
      const ch = await conn.createChannel();
      const queue = unique('cancel');
      await ch.queueDeclare(queue, { autoDelete: false });
      const consumer = await ch.basicConsume(queue, null);
      const reason = new Promise<Error | undefined>((resolve) => consumer.onCancel(resolve));
      const event = new Promise<string>((resolve) => ch.once('cancel', resolve));
      const loop = (async () => {
        let n = 0;
        for await (const _ of consumer) n++;
        return n;
      })();
      const other = await conn.createChannel();
      await other.queueDelete(queue);
      assert.is(((await reason) as AmqpError).code, 'CONSUMER_CANCELLED');
      assert.is(await event, consumer.tag);
      assert.is(await loop, 0);
      assert.ok(ch.isOpen, 'a server-side cancel leaves the channel open');
    }),
  ),
);

test(
  'ERR-1: exclusive queue used from another connection: 405 RESOURCE_LOCKED on that channel only',
  timed(() =>
    withConnection(async (conn) => {
      const ch = await conn.createChannel();
      const { queue } = await ch.queueDeclare('', { exclusive: true });
      await withConnection(async (other) => {
        const och = await other.createChannel();
        const err = await och.basicConsume(queue, () => {}).catch((e: AmqpError) => e);
        assert.is((err as AmqpError).code, 'RESOURCE_LOCKED');
        assert.ok(other.isOpen);
      });
      assert.ok(ch.isOpen);
    }),
  ),
);

test(
  'channel ids are reused after close; channel_max is enforced locally',
  timed(() =>
    withConnection(
      async (conn) => {
        assert.is(conn.channelMax, 2);
        const a = await conn.createChannel();
        const b = await conn.createChannel();
        const err = await conn.createChannel().catch((e: AmqpError) => e);
        assert.is((err as AmqpError).code, 'CHANNEL_MAX');
        await a.close();
        const c = await conn.createChannel();
        assert.is(c.id, a.id);
        assert.ok(b.isOpen && c.isOpen);
      },
      { channelMax: 2 },
    ),
  ),
);

test(
  'a message whose headers fill its frame comes back requeued over frame_max (RabbitMQ adds x-delivery-count): read, the connection stays up',
  timed(
    () =>
      withConnection(async (conn) => {
        const ch = await conn.createChannel();
        const queue = unique('full-headers');
        await ch.queueDeclare(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
        try {
          // A header frame 5 bytes under frame_max (27 bytes of frame and table around the 40 left): the broker's own
          // header on redelivery takes it over.
          const frameMax = conn.frameMax;
          await ch.basicPublish('', queue, 'body', { headers: { pad: 'x'.repeat(frameMax - 40) } });
          const got: Message[] = [];
          await ch.basicConsume(queue, (m) => void got.push(m), { prefetch: 1 });
          await until(() => got.length === 1, 'the first delivery', 5000);
          (got[0] as Message).nack(true);
          await until(() => got.length === 2, 'the redelivery, over frame_max', 5000);
          const again = got[1] as Message;
          assert.is(again.properties.headers?.['x-delivery-count'], 1);
          assert.is(again.text(), 'body');
          again.ack();
          assert.ok(conn.isOpen, 'the connection stayed up');
        } finally {
          await withConnection(async (c) => void (await (await c.createChannel()).queueDelete(queue)));
        }
      }),
    20_000,
  ),
);

test.run();
