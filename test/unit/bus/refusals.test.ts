/**
 * Refusals, answered or not (issue 15, items 3 and 4; docs/bus.md, "Refusals"), over the in-memory transport: a
 * refusal is answered with a `response` carrying its code whenever the message can be identified (a msg_id, or msg_id
 * null with the request_id or id echoed, data model §3.5 rule 3), whichever layer found it; never what is not
 * authenticated, or what someone on the way altered. The routing key's first word and the type property must name
 * the message's type: clear text is answered 400, a sealed message whose wrappers were changed is only refused.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { AmqpTransport, BusError, CONTENT_TYPE_SEALED, type MemoryTransport } from '../../../src/bus/index.js';
import { identify } from '../../../src/bus/protocol.js';
import { EbTime, EncodeError, encode, type Message } from '../../../src/codec/index.js';
import { type ReplayGuard, ReplayStateError, type Sealer } from '../../../src/crypto/index.js';
import { deliver, HUB, json, pair, responses, sealers, until, uuid, VPP } from '../../helpers/memory-bus.js';

const FROM = EbTime.parse('2026-01-01T00:00:00Z');
const TO = FROM.plusSeconds(900);

const activate = (count: number, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  msg: 'activate',
  id: uuid(7),
  modification_count: count,
  from: FROM.toString(),
  to: TO.toString(),
  quantity: 1,
  device: null,
  ...extra,
});

/** The same activate as a typed message, to encode. */
const activateMessage = (count: number, extra: Record<string, unknown> = {}): Message =>
  ({ ...activate(count, extra), from: FROM, to: TO }) as unknown as Message;

let deliveries = 0;

/** Delivers a raw JSON body with the routing key and type property given (absent: the body's msg). */
function raw(
  t: MemoryTransport,
  body: Record<string, unknown> | string,
  o: { routingKey?: string; type?: string | null; messageId?: string; headers?: Record<string, unknown> } = {},
): ReturnType<MemoryTransport['inject']> {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  const msg = typeof body === 'string' ? 'set_clock' : String(body['msg']);
  return t.inject({
    body: text,
    routingKey: o.routingKey ?? msg,
    properties: {
      messageId: o.messageId ?? `m${++deliveries}`,
      ...(o.type === null ? {} : { type: o.type ?? msg }),
      contentType: 'application/json',
      headers: o.headers ?? { 'x-ebadge-dm': '3.1' },
    },
  });
}

/** What the transport sent since `before`, as JSON. */
const sentSince = (t: MemoryTransport, before: number): Record<string, unknown>[] =>
  t.sent.slice(before).map((o) => json(o));

const r = suite('refusals: answered when they can be identified (§3.5 rule 3)');

r('codec refusals without a msg_id are answered with msg_id null and the id or request_id echoed', async () => {
  const { hub } = pair();
  const handled: string[] = [];
  hub.onActivate((m) => {
    handled.push(m.msg);
  });
  hub.onGetReport((m) => {
    handled.push(m.msg);
  });
  await hub.start();
  const t = hub.transport;
  const cases: { name: string; body: Record<string, unknown>; code: number; echo: Record<string, string> }[] = [
    { name: 'modification_count -1', body: activate(-1), code: 454, echo: { id: uuid(7) } },
    { name: 'modification_count 1.5', body: activate(1.5), code: 400, echo: { id: uuid(7) } },
    { name: 'modification_count 2^60', body: activate(2 ** 60), code: 400, echo: { id: uuid(7) } },
    {
      name: 'get_report, resolution 0',
      body: {
        msg: 'get_report',
        from: FROM.toString(),
        to: TO.toString(),
        resolution: 0,
        signals: ['total.p'],
        request_id: uuid(8).toUpperCase(),
      },
      code: 454,
      echo: { request_id: uuid(8) },
    },
  ];
  for (const c of cases) {
    const before = t.sent.length;
    const settled = await raw(t, c.body, { messageId: c.name });
    assert.is(settled.outcome, 'dead', c.name);
    assert.match(settled.code ?? '', /^DECODE_4/, c.name);
    const sent = sentSince(t, before);
    assert.is(sent.length, 1, `${c.name}: answered`);
    const { response_desc: _desc, ...answer } = sent[0] as Record<string, unknown>;
    assert.equal(
      answer,
      {
        msg: 'response',
        msg_id: null,
        response_code: settled.code === 'DECODE_454' ? 454 : 400,
        ref_msg: c.body['msg'],
        ...c.echo,
      },
      c.name,
    );
    assert.is(t.sent.at(-1)?.properties.correlationId, c.name, `${c.name}: correlated`);
  }
  assert.equal(handled, []);
  // Nothing to identify it by: only dead-lettered (an answer nobody can match is noise).
  const before = t.sent.length;
  const anonymous = await raw(t, { msg: 'get_report', from: FROM.toString(), to: TO.toString(), resolution: 0 });
  assert.equal([anonymous.outcome, anonymous.code], ['dead', 'DECODE_454']);
  assert.equal(sentSince(t, before), []);
  await hub.close();
});

