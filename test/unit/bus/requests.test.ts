/**
 * request() and its reply without a broker (src/bus/requests.ts), between two connectors over the in-memory transport
 * with a ManualClock: replies matched by request_id, by (id, modification_count), by msg_id and its response, by the
 * first version's period and device, and by correlation_id; error responses reject REJECTED with the reply; timeouts
 * on the injected clock; CLOSED on close; a send that fails fails its request; and end-to-end sealing on the way.
 * test/integration/bus-messages.test.ts and bus-sealed.test.ts prove the same against RabbitMQ.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  BusError,
  CONTENT_TYPE_SEALED,
  Connector,
  MemoryNetwork,
  type Outgoing,
  settle,
} from '../../../src/bus/index.js';
import { EbTime, encode, type Message } from '../../../src/codec/index.js';
import { CryptoError } from '../../../src/crypto/index.js';
import { deliver, HUB, pair, sealers, soon, until, uuid, VPP } from '../../helpers/memory-bus.js';

const T0 = EbTime.parse('2026-01-01T00:00:00Z');
const CAPS = (devices: string[]): Message<'capabilities'> => ({
  msg: 'capabilities',
  device_name: 'unit',
  device_version: '1',
  devices,
});

/** The REJECTED error a request ended with; fails if it resolved. */
async function rejected(p: Promise<unknown>): Promise<BusError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof BusError) return err;
    throw err;
  }
  throw new Error('expected the request to fail');
}

/** An aggregator connector, and a hub that is not one of ours: it sends what it likes, with no correlation_id. */
async function foreignHub(): Promise<{
  network: MemoryNetwork;
  vpp: Connector;
  send: (m: Message | string, type?: string) => Promise<void>;
  unhandled: string[];
}> {
  const network = new MemoryNetwork();
  const vpp = new Connector({ transport: network.transport({ name: VPP, peers: [HUB] }) });
  const hubT = network.transport({ name: HUB, peers: [VPP] });
  const unhandled: string[] = [];
  vpp.on('unhandled', (x) => unhandled.push(x.msg));
  await vpp.start();
  let sent = 0;
  // A message, or a raw body of the type given (what a foreign encoder wrote).
  const send = (m: Message | string, type: string = typeof m === 'string' ? 'report' : m.msg): Promise<void> =>
    hubT.send({
      to: VPP,
      routingKey: type,
      body: typeof m === 'string' ? Buffer.from(m) : encode(m),
      properties: {
        messageId: `h${++sent}`,
        type,
        contentType: 'application/json',
        timestamp: new Date(),
        appId: HUB,
        headers: {},
      },
    });
  return { network, vpp, send, unhandled };
}

const m = suite('request: matching the reply');

m('get_report: by request_id, set when absent; two at once answered in reverse order', async () => {
  const { hub, vpp } = pair();
  const held: { resolve: () => void; m: Message<'get_report'> }[] = [];
  hub.onGetReport(async (q, ctx) => {
    await new Promise<void>((resolve) => held.push({ resolve, m: q }));
    await ctx.reply({
      msg: 'report',
      from: q.from,
      to: q.to,
      resolution: q.resolution,
      values: { [q.signals[0] as string]: [1] },
    });
  });
  await hub.start();
  await vpp.start();
  const ask = (signal: string, requestId?: string): Promise<Message> =>
    vpp.request(HUB, {
      msg: 'get_report',
      from: T0,
      to: T0.plusSeconds(900),
      resolution: 900,
      signals: [signal],
      ...(requestId === undefined ? {} : { request_id: requestId }),
    });
  const a = ask('a.p');
  const b = ask('b.p', uuid(7));
  await until(() => held.length === 2);
  assert.match(held[0]?.m.request_id ?? '', /^[0-9a-f-]{36}$/, 'request_id set when absent');
  assert.is(held[1]?.m.request_id, uuid(7), 'a request_id given is kept');
  held[1]?.resolve();
  held[0]?.resolve();
  const [ra, rb] = (await soon(Promise.all([a, b]))) as Message<'report'>[];
  assert.equal(Object.keys(ra?.values ?? {}), ['a.p']);
  assert.equal(Object.keys(rb?.values ?? {}), ['b.p']);
  assert.is(rb?.request_id, uuid(7));
  await Promise.all([hub.close(), vpp.close()]);
});

