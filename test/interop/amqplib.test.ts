/**
 * Interop with amqplib (an independent AMQP 0-9-1 implementation) through the local RabbitMQ:
 *
 *   1. we publish, amqplib consumes: bodies and all 14 basic properties, headers with every field type;
 *   2. amqplib publishes, we consume: the same matrix in reverse;
 *   3. byte-level: the raw publish frames (method, content header, body frames) both clients put on the wire for
 *      identical property sets, and the content header the broker hands to the other client;
 *   4. volume: 1,000 messages each way, exactly once and in order;
 *
 * Every queue is uniquely named and deleted by the test that declared it. Every network await has a deadline.
 *
 * How amqplib 2.3.1 represents field values (node_modules/amqplib/lib/codec.js), which the expectations below follow:
 *   - decoding: b B s u I i f d as numbers; l as a Number (lossy beyond 2^53: `Number(readBigInt64BE)`); S as a UTF-8
 *     string; x as a Buffer; T as `{ '!': 'timestamp', value: seconds }`; D as
 *     `{ '!': 'decimal', value: { places, digits } }` with `digits` read as an UNSIGNED 32-bit integer; V as null;
 *     A as an array; F as a plain object.
 *   - encoding: `{ '!': type, value }` forces a tag (int8 uint8 int16 uint16 int32 uint32 int64 float double
 *     timestamp decimal; `decimal` wants `{ places, digits }` and writes digits with writeUInt32BE). Plain numbers are
 *     inferred as the smallest of b / s / I / l (or d when fractional) -- unlike ours (I, l or d), so the byte-level
 *     test always names the tag on both sides.
 *   - publishing: `channel.publish` always sends a headers table (empty when no headers are given) and never sends
 *     cluster-id (api_args.js hard-codes `clusterId: undefined`); the lower-level `channel.sendMessage(fields,
 *     properties, body)` sends exactly the properties given, so it is used where cluster-id must be on the wire.
 */
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import * as amqplib from 'amqplib';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import {
  type Channel,
  type Connection,
  connect,
  Decimal,
  type FieldTable,
  type FieldValue,
  field,
  type Message,
  type MessageProperties,
} from '../../src/amqp/index.js';
import { until } from '../helpers/bus.js';
import { withDeadline } from '../helpers/deadline.js';