r(
  'a refused message sent again (its id, body and mistake): acked as a duplicate, one response per msg_id',
  async () => {
    const { hub } = pair();
    const dead: string[] = [];
    const duplicates: string[] = [];
    hub.on('dead-letter', (_reason, code) => dead.push(code));
    hub.on('duplicate', (id) => duplicates.push(id));
    const handled: unknown[] = [];
    hub.onSetClock((m) => {
      handled.push(m.offset);
    });
    await hub.start();
    const t = hub.transport;
    const bad = { msg: 'set_clock', offset: 'x', msg_id: uuid(30) };
    const before = t.sent.length;
    for (let i = 0; i < 3; i++) {
      const settled = await raw(t, bad, { messageId: 'copy-1' });
      assert.is(settled.outcome, i === 0 ? 'dead' : 'ack', `copy ${i}`);
    }
    // The same mistake without a message_id property: its msg_id names the copies.
    const noId = { msg: 'set_clock', offset: 'y', msg_id: uuid(31) };
    for (let i = 0; i < 2; i++)
      await t.inject({
        body: JSON.stringify(noId),
        routingKey: 'set_clock',
        properties: { type: 'set_clock', contentType: 'application/json', headers: { 'x-ebadge-dm': '3.1' } },
      });
    // Another version (459), refused twice as well, answered once.
    const v2 = { msg: 'set_clock', offset: 1, msg_id: uuid(32) };
    for (let i = 0; i < 2; i++) await raw(t, v2, { messageId: 'copy-2', headers: { 'x-ebadge-dm': '4.0' } });
    assert.equal(
      sentSince(t, before).map((m) => [m['response_code'], m['msg_id']]),
      [
        [400, uuid(30)],
        [400, uuid(31)],
        [459, uuid(32)],
      ],
    );
    assert.equal(dead, ['DECODE_400', 'DECODE_400', 'VERSION']);
    assert.equal(duplicates, ['copy-1', 'copy-1', uuid(31), 'copy-2']);
    // The same id and body with the mistake fixed (a routing key set right) is handled: another message, not a copy.
    const smart = { msg: 'set_clock', offset: 2, msg_id: uuid(33) };
    assert.is((await raw(t, smart, { messageId: 'copy-3', routingKey: 'report' })).outcome, 'dead');
    assert.is((await raw(t, smart, { messageId: 'copy-3' })).outcome, 'ack');
    assert.equal(handled, [2]);
    await hub.close();
  },
);

r('a refusal the broker would not take is owed: the refused message sent again gets it, once', async () => {
  const { hub } = pair();
  const told: string[] = [];
  hub.on('handler-error', (err, type) => told.push(`${type}: ${(err as Error).message}`));
  await hub.start();
  const t = hub.transport;
  const bad = { msg: 'set_clock', offset: 'x', msg_id: uuid(34) };
  t.sendFailure = () => new Error('312 NO_ROUTE');
  assert.is((await raw(t, bad, { messageId: 'first' })).outcome, 'dead');
  assert.equal(told, ['response: 312 NO_ROUTE']);
  t.sendFailure = undefined;
  const before = t.sent.length;
  for (const id of ['again-1', 'again-2']) assert.is((await raw(t, bad, { messageId: id })).outcome, 'ack', id);
  assert.equal(
    sentSince(t, before).map((m) => [m['response_code'], m['msg_id']]),
    [[400, uuid(34)]],
    'the 400, with the first copy sent again, and only then',
  );
  assert.is(t.sent[before]?.properties.correlationId, 'again-1');
  assert.is(t.deadLetters.length, 1, 'dead-lettered once');
  await hub.close();
});

