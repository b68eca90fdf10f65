/**
 * The bus end to end against the local RabbitMQ: a hub and a VPP connector exchange every HEH-level message type
 * in both topologies, a TSO and a VPP every market-level type, and request/response is correlated as the data
 * model §3.5 says. What a receiver's typed handler gets must deep-equal what was sent, with the AMQP properties of
 * §3.8 (checked through ctx.delivery), and every msg_id must be answered exactly once.
 */
import { randomUUID } from 'node:crypto';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BusError, CONTENT_TYPE_JSON, type Connector, DM_VERSION, type Topology } from '../../src/bus/index.js';
import { decode, EbTime, type Message, type MessageType } from '../../src/codec/index.js';
import { rejection, timed } from '../helpers/amqp.js';
import {
  ALL_TYPES,
  type BusFixture,
  barrier,
  barrierMessage,
  entity,
  HEH_TYPES,
  isBarrier,
  MARKET_TYPES,
  NET_MS,
  type Received,
  rawOf,
  record,
  UUID,
  until,
  withBus,
} from '../helpers/bus.js';
import { generate } from '../helpers/codec-messages.js';
import { sleep, withDeadline } from '../helpers/deadline.js';
import { Random } from '../helpers/random.js';

const s = suite('bus-messages');

/** A valid message of `type` as the application holds it (decoded, with EbTime values). */
function sample(type: MessageType, r: Random): Message {
  return decode(JSON.stringify(generate(type, r))).message;
}

const msgIdOf = (m: Message): string | undefined => {
  const id = (m as { msg_id?: unknown }).msg_id;
  return m.msg !== 'response' && typeof id === 'string' ? id : undefined;
};

/** Events that must not fire while valid messages are exchanged, recorded into `events` (the live list). */
function watch(c: Connector, events: string[]): string[] {
  c.on('dead-letter', (reason, code) => events.push(`${c.name} dead-letter ${code}: ${reason}`));
  c.on('handler-error', (err, type) => events.push(`${c.name} handler-error in ${type}: ${String(err)}`));
  c.on('unhandled', (m, sender) => events.push(`${c.name} unhandled ${m.msg} from ${sender}: ${JSON.stringify(m)}`));
  c.on('duplicate', (id, sender) => events.push(`${c.name} duplicate ${id} from ${sender}`));
  return events;
}

/** The properties of §3.8 on one delivery of `sent` from `from` to `to`. */
function checkDelivery(g: Received, sent: Message, from: string, to: string, topology: Topology, hub: string): void {
  const d = g.ctx.delivery;
  const raw = rawOf(g.ctx);
  const what = `${sent.msg} ${from} -> ${to} (${topology})`;
  assert.equal(g.message, sent, `${what}: the handler gets what was sent`);
  assert.is(g.ctx.sender, from, `${what}: ctx.sender`);
  assert.is(d.from, from, `${what}: delivery.from`);
  assert.is(d.contentType, CONTENT_TYPE_JSON, `${what}: content_type`);
  assert.is(d.type, sent.msg, `${what}: type = msg`);
  assert.is(d.appId, from, `${what}: app_id = sender`);
  assert.is(raw.properties.deliveryMode, 2, `${what}: delivery_mode 2`);
  assert.is(d.headers['x-ebadge-dm'], DM_VERSION, `${what}: header x-ebadge-dm`);
  assert.ok(raw.properties.timestamp instanceof Date, `${what}: timestamp`);
  const msgId = msgIdOf(sent);
  if (msgId !== undefined) {
    assert.is(d.messageId, msgId, `${what}: message_id = msg_id`);
  } else {
    assert.match(d.messageId ?? '', UUID, `${what}: message_id is a fresh UUID`);
    const own = (sent as { msg_id?: unknown }).msg_id;
    if (sent.msg === 'response' && typeof own === 'string')
      assert.is.not(d.messageId, own, `${what}: a response's message_id is not the msg_id it answers`);
  }
  assert.equal(g.ctx.diagnostics, [], `${what}: no diagnostics`);
  assert.is(g.ctx.sealed, false);
  if (topology === 'exchanges') {
    const heh = (sent as { heh_id?: unknown }).heh_id;
    assert.is(raw.exchange, `${from}-to-${to}`, `${what}: exchange`);
    assert.is(
      d.routingKey,
      // D3.2.3's `<msg>.<heh_id or sender>` (data model §3.8), which the 2015 peers' `*.*` binding matches.
      `${sent.msg}.${typeof heh === 'string' && heh !== '' ? heh : from}`,
      `${what}: routing key`,
    );
  } else {
    assert.is(raw.exchange, '', `${what}: the default exchange`);
    assert.is(d.routingKey, from === hub ? `${hub}-up` : `${hub}-down`, `${what}: queue`);
  }
}