const AMQP_URL = process.env['AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672';
const BROKER = new URL(AMQP_URL);
/** Deadline for a single network round trip (connect, declare, a batch of confirms ...). */
const NET_MS = 5_000;
/** Deadline for a whole test. */
const TEST_MS = 15_000;

let counter = 0;
function unique(what: string): string {
  return `interop-amqplib-${what}-${process.pid}-${Date.now().toString(36)}-${counter++}`;
}

function net_<T>(work: Promise<T>, what: string, ms = NET_MS): Promise<T> {
  return withDeadline(work, ms, what);
}

function timed(fn: () => Promise<void>): () => Promise<void> {
  return () => withDeadline(fn(), TEST_MS, 'test');
}

/** Collects `n` items; `done` resolves with them once the n-th arrives. */
class Collector<T> {
  readonly items: T[] = [];
  readonly done: Promise<T[]>;
  private resolve!: (v: T[]) => void;
  constructor(readonly n: number) {
    this.done = new Promise((resolve) => {
      this.resolve = resolve;
    });
  }

  push(item: T): void {
    this.items.push(item);
    if (this.items.length === this.n) this.resolve(this.items);
  }
}

// ---- two connections per test -----------------------------------------------------------------------------------

interface Both {
  ours: Connection;
  ch: Channel;
  theirs: amqplib.ChannelModel;
  /** Declares a uniquely named queue (through our channel) that is deleted after the test. */
  queue(what: string): Promise<string>;
  /** Errors amqplib reported on its connection or channels (asserted empty at the end). */
  theirErrors: Error[];
}

/** Opens our connection (confirm channel) and an amqplib connection, runs `fn`, then deletes queues and closes both. */
async function withBoth(fn: (b: Both) => Promise<void>, urls: { ours?: string; theirs?: string } = {}): Promise<void> {
  const queues: string[] = [];
  const theirErrors: Error[] = [];
  const ours = await net_(connect(urls.ours ?? AMQP_URL, { connectionName: 'interop-amqplib' }), 'our connect');
  let theirs: amqplib.ChannelModel | undefined;
  let failure: unknown;
  try {
    theirs = await net_(amqplib.connect(urls.theirs ?? AMQP_URL), 'amqplib connect');
    theirs.on('error', (err: Error) => theirErrors.push(err));
    const ch = await net_(ours.createConfirmChannel(), 'our confirm channel');
    await fn({
      ours,
      ch,
      theirs,
      theirErrors,
      queue: async (what) => {
        const name = unique(what);
        queues.push(name);
        await net_(
          ch.queueDeclare(name, { durable: false, autoDelete: false, exclusive: false, arguments: {} }),
          `declare ${name}`,
        );
        return name;
      },
    });
    assert.equal(theirErrors.map(String), [], 'amqplib reported no errors');
  } catch (err) {
    failure = err;
  }
  // Cleanup runs whatever happened, on a fresh direct connection (the test's own may be dead, or behind a proxy);
  // its own failure is reported only when the test itself passed.
  await net_(ours.close(), 'our close').catch((err) => {
    failure ??= err;
  });
  if (theirs !== undefined)
    await net_(theirs.close(), 'amqplib close').catch((err) => {
      failure ??= err;
    });
  if (queues.length > 0) {
    try {
      const admin = await net_(connect(AMQP_URL, { connectionName: 'interop-amqplib-cleanup' }), 'cleanup connect');
      try {
        const cleanup = await net_(admin.createChannel(), 'cleanup channel');
        for (const q of queues) await net_(cleanup.queueDelete(q), `delete ${q}`);
      } finally {
        await net_(admin.close(), 'cleanup close');
      }
    } catch (err) {
      failure ??= err;
    }
  }
  if (failure !== undefined) throw failure;
}

/** An amqplib channel whose errors are recorded instead of thrown at the process. */
async function theirChannel(b: Both, confirm: boolean): Promise<amqplib.Channel> {
  const c = confirm
    ? await net_(b.theirs.createConfirmChannel(), 'amqplib confirm channel')
    : await net_(b.theirs.createChannel(), 'amqplib channel');
  c.on('error', (err: Error) => b.theirErrors.push(err));
  return c;
}

/** amqplib's lower-level publish: sends exactly the given properties (channel.publish drops cluster-id). */
function theirSendMessage(
  c: amqplib.Channel,
  exchange: string,
  routingKey: string,
  body: Buffer,
  props: Record<string, unknown>,
): void {
  const fields = { exchange, routingKey, mandatory: false, immediate: false, ticket: 0, ...props };
  (c as unknown as { sendMessage(f: object, p: object, b: Buffer): boolean }).sendMessage(fields, fields, body);
}

// ---- the field-value matrix -------------------------------------------------------------------------------------

const TS_SECONDS = 1_700_000_000;
const TS = new Date(TS_SECONDS * 1000);
const UTF8 = 'zażółć gęślą jaźń ✓ 🚀 日本';

/**
 * One header per row, written the same way (same tag, same value) by both clients:
 *   ours / theirs: the value as each client is given it to encode,
 *   oursDecoded / theirsDecoded: what each client hands back after decoding it.
 */
interface Row {
  key: string;
  ours: FieldValue;
  theirs: unknown;
  oursDecoded: FieldValue;
  theirsDecoded: unknown;
}

function same(key: string, v: FieldValue): Row {
  return { key, ours: v, theirs: v, oursDecoded: v, theirsDecoded: v };
}

const AMQPLIB_TYPE = {
  b: 'int8',
  B: 'uint8',
  s: 'int16',
  u: 'uint16',
  I: 'int32',
  i: 'uint32',
  l: 'int64',
  f: 'float',
  d: 'double',
  T: 'timestamp',
} as const;

/** A numeric tag: both sides name it; both decode a plain number (unless given). */
function num(
  key: string,
  tag: keyof typeof AMQPLIB_TYPE & string,
  value: number | bigint,
  decoded: { ours?: number | bigint; theirs?: number } = {},
): Row {
  return {
    key,
    ours: field(tag, value),
    theirs: { '!': AMQPLIB_TYPE[tag], value },
    oursDecoded: decoded.ours ?? value,
    theirsDecoded: decoded.theirs ?? value,
  };
}

function decimal(key: string, scale: number, value: number): Row {
  return {
    key,
    ours: new Decimal(scale, value),
    theirs: { '!': 'decimal', value: { places: scale, digits: value } },
    oursDecoded: new Decimal(scale, value),
    theirsDecoded: { '!': 'decimal', value: { places: scale, digits: value } },
  };
}

function timestamp(key: string, seconds: number): Row {
  const t = { '!': 'timestamp', value: seconds };
  return { key, ours: new Date(seconds * 1000), theirs: t, oursDecoded: new Date(seconds * 1000), theirsDecoded: t };
}

const L_BIG = 2n ** 62n + 1n;
const L_MIN = -(2n ** 63n);

const ROWS: Row[] = [
  same('bool-true', true),
  same('bool-false', false),
  num('int8-min', 'b', -128),
  num('int8-max', 'b', 127),
  num('uint8-max', 'B', 255),
  num('int16-min', 's', -32768),
  num('uint16-max', 'u', 65535),
  num('int32-min', 'I', -2147483648),
  num('int32-max', 'I', 2147483647),
  num('uint32-max', 'i', 4294967295),
  num('int64-safe', 'l', -Number.MAX_SAFE_INTEGER),
  // Beyond 2^53 we decode a bigint; amqplib decodes Number(...), which rounds (its limitation, not a wire mismatch).
  num('int64-big', 'l', L_BIG, { ours: L_BIG, theirs: Number(L_BIG) }),
  num('int64-min', 'l', L_MIN, { ours: L_MIN, theirs: Number(L_MIN) }),
  num('float', 'f', 1.5),
  // 0.1 is not a float32: both sides read back the same rounded value.
  num('float-inexact', 'f', 0.1, { ours: Math.fround(0.1), theirs: Math.fround(0.1) }),
  num('double', 'd', Math.PI),
  num('double-huge', 'd', -1e300),
  num('double-subnormal', 'd', 5e-324),
  // No Infinity / NaN: RabbitMQ 3.10 cannot parse a non-finite f or d (function_clause in rabbit_binary_parser) and
  // closes the whole connection with 541 INTERNAL_ERROR -- whichever client sent it (see the report).
  decimal('decimal', 2, 12345),
  decimal('decimal-zero', 0, 0),
  decimal('decimal-max', 255, 4294967295),
  same('longstr', UTF8),
  same('longstr-empty', ''),
  same('bytes', Buffer.from([0x00, 0x01, 0x7f, 0x80, 0xce, 0xff])),
  same('bytes-empty', Buffer.alloc(0)),
  timestamp('timestamp', TS_SECONDS),
  timestamp('timestamp-epoch', 0),
  same('void', null),
  {
    key: 'array',
    ours: [
      1,
      'two',
      field('u', 3),
      [true, null, []],
      { nested: 'yes' },
      new Decimal(1, 5),
      TS,
      Buffer.from('x'),
      field('b', -1),
    ],
    theirs: [
      { '!': 'int32', value: 1 },
      'two',
      { '!': 'uint16', value: 3 },
      [true, null, []],
      { nested: 'yes' },
      { '!': 'decimal', value: { places: 1, digits: 5 } },
      { '!': 'timestamp', value: TS_SECONDS },
      Buffer.from('x'),
      { '!': 'int8', value: -1 },
    ],
    oursDecoded: [1, 'two', 3, [true, null, []], { nested: 'yes' }, new Decimal(1, 5), TS, Buffer.from('x'), -1],
    theirsDecoded: [
      1,
      'two',
      3,
      [true, null, []],
      { nested: 'yes' },
      { '!': 'decimal', value: { places: 1, digits: 5 } },
      { '!': 'timestamp', value: TS_SECONDS },
      Buffer.from('x'),
      -1,
    ],
  },
  same('array-empty', []),
  {
    key: 'table',
    ours: {
      inner: { deep: field('b', 1), list: [field('s', -2), 'z'], stamp: TS },
      empty: {},
      ['ключ ✓']: field('d', 0.5),
    },
    theirs: {
      inner: {
        deep: { '!': 'int8', value: 1 },
        list: [{ '!': 'int16', value: -2 }, 'z'],
        stamp: { '!': 'timestamp', value: TS_SECONDS },
      },
      empty: {},
      ['ключ ✓']: 0.5,
    },
    oursDecoded: { inner: { deep: 1, list: [-2, 'z'], stamp: TS }, empty: {}, ['ключ ✓']: 0.5 },
    theirsDecoded: {
      inner: { deep: 1, list: [-2, 'z'], stamp: { '!': 'timestamp', value: TS_SECONDS } },
      empty: {},
      ['ключ ✓']: 0.5,
    },
  },
  same('table-empty', {}),
];

function table<K extends keyof Row>(k: K, rows: readonly Row[] = ROWS): Record<string, Row[K]> {
  return Object.fromEntries(rows.map((r) => [r.key, r[k]]));
}

/** Our plain (untagged) values: the tag is inferred (I, l, d, l for bigint, S, x, T, D, A, F, V). */
const OURS_INFERRED: FieldTable = {
  'inferred-int': 42,
  'inferred-int64': 2 ** 40,
  'inferred-bigint': 7n,
  'inferred-double': 0.25,
};
const OURS_INFERRED_AS_AMQPLIB_SEES_IT = {
  'inferred-int': 42,
  'inferred-int64': 2 ** 40,
  'inferred-bigint': 7,
  'inferred-double': 0.25,
};
/** amqplib's plain numbers: inferred as b, s, I, l or d. We decode each back to the same number. */
const THEIRS_INFERRED = {
  'inferred-b': -5,
  'inferred-s': 300,
  'inferred-I': 70000,
  'inferred-l': 2 ** 40,
  'inferred-d': -1.5,
};

// ---- bodies -----------------------------------------------------------------------------------------------------

const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
const BODIES: { name: string; body: Buffer | string; bytes: Buffer }[] = [
  { name: 'empty', body: Buffer.alloc(0), bytes: Buffer.alloc(0) },
  { name: '1 byte', body: Buffer.from([0xce]), bytes: Buffer.from([0xce]) },
  { name: '200 B', body: Buffer.alloc(200, 'abcdefghij'), bytes: Buffer.alloc(200, 'abcdefghij') },
  { name: 'every byte value', body: ALL_BYTES, bytes: ALL_BYTES },
  ...((): { name: string; body: Buffer; bytes: Buffer }[] => {
    const big = randomBytes(300 * 1024); // three frames at frame_max 131072
    return [{ name: '300 KiB', body: big, bytes: big }];
  })(),
  { name: 'UTF-8 string', body: UTF8, bytes: Buffer.from(UTF8) },
  // A string longer than a frame: we convert it once and cut it at byte boundaries (5 bytes per repeat).
  { name: 'UTF-8 string over 3 frames', body: 'ż✓'.repeat(60_000), bytes: Buffer.from('ż✓'.repeat(60_000)) },
];

function ourProps(i: number, headers: FieldTable): MessageProperties {
  return {
    contentType: 'application/octet-stream',
    contentEncoding: 'identity',
    headers,
    deliveryMode: 2,
    priority: 7,
    correlationId: `corr-${i}`,
    replyTo: 'amq.rabbitmq.reply-to.fake',
    expiration: '60000',
    messageId: `msg-${i}`,
    timestamp: TS,
    type: 'interop.test',
    userId: 'guest',
    appId: 'ebadge-interop',
    clusterId: 'cluster-✓',
  };
}

// ---- 1. we publish, amqplib consumes ----------------------------------------------------------------------------

test(
  'we publish (confirms), amqplib consumes: bodies, all 14 properties, every header type',
  timed(() =>
    withBoth(async (b) => {
      const q = await b.queue('to-amqplib');
      const ach = await theirChannel(b, false);
      const got = new Collector<amqplib.ConsumeMessage>(BODIES.length);
      const ok = await net_(
        ach.consume(
          q,
          (m) => {
            if (m === null) return;
            got.push(m);
            ach.ack(m);
          },
          { noAck: false },
        ),
        'amqplib consume',
      );

      const headers: FieldTable = { ...table('ours'), ...OURS_INFERRED };
      await net_(Promise.all(BODIES.map((x, i) => b.ch.basicPublish('', q, x.body, ourProps(i, headers)))), 'confirms');
      const msgs = await net_(got.done, 'amqplib deliveries');
      await net_(ach.cancel(ok.consumerTag), 'amqplib cancel');

      const expectedHeaders = { ...table('theirsDecoded'), ...OURS_INFERRED_AS_AMQPLIB_SEES_IT };
      BODIES.forEach((x, i) => {
        const m = msgs[i];
        assert.ok(m, `message ${x.name} arrived`);
        assert.ok(
          m.content.equals(x.bytes),
          `${x.name}: body byte-identical (${m.content.length} vs ${x.bytes.length} bytes)`,
        );
        assert.is(m.fields.exchange, '');
        assert.is(m.fields.routingKey, q);
        assert.is(m.fields.redelivered, false);
        // Field by field first, for a readable failure; then the whole object, so nothing extra slips in.
        const h = m.properties.headers ?? {};
        for (const key of Object.keys(expectedHeaders)) {
          assert.equal(h[key], (expectedHeaders as Record<string, unknown>)[key], `${x.name}: header ${key}`);
        }
        assert.equal(
          m.properties,
          {
            contentType: 'application/octet-stream',
            contentEncoding: 'identity',
            headers: expectedHeaders,
            deliveryMode: 2,
            priority: 7,
            correlationId: `corr-${i}`,
            replyTo: 'amq.rabbitmq.reply-to.fake',
            expiration: '60000',
            messageId: `msg-${i}`,
            timestamp: TS_SECONDS,
            type: 'interop.test',
            userId: 'guest',
            appId: 'ebadge-interop',
            clusterId: 'cluster-✓',
          },
          `${x.name}: properties as amqplib decodes them`,
        );
      });
    }),
  ),
);

// ---- 2. amqplib publishes, we consume ---------------------------------------------------------------------------

test(
  'amqplib publishes (confirms), we consume: bodies, all 14 properties, every header type',
  timed(() =>
    withBoth(async (b) => {
      const q = await b.queue('from-amqplib');
      const got = new Collector<Message>(BODIES.length + 1);
      const consumer = await net_(
        b.ch.basicConsume(q, (m) => {
          got.push(m);
          m.ack();
        }),
        'our consume',
      );

      const headers = { ...table('theirs'), ...THEIRS_INFERRED };
      const props = (i: number): amqplib.Options.Publish => ({
        contentType: 'text/plain',
        contentEncoding: 'utf-8',
        headers,
        deliveryMode: 2,
        priority: 3,
        correlationId: `corr-${i}`,
        replyTo: 'reply-q',
        expiration: '60000',
        messageId: `msg-${i}`,
        timestamp: TS_SECONDS,
        type: 'interop.test',
        userId: 'guest',
        appId: 'amqplib',
      });
      const ach = (await theirChannel(b, true)) as amqplib.ConfirmChannel;
      BODIES.forEach((x, i) => {
        ach.publish('', q, x.bytes, props(i));
      });
      await net_(ach.waitForConfirms(), 'amqplib confirms');
      // channel.publish cannot send cluster-id: one more message through sendMessage carries all 14.
      const raw = await theirChannel(b, false);
      theirSendMessage(raw, '', q, Buffer.from('with cluster-id'), { ...props(BODIES.length), clusterId: 'cluster-✓' });
      const msgs = await net_(got.done, 'our deliveries');
      await net_(consumer.cancel(), 'our cancel');

      const expectedHeaders = { ...table('oursDecoded'), ...THEIRS_INFERRED };
      const byId = new Map(msgs.map((m) => [m.properties.messageId, m]));
      for (let i = 0; i <= BODIES.length; i++) {
        const m = byId.get(`msg-${i}`);
        const name = BODIES[i]?.name ?? 'cluster-id message';
        assert.ok(m, `${name} arrived`);
        const bytes = BODIES[i]?.bytes ?? Buffer.from('with cluster-id');
        assert.ok(m.body.equals(bytes), `${name}: body byte-identical (${m.body.length} vs ${bytes.length} bytes)`);
        assert.is(m.exchange, '');
        assert.is(m.routingKey, q);
        assert.is(m.redelivered, false);
        if (typeof BODIES[i]?.body === 'string') assert.is(m.text(), BODIES[i]?.body);
        const h = m.properties.headers ?? {};
        for (const key of Object.keys(expectedHeaders)) {
          assert.equal(h[key], (expectedHeaders as Record<string, unknown>)[key], `${name}: header ${key}`);
        }
        assert.equal(
          m.properties,
          {
            contentType: 'text/plain',
            contentEncoding: 'utf-8',
            headers: expectedHeaders,
            deliveryMode: 2,
            priority: 3,
            correlationId: `corr-${i}`,
            replyTo: 'reply-q',
            expiration: '60000',
            messageId: `msg-${i}`,
            timestamp: TS,
            type: 'interop.test',
            userId: 'guest',
            appId: 'amqplib',
            ...(i === BODIES.length ? { clusterId: 'cluster-✓' } : {}),
          },
          `${name}: properties as we decode them`,
        );
      }
      // Integers beyond 2^53 arrive exactly (as bigint); amqplib itself could not read them back losslessly.
      assert.is(msgs[0]?.properties.headers?.['int64-big'], L_BIG);
    }),
  ),
);

// ---- 3. byte-level equality of the publish frames ---------------------------------------------------------------

/*
 * Approach: a capturing TCP proxy, not amqplib's codec called directly. Reasons:
 *   - it compares what really goes on the wire: the whole basic.publish method frame, the content header frame
 *     (class-id, weight, body-size, flags, property list) and the body frames with their split points -- not just
 *     `writeProperties` in isolation, so a bug in how the channel assembles the header around it is caught too;
 *   - amqplib's package.json `exports` hides `amqplib/lib/defs`, so calling its encoder means reaching around the
 *     package boundary into internals that may move; the proxy needs only the public client;
 *   - the same proxy sees the server->client direction, so it also proves the broker hands each client the content
 *     header bytes the other client published, unchanged.
 * One proxy per client, so each capture holds exactly one client's traffic.
 */

const FRAME_METHOD = 1;
const FRAME_HEADER = 2;
const FRAME_BODY = 3;
const FRAME_END = 0xce;
const BASIC_PUBLISH = 0x003c0028;
const BASIC_GET_OK = 0x003c0047;
const BASIC_DELIVER = 0x003c003c;

interface Frame {
  type: number;
  channel: number;
  payload: Buffer;
}

/** Splits one direction of an AMQP connection into frames (skipping the client's protocol header). */
class FrameTap {
  readonly frames: Frame[] = [];
  error: string | undefined;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private skip: number;

  constructor(clientSide: boolean) {
    this.skip = clientSide ? 8 : 0;
  }

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    let buf = Buffer.concat(this.chunks, this.buffered);
    if (this.skip > 0) {
      if (buf.length < this.skip) return;
      buf = buf.subarray(this.skip);
      this.skip = 0;
    }
    while (buf.length >= 7) {
      const size = buf.readUInt32BE(3);
      if (buf.length < 8 + size) break;
      if (buf[7 + size] !== FRAME_END) {
        this.error ??= `frame-end 0x${buf[7 + size]?.toString(16)} after a ${size}-byte frame`;
        return;
      }
      this.frames.push({
        type: buf[0] as number,
        channel: buf.readUInt16BE(1),
        payload: Buffer.from(buf.subarray(7, 7 + size)),
      });
      buf = buf.subarray(8 + size);
    }
    this.chunks = buf.length > 0 ? [buf] : [];
    this.buffered = buf.length;
  }
}