r('an unsupported data model version is answered 459 when identified, and only dead-lettered when not', async () => {
  const { hub } = pair();
  hub.onSetClock(() => undefined);
  await hub.start();
  const t = hub.transport;
  const v4 = { 'x-ebadge-dm': '4.0' };
  const settled = await raw(t, { msg: 'set_clock', offset: 1, msg_id: uuid(1) }, { headers: v4, messageId: 'v4' });
  assert.equal([settled.outcome, settled.code], ['dead', 'VERSION']);
  assert.equal(
    [json(t.sent[0] as { body: Uint8Array })['response_code'], json(t.sent[0] as { body: Uint8Array })['msg_id']],
    [459, uuid(1)],
  );
  const quiet = await raw(t, { msg: 'set_clock', offset: 1 }, { headers: v4 });
  assert.equal([quiet.outcome, quiet.code, t.sent.length], ['dead', 'VERSION', 1]);
  await hub.close();
});

r(
  'a refusal whose delivery is lost before its dead letter is answered once, when the message comes again',
  async () => {
    const { network, hub } = pair();
    await hub.start();
    const t = hub.transport;
    // The connection drops as the first delivery is dead-lettered: that dead letter does nothing (MQTT cannot send its
    // PUBACK any more; AMQP's reject goes nowhere), the message comes again and is refused again.
    let drops = 1;
    t.deadLetterFailure = () => {
      if (drops-- > 0) {
        t.disconnect();
        setImmediate(() => t.reconnect());
      }
      return undefined;
    };
    void raw(t, { msg: 'make_coffee', msg_id: uuid(30) }, { messageId: 'coffee' });
    await until(() => t.deadLetters.length === 1);
    await network.idle();
    assert.is(drops, -1, 'the dead letter was tried twice: the first delivery was lost');
    assert.equal(
      t.settlements.map((x) => [x.outcome, x.code]),
      [['dead', 'DECODE_453']],
    );
    assert.equal(responses(t), [[453, uuid(30)]], 'answered once: after the dead letter that counted');
    assert.equal(t.problems, []);
  },
);

r("a handler's error and the last failure answer a message without msg_id by its request_id, once", async () => {
  const { hub } = pair({ hub: { deliveryLimit: 1 } });
  hub.onGetReport((_m, ctx) => ctx.respond(461, 'too fine'));
  hub.onGetStatusReport(() => {
    throw new Error('the disk is gone');
  });
  hub.onSetClock((_m, ctx) => ctx.respond(200));
  await hub.start();
  const t = hub.transport;
  const get = {
    msg: 'get_report',
    from: FROM.toString(),
    to: TO.toString(),
    resolution: 1,
    signals: ['total.p'],
    request_id: uuid(2),
  };
  assert.is((await raw(t, get)).outcome, 'ack');
  const status = { msg: 'get_status_report', from: FROM.toString(), to: TO.toString(), severity_threshold: 0 };
  assert.is((await raw(t, { ...status, request_id: uuid(3) })).outcome, 'dead');
  // 200 without a msg_id is no error: nothing to answer.
  assert.is((await raw(t, { msg: 'set_clock', offset: 1 })).outcome, 'ack');
  assert.equal(
    sentSince(t, 0).map((m) => [m['response_code'], m['msg_id'], m['ref_msg'], m['request_id']]),
    [
      [461, null, 'get_report', uuid(2)],
      [500, null, 'get_status_report', uuid(3)],
    ],
  );
  await hub.close();
});

r('identify() reads the type and ids of a refused body from its prefix; a response or no id gives none', () => {
  const at = (s: string): unknown => identify(Buffer.from(s));
  assert.equal(at(`{"msg":"activate","id":"${uuid(1).toUpperCase()}","x":[1,{"id":"no"}]`), {
    msg: 'activate',
    id: uuid(1),
  });
  assert.equal(at(`{"request_id":"${uuid(2)}","ext":{"msg_id":"${uuid(3)}"},"msg":"get_report"}`), {
    msg: 'get_report',
    request_id: uuid(2),
  });
  assert.is(at(`{"msg":"response","msg_id":null,"request_id":"${uuid(2)}"}`), undefined, 'a response');
  assert.is(at(`{"msg":"activate","id":"not-a-uuid"}`), undefined, 'no usable id');
  assert.is(at(`{"id":"${uuid(1)}"}`), undefined, 'no type');
});

const w = suite('refusals: routing key and type property (item 4)');