m(
  'activate: by (id, modification_count); accept and reject resolve, a response refusing the id rejects REJECTED',
  async () => {
    const { hub, vpp } = pair();
    // Answered as a 2015 peer does, without correlation_id: only the activation's own keys can match the replies.
    hub.onActivate(async (a, ctx) => {
      const send = (reply: Message): Promise<void> => hub.publish(ctx.sender, reply);
      const ids = { id: a.id, modification_count: a.modification_count };
      if (a.quantity < 0) return send({ msg: 'reject_activation', ...ids, code: 451, reason: 'no' });
      if (a.quantity === 0)
        return send({
          msg: 'response',
          msg_id: null,
          response_code: 450,
          response_desc: 'stale',
          ref_msg: 'activate',
          id: a.id,
        });
      // An answer for another count of the same id first: it must not settle this request.
      await send({ msg: 'accept_activation', id: a.id, modification_count: a.modification_count + 7 });
      return send({ msg: 'accept_activation', ...ids });
    });
    const unhandled: string[] = [];
    vpp.on('unhandled', (x) =>
      unhandled.push(`${x.msg} ${String((x as { modification_count?: number }).modification_count)}`),
    );
    await hub.start();
    await vpp.start();
    const activate = (id: string, count: number, quantity: number): Promise<Message> =>
      vpp.request(HUB, {
        msg: 'activate',
        id,
        modification_count: count,
        from: T0,
        to: T0.plusSeconds(900),
        quantity,
        device: null,
      });
    assert.equal(await soon(activate(uuid(1), 3, 1)), { msg: 'accept_activation', id: uuid(1), modification_count: 3 });
    assert.equal(unhandled, ['accept_activation 10'], 'the other count went to the handlers, not to this request');
    const r = await soon(activate(uuid(2), 0, -1));
    assert.equal([r.msg, (r as Message<'reject_activation'>).code], ['reject_activation', 451], 'a reject is a reply');
    const e = await soon(rejected(activate(uuid(3), 1, 0)));
    assert.is(e.code, 'REJECTED');
    assert.equal([e.reply?.msg, (e.reply as Message<'response'>).response_code], ['response', 450]);
    assert.match(e.message, new RegExp(`^${HUB} answered 450 stale$`));
    await Promise.all([hub.close(), vpp.close()]);
  },
);

for (const correlated of [true, false]) {
  m(
    `two counts of one activation at once: a refusal naming only the id settles the request it answers (${correlated ? 'correlation_id set, as the bus does' : 'no correlation_id, as a 2015 peer: the oldest'})`,
    async () => {
      const { hub, vpp } = pair();
      // The hub refuses count 1 (a 451 response, msg_id null, its id only) and accepts count 2, in that order.
      const held: (() => void)[] = [];
      hub.onActivate(async (a, ctx) => {
        if (a.modification_count === 2)
          return ctx.reply({ msg: 'accept_activation', id: a.id, modification_count: a.modification_count });
        await new Promise<void>((resolve) => held.push(resolve));
        if (correlated) return ctx.respond(451, 'the hub is off');
        return hub.publish(ctx.sender, {
          msg: 'response',
          msg_id: null,
          response_code: 451,
          response_desc: 'the hub is off',
          ref_msg: 'activate',
          id: a.id,
        });
      });
      await hub.start();
      await vpp.start();
      const activate = (count: number): Promise<Message> =>
        vpp.request(HUB, {
          msg: 'activate',
          id: uuid(1),
          modification_count: count,
          from: T0,
          to: T0.plusSeconds(900),
          quantity: 1,
          device: null,
        });
      const one = rejected(activate(1));
      await until(() => held.length === 1);
      const two = activate(2);
      (held.shift() as () => void)();
      const e = await soon(one);
      assert.equal([e.code, (e.reply as Message<'response'>).response_code], ['REJECTED', 451], 'count 1 refused');
      assert.equal(
        await soon(two),
        { msg: 'accept_activation', id: uuid(1), modification_count: 2 },
        'count 2 accepted',
      );
      await Promise.all([hub.close(), vpp.close()]);
    },
  );
}

m('the same activation requested twice at once: both requests get the decision', async () => {
  const { hub, vpp } = pair();
  // Two messages (two message ids): the hub answers each with the same decision, in order.
  const held: (() => void)[] = [];
  hub.onActivate(async (a, ctx) => {
    await new Promise<void>((resolve) => held.push(resolve));
    return ctx.reply({ msg: 'accept_activation', id: a.id, modification_count: a.modification_count });
  });
  await hub.start();
  await vpp.start();
  const activate = (): Promise<Message> =>
    vpp.request(HUB, {
      msg: 'activate',
      id: uuid(1),
      modification_count: 4,
      from: T0,
      to: T0.plusSeconds(900),
      quantity: 1,
      device: null,
    });
  const both = Promise.all([activate(), activate()]);
  await until(() => held.length === 2);
  (held[0] as () => void)();
  await settle(20);
  (held[1] as () => void)();
  const expected = { msg: 'accept_activation', id: uuid(1), modification_count: 4 };
  assert.equal(await soon(both), [expected, expected]);
  await Promise.all([hub.close(), vpp.close()]);
});

