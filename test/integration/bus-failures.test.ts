/**
 * What the bus does with what goes wrong, against the local RabbitMQ: bodies of every codec failure class published
 * raw with amqplib, handlers that crash (redelivery up to the delivery limit, then the dead-letter queue), the same
 * message twice, and two controlling entities reaching one hub through the operator's heh_id.
 */
import { randomUUID } from 'node:crypto';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { amqpBus, BusError, type Connector } from '../../src/bus/index.js';
import { EbTime, type Message } from '../../src/codec/index.js';
import { AMQP_URL, timed } from '../helpers/amqp.js';
import {
  type BusFixture,
  barrier,
  barrierMessage,
  entity,
  HEH_TYPES,
  isBarrier,
  NET_MS,
  type Received,
  record,
  until,
  withBus,
} from '../helpers/bus.js';
import { sleep, withDeadline } from '../helpers/deadline.js';

const s = suite('bus-failures');

const FROM = '2026-03-01T10:00:00.000Z';
const TO = '2026-03-01T11:00:00.000Z';

interface Events {
  deadLetters: [reason: string, code: string][];
  handlerErrors: [error: unknown, type: string, final: boolean][];
  unhandled: [Message, string][];
  duplicates: [string, string][];
}

function events(c: Connector): Events {
  const e: Events = { deadLetters: [], handlerErrors: [], unhandled: [], duplicates: [] };
  c.on('dead-letter', (reason, code) => e.deadLetters.push([reason, code]));
  c.on('handler-error', (err, type, final) => e.handlerErrors.push([err, type, final]));
  c.on('unhandled', (m, sender) => e.unhandled.push([m, sender]));
  c.on('duplicate', (id, sender) => e.duplicates.push([id, sender]));
  return e;
}

/**
 * A hub (deliveryLimit 3) and a VPP, not started: the test registers the hub's handlers, then calls f.start(). The
 * VPP records the responses it gets.
 */
async function pair(
  f: BusFixture,
): Promise<{ hub: string; vpp: string; h: Connector; v: Connector; he: Events; ve: Events; responses: Received[] }> {
  const hub = entity('heh');
  const vpp = entity('vpp');
  const h = f.create({ name: hub, peers: [vpp], deliveryLimit: 3 });
  const v = f.create({ name: vpp, peers: [hub] });
  const responses = record(v, ['response']);
  return { hub, vpp, h, v, he: events(h), ve: events(v), responses };
}

/**
 * A barrier from `from` to `to` when `to` has no `response` handler: its barrier message shows up in `e.unhandled`,
 * and is taken out again. Everything `from` published before has then reached `to`.
 */
async function barrierUnhandled(from: Connector, to: Connector, e: Events): Promise<string> {
  const id = randomUUID();
  await withDeadline(from.publish(to.name, barrierMessage(id)), NET_MS, `a barrier from ${from.name}`);
  const at = (): number => e.unhandled.findIndex(([m]) => isBarrier(m, id));
  await until(() => at() >= 0, `the barrier from ${from.name} to reach ${to.name}`, NET_MS);
  e.unhandled.splice(at(), 1);
  return id;
}

const str = (v: unknown): string => (Buffer.isBuffer(v) ? v.toString('utf8') : String(v));

