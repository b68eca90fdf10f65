/** Exchange and queue methods against the local RabbitMQ: declare, bind, unbind, purge, delete, passive checks. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ChannelError } from '../../src/amqp/index.js';
import { rejection, timed, unique, withConnection } from '../helpers/amqp.js';

test(
  'exchange.declare for every type, passive re-declare, delete; a 404 closes only that channel',
  timed(() =>
    withConnection(async (conn) => {
      for (const type of ['direct', 'fanout', 'topic', 'headers']) {
        const ch = await conn.createChannel();
        const name = unique(`ex-${type}`);
        await ch.exchangeDeclare(name, type, { durable: false, autoDelete: false });
        await ch.exchangeDeclare(name, type, { passive: true });
        await ch.exchangeDelete(name);
        const err = await rejection(ch.exchangeDeclare(name, type, { passive: true }));
        assert.instance(err, ChannelError);
        assert.is(err.code, 'NOT_FOUND');
        assert.is((err as ChannelError).replyCode, 404);
        assert.is((err as ChannelError).classId, 40);
        assert.is((err as ChannelError).methodId, 10);
        assert.not.ok(ch.isOpen);
        assert.ok(conn.isOpen, 'the connection survives a channel error');
      }
    }),
  ),
);

test(
  'exchange.declare, internal, exchange-to-exchange bind and unbind route as expected',
  timed(() =>
    withConnection(async (conn) => {
      const ch = await conn.createConfirmChannel();
      const src = unique('e2e-src');
      const dst = unique('e2e-dst');
      const q = unique('e2e-q');
      await ch.exchangeDeclare(src, 'topic');
      await ch.exchangeDeclare(dst, 'fanout', { internal: true });
      await ch.queueDeclare(q, { exclusive: true });
      await ch.queueBind(q, dst);
      await ch.exchangeBind(dst, src, 'meter.#');
      await ch.basicPublish(src, 'meter.1', Buffer.from('via e2e'));
      await ch.basicPublish(src, 'other', Buffer.from('not routed'));
      const m = await ch.basicGet(q, { noAck: true });
      assert.ok(m);
      assert.is(m.text(), 'via e2e');
      assert.is(m.exchange, src);
      assert.is(m.routingKey, 'meter.1');
      assert.is(await ch.basicGet(q), null);
      await ch.exchangeUnbind(dst, src, 'meter.#');
      await ch.basicPublish(src, 'meter.2', Buffer.from('after unbind'));
      assert.is(await ch.basicGet(q), null);
      // Internal exchanges refuse direct publishes: the channel closes with 403.
      const err = await rejection(ch.basicPublish(dst, '', Buffer.from('x')));
      assert.is(err.code, 'CLOSED');
      assert.is((err.cause as ChannelError).code, 'ACCESS_REFUSED');
      const ch2 = await conn.createChannel();
      await ch2.exchangeDelete(src);
      await ch2.exchangeDelete(dst);
    }),
  ),
);

test(
  'queue.declare: server-named, durable with arguments, counts; bind, unbind, purge, delete',
  timed(() =>
    withConnection(async (conn) => {
      const ch = await conn.createConfirmChannel();
      const named = await ch.queueDeclare('', { exclusive: true });
      assert.match(named.queue, /^amq\.gen-/);
      assert.is(named.messageCount, 0);
      const q = unique('q');
      const ok = await ch.queueDeclare(q, {
        durable: true,
        arguments: { 'x-queue-type': 'quorum', 'x-max-length': 1000 },
      });
      assert.equal(ok, { queue: q, messageCount: 0, consumerCount: 0 });
      const ex = unique('ex');
      await ch.exchangeDeclare(ex, 'direct');
      await ch.queueBind(q, ex, 'k');
      for (let i = 0; i < 3; i++) await ch.basicPublish(ex, 'k', Buffer.from(`m${i}`), { deliveryMode: 2 });
      assert.is((await ch.queueDeclare(q, { passive: true })).messageCount, 3);
      await ch.queueUnbind(q, ex, 'k');
      await ch.basicPublish(ex, 'k', Buffer.from('lost'));
      assert.is((await ch.queueDeclare(q, { passive: true })).messageCount, 3);
      assert.is(await ch.queuePurge(q), 3);
      await ch.basicPublish('', q, Buffer.from('one'), { deliveryMode: 2 });
      assert.is(await ch.queueDelete(q), 1);
      await ch.exchangeDelete(ex);
      // if-empty refuses to delete a (classic) queue holding messages: 406 closes the channel.
      const classic = unique('classic');
      await ch.queueDeclare(classic, { autoDelete: false });
      await ch.basicPublish('', classic, Buffer.from('one'));
      const err = await rejection(ch.queueDelete(classic, { ifEmpty: true }));
      assert.is(err.code, 'PRECONDITION_FAILED');
      const ch2 = await conn.createChannel();
      assert.is(await ch2.queueDelete(classic, { ifUnused: true }), 1);
    }),
  ),
);

test(
  'exchange.delete if-unused refuses an exchange with bindings (406)',
  timed(() =>
    withConnection(async (conn) => {
      const ch = await conn.createChannel();
      const ex = unique('ex-used');
      await ch.exchangeDeclare(ex, 'fanout');
      const { queue } = await ch.queueDeclare('', { exclusive: true });
      await ch.queueBind(queue, ex);
      const err = await rejection(ch.exchangeDelete(ex, { ifUnused: true }));
      assert.instance(err, ChannelError);
      assert.is((err as ChannelError).replyCode, 406);
      assert.is((err as ChannelError).classId, 40);
      assert.is((err as ChannelError).methodId, 20);
      const ch2 = await conn.createChannel();
      await ch2.exchangeDelete(ex);
    }),
  ),
);

test.run();
