/**
 * frame.ts: the incremental FrameReader (spec §4.2.3). The same stream of method, header, body and heartbeat frames
 * is fed whole, split at every point, at every pair of points, byte by byte and in random slices, and must give the
 * same frames every time; whole frames are views of the chunk, never copies; sizes are checked before allocating.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FrameError } from '../../../src/amqp/errors.js';
import {
  FRAME_BODY,
  FRAME_END,
  FRAME_HEADER,
  FRAME_HEARTBEAT,
  FRAME_METHOD,
  FRAME_MIN_SIZE,
  FRAME_OVERHEAD,
  FrameReader,
  HEADER_SLACK,
  HEARTBEAT_FRAME,
  PROTOCOL_HEADER,
  writeFrameHeader,
} from '../../../src/amqp/frame.js';
import { decodeMethod } from '../../../src/amqp/methods.js';
import { readContentHeader } from '../../../src/amqp/properties.js';
import { throwsTyped } from '../../helpers/codec-assert.js';
import {
  bodyFrame,
  frame,
  frameSummary,
  headerFrame,
  heartbeatFrame,
  methodFrame,
  type ReadFrame,
  randomCuts,
  readFrames,
  splitAt,
} from '../../helpers/codec-gen.js';
import { Random } from '../../helpers/random.js';

/** A delivery (method, header, two bodies), a heartbeat, a connection.blocked and an empty body on another channel. */
const FRAMES = [
  methodFrame(1, 'basic.deliver', {
    consumerTag: 'ctag',
    deliveryTag: 2 ** 40,
    redelivered: true,
    exchange: 'ex',
    routingKey: 'rk',
  }),
  headerFrame(1, 10, { contentType: 'text/plain', headers: { n: 1 }, timestamp: 1700000000 }),
  bodyFrame(1, Buffer.from('hello')),
  bodyFrame(1, Buffer.from('world')),
  heartbeatFrame(),
  methodFrame(0, 'connection.blocked', { reason: 'low on memory' }),
  bodyFrame(65535, Buffer.alloc(0)),
];
const STREAM = Buffer.concat(FRAMES);
/** Where each frame starts and ends in STREAM. */
const BOUNDS: [number, number][] = [];
for (const f of FRAMES) {
  const start = BOUNDS.length === 0 ? 0 : BOUNDS[BOUNDS.length - 1]![1];
  BOUNDS.push([start, start + f.length]);
}
const EXPECTED = frameSummary(
  FRAMES.map((f) => ({ type: f[0]!, channel: f.readUInt16BE(1), payload: f.subarray(7, f.length - 1) })),
);

/** A small stream for the every-pair-of-splits test: heartbeat, basic.qos-ok, an empty body, a tiny body. */
const SMALL = Buffer.concat([
  heartbeatFrame(),
  methodFrame(3, 'basic.qos-ok', {}),
  bodyFrame(3, Buffer.alloc(0)),
  bodyFrame(3, Buffer.from('xyz')),
]);
const SMALL_EXPECTED = frameSummary(readFrames([SMALL]));

/** Reads the chunks, recording which chunk (if any) each payload is a view of. */
function readTracked(chunks: readonly Buffer[], frameMax = 131072): (ReadFrame & { viewOf: number })[] {
  const out: (ReadFrame & { viewOf: number })[] = [];
  let current = -1;
  const reader = new FrameReader((type, channel, payload) => {
    reader.keep(); // the payloads are kept
    const c = chunks[current]!;
    const inside =
      payload.buffer === c.buffer &&
      payload.byteOffset >= c.byteOffset &&
      payload.byteOffset + payload.length <= c.byteOffset + c.length;
    out.push({ type, channel, payload, viewOf: inside ? current : -1 });
  }, frameMax);
  chunks.forEach((c, i) => {
    current = i;
    reader.push(c);
  });
  assert.is(reader.pending, false, 'nothing left over');
  return out;
}