m(
  'the same ids asking something else while the first waits: refused INVALID_MESSAGE, not given its reply',
  async () => {
    const { hub, vpp } = pair();
    const held: (() => void)[] = [];
    hub.onGetReport(async (q, ctx) => {
      await new Promise<void>((resolve) => held.push(resolve));
      await ctx.reply({ msg: 'report', from: q.from, to: q.to, resolution: q.resolution, values: { 'meter.p': [1] } });
    });
    hub.onActivate((a, ctx) => ctx.reply({ msg: 'accept_activation', id: a.id, modification_count: 0 }));
    await hub.start();
    await vpp.start();
    const ask = { request_id: uuid(7), from: T0, to: T0.plusSeconds(60), signals: ['meter.p'] };
    const first = vpp.request(HUB, { msg: 'get_report', ...ask, resolution: 60 });
    await until(() => held.length === 1);
    const other = await rejected(vpp.request(HUB, { msg: 'get_report', ...ask, resolution: 300 }));
    assert.is(other.code, 'INVALID_MESSAGE');
    assert.match(other.message, 'a request with the same ids (req:');
    // The same ask with its fields in another order joins the first.
    const { request_id, from, to, signals } = ask;
    const retry = vpp.request(HUB, { resolution: 60, signals, to, from, request_id, msg: 'get_report' });
    // The same object sent twice, a msg_id of its own and no request_id: one made for each copy, and still a retry.
    const once: Message<'get_report'> = { msg: 'get_report', msg_id: uuid(9), from, to, resolution: 60, signals };
    const twice = [vpp.request(HUB, once), vpp.request(HUB, once)];
    await settle(20);
    (held[0] as () => void)();
    const [a, b] = (await soon(Promise.all([first, retry]))) as Message<'report'>[];
    assert.equal([a?.resolution, b?.resolution, a?.request_id], [60, 60, uuid(7)]);
    await until(() => held.length >= 2);
    for (const release of held) release();
    const [c, d] = (await soon(Promise.all(twice))) as Message<'report'>[];
    assert.equal([c?.msg, d?.msg], ['report', 'report']);
    // An activation with the same (id, modification_count) and another quantity.
    const act = (quantity: number): Message<'activate'> => ({
      msg: 'activate',
      id: uuid(8),
      modification_count: 0,
      from: T0,
      to: T0.plusSeconds(900),
      quantity,
      device: null,
    });
    const a1 = vpp.request(HUB, act(1));
    assert.is((await rejected(vpp.request(HUB, act(2)))).code, 'INVALID_MESSAGE');
    await soon(a1);
    for (const release of held) release(); // the retry's copy, if the hub did not drop it as a duplicate
    await Promise.all([hub.close(), vpp.close()]);
  },
);

m(
  "set_clock with a msg_id: the connector's 200 resolves it; a handler's ctx.respond(451) rejects REJECTED",
  async () => {
    const { hub, vpp } = pair();
    hub.onSetClock((q, ctx) => (q.offset === 0 ? ctx.respond(451, 'not allowed') : undefined));
    await hub.start();
    await vpp.start();
    const ok = (await soon(vpp.request(HUB, { msg: 'set_clock', offset: 5 }))) as Message<'response'>;
    assert.equal([ok.msg, ok.response_code, ok.ref_msg], ['response', 200, 'set_clock']);
    assert.match(ok.msg_id ?? '', /^[0-9a-f-]{36}$/, 'msg_id set when absent');
    const e = await soon(rejected(vpp.request(HUB, { msg: 'set_clock', offset: 0, msg_id: uuid(9) })));
    assert.equal(
      [e.code, (e.reply as Message<'response'>).response_code, (e.reply as Message<'response'>).msg_id],
      ['REJECTED', 451, uuid(9)],
    );
    await Promise.all([hub.close(), vpp.close()]);
  },
);