interface Content {
  method: Buffer;
  header: Buffer | undefined;
  bodies: Buffer[];
}

/** Groups method + header + body frames of the content-carrying methods in `methodIds`. */
function contents(frames: readonly Frame[], methodIds: readonly number[]): Content[] {
  const out: Content[] = [];
  const open = new Map<number, Content>();
  for (const f of frames) {
    if (f.type === FRAME_METHOD) {
      open.delete(f.channel);
      if (f.payload.length >= 4 && methodIds.includes(f.payload.readUInt32BE(0))) {
        const c: Content = { method: f.payload, header: undefined, bodies: [] };
        out.push(c);
        open.set(f.channel, c);
      }
    } else if (f.type === FRAME_HEADER) {
      const c = open.get(f.channel);
      if (c !== undefined) c.header = f.payload;
    } else if (f.type === FRAME_BODY) {
      open.get(f.channel)?.bodies.push(f.payload);
    }
  }
  return out;
}

interface Proxy {
  port: number;
  up: FrameTap;
  down: FrameTap;
  close(): Promise<void>;
}

/** A forwarding proxy to the broker that records both directions of the (single) connection made through it. */
async function startProxy(): Promise<Proxy> {
  const up = new FrameTap(true);
  const down = new FrameTap(false);
  const sockets: net.Socket[] = [];
  const server = net.createServer((client) => {
    const upstream = net.connect({ host: BROKER.hostname, port: Number(BROKER.port || 5672) });
    sockets.push(client, upstream);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.on('data', (c: Buffer) => {
      up.push(c);
      upstream.write(c);
    });
    upstream.on('data', (c: Buffer) => {
      down.push(c);
      client.write(c);
    });
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  });
  await net_(
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    }),
    'proxy listen',
  );
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    up,
    down,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

