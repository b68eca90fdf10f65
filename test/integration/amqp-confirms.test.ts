/** Publisher confirms against the local RabbitMQ: every publish promise settles exactly once, with the right outcome. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ChannelError, type Message, PublishError } from '../../src/amqp/index.js';
import { rejection, timed, unique, withConnection } from '../helpers/amqp.js';

test(
  'PUB-8: confirms: 5,000 concurrent publishes into a durable quorum queue all resolve (acks with multiple=true)',
  timed(
    () =>
      withConnection(async (conn) => {
        const ch = await conn.createConfirmChannel();
        const q = unique('confirm');
        await ch.queueDeclare(q, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
        const body = Buffer.alloc(200, 7);
        const results = await Promise.allSettled(
          Array.from({ length: 5000 }, (_, i) => ch.basicPublish('', q, body, { deliveryMode: 2, messageId: `m${i}` })),
        );
        assert.ok(results.every((r) => r.status === 'fulfilled'));
        assert.is(ch.unconfirmed, 0);
        assert.is((await ch.queueDeclare(q, { passive: true })).messageCount, 5000);
        await ch.queueDelete(q);
      }),
    30_000,
  ),
);

test(
  'PUB-2: confirms: nack from a full queue (x-max-length 1, x-overflow reject-publish)',
  timed(() =>
    withConnection(async (conn) => {
      const ch = await conn.createConfirmChannel();
      const { queue } = await ch.queueDeclare('', {
        exclusive: true,
        arguments: { 'x-max-length': 1, 'x-overflow': 'reject-publish' },
      });
      await ch.basicPublish('', queue, 'fits');
      const err = await rejection(ch.basicPublish('', queue, 'rejected'));
      assert.instance(err, PublishError);
      assert.is((err as PublishError).failure, 'nacked');
      assert.is(err.code, 'NACKED');
      assert.ok(ch.isOpen, 'a nack is not a channel error');
      await ch.basicPublish('', '', 'still usable', {}, {}).catch(() => undefined);
    }),
  ),
);

test(
  'PUB-2: confirms: a mandatory publish nobody can route is returned (basic.return before basic.ack)',
  timed(() =>
    withConnection(async (conn) => {
      const ch = await conn.createConfirmChannel();
      const ex = unique('no-binding');
      await ch.exchangeDeclare(ex, 'direct', { autoDelete: false });
      const returned = new Promise<Message>((resolve) => ch.once('return', resolve));
      const err = await rejection(ch.basicPublish(ex, 'nowhere', 'lost?', { messageId: 'r-1' }, { mandatory: true }));
      assert.instance(err, PublishError);
      assert.is((err as PublishError).failure, 'returned');
      assert.is((err as PublishError).replyCode, 312);
      // Which exchange has no queue for which key: what an operator needs to fix it.
      assert.match((err as PublishError).message, `to '${ex}' with routing key 'nowhere' was returned as unroutable`);
      const m = await returned;
      assert.is(m.replyCode, 312);
      assert.is(m.replyText, 'NO_ROUTE');
      assert.is(m.text(), 'lost?');
      assert.is(m.properties.messageId, 'r-1');
      // Routable mandatory publishes and non-mandatory unroutable ones are acked normally.
      const { queue } = await ch.queueDeclare('', { exclusive: true });
      await ch.queueBind(queue, ex, 'here');
      await ch.basicPublish(ex, 'here', 'ok', {}, { mandatory: true });
      await ch.basicPublish(ex, 'nowhere', 'dropped silently');
      // Interleaved: only the unroutable one of each pair fails.
      const outcomes = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) =>
          ch.basicPublish(ex, i % 2 === 0 ? 'here' : 'nowhere', `x${i}`, {}, { mandatory: true }),
        ),
      );
      assert.equal(
        outcomes.map((o) => o.status),
        Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? 'fulfilled' : 'rejected')),
      );
      await ch.exchangeDelete(ex);
    }),
  ),
);

test(
  'PUB-2: confirms: without message ids, the return goes to the unroutable publish, not to an older routed one that waits for its queue',
  timed(() =>
    withConnection(async (conn) => {
      // A headers exchange routes by headers: one exchange, one routing key (''), no message ids, so every return
      // fits every pending publish. The routed ones are persistent in a durable queue: their acks wait for the disk,
      // while an unroutable one's return and ack come at once.
      const ch = await conn.createConfirmChannel();
      const ex = unique('headers');
      const q = unique('headers-q');
      await ch.exchangeDeclare(ex, 'headers');
      // Expires unused after a minute: gone even when an assertion below fails before the delete.
      await ch.queueDeclare(q, { durable: true, arguments: { 'x-expires': 60_000 } });
      await ch.queueBind(q, ex, '', { 'x-match': 'all', to: 'q' });
      const outcomes = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          ch
            .basicPublish(
              ex,
              '',
              `m${i}`,
              { deliveryMode: 2, headers: { to: i % 2 === 0 ? 'q' : 'nobody' } },
              {
                mandatory: true,
              },
            )
            .then(
              () => 'ok',
              (e: PublishError) => e.failure,
            ),
        ),
      );
      assert.equal(
        outcomes,
        Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? 'ok' : 'returned')),
      );
      assert.is((await ch.queueDeclare(q, { passive: true })).messageCount, 10);
      await ch.queueDelete(q);
      await ch.exchangeDelete(ex);
    }),
  ),
);

test(
  'confirms: a publish the broker answers with a channel error fails as closed, with the cause',
  timed(() =>
    withConnection(async (conn) => {
      const ch = await conn.createConfirmChannel();
      const closed = new Promise<Error | undefined>((resolve) => ch.once('close', resolve));
      const err = await rejection(ch.basicPublish(unique('missing-exchange'), 'k', 'x'));
      assert.instance(err, PublishError);
      assert.is((err as PublishError).failure, 'closed');
      assert.instance(err.cause, ChannelError);
      assert.is((err.cause as ChannelError).code, 'NOT_FOUND');
      assert.is((err.cause as ChannelError).classId, 60);
      assert.is((err.cause as ChannelError).methodId, 40);
      assert.is(((await closed) as ChannelError).replyCode, 404);
      // After the channel closed, publishing fails at once.
      const late = await rejection(ch.basicPublish('', 'q', 'late'));
      assert.is((late as PublishError).failure, 'closed');
      // And other channels on the same connection are fine.
      const ch2 = await conn.createConfirmChannel();
      const { queue } = await ch2.queueDeclare('', { exclusive: true });
      await ch2.basicPublish('', queue, 'fine');
    }),
  ),
);

test(
  'FC-1: write buffer: wait:false fails fast with buffer-full, waiting publishes go out in order',
  timed(() =>
    withConnection(
      async (conn) => {
        const ch = await conn.createConfirmChannel();
        const { queue } = await ch.queueDeclare('', { exclusive: true });
        const body = Buffer.alloc(4000, 1);
        const waited = Array.from({ length: 50 }, (_, i) => ch.basicPublish('', queue, body, { messageId: String(i) }));
        const fast = await rejection(ch.basicPublish('', queue, body, {}, { wait: false }));
        assert.is((fast as PublishError).failure, 'buffer-full');
        await Promise.all(waited);
        const ids: string[] = [];
        for (
          let m = await ch.basicGet(queue, { noAck: true });
          m !== null;
          m = await ch.basicGet(queue, { noAck: true })
        )
          ids.push(m.properties.messageId ?? '');
        assert.equal(
          ids,
          Array.from({ length: 50 }, (_, i) => String(i)),
        );
      },
      { writeBufferBytes: 8192 },
    ),
  ),
);

test(
  'maxUnconfirmed: publishes beyond it wait for confirms instead of piling up',
  timed(() =>
    withConnection(
      async (conn) => {
        const ch = await conn.createConfirmChannel();
        const { queue } = await ch.queueDeclare('', { exclusive: true });
        const all = Array.from({ length: 200 }, (_, i) => ch.basicPublish('', queue, `u${i}`));
        assert.ok(ch.unconfirmed <= 10, `at most 10 unconfirmed, saw ${ch.unconfirmed}`);
        await Promise.all(all);
        assert.is((await ch.queueDeclare(queue, { passive: true })).messageCount, 200);
      },
      { maxUnconfirmed: 10 },
    ),
  ),
);

test(
  'closing a channel with publishes in flight: each settles once (acked before close-ok, else closed)',
  timed(() =>
    withConnection(async (conn) => {
      const ch = await conn.createConfirmChannel();
      const { queue } = await ch.queueDeclare('', { exclusive: true });
      const ps = Array.from({ length: 500 }, () => ch.basicPublish('', queue, 'x'));
      await ch.close();
      const outcomes = await Promise.allSettled(ps);
      for (const o of outcomes) {
        if (o.status === 'rejected') assert.is((o.reason as PublishError).failure, 'closed');
      }
      assert.is(ch.unconfirmed, 0);
    }),
  ),
);

test.run();