s(
  'every codec failure class is dead-lettered, answered with its code when it has a msg_id, never handled; the next good message is',
  timed(
    () =>
      withBus(async (f) => {
        const { hub, vpp, h, v, he, ve, responses } = await pair(f);
        const handled = record(h, HEH_TYPES);
        await f.start();
        const id = (): string => randomUUID();
        const cases: { name: string; key: string; body: Buffer; code: number; msgId?: string }[] = [];
        const add = (name: string, key: string, body: string | Buffer, code: number, msgId?: string): void => {
          cases.push({
            name,
            key,
            body: Buffer.isBuffer(body) ? body : Buffer.from(body),
            code,
            ...(msgId === undefined ? {} : { msgId }),
          });
        };
        const ids = Array.from({ length: 8 }, id);
        // Cut short, but its msg and msg_id are readable in the first 4 KiB (msgIdOf): answered.
        add('invalid JSON', 'set_clock', `{"msg":"set_clock","offset":1,"msg_id":"${ids[0]}"`, 400, ids[0]);
        add(
          'invalid UTF-8',
          'set_clock',
          Buffer.concat([
            Buffer.from(`{"msg":"set_clock","offset":1,"msg_id":"${ids[1]}","ext_x_y":"`),
            Buffer.from([0xc3, 0x28, 0xff]),
            Buffer.from('"}'),
          ]),
          400,
          ids[1],
        );
        add('unknown msg', 'no_such_message', `{"msg":"no_such_message","msg_id":"${ids[2]}"}`, 453, ids[2]);
        add(
          'missing required field',
          'load_price',
          `{"msg":"load_price","from":"${FROM}","to":"${TO}","msg_id":"${ids[3]}"}`,
          400,
          ids[3],
        );
        add(
          'naive time',
          'load_price',
          `{"msg":"load_price","from":"2026-03-01T10:00:00","to":"${TO}","price":0.1,"msg_id":"${ids[4]}"}`,
          454,
          ids[4],
        );
        add(
          'from >= to',
          'load_price',
          `{"msg":"load_price","from":"${TO}","to":"${FROM}","price":0.1,"msg_id":"${ids[5]}"}`,
          454,
          ids[5],
        );
        add(
          'duplicate key',
          'set_clock',
          `{"msg":"set_clock","offset":1,"offset":2,"msg_id":"${ids[6]}"}`,
          400,
          ids[6],
        );
        add(
          'oversized (> 1 MiB)',
          'set_clock',
          `{"msg":"set_clock","offset":1,"msg_id":"${ids[7]}","ext_x_pad":"${'x'.repeat(1 << 20)}"}`,
          400,
          ids[7],
        );
        // And one without a msg_id: refused the same way, but nobody to answer.
        add('missing required field, no msg_id', 'set_smart_mode', '{"msg":"set_smart_mode","mode":"normal"}', 400);

        const ch = await f.channel();
        for (const c of cases) ch.publish(`${vpp}-to-${hub}`, c.key, c.body, { persistent: true });
        const good = randomUUID();
        ch.publish(
          `${vpp}-to-${hub}`,
          'set_clock',
          Buffer.from(`{"msg":"set_clock","offset":-3600,"msg_id":"${good}"}`),
          { persistent: true, contentType: 'application/json' },
        );
        await ch.close();

        const answered = cases.filter((c) => c.msgId !== undefined);
        await until(
          () => responses.length >= answered.length + 1,
          () => {
            const got = new Set(responses.map((g) => (g.message as Message<'response'>).msg_id));
            const missing = [...answered.map((c) => [c.name, c.msgId]), ['good', good]].filter(
              ([, m]) => !got.has(m ?? null),
            );
            return `${answered.length + 1} responses at the VPP (has ${responses.length}; missing: ${missing.map(([n]) => n).join(', ')}; hub dead letters: ${he.deadLetters.map(([, c]) => c).join(' ')}; handled: ${handled.length}; duplicates: ${he.duplicates.length}; handler errors: ${he.handlerErrors.map(([e, t]) => `${t}: ${String(e)}`).join('; ')})`;
          },
          NET_MS, // a broker still busy after the suite's heavier files once took over the default 5 s (Node 18 pass)
        );
        const dead = `private-${hub}-dead`;
        await until(
          async () => (await f.depth(dead)) >= cases.length,
          () => `${cases.length} dead letters in ${dead}`,
        );
        // Nothing more: a barrier each way arrives after whatever either side had published before it.
        await barrier(h, v, responses);
        await barrier(v, h, handled);

        // Only the good message reached a handler.
        assert.equal(
          handled.map((g) => g.message),
          [{ msg: 'set_clock', offset: -3600, msg_id: good }],
          'only the good message is handled',
        );
        assert.is(handled[0]?.ctx.sender, vpp);
        assert.equal(he.handlerErrors, []);
        assert.equal(he.unhandled, []);

        // Dead letters: each bad body once, with the error and its code in headers.
        const letters = await f.drain(dead);
        assert.is(letters.length, cases.length, 'one dead letter per bad message');
        for (const c of cases) {
          const hit = letters.filter((m) => m.content.equals(c.body));
          assert.is(hit.length, 1, `${c.name}: in ${dead}`);
          const headers = hit[0]?.properties.headers ?? {};
          assert.ok(str(headers['x-ebadge-error']).length > 0, `${c.name}: x-ebadge-error`);
          assert.is(
            str(headers['x-ebadge-error-code']),
            `DECODE_${c.code}`,
            `${c.name}: x-ebadge-error-code (${str(headers['x-ebadge-error'])})`,
          );
          assert.is(str(headers['x-ebadge-source']), `${vpp}-to-${hub}`, `${c.name}: x-ebadge-source`);
          assert.is(hit[0]?.fields.routingKey, c.key, `${c.name}: routing key kept`);
        }
        assert.equal(
          he.deadLetters.map(([, code]) => code).sort(),
          cases.map((c) => `DECODE_${c.code}`).sort(),
          'a dead-letter event each',
        );
        assert.is(await f.depth(`private-${hub}-in`), 0, 'nothing left in the inbox');

        // The VPP got one response per msg_id, with the codec's code, and a 200 for the good one; nothing else.
        assert.is(
          responses.length,
          answered.length + 1,
          `responses: ${JSON.stringify(responses.map((g) => g.message))}`,
        );
        for (const c of answered) {
          const r = responses.filter((g) => (g.message as Message<'response'>).msg_id === c.msgId);
          assert.is(r.length, 1, `${c.name}: one response`);
          const m = r[0]?.message as Message<'response'>;
          assert.is(m.response_code, c.code, `${c.name}: response_code (${m.response_desc})`);
          assert.ok(m.response_desc.length > 0);
          assert.is(r[0]?.ctx.sender, hub);
        }
        const ok = responses.find((g) => (g.message as Message<'response'>).msg_id === good)?.message;
        assert.equal(ok, {
          msg: 'response',
          msg_id: good,
          response_code: 200,
          response_desc: 'OK',
          ref_msg: 'set_clock',
        });
        assert.equal(ve.unhandled, []);
        assert.equal(ve.deadLetters, []);
      }),
    20_000,
  ),
);