function hex(b: Buffer, from: number, to: number): string {
  return b.subarray(Math.max(0, from), Math.min(b.length, to)).toString('hex').replace(/(..)/g, '$1 ').trim();
}

/** Byte-for-byte equality; a failure names the first differing offset and shows both sides around it. */
function assertSameBytes(ours: Buffer | undefined, theirs: Buffer | undefined, what: string): void {
  assert.ok(ours !== undefined && theirs !== undefined, `${what}: captured on both sides`);
  if (ours.equals(theirs)) return;
  let i = 0;
  while (i < ours.length && i < theirs.length && ours[i] === theirs[i]) i++;
  assert.unreachable(
    `${what}: ${ours.length} vs ${theirs.length} bytes, first difference at offset ${i}\n` +
      `  ours:    ...${hex(ours, i - 8, i + 24)}\n  amqplib: ...${hex(theirs, i - 8, i + 24)}`,
  );
}

interface PropertySet {
  name: string;
  body: Buffer;
  ours: MessageProperties;
  /** Sent with amqplib's channel.publish, unless `raw` (sendMessage, for cluster-id). */
  theirs: amqplib.Options.Publish & Record<string, unknown>;
  raw?: boolean;
}

function propertySets(): PropertySet[] {
  const bigBody = randomBytes(300 * 1024);
  return [
    // amqplib's publish always sends a (possibly empty) headers table, so the minimal common set has one.
    { name: 'minimal (empty headers)', body: Buffer.from('a'), ours: { headers: {} }, theirs: {} },
    {
      name: '13 properties (no cluster-id), every header type, empty body',
      body: Buffer.alloc(0),
      ours: {
        contentType: 'application/json',
        contentEncoding: 'gzip',
        headers: table('ours'),
        deliveryMode: 2,
        priority: 9,
        correlationId: 'c-1',
        replyTo: 'r',
        expiration: '60000',
        messageId: 'm-1',
        timestamp: TS,
        type: 't',
        userId: 'guest',
        appId: 'a',
      },
      theirs: {
        contentType: 'application/json',
        contentEncoding: 'gzip',
        headers: table('theirs'),
        deliveryMode: 2,
        priority: 9,
        correlationId: 'c-1',
        replyTo: 'r',
        expiration: '60000',
        messageId: 'm-1',
        timestamp: TS_SECONDS,
        type: 't',
        userId: 'guest',
        appId: 'a',
      },
    },
    {
      name: 'all 14 properties, every header type, 300 KiB body',
      body: bigBody,
      raw: true,
      ours: {
        contentType: 'application/octet-stream',
        contentEncoding: 'identity',
        headers: table('ours'),
        deliveryMode: 1,
        priority: 0,
        correlationId: 'corr',
        replyTo: 'reply',
        expiration: '60000',
        messageId: 'id',
        timestamp: TS_SECONDS,
        type: 'type',
        userId: 'guest',
        appId: 'app',
        clusterId: 'cluster',
      },
      theirs: {
        contentType: 'application/octet-stream',
        contentEncoding: 'identity',
        headers: table('theirs'),
        deliveryMode: 1,
        priority: 0,
        correlationId: 'corr',
        replyTo: 'reply',
        expiration: '60000',
        messageId: 'id',
        timestamp: TS_SECONDS,
        type: 'type',
        userId: 'guest',
        appId: 'app',
        clusterId: 'cluster',
      },
    },
    {
      name: 'multi-byte UTF-8 short strings, 255-byte short string, timestamp 0',
      body: ALL_BYTES,
      ours: {
        contentType: 'tëxt/✓',
        headers: { ключ: 'значение', n: field('u', 1) },
        correlationId: '日本語',
        messageId: 'x'.repeat(255),
        timestamp: new Date(0),
        type: '🚀',
      },
      theirs: {
        contentType: 'tëxt/✓',
        headers: { ключ: 'значение', n: { '!': 'uint16', value: 1 } },
        correlationId: '日本語',
        messageId: 'x'.repeat(255),
        timestamp: 0,
        type: '🚀',
      },
    },
    {
      name: 'empty short strings, priority 255, empty body',
      body: Buffer.alloc(0),
      ours: {
        contentType: '',
        contentEncoding: '',
        headers: {},
        deliveryMode: 1,
        priority: 255,
        correlationId: '',
        replyTo: '',
        messageId: '',
        type: '',
        appId: '',
      },
      theirs: {
        contentType: '',
        contentEncoding: '',
        headers: {},
        deliveryMode: 1,
        priority: 255,
        correlationId: '',
        replyTo: '',
        messageId: '',
        type: '',
        appId: '',
      },
    },
  ];
}

