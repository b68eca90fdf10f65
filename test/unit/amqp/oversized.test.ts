/**
 * Content over its limit (issue 15, item 1), on a channel fed with frames: refused at its content header, its body
 * frames dropped as they come (no buffer of the announced size), the delivery rejected without requeue and reported,
 * the channel and its consumer going on; per consumer limits, noAck, basic.get and basic.return. Fed through a
 * FrameReader, the chunks and split frames of a skipped body are read into again, and a kept body never is.
 * test/integration/amqp-oversized.test.ts shows the same against RabbitMQ.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Channel, type ChannelHost } from '../../../src/amqp/channel.js';
import type { AmqpError, PublishError } from '../../../src/amqp/errors.js';
import { FRAME_BODY, FRAME_HEADER, FrameReader } from '../../../src/amqp/frame.js';
import type { Message } from '../../../src/amqp/message.js';
import { decodeMethod, encodeMethodFrame } from '../../../src/amqp/methods.js';
import { resolveOptions } from '../../../src/amqp/options.js';
import { Output } from '../../../src/amqp/output.js';
import { type MessageProperties, propertiesSize, writeProperties } from '../../../src/amqp/properties.js';
import type { Method, MethodName } from '../../../src/amqp/spec.js';

const FRAME = 131_072 - 8;

/** A channel on a host that records the methods the channel writes. */
function harness(options = {}, keepFrame?: () => void): { ch: Channel; sent: () => Method[] } {
  const written: Buffer[] = [];
  const out = new Output((chunks) => {
    written.push(...chunks);
  });
  const host: ChannelHost = {
    out,
    frameMax: 131072,
    options: resolveOptions(options),
    heartbeat: 0,
    blocked: false,
    backlog: () => out.queued,
    ...(keepFrame === undefined ? {} : { keepFrame }),
    channelClosed: () => undefined,
    handlerError: (e: unknown) => {
      throw e;
    },
  };
  const ch = new Channel(1, host);
  const sent = (): Method[] => {
    out.flush();
    const all = Buffer.concat(written.splice(0));
    const methods: Method[] = [];
    for (let o = 0; o < all.length; ) {
      const size = all.readUInt32BE(o + 3);
      if (all[o] === 1) methods.push(decodeMethod(all.subarray(o + 7, o + 7 + size)));
      o += size + 8;
    }
    return methods;
  };
  return { ch, sent };
}

function feed(ch: Channel, name: MethodName, args: Record<string, unknown> = {}): void {
  const f = encodeMethodFrame(ch.id, name, args);
  ch._frame(1, f.subarray(7, f.length - 1));
}

function header(ch: Channel, bodySize: number, properties: MessageProperties = {}): void {
  const p = Buffer.alloc(12 + propertiesSize(properties));
  p.writeUInt16BE(60, 0);
  p.writeUInt32BE(Math.floor(bodySize / 2 ** 32), 4);
  p.writeUInt32BE(bodySize >>> 0, 8);
  writeProperties(p, 12, properties);
  ch._frame(FRAME_HEADER, p);
}

/** `size` body bytes in frames of the usual size, all views of one buffer: feeding 60 MB allocates nothing. */
const chunk = Buffer.alloc(FRAME, 0x5b);
function body(ch: Channel, size: number): void {
  for (let left = size; left > 0; left -= FRAME) ch._frame(FRAME_BODY, chunk.subarray(0, Math.min(FRAME, left)));
}

function deliver(ch: Channel, tag: number, size: number, consumerTag = 'c1', messageId = `m${tag}`): void {
  feed(ch, 'basic.deliver', {
    consumerTag,
    deliveryTag: tag,
    redelivered: false,
    exchange: 'peer-to-me',
    routingKey: 'report',
  });
  header(ch, size, { messageId, appId: 'peer' });
  body(ch, size);
}

async function open(ch: Channel): Promise<void> {
  const opening = ch._open();
  feed(ch, 'channel.open-ok');
  await opening;
}