m('a type that is never answered (contingency_activate): refused INVALID_MESSAGE before sending', async () => {
  const { hub, vpp } = pair();
  // The hub acts on it and acks nothing (§3.5): the request used to time out, "outcome unknown", after it ran.
  const taken: string[] = [];
  hub.onContingencyActivate((q) => {
    taken.push(q.id);
  });
  await hub.start();
  await vpp.start();
  const contingency: Message<'contingency_activate'> = {
    msg: 'contingency_activate',
    id: uuid(1),
    from: T0,
    to: T0.plusSeconds(900),
    max_quantity: 1,
  };
  const e = await soon(rejected(vpp.request(HUB, contingency)));
  assert.is(e.code, 'INVALID_MESSAGE');
  assert.match(e.message, /contingency_activate is never answered .*publish\(\)/);
  assert.is(vpp.transport.sent.length, 0, 'nothing sent');
  await soon(vpp.publish(HUB, contingency));
  await until(() => taken.length === 1);
  await Promise.all([hub.close(), vpp.close()]);
});

m('get_load_report (the first version, no ids): by period and device', async () => {
  const { hub, vpp } = pair();
  // The first version sets no correlation_id either: only the period and device can match.
  hub.onGetLoadReport((q, ctx) =>
    hub.publish(ctx.sender, {
      msg: 'load_report',
      from: q.from,
      to: q.to,
      resolution: q.resolution,
      device: q.device ?? null,
      values: [q.device === 'boiler' ? 2 : 1],
    }),
  );
  await hub.start();
  await vpp.start();
  const ask = (device: string | null): Promise<Message> =>
    vpp.request(HUB, { msg: 'get_load_report', from: T0, to: T0.plusSeconds(900), resolution: 900, device });
  const [all, boiler] = (await soon(Promise.all([ask(null), ask('boiler')]))) as Message<'load_report'>[];
  assert.equal([all?.device, all?.values], [null, [1]]);
  assert.equal([boiler?.device, boiler?.values], ['boiler', [2]]);
  await Promise.all([hub.close(), vpp.close()]);
});

m('correlation_id alone: a reply that carries no id of the request still settles it', async () => {
  const { hub, vpp } = pair();
  hub.onGetCapabilities(async (_q, ctx) => {
    // Published by hand, without the request_id ctx.reply would echo: only the transport's correlation_id links it.
    await hub.publish(ctx.sender, CAPS(['x']), {
      ...(ctx.delivery.messageId === undefined ? {} : { correlationId: ctx.delivery.messageId }),
    });
  });
  await hub.start();
  await vpp.start();
  const r = (await soon(vpp.request(HUB, { msg: 'get_capabilities', device: null }))) as Message<'capabilities'>;
  assert.equal([r.msg, r.devices, r.request_id], ['capabilities', ['x'], undefined]);
  await Promise.all([hub.close(), vpp.close()]);
});

m(
  'a peer that acks the msg_id before its functional reply: the 200 does not settle the request, the reply does',
  async () => {
    const { network, vpp, send, unhandled } = await foreignHub();
    const ok = (msgId: string): Message => ({
      msg: 'response',
      msg_id: msgId,
      response_code: 200,
      response_desc: 'OK',
    });
    // An activation with a msg_id (§3.5 rule 2 advises against it; a careless aggregator does it anyway).
    const decision = vpp.request(HUB, {
      msg: 'activate',
      id: uuid(40),
      modification_count: 0,
      from: T0,
      to: T0.plusSeconds(900),
      quantity: 1,
      device: null,
      msg_id: uuid(41),
    });
    let settled = false;
    void decision.then(() => {
      settled = true;
    });
    await send(ok(uuid(41)));
    await until(() => network.queued(VPP).length === 0);
    await settle(5);
    assert.not.ok(settled, 'the ack of the msg_id is not the decision');
    await send({ msg: 'accept_activation', id: uuid(40), modification_count: 0 });
    assert.is((await soon(decision)).msg, 'accept_activation');
    // A report asked for with a msg_id too: the report is the answer.
    const report = vpp.request(HUB, {
      msg: 'get_report',
      from: T0,
      to: T0.plusSeconds(60),
      resolution: 60,
      signals: ['total.p'],
      request_id: uuid(42),
      msg_id: uuid(43),
    });
    await send(ok(uuid(43)));
    await send({
      msg: 'report',
      from: T0,
      to: T0.plusSeconds(60),
      resolution: 60,
      values: { 'total.p': [1] },
      request_id: uuid(42),
    });
    assert.is((await soon(report)).msg, 'report');
    // An error response still refuses such a request at once.
    const refused = vpp.request(HUB, {
      msg: 'activate',
      id: uuid(44),
      modification_count: 0,
      from: T0,
      to: T0.plusSeconds(900),
      quantity: 1,
      device: null,
      msg_id: uuid(45),
    });
    await send({ msg: 'response', msg_id: uuid(45), response_code: 450, response_desc: 'stale' });
    assert.is((await rejected(soon(refused))).code, 'REJECTED');
    // A command whose only answer is the ack is settled by it.
    const clock = vpp.request(HUB, { msg: 'set_clock', offset: 1, msg_id: uuid(46) });
    await send(ok(uuid(46)));
    assert.is((await soon(clock)).msg, 'response');
    assert.equal(unhandled, [], 'each ack was taken as the ack of its request, not handed to the application');
    await vpp.close();
  },
);