test(
  'byte level: both clients put identical publish frames on the wire; the broker forwards the header unchanged',
  timed(async () => {
    const ourProxy = await startProxy();
    const theirProxy = await startProxy();
    try {
      await withBoth(
        async (b) => {
          const q = await b.queue('bytes');
          const sets = propertySets();
          // Ours first (confirmed), then amqplib's, so the queue holds ours then theirs.
          await net_(Promise.all(sets.map((s) => b.ch.basicPublish('', q, s.body, s.ours))), 'our confirms');
          const ach = await theirChannel(b, false);
          for (const s of sets) {
            if (s.raw === true) theirSendMessage(ach, '', q, s.body, s.theirs);
            else ach.publish('', q, s.body, s.theirs);
          }
          await until(
            async () => (await net_(ach.checkQueue(q), 'check queue')).messageCount >= 2 * sets.length,
            'amqplib publishes to reach the queue',
            NET_MS,
          );

          // Each client fetches the other's messages: amqplib gets ours (queued first), we get amqplib's.
          for (let i = 0; i < sets.length; i++) assert.ok(await net_(ach.get(q, { noAck: true }), 'amqplib get'));
          for (let i = 0; i < sets.length; i++) assert.ok(await net_(b.ch.basicGet(q, { noAck: true }), 'our get'));

          for (const tap of [ourProxy.up, ourProxy.down, theirProxy.up, theirProxy.down])
            assert.is(tap.error, undefined);
          const oursSent = contents(ourProxy.up.frames, [BASIC_PUBLISH]);
          const theirsSent = contents(theirProxy.up.frames, [BASIC_PUBLISH]);
          const oursGot = contents(ourProxy.down.frames, [BASIC_GET_OK, BASIC_DELIVER]);
          const theirsGot = contents(theirProxy.down.frames, [BASIC_GET_OK, BASIC_DELIVER]);
          assert.is(oursSent.length, sets.length, 'our publishes captured');
          assert.is(theirsSent.length, sets.length, 'amqplib publishes captured');
          assert.is(oursGot.length, sets.length, 'our get-oks captured');
          assert.is(theirsGot.length, sets.length, 'amqplib get-oks captured');

          sets.forEach((s, i) => {
            const o = oursSent[i] as Content;
            const t = theirsSent[i] as Content;
            assertSameBytes(o.method, t.method, `${s.name}: basic.publish method frame`);
            assertSameBytes(o.header, t.header, `${s.name}: content header frame`);
            assert.is(o.bodies.length, t.bodies.length, `${s.name}: number of body frames`);
            o.bodies.forEach((body, j) => {
              assertSameBytes(body, t.bodies[j], `${s.name}: body frame ${j}`);
            });
            assertSameBytes(Buffer.concat(o.bodies), s.body, `${s.name}: our body frames reassemble the body`);
            assert.is(
              o.bodies.length,
              Math.ceil(s.body.length / (131072 - 8)),
              `${s.name}: body frames at frame_max 131072`,
            );
            // The broker relays the content header unchanged, in both directions.
            assertSameBytes(theirsGot[i]?.header, o.header, `${s.name}: header amqplib received vs header we sent`);
            assertSameBytes(oursGot[i]?.header, t.header, `${s.name}: header we received vs header amqplib sent`);
          });
        },
        {
          ours: `amqp://guest:guest@127.0.0.1:${ourProxy.port}`,
          theirs: `amqp://guest:guest@127.0.0.1:${theirProxy.port}`,
        },
      );
    } finally {
      await ourProxy.close();
      await theirProxy.close();
    }
  }),
);