s(
  'issue 15, items 3 and 4: a routing key or type property naming another type is refused and answered 400, an activate with no msg_id is answered by its id',
  timed(
    () =>
      withBus(async (f) => {
        const { hub, vpp, h, he, responses } = await pair(f);
        const handled = record(h, ['activate', 'set_smart_mode', 'set_clock']);
        await f.start();
        const actId = randomUUID();
        const smartId = randomUUID();
        const act = (count: number): string =>
          JSON.stringify({
            msg: 'activate',
            id: actId,
            modification_count: count,
            from: FROM,
            to: TO,
            quantity: 1,
            device: null,
          });
        const smart = JSON.stringify({ msg: 'set_smart_mode', mode: 'passive', reset: false, msg_id: smartId });
        // [routing key, type property, body, dead-letter code, the response expected: code, msg_id, id]
        const cases: [string, string | undefined, string, string, [number, string | null, string | undefined]][] = [
          ['load_price', 'activate', act(1), 'ROUTING_KEY_MISMATCH', [400, null, actId]],
          ['report.heh-x', 'set_smart_mode', smart, 'ROUTING_KEY_MISMATCH', [400, smartId, undefined]],
          ['', undefined, smart, 'ROUTING_KEY_MISMATCH', [400, smartId, undefined]],
          ['activate', 'load_price', act(2), 'TYPE_MISMATCH', [400, null, actId]],
          ['activate', 'activate', act(-1), 'DECODE_454', [454, null, actId]],
        ];
        const ch = await f.channel();
        for (const [key, type, body] of cases)
          ch.publish(`${vpp}-to-${hub}`, key, Buffer.from(body), {
            persistent: true,
            contentType: 'application/json',
            ...(type === undefined ? {} : { type }),
          });
        const good = randomUUID();
        ch.publish(
          `${vpp}-to-${hub}`,
          'set_clock.heh-x',
          Buffer.from(`{"msg":"set_clock","offset":1,"msg_id":"${good}"}`),
          { persistent: true, contentType: 'application/json', type: 'set_clock' },
        );
        await ch.close();
        await until(
          () => responses.length >= cases.length + 1,
          () => `${cases.length + 1} responses at the VPP (has ${responses.length})`,
        );
        await until(
          async () => (await f.depth(`private-${hub}-dead`)) >= cases.length,
          () => `${cases.length} dead letters`,
        );
        assert.equal(
          handled.map((g) => g.message.msg),
          ['set_clock'],
          'only the good message is handled',
        );
        assert.equal(
          he.deadLetters.map(([, code]) => code),
          cases.map((c) => c[3]),
        );
        assert.match(he.deadLetters[0]?.[0] ?? '', /the routing key 'load_price' does not name activate/);
        // In any order: a refusal is answered once its dead letter is done, so the good message's 200 may come first.
        const got = responses.map((g) => g.message as Message<'response'>);
        const sorted = (rows: unknown[][]): string[] => rows.map((row) => JSON.stringify(row)).sort();
        assert.equal(
          sorted(got.map((r) => [r.response_code, r.msg_id, r.id])),
          sorted([...cases.map((c) => c[4]), [200, good, undefined]]),
        );
        const letters = await f.drain(`private-${hub}-dead`);
        assert.equal(
          letters.map((m) => String(m.properties.headers?.['x-ebadge-error-code'])),
          cases.map((c) => c[3]),
          'the dead-letter queue has each with its code',
        );
      }),
    15_000,
  ),
);