/** Records the size of every Buffer allocation made while `fn` runs (Buffer.alloc, allocUnsafe, allocUnsafeSlow). */
function allocations(fn: () => void): { sizes: number[]; error: unknown } {
  const original = { alloc: Buffer.alloc, allocUnsafe: Buffer.allocUnsafe, allocUnsafeSlow: Buffer.allocUnsafeSlow };
  const sizes: number[] = [];
  const spy = <F extends (size: number, ...rest: never[]) => Buffer>(f: F): F =>
    ((size: number, ...rest: never[]) => {
      sizes.push(size);
      return f.call(Buffer, size, ...rest);
    }) as F;
  Buffer.alloc = spy(original.alloc);
  Buffer.allocUnsafe = spy(original.allocUnsafe);
  Buffer.allocUnsafeSlow = spy(original.allocUnsafeSlow);
  let error: unknown;
  try {
    fn();
  } catch (e) {
    error = e;
  } finally {
    Object.assign(Buffer, original);
  }
  return { sizes, error };
}

const basics = suite('frame: constants and headers');

basics('the fixed byte strings of the protocol', () => {
  assert.is(PROTOCOL_HEADER.toString('hex'), '414d515000000901');
  assert.is(HEARTBEAT_FRAME.toString('hex'), '08' + '0000' + '00000000' + 'ce');
  assert.equal(
    [FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT, FRAME_END, FRAME_OVERHEAD, FRAME_MIN_SIZE],
    [1, 2, 3, 8, 0xce, 8, 4096],
  );
});

basics('writeFrameHeader writes type, channel and size and returns the payload offset', () => {
  const buf = Buffer.alloc(12, 0xee);
  assert.is(writeFrameHeader(buf, 2, FRAME_BODY, 0xabcd, 0x01020304), 9);
  assert.is(buf.toString('hex'), 'eeee' + '03' + 'abcd' + '01020304' + 'eeeeee');
});

basics('the stream under test decodes as intended', () => {
  const frames = readFrames([STREAM]);
  assert.is(frames.length, FRAMES.length);
  assert.is(decodeMethod(frames[0]!.payload).name, 'basic.deliver');
  assert.is(readContentHeader(frames[1]!.payload).bodySize, 10);
  assert.is(frames[4]!.type, FRAME_HEARTBEAT);
  assert.equal(frameSummary(frames), EXPECTED);
});

const splits = suite('frame: partitioning');

splits('fed whole, every frame is a view of the chunk at its own offset', () => {
  const chunk = Buffer.alloc(STREAM.length + 6);
  STREAM.copy(chunk, 3);
  const frames = readTracked([chunk.subarray(3, 3 + STREAM.length)]);
  assert.equal(frameSummary(frames), EXPECTED);
  frames.forEach((f, i) => {
    assert.ok(f.payload.buffer === chunk.buffer, `frame ${i}: same ArrayBuffer`);
    assert.is(f.payload.byteOffset, chunk.byteOffset + 3 + BOUNDS[i]![0] + 7, `frame ${i}: at its offset`);
  });
});

splits('split at every point into two chunks: the same frames; those inside one chunk are views of it', () => {
  for (let cut = 0; cut <= STREAM.length; cut++) {
    const frames = readTracked(splitAt(STREAM, [cut]));
    assert.equal(frameSummary(frames), EXPECTED, `cut ${cut}`);
    frames.forEach((f, i) => {
      const [start, end] = BOUNDS[i]!;
      const whole = end <= cut ? 0 : start >= cut ? 1 : -1;
      assert.is(
        f.viewOf,
        whole,
        `cut ${cut}, frame ${i}: ${whole === -1 ? 'assembled (a copy)' : `a view of chunk ${whole}`}`,
      );
    });
  }
});

splits('split at every pair of points (3 chunks, empty ones included)', () => {
  let runs = 0;
  for (let a = 0; a <= SMALL.length; a++) {
    for (let b = a; b <= SMALL.length; b++) {
      assert.equal(frameSummary(readFrames(splitAt(SMALL, [a, b]))), SMALL_EXPECTED, `cuts ${a}, ${b}`);
      runs++;
    }
  }
  assert.is(runs, ((SMALL.length + 1) * (SMALL.length + 2)) / 2);
});