// ---- 3b. where the two clients read the same bytes differently --------------------------------------------------

/*
 * The decimal field 'D' is a scale octet plus an unsigned 32-bit integer: the 0-9-1 grammar says
 * `decimal-value = scale long-uint`, RabbitMQ parses it `After:32/unsigned`, and amqplib reads and writes it unsigned.
 * Digits of 2^31 and above are where a signed reading would disagree, so they are checked both ways.
 */
test(
  'decimal digits >= 2^31 read and written unsigned, as amqplib and RabbitMQ do',
  timed(() =>
    withBoth(async (b) => {
      const q = await b.queue('decimal');
      const ach = (await theirChannel(b, true)) as amqplib.ConfirmChannel;
      ach.publish('', q, Buffer.from('d'), {
        headers: { big: { '!': 'decimal', value: { places: 2, digits: 3_000_000_000 } } },
      });
      await net_(ach.waitForConfirms(), 'amqplib confirm');
      const m = await net_(b.ch.basicGet(q, { noAck: true }), 'our get');
      assert.ok(m);
      assert.equal(m.properties.headers?.['big'], new Decimal(2, 3_000_000_000));

      await net_(
        b.ch.basicPublish('', q, Buffer.from('d'), { headers: { max: new Decimal(2, 0xffffffff) } }),
        'our confirm',
      );
      const got = await net_(ach.get(q, { noAck: true }), 'amqplib get');
      assert.ok(got);
      assert.equal(got.properties.headers?.['max'], { '!': 'decimal', value: { places: 2, digits: 0xffffffff } });

      let refused: unknown;
      try {
        await b.ch.basicPublish('', q, Buffer.alloc(0), { headers: { neg: new Decimal(2, -1) } });
      } catch (err) {
        refused = err;
      }
      assert.is((refused as { code?: string }).code, 'ARGUMENT_INVALID', 'negative digits cannot be encoded');
    }),
  ),
);

