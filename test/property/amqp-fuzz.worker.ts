/**
 * The mutation fuzzer, run in a worker thread by amqp-codec.test.ts so that a hang or a runaway allocation can be
 * detected and stopped (uvu has no timeouts and a synchronous loop cannot be interrupted from its own thread).
 *
 * Each iteration takes a valid frame (every method of the spec with random arguments, content headers, bodies,
 * heartbeats) or a valid field table, mutates it (bit flips, byte replacements, truncations, insertions, deletions,
 * splices, corrupted length fields, then often re-frames it so the damage reaches the decoders) and decodes it. The
 * result must be a value or a FrameError. A value must survive re-encoding: encode it again (an ArgumentError is
 * acceptable: a peer may send what we refuse to send, e.g. NaN) and the second decode must equal the first.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as assert from 'uvu/assert';
import { FrameError } from '../../src/amqp/errors.js';
import { FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_METHOD, FrameReader } from '../../src/amqp/frame.js';
import { decodeMethod, methodSize, writeMethod } from '../../src/amqp/methods.js';
import {
  type MessageProperties,
  propertiesSize,
  readContentHeader,
  writeProperties,
} from '../../src/amqp/properties.js';
import { METHODS, type MethodName } from '../../src/amqp/spec.js';
import { decodeTable, encodeTable, type FieldTable } from '../../src/amqp/table.js';
import { ArgumentError } from '../../src/amqp/wire.js';
import {
  bodyFrame,
  encodeHeader,
  frame,
  heartbeatFrame,
  methodFrame,
  randomArgs,
  randomProperties,
  randomTable,
} from '../helpers/codec-gen.js';
import { Random } from '../helpers/random.js';

export interface FuzzRequest {
  iterations: number;
  seed: number;
  frameMax: number;
}
export interface FuzzFailure {
  iteration: number;
  stage: string;
  input: string;
  error: string;
}
export interface FuzzStats {
  iterations: number;
  frames: number;
  tables: number;
  decoded: number;
  frameErrors: number;
  reencoded: number;
  refusedReencode: number;
  maxAllocation: number;
  errorCodes: Record<string, number>;
}
export type FuzzMessage =
  | { type: 'progress'; done: number }
  | { type: 'done'; stats: FuzzStats; failures: FuzzFailure[] };

const { iterations, seed, frameMax } = workerData as FuzzRequest;
const rng = new Random(seed);

// ---- corpus --------------------------------------------------------------------------------------------------------

const frames: Buffer[] = [];
for (const m of METHODS)
  for (let i = 0; i < 3; i++) frames.push(methodFrame(rng.range(0, 65535), m.name, randomArgs(rng, m).args));
for (let i = 0; i < 60; i++) {
  frames.push(
    frame(
      FRAME_HEADER,
      rng.range(1, 65535),
      encodeHeader(rng.safeInt(), randomProperties(rng, rng.int(1 << 14)).props),
    ),
  );
}
for (let i = 0; i < 10; i++) frames.push(bodyFrame(rng.range(1, 65535), rng.bytes(rng.int(40))));
frames.push(heartbeatFrame());
const tables: Buffer[] = [];
for (let i = 0; i < 60; i++) tables.push(encodeTable(randomTable(rng, 4).table));

// ---- mutation ------------------------------------------------------------------------------------------------------

const INTERESTING_U8 = [
  0,
  1,
  0x7f,
  0x80,
  0xfe,
  0xff,
  FRAME_END,
  ...'tbBsuIilfdDSxATFVZ'.split('').map((c) => c.charCodeAt(0)),
];
const INTERESTING_U32 = [
  0, 1, 2, 3, 4, 0x7f, 0xff, 0x100, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffff0, 0xffffffff,
];

function mutate(input: Buffer, pool: readonly Buffer[]): Buffer {
  let b = Buffer.from(input);
  const n = 1 + rng.int(3);
  for (let k = 0; k < n; k++) {
    const at = rng.int(Math.max(1, b.length));
    switch (rng.int(8)) {
      case 0:
        if (b.length > 0) b[at] = (b[at] as number) ^ (1 << rng.int(8));
        break;
      case 1:
        if (b.length > 0) b[at] = rng.bool() ? rng.pick(INTERESTING_U8) : rng.int(256);
        break;
      case 2:
        b = b.subarray(0, rng.int(b.length + 1));
        break;
      case 3:
        b = Buffer.concat([b.subarray(0, at), rng.bytes(1 + rng.int(4)), b.subarray(at)]);
        break;
      case 4:
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + rng.int(4))]);
        break;
      case 5: {
        // splice in bytes from another corpus entry
        const other = rng.pick(pool);
        const from = rng.int(other.length + 1);
        b = Buffer.concat([
          b.subarray(0, at),
          other.subarray(from, from + 1 + rng.int(16)),
          b.subarray(at + rng.int(8)),
        ]);
        break;
      }
      case 6: {
        // corrupt a 32-bit length (any offset, so frame sizes, table, longstr and array lengths all get hit)
        if (b.length < 4) break;
        const off = rng.int(b.length - 3);
        const v = rng.bool() ? rng.pick(INTERESTING_U32) : (b.readUInt32BE(off) + rng.range(-3, 3)) >>> 0;
        b.writeUInt32BE(v >>> 0, off);
        break;
      }
      default: {
        // corrupt an 8-bit length (shortstrs, table keys)
        if (b.length > 0) b[at] = rng.pick([0, 1, 2, 0x7f, 0xfe, 0xff, ((b[at] as number) + rng.range(-2, 2)) & 0xff]);
      }
    }
  }
  return b;
}

/** Puts a (damaged) payload back into a well-formed frame, so the damage reaches the payload decoders. */
function reframe(damaged: Buffer, original: Buffer): Buffer {
  const payload = damaged.length > 7 ? damaged.subarray(7, damaged.length - 1) : damaged;
  return frame(original[0] as number, original.readUInt16BE(1), payload);
}