s(
  'a handler that throws twice then succeeds gets the message 3 times; it is acked and answered 200 once',
  timed(
    () =>
      withBus(async (f) => {
        const { hub, h, v, he, responses } = await pair(f);
        const deliveries: { count: number; redelivered: boolean }[] = [];
        h.onSetSmartMode((_m, ctx) => {
          deliveries.push({ count: ctx.delivery.deliveryCount, redelivered: ctx.delivery.redelivered });
          if (deliveries.length <= 2) throw new Error(`crash ${deliveries.length}`);
        });
        const atHub = record(h, ['response']); // the barrier
        await f.start();
        const id = randomUUID();
        await withDeadline(
          v.publish(hub, { msg: 'set_smart_mode', mode: 'passive', reset: true, msg_id: id }),
          NET_MS,
          'publish',
        );
        await until(
          () => responses.length === 1,
          () => `the response (${deliveries.length} deliveries, ${responses.length} responses)`,
        );
        // No second response, no fourth delivery: barriers each way come after them.
        await barrier(h, v, responses);
        await barrier(v, h, atHub);
        assert.is(deliveries.length, 3, 'three deliveries');
        assert.equal(
          deliveries.map((d) => d.redelivered),
          [false, true, true],
        );
        assert.equal(
          deliveries.map((d) => d.count),
          [0, 1, 2],
          'the quorum queue counts the deliveries (x-delivery-count)',
        );
        assert.equal(
          he.handlerErrors.map(([e, type, final]) => [(e as Error).message, type, final]),
          [
            ['crash 1', 'set_smart_mode', false],
            ['crash 2', 'set_smart_mode', false],
          ],
        );
        assert.equal(
          responses.map((g) => g.message),
          [{ msg: 'response', msg_id: id, response_code: 200, response_desc: 'OK', ref_msg: 'set_smart_mode' }],
        );
        assert.equal(he.deadLetters, []);
        assert.is(await f.depth(`private-${hub}-in`), 0, 'acked: the inbox is empty');
        assert.is(await f.depth(`private-${hub}-dead`), 0, 'not dead-lettered');
      }),
    15_000,
  ),
);

