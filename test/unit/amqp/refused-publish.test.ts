/**
 * refusedPublish (src/amqp/publish-buffer.ts): which publish a channel was closed over, from RabbitMQ's texts, so
 * that the recovery layer fails that one as `refused` instead of sending it again (which would close the channel
 * again until its deadline). Texts as RabbitMQ 3.10 writes them; hostile ones name nothing.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ChannelError, ConnectionError } from '../../../src/amqp/index.js';
import { refusedPublish } from '../../../src/amqp/publish-buffer.js';

const PUBLISH = { classId: 60, methodId: 40 };
const closed = (replyCode: number, replyText: string, method = PUBLISH): ChannelError =>
  new ChannelError(1, { replyCode, replyText, ...method });

test('a write permission on an exchange: that exchange; amq.default is the default exchange', () => {
  const r = refusedPublish(
    closed(403, "ACCESS_REFUSED - access to exchange 'vpp-to-heh' in vhost 'ebadge' refused for user 'heh'"),
  );
  assert.equal(r?.exchange, 'vpp-to-heh');
  assert.is(r?.routingKey, undefined);
  assert.match(r?.text ?? '', '403 ACCESS_REFUSED');
  const d = refusedPublish(
    closed(403, "ACCESS_REFUSED - access to exchange 'amq.default' in vhost 'ebadge' refused for user 'vpp-acme-2'"),
  );
  assert.is(d?.exchange, '');
});

test('a topic permission: the exchange and the routing key', () => {
  const r = refusedPublish(
    closed(
      403,
      "ACCESS_REFUSED - write access to topic 'get_all_prices' in exchange 'ops-to-heh-1' in vhost 'ebadge' refused for user 'ops'",
    ),
  );
  assert.equal(r, {
    exchange: 'ops-to-heh-1',
    routingKey: 'get_all_prices',
    text: "403 ACCESS_REFUSED - write access to topic 'get_all_prices' in exchange 'ops-to-heh-1' in vhost 'ebadge' refused for user 'ops'",
  });
});

test('no such exchange (404); a name with a quote in it', () => {
  assert.is(refusedPublish(closed(404, "NOT_FOUND - no exchange 'nowhere' in vhost '/'"))?.exchange, 'nowhere');
  assert.is(refusedPublish(closed(404, "NOT_FOUND - no exchange 'it's' in vhost '/'"))?.exchange, "it's");
});

test('a user_id that is not the login (406): the publishes that carry it; a quote in it', () => {
  assert.equal(
    refusedPublish(
      closed(406, "PRECONDITION_FAILED - user_id property set to 'guest' but authenticated user was 'heh-1'"),
    ),
    {
      userId: 'guest',
      text: "406 PRECONDITION_FAILED - user_id property set to 'guest' but authenticated user was 'heh-1'",
    },
  );
  const q = refusedPublish(
    closed(406, "PRECONDITION_FAILED - user_id property set to 'o'brien' but authenticated user was 'heh-1'"),
  );
  assert.is(q?.userId, "o'brien");
});

test('anything else names no publish: other codes, other methods, other errors, texts without an exchange', () => {
  assert.is(refusedPublish(undefined), undefined);
  assert.is(refusedPublish(new Error("no exchange 'x' in vhost '/'")), undefined);
  assert.is(refusedPublish(closed(406, "PRECONDITION_FAILED - no exchange 'x' in vhost '/'")), undefined);
  // A refused declaration (queue.declare, 50/10) is recovered by re-creating the channel, not by failing a publish.
  assert.is(
    refusedPublish(
      closed(403, "ACCESS_REFUSED - access to exchange 'x' in vhost '/' refused", { classId: 50, methodId: 10 }),
    ),
    undefined,
  );
  assert.is(refusedPublish(closed(403, 'ACCESS_REFUSED - something new')), undefined);
  assert.is(
    refusedPublish(
      new ConnectionError('ACCESS_REFUSED', 'closed', {
        replyCode: 403,
        replyText: "no exchange 'x' in vhost '/'",
        ...PUBLISH,
      }),
    ),
    undefined,
  );
});

test.run();
