/**
 * The generic, spec-driven method codec: every method of every class, argument lists and defaults taken from the
 * generated tables in spec.ts. It serves all the infrequent methods (handshake, declares, qos ...) and is the
 * oracle the hand-written hot paths (publish, deliver, ack) are tested against.
 *
 * Method frame payload (spec §4.2.4):
 *
 *   0          2           4
 *   +----------+-----------+----------------------------+
 *   | class-id | method-id | arguments ...              |
 *   +----------+-----------+----------------------------+
 *
 * Consecutive bit arguments share octets, least significant bit first (§4.2.5.2).
 */
import { FrameError } from './errors.js';
import { FRAME_END, FRAME_METHOD, writeFrameHeader } from './frame.js';
import {
  type ArgSpec,
  type ArgType,
  METHOD_BY_ID,
  METHOD_BY_NAME,
  type Method,
  type MethodArgs,
  type MethodName,
  type MethodSpec,
} from './spec.js';
import { type FieldTable, readTable, tableSize, writeTable } from './table.js';
import {
  ArgumentError,
  checkInt,
  describe,
  longstrSize,
  Reader,
  shortstrSize,
  writeLongstr,
  writeShortstr,
  writeU64,
} from './wire.js';

export function methodSpec(name: MethodName): MethodSpec {
  const m = METHOD_BY_NAME.get(name);
  if (m === undefined) throw new ArgumentError(`unknown method ${String(name)}`);
  return m;
}

/**
 * Each argument type but bit (whose octets are shared, below): its size after validating a value (the value and the
 * text naming it), its writing (buffer, offset, value: the offset after it) and its reading.
 */
type Codec = readonly [
  size: (v: unknown, what: string) => number,
  write: (buf: Buffer, off: number, v: never) => number,
  read: (r: Reader, what: string) => unknown,
];
const int =
  (max: number, bytes: number) =>
  (v: unknown, what: string): number => {
    checkInt(v, 0, max, what);
    return bytes;
  };
const u64: Codec = [int(Number.MAX_SAFE_INTEGER, 8), writeU64, (r, what) => r.u64(what)];
const CODECS: Record<Exclude<ArgType, 'bit'>, Codec> = {
  octet: [
    int(0xff, 1),
    (buf, off, v: number) => {
      buf[off] = v;
      return off + 1;
    },
    (r, what) => r.u8(what),
  ],
  short: [int(0xffff, 2), (buf, off, v: number) => buf.writeUInt16BE(v, off), (r, what) => r.u16(what)],
  long: [int(0xffffffff, 4), (buf, off, v: number) => buf.writeUInt32BE(v, off), (r, what) => r.u32(what)],
  longlong: u64,
  timestamp: u64,
  shortstr: [shortstrSize, writeShortstr, (r, what) => r.shortstr(what)],
  // Copied: the frame's buffer is read into again once nothing keeps a view of it (frame.ts).
  longstr: [longstrSize, writeLongstr, (r, what) => Buffer.from(r.longstr(what))],
  table: [(v, what) => tableSize(v as FieldTable, what), writeTable, (r) => readTable(r)],
};

/** Arguments with every spec default filled in, validated. Missing arguments without a default are an error. */
function argValue(m: MethodSpec, a: ArgSpec, args: Record<string, unknown>): unknown {
  const v = args[a.name];
  if (v !== undefined) return v;
  if (a.default !== undefined) return a.default;
  throw new ArgumentError(`${m.name}: argument ${a.name} is required`);
}

/** Size of the method payload (class-id and method-id included); validates every argument. */
export function methodSize<K extends MethodName>(name: K, args: Partial<MethodArgs[K]>): number {
  const m = methodSpec(name);
  if (args === null || typeof args !== 'object')
    throw new ArgumentError(`${m.name}: expected an object of arguments, got ${describe(args)}`);
  const given = args as Record<string, unknown>;
  let n = 4;
  let bits = 0;
  for (const a of m.args) {
    const v = argValue(m, a, given);
    const what = `${m.name} ${a.name}`;
    if (a.type === 'bit') {
      if (typeof v !== 'boolean') throw new ArgumentError(`${what}: expected a boolean, got ${typeof v}`);
      if (bits++ % 8 === 0) n += 1;
      continue;
    }
    bits = 0;
    n += CODECS[a.type][0](v, what);
  }
  return n;
}

/** Writes a payload sized (and so validated) by methodSize(). Returns the offset after it. */
export function writeMethod<K extends MethodName>(
  buf: Buffer,
  off: number,
  name: K,
  args: Partial<MethodArgs[K]>,
): number {
  const m = methodSpec(name);
  const given = args as Record<string, unknown>;
  buf.writeUInt16BE(m.classId, off);
  buf.writeUInt16BE(m.methodId, off + 2);
  off += 4;
  let bitPos = 0;
  let bitOff = -1;
  for (const a of m.args) {
    const v = argValue(m, a, given);
    if (a.type === 'bit') {
      if (bitPos === 0) {
        bitOff = off++;
        buf[bitOff] = 0;
      }
      if (v === true) buf[bitOff] = (buf[bitOff] as number) | (1 << bitPos);
      bitPos = (bitPos + 1) % 8;
      continue;
    }
    bitPos = 0;
    off = CODECS[a.type][1](buf, off, v as never);
  }
  return off;
}

/** Decodes a method frame payload. Unknown methods and truncated or trailing bytes are FrameErrors. */
export function decodeMethod(payload: Buffer): Method {
  const r = new Reader(payload);
  const classId = r.u16('class-id');
  const methodId = r.u16('method-id');
  const m = METHOD_BY_ID.get((classId << 16) | methodId);
  if (m === undefined) throw new FrameError(`unknown method: class ${classId} method ${methodId}`, 540);
  const args: Record<string, unknown> = {};
  let bits = 0;
  let bitPos = 0;
  for (const a of m.args) {
    const what = `${m.name} ${a.name}`;
    if (a.type === 'bit') {
      if (bitPos === 0) bits = r.u8(what);
      args[a.name] = (bits & (1 << bitPos)) !== 0;
      bitPos = (bitPos + 1) % 8;
      continue;
    }
    bitPos = 0;
    args[a.name] = CODECS[a.type][2](r, what);
  }
  if (r.left !== 0) throw new FrameError(`${m.name}: ${r.left} unexpected bytes after the arguments`, 501);
  return { name: m.name, classId, methodId, args } as Method;
}

/** A whole method frame in its own buffer (for the infrequent methods; hot paths write into the output directly). */
export function encodeMethodFrame(channel: number, name: MethodName, args: Record<string, unknown>): Buffer {
  const size = methodSize(name, args as Partial<MethodArgs[typeof name]>);
  const buf = Buffer.allocUnsafe(size + 8);
  writeFrameHeader(buf, 0, FRAME_METHOD, channel, size);
  writeMethod(buf, 7, name, args as Partial<MethodArgs[typeof name]>);
  buf[7 + size] = FRAME_END;
  return buf;
}