m('a foreign hub: modify_activation settles the activation by (id, count), without a correlation_id', async () => {
  const { vpp, send, unhandled } = await foreignHub();
  const decision = vpp.request(HUB, {
    msg: 'activate',
    id: uuid(47),
    modification_count: 2,
    from: T0,
    to: T0.plusSeconds(900),
    quantity: 3,
    device: 'boiler',
  });
  await send({
    msg: 'modify_activation',
    id: uuid(47),
    modification_count: 2,
    from: T0,
    to: T0.plusSeconds(900),
    quantity: 1.5,
    device: 'boiler',
  });
  const d = await soon(decision);
  // Typed as the activation replies: no cast needed to read the modified quantity.
  assert.equal([d.msg, d.msg === 'modify_activation' ? d.quantity : undefined], ['modify_activation', 1.5]);
  assert.equal(unhandled, []);
  await vpp.close();
});

m(
  'a reply that carries a msg_id of its own settles the request and gets its 200 (§3.2: any type may ask)',
  async () => {
    const { network, vpp, send } = await foreignHub();
    const caps = vpp.request(HUB, { msg: 'get_capabilities', device: null, request_id: uuid(53) });
    await send({ ...CAPS(['x']), request_id: uuid(53), msg_id: uuid(54) });
    assert.equal((await soon(caps)).msg, 'capabilities');
    const toHub = (): Record<string, unknown>[] =>
      network.queued(HUB).map((q) => JSON.parse(Buffer.from(q.body).toString('utf8')) as Record<string, unknown>);
    await until(() => toHub().some((m) => m['msg'] === 'response'));
    const acks = toHub().filter((m) => m['msg'] === 'response');
    assert.equal(
      acks.map((a) => [a['msg'], a['msg_id'], a['response_code'], a['ref_msg']]),
      [['response', uuid(54), 200, 'capabilities']],
    );
    await vpp.close();
  },
);

m('a message of another type carrying the request_id: INVALID_REPLY with it attached, not a resolve', async () => {
  const { vpp, send } = await foreignHub();
  const report = vpp.request(HUB, {
    msg: 'get_report',
    from: T0,
    to: T0.plusSeconds(60),
    resolution: 60,
    signals: ['total.p'],
    request_id: uuid(48),
  });
  await send({ msg: 'status_report', status: 'ok', clock: T0, events: [], request_id: uuid(48) });
  const err = await rejected(soon(report));
  assert.equal([err.code, err.reply?.msg], ['INVALID_REPLY', 'status_report']);
  assert.match(err.message, `${HUB} answered get_report with status_report: expected report`);
  // The right type resolves, typed as a report.
  const next = vpp.request(HUB, {
    msg: 'get_report',
    from: T0,
    to: T0.plusSeconds(60),
    resolution: 60,
    signals: ['total.p'],
    request_id: uuid(49),
  });
  await send({
    msg: 'report',
    from: T0,
    to: T0.plusSeconds(60),
    resolution: 60,
    values: { 'total.p': [7] },
    request_id: uuid(49),
  });
  assert.equal((await soon(next)).values, { 'total.p': [7] });
  await vpp.close();
});

