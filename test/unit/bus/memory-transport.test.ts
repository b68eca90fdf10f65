/**
 * The in-memory transport itself (src/bus/memory-transport.ts), used directly: what the Connector tests and an
 * aggregator's own tests rely on it to do as a broker would. Routing and its refusals, the prefetch window, requeues
 * with delivery counts, dead letters and the queue TTL on the injected clock, a lost connection (deliveries given
 * back, late acks dropped, sends waiting), queues that outlive a closed transport, and what it records.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  BusError,
  type Incoming,
  ManualClock,
  type MemoryMessage,
  MemoryNetwork,
  MemoryTransport,
  MemoryTransportError,
  type Outgoing,
} from '../../../src/bus/index.js';
import { until } from '../../helpers/memory-bus.js';

const out = (to: string, text: string, messageId = text): Outgoing => ({
  to,
  routingKey: 'x',
  body: Buffer.from(text),
  properties: {
    messageId,
    type: 'x',
    contentType: 'text/plain',
    timestamp: new Date(0),
    appId: 'unit',
    headers: { 'x-ebadge-dm': '3.1' },
  },
});

/** Starts `t` with a consumer that keeps every delivery for the test to settle. */
async function consume(t: MemoryTransport): Promise<Incoming<MemoryMessage>[]> {
  const got: Incoming<MemoryMessage>[] = [];
  await t.start(async (m) => {
    got.push(m);
  });
  return got;
}

const s = suite('memory transport');

s('a send reaches the peer, from us; refused for a non-peer, an entity with no queue, and after close', async () => {
  const network = new MemoryNetwork();
  const a = network.transport({ name: 'a', peers: ['b', 'ghost'] });
  const b = network.transport({ name: 'b', peers: ['a'] });
  const got = await consume(b);
  await a.send(out('b', 'hello'));
  await until(() => got.length === 1);
  assert.equal(
    [got[0]?.from, got[0]?.body.toString(), got[0]?.messageId, got[0]?.headers['x-ebadge-dm']],
    ['a', 'hello', 'hello', '3.1'],
  );
  assert.is(a.sent.length, 1);
  const refusal = async (p: Promise<unknown>): Promise<string> =>
    p.then(
      () => 'accepted',
      (e: unknown) => `${(e as Error).name} ${(e as BusError).code}`,
    );
  assert.is(await refusal(a.send(out('c', 'x'))), 'BusError UNKNOWN_PEER');
  assert.is(await refusal(a.send(out('ghost', 'x'))), 'MemoryTransportError NO_ROUTE', 'a peer that never had a queue');
  await a.close();
  assert.is(await refusal(a.send(out('b', 'x'))), 'BusError CLOSED');
  assert.is(a.sent.length, 1, 'only what the network took is recorded');
  assert.ok(new MemoryTransportError('NO_ROUTE', 'x') instanceof Error);
});

s('at most `prefetch` deliveries in flight; the rest wait in order', async () => {
  const [a, b] = MemoryTransport.pair('a', 'b', { prefetch: 2 });
  const got = await consume(b);
  for (const text of ['1', '2', '3', '4']) await a.send(out('b', text));
  await until(() => got.length === 2);
  assert.is(b.unsettled, 2);
  assert.is(b.network.queued('b').length, 2);
  got[0]?.ack();
  await until(() => got.length === 3);
  got[1]?.ack();
  got[2]?.ack();
  await until(() => got.length === 4);
  assert.equal(
    got.map((m) => m.body.toString()),
    ['1', '2', '3', '4'],
  );
});

s('retry() puts the message back at the head, redelivered, its count up (or not, as a classic queue)', async () => {
  for (const countDeliveries of [true, false]) {
    const [a, b] = MemoryTransport.pair('a', 'b', { countDeliveries, prefetch: 1 });
    const got = await consume(b);
    await a.send(out('b', 'first'));
    await a.send(out('b', 'second'));
    await until(() => got.length === 1);
    got[0]?.retry();
    await until(() => got.length === 2);
    got[1]?.retry();
    await until(() => got.length === 3);
    assert.equal(
      got.map((m) => [m.body.toString(), m.redelivered, m.deliveryCount]),
      [
        ['first', false, 0],
        ['first', true, countDeliveries ? 1 : 0],
        ['first', true, countDeliveries ? 2 : 0],
      ],
    );
    assert.equal(
      b.settlements.map((x) => x.outcome),
      ['retry', 'retry'],
    );
  }
});

