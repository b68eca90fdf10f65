/** wire.ts: the primitive types of AMQP 0-9-1 §4.2.5, their size/write/read contract and the bounds-checked Reader. */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { AmqpError, FrameError } from '../../../src/amqp/errors.js';
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
} from '../../../src/amqp/wire.js';
import { throwsTyped } from '../../helpers/codec-assert.js';
import { SHORTSTR_EDGES } from '../../helpers/codec-gen.js';

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** The values no integer, string or bytes argument may accept. */
const CONFUSION: readonly unknown[] = [
  undefined,
  null,
  NaN,
  Infinity,
  -Infinity,
  1.5,
  -0.5,
  '1',
  '',
  1n,
  true,
  {},
  [],
  [1],
  Symbol('s'),
  () => 1,
  new Date(0),
  Object.create(null),
  new Map(),
];

// ---- errors --------------------------------------------------------------------------------------------------------

const errors = suite('wire: ArgumentError');

errors('ArgumentError is an AmqpError with the stable code ARGUMENT_INVALID', () => {
  const e = new ArgumentError('x');
  assert.instance(e, AmqpError);
  assert.instance(e, Error);
  assert.is(e.code, 'ARGUMENT_INVALID');
  assert.is(e.name, 'ArgumentError');
  assert.not.instance(e, FrameError);
});

errors('describe() never throws, whatever it is given', () => {
  for (const v of [
    ...CONFUSION,
    Buffer.from('ab'),
    'x'.repeat(100),
    { constructor: 5 },
    Object.create({ constructor: null }),
  ]) {
    assert.type(describe(v), 'string');
  }
  assert.ok(describe('y'.repeat(100)).length < 60, 'long strings are cut');
});

// ---- integers ------------------------------------------------------------------------------------------------------

const ints = suite('wire: checkInt');

ints('accepts the bounds and everything between', () => {
  for (const [min, max] of [
    [0, 0xff],
    [0, 0xffff],
    [0, 0xffffffff],
    [0, MAX_SAFE],
    [-128, 127],
  ] as const) {
    assert.is(checkInt(min, min, max, 'v'), min);
    assert.is(checkInt(max, min, max, 'v'), max);
    assert.is(checkInt(Math.floor((min + max) / 2), min, max, 'v'), Math.floor((min + max) / 2));
  }
});

ints('refuses one past each bound, non-integers and non-numbers with ArgumentError', () => {
  for (const [min, max] of [
    [0, 0xff],
    [0, 0xffff],
    [0, 0xffffffff],
    [-128, 127],
  ] as const) {
    throwsTyped(() => checkInt(min - 1, min, max, 'v'), ArgumentError, 'ARGUMENT_INVALID', `${min - 1}`);
    throwsTyped(() => checkInt(max + 1, min, max, 'v'), ArgumentError, 'ARGUMENT_INVALID', `${max + 1}`);
  }
  throwsTyped(() => checkInt(MAX_SAFE + 1, 0, MAX_SAFE, 'v'), ArgumentError, 'ARGUMENT_INVALID', '2^53');
  for (const v of CONFUSION)
    throwsTyped(() => checkInt(v, -10, 10, 'v'), ArgumentError, 'ARGUMENT_INVALID', describe(v));
});

// ---- strings -------------------------------------------------------------------------------------------------------

const strs = suite('wire: shortstr and longstr');

strs('shortstrSize counts UTF-8 bytes plus the length octet, up to 255', () => {
  assert.is(shortstrSize('', 's'), 1);
  assert.is(shortstrSize('abc', 's'), 4);
  for (const s of SHORTSTR_EDGES)
    assert.is(shortstrSize(s, 's'), 1 + Buffer.byteLength(s), JSON.stringify(s.slice(0, 10)));
  // Both sides of the 86-character switch between the ASCII fast path and Buffer.byteLength.
  assert.is(shortstrSize('€'.repeat(85), 's'), 256);
  assert.is(shortstrSize(`${'a'.repeat(85)}é`, 's'), 88);
  assert.is(shortstrSize('a'.repeat(86), 's'), 87);
  // A lone surrogate is written as U+FFFD (3 bytes) and must be counted as such.
  assert.is(shortstrSize('\ud800', 's'), 4);
});

strs('shortstrSize refuses 256 bytes in any encoding, and non-strings', () => {
  for (const s of [
    'x'.repeat(256),
    'é'.repeat(128),
    `${'€'.repeat(85)}a`,
    'a'.repeat(84) + '€'.repeat(58),
    '🐇'.repeat(64),
  ]) {
    throwsTyped(() => shortstrSize(s, 's'), ArgumentError, 'ARGUMENT_INVALID', `${Buffer.byteLength(s)} bytes`);
  }
  for (const v of CONFUSION.filter((x) => typeof x !== 'string'))
    throwsTyped(() => shortstrSize(v, 's'), ArgumentError, 'ARGUMENT_INVALID', describe(v));
  throwsTyped(() => shortstrSize(Buffer.from('abc'), 's'), ArgumentError, 'ARGUMENT_INVALID', 'bytes');
});