m(
  'a reply we refuse (NaN from a foreign encoder): the request fails at once with why, not at its timeout',
  async () => {
    const { vpp, send } = await foreignHub();
    const dead: string[] = [];
    vpp.on('dead-letter', (_reason, code) => dead.push(code));
    const report = vpp.request(
      HUB,
      {
        msg: 'get_report',
        from: T0,
        to: T0.plusSeconds(60),
        resolution: 60,
        signals: ['total.p'],
        request_id: uuid(50),
      },
      { timeout: 60_000 },
    );
    // Python's json.dumps writes NaN; the reply echoes the request_id all the same.
    await send(
      `{"msg":"report","from":"2026-01-01T00:00:00Z","to":"2026-01-01T00:01:00Z","resolution":60,` +
        `"values":{"total.p":[NaN]},"request_id":"${uuid(50)}"}`,
    );
    const err = await rejected(soon(report));
    assert.is(err.code, 'INVALID_REPLY');
    assert.match(err.message, `${HUB} answered get_report with a message we refused: `);
    assert.equal(dead, ['DECODE_400'], 'dead-lettered as any refused message');
    // Another peer's refused message, or one that names no request of ours, fails nothing.
    const next = vpp.request(HUB, {
      msg: 'get_status_report',
      from: T0,
      to: T0.plusSeconds(60),
      severity_threshold: 0,
      request_id: uuid(52),
    });
    await send(`{"msg":"report","values":NaN,"request_id":"${uuid(51)}"}`);
    await send({ msg: 'status_report', status: 'ok', clock: T0, events: [], request_id: uuid(52) });
    assert.is((await soon(next)).msg, 'status_report', 'still waiting, then answered');
    assert.equal(dead, ['DECODE_400', 'DECODE_400']);
    await vpp.close();
  },
);

m('a refused ack of a functional request (a 200 without response_desc) does not fail it: its report does', async () => {
  const { vpp } = pair();
  await vpp.start();
  const t = vpp.transport;
  const report = vpp.request(
    HUB,
    {
      msg: 'get_report',
      from: T0,
      to: T0.plusSeconds(900),
      resolution: 900,
      signals: ['total.p'],
      msg_id: uuid(55),
      request_id: uuid(56),
    },
    { timeout: 60_000 },
  );
  const properties = (type: string, id: string) => ({
    messageId: id,
    correlationId: uuid(55),
    type,
    contentType: 'application/json',
    headers: { 'x-ebadge-dm': '3.1' },
  });
  const ack = await t.inject({
    from: HUB,
    routingKey: 'response',
    body: JSON.stringify({ msg: 'response', msg_id: uuid(55), response_code: 200 }),
    properties: properties('response', 'h1'),
  });
  assert.equal([ack.outcome, ack.code], ['dead', 'DECODE_400'], 'the ack itself is refused');
  await t.inject({
    from: HUB,
    routingKey: 'report',
    body: JSON.stringify({
      msg: 'report',
      from: '2026-01-01T00:00:00Z',
      to: '2026-01-01T00:15:00Z',
      resolution: 900,
      values: { 'total.p': [1] },
      request_id: uuid(56),
    }),
    properties: properties('report', 'h2'),
  });
  assert.equal((await soon(report)).values, { 'total.p': [1] });
  await vpp.close();
});

m('a refused response to a request a response answers (set_clock) fails it at once, INVALID_REPLY', async () => {
  const { vpp } = pair();
  await vpp.start();
  const t = vpp.transport;
  const clock = vpp.request(HUB, { msg: 'set_clock', offset: 1, msg_id: uuid(60) }, { timeout: 60_000 });
  const refused = await t.inject({
    from: HUB,
    routingKey: 'response',
    body: JSON.stringify({ msg: 'response', msg_id: uuid(60), response_code: 450 }),
    properties: { messageId: 'h1', correlationId: uuid(60), type: 'response', contentType: 'application/json' },
  });
  assert.equal([refused.outcome, refused.code], ['dead', 'DECODE_400']);
  const err = await rejected(soon(clock));
  assert.is(err.code, 'INVALID_REPLY');
  await vpp.close();
});

m("a message of another type with a request's ids fails the request and is handled as any message", async () => {
  const network = new MemoryNetwork();
  const vpp = new Connector({ transport: network.transport({ name: VPP, peers: [HUB] }) });
  const hubT = network.transport({ name: HUB, peers: [VPP] });
  const handled: string[] = [];
  vpp.onStatusReport((m) => {
    handled.push(m.msg);
  });
  await vpp.start();
  const report = vpp.request(HUB, {
    msg: 'get_report',
    from: T0,
    to: T0.plusSeconds(60),
    resolution: 60,
    signals: ['total.p'],
    request_id: uuid(80),
  });
  // A foreign hub's status_report, asking for its ack, that echoes the request_id of the get_report.
  await hubT.send({
    to: VPP,
    routingKey: 'status_report',
    body: encode({ msg: 'status_report', status: 'ok', clock: T0, events: [], request_id: uuid(80), msg_id: uuid(81) }),
    properties: {
      messageId: 'h1',
      type: 'status_report',
      contentType: 'application/json',
      timestamp: new Date(),
      appId: HUB,
      headers: {},
    },
  });
  assert.is((await rejected(soon(report))).code, 'INVALID_REPLY');
  await until(() => handled.length === 1);
  const acks = (): unknown[][] =>
    network
      .queued(HUB)
      .map((q) => JSON.parse(Buffer.from(q.body).toString('utf8')) as Record<string, unknown>)
      .filter((x) => x['msg'] === 'response')
      .map((a) => [a['msg_id'], a['response_code']]);
  await until(() => acks().length === 1);
  assert.equal(acks(), [[uuid(81), 200]], 'its 200 says it was handled, and it was');
  await vpp.close();
});

