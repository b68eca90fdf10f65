/**
 * publish-frames.ts with a BodyWriter: the frames are the bytes the same body given as a Buffer makes, for every
 * size around the frame boundaries; a writer with a sizeHint is offered what the output buffer has left and called
 * again with more room when it asks, nothing of a refused attempt committed; one without a hint is offered exactly
 * its maxBytes; a writer that needs more than maxBytes, or returns a bad offset, fails with nothing committed.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Output } from '../../../src/amqp/output.js';
import { propertiesSize } from '../../../src/amqp/properties.js';
import { type OutgoingMessage, writeMessage } from '../../../src/amqp/publish-frames.js';
import { ArgumentError } from '../../../src/amqp/wire.js';
import { type BodyWriter, MORE_ROOM } from '../../../src/core/body-writer.js';

const FRAME_MAX = 4096;
const PROPS = { messageId: 'm-1', deliveryMode: 2, headers: { 'x-ebadge-dm': '3.1' } };

function message(body: Buffer | BodyWriter): OutgoingMessage {
  return {
    exchange: 'heh-1-to-vpp-1',
    routingKey: 'report',
    body,
    bodyLen: Buffer.isBuffer(body) ? body.length : body.maxBytes,
    properties: PROPS,
    propsSize: propertiesSize(PROPS),
    mandatory: true,
  };
}

function written(body: Buffer | BodyWriter, before?: (out: Output) => void): { bytes: Buffer; out: Output } {
  const chunks: Buffer[] = [];
  const out = new Output((c) => chunks.push(...c.map((b) => Buffer.from(b))));
  before?.(out);
  writeMessage(out, 3, FRAME_MAX, message(body));
  out.flush();
  return { bytes: Buffer.concat(chunks), out };
}

const pattern = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + (i >> 8)) & 0xff));

/** Writes `data`, asking for more room (a hinted writer) when given less; records the room of each call. */
function hinted(data: Buffer, sizeHint: number, maxBytes = 1 << 20): BodyWriter & { rooms: number[] } {
  const rooms: number[] = [];
  return {
    maxBytes,
    sizeHint,
    rooms,
    writeTo(target, offset, end) {
      rooms.push(end - offset);
      if (end - offset < data.length) {
        data.copy(target, offset, 0, end - offset); // a partial write, as JSON leaves one: never committed
        return MORE_ROOM;
      }
      return offset + data.copy(target, offset);
    },
  };
}

const t = suite('publish frames from a body writer');

t('the frames are those of the same body as a Buffer, for every size around the frame boundaries', () => {
  const body = FRAME_MAX - 8;
  for (const n of [0, 1, 200, body - 1, body, body + 1, 2 * body, 3 * body + 5, 40_000]) {
    const data = pattern(n);
    const expected = written(data).bytes;
    assert.equal(written(hinted(data, 16)).bytes, expected, `${n} bytes, hinted`);
    const plain: BodyWriter = { maxBytes: n + 10, writeTo: (target, offset) => offset + data.copy(target, offset) };
    assert.equal(written(plain).bytes, expected, `${n} bytes, no hint`);
  }
});

t('a hinted writer is offered what the output buffer has left, and more room when it asks', () => {
  const small = hinted(pattern(300), 16);
  written(small);
  assert.is(small.rooms.length, 1, 'one call: the fresh output buffer had room');
  assert.ok((small.rooms[0] as number) > 60_000, `offered ${small.rooms[0]} bytes, the buffer's free space`);

  // An output buffer with 620 bytes left: the first call gets what the frame headers leave of it; the next at least
  // twice as much, here all of a new output buffer.
  const data = pattern(2_000);
  const w = hinted(data, 100);
  const { bytes, out } = written(w, (o) => {
    o.reserve(1);
    o.commit(o.buf.length - 620);
  });
  assert.is(w.rooms.length, 2, `rooms offered: ${w.rooms.join(', ')}`);
  assert.ok((w.rooms[0] as number) > 400 && (w.rooms[0] as number) < 620 - 8, `first room ${w.rooms[0]}`);
  assert.ok((w.rooms[1] as number) > 60_000, `second room ${w.rooms[1]}`);
  assert.is(out.queued, 0, 'all of it flushed');
  const expected = written(data).bytes;
  assert.equal(bytes.subarray(bytes.length - expected.length), expected, 'only the last attempt was committed');
});

t('a writer without a hint is offered exactly its maxBytes', () => {
  const rooms: number[] = [];
  written({
    maxBytes: 123,
    writeTo(_t, offset, end) {
      rooms.push(end - offset);
      return offset;
    },
  });
  assert.equal(rooms, [123]);
});

t('a writer that needs more than maxBytes, or returns a bad offset, fails with nothing committed', () => {
  for (const [w, what] of [
    [hinted(pattern(5_000), 100, 4_000), 'more than maxBytes'],
    [{ maxBytes: 4, writeTo: (_t: Buffer, o: number) => o + 5 }, 'past its room'],
    [{ maxBytes: 4, writeTo: (_t: Buffer, o: number) => o - 1 }, 'before its offset'],
    [{ maxBytes: 4, writeTo: () => MORE_ROOM }, 'more room without a hint'],
  ] as const) {
    const chunks: Buffer[] = [];
    const out = new Output((c) => chunks.push(...c));
    assert.throws(
      () => writeMessage(out, 3, FRAME_MAX, message(w as BodyWriter)),
      (e: unknown) => e instanceof ArgumentError,
      what,
    );
    assert.is(out.queued, 0, `${what}: nothing committed`);
  }
});

t.run();