s(
  'CON-4: a handler that always throws: after deliveryLimit (3) the message is dead-lettered with the error; one response 500 per msg_id',
  timed(
    () =>
      withBus(async (f) => {
        const { hub, vpp, h, v, he, responses } = await pair(f);
        let calls = 0;
        h.onSetClock(() => {
          calls++;
          throw new Error('boom: the clock is stuck');
        });
        let endCalls = 0;
        h.onContingencyEnd(() => {
          endCalls++;
          throw new TypeError('no contingency');
        });
        const atHub = record(h, ['response']); // the barrier
        await f.start();
        const id = randomUUID();
        const endId = randomUUID();
        await withDeadline(
          Promise.all([
            v.publish(hub, { msg: 'set_clock', offset: 30, msg_id: id }),
            v.publish(hub, { msg: 'contingency_end', id: endId, end: EbTime.parse(TO) }),
          ]),
          NET_MS,
          'publish',
        );
        const dead = `private-${hub}-dead`;
        await until(
          async () => (await f.depth(dead)) === 2,
          () => `two dead letters in ${dead}`,
        );
        // No further delivery, no second response: barriers each way come after them.
        await barrier(h, v, responses);
        await barrier(v, h, atHub);
        assert.is(calls, 3, 'set_clock delivered deliveryLimit times');
        assert.is(endCalls, 3, 'contingency_end delivered deliveryLimit times');
        assert.equal(
          he.handlerErrors.filter(([, t]) => t === 'set_clock').map(([, , final]) => final),
          [false, false, true],
        );
        assert.equal(
          he.handlerErrors.filter(([, t]) => t === 'contingency_end').map(([, , final]) => final),
          [false, false, true],
        );
        assert.equal(
          he.deadLetters.map(([, code]) => code),
          ['HANDLER_FAILED', 'HANDLER_FAILED'],
        );
        // One 500 each: to set_clock's msg_id, and to contingency_end, which has none, with msg_id null and its id
        // echoed (data model §3.5 rule 3).
        assert.is(responses.length, 2, `responses: ${JSON.stringify(responses.map((g) => g.message))}`);
        const byRef = new Map(responses.map((g) => [(g.message as Message<'response'>).ref_msg, g.message]));
        const r = byRef.get('set_clock') as Message<'response'>;
        assert.is(r.msg_id, id);
        assert.is(r.response_code, 500);
        assert.match(r.response_desc, /boom: the clock is stuck/);
        const e = byRef.get('contingency_end') as Message<'response'>;
        assert.equal([e.msg_id, e.response_code, e.id], [null, 500, endId]);
        assert.match(e.response_desc, /no contingency/);
        const letters = await f.drain(dead);
        const byType = new Map(letters.map((m) => [JSON.parse(m.content.toString()).msg as string, m]));
        for (const [type, text] of [
          ['set_clock', 'boom: the clock is stuck'],
          ['contingency_end', 'TypeError: no contingency'],
        ] as const) {
          const m = byType.get(type);
          assert.ok(m, `${type} is in ${dead}`);
          const headers = m.properties.headers ?? {};
          assert.match(str(headers['x-ebadge-error']), text, `${type}: x-ebadge-error carries the error`);
          assert.match(str(headers['x-ebadge-error']), /failed 3 times/);
          assert.is(str(headers['x-ebadge-error-code']), 'HANDLER_FAILED');
          assert.is(str(headers['x-ebadge-source']), `${vpp}-to-${hub}`);
          assert.is(m.properties.type, type, 'the original properties are kept');
        }
        assert.is(await f.depth(`private-${hub}-in`), 0, 'nothing left in the inbox');
      }),
    15_000,
  ),
);

s(
  'PUB-4: the same message (same message_id) twice is handled once; the duplicate event fires',
  timed(
    () =>
      withBus(async (f) => {
        const { hub, vpp, h, v, he, responses } = await pair(f);
        const handled = record(h, HEH_TYPES);
        await f.start();
        const id = randomUUID();
        const m: Message<'set_clock'> = { msg: 'set_clock', offset: 5, msg_id: id };
        await withDeadline(v.publish(hub, m), NET_MS, 'publish 1');
        await withDeadline(v.publish(hub, m), NET_MS, 'publish 2');
        // Raw, no msg_id in the body: the AMQP message_id alone identifies it.
        const rawId = randomUUID();
        const body = Buffer.from(`{"msg":"contingency_end","id":"${randomUUID()}","end":"${TO}"}`);
        const ch = await f.channel();
        for (let i = 0; i < 2; i++)
          ch.publish(`${vpp}-to-${hub}`, 'contingency_end', body, {
            messageId: rawId,
            contentType: 'application/json',
          });
        await ch.close();
        await until(
          () => he.duplicates.length === 2 && handled.length === 2,
          () =>
            `two handled, two duplicates (handled ${handled.map((g) => g.message.msg).join(', ')}; duplicates ${he.duplicates.map(([d]) => (d === id ? 'set_clock' : d === rawId ? 'contingency_end' : d)).join(', ')}; handler errors ${he.handlerErrors.length})`,
        );
        // Nothing handled or answered a third time: barriers each way come after it.
        await barrier(h, v, responses);
        await barrier(v, h, handled);
        assert.equal(
          handled.map((g) => g.message.msg),
          ['set_clock', 'contingency_end'],
        );
        assert.equal(he.duplicates, [
          [id, vpp],
          [rawId, vpp],
        ]);
        assert.is(responses.length, 1, 'one response for the msg_id');
        assert.is((responses[0]?.message as Message<'response'> | undefined)?.response_code, 200);
        assert.is(await f.depth(`private-${hub}-in`), 0, 'the duplicates are acked');
        assert.is(await f.depth(`private-${hub}-dead`), 0);
      }),
    15_000,
  ),
);