m('keys are per peer: the same request_id from another peer does not settle the request', async () => {
  const network = new MemoryNetwork();
  const vpp = new Connector({ transport: network.transport({ name: VPP, peers: [HUB, 'heh-other'] }) });
  const hubT = network.transport({ name: HUB, peers: [VPP] });
  const other = network.transport({ name: 'heh-other', peers: [VPP] });
  const unhandled: string[] = [];
  vpp.on('unhandled', (x, sender) => unhandled.push(`${x.msg} from ${sender}`));
  await vpp.start();
  const reply = vpp.request(
    HUB,
    { msg: 'get_status_report', from: T0, to: T0.plusSeconds(60), severity_threshold: 0, request_id: uuid(8) },
    { timeout: 60_000 },
  );
  const status = encode({
    msg: 'status_report',
    status: 'ok',
    clock: T0,
    events: [],
    mode: 'normal',
    request_id: uuid(8),
  });
  const from = (entity: string, messageId: string): Outgoing => ({
    to: VPP,
    routingKey: 'status_report',
    body: status,
    properties: {
      messageId,
      type: 'status_report',
      contentType: 'application/json',
      timestamp: new Date(),
      appId: entity,
      headers: {},
    },
  });
  await other.send(from('heh-other', 'o1'));
  await until(() => unhandled.length === 1);
  assert.equal(unhandled, ['status_report from heh-other']);
  await hubT.send(from(HUB, 'h1'));
  assert.is((await soon(reply)).msg, 'status_report');
  await vpp.close();
});

const t = suite('request: timeouts, close, failed sends');

t(
  'no reply in time: TIMEOUT on the injected clock, not before; the late reply goes to the unhandled event',
  async () => {
    const { hub, vpp, clock } = pair({ vpp: { requestTimeoutMs: 5000 } });
    const held: (() => Promise<void>)[] = [];
    hub.onGetCapabilities((_q, ctx) => {
      held.push(() => ctx.reply(CAPS([])));
    });
    const unhandled: string[] = [];
    vpp.on('unhandled', (x) => unhandled.push(x.msg));
    await hub.start();
    await vpp.start();
    let outcome: unknown;
    const p = vpp.request(HUB, { msg: 'get_capabilities', device: null }).then(
      (r) => {
        outcome = r;
      },
      (e: unknown) => {
        outcome = e;
      },
    );
    await until(() => held.length === 1);
    await clock.advance(4999);
    assert.is(outcome, undefined, 'still waiting 1 ms before the timeout');
    await clock.advance(1);
    await p;
    assert.instance(outcome, BusError);
    assert.is((outcome as BusError).code, 'TIMEOUT');
    assert.is((outcome as BusError).message, `no reply to get_capabilities from ${HUB} within 5000 ms`);
    await held[0]?.();
    await until(() => unhandled.length === 1);
    assert.equal(unhandled, ['capabilities']);
    // A per-call timeout wins over the connector's.
    const q = rejected(vpp.request(HUB, { msg: 'get_capabilities', device: null }, { timeout: 10 }));
    await until(() => held.length === 2);
    await clock.advance(10);
    assert.is((await q).code, 'TIMEOUT');
    assert.is(clock.pending, 0, 'no timer left behind');
    await Promise.all([hub.close(), vpp.close()]);
  },
);

t(
  'close() fails the pending requests with CLOSED and cancels their timers; publishing after it fails CLOSED',
  async () => {
    const { hub, vpp, clock } = pair();
    hub.onGetCapabilities(() => undefined);
    await hub.start();
    await vpp.start();
    const p = rejected(vpp.request(HUB, { msg: 'get_capabilities', device: null }));
    await until(() => vpp.transport.sent.length === 1);
    await vpp.close();
    assert.is((await soon(p)).code, 'CLOSED');
    assert.is(clock.pending, 0);
    assert.is((await rejected(vpp.publish(HUB, { msg: 'get_all_prices' }))).code, 'CLOSED');
    await hub.close();
  },
);

