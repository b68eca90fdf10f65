/**
 * Request ids of a party that runs as several instances (src/bus/requests.ts): an instance's tag is written into the
 * ids it makes, which stay valid version 4 UUIDs, and read back from the ids an answer echoes; without a tag nothing
 * changes. test/integration/bus-inboxes.test.ts relays answers between two instances through RabbitMQ.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ManualClock } from '../../../src/bus/index.js';
import { PendingRequests } from '../../../src/bus/requests.js';
import { EbTime, type Message } from '../../../src/codec/index.js';
import { assignShards } from '../../../src/core/shard.js';

const test = suite('instances: tagged request ids');
const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const T0 = EbTime.parse('2026-12-03T10:00:00Z');
const getReport = (): Message<'get_report'> => ({
  msg: 'get_report',
  from: T0,
  to: T0.plusSeconds(900),
  resolution: 900,
  signals: ['total.p'],
});

test('the ids an instance makes end with its tag and are version 4 UUIDs; the answer names it back', () => {
  const r = new PendingRequests(new ManualClock(0), 'beef');
  const q = r.open('heh-1', getReport(), 1000);
  const requestId = (q.message as { request_id: string }).request_id;
  assert.match(requestId, UUID4);
  assert.ok(requestId.endsWith('beef'), requestId);
  assert.ok(q.messageId.endsWith('beef'), 'the message id too (the correlation id of our peers)');
  const report = { msg: 'report', request_id: requestId } as unknown as Message;
  assert.is(PendingRequests.tagOf(report, undefined), 'beef');
  const set = r.open('heh-1', { msg: 'set_clock', offset: 1 } as Message<'set_clock'>, 1000);
  const msgId = (set.message as { msg_id: string }).msg_id;
  assert.ok(msgId.endsWith('beef'));
  const response = { msg: 'response', msg_id: msgId, response_code: 200 } as unknown as Message;
  assert.is(PendingRequests.tagOf(response, undefined), 'beef');
  // A message that answers nothing has no tag; the correlation id is the last resort.
  assert.is(PendingRequests.tagOf({ msg: 'status_report' } as unknown as Message, undefined), undefined);
  assert.is(PendingRequests.tagOf({ msg: 'status_report' } as unknown as Message, q.messageId), 'beef');
  assert.is(PendingRequests.tagOf({ msg: 'status_report' } as unknown as Message, 'not-a-uuid'), undefined);
  for (const p of [q, set]) p.fail(new Error('done'));
});

test('without a tag the ids are plain random UUIDs', () => {
  const r = new PendingRequests(new ManualClock(0));
  const ids = Array.from({ length: 20 }, () => r.open('heh-1', getReport(), 1000));
  const tails = new Set(ids.map((q) => (q.message as { request_id: string }).request_id.slice(-4)));
  assert.ok(tails.size > 10, 'random tails');
  for (const q of ids) q.fail(new Error('done'));
});

const share = suite('instances: shards shared out (assignShards)');

const counts = (owners: string[]): Map<string, number> => {
  const m = new Map<string, number>();
  for (const t of owners) m.set(t, (m.get(t) ?? 0) + 1);
  return m;
};

share('every shard has one owner, no instance more than one shard above another, whatever the counts', () => {
  for (let shards = 1; shards <= 40; shards++) {
    for (let n = 1; n <= 7; n++) {
      const tags = Array.from({ length: n }, (_v, i) => (0x1000 + i * 977).toString(16));
      const owners = assignShards(shards, tags);
      assert.is(owners.length, shards);
      const c = [...counts(owners).values()];
      const max = Math.max(...c);
      const min = c.length < Math.min(n, shards) ? 0 : Math.min(...c);
      assert.ok(max - min <= 1, `${shards} shards over ${n}: ${c.join('/')}`);
      assert.ok(owners.every((t) => tags.includes(t)));
    }
  }
});

share('the same table whatever order the tags are heard in, and duplicates count once', () => {
  const tags = ['a1b2', '00ff', 'beef', '7777'];
  const one = assignShards(16, tags);
  assert.equal(assignShards(16, [...tags].reverse()), one);
  assert.equal(assignShards(16, [...tags, 'beef']), one);
});

share('an instance coming moves only the shards it takes (rendezvous), not the others between old instances', () => {
  let moved = 0;
  let taken = 0;
  for (let trial = 0; trial < 50; trial++) {
    const tags = [0, 1, 2].map((i) => ((trial * 7919 + i * 104729) & 0xffff).toString(16).padStart(4, '0'));
    const before = assignShards(24, tags.slice(0, 2));
    const after = assignShards(24, tags);
    for (let k = 0; k < 24; k++) {
      if (after[k] === tags[2]) taken++;
      else if (after[k] !== before[k]) moved++;
    }
  }
  assert.is(taken, 50 * 8, 'the newcomer takes its third');
  // Moves between the two old instances happen only where the share caps bite.
  assert.ok(moved <= taken / 4, `${moved} shards moved between old instances for ${taken} taken`);
});

share.run();
test.run();
