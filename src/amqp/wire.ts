/**
 * AMQP 0-9-1 primitive types (spec §4.2.5), all big-endian.
 *
 * Writing follows one contract: size first, then write into a buffer the caller reserved, returning the new offset.
 * Sizing also validates, so an invalid argument fails before a single byte is reserved and a half-written frame can
 * never reach the socket. Reading goes through a bounds-checked cursor: every length is checked against what is
 * left before it is used, so a hostile length can neither allocate nor read past the frame.
 */
import { AmqpError, FrameError } from './errors.js';

/** Thrown for an argument the caller passed that cannot be encoded (a bug in the caller, not the peer's fault). */
/** An argument of ours that cannot be encoded; refused before anything is written. */
export class ArgumentError extends AmqpError {
  override name = 'ArgumentError';
  constructor(message: string) {
    super('ARGUMENT_INVALID', message);
  }
}

export function checkInt(v: unknown, min: number, max: number, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new ArgumentError(`${what}: expected an integer in [${min}, ${max}], got ${describe(v)}`);
  }
  return v;
}

export function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint' || v == null) return String(v);
  if (Buffer.isBuffer(v)) return `a Buffer of ${v.length} bytes`;
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? `an object (${v.constructor?.name ?? 'null prototype'})` : typeof v;
}

/** Byte length of a shortstr (validated: a string of at most 255 UTF-8 bytes). */
export function shortstrSize(s: unknown, what: string): number {
  if (typeof s !== 'string') throw new ArgumentError(`${what}: expected a string, got ${describe(s)}`);
  const n = s.length < 86 ? asciiOrUtf8Length(s) : Buffer.byteLength(s);
  if (n > 255) throw new ArgumentError(`${what}: a shortstr holds at most 255 bytes, got ${n}`);
  return 1 + n;
}

/** Byte length of a longstr body (string as UTF-8, or raw bytes). */
export function longstrSize(s: unknown, what: string): number {
  if (typeof s === 'string') return 4 + Buffer.byteLength(s);
  if (s instanceof Uint8Array) return 4 + s.length;
  throw new ArgumentError(`${what}: expected a string or bytes, got ${describe(s)}`);
}

/** Short strings are nearly always ASCII: count without calling into C++ when they are. */
function asciiOrUtf8Length(s: string): number {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return Buffer.byteLength(s);
  return s.length;
}

export function writeShortstr(buf: Buffer, off: number, s: string): number {
  // Routing keys, queue names and property strings are short ASCII: copying them by hand beats a call into C++.
  const len = s.length;
  if (len <= 64) {
    let i = 0;
    for (; i < len; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) break;
      buf[off + 1 + i] = c;
    }
    if (i === len) {
      buf[off] = len;
      return off + 1 + len;
    }
  }
  const n = buf.write(s, off + 1, 'utf8');
  buf[off] = n;
  return off + 1 + n;
}

export function writeLongstr(buf: Buffer, off: number, s: string | Uint8Array): number {
  let n = s.length;
  if (typeof s === 'string') n = buf.write(s, off + 4, 'utf8');
  else buf.set(s, off + 4);
  buf.writeUInt32BE(n, off);
  return off + 4 + n;
}

/** AMQP longlong as a JS number: delivery tags and counts stay far below 2^53. */
export function writeU64(buf: Buffer, off: number, v: number): number {
  buf.writeUInt32BE(Math.floor(v / 0x100000000), off);
  buf.writeUInt32BE(v >>> 0, off + 4);
  return off + 8;
}

/** A bounds-checked read cursor over one frame payload (a view: nothing is copied unless asked). */
export class Reader {
  declare readonly buf: Buffer;
  declare pos: number;
  declare readonly end: number;
  constructor(buf: Buffer, pos = 0, end = buf.length) {
    this.buf = buf;
    this.pos = pos;
    this.end = end;
  }

  get left(): number {
    return this.end - this.pos;
  }

  need(n: number, what: string): void {
    if (n > this.end - this.pos)
      throw new FrameError(`truncated ${what}: needs ${n} bytes, ${this.end - this.pos} left`);
  }

  /** Checks that `n` bytes are left, moves past them and gives where they start. */
  #at(n: number, what: string): number {
    this.need(n, what);
    const at = this.pos;
    this.pos = at + n;
    return at;
  }

  u8(what = 'octet'): number {
    this.need(1, what);
    return this.buf[this.pos++] as number;
  }

  i8(what = 'byte'): number {
    return this.buf.readInt8(this.#at(1, what));
  }

  u16(what = 'short'): number {
    return this.buf.readUInt16BE(this.#at(2, what));
  }

  i16(what = 'short-int'): number {
    return this.buf.readInt16BE(this.#at(2, what));
  }

  u32(what = 'long'): number {
    return this.buf.readUInt32BE(this.#at(4, what));
  }

  i32(what = 'long-int'): number {
    return this.buf.readInt32BE(this.#at(4, what));
  }

  /** Unsigned 64-bit as a number; a value past 2^53 is refused rather than silently rounded. */
  u64(what = 'longlong'): number {
    const at = this.#at(8, what);
    const hi = this.buf.readUInt32BE(at);
    const lo = this.buf.readUInt32BE(at + 4);
    if (hi > 0x1fffff) throw new FrameError(`${what}: ${BigInt(hi) * 0x100000000n + BigInt(lo)} is beyond 2^53`, 502);
    return hi * 0x100000000 + lo;
  }

  /**
   * Unsigned 64-bit where precision beyond 2^53 does not matter (timestamps): another client's odd value must not
   * cost us the connection, so it is rounded instead of refused.
   */
  u64Lossy(what = 'longlong'): number {
    const at = this.#at(8, what);
    return this.buf.readUInt32BE(at) * 0x100000000 + this.buf.readUInt32BE(at + 4);
  }

  /** Signed 64-bit: a number when it is exact, a bigint otherwise. */
  i64(what = 'long-long-int'): number | bigint {
    const v = this.buf.readBigInt64BE(this.#at(8, what));
    return v >= -9007199254740991n && v <= 9007199254740991n ? Number(v) : v;
  }

  f32(what = 'float'): number {
    return this.buf.readFloatBE(this.#at(4, what));
  }

  f64(what = 'double'): number {
    return this.buf.readDoubleBE(this.#at(8, what));
  }

  bytes(n: number, what: string): Buffer {
    const at = this.#at(n, what);
    return this.buf.subarray(at, at + n);
  }

  shortstr(what = 'shortstr'): string {
    const n = this.u8(what);
    const at = this.#at(n, what);
    return this.buf.toString('utf8', at, at + n);
  }

  /** A longstr as a view of the frame (binary safe). */
  longstr(what = 'longstr'): Buffer {
    const n = this.u32(what);
    return this.bytes(n, what);
  }
}
