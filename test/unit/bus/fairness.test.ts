/**
 * Fairness (issue 15, item 5; docs/bus.md, "Fairness"), over the in-memory transport with a ManualClock: each
 * sender's budget of messages and bytes. A request over it is answered 503 by its msg_id (or msg_id null, its
 * request_id echoed) and acked, never handled and never remembered as seen, so that the retry with the same msg_id
 * is handled; a request under it is untouched; another sender's budget is its own; the buckets refill with time.
 * Reports and responses are never refused, but spend the budget.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  BusError,
  CONTENT_TYPE_SEALED,
  Connector,
  type ConnectorOptions,
  ManualClock,
  MemoryNetwork,
  type MemoryTransport,
  type Settlement,
} from '../../../src/bus/index.js';
import { EbTime, encode } from '../../../src/codec/index.js';
import { HUB as HUB_, json, pair, sealers, uuid, VPP } from '../../helpers/memory-bus.js';

const HUB = 'heh-fair';
const A = 'vpp-flood';
const B = 'vpp-quiet';
const FROM = EbTime.parse('2026-01-01T00:00:00Z').toString();
const TO = EbTime.parse('2026-01-01T00:15:00Z').toString();

interface Setup {
  clock: ManualClock;
  hub: Connector<MemoryTransport>;
  handled: string[];
  overBudget: [string, string, string][];
}

/** A hub with peers A and B whose handlers record what they handled, started. */
async function setup(budget: ConnectorOptions['budget']): Promise<Setup> {
  const clock = new ManualClock();
  const network = new MemoryNetwork({ clock });
  // The peers' queues, where the answers go (a send to an entity without one is NO_ROUTE).
  for (const peer of [A, B]) network.transport({ name: peer, peers: [HUB] });
  const hub = new Connector({
    clock,
    transport: network.transport({ name: HUB, peers: [A, B] }),
    ...(budget === undefined ? {} : { budget }),
  });
  const handled: string[] = [];
  const overBudget: [string, string, string][] = [];
  hub.onSetClock((m, ctx) => {
    handled.push(`${ctx.sender} ${m.msg_id}`);
  });
  hub.onGetReport((m, ctx) => {
    handled.push(`${ctx.sender} ${m.request_id}`);
  });
  hub.onReport((m, ctx) => {
    handled.push(`${ctx.sender} report ${m.resolution}`);
  });
  hub.on('over-budget', (...args) => overBudget.push(args));
  await hub.start();
  return { clock, hub, handled, overBudget };
}

let n = 0;
/**
 * A set_clock from `from` with msg_id uuid(id), padded to about `pad` bytes; its message id is the msg_id, as a
 * Connector sends it (so a retry has the same message id too).
 */
function setClock(t: MemoryTransport, from: string, id: number, pad = 0): Promise<Settlement> {
  const body = { msg: 'set_clock', offset: 1, msg_id: uuid(id), ...(pad > 0 ? { x_pad: 'x'.repeat(pad) } : {}) };
  return send(t, from, body, uuid(id));
}

function send(
  t: MemoryTransport,
  from: string,
  body: Record<string, unknown>,
  messageId?: string,
): Promise<Settlement> {
  return t.inject({
    from,
    body: JSON.stringify(body),
    routingKey: String(body['msg']),
    properties: {
      messageId: messageId ?? `m${++n}`,
      type: String(body['msg']),
      contentType: 'application/json',
      headers: { 'x-ebadge-dm': '3.1' },
    },
  });
}

/** The responses sent to `peer` since `before`: [code, msg_id, request_id]. */
const answers = (t: MemoryTransport, peer: string, before = 0): [unknown, unknown, unknown][] =>
  t.sent
    .slice(before)
    .filter((o) => o.to === peer)
    .map((o) => json(o))
    .filter((m) => m['msg'] === 'response')
    .map((m) => [m['response_code'], m['msg_id'], m['request_id']]);