async function consume(
  ch: Channel,
  tag: string,
  handler: (m: Message) => void,
  options: Parameters<Channel['basicConsume']>[2] = {},
): Promise<void> {
  const c = ch.basicConsume('q', handler, options);
  feed(ch, 'basic.consume-ok', { consumerTag: tag });
  await c;
}

const rejects = (methods: Method[]): [number, boolean][] =>
  methods
    .filter((m): m is Extract<Method, { name: 'basic.reject' }> => m.name === 'basic.reject')
    .map((m) => [m.args.deliveryTag, m.args.requeue]);

const s = suite('content over its limit');

s(
  '60 MB announced over a 1 MiB limit: dropped frame by frame, rejected without requeue, reported; next one delivered',
  async () => {
    const { ch, sent } = harness({ maxMessageBytes: 1 << 20 });
    await open(ch);
    const got: number[] = [];
    await consume(ch, 'c1', (m) => {
      got.push(m.body.length);
      m.ack();
    });
    const reported: [Message, number, number][] = [];
    ch.on('oversized', (m, size, limit) => reported.push([m, size, limit]));
    sent();
    const arrayBuffers = process.memoryUsage().arrayBuffers;
    deliver(ch, 1, 60_000_000);
    const grew = process.memoryUsage().arrayBuffers - arrayBuffers;
    assert.ok(grew < 4 << 20, `${grew} bytes of buffers for a body that was skipped`);
    assert.equal(got, [], 'never handed to the consumer');
    assert.equal(rejects(sent()), [[1, false]]);
    assert.is(reported.length, 1);
    const [m, size, limit] = reported[0] as [Message, number, number];
    assert.equal(
      [size, limit, m.body.length, m.exchange, m.routingKey],
      [60_000_000, 1 << 20, 0, 'peer-to-me', 'report'],
    );
    assert.equal([m.properties.messageId, m.properties.appId, m.deliveryTag, m.consumerTag], ['m1', 'peer', 1, 'c1']);
    assert.throws(
      () => m.ack(),
      (e: AmqpError) => e.code === 'NOT_SETTLEABLE',
    );
    assert.ok(ch.isOpen, 'the channel stays open');
    deliver(ch, 2, 1 << 20); // exactly the limit
    deliver(ch, 3, 100);
    assert.equal(got, [1 << 20, 100]);
    assert.equal(
      sent().map((x) => x.name),
      ['basic.ack', 'basic.ack'],
    );
  },
);

/** A content header whose headers table nests `depth` tables (each `{ a: {...} }`), as another client may send. */
function deepHeader(bodySize: number, depth: number): Buffer {
  let table = Buffer.alloc(4); // the innermost table: empty
  for (let i = 0; i < depth; i++) {
    const entry = Buffer.concat([Buffer.from([1, 0x61, 0x46]), table]); // shortstr "a", 'F', the nested table
    const t = Buffer.alloc(4 + entry.length);
    t.writeUInt32BE(entry.length, 0);
    entry.copy(t, 4);
    table = t;
  }
  const p = Buffer.alloc(14);
  p.writeUInt16BE(60, 0);
  p.writeUInt32BE(Math.floor(bodySize / 2 ** 32), 4);
  p.writeUInt32BE(bodySize >>> 0, 8);
  p.writeUInt16BE(0x2000, 12); // the headers property only
  return Buffer.concat([p, table]);
}

s(
  'properties it cannot read (a header table 40 deep): that message refused with why, the channel goes on',
  async () => {
    const { ch, sent } = harness();
    await open(ch);
    const got: number[] = [];
    await consume(ch, 'c1', (m) => {
      got.push(m.body.length);
      m.ack();
    });
    const malformed: [string, string][] = [];
    ch.on('malformed', (m, reason) => malformed.push([m.routingKey, reason]));
    sent();
    feed(ch, 'basic.deliver', {
      consumerTag: 'c1',
      deliveryTag: 1,
      redelivered: false,
      exchange: 'x',
      routingKey: 'k',
    });
    ch._frame(FRAME_HEADER, deepHeader(10, 40));
    ch._frame(FRAME_BODY, Buffer.alloc(10));
    assert.equal(got, [], 'never handed to the consumer');
    assert.equal(rejects(sent()), [[1, false]], 'rejected without requeue: dead-lettered, not redelivered');
    assert.equal(malformed, [['k', 'field table nested deeper than 32']]);
    assert.ok(ch.isOpen, 'the channel stays open');
    // 32 deep is taken; the next delivery is delivered.
    feed(ch, 'basic.deliver', {
      consumerTag: 'c1',
      deliveryTag: 2,
      redelivered: false,
      exchange: 'x',
      routingKey: 'k',
    });
    ch._frame(FRAME_HEADER, deepHeader(10, 32));
    ch._frame(FRAME_BODY, Buffer.alloc(10));
    assert.equal(got, [10]);
  },
);

