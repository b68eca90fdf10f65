/**
 * Field tables and arrays with RabbitMQ's type tags (the 0-9-1 errata, https://www.rabbitmq.com/amqp-0-9-1-errata):
 *
 *   t bool   b int8    B uint8   s int16   u uint16   I int32   i uint32   l int64
 *   f float  d double  D decimal S longstr x bytes    A array   T timestamp F table  V void
 *
 * Decoding yields plain JS values. Encoding infers a tag from the JS type (boolean t, integer I or l, other numbers d,
 * bigint l, string S, bytes x, Date T, Decimal D, array A, object F, null V; an integral number past 2^53 stays d);
 * `field(tag, value)` forces a tag, so every type can be produced. Decoding is bounded: lengths are checked against
 * the frame, nesting against a depth limit, so a hostile table can neither overflow the stack nor allocate.
 */
import { FrameError } from './errors.js';
import { ArgumentError, describe, Reader, shortstrSize, writeLongstr, writeShortstr } from './wire.js';

export type FieldTag =
  | 't'
  | 'b'
  | 'B'
  | 's'
  | 'u'
  | 'I'
  | 'i'
  | 'l'
  | 'f'
  | 'd'
  | 'D'
  | 'S'
  | 'x'
  | 'A'
  | 'T'
  | 'F'
  | 'V';

/** An AMQP decimal: `value / 10^scale`, value an unsigned 32-bit integer (0-9-1 grammar: scale long-uint). */
export class Decimal {
  declare readonly scale: number;
  declare readonly value: number;
  constructor(scale: number, value: number) {
    this.scale = scale;
    this.value = value;
  }
}

/** A value with an explicit field-table tag, for brokers or peers that care about the exact type. */
export class Field {
  declare readonly tag: FieldTag;
  declare readonly value: FieldValue;
  constructor(tag: FieldTag, value: FieldValue) {
    this.tag = tag;
    this.value = value;
  }
}

export type FieldValue =
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | Date
  | Decimal
  | Field
  | null
  | undefined
  | readonly FieldValue[]
  | FieldTable;

export interface FieldTable {
  [key: string]: FieldValue;
}

/** `field('u', 7)`: encode 7 as an unsigned short rather than the inferred int32. */
export function field(tag: FieldTag, value: FieldValue): Field {
  return new Field(tag, value);
}

/** Nesting deeper than this is refused both ways (a cycle on encode, a hostile frame on decode). */
export const MAX_TABLE_DEPTH = 32;

const INT_RANGE: Partial<Record<FieldTag, readonly [number, number]>> = {
  b: [-0x80, 0x7f],
  B: [0, 0xff],
  s: [-0x8000, 0x7fff],
  u: [0, 0xffff],
  I: [-0x80000000, 0x7fffffff],
  i: [0, 0xffffffff],
};

function inferTag(v: FieldValue, path: string): FieldTag {
  switch (typeof v) {
    case 'boolean':
      return 't';
    case 'number':
      if (!Number.isInteger(v)) return 'd';
      if (v >= -0x80000000 && v <= 0x7fffffff) return 'I';
      // Past 2^53 a number is a double that happens to be integral (1e18, 1e20, Number.MAX_VALUE): as 'l' it would
      // come back as a bigint, or not fit at all beyond int64, so it stays a double and comes back as the same number.
      return Number.isSafeInteger(v) ? 'l' : 'd';
    case 'bigint':
      return 'l';
    case 'string':
      return 'S';
    case 'object':
      if (v === null) return 'V';
      if (v instanceof Uint8Array) return 'x';
      if (v instanceof Date) return 'T';
      if (v instanceof Decimal) return 'D';
      if (Array.isArray(v)) return 'A';
      if (v instanceof Field) return v.tag;
      return 'F';
    case 'undefined':
      return 'V';
    default:
      throw new ArgumentError(`${path}: a ${typeof v} cannot go in a field table`);
  }
}

