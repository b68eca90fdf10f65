/**
 * Interop with a 2015-style peer, played by amqplib: it knows nothing of our AMQP properties. It publishes the
 * D3.1.3 example bodies byte for byte on the documented exchange `<peer>-to-<me>` with routing key `<msg>` and no
 * properties at all (no message_id, content_type or headers), answers our requests with plain bodies, and reads
 * what we publish from a queue of its own bound to `<me>-to-<peer>` with `#`.
 */

import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Channel as AmqplibChannel, ConsumeMessage } from 'amqplib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CONTENT_TYPE_JSON, type Connector, DM_VERSION } from '../../src/bus/index.js';
import { decode, EbTime, type Message, type MessageType } from '../../src/codec/index.js';
import { timed } from '../helpers/amqp.js';
import {
  ALL_TYPES,
  type BusFixture,
  barrierMessage,
  entity,
  isBarrier,
  NET_MS,
  rawOf,
  record,
  until,
  withBus,
} from '../helpers/bus.js';
import { generate } from '../helpers/codec-messages.js';
import { withDeadline } from '../helpers/deadline.js';
import { repoRoot } from '../helpers/oracle.js';
import { Random } from '../helpers/random.js';

const s = suite('bus-interop');

interface Example {
  line: number;
  msg: MessageType;
  errata: string[];
  json: string;
}
const EXAMPLES = JSON.parse(
  readFileSync(path.join(repoRoot(), 'test/vectors/codec/d3.1.3-examples.json'), 'utf8'),
) as Example[];

/** amqplib's lower-level publish with exactly the given properties: here none (channel.publish always sends headers). */
function publishBare(ch: AmqplibChannel, exchange: string, routingKey: string, body: Buffer): void {
  const fields = { exchange, routingKey, mandatory: false, immediate: false, ticket: 0 };
  (ch as unknown as { sendMessage(f: object, p: object, b: Buffer): boolean }).sendMessage(fields, {}, body);
}

/**
 * A barrier from our connector `c` to the 2015 peer: the call returns once the peer's queue delivered it, after
 * everything `c` published before it; the barrier is taken out of `got` again.
 */
async function peerBarrier(c: Connector, peer: string, got: ConsumeMessage[]): Promise<void> {
  const id = randomUUID();
  await withDeadline(c.publish(peer, barrierMessage(id)), NET_MS, 'publishing a barrier');
  const at = (): number => got.findIndex((m) => isBarrier(JSON.parse(m.content.toString('utf8')), id));
  await until(() => at() >= 0, 'the barrier at the 2015 peer', NET_MS);
  got.splice(at(), 1);
}

/** The 2015 peer's own queue, bound to `<me>-to-<peer>` with `#`; returns what arrives on it. */
async function peerInbox(
  f: BusFixture,
  me: string,
  peer: string,
): Promise<{ ch: AmqplibChannel; got: ConsumeMessage[] }> {
  const q = `private-${peer}-in`;
  f.queues.add(q);
  const ch = await f.channel();
  await withDeadline(ch.assertQueue(q, { durable: true }), NET_MS, 'assertQueue');
  // As the reference code (comm.py) binds: two words, `<msg>.<heh_id or sender>`.
  await ch.bindQueue(q, `${me}-to-${peer}`, '*.*');
  const got: ConsumeMessage[] = [];
  await ch.consume(
    q,
    (m) => {
      if (m !== null) got.push(m);
    },
    { noAck: true },
  );
  return { ch, got };
}