w('clear text: a routing key or type property naming another type is answered 400 and never handled', async () => {
  const { hub } = pair();
  const handled: string[] = [];
  hub.onActivate((m) => {
    handled.push(m.msg);
  });
  hub.onSetSmartMode((m) => {
    handled.push(m.msg);
  });
  const dead: string[] = [];
  hub.on('dead-letter', (reason, code) => dead.push(`${code}: ${reason}`));
  await hub.start();
  const t = hub.transport;
  // Each its own msg_id: the same msg_id, body and mistake again would be a copy (acked, not answered twice).
  const smartAs = (n: number) => ({ msg: 'set_smart_mode', mode: 'passive', reset: false, msg_id: uuid(n) });
  const smart = smartAs(4);
  const cases: [string, Record<string, unknown>, Parameters<typeof raw>[2], string, unknown][] = [
    ['activate as load_price', activate(1), { routingKey: 'load_price' }, 'ROUTING_KEY_MISMATCH', null],
    ['set_smart_mode as report.heh-x', smart, { routingKey: 'report.heh-x' }, 'ROUTING_KEY_MISMATCH', uuid(4)],
    ['an empty routing key', smartAs(5), { routingKey: '' }, 'ROUTING_KEY_MISMATCH', uuid(5)],
    ['a prefix of the type', smartAs(6), { routingKey: 'set_smart' }, 'ROUTING_KEY_MISMATCH', uuid(6)],
    ['type property load_price', activate(1), { type: 'load_price' }, 'TYPE_MISMATCH', null],
  ];
  for (const [name, body, o, code, msgId] of cases) {
    const before = t.sent.length;
    const settled = await raw(t, body, o);
    assert.equal([settled.outcome, settled.code], ['dead', code], name);
    const sent = sentSince(t, before);
    assert.equal(
      sent.map((m) => [m['response_code'], m['msg_id'], m['ref_msg']]),
      [[400, msgId, body['msg']]],
      name,
    );
  }
  assert.match(dead[0] ?? '', /ROUTING_KEY_MISMATCH: the routing key 'load_price' does not name activate/);
  assert.match(dead.at(-1) ?? '', /TYPE_MISMATCH: the type property 'load_price' is not activate/);
  assert.equal(handled, []);
  // Right: `<msg>` or `<msg>.<anything>`, and a clear message may leave the type property out.
  assert.is((await raw(t, activate(1), { routingKey: 'activate.heh-unit' })).outcome, 'ack');
  assert.is((await raw(t, smart, { type: null, messageId: 'no-type' })).outcome, 'ack');
  assert.equal(handled, ['activate', 'set_smart_mode']);
  await hub.close();
});

/** The hub (`a`) and the VPP (`b`) with keys; the VPP may send activate and set_clock. */
function sealedPair(): { keys: { a: Sealer; b: Sealer } } & ReturnType<typeof pair> {
  const keys = sealers(HUB, VPP, ['response', 'report'], ['activate', 'set_clock'], Date.now);
  return { keys, ...pair({ hub: { sealer: keys.a }, vpp: { sealer: keys.b } }) };
}

function sealedDelivery(
  t: MemoryTransport,
  envelope: Uint8Array,
  o: { routingKey: string; type: string | undefined; messageId: string },
): ReturnType<MemoryTransport['inject']> {
  return t.inject({
    body: envelope,
    routingKey: o.routingKey,
    properties: {
      messageId: o.messageId,
      ...(o.type === undefined ? {} : { type: o.type }),
      contentType: CONTENT_TYPE_SEALED,
      headers: { 'x-ebadge-dm': '3.1' },
    },
  });
}