s('body frames beyond the announced size are still a protocol error while skipping', async () => {
  const { ch } = harness({ maxMessageBytes: 10 });
  await open(ch);
  await consume(ch, 'c1', () => undefined);
  ch.on('oversized', () => undefined);
  feed(ch, 'basic.deliver', { consumerTag: 'c1', deliveryTag: 1, redelivered: false, exchange: 'x', routingKey: 'k' });
  header(ch, 100);
  ch._frame(FRAME_BODY, Buffer.alloc(60));
  assert.throws(() => ch._frame(FRAME_BODY, Buffer.alloc(60)), /body frames exceed the announced 100 bytes/);
});

s('a delivery for a consumer tag never registered is a protocol error naming the tag, in size or over it', async () => {
  const { ch, sent } = harness({ maxMessageBytes: 100 });
  await open(ch);
  await consume(ch, 'c1', () => undefined);
  const unexpected = (e: Error & { code?: string }): boolean =>
    e.code === 'UNEXPECTED_FRAME' && e.message === 'channel 1: delivery for unknown consumer "ghost"';
  assert.throws(() => deliver(ch, 1, 50, 'ghost'), unexpected);
  ch._lost(new Error('test over'));
  const second = harness({ maxMessageBytes: 100 });
  await open(second.ch);
  await consume(second.ch, 'c1', () => undefined);
  assert.throws(() => deliver(second.ch, 1, 500, 'ghost'), unexpected);
  // Nothing is rejected for it: the tag may not even be this channel's delivery.
  assert.equal(rejects(second.sent()), []);
  assert.equal(rejects(sent()), []);
  // Refused at its content header, before any body frame is read: a broker cannot have a 60 MB body held under the
  // connection's limit by naming a consumer we do not have.
  const third = harness({ maxMessageBytes: 64 << 20 });
  await open(third.ch);
  await consume(third.ch, 'c1', () => undefined, { maxMessageBytes: 1 << 20 });
  feed(third.ch, 'basic.deliver', {
    consumerTag: 'ghost',
    deliveryTag: 1,
    redelivered: false,
    exchange: 'x',
    routingKey: 'k',
  });
  assert.throws(() => header(third.ch, 60 << 20), unexpected);
});

s('a consumer limit applies to that consumer only, and never raises the connection limit', async () => {
  const { ch, sent } = harness({ maxMessageBytes: 5000 });
  await open(ch);
  const got: string[] = [];
  await consume(ch, 'small', (m) => got.push(`small ${m.body.length}`), { maxMessageBytes: 1000 });
  await consume(ch, 'big', (m) => got.push(`big ${m.body.length}`), { maxMessageBytes: 1_000_000 });
  await consume(ch, 'plain', (m) => got.push(`plain ${m.body.length}`));
  const reported: string[] = [];
  ch.on('oversized', (m, size, limit) => reported.push(`${m.consumerTag} ${size} > ${limit}`));
  sent();
  deliver(ch, 1, 2000, 'small');
  deliver(ch, 2, 2000, 'big');
  deliver(ch, 3, 2000, 'plain');
  deliver(ch, 4, 6000, 'big');
  deliver(ch, 5, 1000, 'small');
  assert.equal(got, ['big 2000', 'plain 2000', 'small 1000']);
  assert.equal(reported, ['small 2000 > 1000', 'big 6000 > 5000']);
  assert.equal(rejects(sent()), [
    [1, false],
    [4, false],
  ]);
  const bad = await ch.basicConsume('q', () => undefined, { maxMessageBytes: -1 }).catch((e: AmqpError) => e.code);
  assert.is(bad, 'ARGUMENT_INVALID');
});