/**
 * A barrier from `from` to `to` when `to` has no `response` handler: its barrier message shows up in `events` (see
 * watch) as unhandled, and is taken out again. Everything `from` published before has then reached `to`.
 */
async function barrierUnhandled(from: Connector, to: Connector, events: string[]): Promise<string> {
  const id = randomUUID();
  await withDeadline(from.publish(to.name, barrierMessage(id)), NET_MS, `a barrier from ${from.name}`);
  const at = (): number => events.findIndex((e) => e.includes(id));
  await until(() => at() >= 0, `the barrier from ${from.name} to reach ${to.name}`, NET_MS);
  events.splice(at(), 1);
  return id;
}

const describe = (g: Received): string =>
  `${g.message.msg} from ${g.ctx.sender} ${JSON.stringify(g.message)}`.slice(0, 300);

/**
 * `a` sends one message of each of `types` to `b`, and `b` one of each to `a`, all at once. Each side must get
 * exactly the other's messages (deep-equal, right properties) plus one automatic 200 `response` per msg_id it sent,
 * and nothing more: a barrier each way, sent once the last expected message arrived, comes with nothing before it. `a` and `b` come unstarted:
 * their handlers are registered here, before they start.
 */
async function exchangeAll(
  a: Connector,
  b: Connector,
  types: readonly MessageType[],
  topology: Topology,
  hub: string,
  seed: number,
): Promise<void> {
  const got = new Map([
    [a.name, record(a, ALL_TYPES)],
    [b.name, record(b, ALL_TYPES)],
  ]);
  for (const c of [a, b]) await withDeadline(c.start(), NET_MS, `starting ${c.name}`);
  const events = watch(b, watch(a, []));
  const r = new Random(seed);
  const plan = [
    { from: a, to: b, sent: types.map((t) => sample(t, r)) },
    { from: b, to: a, sent: types.map((t) => sample(t, r)) },
  ];
  await withDeadline(
    Promise.all(plan.flatMap(({ from, to, sent }) => sent.map((m) => from.publish(to.name, m)))),
    NET_MS,
    'publishing',
  );
  const acks = (sent: Message[]): string[] => sent.map(msgIdOf).filter((x): x is string => x !== undefined);
  const expected = (name: string): number => {
    const incoming = plan.find((p) => p.to.name === name) as (typeof plan)[number];
    const outgoing = plan.find((p) => p.from.name === name) as (typeof plan)[number];
    return incoming.sent.length + acks(outgoing.sent).length;
  };
  for (const c of [a, b]) {
    const list = got.get(c.name) as Received[];
    await until(
      () => list.length >= expected(c.name),
      () => `${c.name} to get ${expected(c.name)} messages (has ${list.length})`,
    );
  }
  // Nothing more: each barrier arrives after everything its sender had published before it.
  await barrier(a, b, got.get(b.name) as Received[]);
  await barrier(b, a, got.get(a.name) as Received[]);
  for (const c of [a, b]) {
    const list = got.get(c.name) as Received[];
    assert.is(
      list.length,
      expected(c.name),
      `${c.name} got ${list.length} messages, expected ${expected(c.name)}; the last ones:\n${list.slice(-8).map(describe).join('\n')}`,
    );
  }
  assert.equal(events, [], 'no dead letters, handler errors, unhandled messages or duplicates');

  for (const { from, to, sent } of plan) {
    const list = got.get(to.name) as Received[];
    for (const m of sent) {
      const key = JSON.stringify(m);
      const hits = list.filter((g) => g.ctx.sender === from.name && JSON.stringify(g.message) === key);
      assert.is(hits.length, 1, `${m.msg} ${from.name} -> ${to.name}: arrived once`);
      checkDelivery(hits[0] as Received, m, from.name, to.name, topology, hub);
    }
    // The automatic acks: one 200 per msg_id `from` sent, from `to`, correlated.
    const back = got.get(from.name) as Received[];
    for (const m of sent) {
      const id = msgIdOf(m);
      if (id === undefined) continue;
      const answers = back.filter(
        (g) =>
          g.message.msg === 'response' &&
          (g.message as Message<'response'>).msg_id === id &&
          (g.message as Message<'response'>).ref_msg !== undefined &&
          g.ctx.sender === to.name,
      );
      assert.is(answers.length, 1, `${m.msg} with msg_id ${id}: exactly one response from ${to.name}`);
      const ans = answers[0] as Received<'response'>;
      assert.equal(ans.message, {
        msg: 'response',
        msg_id: id,
        response_code: 200,
        response_desc: 'OK',
        ref_msg: m.msg,
        ...((m as { request_id?: string }).request_id === undefined
          ? {}
          : { request_id: (m as { request_id: string }).request_id }),
      });
      assert.is(
        ans.ctx.delivery.correlationId,
        id,
        `${m.msg}: the response's correlation_id is the message_id it answers`,
      );
      assert.is(ans.ctx.delivery.type, 'response');
    }
  }
}