strs('longstrSize takes strings and bytes only', () => {
  assert.is(longstrSize('', 'l'), 4);
  assert.is(longstrSize('é', 'l'), 6);
  assert.is(longstrSize(new Uint8Array(10), 'l'), 14);
  assert.is(longstrSize(Buffer.alloc(70000), 'l'), 70004);
  for (const v of CONFUSION.filter((x) => typeof x !== 'string'))
    throwsTyped(() => longstrSize(v, 'l'), ArgumentError, 'ARGUMENT_INVALID', describe(v));
  throwsTyped(() => longstrSize(new ArrayBuffer(4), 'l'), ArgumentError, 'ARGUMENT_INVALID', 'ArrayBuffer');
  throwsTyped(() => longstrSize(new DataView(new ArrayBuffer(4)), 'l'), ArgumentError, 'ARGUMENT_INVALID', 'DataView');
});

strs('writeShortstr writes the length octet and the bytes, returns the offset after them', () => {
  for (const s of SHORTSTR_EDGES) {
    const n = shortstrSize(s, 's');
    const buf = Buffer.alloc(n + 4, 0xaa);
    assert.is(writeShortstr(buf, 2, s), 2 + n);
    assert.is(buf[2], n - 1);
    assert.is(buf.toString('utf8', 3, 2 + n), s);
    assert.equal([buf[0], buf[1], buf[n + 2], buf[n + 3]], [0xaa, 0xaa, 0xaa, 0xaa], 'nothing outside is touched');
  }
});

strs('an empty string fits exactly at the end of a buffer', () => {
  const a = Buffer.alloc(1);
  assert.is(writeShortstr(a, 0, ''), 1);
  assert.is(a[0], 0);
  const b = Buffer.alloc(4, 0xff);
  assert.is(writeLongstr(b, 0, ''), 4);
  assert.equal([...b], [0, 0, 0, 0]);
});

strs('writeLongstr writes a 4-byte length and strings or bytes', () => {
  const buf = Buffer.alloc(20);
  assert.is(writeLongstr(buf, 1, 'héllo'), 11);
  assert.is(buf.readUInt32BE(1), 6);
  assert.is(buf.toString('utf8', 5, 11), 'héllo');
  const bytes = new Uint8Array([0, 1, 254, 255]);
  assert.is(writeLongstr(buf, 11, bytes), 19);
  assert.is(buf.readUInt32BE(11), 4);
  assert.equal([...buf.subarray(15, 19)], [0, 1, 254, 255]);
});

// ---- longlong ------------------------------------------------------------------------------------------------------

const u64 = suite('wire: writeU64');

u64('writes the same bytes as writeBigUInt64BE for 0 .. 2^53-1', () => {
  for (const v of [0, 1, 255, 0xffffffff, 2 ** 32, 2 ** 32 + 1, 2 ** 40 + 12345, 2 ** 52, MAX_SAFE - 1, MAX_SAFE]) {
    const ours = Buffer.alloc(10);
    const ref = Buffer.alloc(10);
    assert.is(writeU64(ours, 1, v), 9);
    ref.writeBigUInt64BE(BigInt(v), 1);
    assert.is(ours.toString('hex'), ref.toString('hex'), String(v));
  }
});

// ---- reader --------------------------------------------------------------------------------------------------------

const reader = suite('wire: Reader');

const r = (...bytes: number[]): Reader => new Reader(Buffer.from(bytes));

reader('reads every integer width at its bounds', () => {
  assert.is(r(0xff).u8(), 255);
  assert.is(r(0x80).i8(), -128);
  assert.is(r(0x7f).i8(), 127);
  assert.is(r(0xff, 0xff).u16(), 65535);
  assert.is(r(0x80, 0x00).i16(), -32768);
  assert.is(r(0xff, 0xff, 0xff, 0xff).u32(), 0xffffffff);
  assert.is(r(0x80, 0, 0, 0).i32(), -0x80000000);
  assert.is(r(0x7f, 0xff, 0xff, 0xff).i32(), 0x7fffffff);
});

reader('u64 reads up to 2^53-1 exactly and refuses 2^53 and beyond with a FrameError (SYNTAX_ERROR)', () => {
  assert.is(r(0, 0, 0, 0, 0, 0, 0, 0).u64(), 0);
  assert.is(r(0, 0, 0, 1, 0, 0, 0, 0).u64(), 2 ** 32);
  assert.is(r(0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff).u64(), MAX_SAFE);
  for (const hi of [0x00200000, 0x7fffffff, 0xffffffff]) {
    const b = Buffer.alloc(8);
    b.writeUInt32BE(hi, 0);
    const e = throwsTyped(() => new Reader(b).u64(), FrameError, 'SYNTAX_ERROR', hi.toString(16));
    assert.is(e.replyCode, 502);
  }
});