splits('byte by byte', () => {
  const cuts = Array.from({ length: STREAM.length - 1 }, (_, i) => i + 1);
  const frames = readTracked(splitAt(STREAM, cuts));
  assert.equal(frameSummary(frames), EXPECTED);
  assert.ok(
    frames.every((f) => f.viewOf === -1),
    'every frame longer than one byte is assembled',
  );
});

splits('500 random partitions, up to 30 chunks each', () => {
  const rng = new Random(0x5911);
  for (let i = 0; i < 500; i++) {
    const cuts = randomCuts(rng, STREAM.length, 30);
    assert.equal(frameSummary(readFrames(splitAt(STREAM, cuts))), EXPECTED, `cuts ${cuts.join(',')}`);
  }
});

splits('pending is true exactly while a frame is incomplete; an empty chunk changes nothing', () => {
  const reader = new FrameReader(() => undefined, 131072);
  const ends = new Set(BOUNDS.map(([, e]) => e));
  for (let i = 0; i < STREAM.length; i++) {
    reader.push(STREAM.subarray(i, i + 1));
    reader.push(Buffer.alloc(0));
    assert.is(reader.pending, !ends.has(i + 1), `after byte ${i}`);
  }
});

splits('an assembled frame is a copy: later changes to the chunks do not reach it', () => {
  const chunks = splitAt(FRAMES[2]!, [9]);
  const frames = readFrames(chunks);
  chunks[0]!.fill(0);
  chunks[1]!.fill(0);
  assert.is(frames[0]!.payload.toString(), 'hello');
});

splits('a 100 KB frame over 1,000-byte chunks is assembled in one allocation of its exact size', () => {
  const body = Buffer.alloc(100_000);
  for (let i = 0; i < body.length; i++) body[i] = (i * 7) % 256;
  const f = bodyFrame(9, body);
  const cuts = Array.from({ length: Math.floor(f.length / 1000) }, (_, i) => (i + 1) * 1000);
  const chunks = splitAt(f, cuts);
  let frames: ReadFrame[] = [];
  const { sizes, error } = allocations(() => {
    frames = readFrames(chunks);
  });
  assert.is(error, undefined);
  assert.is(frames.length, 1);
  assert.ok(frames[0]!.payload.equals(body));
  assert.equal(
    sizes.filter((n) => n > 1000),
    [f.length],
    'one allocation, the frame size',
  );
});

splits("frame types are passed on as they are: judging them is the connection's job", () => {
  const odd = frame(0x42, 7, Buffer.from([1, 2]));
  const frames = readFrames([odd]);
  assert.equal([frames[0]!.type, frames[0]!.channel, [...frames[0]!.payload]], [0x42, 7, [1, 2]]);
});

const limits = suite('frame: frame_max and the frame-end octet');

limits('a frame of exactly frame_max is read; one byte more is a FrameError (FRAME_ERROR) at every split point', () => {
  const frameMax = FRAME_MIN_SIZE;
  const fits = bodyFrame(1, Buffer.alloc(frameMax - FRAME_OVERHEAD, 1));
  const over = bodyFrame(1, Buffer.alloc(frameMax - FRAME_OVERHEAD + 1, 1));
  assert.is(readFrames([fits], frameMax).length, 1);
  for (let cut = 0; cut <= over.length; cut += cut < 16 ? 1 : 509) {
    const seen: number[] = [];
    const reader = new FrameReader((type) => seen.push(type), frameMax);
    const e = throwsTyped(
      () => {
        for (const c of splitAt(Buffer.concat([HEARTBEAT_FRAME, over]), [cut + 8])) reader.push(c);
      },
      FrameError,
      'FRAME_ERROR',
      `cut ${cut}`,
    );
    assert.is(e.replyCode, 501);
    assert.equal(seen, [FRAME_HEARTBEAT], `cut ${cut}: the frame before was delivered, the oversized one was not`);
  }
});