s('deadLetter() keeps the message with its reason and code, then acks; a failing one leaves it unsettled', async () => {
  const clock = new ManualClock();
  const [a, b] = MemoryTransport.pair('a', 'b', { clock });
  const got = await consume(b);
  await a.send(out('b', 'bad'));
  await a.send(out('b', 'worse'));
  await until(() => got.length === 2);
  await got[0]?.deadLetter('no good', 'BAD');
  assert.equal(
    b.deadLetters.map((d) => [d.message.body.toString(), d.reason, d.code, d.at]),
    [['bad', 'no good', 'BAD', clock.now()]],
  );
  b.deadLetterFailure = () => new Error('the dead-letter queue is full');
  let failed = '';
  await got[1]?.deadLetter('also bad').catch((e: Error) => {
    failed = e.message;
  });
  assert.is(failed, 'the dead-letter queue is full');
  assert.is(b.unsettled, 1, 'not acked: the broker keeps it');
  assert.equal(
    b.settlements.map((x) => x.outcome),
    ['dead'],
  );
});

s(
  'a message that waited longer than the queue TTL on the injected clock is dead-lettered EXPIRED, not delivered',
  async () => {
    const clock = new ManualClock();
    const network = new MemoryNetwork({ clock });
    const a = network.transport({ name: 'a', peers: ['b'] });
    const b = network.transport({ name: 'b', peers: ['a'], messageTtlMs: 60_000 });
    await a.send(out('b', 'old'));
    await clock.advance(30_000);
    await a.send(out('b', 'young'));
    await clock.advance(30_001);
    const got = await consume(b);
    await until(() => got.length === 1);
    assert.equal(
      got.map((m) => m.body.toString()),
      ['young'],
    );
    assert.equal(
      b.deadLetters.map((d) => [d.message.body.toString(), d.code]),
      [['old', 'EXPIRED']],
    );
  },
);

s(
  'a lost connection: deliveries given back marked redelivered, their late acks dropped, sends wait for it',
  async () => {
    const [a, b] = MemoryTransport.pair('a', 'b');
    const events: string[] = [];
    b.on('down', (e) => events.push(`down ${e?.message}`));
    b.on('recovered', (i) => events.push(`recovered ${i.downtimeMs}`));
    const got = await consume(b);
    await a.send(out('b', 'm'));
    await until(() => got.length === 1);
    b.disconnect(new Error('socket closed'));
    got[0]?.ack(); // on a channel that is gone: dropped
    assert.equal(b.settlements, []);
    assert.equal(b.problems, []);
    let sent = false;
    const sending = b.send(out('a', 'while down')).then(() => {
      sent = true;
    });
    await until(() => true);
    assert.not.ok(sent, 'a send waits while disconnected');
    b.reconnect(1500);
    await sending;
    await until(() => got.length === 2);
    assert.equal([got[1]?.body.toString(), got[1]?.redelivered], ['m', true]);
    got[1]?.ack();
    got[1]?.ack();
    assert.equal(
      b.settlements.map((x) => x.outcome),
      ['ack'],
    );
    assert.equal(b.problems.length, 1, 'a second ack of one delivery is recorded as a problem');
    assert.equal(events, ['down socket closed', 'recovered 1500']);
  },
);

s('a queue outlives its closed transport: the next transport of that entity gets what waited', async () => {
  const network = new MemoryNetwork();
  const a = network.transport({ name: 'a', peers: ['b'] });
  const b1 = network.transport({ name: 'b', peers: ['a'] });
  const got1 = await consume(b1);
  await a.send(out('b', 'in flight'));
  await until(() => got1.length === 1);
  assert.throws(
    () => network.transport({ name: 'b', peers: ['a'] }),
    (e: unknown) => e instanceof BusError && e.code === 'CONFIG',
  );
  await b1.close();
  await a.send(out('b', 'while closed'));
  const b2 = network.transport({ name: 'b', peers: ['a'] });
  const got2 = await consume(b2);
  await until(() => got2.length === 2);
  assert.equal(
    got2.map((m) => [m.body.toString(), m.redelivered]),
    [
      ['in flight', true],
      ['while closed', false],
    ],
  );
});

s('the loopback sends to itself only; inject() resolves with the first settlement', async () => {
  const [a, b] = MemoryTransport.pair('a', 'b');
  const echoed: string[] = [];
  const loop = await a.loopback((body) => echoed.push(body.toString()));
  await loop.send(Buffer.from('ping'));
  await until(() => echoed.length === 1);
  assert.equal(echoed, ['ping']);
  assert.equal(a.sent, [], 'nothing went to a peer');
  await loop.close();
  await b.start(async (m) => (m.body.toString() === 'retry me' && m.deliveryCount === 0 ? m.retry() : m.ack()));
  assert.is((await b.inject({ body: 'retry me' })).outcome, 'retry');
  await until(() => b.settlements.length === 2);
  assert.is((await b.inject({ body: 'fine', from: undefined })).outcome, 'ack');
  assert.is(b.settlements[2]?.message.from, undefined, 'an injected message may have no sender');
});

s.run();