s(
  'exchanges topology: a hub and a VPP exchange every HEH-level type both ways',
  timed(
    () =>
      withBus(async (f) => {
        const hub = entity('heh');
        const vpp = entity('vpp');
        const h = f.create({ name: hub, peers: [vpp] });
        const v = f.create({ name: vpp, peers: [hub] });
        assert.ok(HEH_TYPES.length >= 27, `${HEH_TYPES.length} HEH-level types`);
        await exchangeAll(h, v, HEH_TYPES, 'exchanges', hub, 1);
      }),
    25_000,
  ),
);

s(
  'queues topology (D3.2.1): hub role "hub", VPP role "controller", every HEH-level type both ways',
  timed(
    () =>
      withBus(async (f) => {
        const hub = entity('heh');
        const vpp = entity('vpp');
        const h = f.create({ name: hub, peers: [vpp], topology: 'queues', role: 'hub' });
        const v = f.create({ name: vpp, peers: [hub], topology: 'queues', role: 'controller' });
        await exchangeAll(h, v, HEH_TYPES, 'queues', hub, 2);
      }),
    25_000,
  ),
);

s(
  'market level: a TSO and a VPP exchange every market-level type both ways',
  timed(
    () =>
      withBus(async (f) => {
        const tso = entity('tso');
        const vpp = entity('vpp');
        const t = f.create({ name: tso, peers: [vpp] });
        const v = f.create({ name: vpp, peers: [tso] });
        assert.is(MARKET_TYPES.length, 8);
        await exchangeAll(t, v, MARKET_TYPES, 'exchanges', tso, 3);
      }),
    25_000,
  ),
);

// ---- request / response (data model §3.5) -------------------------------------------------------------------------

const FROM = EbTime.parse('2026-03-01T10:00:00.000Z');
const TO = EbTime.parse('2026-03-01T10:10:00.000Z');

async function pair(
  f: BusFixture,
): Promise<{ hub: string; vpp: string; h: Connector; v: Connector; events: string[] }> {
  const hub = entity('heh');
  const vpp = entity('vpp');
  // Not started: the test registers the hub's handlers, then calls f.start().
  const h = f.create({ name: hub, peers: [vpp] });
  const v = f.create({ name: vpp, peers: [hub] });
  return { hub, vpp, h, v, events: watch(v, watch(h, [])) };
}