s('noAck: nothing to reject (the broker already forgot it), still reported and never delivered', async () => {
  const { ch, sent } = harness({ maxMessageBytes: 100 });
  await open(ch);
  const got: number[] = [];
  await consume(ch, 'c1', (m) => got.push(m.body.length), { noAck: true });
  let reported = 0;
  ch.on('oversized', () => reported++);
  sent();
  deliver(ch, 1, 101);
  deliver(ch, 2, 100);
  assert.equal(got, [100]);
  assert.is(reported, 1);
  assert.equal(rejects(sent()), []);
});

s(
  'basic.get of an oversized message fails with CONTENT_TOO_LARGE after rejecting it; a return fails its publish',
  async () => {
    const { ch, sent } = harness({ maxMessageBytes: 100 });
    await open(ch);
    const reported: string[] = [];
    ch.on('oversized', (m, size) => reported.push(`${m.routingKey} ${size}`));
    sent();
    const got = ch.basicGet('q').catch((e: AmqpError) => e);
    feed(ch, 'basic.get-ok', { deliveryTag: 7, redelivered: true, exchange: '', routingKey: 'q', messageCount: 3 });
    header(ch, 5000, { messageId: 'g' });
    body(ch, 5000);
    const e = (await got) as AmqpError;
    assert.is(e.code, 'CONTENT_TOO_LARGE');
    assert.match(e.message, /5000 bytes \(queue q, message id g\) is over the limit of 100 bytes/);
    assert.equal(rejects(sent()), [[7, false]]);

    const confirming = ch.confirmSelect();
    feed(ch, 'confirm.select-ok');
    await confirming;
    const p = ch.basicPublish('x', 'nowhere', Buffer.alloc(10), { messageId: 'r1' }, { mandatory: true });
    feed(ch, 'basic.return', { replyCode: 312, replyText: 'NO_ROUTE', exchange: 'x', routingKey: 'nowhere' });
    header(ch, 5000, { messageId: 'r1' });
    body(ch, 5000);
    feed(ch, 'basic.ack', { deliveryTag: 1, multiple: false });
    assert.is(await p.catch((x: PublishError) => x.failure), 'returned');
    assert.equal(reported, ['q 5000', 'nowhere 5000']);
    assert.ok(ch.isOpen);
  },
);

s('without an oversized listener the channel says it in a process warning', async () => {
  const { ch } = harness({ maxMessageBytes: 10 });
  await open(ch);
  await consume(ch, 'c1', () => undefined);
  const warnings: string[] = [];
  const onWarning = (w: Error): void => {
    if (w.name === 'AmqpOversizedWarning') warnings.push(w.message);
  };
  process.on('warning', onWarning);
  try {
    deliver(ch, 1, 11, 'c1', 'abc');
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
  } finally {
    process.off('warning', onWarning);
  }
  assert.equal(warnings, [
    'a message of 11 bytes (exchange peer-to-me, routing key report, message id abc) is over the limit of 10 bytes: rejected without its body',
  ]);
});