// ---- 4. volume, both directions ---------------------------------------------------------------------------------

const VOLUME = 1_000;

test(
  '1,000 messages: we publish with confirms, amqplib consumes with manual acks: exactly once, in order',
  timed(() =>
    withBoth(async (b) => {
      const q = await b.queue('volume-to-amqplib');
      const ach = await theirChannel(b, false);
      await net_(ach.prefetch(100), 'amqplib prefetch');
      const seen: number[] = [];
      const problems: string[] = [];
      const got = new Collector<number>(VOLUME);
      const ok = await net_(
        ach.consume(
          q,
          (m) => {
            if (m === null) return;
            const n = m.content.readUInt32BE(0);
            if (m.fields.redelivered) problems.push(`#${n} redelivered`);
            if (m.properties.messageId !== String(n))
              problems.push(`#${n} has messageId ${String(m.properties.messageId)}`);
            seen.push(n);
            got.push(n);
            ach.ack(m);
          },
          { noAck: false },
        ),
        'amqplib consume',
      );

      const publishes: Promise<void>[] = [];
      for (let i = 0; i < VOLUME; i++) {
        const body = Buffer.alloc(4);
        body.writeUInt32BE(i);
        publishes.push(b.ch.basicPublish('', q, body, { messageId: String(i), deliveryMode: 1 }));
      }
      await net_(Promise.all(publishes), 'our 1,000 confirms');
      await net_(got.done, 'amqplib received 1,000');
      // The cancel-ok comes after every delivery to the consumer on that channel: nothing can follow it.
      await net_(ach.cancel(ok.consumerTag), 'amqplib cancel');
      assert.equal(problems, []);
      assert.equal(
        seen,
        Array.from({ length: VOLUME }, (_, i) => i),
        'each message exactly once, in publish order',
      );
      const left = await net_(ach.checkQueue(q), 'check queue');
      assert.is(left.messageCount, 0, 'nothing left behind (all acked)');
    }),
  ),
);