s(
  'request: get_report -> report, correlated by request_id (two at once, answered in reverse order)',
  timed(
    () =>
      withBus(async (f) => {
        const { hub, h, v, events } = await pair(f);
        const seen: (string | undefined)[] = [];
        h.onGetReport(async (m, ctx) => {
          seen.push(m.request_id);
          if (m.resolution === 60) await sleep(150); // the slow one: answered second, so in reverse order
          const n = (m.to.epochMs - m.from.epochMs) / 1000 / m.resolution;
          // Published without ctx.reply (so without a correlation_id): only the echoed request_id can correlate it.
          await h.publish(ctx.sender, {
            msg: 'report',
            from: m.from,
            to: m.to,
            resolution: m.resolution,
            values: { 'total.p': Array.from({ length: n }, (_, i) => i / 2) },
            ...(m.request_id === undefined ? {} : { request_id: m.request_id }),
          });
        });
        await f.start();
        const mine = randomUUID();
        const [r1, r2] = await withDeadline(
          Promise.all([
            v.request(hub, { msg: 'get_report', from: FROM, to: TO, resolution: 60, signals: ['total.p'] }),
            v.request(hub, {
              msg: 'get_report',
              from: FROM,
              to: TO,
              resolution: 300,
              signals: ['total.p'],
              request_id: mine,
            }),
          ]),
          NET_MS,
          'the two requests',
        );
        assert.is(r1.msg, 'report');
        assert.is(r2.msg, 'report');
        const a = r1 as Message<'report'>;
        const b = r2 as Message<'report'>;
        assert.is(a.resolution, 60);
        assert.is(a.values['total.p']?.length, 10);
        assert.match(a.request_id ?? '', UUID, 'request() set a request_id');
        assert.is(b.resolution, 300);
        assert.equal(b.values, { 'total.p': [0, 0.5] });
        assert.is(b.request_id, mine, 'a given request_id is kept and echoed');
        assert.equal(new Set(seen), new Set([a.request_id, mine]));
        assert.equal(events, []);
      }),
    15_000,
  ),
);

s(
  'request: activate -> accept_activation / reject_activation, correlated by (id, modification_count)',
  timed(
    () =>
      withBus(async (f) => {
        const { hub, h, v, events } = await pair(f);
        h.onActivate(async (m, ctx) => {
          if (m.modification_count === 0) await sleep(150); // the slow one: answered second
          // Without a correlation_id (not ctx.reply): only (id, modification_count) can correlate the decision.
          await h.publish(
            ctx.sender,
            m.quantity !== 0
              ? { msg: 'accept_activation', id: m.id, modification_count: m.modification_count }
              : {
                  msg: 'reject_activation',
                  id: m.id,
                  modification_count: m.modification_count,
                  code: 451,
                  reason: 'passive mode',
                },
          );
        });
        await f.start();
        const id = randomUUID();
        const [accepted, rejected] = await withDeadline(
          Promise.all([
            v.request(hub, {
              msg: 'activate',
              id,
              modification_count: 0,
              from: FROM,
              to: TO,
              quantity: 2.5,
              device: null,
            }),
            v.request(hub, {
              msg: 'activate',
              id,
              modification_count: 1,
              from: FROM,
              to: TO,
              quantity: 0,
              device: 'boiler',
            }),
          ]),
          NET_MS,
          'the two activations',
        );
        assert.equal(accepted, { msg: 'accept_activation', id, modification_count: 0 });
        // request() resolves with the decision, whichever it is (connector.ts: "accept or reject").
        assert.equal(rejected, {
          msg: 'reject_activation',
          id,
          modification_count: 1,
          code: 451,
          reason: 'passive mode',
        });
        assert.equal(events, []);
      }),
    15_000,
  ),
);