reader('i64 is a number while exact and a bigint beyond', () => {
  const at = (v: bigint): number | bigint => {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(v);
    return new Reader(b).i64();
  };
  assert.is(at(0n), 0);
  assert.is(at(-1n), -1);
  assert.is(at(9007199254740991n), MAX_SAFE);
  assert.is(at(-9007199254740991n), -MAX_SAFE);
  assert.is(at(9007199254740992n), 9007199254740992n);
  assert.is(at(-9007199254740992n), -9007199254740992n);
  assert.is(at(2n ** 63n - 1n), 2n ** 63n - 1n);
  assert.is(at(-(2n ** 63n)), -(2n ** 63n));
});

reader('floats and doubles keep NaN, the infinities and -0', () => {
  for (const v of [NaN, Infinity, -Infinity, -0, 0, 1.5, Number.MAX_VALUE, Number.MIN_VALUE]) {
    const b = Buffer.alloc(12);
    b.writeDoubleBE(v, 0);
    b.writeFloatBE(v, 8);
    const rd = new Reader(b);
    assert.ok(Object.is(rd.f64(), v), `double ${v}`);
    assert.ok(Object.is(rd.f32(), Math.fround(v)), `float ${v}`);
    assert.is(rd.left, 0);
  }
});

reader('every read one byte short is a FrameError (FRAME_ERROR) and leaves the position alone', () => {
  const reads: [string, number, (x: Reader) => unknown][] = [
    ['u8', 1, (x) => x.u8()],
    ['i8', 1, (x) => x.i8()],
    ['u16', 2, (x) => x.u16()],
    ['i16', 2, (x) => x.i16()],
    ['u32', 4, (x) => x.u32()],
    ['i32', 4, (x) => x.i32()],
    ['u64', 8, (x) => x.u64()],
    ['i64', 8, (x) => x.i64()],
    ['f32', 4, (x) => x.f32()],
    ['f64', 8, (x) => x.f64()],
  ];
  for (const [name, width, read] of reads) {
    for (let have = 0; have < width; have++) {
      const rd = new Reader(Buffer.alloc(have + 3), 3);
      const e = throwsTyped(() => read(rd), FrameError, 'FRAME_ERROR', `${name} with ${have} bytes`);
      assert.is(e.replyCode, 501);
      assert.is(rd.pos, 3, `${name}: position unchanged`);
    }
    const ok = new Reader(Buffer.alloc(width));
    read(ok);
    assert.is(ok.pos, width, `${name} consumes ${width}`);
  }
});

reader('a reader never reads past its end, even when the buffer goes on', () => {
  const buf = Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]);
  const rd = new Reader(buf, 2, 5);
  assert.is(rd.left, 3);
  assert.is(rd.u16(), 0x0304);
  throwsTyped(() => rd.u16(), FrameError, 'FRAME_ERROR', 'past end');
  assert.is(rd.u8(), 5);
  throwsTyped(() => rd.u8(), FrameError, 'FRAME_ERROR', 'at end');
});

reader('shortstr reads UTF-8 and refuses a length beyond what is left', () => {
  const ok = Buffer.concat([Buffer.from([6]), Buffer.from('ключ')]);
  const rd = new Reader(Buffer.concat([ok, Buffer.from([0])]));
  assert.is(rd.shortstr(), 'клю'); // 6 bytes: three Cyrillic letters
  assert.is(rd.left, 3);
  const rd2 = new Reader(Buffer.from([5, 0x61, 0x62]));
  throwsTyped(() => rd2.shortstr(), FrameError, 'FRAME_ERROR', 'declared 5, 2 left');
  assert.is(new Reader(Buffer.from([0])).shortstr(), '');
  // Invalid UTF-8 decodes (to U+FFFD) rather than throwing: a shortstr is not validated.
  assert.is(new Reader(Buffer.from([2, 0xff, 0xfe])).shortstr(), '\ufffd\ufffd');
});

reader('longstr and bytes are views of the frame, not copies', () => {
  const buf = Buffer.from([0, 0, 0, 3, 0x61, 0x62, 0x63, 0x64]);
  const rd = new Reader(buf);
  const s = rd.longstr();
  assert.is(s.toString(), 'abc');
  assert.ok(s.buffer === buf.buffer && s.byteOffset === buf.byteOffset + 4, 'a view');
  const b = rd.bytes(1, 'tail');
  assert.is(b.byteOffset, buf.byteOffset + 7);
  assert.is(rd.left, 0);
});

reader('a longstr declaring 4 GiB is refused without allocating', () => {
  const rd = new Reader(Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
  const before = process.memoryUsage().arrayBuffers;
  throwsTyped(() => rd.longstr(), FrameError, 'FRAME_ERROR', '0xffffffff');
  assert.ok(process.memoryUsage().arrayBuffers - before < 1 << 20, 'no large allocation');
  throwsTyped(() => new Reader(Buffer.alloc(3)).bytes(4, 'x'), FrameError, 'FRAME_ERROR', 'bytes');
});

errors.run();
ints.run();
strs.run();
u64.run();
reader.run();