test(
  '1,000 messages: amqplib publishes with confirms, our consumer with prefetch: exactly once, in order',
  timed(() =>
    withBoth(async (b) => {
      const q = await b.queue('volume-from-amqplib');
      const PREFETCH = 50;
      const seen: number[] = [];
      const problems: string[] = [];
      const got = new Collector<number>(VOLUME);
      let outstanding = 0;
      let maxOutstanding = 0;
      const consumer = await net_(
        b.ch.basicConsume(
          q,
          (m) => {
            const n = m.body.readUInt32BE(0);
            if (m.redelivered) problems.push(`#${n} redelivered`);
            if (m.properties.messageId !== String(n))
              problems.push(`#${n} has messageId ${String(m.properties.messageId)}`);
            seen.push(n);
            got.push(n);
            // Acked a turn later, so deliveries really pile up against the prefetch window.
            maxOutstanding = Math.max(maxOutstanding, ++outstanding);
            setImmediate(() => {
              outstanding--;
              m.ack();
            });
          },
          { prefetch: PREFETCH },
        ),
        'our consume',
      );

      const ach = (await theirChannel(b, true)) as amqplib.ConfirmChannel;
      for (let i = 0; i < VOLUME; i++) {
        const body = Buffer.alloc(4);
        body.writeUInt32BE(i);
        ach.sendToQueue(q, body, { messageId: String(i), deliveryMode: 1 });
      }
      await net_(ach.waitForConfirms(), 'amqplib 1,000 confirms');
      await net_(got.done, 'we received 1,000');
      await until(() => outstanding === 0, 'the last acks to go out', NET_MS);
      // The cancel-ok comes after every delivery to the consumer on that channel: nothing can follow it.
      await net_(consumer.cancel(), 'our cancel');
      assert.equal(problems, []);
      assert.equal(
        seen,
        Array.from({ length: VOLUME }, (_, i) => i),
        'each message exactly once, in publish order',
      );
      assert.ok(maxOutstanding <= PREFETCH, `never more than the prefetch unacked (saw ${maxOutstanding})`);
      assert.ok(maxOutstanding > 1, `deliveries did pile up (saw ${maxOutstanding})`);
      const left = await net_(b.ch.queueDeclare(q, { passive: true }), 'passive declare');
      assert.is(left.messageCount, 0, 'nothing left behind (all acked)');
    }),
  ),
);

test.run();