s(
  "a handler whose answer the broker cannot route (the peer's inbox unbound under it) runs once; the peer's retry gets the answer",
  timed(
    () =>
      withBus(async (f) => {
        const { hub, vpp, h, v, he, responses } = await pair(f);
        const ch = await f.channel();
        let calls = 0;
        h.onSetClock(async (_m, ctx) => {
          // An operator's slip, or a peer's inbox deleted and not yet declared again: our answer has nowhere to go.
          if (++calls === 1) await ch.unbindQueue(`private-${vpp}-in`, `${hub}-to-${vpp}`, '#');
          await ctx.respond(200, 'moved');
        });
        await f.start();
        const m: Message<'set_clock'> = { msg: 'set_clock', offset: 5, msg_id: randomUUID() };
        await withDeadline(v.publish(hub, m, { messageId: 'q' }), NET_MS, 'publish');
        await until(
          () => he.handlerErrors.length > 0,
          () => `the lost answer told (calls ${calls}, dead letters ${he.deadLetters.length})`,
        );
        assert.match(String(he.handlerErrors[0]?.[0]), 'NO_ROUTE');
        assert.is(he.handlerErrors[0]?.[1], 'response');
        await ch.bindQueue(`private-${vpp}-in`, `${hub}-to-${vpp}`, '#');
        await withDeadline(v.publish(hub, m, { messageId: 'q' }), NET_MS, "the peer's retry");
        await until(
          () => responses.length > 0,
          () => `the owed answer at the VPP (calls ${calls}, duplicates ${he.duplicates.length})`,
        );
        await barrier(h, v, responses);
        assert.is(calls, 1, 'the handler ran once: its effect (the clock moved) is not done again');
        const answer = responses[0]?.message as Message<'response'> | undefined;
        assert.equal([answer?.response_code, answer?.msg_id], [200, m.msg_id]);
        assert.is(responses.length, 1);
        assert.equal(he.deadLetters, []);
        assert.is(await f.depth(`private-${hub}-in`), 0, 'acked');
        await ch.close();
      }),
    20_000,
  ),
);

s(
  'CON-2, PUB-4: a copy that arrives while the first is being handled waits for its outcome: it is handled when the first failed, acked as a duplicate when it succeeded',
  timed(
    () =>
      withBus(async (f) => {
        const { hub, h, v, he } = await pair(f);
        const outcomes: string[] = [];
        let calls = 0;
        h.onSetClock(async () => {
          const n = ++calls;
          await sleep(300); // a slow handler: the second copy arrives while the first is in it
          if (n === 1) {
            outcomes.push('fail');
            throw new Error('the first attempt fails');
          }
          outcomes.push('ok');
        });
        const atHub = record(h, ['response']); // the barrier
        await f.start();
        he.duplicates.length = 0;
        const m: Message<'set_clock'> = { msg: 'set_clock', offset: 5, msg_id: randomUUID() };
        // Two copies with one message id, the second delivered while the first is in the handler (a redelivery after a
        // reconnect looks like this, with the first copy's ack unable to reach the broker).
        await Promise.all([v.publish(hub, m, { messageId: 'copy' }), v.publish(hub, m, { messageId: 'copy' })]);
        await until(
          () => he.duplicates.length >= 1,
          () => `the redelivered first copy dropped as a duplicate (outcomes ${outcomes.join(', ')})`,
          5_000,
        );
        await barrier(v, h, atHub); // no third copy is on its way
        assert.equal(
          outcomes,
          ['fail', 'ok'],
          'the second copy was handled after the first failed, instead of being acked at once',
        );
        assert.is(calls, 2, "the first copy's retry, coming after the success, is a duplicate");
        assert.is(await f.depth(`private-${hub}-in`), 0);
      }),
    15_000,
  ),
);

