/**
 * The properties of a message published again (src/bus/amqp-republish.ts): what the broker refuses from us or acts
 * on goes into headers, and what our encoder cannot write again is dropped with the reason, never the publish.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ArgumentError, type MessageProperties } from '../../../src/amqp/index.js';
import { publishWithHeaders, republished, routingKeyFor } from '../../../src/bus/amqp-republish.js';

const s = suite('bus: properties published again');

s('user_id and expiration go into headers; a string decoded past 255 bytes too; an invalid timestamp is now', () => {
  const lossy = '\ufffd'.repeat(100); // 100 bytes that were not UTF-8, 300 once decoded
  const before = Date.now();
  const p = republished(
    {
      userId: 'guest',
      expiration: '3000',
      messageId: lossy,
      correlationId: 'c-1',
      contentType: 'application/json',
      priority: 3,
      deliveryMode: 1,
      timestamp: new Date(Number.NaN),
      headers: { theirs: 1 },
    },
    { theirs: 1, 'x-ebadge-error': 'why' },
  );
  assert.is(p.userId, undefined);
  assert.is(p.expiration, undefined);
  assert.is(p.messageId, undefined);
  assert.equal([p.correlationId, p.contentType, p.priority, p.deliveryMode], ['c-1', 'application/json', 3, 2]);
  assert.equal(p.headers, {
    theirs: 1,
    'x-ebadge-error': 'why',
    'x-ebadge-messageId': lossy,
    'x-ebadge-user-id': 'guest',
    'x-ebadge-expiration': '3000',
  });
  assert.ok((p.timestamp as Date).getTime() >= before);
  const valid = new Date(0);
  assert.is(republished({ timestamp: valid }, {}).timestamp, valid, 'a valid timestamp is kept');
});

s('routingKeyFor: a key over 255 bytes becomes "" and goes into a header', () => {
  const h: Record<string, unknown> = {};
  assert.is(routingKeyFor('report.heh', h), 'report.heh');
  assert.equal(h, {});
  const long = '\ufffd'.repeat(90);
  assert.is(routingKeyFor(long, h), '');
  assert.equal(h, { 'x-ebadge-routing-key': long });
});

s(
  'publishWithHeaders: headers the encoder refuses are dropped with the reason; any other failure is thrown',
  async () => {
    const tried: MessageProperties[] = [];
    await publishWithHeaders(
      async (q) => {
        tried.push(q);
        if (tried.length === 1)
          throw new ArgumentError('timestamp: expected a Date or seconds since 1970, got Invalid Date');
      },
      { headers: { when: new Date(Number.NaN) } },
      { 'x-ebadge-error': 'why' },
    );
    assert.is(tried.length, 2);
    assert.ok('when' in (tried[0]?.headers ?? {}));
    assert.equal(tried[1]?.headers, {
      'x-ebadge-error': 'why',
      'x-ebadge-headers-dropped': 'timestamp: expected a Date or seconds since 1970, got Invalid Date',
    });
    const lost = await publishWithHeaders(
      async () => {
        throw new Error('connection lost');
      },
      {},
      {},
    ).then(
      () => 'published',
      (err: Error) => err.message,
    );
    assert.is(lost, 'connection lost');
  },
);

s.run();