s(
  'a 2015 peer publishes every D3.1.3 example with no AMQP properties: all handled, errata with diagnostics, msg_ids answered',
  timed(
    () =>
      withBus(async (f) => {
        const me = entity('heh');
        const peer = entity('py2015');
        const c = f.create({ name: me, peers: [peer] });
        const got = record(c, ALL_TYPES);
        await f.start();
        const problems: string[] = [];
        c.on('dead-letter', (reason, code) => problems.push(`dead-letter ${code}: ${reason}`));
        c.on('handler-error', (err, type) => problems.push(`handler-error ${type}: ${String(err)}`));
        c.on('unhandled', (m) => problems.push(`unhandled ${m.msg}`));
        c.on('duplicate', (id) => problems.push(`duplicate ${id}`));
        const { ch, got: peerGot } = await peerInbox(f, me, peer);
        assert.is(EXAMPLES.length, 33);
        // With the reference code's routing key, `<msg>.<sender>`.
        for (const e of EXAMPLES) publishBare(ch, `${peer}-to-${me}`, `${e.msg}.${peer}`, Buffer.from(e.json));

        await until(
          () => got.length >= EXAMPLES.length,
          () => `all ${EXAMPLES.length} examples handled (${got.length} so far; ${problems.join('; ')})`,
        );
        const withMsgId = EXAMPLES.filter(
          (e) => e.msg !== 'response' && typeof (JSON.parse(e.json) as { msg_id?: unknown }).msg_id === 'string',
        );
        await until(
          () => peerGot.length >= withMsgId.length,
          () => `${withMsgId.length} responses at the 2015 peer (${peerGot.length})`,
        );
        // Nothing more either way: a barrier each way arrives after everything published before it on its path.
        await peerBarrier(c, peer, peerGot);
        const bid = randomUUID();
        publishBare(ch, `${peer}-to-${me}`, 'response', Buffer.from(JSON.stringify(barrierMessage(bid))));
        await until(() => got.some((g) => isBarrier(g.message, bid)), 'the barrier from the 2015 peer', NET_MS);
        got.splice(
          got.findIndex((g) => isBarrier(g.message, bid)),
          1,
        );
        assert.equal(problems, []);
        assert.is(got.length, EXAMPLES.length);

        for (const e of EXAMPLES) {
          const expected = decode(e.json);
          const hit = got.find((g) => g.message.msg === e.msg);
          assert.ok(hit, `line ${e.line} ${e.msg}: handled`);
          assert.equal(hit.message, expected.message, `line ${e.line} ${e.msg}: the message`);
          assert.equal(hit.ctx.diagnostics, expected.diagnostics, `line ${e.line} ${e.msg}: diagnostics`);
          if (e.errata.length > 0)
            assert.ok(hit.ctx.diagnostics.length > 0, `line ${e.line} ${e.msg}: errata (${e.errata.join(', ')}) noted`);
          assert.is(hit.ctx.sender, peer);
          assert.is(hit.ctx.delivery.messageId, undefined, 'no message_id was sent');
          assert.is(hit.ctx.delivery.contentType, undefined, 'no content_type was sent');
          assert.is(rawOf(hit.ctx).properties.headers, undefined, 'no headers were sent');
          assert.is(hit.ctx.delivery.routingKey, `${e.msg}.${peer}`);
        }
        // The comma-joined signals of the get_report example are split.
        const gr = got.find((g) => g.message.msg === 'get_report')?.message as Message<'get_report'>;
        assert.equal(gr.signals, ['total.ua', 'total.ub', 'total.uc', 'WaterHeater01.p']);

        // Every msg_id was answered once with a plain JSON response the 2015 peer can parse.
        assert.is(peerGot.length, withMsgId.length, 'one response per msg_id, nothing else');
        for (const e of withMsgId) {
          const { msg_id: id, request_id: requestId } = JSON.parse(e.json) as { msg_id: string; request_id?: string };
          const r = peerGot.filter(
            (m) => (JSON.parse(m.content.toString('utf8')) as { msg_id?: string }).msg_id === id,
          );
          assert.is(r.length, 1, `${e.msg}: one response`);
          assert.equal(JSON.parse(r[0]?.content.toString('utf8') ?? ''), {
            msg: 'response',
            msg_id: id,
            response_code: 200,
            response_desc: 'OK',
            ref_msg: e.msg,
            ...(requestId === undefined ? {} : { request_id: requestId }),
          });
          assert.is(r[0]?.fields.routingKey, `response.${me}`);
          assert.is(r[0]?.fields.exchange, `${me}-to-${peer}`);
        }
        await ch.close();
      }),
    15_000,
  ),
);

s(
  "we publish to a 2015 peer: plain JSON on <me>-to-<peer>, routing key <msg>.<heh_id or sender>, which its '*.*' binding takes",
  timed(
    () =>
      withBus(async (f) => {
        const me = entity('vpp');
        const peer = entity('py2015');
        const c = await f.connector({ name: me, peers: [peer] });
        const { ch, got } = await peerInbox(f, me, peer);
        const r = new Random(15);
        const sent: Message[] = ALL_TYPES.map((t) => decode(JSON.stringify(generate(t, r))).message);
        // One with an operator's heh_id for sure.
        sent.push({ msg: 'get_activation_capacity', device: null, heh_id: 'heh-b827ebea02c1' });
        for (const m of sent) await withDeadline(c.publish(peer, m), NET_MS, `publish ${m.msg}`);
        await until(
          () => got.length >= sent.length,
          () => `${sent.length} messages at the 2015 peer (${got.length})`,
        );
        await peerBarrier(c, peer, got); // nothing more comes
        assert.is(got.length, sent.length);
        for (const [i, m] of sent.entries()) {
          const d = got[i] as ConsumeMessage;
          let body: unknown;
          assert.not.throws(() => {
            body = JSON.parse(d.content.toString('utf8'));
          }, `${m.msg}: JSON.parse`);
          assert.equal(body, JSON.parse(JSON.stringify(m)), `${m.msg}: the body`);
          const heh = (m as { heh_id?: unknown }).heh_id;
          assert.is(
            d.fields.routingKey,
            `${m.msg}.${typeof heh === 'string' && heh !== '' ? heh : me}`,
            `${m.msg}: routing key`,
          );
          assert.is(d.fields.exchange, `${me}-to-${peer}`);
          assert.is(d.properties.contentType, CONTENT_TYPE_JSON);
          assert.is(d.properties.type, m.msg);
          assert.is(d.properties.appId, me);
          assert.is(d.properties.deliveryMode, 2);
          assert.is(String(d.properties.headers?.['x-ebadge-dm']), DM_VERSION);
          // Emitted times are canonical UTC with milliseconds (data model §3.1 rule 4).
          for (const t of d.content.toString('utf8').match(/"\d{4}-\d\d-\d\dT[^"]*"/g) ?? []) {
            assert.match(t, /^"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"$/, `${m.msg}: ${t}`);
          }
        }
        assert.ok(got.some((d) => d.fields.routingKey === 'get_activation_capacity.heh-b827ebea02c1'));
        await ch.close();
      }),
    15_000,
  ),
);