const f = suite('fairness: per-sender budgets');

f('a request over budget is answered 503 by its msg_id and acked, unhandled; the retry is handled', async () => {
  const { clock, hub, handled, overBudget } = await setup({ messages: { rate: 1, burst: 3 } });
  const t = hub.transport;
  for (let i = 1; i <= 3; i++) assert.is((await setClock(t, A, i)).outcome, 'ack');
  assert.equal(handled, [`${A} ${uuid(1)}`, `${A} ${uuid(2)}`, `${A} ${uuid(3)}`], 'the burst is handled');
  const over = await setClock(t, A, 4);
  assert.is(over.outcome, 'ack', 'acked: the sender retries, nothing waits in the queue');
  assert.is(handled.length, 3, 'the handler never saw it');
  const sent = answers(t, A);
  assert.equal(sent.slice(0, 3), [
    [200, uuid(1), undefined],
    [200, uuid(2), undefined],
    [200, uuid(3), undefined],
  ]);
  assert.equal(sent[3], [503, uuid(4), undefined]);
  const busy = json(t.sent[t.sent.length - 1] as { body: Uint8Array });
  assert.is(busy['ref_msg'], 'set_clock');
  assert.match(String(busy['response_desc']), /^busy: vpp-flood is over its budget .*retry in 1 s$/);
  assert.is(t.sent[t.sent.length - 1]?.properties.correlationId, over.message.properties.messageId);
  assert.equal(overBudget, [[A, 'set_clock', uuid(4)]]);
  assert.is(t.deadLetters.length, 0, 'nothing dead-lettered');
  // The retry with the same msg_id, once a token is back, is handled: the 503 was not remembered as the answer.
  await clock.advance(1000);
  assert.is((await setClock(t, A, 4)).outcome, 'ack');
  assert.is(handled[3], `${A} ${uuid(4)}`);
  assert.equal(answers(t, A).slice(4), [[200, uuid(4), undefined]]);
  await hub.close();
});

f('under budget nothing changes; another sender keeps its own budget', async () => {
  const { hub, handled } = await setup({ messages: { rate: 1, burst: 5 } });
  const t = hub.transport;
  for (let i = 1; i <= 5; i++) await setClock(t, A, i);
  assert.is(handled.length, 5);
  assert.ok(
    answers(t, A).every(([code]) => code === 200),
    'every one answered 200',
  );
  for (let i = 6; i <= 20; i++) await setClock(t, A, i);
  assert.is(answers(t, A).filter(([code]) => code === 503).length, 15, 'A is over');
  const before = t.sent.length;
  for (let i = 21; i <= 25; i++) assert.is((await setClock(t, B, i)).outcome, 'ack');
  assert.equal(
    answers(t, B, before).map(([code]) => code),
    [200, 200, 200, 200, 200],
    "B's burst is whole",
  );
  assert.equal(
    handled.slice(5),
    [21, 22, 23, 24, 25].map((i) => `${B} ${uuid(i)}`),
  );
  await hub.close();
});

f('the buckets refill at their rate, up to the burst', async () => {
  const { clock, hub, handled } = await setup({ messages: { rate: 2, burst: 4 } });
  const t = hub.transport;
  for (let i = 1; i <= 5; i++) await setClock(t, A, i);
  assert.is(handled.length, 4, 'the burst, then refused');
  await clock.advance(499);
  await setClock(t, A, 6);
  assert.is(handled.length, 4, 'less than one token after 499 ms at 2 a second');
  await clock.advance(1);
  await setClock(t, A, 7);
  assert.is(handled.length, 5, 'one token after 500 ms');
  await clock.advance(60_000);
  for (let i = 8; i <= 13; i++) await setClock(t, A, i);
  assert.is(handled.length, 9, 'a minute refills the burst (4), never more');
  await hub.close();
});