w(
  'sealed: an altered routing key or type property is refused with its own code, unanswered; the genuine copy counts',
  async () => {
    const { hub, keys } = sealedPair();
    const handled: number[] = [];
    hub.onActivate((m) => {
      handled.push(m.modification_count);
    });
    const dead: string[] = [];
    hub.on('dead-letter', (reason, code) => dead.push(`${code}: ${reason}`));
    await hub.start();
    const t = hub.transport;
    const envelope = await keys.b.seal({ peer: HUB }, 'activate', encode(activateMessage(1)));
    const altered: [string, { routingKey: string; type: string | undefined }, string][] = [
      ['routing key', { routingKey: 'load_price', type: 'activate' }, 'ROUTING_KEY_ALTERED'],
      ['empty routing key', { routingKey: '', type: 'activate' }, 'ROUTING_KEY_ALTERED'],
      ['type property', { routingKey: 'activate', type: 'load_price' }, 'TYPE_ALTERED'],
      ['no type property', { routingKey: 'activate', type: undefined }, 'TYPE_ALTERED'],
    ];
    for (const [name, o, code] of altered) {
      const settled = await sealedDelivery(t, envelope, { ...o, messageId: name });
      assert.equal([settled.outcome, settled.code], ['dead', code], name);
    }
    assert.equal(t.sent, [], 'nothing answered');
    assert.equal(handled, []);
    assert.match(
      dead[0] ?? '',
      /ROUTING_KEY_ALTERED: the routing key 'load_price' does not name the sealed type activate/,
    );
    assert.match(dead[2] ?? '', /TYPE_ALTERED: the type property 'load_price' is not the sealed type activate/);
    // The refusals did not use up the envelope's sequence: the genuine copy is handled.
    const genuine = await sealedDelivery(t, envelope, { routingKey: 'activate.x', type: 'activate', messageId: 'ok' });
    assert.is(genuine.outcome, 'ack');
    assert.equal(handled, [1]);
    await hub.close();
  },
);

w("sealed: the replay state's refusal (a 65th instance number) is dead-lettered with its own code", async () => {
  const full: ReplayGuard = {
    check: () => {
      throw new ReplayStateError('TOO_MANY_SENDERS', 'refusing sender x: it numbers its messages for more than 64');
    },
    accept: () => undefined,
    persist: async () => undefined,
  };
  const keys = sealers(HUB, VPP, ['response', 'report'], ['activate', 'set_clock'], Date.now, {}, { replay: full });
  const { hub } = pair({ hub: { sealer: keys.a }, vpp: { sealer: keys.b } });
  hub.onActivate(() => undefined);
  const dead: string[] = [];
  hub.on('dead-letter', (_reason, code) => dead.push(code));
  await hub.start();
  const envelope = await keys.b.seal({ peer: HUB }, 'activate', encode(activateMessage(1)));
  const settled = await sealedDelivery(hub.transport, envelope, {
    routingKey: 'activate',
    type: 'activate',
    messageId: 'm',
  });
  assert.equal([settled.outcome, settled.code, dead], ['dead', 'TOO_MANY_SENDERS', ['TOO_MANY_SENDERS']]);
  await hub.close();
});

w(
  'sealed: what the signer got wrong is answered sealed, once; what is not authenticated is never answered',
  async () => {
    const { hub, keys } = sealedPair();
    hub.onActivate(() => undefined);
    hub.onSetClock(() => undefined);
    await hub.start();
    const t = hub.transport;
    // Authenticated, invalid: answered 454 (sealed to the VPP), and a replay of it is a duplicate, not answered again.
    const bad = await keys.b.seal({ peer: HUB }, 'activate', Buffer.from(JSON.stringify(activate(-1))));
    const o = { routingKey: 'activate', type: 'activate' };
    const settled = await sealedDelivery(t, bad, { ...o, messageId: 'bad' });
    assert.equal([settled.outcome, settled.code], ['dead', 'DECODE_454']);
    assert.is(t.sent.length, 1);
    assert.is(t.sent[0]?.properties.contentType, CONTENT_TYPE_SEALED);
    const opened = keys.b.open(t.sent[0]?.body as Uint8Array);
    const answer = JSON.parse(Buffer.from(opened.payload).toString('utf8')) as Record<string, unknown>;
    assert.equal([answer['response_code'], answer['msg_id'], answer['id']], [454, null, uuid(7)]);
    assert.is((await sealedDelivery(t, bad, { ...o, messageId: 'again' })).outcome, 'ack', 'a duplicate');
    assert.is(t.sent.length, 1, 'not answered twice');
    // Not authenticated: a broken envelope, clear text from a peer with keys, a header outside the envelope.
    const broken = Buffer.from(await keys.b.seal({ peer: HUB }, 'set_clock', encode({ msg: 'set_clock', offset: 1 })));
    broken.writeUInt8((broken.at(-1) as number) ^ 1, broken.length - 1);
    const st = { routingKey: 'set_clock', type: 'set_clock' };
    assert.is((await sealedDelivery(t, broken, { ...st, messageId: uuid(9) })).outcome, 'dead');
    const clear = await deliver(t, { msg: 'set_clock', offset: 1, msg_id: uuid(10) }, { messageId: uuid(10) });
    assert.equal([clear.outcome, clear.code], ['dead', 'NOT_SEALED']);
    assert.match(t.deadLetters.at(-1)?.reason ?? '', `${VPP} has keys in our keyring but sent in the clear`);
    // An envelope under another content type (a foreign client's octet-stream): refused, and said so.
    const envelope = await keys.b.seal({ peer: HUB }, 'set_clock', encode({ msg: 'set_clock', offset: 2 }));
    const mislabelled = await t.inject({
      body: envelope,
      routingKey: 'set_clock',
      properties: { ...st, messageId: uuid(12), contentType: 'application/octet-stream', headers: {} },
    });
    assert.equal([mislabelled.outcome, mislabelled.code], ['dead', 'NOT_SEALED']);
    assert.match(
      t.deadLetters.at(-1)?.reason ?? '',
      `${VPP} sent a sealed body without the content type ${CONTENT_TYPE_SEALED} (it had application/octet-stream)`,
    );
    const v4 = await keys.b.seal(
      { peer: HUB },
      'set_clock',
      encode({ msg: 'set_clock', offset: 1, msg_id: uuid(11) } as Message),
    );
    const version = await t.inject({
      body: v4,
      routingKey: 'set_clock',
      properties: { ...st, messageId: uuid(11), contentType: CONTENT_TYPE_SEALED, headers: { 'x-ebadge-dm': '4.0' } },
    });
    assert.equal([version.outcome, version.code], ['dead', 'VERSION']);
    assert.is(t.sent.length, 1, 'none of them answered');
    await hub.close();
  },
);