t('a send that fails fails its request with that error, at once', async () => {
  const { hub, vpp, clock } = pair();
  await hub.start();
  await vpp.start();
  const nack = new Error('nacked by the broker');
  vpp.transport.sendFailure = () => nack;
  let err: unknown;
  try {
    await soon(vpp.request(HUB, { msg: 'get_capabilities', device: null }));
  } catch (e) {
    err = e;
  }
  assert.is(err, nack);
  assert.is(clock.pending, 0, 'its timeout is cancelled');
  assert.is((await rejected(vpp.request('heh-nobody', { msg: 'get_all_prices' }))).code, 'UNKNOWN_PEER');
  await Promise.all([hub.close(), vpp.close()]);
});

t('a send held by the broker (no confirm: a resource alarm) does not hold the timeout: TIMEOUT on time', async () => {
  const { hub, vpp, clock } = pair({ vpp: { requestTimeoutMs: 2000 } });
  await hub.start();
  await vpp.start();
  let release!: () => void;
  vpp.transport.sendHold = () =>
    new Promise<void>((resolve) => {
      release = resolve;
    });
  let outcome: unknown;
  const p = vpp.request(HUB, { msg: 'get_capabilities', device: null }).then(
    (r) => {
      outcome = r;
    },
    (e: unknown) => {
      outcome = e;
    },
  );
  await until(() => release !== undefined);
  await clock.advance(2000);
  await soon(p);
  assert.instance(outcome, BusError);
  assert.is((outcome as BusError).code, 'TIMEOUT', 'the send still waits for its confirm');
  release();
  await Promise.all([hub.close(), vpp.close()]);
});

const z = suite('request: sealed end to end');

z(
  'sealed both ways: the reply correlates, the body on the wire is an envelope, clear text and replays are refused',
  async () => {
    const keys = sealers(HUB, VPP, ['report', 'response'], ['get_report', 'set_clock'], Date.now);
    const { hub, vpp } = pair({ hub: { sealer: keys.a }, vpp: { sealer: keys.b } });
    const seen: boolean[] = [];
    hub.onGetReport((q, ctx) => {
      seen.push(ctx.sealed);
      return ctx.reply({
        msg: 'report',
        from: q.from,
        to: q.to,
        resolution: q.resolution,
        values: { 'total.p': [1, 2] },
      });
    });
    hub.onSetClock(() => undefined);
    const refused: string[] = [];
    hub.on('dead-letter', (_r, code) => refused.push(code));
    const dups: string[] = [];
    hub.on('duplicate', (id) => dups.push(id));
    await hub.start();
    await vpp.start();
    const reply = (await soon(
      vpp.request(HUB, {
        msg: 'get_report',
        from: T0,
        to: T0.plusSeconds(1800),
        resolution: 900,
        signals: ['total.p'],
      }),
    )) as Message<'report'>;
    assert.equal(reply.values, { 'total.p': [1, 2] });
    assert.equal(seen, [true]);
    const wire = vpp.transport.sent[0];
    assert.is(wire?.properties.contentType, CONTENT_TYPE_SEALED);
    assert.not.ok(
      Buffer.from(wire?.body ?? [])
        .toString('latin1')
        .includes('get_report'),
      'the broker sees no JSON',
    );
    assert.is(hub.transport.sent[0]?.properties.contentType, CONTENT_TYPE_SEALED, 'the reply is sealed too');

    // Clear text from a peer that has keys: refused, never handled.
    const clear = await deliver(
      hub.transport,
      { msg: 'set_clock', offset: 1, msg_id: uuid(1) },
      { messageId: 'clear' },
    );
    assert.equal([clear.outcome, clear.code], ['dead', 'NOT_SEALED']);
    // The same envelope again (a replay): acked and dropped as a duplicate.
    const env = wire as NonNullable<typeof wire>;
    const replay = await hub.transport.inject({
      body: env.body,
      properties: { ...env.properties, messageId: 'replayed' },
    });
    assert.is(replay.outcome, 'ack');
    assert.equal(dups, ['replayed']);
    assert.equal(seen, [true], 'the replay reached no handler');
    assert.equal(refused, ['NOT_SEALED']);
    // A type the keyring does not let us send to this peer is refused when sealing, before anything is sent.
    const before = vpp.transport.sent.length;
    let err: unknown;
    try {
      await vpp.publish(HUB, { msg: 'get_all_prices' });
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof CryptoError && err.code === 'TYPE_NOT_ALLOWED', String(err));
    assert.is(vpp.transport.sent.length, before);
    await Promise.all([hub.close(), vpp.close()]);
  },
);

m.run();
t.run();
z.run();