limits(
  'a declared size of 0xfffffff0 (or 0xffffffff) is refused on the header alone, before any large allocation',
  () => {
    for (const size of [0xfffffff0, 0xffffffff, 0x7fffffff, 131073 - 8]) {
      const head = Buffer.alloc(7);
      writeFrameHeader(head, 0, FRAME_BODY, 1, size);
      for (let cut = 0; cut <= 7; cut++) {
        const { sizes, error } = allocations(() => readFrames(splitAt(Buffer.concat([head, Buffer.alloc(3)]), [cut])));
        assert.instance(error, FrameError, `size ${size}, cut ${cut}`);
        assert.is((error as FrameError).code, 'FRAME_ERROR');
        assert.ok(
          sizes.every((n) => n <= 131072),
          `size ${size}, cut ${cut}: allocations ${sizes.join(',')}`,
        );
      }
    }
  },
);

limits(
  'a content header frame may exceed frame_max by HEADER_SLACK (RabbitMQ adds headers unchecked), whole and split; no other frame may',
  () => {
    const frameMax = FRAME_MIN_SIZE;
    const header = (extra: number): Buffer => {
      const payload = Buffer.alloc(frameMax - FRAME_OVERHEAD + extra, 2);
      const f = Buffer.alloc(payload.length + FRAME_OVERHEAD);
      writeFrameHeader(f, 0, FRAME_HEADER, 1, payload.length);
      payload.copy(f, 7);
      f[f.length - 1] = 0xce;
      return f;
    };
    for (const cuts of [[], [3], [9], [frameMax - 5]]) {
      const seen = readFrames(splitAt(header(HEADER_SLACK), cuts), frameMax);
      assert.equal(
        seen.map((f) => [f.type, f.payload.length]),
        [[FRAME_HEADER, frameMax - FRAME_OVERHEAD + HEADER_SLACK]],
        `cuts ${cuts.join(',')}`,
      );
      throwsTyped(() => readFrames(splitAt(header(HEADER_SLACK + 1), cuts), frameMax), FrameError, 'FRAME_ERROR');
      throwsTyped(
        () => readFrames(splitAt(bodyFrame(1, Buffer.alloc(frameMax - FRAME_OVERHEAD + 1)), cuts), frameMax),
        FrameError,
        'FRAME_ERROR',
      );
    }
  },
);

limits('frameMax can be lowered after tune and applies to the next frame', () => {
  const frames: number[] = [];
  const reader = new FrameReader((_t, _c, p) => frames.push(p.length), 131072);
  reader.push(bodyFrame(1, Buffer.alloc(5000)));
  reader.frameMax = FRAME_MIN_SIZE;
  throwsTyped(() => reader.push(bodyFrame(1, Buffer.alloc(5000))), FrameError, 'FRAME_ERROR');
  assert.equal(frames, [5000]);
});

limits(
  'a wrong frame-end octet is a FrameError (FRAME_ERROR) whole, split and byte by byte, and the frame is not delivered',
  () => {
    for (const bad of [0x00, 0xcd, 0xff, 0x41]) {
      for (const f of FRAMES) {
        const broken = Buffer.from(f);
        broken[broken.length - 1] = bad;
        const stream = Buffer.concat([HEARTBEAT_FRAME, broken]);
        for (const cuts of [
          [],
          [stream.length - 1],
          [8 + 3],
          Array.from({ length: stream.length - 1 }, (_, i) => i + 1),
        ]) {
          const seen: number[] = [];
          const reader = new FrameReader((type) => seen.push(type), 131072);
          throwsTyped(
            () => {
              for (const c of splitAt(stream, cuts)) reader.push(c);
            },
            FrameError,
            'FRAME_ERROR',
            `end 0x${bad.toString(16)}, ${cuts.length} cuts`,
          );
          assert.equal(seen, [FRAME_HEARTBEAT]);
        }
      }
    }
  },
);

limits('a truncated stream delivers every whole frame and keeps the rest pending', () => {
  for (let n = 0; n < STREAM.length; n++) {
    const out: ReadFrame[] = [];
    const reader = new FrameReader((type, channel, payload) => {
      reader.keep();
      out.push({ type, channel, payload });
    }, 131072);
    reader.push(STREAM.subarray(0, n));
    const whole = BOUNDS.filter(([, e]) => e <= n).length;
    assert.is(out.length, whole, `${n} bytes`);
    assert.is(reader.pending, !BOUNDS.some(([, e]) => e === n) && n !== 0, `${n} bytes: pending`);
  }
});

basics.run();
splits.run();
limits.run();