w(
  'our senders name the type in both: publish sets them from the message, publishEncoded refuses a mismatch',
  async () => {
    const { hub, vpp } = pair();
    await Promise.all([hub.start(), vpp.start()]);
    await vpp.publish(HUB, activateMessage(1, { heh_id: 'heh-unit' }));
    const sent = vpp.transport.sent[0];
    assert.equal([sent?.routingKey, sent?.properties.type], ['activate.heh-unit', 'activate']);
    let err: unknown;
    try {
      await vpp.publishEncoded(HUB, 'activate', encode(activateMessage(1)), {
        routingKey: 'load_price',
        messageId: uuid(1),
      });
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof BusError && err.code === 'INVALID_MESSAGE', String(err));
    assert.match(String(err), /the routing key 'load_price' does not name activate/);
    assert.is(vpp.transport.sent.length, 1, 'nothing more sent');
    // The first version's queues: the routing key is the queue's name, so it is not checked there.
    const queues = new AmqpTransport({ name: HUB, peers: [VPP], topology: 'queues' });
    const exchanges = new AmqpTransport({ name: HUB, peers: [VPP] });
    assert.equal([queues.capabilities.routingKeyNamesType, exchanges.capabilities.routingKeyNamesType], [false, true]);
    await Promise.all([hub.close(), vpp.close()]);
  },
);

w(
  'what is not a message is refused before anything is sent: a typed error, never a TypeError from inside the bus',
  async () => {
    const { hub, vpp } = pair();
    await Promise.all([hub.start(), vpp.start()]);
    const refusal = async (p: Promise<unknown>): Promise<Error> => {
      try {
        await p;
      } catch (err) {
        return err as Error;
      }
      throw new Error('accepted');
    };
    const cases: [unknown, string][] = [
      [null, 'got null'],
      ['activate', 'got string'],
      [{ msg: 'launch_rockets' }, 'got msg "launch_rockets"'],
      [{ id: 1 }, 'got msg undefined'],
    ];
    for (const [m, got] of cases) {
      for (const p of [vpp.publish(HUB, m as Message), vpp.request(HUB, m as Message)]) {
        const err = await refusal(p);
        assert.ok(err instanceof BusError && err.code === 'INVALID_MESSAGE', String(err));
        assert.match(err.message, got);
      }
    }
    // A message missing a field that a check across fields reads (from before to) names that field.
    const missing = await refusal(vpp.publish(HUB, { msg: 'activate' } as Message));
    assert.ok(missing instanceof EncodeError, String(missing));
    assert.match(missing.message, 'activate.id: required field missing');
    for (const timeout of [-1, 0, Number.NaN]) {
      const err = await refusal(vpp.request(HUB, activateMessage(1), { timeout }));
      assert.ok(err instanceof BusError && err.code === 'CONFIG', String(err));
    }
    assert.is(vpp.transport.sent.length, 0, 'nothing sent');
    await Promise.all([hub.close(), vpp.close()]);
  },
);

r.run();
w.run();