f('bytes: a request larger than what is left of the byte budget is refused; the bytes refill', async () => {
  // The byte burst must hold the largest body accepted (1 MiB + the envelope).
  const { clock, hub, handled } = await setup({ bytes: { rate: 1000, burst: (1 << 20) + 1000 } });
  const t = hub.transport;
  await setClock(t, A, 1, (1 << 20) - 200);
  assert.is(handled.length, 1, 'a body near 1 MiB fits the burst');
  await setClock(t, A, 2, 2000);
  assert.equal(answers(t, A)[1], [503, uuid(2), undefined]);
  await clock.advance(3000);
  await setClock(t, A, 3, 2000);
  assert.is(handled.length, 2, '3,000 bytes refilled in 3 s');
  await hub.close();
});

f('a get_report without msg_id over budget: 503 with msg_id null and its request_id echoed', async () => {
  const { hub, handled } = await setup({ messages: { rate: 1, burst: 1 } });
  const t = hub.transport;
  const ask = (id: number): Promise<Settlement> =>
    send(t, A, {
      msg: 'get_report',
      from: FROM,
      to: TO,
      resolution: 900,
      signals: ['total.p'],
      request_id: uuid(id),
    });
  await ask(1);
  assert.is((await ask(2)).outcome, 'ack');
  assert.equal(handled, [`${A} ${uuid(1)}`]);
  assert.equal(answers(t, A), [[503, null, uuid(2)]]);
  await hub.close();
});

f(
  'reports and late replies are never refused but spend the budget (never below empty); responses cost nothing',
  async () => {
    const { clock, hub, handled } = await setup({ messages: { rate: 1, burst: 2 } });
    const t = hub.transport;
    // A report with a request_id nobody waits for any more (a late reply): identifiable, and still never refused.
    const report = (): Promise<Settlement> =>
      send(t, A, {
        msg: 'report',
        from: FROM,
        to: TO,
        resolution: 900,
        values: { 'total.p': [1] },
        request_id: uuid(99),
      });
    for (let i = 1; i <= 4; i++) {
      const s = await report();
      assert.is(s.outcome, 'ack', s.reason);
    }
    assert.is(handled.length, 4, 'every report handled, over budget or not');
    // A response to something we sent: acked, not refused (the connector has no handler: unhandled).
    const late = await send(t, A, { msg: 'response', msg_id: uuid(9), response_code: 200, response_desc: 'OK' });
    assert.is(late.outcome, 'ack');
    assert.equal(answers(t, A), [], 'none of them answered');
    await setClock(t, A, 1);
    assert.equal(answers(t, A), [[503, uuid(1), undefined]], 'the reports spent the budget');
    // Half a token, spent by a report; half a token again: not enough for a request.
    await clock.advance(500);
    await report();
    await clock.advance(500);
    await setClock(t, A, 2);
    assert.equal(answers(t, A)[1], [503, uuid(2), undefined], 'the report took the half token');
    await clock.advance(500);
    // A response is not charged at all: it answers something we sent.
    await send(t, A, { msg: 'response', msg_id: uuid(10), response_code: 200, response_desc: 'OK' });
    await setClock(t, A, 3);
    assert.is(handled[5], `${A} ${uuid(3)}`, 'no debt: a whole token is back');
    await hub.close();
  },
);

f('a 503 that cannot be sent: the request is dead-lettered BUSY, never acked unanswered', async () => {
  const { hub, handled } = await setup({ messages: { rate: 1, burst: 1 } });
  const t = hub.transport;
  await setClock(t, A, 1);
  t.sendFailure = () => new Error('the broker is gone');
  const s = await setClock(t, A, 2);
  assert.is(s.outcome, 'dead');
  assert.is(s.code, 'BUSY');
  assert.match(s.reason ?? '', /over its budget .*, and the 503 could not be sent/);
  assert.equal(handled, [`${A} ${uuid(1)}`]);
  await hub.close();
});