s(
  "request: set_clock with msg_id -> the connector's automatic 200 response, correlated",
  timed(
    () =>
      withBus(async (f) => {
        const { hub, vpp, h, v, events } = await pair(f);
        const calls: Message<'set_clock'>[] = [];
        h.onSetClock((m) => {
          calls.push(m);
        });
        await f.start();
        // An independent observer of what the hub sends to the VPP.
        const obs = `${entity('obs')}-q`;
        f.queues.add(obs);
        const ch = await f.channel();
        await ch.assertQueue(obs, { durable: false });
        await ch.bindQueue(obs, `${hub}-to-${vpp}`, '#');
        const id = randomUUID();
        const r = await withDeadline(
          v.request(hub, { msg: 'set_clock', offset: -3600, msg_id: id }),
          NET_MS,
          'set_clock',
        );
        assert.equal(r, { msg: 'response', msg_id: id, response_code: 200, response_desc: 'OK', ref_msg: 'set_clock' });
        const r2 = await withDeadline(
          v.request(hub, { msg: 'set_clock', offset: null }),
          NET_MS,
          'set_clock without msg_id',
        );
        assert.is(calls.length, 2);
        assert.equal(calls[0], { msg: 'set_clock', offset: -3600, msg_id: id });
        const generated = calls[1]?.msg_id;
        assert.match(generated ?? '', UUID, 'request() gave set_clock a msg_id');
        assert.equal(r2, {
          msg: 'response',
          msg_id: generated,
          response_code: 200,
          response_desc: 'OK',
          ref_msg: 'set_clock',
        });
        // A barrier from the hub: once it is confirmed, the observer queue holds everything the hub sent before it.
        const bid = await barrierUnhandled(h, v, events);
        const seen = (await f.drain(obs)).filter((m) => !isBarrier(JSON.parse(m.content.toString()), bid));
        assert.is(seen.length, 2, 'exactly one response per set_clock');
        for (const [i, m] of seen.entries()) {
          const msgId = i === 0 ? id : generated;
          assert.is(m.fields.routingKey, `response.${hub}`);
          assert.is(m.properties.correlationId, msgId);
          assert.is(m.properties.type, 'response');
          assert.is(m.properties.appId, hub);
          assert.is.not(m.properties.messageId, msgId);
          assert.is((JSON.parse(m.content.toString()) as { msg_id: string }).msg_id, msgId);
        }
        await ch.close();
        assert.equal(events, []);
      }),
    15_000,
  ),
);

s(
  "request: a handler's ctx.respond(451) rejects request() with BusError REJECTED carrying the reply, and nothing else is sent",
  timed(
    () =>
      withBus(async (f) => {
        const { hub, h, v, events } = await pair(f);
        h.onSetSmartMode(async (_m, ctx) => {
          await ctx.respond(451, 'the hub is passive', 7);
        });
        await f.start();
        const id = randomUUID();
        const err = await withDeadline(
          rejection(v.request(hub, { msg: 'set_smart_mode', mode: 'normal', reset: false, msg_id: id })),
          NET_MS,
          'set_smart_mode',
        );
        assert.instance(err, BusError);
        assert.is(err.code, 'REJECTED');
        assert.equal((err as BusError).reply, {
          msg: 'response',
          msg_id: id,
          response_code: 451,
          response_desc: 'the hub is passive',
          response_subcode: 7,
          ref_msg: 'set_smart_mode',
        });
        await barrierUnhandled(h, v, events);
        assert.equal(events, [], 'no second response (the automatic 200 is not sent after ctx.respond)');
      }),
    15_000,
  ),
);

s(
  'request: no reply in time -> BusError TIMEOUT; the late reply goes to the unhandled event',
  timed(
    () =>
      withBus(async (f) => {
        const { hub, h, v } = await pair(f);
        let answered = false;
        h.onGetStatusReport(async (m, ctx) => {
          await sleep(400); // longer than the request's 200 ms timeout: the reply comes late
          await ctx.reply({
            msg: 'status_report',
            status: 'ok',
            clock: EbTime.now(),
            events: [],
            ...(m.heh_id === undefined ? {} : { heh_id: m.heh_id }),
          });
          answered = true;
        });
        await f.start();
        const unhandled: [Message, string][] = [];
        v.on('unhandled', (m, sender) => unhandled.push([m, sender]));
        const t0 = Date.now();
        const err = await withDeadline(
          rejection(
            v.request(hub, { msg: 'get_status_report', from: FROM, to: TO, severity_threshold: 0 }, { timeout: 200 }),
          ),
          NET_MS,
          'timeout',
        );
        const took = Date.now() - t0;
        assert.instance(err, BusError);
        assert.is(err.code, 'TIMEOUT');
        assert.ok(took >= 190 && took < 1500, `rejected after ${took} ms (timeout 200)`);
        await until(() => unhandled.length === 1, 'the late status_report');
        assert.is(unhandled[0]?.[0].msg, 'status_report');
        assert.is(unhandled[0]?.[1], hub);
        // A request to a peer that is not configured fails at once.
        const bad = await rejection(
          v.request(
            'nobody',
            { msg: 'get_status_report', from: FROM, to: TO, severity_threshold: 0 },
            { timeout: 200 },
          ),
        );
        assert.is(bad.code, 'UNKNOWN_PEER');
        await until(() => answered, 'the hub handler to finish'); // then close() waits for its ack
      }),
    15_000,
  ),
);

s.run();