// ---- checks --------------------------------------------------------------------------------------------------------

const stats: FuzzStats = {
  iterations: 0,
  frames: 0,
  tables: 0,
  decoded: 0,
  frameErrors: 0,
  reencoded: 0,
  refusedReencode: 0,
  maxAllocation: 0,
  errorCodes: {},
};
const failures: FuzzFailure[] = [];
let iteration = 0;
let current: Buffer = Buffer.alloc(0);

function fail(stage: string, err: unknown): void {
  if (failures.length >= 10) return;
  const e = err as Error;
  failures.push({
    iteration,
    stage,
    input: current.subarray(0, 600).toString('hex'),
    error: `${e?.constructor?.name ?? typeof err}: ${e?.message ?? String(err)}\n${e?.stack ?? ''}`.slice(0, 4000),
  });
}

/** Runs a decoder: true with a value, false after a FrameError; anything else is recorded as a failure. */
function decode<T>(stage: string, fn: () => T): { ok: true; value: T } | { ok: false } {
  try {
    return { ok: true, value: fn() };
  } catch (err) {
    if (err instanceof FrameError) {
      stats.frameErrors++;
      stats.errorCodes[err.code] = (stats.errorCodes[err.code] ?? 0) + 1;
      return { ok: false };
    }
    fail(stage, err);
    return { ok: false };
  }
}

/** Re-encodes a decoded value; decoding that must give the same value. ArgumentError is an acceptable refusal. */
function reencode(stage: string, first: unknown, encode: () => Buffer, again: (b: Buffer) => unknown): void {
  let bytes: Buffer;
  try {
    bytes = encode();
  } catch (err) {
    if (err instanceof ArgumentError) {
      stats.refusedReencode++;
      return;
    }
    fail(`${stage}: re-encode`, err);
    return;
  }
  try {
    assert.equal(again(bytes), first);
    stats.reencoded++;
  } catch (err) {
    fail(`${stage}: decode(encode(decode(x))) != decode(x)`, err);
  }
}

function checkPayload(type: number, payload: Buffer): void {
  stats.frames++;
  if (type === FRAME_METHOD) {
    const r = decode('decodeMethod', () => decodeMethod(payload));
    if (!r.ok) return;
    stats.decoded++;
    const m = r.value;
    reencode(
      'method',
      { ...m, args: { ...m.args } },
      () => {
        const args = m.args as Record<string, unknown>;
        const buf = Buffer.alloc(methodSize(m.name as MethodName, args));
        writeMethod(buf, 0, m.name as MethodName, args);
        return buf;
      },
      (b) => {
        const again = decodeMethod(b);
        return { ...again, args: { ...again.args } };
      },
    );
  } else if (type === FRAME_HEADER) {
    const r = decode('readContentHeader', () => readContentHeader(payload));
    if (!r.ok) return;
    stats.decoded++;
    const h = r.value;
    reencode(
      'header',
      h,
      () => {
        const buf = Buffer.alloc(12 + propertiesSize(h.properties as MessageProperties));
        buf.writeUInt16BE(h.classId, 0);
        buf.writeBigUInt64BE(BigInt(h.bodySize), 4);
        writeProperties(buf, 12, h.properties as MessageProperties);
        return buf;
      },
      readContentHeader,
    );
  } else if (type === FRAME_BODY) {
    stats.decoded++;
  }
}

function checkStream(bytes: Buffer): void {
  const reader = new FrameReader((type, _channel, payload) => checkPayload(type, payload), frameMax);
  const cut = rng.bool() ? rng.int(bytes.length + 1) : bytes.length;
  decode('FrameReader', () => {
    reader.push(bytes.subarray(0, cut));
    reader.push(bytes.subarray(cut));
  });
}

function checkTable(bytes: Buffer): void {
  stats.tables++;
  const r = decode('decodeTable', () => decodeTable(bytes));
  if (!r.ok) return;
  stats.decoded++;
  reencode('table', r.value, () => encodeTable(r.value as FieldTable), decodeTable);
}

// Every allocation made by the code under test is measured: none may exceed frame_max (a hostile length must be
// refused before it is used to allocate).
const original = { alloc: Buffer.alloc, allocUnsafe: Buffer.allocUnsafe, allocUnsafeSlow: Buffer.allocUnsafeSlow };
const spy = <F extends (size: number, ...rest: never[]) => Buffer>(f: F): F =>
  ((size: number, ...rest: never[]) => {
    if (size > stats.maxAllocation) stats.maxAllocation = size;
    return f.call(Buffer, size, ...rest);
  }) as F;
Buffer.alloc = spy(original.alloc);
Buffer.allocUnsafe = spy(original.allocUnsafe);
Buffer.allocUnsafeSlow = spy(original.allocUnsafeSlow);

for (iteration = 0; iteration < iterations; iteration++) {
  if (rng.bool(0.8)) {
    const source = rng.pick(frames);
    let bytes = mutate(source, frames);
    if (rng.bool(0.6)) bytes = reframe(bytes, source);
    current = bytes;
    checkStream(bytes);
  } else {
    const bytes = mutate(rng.pick(tables), tables);
    current = bytes;
    checkTable(bytes);
  }
  // Counted as each one ends, not set from the request, so the test sees how many really ran their checks.
  stats.iterations++;
  if ((iteration + 1) % 2000 === 0)
    parentPort!.postMessage({ type: 'progress', done: iteration + 1 } satisfies FuzzMessage);
}
Object.assign(Buffer, original);
parentPort!.postMessage({ type: 'done', stats, failures } satisfies FuzzMessage);