function checkTagged(tag: FieldTag, v: FieldValue, path: string): void {
  const range = INT_RANGE[tag];
  const bad = (what: string): never => {
    throw new ArgumentError(`${path}: tag '${tag}' needs ${what}, got ${describe(v)}`);
  };
  if (range !== undefined) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < range[0] || v > range[1])
      bad(`an integer in [${range[0]}, ${range[1]}]`);
    return;
  }
  switch (tag) {
    case 't':
      if (typeof v !== 'boolean') bad('a boolean');
      return;
    case 'l':
      if (typeof v === 'bigint') {
        if (v < -(2n ** 63n) || v >= 2n ** 63n) bad('a 64-bit integer');
        return;
      }
      if (typeof v !== 'number' || !Number.isSafeInteger(v)) bad('a safe integer or a bigint');
      return;
    case 'f':
    case 'd':
      // A finite double beyond float32 (1e39) would reach the wire as an infinity too.
      if (typeof v !== 'number' || !Number.isFinite(tag === 'f' ? Math.fround(v) : v)) {
        bad(`a finite ${tag === 'f' ? 'float32' : 'number'} (RabbitMQ closes the connection on NaN or Infinity)`);
      }
      return;
    case 'D':
      if (
        !(v instanceof Decimal) ||
        !Number.isInteger(v.scale) ||
        v.scale < 0 ||
        v.scale > 255 ||
        !Number.isInteger(v.value) ||
        v.value < 0 ||
        v.value > 0xffffffff
      )
        bad('a Decimal (scale 0-255, uint32 value)');
      return;
    case 'S':
      if (typeof v !== 'string' && !(v instanceof Uint8Array)) bad('a string or bytes');
      return;
    case 'x':
      if (!(v instanceof Uint8Array)) bad('bytes');
      return;
    case 'T':
      if (v instanceof Date) {
        if (Number.isNaN(v.getTime()) || v.getTime() < 0) bad('a valid Date after 1970');
        return;
      }
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) bad('a Date or seconds since 1970');
      return;
    case 'A':
      if (!Array.isArray(v)) bad('an array');
      return;
    case 'F':
      if (
        v === null ||
        typeof v !== 'object' ||
        Array.isArray(v) ||
        v instanceof Uint8Array ||
        v instanceof Field ||
        v instanceof Date ||
        v instanceof Decimal
      )
        bad('an object');
      return;
    case 'V':
      if (v !== null && v !== undefined) bad('null');
      return;
    default:
      throw new ArgumentError(`${path}: unknown field tag ${JSON.stringify(tag)}`);
  }
}

/** Size of one tagged value (tag octet included). Validates as it goes. */
function valueSize(v: FieldValue, path: string, depth: number): number {
  let tag: FieldTag;
  if (v instanceof Field) {
    tag = v.tag;
    v = v.value;
    checkTagged(tag, v, path);
  } else {
    tag = inferTag(v, path);
    // A Date, Decimal, double or bigint may hold what its wire type cannot (an invalid Date, a scale of 300, NaN,
    // 2n ** 64n): check it like a tagged one.
    if (tag === 'T' || tag === 'D' || tag === 'd' || typeof v === 'bigint') checkTagged(tag, v, path);
  }
  switch (tag) {
    case 't':
    case 'b':
    case 'B':
      return 2;
    case 's':
    case 'u':
      return 3;
    case 'I':
    case 'i':
    case 'f':
      return 5;
    case 'l':
    case 'd':
    case 'T':
      return 9;
    case 'D':
      return 6;
    case 'V':
      return 1;
    case 'S':
      return 5 + (typeof v === 'string' ? Buffer.byteLength(v) : (v as Uint8Array).length);
    case 'x':
      return 5 + (v as Uint8Array).length;
    case 'A':
      return 1 + arraySize(v as readonly FieldValue[], path, depth + 1);
    case 'F':
      return 1 + tableSize(v as FieldTable, path, depth + 1);
  }
}

function checkDepth(depth: number, path: string): void {
  if (depth > MAX_TABLE_DEPTH) throw new ArgumentError(`${path}: nested deeper than ${MAX_TABLE_DEPTH} (a cycle?)`);
}

/** Encoded size of a table, including its 4-byte length prefix. Throws ArgumentError for anything unencodable. */
export function tableSize(t: FieldTable | undefined, path = 'table', depth = 0): number {
  if (t === undefined) return 4;
  checkDepth(depth, path);
  if (t === null || typeof t !== 'object' || Array.isArray(t))
    throw new ArgumentError(`${path}: expected an object, got ${describe(t)}`);
  let n = 4;
  for (const key in t) {
    if (!Object.hasOwn(t, key)) continue;
    const v = t[key];
    if (v === undefined) continue;
    n += shortstrSize(key, `${path} key`) + valueSize(v, `${path}.${key}`, depth);
  }
  if (n - 4 > 0xffffffff) throw new ArgumentError(`${path}: larger than 4 GiB`);
  return n;
}

function arraySize(a: readonly FieldValue[], path: string, depth: number): number {
  checkDepth(depth, path);
  let n = 4;
  for (let i = 0; i < a.length; i++) n += valueSize(a[i], `${path}[${i}]`, depth);
  return n;
}

function writeValue(buf: Buffer, off: number, v: FieldValue): number {
  let tag: FieldTag;
  if (v instanceof Field) {
    tag = v.tag;
    v = v.value;
  } else {
    tag = inferTag(v, '');
  }
  buf[off++] = tag.charCodeAt(0);
  switch (tag) {
    case 't':
      buf[off] = v ? 1 : 0;
      return off + 1;
    case 'b':
      return buf.writeInt8(v as number, off);
    case 'B':
      return buf.writeUInt8(v as number, off);
    case 's':
      return buf.writeInt16BE(v as number, off);
    case 'u':
      return buf.writeUInt16BE(v as number, off);
    case 'I':
      return buf.writeInt32BE(v as number, off);
    case 'i':
      return buf.writeUInt32BE(v as number, off);
    case 'l':
      return buf.writeBigInt64BE(BigInt(v as number | bigint), off);
    case 'f':
      return buf.writeFloatBE(v as number, off);
    case 'd':
      return buf.writeDoubleBE(v as number, off);
    case 'D':
      buf[off] = (v as Decimal).scale;
      return buf.writeUInt32BE((v as Decimal).value, off + 1);
    case 'S':
    case 'x':
      return writeLongstr(buf, off, v as string | Uint8Array);
    case 'T': {
      const secs = v instanceof Date ? Math.floor(v.getTime() / 1000) : (v as number);
      return buf.writeBigUInt64BE(BigInt(secs), off);
    }
    case 'V':
      return off;
    case 'A':
      return writeArray(buf, off, v as readonly FieldValue[]);
    case 'F':
      return writeTable(buf, off, v as FieldTable);
  }
}

