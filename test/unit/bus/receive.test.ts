/**
 * The Connector's receive pipeline without a broker (src/bus/receive.ts, dispatch.ts), over the in-memory transport:
 * what is refused before any handler (unknown sender, data model version, codec failures answered with their code
 * when the msg_id is known), duplicates acked and dropped, a copy arriving while the first is in flight waiting for
 * its outcome, failing handlers retried up to deliveryLimit then dead-lettered with one 500, exactly one response
 * per msg_id, and a handler deciding the ack itself. test/integration/bus-failures.test.ts proves the same against
 * RabbitMQ; these cover the logic fast and deterministically.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CONTENT_TYPE_SEALED, settle } from '../../../src/bus/index.js';
import { EbTime, encode, type Message } from '../../../src/codec/index.js';
import {
  deliver,
  gate,
  HUB,
  json,
  pair,
  responses,
  sealers,
  sentJson,
  until,
  uuid,
  VPP,
} from '../../helpers/memory-bus.js';

const setClock = (n: number, offset = 1): Message<'set_clock'> => ({ msg: 'set_clock', offset, msg_id: uuid(n) });

const s = suite('receive: refused before any handler');

s('a delivery the transport vouches for no sender is dead-lettered UNKNOWN_SENDER, never handled', async () => {
  const { hub } = pair();
  const handled: unknown[] = [];
  hub.onSetClock((m) => {
    handled.push(m);
  });
  const dead: string[] = [];
  const reasons: string[] = [];
  hub.on('dead-letter', (reason, code) => {
    dead.push(code);
    reasons.push(reason);
  });
  await hub.start();
  const t = hub.transport;
  const settled = await deliver(t, setClock(1), { from: undefined, messageId: 'x1' });
  assert.is(settled.outcome, 'dead');
  assert.is(settled.code, 'UNKNOWN_SENDER');
  assert.equal(dead, ['UNKNOWN_SENDER']);
  // Who it was, as the message says of itself: what an operator needs to find a peer left out of `peers`.
  assert.equal(reasons, ['the sender is not a configured peer (routing key "set_clock", app_id "vpp-unit")']);
  assert.equal(handled, []);
  assert.equal(t.sent, [], 'nobody to answer');
  await hub.close();
});

s('a data model version other than 3.x is refused (VERSION) and dead-lettered; 3.0 and none are taken', async () => {
  const { hub } = pair();
  const handled: number[] = [];
  hub.onSetClock((m) => {
    handled.push(m.offset ?? 0);
  });
  await hub.start();
  const t = hub.transport;
  const v4 = await deliver(t, setClock(1, 1), { messageId: 'a', headers: { 'x-ebadge-dm': '4.0' } });
  assert.equal([v4.outcome, v4.code], ['dead', 'VERSION']);
  assert.match(v4.reason ?? '', /data model version 4\.0 is not supported \(this is 3\.1\)/);
  // A header of the sender's choosing goes into the refusal (and its answer) cut short.
  const long = await deliver(t, setClock(4, 4), {
    messageId: 'd',
    headers: { 'x-ebadge-dm': `9${'x'.repeat(10_000)}` },
  });
  assert.is(long.reason, `data model version 9${'x'.repeat(31)}... is not supported (this is 3.1)`);
  assert.is((await deliver(t, setClock(2, 2), { messageId: 'b', headers: { 'x-ebadge-dm': '3.0' } })).outcome, 'ack');
  assert.is((await deliver(t, setClock(3, 3), { messageId: 'c', headers: {} })).outcome, 'ack');
  assert.equal(handled, [2, 3]);
  await hub.close();
});

s(
  'codec failures never reach a handler: dead-lettered with DECODE_<code>, answered with the code when the msg_id is known',
  async () => {
    const { hub } = pair();
    const handled: string[] = [];
    hub.onGetReport(() => {
      handled.push('get_report');
    });
    hub.onSetClock(() => {
      handled.push('set_clock');
    });
    await hub.start();
    const t = hub.transport;
    const cases: { name: string; raw: string; code: string; answered?: [number, string] }[] = [
      { name: 'not JSON', raw: '{"msg": "set_clock", ', code: 'DECODE_400' },
      {
        name: 'an unknown type with a msg_id',
        raw: JSON.stringify({ msg: 'make_coffee', msg_id: uuid(10) }),
        code: 'DECODE_453',
        answered: [453, uuid(10)],
      },
      {
        name: 'a field of the wrong type, msg_id in upper case',
        raw: JSON.stringify({ msg: 'set_clock', offset: 'soon', msg_id: uuid(11).toUpperCase() }),
        code: 'DECODE_400',
        answered: [400, uuid(11)],
      },
      {
        name: 'a required field missing, no msg_id',
        raw: JSON.stringify({ msg: 'get_report', from: '2026-01-01T00:00:00Z' }),
        code: 'DECODE_400',
      },
    ];
    for (const c of cases) {
      const before = t.sent.length;
      const settled = await deliver(t, { msg: 'set_clock' }, { raw: c.raw, messageId: `m-${c.name}` });
      assert.equal([settled.outcome, settled.code], ['dead', c.code], c.name);
      const sent = t.sent.slice(before);
      if (c.answered === undefined) {
        assert.equal(sent, [], `${c.name}: no msg_id, no response`);
        continue;
      }
      assert.is(sent.length, 1, c.name);
      const r = json(sent[0] as (typeof sent)[0]);
      assert.equal([r['msg'], r['response_code'], r['msg_id']], ['response', ...c.answered], c.name);
      assert.is(sent[0]?.properties.correlationId, `m-${c.name}`, `${c.name}: correlated with the refused message`);
    }
    assert.equal(handled, [], 'no handler saw any of them');
    assert.equal(t.deadLetters.length, cases.length);
    // The next good message is handled.
    assert.is((await deliver(t, setClock(12), { messageId: 'good' })).outcome, 'ack');
    assert.equal(handled, ['set_clock']);
    await hub.close();
  },
);

s('a sealed body with no keyring configured is dead-lettered NO_KEY', async () => {
  const { hub } = pair();
  await hub.start();
  const t = hub.transport;
  const settled = await t.inject({
    body: Buffer.from([1, 2, 3]),
    properties: { messageId: 'sealed', contentType: 'application/vnd.ebadge.heh-e2e', type: 'set_clock' },
  });
  assert.equal([settled.outcome, settled.code], ['dead', 'NO_KEY']);
  await hub.close();
});

const d = suite('receive: duplicates');

d(
  'the same message id twice: handled once, answered once, the copy acked and dropped with a duplicate event',
  async () => {
    const { hub } = pair();
    let calls = 0;
    hub.onSetClock(() => {
      calls++;
    });
    const dups: string[] = [];
    hub.on('duplicate', (id, sender) => dups.push(`${id} from ${sender}`));
    await hub.start();
    const t = hub.transport;
    assert.is((await deliver(t, setClock(1), { messageId: 'same' })).outcome, 'ack');
    assert.is((await deliver(t, setClock(1), { messageId: 'same' })).outcome, 'ack');
    assert.is(calls, 1);
    assert.equal(dups, [`same from ${VPP}`]);
    assert.equal(responses(t), [[200, uuid(1)]]);
    // Without a transport message id the msg_id is the identity; a response's msg_id never is.
    assert.is((await deliver(t, setClock(2))).outcome, 'ack');
    assert.is((await deliver(t, setClock(2))).outcome, 'ack');
    assert.is(calls, 2, 'the same msg_id without a message id: a duplicate too');
    // A foreign peer's retry: the same msg_id and body under a new message id property (data model §3.5 rule 4).
    assert.is((await deliver(t, setClock(3), { messageId: 'first' })).outcome, 'ack');
    assert.is((await deliver(t, setClock(3), { messageId: 'retry' })).outcome, 'ack');
    assert.is(calls, 3, 'the msg_id names the message, whatever message id property each copy has');
    assert.equal(dups.at(-1), `retry from ${VPP}`);
    assert.equal(responses(t), [
      [200, uuid(1)],
      [200, uuid(2)],
      [200, uuid(3)],
    ]);
    await hub.close();
  },
);

d('a peer that reuses a message id for another message: each is handled; only a true copy is dropped', async () => {
  // A careless peer: a counter for message ids that starts again after a restart, or an id that never changes.
  const { hub } = pair();
  const offsets: (number | null)[] = [];
  hub.onSetClock((m) => {
    offsets.push(m.offset);
  });
  await hub.start();
  const t = hub.transport;
  for (const offset of [1, 2, 3]) assert.is((await deliver(t, setClock(7, offset), { messageId: '1' })).outcome, 'ack');
  assert.is((await deliver(t, setClock(7, 2), { messageId: '1' })).outcome, 'ack', 'a copy of the second');
  assert.equal(offsets, [1, 2, 3], 'three messages handled, the copy dropped');
  assert.equal(
    responses(t).map(([code]) => code),
    [200, 200, 200],
  );
  // The same msg_id in two different bodies, no message id: two messages as well.
  assert.is((await deliver(t, setClock(9, 4))).outcome, 'ack');
  assert.is((await deliver(t, setClock(9, 5))).outcome, 'ack');
  assert.is((await deliver(t, setClock(9, 5))).outcome, 'ack');
  assert.equal(offsets, [1, 2, 3, 4, 5], 'the copy of the last dropped');
  await hub.close();
});

d('a retry serialised anew is a copy, not a second order: what it says counts, not its bytes', async () => {
  // A Python peer's retry: json.dumps again with other separators, sort_keys, 30.0 for 30, the UUID in upper case.
  const { hub } = pair();
  const offsets: (number | null)[] = [];
  hub.onSetClock((m) => {
    offsets.push(m.offset);
  });
  await hub.start();
  const t = hub.transport;
  const id = uuid(11);
  const bodies = [
    `{"msg": "set_clock", "offset": 30, "msg_id": "${id}"}`,
    `{"msg":"set_clock","offset":30,"msg_id":"${id}"}`,
    `{"msg_id": "${id}", "msg": "set_clock", "offset": 30.0}`,
    `{ "msg" : "set_clock" , "offset" : 3e1 , "msg_id" : "${id.toUpperCase()}" , "x_note" : "retry" }`,
  ];
  for (const raw of bodies) {
    assert.is((await deliver(t, { msg: 'set_clock' }, { raw, messageId: `m-${raw.length}` })).outcome, 'ack', raw);
  }
  assert.equal(offsets, [30], 'handled once');
  assert.equal(responses(t), [[200, id]]);
  // The same id saying something else is another message (a peer that reuses ids), handled.
  await deliver(t, { msg: 'set_clock' }, { raw: `{"msg":"set_clock","offset":31,"msg_id":"${id}"}` });
  assert.equal(offsets, [30, 31]);
  await hub.close();
});

d(
  "a peer that sets no message id property: the answers' correlation_id is the msg_id or request_id answered (§3.8)",
  async () => {
    const { hub } = pair();
    hub.onSetClock(() => undefined);
    hub.onGetStatusReport((_m, ctx) => ctx.respond(461, 'no such thing here'));
    await hub.start();
    const t = hub.transport;
    const corr = () => t.sent.at(-1)?.properties.correlationId;
    // Handled: the 200 for its msg_id.
    await deliver(t, setClock(21));
    assert.equal([responses(t).at(-1), corr()], [[200, uuid(21)], uuid(21)]);
    // Refused before any handler (no such type here), and refused by a handler: the same.
    await deliver(t, { msg: 'get_report', msg_id: uuid(22) }, { raw: `{"msg":"unknown_type","msg_id":"${uuid(22)}"}` });
    assert.equal(corr(), uuid(22));
    const window = { from: '2026-01-01T00:00:00Z', to: '2026-01-01T01:00:00Z', severity_threshold: 0 };
    await deliver(
      t,
      { msg: 'get_status_report' },
      {
        raw: JSON.stringify({ msg: 'get_status_report', ...window, request_id: uuid(23) }),
      },
    );
    assert.equal(corr(), uuid(23), 'only a request_id: that');
    // A message id property, when there is one, is what the answer names (our peers set it to the msg_id).
    await deliver(t, setClock(24), { messageId: 'prop-24' });
    assert.equal(corr(), 'prop-24');
    await hub.close();
  },
);

d('duplicates are remembered for the dedupe TTL of the injected clock, then forgotten', async () => {
  const { hub, clock } = pair({ hub: { dedupe: { ttlMs: 60_000 } } });
  let calls = 0;
  hub.onSetClock(() => {
    calls++;
  });
  await hub.start();
  const t = hub.transport;
  await deliver(t, setClock(1), { messageId: 'same' });
  await clock.advance(59_000);
  await deliver(t, setClock(1), { messageId: 'same' });
  assert.is(calls, 1, 'within the TTL: a duplicate');
  await clock.advance(2 * 60_000 + 1);
  await deliver(t, setClock(1), { messageId: 'same' });
  assert.is(calls, 2, 'two TTLs later: a new message');
  await hub.close();
});

d(
  'a copy that arrives while the first is in flight waits for its outcome: acked as a duplicate after a success',
  async () => {
    const { hub } = pair();
    const g = gate();
    let calls = 0;
    hub.onSetClock(async () => {
      calls++;
      await g.wait;
    });
    await hub.start();
    const t = hub.transport;
    const first = deliver(t, setClock(1), { messageId: 'same' });
    const copy = deliver(t, setClock(1), { messageId: 'same' });
    await until(() => t.unsettled === 2 && calls === 1);
    await settle(20);
    assert.is(calls, 1, 'the copy did not start a second handler');
    assert.is(t.unsettled, 2, 'both wait: the first in its handler, the copy for its outcome');
    g.open();
    assert.equal([(await first).outcome, (await copy).outcome], ['ack', 'ack']);
    assert.is(calls, 1);
    assert.equal(responses(t), [[200, uuid(1)]], 'one response');
    await hub.close();
  },
);

d(
  'sealed, a message id property other than its msg_id: a copy redelivered while the first runs is handled after it fails',
  async () => {
    for (const messageId of [uuid(61), 'not-the-msg-id']) {
      const keys = sealers(HUB, VPP, ['response'], ['set_clock'], Date.now);
      const { hub } = pair({ hub: { sealer: keys.a }, vpp: { sealer: keys.b } });
      const g = gate();
      let calls = 0;
      let succeeded = 0;
      hub.onSetClock(async () => {
        calls++;
        if (calls === 1) {
          await g.wait;
          throw new Error('the first attempt fails');
        }
        succeeded++;
      });
      await hub.start();
      const t = hub.transport;
      const envelope = await keys.b.seal(
        { peer: HUB },
        'set_clock',
        encode({ msg: 'set_clock', offset: 1, msg_id: uuid(61) } as Message),
      );
      void t.inject({
        body: envelope,
        routingKey: 'set_clock',
        properties: {
          messageId,
          type: 'set_clock',
          contentType: CONTENT_TYPE_SEALED,
          headers: { 'x-ebadge-dm': '3.1' },
        },
      });
      await until(() => calls === 1);
      // The connection drops while the handler runs: the broker gives the delivery back, and delivers it again.
      t.disconnect();
      t.reconnect();
      for (let i = 0; i < 100; i++) await new Promise((r) => setImmediate(r));
      g.open();
      await t.network.idle();
      assert.is(succeeded, 1, `property ${messageId}: handled once its first attempt failed, not acked as a duplicate`);
      await hub.close();
    }
  },
);

d(
  'a peer whose message id property never changes: its reply to a request made in a handler is not held back',
  async () => {
    const { vpp } = pair();
    const T = EbTime.parse('2026-01-01T00:00:00Z');
    let got: unknown;
    vpp.onSetClock(async () => {
      got = (
        await vpp.request(
          HUB,
          { msg: 'get_status_report', from: T, to: T.plusSeconds(60), severity_threshold: 0, request_id: uuid(71) },
          { timeout: 60_000 },
        )
      ).msg;
    });
    await vpp.start();
    const t = vpp.transport;
    const properties = (type: string) => ({ messageId: '1', type, contentType: 'application/json', headers: {} });
    const first = t.inject({
      from: HUB,
      routingKey: 'set_clock',
      body: Buffer.from(encode({ msg: 'set_clock', offset: 1, msg_id: uuid(70) } as Message)),
      properties: properties('set_clock'),
    });
    await until(() => t.network.queued(HUB).length > 0);
    void t.inject({
      from: HUB,
      routingKey: 'status_report',
      body: Buffer.from(
        encode({ msg: 'status_report', status: 'ok', clock: T, events: [], request_id: uuid(71) } as Message),
      ),
      properties: properties('status_report'),
    });
    assert.is((await first).outcome, 'ack', 'the handler got its reply and finished');
    assert.is(got, 'status_report');
    await vpp.close();
  },
);

d('a copy that arrives while the first is in flight is handled itself when the first failed', async () => {
  const { hub } = pair();
  const g = gate();
  let calls = 0;
  hub.onSetClock(async () => {
    calls++;
    if (calls === 1) {
      await g.wait;
      throw new Error('first attempt fails');
    }
  });
  const errors: boolean[] = [];
  hub.on('handler-error', (_e, _type, final) => errors.push(final));
  await hub.start();
  const t = hub.transport;
  const first = deliver(t, setClock(1), { messageId: 'same' });
  const copy = deliver(t, setClock(1), { messageId: 'same' });
  await until(() => t.unsettled === 2 && calls === 1);
  g.open();
  assert.is((await first).outcome, 'retry');
  assert.is((await copy).outcome, 'ack', 'the copy is the message now');
  await t.network.idle();
  // The retried first copy comes back and is a duplicate of the copy that succeeded.
  assert.equal(
    t.settlements.map((x) => x.outcome),
    ['retry', 'ack', 'ack'],
  );
  assert.is(calls, 2);
  assert.equal(errors, [false]);
  assert.equal(responses(t), [[200, uuid(1)]]);
  await hub.close();
});

const f = suite('dispatch: failing handlers, one response per msg_id');

f('a handler that throws twice then succeeds gets the message 3 times; acked and answered 200 once', async () => {
  for (const countDeliveries of [true, false]) {
    const { hub } = pair({ countDeliveries });
    const counts: number[] = [];
    hub.onSetClock((_m, ctx) => {
      counts.push(ctx.delivery.deliveryCount);
      if (counts.length < 3) throw new Error(`attempt ${counts.length}`);
    });
    await hub.start();
    const t = hub.transport;
    await deliver(t, setClock(1), { messageId: 'm' });
    await t.network.idle();
    const what = countDeliveries ? 'quorum queue' : 'classic queue';
    assert.equal(
      t.settlements.map((x) => x.outcome),
      ['retry', 'retry', 'ack'],
      what,
    );
    assert.equal(counts, countDeliveries ? [0, 1, 2] : [0, 0, 0], `${what}: the delivery counts seen`);
    assert.equal(responses(t), [[200, uuid(1)]], what);
    await hub.close();
  }
});

f(
  'a handled message whose 200 the broker refuses (NO_ROUTE, a nack): acked, remembered, never handled again',
  async () => {
    for (const countDeliveries of [true, false]) {
      const what = countDeliveries ? 'quorum queue' : 'classic queue';
      const { hub } = pair({ countDeliveries });
      let calls = 0;
      hub.onSetClock(() => {
        calls++;
      });
      const told: [string, string, boolean][] = [];
      hub.on('handler-error', (e, type, final) => told.push([String((e as Error).message), type, final]));
      await hub.start();
      const t = hub.transport;
      // The peer's inbox is unbound: every answer to it comes back.
      t.sendFailure = () => new Error('312 NO_ROUTE');
      await deliver(t, setClock(1), { messageId: 'm' });
      await t.network.idle();
      assert.equal(
        t.settlements.map((x) => x.outcome),
        ['ack'],
        `${what}: acked once, not redelivered`,
      );
      assert.is(calls, 1, `${what}: the handler ran once`);
      assert.equal(told, [['312 NO_ROUTE', 'response', false]], `${what}: the lost answer is told`);
      // A copy is the duplicate it is: not handled again. The 200 it is owed is tried again, and refused again.
      await deliver(t, setClock(1), { messageId: 'm' });
      await t.network.idle();
      assert.is(calls, 1, what);
      assert.is(told.length, 2, `${what}: the owed 200 tried again with the copy`);
      // The same for the 453 of a type nobody handles here.
      await deliver(t, { msg: 'set_smart_mode', mode: 'passive', reset: false, msg_id: uuid(9) }, { messageId: 'n' });
      await t.network.idle();
      assert.equal(
        t.settlements.map((x) => x.outcome),
        ['ack', 'ack', 'ack'],
        what,
      );
      assert.equal(responses(t), [], `${what}: nothing got through`);
      // The peer's inbox is back. Its retry of the message (a new message id property, the same msg_id) is still
      // a duplicate, never handled again, and it gets the 200 it is owed, correlated to the retry; once.
      t.sendFailure = undefined;
      await deliver(t, setClock(1), { messageId: 'retry-1' });
      await deliver(t, setClock(1), { messageId: 'retry-2' });
      await t.network.idle();
      assert.is(calls, 1, what);
      assert.equal(responses(t), [[200, uuid(1)]], `${what}: the owed 200, once`);
      assert.is(t.sent[0]?.properties.correlationId, 'retry-1', what);
      assert.equal(t.problems, [], what);
      await hub.close();
    }
  },
);

f(
  "a handler whose own answer the broker refuses, thrown on: handled once (its effect is not done again), acked, the answer owed to the peer's retry",
  async () => {
    for (const countDeliveries of [true, false]) {
      const what = countDeliveries ? 'quorum queue' : 'classic queue';
      const { hub } = pair({ countDeliveries });
      let offset = 0;
      hub.onSetClock(async (m, ctx) => {
        offset += m.offset ?? 0; // not idempotent, as the hub's own set_clock
        await ctx.respond(200, `clock moved by ${m.offset}`);
      });
      const told: [string, string][] = [];
      hub.on('handler-error', (e, type) => told.push([String((e as Error).message), type]));
      await hub.start();
      const t = hub.transport;
      t.sendFailure = () => new Error('312 NO_ROUTE');
      await deliver(t, setClock(1, 10), { messageId: 'm' });
      await t.network.idle();
      assert.equal(
        t.settlements.map((x) => [x.outcome, x.code]),
        [['ack', undefined]],
        `${what}: acked, neither retried nor dead-lettered`,
      );
      assert.is(offset, 10, `${what}: the clock moved once`);
      assert.equal(told, [['312 NO_ROUTE', 'response']], what);
      t.sendFailure = undefined;
      await deliver(t, setClock(1, 10), { messageId: 'retry' });
      await deliver(t, setClock(1, 10), { messageId: 'retry-2' });
      await t.network.idle();
      assert.is(offset, 10, `${what}: a retry is a duplicate`);
      assert.equal(
        sentJson(t).map((m) => [m['response_code'], m['response_desc'], m['msg_id']]),
        [[200, 'clock moved by 10', uuid(1)]],
        `${what}: the handler's own answer, owed, sent once`,
      );
      await hub.close();
    }
  },
);

f(
  'a handler whose answer is invalid, or that fails for its own reasons after an answer failed, is retried',
  async () => {
    const { hub } = pair({ hub: { deliveryLimit: 3 } });
    let calls = 0;
    hub.onSetClock(async (m, ctx) => {
      calls++;
      if (m.offset === 1) await ctx.reply({ msg: 'no_such_type' } as unknown as Message);
      await ctx.respond(200).catch(() => undefined);
      if (m.offset === 2) throw new Error('its own failure');
    });
    await hub.start();
    const t = hub.transport;
    t.sendFailure = () => new Error('312 NO_ROUTE');
    await deliver(t, setClock(1, 1), { messageId: 'a' });
    await deliver(t, setClock(2, 2), { messageId: 'b' });
    await t.network.idle();
    assert.is(calls, 6, 'each ran up to the delivery limit (3)');
    assert.equal(
      t.deadLetters.map((x) => x.code),
      ['HANDLER_FAILED', 'HANDLER_FAILED'],
    );
    await hub.close();
  },
);

f('a handler that always throws: dead-lettered after deliveryLimit with the error, one 500 response', async () => {
  for (const countDeliveries of [true, false]) {
    const what = countDeliveries ? 'quorum queue' : 'classic queue (the connector counts)';
    const { hub } = pair({ countDeliveries, hub: { deliveryLimit: 3 } });
    let calls = 0;
    hub.onSetClock(() => {
      calls++;
      throw new Error('the actuator is on fire');
    });
    const finals: boolean[] = [];
    hub.on('handler-error', (_e, type, final) => {
      assert.is(type, 'set_clock');
      finals.push(final);
    });
    await hub.start();
    const t = hub.transport;
    await deliver(t, setClock(1), { messageId: 'm' });
    await t.network.idle();
    assert.is(calls, 3, what);
    assert.equal(finals, [false, false, true], what);
    assert.equal(
      t.settlements.map((x) => x.outcome),
      ['retry', 'retry', 'dead'],
      what,
    );
    const dead = t.deadLetters[0];
    assert.is(dead?.code, 'HANDLER_FAILED', what);
    assert.match(dead?.reason ?? '', /the handler failed 3 times: Error: the actuator is on fire/);
    const sent = t.sent.map(json);
    assert.is(sent.length, 1, `${what}: one response`);
    assert.equal([sent[0]?.['response_code'], sent[0]?.['msg_id']], [500, uuid(1)]);
    assert.match(String(sent[0]?.['response_desc']), /^set_clock failed 3 times: the actuator is on fire/);
    // The same message again later: a duplicate, not a fourth attempt.
    await deliver(t, setClock(1), { messageId: 'm' });
    assert.is(calls, 3, `${what}: the dead-lettered message is remembered`);
    await hub.close();
  }
});

f(
  'exactly one response per msg_id: respond twice, reply with a response, then the connector: one is sent',
  async () => {
    const { hub } = pair();
    hub.onSetClock(async (m, ctx) => {
      await ctx.respond(451, 'not now');
      await ctx.respond(200);
      await ctx.reply({ msg: 'response', msg_id: m.msg_id ?? null, response_code: 202, response_desc: 'again' });
    });
    hub.onSetSmartMode(async (_m, ctx) => {
      await ctx.reply({ msg: 'response', msg_id: null, response_code: 200, response_desc: 'a reply of my own' });
    });
    await hub.start();
    const t = hub.transport;
    await deliver(t, setClock(1), { messageId: 'a' });
    assert.equal(responses(t), [[451, uuid(1)]], 'the first answer only; no automatic 200 after it');
    await deliver(t, { msg: 'set_smart_mode', mode: 'passive', reset: false, msg_id: uuid(2) }, { messageId: 'b' });
    assert.equal(
      responses(t).slice(1),
      [
        [200, null],
        [200, uuid(2)],
      ],
      "a response with msg_id null answers something else: the msg_id still gets the connector's 200",
    );
    await hub.close();
  },
);

f('a response is never answered, and a type nobody handles is answered 453 and acked', async () => {
  const { hub } = pair();
  const unhandled: string[] = [];
  hub.on('unhandled', (m, sender) => unhandled.push(`${m.msg} ${sender}`));
  await hub.start();
  const t = hub.transport;
  const r = { msg: 'response', msg_id: uuid(1), response_code: 200, response_desc: 'OK' };
  assert.is((await deliver(t, r, { messageId: 'r' })).outcome, 'ack');
  assert.is((await deliver(t, setClock(2), { messageId: 's' })).outcome, 'ack');
  assert.equal(unhandled, [`response ${VPP}`, `set_clock ${VPP}`]);
  assert.equal(responses(t), [[453, uuid(2)]]);
  assert.match(String(t.sent.map(json)[0]?.['response_desc']), new RegExp(`set_clock is not handled by ${HUB}`));
  await hub.close();
});

f('ctx.ack(), ctx.nack() and ctx.nack(false): the handler decides, the connector adds nothing', async () => {
  const { hub } = pair();
  const seen: number[] = [];
  hub.onSetClock((m, ctx) => {
    seen.push(m.offset ?? 0);
    if (m.offset === 1) ctx.ack();
    if (m.offset === 2 && !ctx.delivery.redelivered) ctx.nack();
    if (m.offset === 3) ctx.nack(false);
  });
  await hub.start();
  const t = hub.transport;
  assert.is((await deliver(t, setClock(1, 1), { messageId: 'a' })).outcome, 'ack');
  assert.is((await deliver(t, setClock(2, 2), { messageId: 'b' })).outcome, 'retry');
  await t.network.idle();
  assert.is((await deliver(t, setClock(3, 3), { messageId: 'c' })).outcome, 'dead');
  assert.equal(seen, [1, 2, 2, 3]);
  assert.is(t.deadLetters[0]?.code, 'NACKED');
  assert.equal(responses(t), [[200, uuid(2)]], 'only the message the connector acked itself is answered');
  assert.equal(t.problems, [], 'nothing settled twice');
  await hub.close();
});

s.run();
d.run();
f.run();