s(
  'properties it cannot read in a basic.get and a return, no listener: CONTENT_MALFORMED, returned, process warnings',
  async () => {
    const { ch, sent } = harness();
    await open(ch);
    sent();
    const warnings: string[] = [];
    const onWarning = (w: Error): void => {
      if (w.name === 'AmqpMalformedWarning') warnings.push(w.message);
    };
    process.on('warning', onWarning);
    const text = (where: string): string =>
      `a message whose properties cannot be read (${where}): field table nested deeper than 32; ` +
      'rejected without its body';
    try {
      const got = ch.basicGet('q').catch((e: AmqpError) => e);
      feed(ch, 'basic.get-ok', {
        deliveryTag: 7,
        redelivered: false,
        exchange: 'ex',
        routingKey: 'q',
        messageCount: 0,
      });
      ch._frame(FRAME_HEADER, deepHeader(10, 40));
      ch._frame(FRAME_BODY, Buffer.alloc(10));
      const e = (await got) as AmqpError;
      assert.is(e.code, 'CONTENT_MALFORMED');
      assert.is(e.message, text("exchange 'ex', routing key 'q'"));
      assert.equal(rejects(sent()), [[7, false]]);

      const confirming = ch.confirmSelect();
      feed(ch, 'confirm.select-ok');
      await confirming;
      const p = ch.basicPublish('x', 'nowhere', Buffer.alloc(10), {}, { mandatory: true });
      feed(ch, 'basic.return', { replyCode: 312, replyText: 'NO_ROUTE', exchange: 'x', routingKey: 'nowhere' });
      ch._frame(FRAME_HEADER, deepHeader(10, 40));
      ch._frame(FRAME_BODY, Buffer.alloc(10));
      feed(ch, 'basic.ack', { deliveryTag: 1, multiple: false });
      assert.is(await p.catch((x: PublishError) => x.failure), 'returned');
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('warning', onWarning);
    }
    assert.equal(warnings, [text("exchange 'ex', routing key 'q'"), text("exchange 'x', routing key 'nowhere'")]);
    assert.ok(ch.isOpen);
  },
);

s.run();

// ---- the reader's buffers ------------------------------------------------------------------------------------------

const reads = suite('read buffers used again when nothing kept a view of them');

function frame(type: number, channel: number, payload: Buffer): Buffer {
  const f = Buffer.alloc(payload.length + 8);
  f[0] = type;
  f.writeUInt16BE(channel, 1);
  f.writeUInt32BE(payload.length, 3);
  payload.copy(f, 7);
  f[f.length - 1] = 0xce;
  return f;
}

function headerFrame(bodySize: number, properties: MessageProperties = {}): Buffer {
  const p = Buffer.alloc(12 + propertiesSize(properties));
  p.writeUInt16BE(60, 0);
  p.writeUInt32BE(Math.floor(bodySize / 2 ** 32), 4);
  p.writeUInt32BE(bodySize >>> 0, 8);
  writeProperties(p, 12, properties);
  return frame(FRAME_HEADER, 1, p);
}

const deliverFrame = (tag: number): Buffer =>
  encodeMethodFrame(1, 'basic.deliver', {
    consumerTag: 'c1',
    deliveryTag: tag,
    redelivered: false,
    exchange: 'x',
    routingKey: 'k',
  });

/**
 * A channel fed through a FrameReader, as a connection feeds it, in chunks of 64 KiB copied into one chunk buffer
 * whenever the reader says no view of the last chunk was kept (a new one otherwise): what the socket does.
 */
async function readerRig(options = {}): Promise<{
  ch: Channel;
  sent: () => Method[];
  feed: (stream: Iterable<Buffer>) => { chunks: number; fresh: number };
}> {
  let reader!: FrameReader;
  const { ch, sent } = harness(options, () => reader.keep());
  reader = new FrameReader((type, _channel, payload) => ch._frame(type, payload), 131072);
  await open(ch);
  let chunk = Buffer.allocUnsafe(65_536);
  const feed = (stream: Iterable<Buffer>): { chunks: number; fresh: number } => {
    let chunks = 0;
    let fresh = 0;
    let fill = 0;
    const flush = (): void => {
      reader.push(chunk.subarray(0, fill));
      chunks++;
      fill = 0;
      if (reader.chunkKept) {
        chunk = Buffer.allocUnsafe(65_536);
        fresh++;
      }
    };
    for (const piece of stream) {
      for (let at = 0; at < piece.length; ) {
        const n = Math.min(piece.length - at, chunk.length - fill);
        piece.copy(chunk, fill, at, at + n);
        fill += n;
        at += n;
        if (fill === chunk.length) flush();
      }
    }
    if (fill > 0) flush();
    return { chunks, fresh };
  };
  return { ch, sent, feed };
}