s(
  'our requests to a 2015 peer are correlated from its plain replies (msg_id, request_id, activation id)',
  timed(
    () =>
      withBus(async (f) => {
        const me = entity('vpp');
        const peer = entity('py2015');
        const c = await f.connector({ name: me, peers: [peer] });
        const unhandled: Message[] = [];
        c.on('unhandled', (m) => unhandled.push(m));
        const { ch, got } = await peerInbox(f, me, peer);
        // The 2015 peer answers what it reads, with bare bodies and no correlation_id.
        let answered = 0;
        const answer = (): void => {
          for (const d of got.splice(0)) {
            const m = JSON.parse(d.content.toString('utf8')) as Record<string, unknown>;
            if (m['msg'] === 'response') {
              publishBare(ch, `${peer}-to-${me}`, 'response', d.content); // a barrier: back as it came
              continue;
            }
            const reply =
              m['msg'] === 'set_clock'
                ? { msg: 'response', msg_id: m['msg_id'], response_code: 200, response_subcode: 0, response_desc: 'OK' }
                : m['msg'] === 'activate'
                  ? { msg: 'accept_activation', id: m['id'], modification_count: m['modification_count'] }
                  : m['msg'] === 'get_activation_capacity'
                    ? {
                        msg: 'activation_capacity',
                        device: null,
                        pos_capacity: 4.3,
                        neg_capacity: 0,
                        request_id: m['request_id'],
                      }
                    : m['msg'] === 'set_smart_mode'
                      ? {
                          msg: 'response',
                          msg_id: m['msg_id'],
                          response_code: 451,
                          response_subcode: 0,
                          response_desc: 'not allowed',
                        }
                      : undefined;
            if (reply === undefined) continue;
            publishBare(ch, `${peer}-to-${me}`, reply.msg, Buffer.from(JSON.stringify(reply)));
            answered++;
          }
        };
        const timer = setInterval(answer, 10);
        try {
          const id = randomUUID();
          const [clock, accept, capacity, smart] = await withDeadline(
            Promise.all([
              c.request(peer, { msg: 'set_clock', offset: 1 }),
              c.request(peer, {
                msg: 'activate',
                id,
                modification_count: 3,
                from: EbTime.parse('2026-03-01T10:00:00Z'),
                to: EbTime.parse('2026-03-01T10:15:00Z'),
                quantity: -1.5,
                device: null,
              }),
              c.request(peer, { msg: 'get_activation_capacity', device: null }),
              c.request(peer, { msg: 'set_smart_mode', mode: 'off', reset: false }).then(
                () => 'resolved',
                (e: Error & { code?: string }) => e.code,
              ),
            ]),
            NET_MS,
            'requests',
          );
          assert.is(clock.msg, 'response');
          assert.is((clock as Message<'response'>).response_code, 200);
          assert.equal(accept, { msg: 'accept_activation', id, modification_count: 3 });
          assert.is(capacity.msg, 'activation_capacity');
          assert.is(smart, 'REJECTED');
          assert.is(answered, 4);
          // Nothing unhandled: a barrier to the peer comes back after its replies to all we had sent before it.
          const bid = randomUUID();
          await withDeadline(c.publish(peer, barrierMessage(bid)), NET_MS, 'publishing a barrier');
          await until(() => unhandled.some((m) => isBarrier(m, bid)), 'the barrier back from the 2015 peer', NET_MS);
          assert.equal(
            unhandled.filter((m) => !isBarrier(m, bid)),
            [],
          );
        } finally {
          clearInterval(timer);
        }
        await ch.close();
      }),
    15_000,
  ),
);

s.run();
