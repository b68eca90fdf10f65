/**
 * connection.blocked / unblocked (https://www.rabbitmq.com/docs/connection-blocked): the test lowers the memory
 * watermark of the local broker to raise a resource alarm, and restores it in a finally block.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connect, type PublishError } from '../../src/amqp/index.js';
import { AMQP_URL, next, rejection, timed, withMemoryAlarm } from '../helpers/amqp.js';
import { withDeadline } from '../helpers/deadline.js';

// RabbitMQ sends connection.blocked to publishing connections: the first publish during the alarm reaches the broker,
// which then stops reading the socket and notifies us. From then on we hold publishes locally.
test(
  'FC-2: blocked: later publishes wait locally (deadline, wait:false) and go out after unblocked',
  timed(async () => {
    // A 5 s heartbeat allows a 5 s publish deadline, the shortest there is (PUB-7).
    const conn = await connect(AMQP_URL, { connectionName: 'blocked-test', heartbeat: 5 });
    try {
      const ch = await conn.createConfirmChannel();
      const { queue } = await ch.queueDeclare('', { exclusive: true });
      await ch.basicPublish('', queue, 'before the alarm');
      const blocked = next<string>((cb) => conn.once('blocked', cb));
      const unblocked = next<void>((cb) => conn.once('unblocked', () => cb()));
      let first: Promise<void> | undefined;
      let released: Promise<void> | undefined;
      await withMemoryAlarm(async () => {
        first = ch.basicPublish('', queue, 'during the alarm');
        first.catch(() => undefined);
        const reason = await withDeadline(blocked, 10_000, 'connection.blocked');
        assert.match(reason, /memory/i);
        assert.ok(conn.blocked);
        const timedOut = await rejection(ch.basicPublish('', queue, 'times out', {}, { timeout: 5000 }));
        assert.is((timedOut as PublishError).failure, 'timeout');
        const fast = await rejection(ch.basicPublish('', queue, 'refused', {}, { wait: false }));
        assert.is((fast as PublishError).failure, 'buffer-full');
        released = ch.basicPublish('', queue, 'released by unblocked');
        released.catch(() => undefined);
      });
      await withDeadline(unblocked, 10_000, 'connection.unblocked');
      assert.not.ok(conn.blocked);
      await withDeadline(Promise.all([first, released]), 5000, 'publishes after unblocked');
      const texts: string[] = [];
      for (let m = await ch.basicGet(queue, { noAck: true }); m !== null; m = await ch.basicGet(queue, { noAck: true }))
        texts.push(m.text());
      // The timed-out and the refused publish never left the client.
      assert.equal(texts, ['before the alarm', 'during the alarm', 'released by unblocked']);
    } finally {
      await conn.close();
    }
  }, 40_000),
);

test(
  'FC-2: blocked: close() completes on a blocked connection; blockedTimeout ends a connection blocked too long',
  timed(async () => {
    const a = await connect(AMQP_URL, { closeTimeout: 500 });
    const b = await connect(AMQP_URL, { blockedTimeout: 500 });
    const [cha, chb] = await Promise.all([a.createConfirmChannel(), b.createConfirmChannel()]);
    await withMemoryAlarm(async () => {
      const pa = cha.basicPublish('amq.fanout', 'x', 'blocks a');
      const pb = chb.basicPublish('amq.fanout', 'x', 'blocks b');
      await withDeadline(
        Promise.all([next((cb) => a.once('blocked', cb)), next((cb) => b.once('blocked', cb))]),
        10_000,
        'blocked',
      );
      // The broker no longer reads a's socket, so no close-ok comes: closeTimeout bounds the wait.
      await withDeadline(a.close(), 5000, 'close while blocked');
      assert.is(((await rejection(pa)) as PublishError).failure, 'closed');
      const err = await withDeadline(b.closed, 10_000, 'blockedTimeout');
      assert.is((err as PublishError).code, 'BLOCKED_TIMEOUT');
      assert.is(((await rejection(pb)) as PublishError).failure, 'closed');
    });
  }, 40_000),
);

test.run();