f('sealed: the 503 is sealed, and a replay of the refused envelope is a duplicate, not answered again', async () => {
  const keys = sealers(HUB_, VPP, ['response'], ['set_clock'], Date.now);
  const { hub } = pair({
    hub: { sealer: keys.a, budget: { messages: { rate: 1, burst: 1 } } },
    vpp: { sealer: keys.b },
  });
  const handled: string[] = [];
  hub.onSetClock((m) => {
    handled.push(String(m.msg_id));
  });
  const duplicates: string[] = [];
  hub.on('duplicate', (id) => duplicates.push(id));
  await hub.start();
  const t = hub.transport;
  const sealed = async (id: number, messageId: string): Promise<Settlement> =>
    t.inject({
      body: await keys.b.seal({ peer: HUB_ }, 'set_clock', encode({ msg: 'set_clock', offset: 1, msg_id: uuid(id) })),
      routingKey: 'set_clock',
      properties: { messageId, type: 'set_clock', contentType: CONTENT_TYPE_SEALED, headers: { 'x-ebadge-dm': '3.1' } },
    });
  assert.is((await sealed(1, 'a')).outcome, 'ack');
  const envelope = await keys.b.seal(
    { peer: HUB_ },
    'set_clock',
    encode({ msg: 'set_clock', offset: 1, msg_id: uuid(2) }),
  );
  const inject = (messageId: string): Promise<Settlement> =>
    t.inject({
      body: envelope,
      routingKey: 'set_clock',
      properties: { messageId, type: 'set_clock', contentType: CONTENT_TYPE_SEALED, headers: { 'x-ebadge-dm': '3.1' } },
    });
  assert.is((await inject('b')).outcome, 'ack');
  assert.equal(handled, [uuid(1)]);
  assert.is(t.sent.length, 2);
  const busy = t.sent[1];
  assert.is(busy?.properties.contentType, CONTENT_TYPE_SEALED, 'the 503 is sealed');
  const opened = keys.b.open(busy?.body as Uint8Array);
  const answer = JSON.parse(Buffer.from(opened.payload).toString('utf8')) as Record<string, unknown>;
  opened.release();
  assert.equal([answer['response_code'], answer['msg_id']], [503, uuid(2)]);
  // The same envelope again (the broker replaying it): its sequence was committed, so it is a duplicate.
  assert.is((await inject('c')).outcome, 'ack');
  assert.is(t.sent.length, 2, 'not answered again');
  assert.equal(handled, [uuid(1)]);
  assert.is(duplicates.length, 1);
  await hub.close();
});

f('budget false: no limit; a burst too small for the largest body is a configuration error', async () => {
  const { hub, handled } = await setup(false);
  for (let i = 1; i <= 2000; i++) await setClock(hub.transport, A, i);
  assert.is(handled.length, 2000);
  await hub.close();
  const network = new MemoryNetwork({ clock: new ManualClock() });
  const make = (budget: ConnectorOptions['budget']): Connector =>
    new Connector({ transport: network.transport({ name: `h${++n}`, peers: [A] }), ...(budget ? { budget } : {}) });
  const refused = (budget: ConnectorOptions['budget'], pattern: RegExp): void => {
    try {
      make(budget);
    } catch (err) {
      assert.instance(err, BusError);
      assert.is((err as BusError).code, 'CONFIG');
      assert.match((err as Error).message, pattern);
      return;
    }
    assert.unreachable(`accepted ${JSON.stringify(budget)}`);
  };
  refused({ bytes: { rate: 1000, burst: 1 << 20 } }, /budget\.bytes\.burst must be at least 1048716 \(the largest/);
  refused({ messages: { rate: 0, burst: 10 } }, /budget\.messages\.rate must be a number above 0, not 0/);
  refused({ messages: { rate: 1, burst: 0.5 } }, /budget\.messages\.burst must be at least 1, not 0\.5/);
});

f.run();