s(
  'two controlling entities reach one hub with heh_id: routing key <msg>.<heh_id>, each gets its own reply',
  timed(
    () =>
      withBus(async (f) => {
        const hub = entity('heh');
        const vpp = entity('vpp');
        const dso = entity('dso');
        const h = f.create({ name: hub, peers: [vpp, dso] });
        const v = await f.connector({ name: vpp, peers: [hub] });
        const d = await f.connector({ name: dso, peers: [hub] });
        // Observers of what the hub sends to each of them.
        const ch = await f.channel();
        const obs = new Map<string, string>();
        for (const peer of [vpp, dso]) {
          const q = `${peer}-obs`;
          f.queues.add(q);
          obs.set(peer, q);
          await ch.assertQueue(q, { durable: false });
          await ch.bindQueue(q, `${hub}-to-${peer}`, '#');
        }
        const seen: { sender: string; key: string; exchange: string }[] = [];
        h.onGetStatusReport(async (m, ctx) => {
          seen.push({
            sender: ctx.sender,
            key: ctx.delivery.routingKey,
            exchange: (ctx.delivery.raw as { exchange: string }).exchange,
          });
          if (ctx.sender === vpp) await sleep(100); // the DSO is answered first
          await ctx.reply({
            msg: 'status_report',
            status: `for ${ctx.sender}`,
            clock: EbTime.now(),
            events: [],
            ...(m.heh_id == null ? {} : { heh_id: m.heh_id }),
          });
        });
        await f.start();
        const hehId = 'heh-b827ebea02c1';
        const ask = {
          msg: 'get_status_report',
          from: EbTime.parse(FROM),
          to: EbTime.parse(TO),
          severity_threshold: 2,
          heh_id: hehId,
        } as const;
        const all = [events(h), events(v), events(d)];
        const [rv, rd] = await withDeadline(
          Promise.all([v.request(hub, ask), d.request(hub, ask)]),
          NET_MS,
          'the two requests',
        );
        assert.is((rv as Message<'status_report'>).status, `for ${vpp}`);
        assert.is((rd as Message<'status_report'>).status, `for ${dso}`);
        assert.is((rv as Message<'status_report'>).heh_id, hehId);
        assert.equal(seen.map((x) => x.sender).sort(), [dso, vpp].sort());
        for (const x of seen) {
          assert.is(x.key, `get_status_report.${hehId}`, 'the routing key carries the heh_id');
          assert.is(x.exchange, `${x.sender}-to-${hub}`);
        }
        // A barrier from the hub to each: once it is confirmed, each observer queue holds all the hub sent before it.
        const barriers = [
          await barrierUnhandled(h, v, all[1] as Events),
          await barrierUnhandled(h, d, all[2] as Events),
        ];
        for (const peer of [vpp, dso]) {
          const got = (await f.drain(obs.get(peer) as string)).filter(
            (m) => !barriers.some((id) => isBarrier(JSON.parse(m.content.toString()), id)),
          );
          assert.is(got.length, 1, `${peer} got exactly its own reply`);
          assert.is(got[0]?.fields.routingKey, `status_report.${hehId}`);
          assert.is(JSON.parse(got[0]?.content.toString() ?? '{}').status, `for ${peer}`);
        }
        await ch.close();
        for (const e of all) {
          assert.equal([e.deadLetters, e.handlerErrors, e.unhandled, e.duplicates], [[], [], [], []]);
        }
      }),
    15_000,
  ),
);

s('start(): refused credentials reject ACCESS_REFUSED, not a wait without end; after close(), CLOSED', async () => {
  await withBus(async (f) => {
    const name = entity('vpp');
    const v = amqpBus({
      name,
      peers: [entity('heh')],
      url: AMQP_URL.replace(/\/\/[^@/]*@/, '//'),
      connectOptions: { username: 'guest', password: 'not-the-password' },
    });
    try {
      const failed: boolean[] = [];
      v.transport.on('failed', (_e, i) => failed.push(i.authentication));
      const err = await withDeadline(
        v.start().then(
          () => undefined,
          (e: unknown) => e,
        ),
        NET_MS,
        'start() with a wrong password',
      );
      assert.instance(err, BusError);
      assert.is((err as BusError).code, 'ACCESS_REFUSED');
      assert.match((err as Error).message, 'the broker refused our credentials');
      assert.equal(failed, [true], 'the failed event says it too');
    } finally {
      await v.close();
    }
    const closed = await v.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.is((closed as BusError | undefined)?.code, 'CLOSED', 'start() after close()');
    const ok = await f.connector({ name: entity('vpp'), peers: [entity('heh')] });
    await ok.close();
    const again = await ok.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.is((again as BusError | undefined)?.code, 'CLOSED', 'start() after close() of a started connector');
  });
});

s.run();