/** Writes a table sized by tableSize() (which has validated it). Returns the offset after it. */
export function writeTable(buf: Buffer, off: number, t: FieldTable | undefined): number {
  const start = off;
  off += 4;
  if (t !== undefined) {
    for (const key in t) {
      if (!Object.hasOwn(t, key)) continue;
      const v = t[key];
      if (v === undefined) continue;
      off = writeShortstr(buf, off, key);
      off = writeValue(buf, off, v);
    }
  }
  buf.writeUInt32BE(off - start - 4, start);
  return off;
}

function writeArray(buf: Buffer, off: number, a: readonly FieldValue[]): number {
  const start = off;
  off += 4;
  for (const v of a) off = writeValue(buf, off, v);
  buf.writeUInt32BE(off - start - 4, start);
  return off;
}

/** Encodes a table into a new Buffer (for tests and tools; the hot paths write into the frame buffer). */
export function encodeTable(t: FieldTable): Buffer {
  const buf = Buffer.allocUnsafe(tableSize(t));
  writeTable(buf, 0, t);
  return buf;
}

function readValue(r: Reader, depth: number): FieldValue {
  const tag = r.u8('field tag');
  switch (tag) {
    case 0x74 /* t */:
      return r.u8('boolean') !== 0;
    case 0x62 /* b */:
      return r.i8();
    case 0x42 /* B */:
      return r.u8();
    case 0x73 /* s */:
      return r.i16();
    case 0x75 /* u */:
      return r.u16();
    case 0x49 /* I */:
      return r.i32();
    case 0x69 /* i */:
      return r.u32();
    case 0x6c /* l */:
      return r.i64();
    case 0x66 /* f */:
      return r.f32();
    case 0x64 /* d */:
      return r.f64();
    case 0x44 /* D */:
      {
        const scale = r.u8('decimal scale');
        return new Decimal(scale, r.u32('decimal value'));
      }
    case 0x53 /* S */:
      {
        const b = r.longstr('longstr field');
        return b.toString('utf8');
      }
    case 0x78 /* x */:
      return Buffer.from(r.longstr('byte array field'));
    case 0x54 /* T */:
      return new Date(r.u64Lossy('timestamp') * 1000);
    case 0x41 /* A */:
      return readArray(r, depth + 1);
    case 0x46 /* F */:
      return readTable(r, depth + 1);
    case 0x56 /* V */:
      return null;
    default:
      throw new FrameError(
        `unknown field-table type tag 0x${tag.toString(16).padStart(2, '0')}` +
          (tag >= 0x20 && tag < 0x7f ? ` ('${String.fromCharCode(tag)}')` : ''),
        502,
      );
  }
}

/** Reads a table (length prefix included) from the cursor. */
export function readTable(r: Reader, depth = 0): FieldTable {
  const t: FieldTable = {};
  readNested(r, depth, 'table', (sub) => {
    const key = sub.shortstr('table key');
    const v = readValue(sub, depth);
    // A key named __proto__ must become an own property, never the object's prototype.
    if (key === '__proto__')
      Object.defineProperty(t, key, { value: v, enumerable: true, writable: true, configurable: true });
    else t[key] = v;
  });
  return t;
}

function readArray(r: Reader, depth: number): FieldValue[] {
  const a: FieldValue[] = [];
  readNested(r, depth, 'array', (sub) => a.push(readValue(sub, depth)));
  return a;
}

/** A table's or an array's bytes (after its length) on a cursor of their own, `each` called until they are read. */
function readNested(r: Reader, depth: number, what: 'table' | 'array', each: (sub: Reader) => void): void {
  if (depth > MAX_TABLE_DEPTH) throw new FrameError(`field ${what} nested deeper than ${MAX_TABLE_DEPTH}`, 502);
  const len = r.u32(`${what} length`);
  r.need(len, what);
  const end = r.pos + len;
  const sub = new Reader(r.buf, r.pos, end);
  while (sub.pos < end) each(sub);
  r.pos = end;
}

/** Decodes a whole buffer holding one table (length prefix included). */
export function decodeTable(buf: Buffer): FieldTable {
  const r = new Reader(buf);
  const t = readTable(r);
  if (r.pos !== buf.length) throw new FrameError(`${buf.length - r.pos} bytes after the table`, 502);
  return t;
}