reads('a skipped 60 MB body: its chunks are read into again, its split frames share one buffer', async () => {
  const { ch, sent, feed } = await readerRig({ maxMessageBytes: 1 << 20 });
  const got: number[] = [];
  await consume(ch, 'c1', (m) => got.push(m.body.length));
  let reported = 0;
  ch.on('oversized', () => reported++);
  sent();
  const size = 60_000_000;
  const full = frame(FRAME_BODY, 1, Buffer.alloc(FRAME, 0x20));
  function* stream(): Generator<Buffer> {
    yield deliverFrame(1);
    yield headerFrame(size);
    for (let left = size; left > 0; left -= FRAME)
      yield left >= FRAME ? full : frame(FRAME_BODY, 1, Buffer.alloc(left, 0x20));
  }
  const arrayBuffers = process.memoryUsage().arrayBuffers;
  const { chunks, fresh } = feed(stream());
  const grew = process.memoryUsage().arrayBuffers - arrayBuffers;
  assert.is(reported, 1);
  assert.equal(rejects(sent()), [[1, false]]);
  assert.ok(chunks > 900, `${chunks} chunks`);
  assert.is(fresh, 0, 'every chunk was read into again (the method and header frames keep no view)');
  assert.ok(grew < 2 << 20, `${grew} bytes of buffers for 60 MB skipped`);
  assert.equal(got, []);
});

reads('a kept body is never read into: 2,000 messages, one or several frames each, arrive intact', async () => {
  const { ch, feed } = await readerRig();
  const got: Buffer[] = []; // the bodies as they lie, read at the end
  await consume(ch, 'c1', (m) => got.push(m.body));
  // Small bodies (copied), 20 KB ones (a view of the chunk when the frame lies in one), 100 KB ones (one frame, split
  // over chunks: a view of the assembly buffer) and 200 KB ones (two frames: copied).
  const size = (i: number): number =>
    i % 97 === 0 ? 200_000 : i % 7 === 0 ? 100_000 : i % 11 === 0 ? 20_000 : 10 + (i % 300);
  const bodies = Array.from({ length: 2000 }, (_, i) => `${i}:`.padEnd(size(i), String.fromCharCode(97 + (i % 26))));
  function* stream(): Generator<Buffer> {
    for (const [i, b] of bodies.entries()) {
      const bytes = Buffer.from(b);
      yield deliverFrame(i + 1);
      yield headerFrame(bytes.length);
      for (let at = 0; at < bytes.length; at += FRAME) yield frame(FRAME_BODY, 1, bytes.subarray(at, at + FRAME));
    }
  }
  const { chunks, fresh } = feed(stream());
  assert.is(got.length, bodies.length);
  for (const [i, b] of bodies.entries())
    if (got[i]?.toString() !== b) assert.unreachable(`message ${i} was overwritten`);
  assert.ok(fresh > 0 && fresh <= chunks);
});

reads(
  'small bodies are copies: 3,000 messages of up to 4 KiB leave every chunk to be read into again, intact',
  async () => {
    const { ch, feed } = await readerRig();
    const got: Buffer[] = [];
    await consume(ch, 'c1', (m) => got.push(m.body));
    const bodies = Array.from({ length: 3000 }, (_, i) =>
      `${i}:`.padEnd(1 + ((i * 37) % 4095), String.fromCharCode(97 + (i % 26))),
    );
    function* stream(): Generator<Buffer> {
      for (const [i, b] of bodies.entries()) {
        yield deliverFrame(i + 1);
        yield headerFrame(b.length);
        yield frame(FRAME_BODY, 1, Buffer.from(b));
      }
    }
    const { chunks, fresh } = feed(stream());
    assert.ok(chunks > 50, `${chunks} chunks`);
    assert.is(fresh, 0, 'no chunk was kept: a small body is never a view of the read buffer');
    assert.is(got.length, bodies.length);
    for (const [i, b] of bodies.entries())
      if (got[i]?.toString() !== b) assert.unreachable(`message ${i} was overwritten`);
    // Not views of a 64 KiB read buffer: a kept message holds its own bytes (Node's pool), not the buffer.
    assert.ok(got.every((b) => b.buffer.byteLength <= 8192));
  },
);

reads.run();
