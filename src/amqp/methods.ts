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
    switch (a.type) {
      case 'octet':
        checkInt(v, 0, 0xff, what);
        n += 1;
        break;
      case 'short':
        checkInt(v, 0, 0xffff, what);
        n += 2;
        break;
      case 'long':
        checkInt(v, 0, 0xffffffff, what);
        n += 4;
        break;
      case 'longlong':
      case 'timestamp':
        checkInt(v, 0, Number.MAX_SAFE_INTEGER, what);
        n += 8;
        break;
      case 'shortstr':
        n += shortstrSize(v, what);
        break;
      case 'longstr':
        n += longstrSize(v, what);
        break;
      case 'table':
        n += tableSize(v as FieldTable, what);
        break;
    }
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
    switch (a.type) {
      case 'octet':
        buf[off++] = v as number;
        break;
      case 'short':
        off = buf.writeUInt16BE(v as number, off);
        break;
      case 'long':
        off = buf.writeUInt32BE(v as number, off);
        break;
      case 'longlong':
      case 'timestamp':
        off = writeU64(buf, off, v as number);
        break;
      case 'shortstr':
        off = writeShortstr(buf, off, v as string);
        break;
      case 'longstr':
        off = writeLongstr(buf, off, v as string | Uint8Array);
        break;
      case 'table':
        off = writeTable(buf, off, v as FieldTable);
        break;
    }
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
    switch (a.type) {
      case 'octet':
        args[a.name] = r.u8(what);
        break;
      case 'short':
        args[a.name] = r.u16(what);
        break;
      case 'long':
        args[a.name] = r.u32(what);
        break;
      case 'longlong':
      case 'timestamp':
        args[a.name] = r.u64(what);
        break;
      case 'shortstr':
        args[a.name] = r.shortstr(what);
        break;
      case 'longstr':
        // Copied: the frame's buffer is read into again once nothing keeps a view of it (frame.ts).
        args[a.name] = Buffer.from(r.longstr(what));
        break;
      case 'table':
        args[a.name] = readTable(r);
        break;
    }
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
