/**
 * A handler's own answer that cannot be sent (src/bus/dispatch.ts): whatever the reason (the broker, the connector
 * closed under it, a keyring that will not seal it), the handler is not run again for it, however it passes the
 * error on; an answer too large to keep is not owed, and the peer's retry then runs the handler again and gets it.
 * From an adversarial review of the change.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CONTENT_TYPE_SEALED } from '../../../src/bus/index.js';
import { EbTime, encode, type Message } from '../../../src/codec/index.js';
import { deliver, gate, HUB, pair, sealers, soon, until, uuid, VPP } from '../../helpers/memory-bus.js';

const setClock = (n: number, offset = 1): Message<'set_clock'> => ({ msg: 'set_clock', offset, msg_id: uuid(n) });
/** A get_report of `periods` quarter hours of one signal, from 2026-12-03T10:00Z. */
const getReport = (n: number, periods: number, signal: string): Message => {
  const from = EbTime.parse('2026-12-03T10:00:00Z');
  const to = from.plusSeconds(periods * 900);
  return { msg: 'get_report', from, to, resolution: 900, signals: [signal], request_id: uuid(n) } as unknown as Message;
};
const s = suite('a handler whose answer is lost');

// The transport closed under a handler past drainMs: its answer fails with BusError('CLOSED') (memory and MQTT
// transports; AMQP throws a PublishError 'closed' instead). That is not the handler's own failure, yet it is
// classified as one: the handler is told as failed and retried, and runs again on the next start.
s('an answer lost because the transport closed (BusError CLOSED) is handled, not retried', async () => {
  const { hub, clock, network } = pair();
  let offset = 0;
  const g = gate();
  let started = 0;
  hub.onSetClock(async (m, ctx) => {
    started++;
    offset += m.offset ?? 0; // its effect, done
    await g.wait;
    await ctx.respond(200, 'moved');
  });
  const told: [string, string][] = [];
  hub.on('handler-error', (e, type) => told.push([String((e as Error).message), type]));
  await hub.start();
  void deliver(hub.transport, setClock(1, 10), { messageId: 'm' });
  await until(() => started === 1);
  const closing = hub.close(100);
  await clock.advance(100);
  await soon(closing);
  g.open();
  await until(() => told.length > 0);
  // As with AMQP's PublishError('closed'): the answer is lost, the handler is not.
  assert.equal(
    told.map((x) => x[1]),
    ['response'],
    `told as a lost answer, not as the handler's failure: ${JSON.stringify(told)}`,
  );
  assert.is(offset, 10);
  void network;
});

// A handler that wraps its answer's failure (a common pattern) is retried: its effect is done again.
s("a handler that wraps the lost answer's error is not run again", async () => {
  const { hub } = pair({ hub: { deliveryLimit: 3 } });
  let offset = 0;
  hub.onSetClock(async (m, ctx) => {
    offset += m.offset ?? 0;
    try {
      await ctx.respond(200, 'moved');
    } catch (err) {
      throw new Error(`set_clock: could not answer: ${(err as Error).message}`, { cause: err });
    }
  });
  await hub.start();
  const t = hub.transport;
  t.sendFailure = () => new Error('312 NO_ROUTE');
  await deliver(t, setClock(1, 10), { messageId: 'm' });
  await t.network.idle();
  assert.is(offset, 10, `the clock moved ${offset / 10} times`);
  await hub.close();
});

// A report larger than 4 KiB that could not be sent is not owed: the peer's retry of the request (same message id /
// msg_id) is a duplicate and gets no answer at all, not even an error saying it must ask again.
s("a large reply that could not be sent is not owed: the peer's retry runs the handler again and gets it", async () => {
  const { hub } = pair();
  let calls = 0;
  hub.onGetReport(async (q, ctx) => {
    calls++;
    const values: Record<string, number[]> = {};
    for (let i = 0; i < 50; i++) values[`dev${i}.p`] = Array.from({ length: 96 }, (_, k) => k * 1.5);
    await ctx.reply({ msg: 'report', from: q.from, to: q.to, resolution: q.resolution, values });
  });
  await hub.start();
  const t = hub.transport;
  const ask = getReport(5, 96, 'dev0.p');
  t.sendFailure = () => new Error('312 NO_ROUTE');
  await deliver(t, ask, { messageId: 'q1' });
  await t.network.idle();
  t.sendFailure = undefined;
  await deliver(t, ask, { messageId: 'q1' }); // the peer's retry (Connector.request keeps the message id)
  await t.network.idle();
  assert.is(calls, 2, 'a read, run again for the retry');
  assert.equal(
    t.sent.map((x) => x.properties.type),
    ['report'],
    `the retry gets the report; settlements ${JSON.stringify(t.settlements.map((x) => x.outcome))}`,
  );
  await hub.close();
});

// An owed functional reply that the broker refuses again when the retry collects it: told as what it is (a report),
// not as a `response`, so that an operator's log names the answer that is still owed.
s('an owed reply refused again is told with its own type', async () => {
  const { hub } = pair();
  let calls = 0;
  hub.onGetReport(async (q, ctx) => {
    calls++;
    await ctx.reply({ msg: 'report', from: q.from, to: q.to, resolution: q.resolution, values: { 'm.p': [1] } });
  });
  const told: string[] = [];
  hub.on('handler-error', (_e, type) => told.push(type));
  await hub.start();
  const t = hub.transport;
  const ask = getReport(6, 1, 'm.p');
  t.sendFailure = () => new Error('312 NO_ROUTE');
  await deliver(t, ask, { messageId: 'q1' });
  await t.network.idle();
  await deliver(t, ask, { messageId: 'q1' }); // the retry collects the owed report, and the broker refuses it again
  await t.network.idle();
  t.sendFailure = undefined;
  await deliver(t, ask, { messageId: 'q1' }); // owed still: this copy gets it
  await t.network.idle();
  assert.is(calls, 1, 'the handler ran once');
  assert.equal(told, ['report', 'report']);
  assert.equal(
    t.sent.map((x) => x.properties.type),
    ['report'],
  );
  await hub.close();
});

// docs/bus.md: at most 1,000 owed answers, the oldest forgotten first (receive.ts's #owed).
s('at most 1,000 answers are owed: the 1,001st forgets the oldest', async () => {
  const { hub } = pair({ hub: { budget: false } }); // a burst of 1,001 from one peer: the budget would refuse the last
  hub.onSetClock(async (_m, ctx) => {
    await ctx.respond(200, 'moved');
  });
  await hub.start();
  const t = hub.transport;
  t.sendFailure = () => new Error('312 NO_ROUTE');
  for (let n = 1; n <= 1_001; n++) await deliver(t, setClock(n), { messageId: `m${n}` });
  await t.network.idle();
  t.sendFailure = undefined;
  await deliver(t, setClock(1), { messageId: 'm1' }); // forgotten: a duplicate with nothing owed
  await deliver(t, setClock(2), { messageId: 'm2' });
  await t.network.idle();
  assert.equal(
    t.sent.map((x) => x.properties.correlationId),
    ['m2'],
  );
  await hub.close();
});

// Held: a copy arriving while the first's answer is in flight waits; it gets the owed answer once, correlated to it.
s('a copy during the in-flight answer: one handler run, one answer each outcome', async () => {
  for (const fails of [true, false]) {
    const { hub } = pair();
    let calls = 0;
    hub.onSetClock(async (_m, ctx) => {
      calls++;
      await ctx.respond(200, 'moved');
    });
    await hub.start();
    const t = hub.transport;
    const g = gate();
    let held = 0;
    t.sendHold = async () => {
      held++;
      if (held === 1) await g.wait;
    };
    let tries = 0;
    t.sendFailure = () => (fails && ++tries === 1 ? new Error('312 NO_ROUTE') : undefined);
    const a = deliver(t, setClock(1, 10), { messageId: 'm' });
    await until(() => held === 1);
    const b = deliver(t, setClock(1, 10), { messageId: 'm2' });
    await new Promise((r) => setTimeout(r, 20));
    g.open();
    await a;
    await b;
    await t.network.idle();
    assert.is(calls, 1);
    assert.equal(
      t.sent.map((x) => x.properties.correlationId),
      fails ? ['m2'] : ['m'],
    );
    await hub.close();
  }
});

// Sealed: the keyring does not let us send `response` to this peer (or its key is not in force): the answer can never
// be sealed, the handler's effect is done, yet it is run again up to the delivery limit (CryptoError = "its own").
s('an answer the keyring refuses to seal: the handler runs once', async () => {
  const keys = sealers(HUB, VPP, ['report'], ['set_clock'], Date.now);
  const { hub } = pair({ hub: { sealer: keys.a, deliveryLimit: 3 }, vpp: { sealer: keys.b } });
  let offset = 0;
  let err = '';
  hub.onSetClock(async (m, ctx) => {
    offset += m.offset ?? 0;
    await ctx.respond(200, 'moved').catch((e) => {
      err = `${(e as Error).constructor.name} ${(e as Error).message}`;
      throw e;
    });
  });
  await hub.start();
  const t = hub.transport;
  const envelope = await keys.b.seal({ peer: HUB }, 'set_clock', encode(setClock(1, 10)));
  await t.inject({
    body: envelope,
    routingKey: 'set_clock',
    properties: {
      messageId: uuid(1),
      type: 'set_clock',
      contentType: CONTENT_TYPE_SEALED,
      headers: { 'x-ebadge-dm': '3.1' },
    },
  });
  await t.network.idle();
  assert.is(offset, 10, `the clock moved ${offset / 10} times (${err})`);
  await hub.close();
});

s.run();
