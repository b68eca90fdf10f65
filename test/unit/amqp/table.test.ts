/**
 * table.ts: field tables and arrays with RabbitMQ's 17 type tags (errata), by explicit tag and by inference, at their
 * boundaries, nested, hostile, and byte for byte against amqplib's codec.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FrameError } from '../../../src/amqp/errors.js';
import {
  Decimal,
  decodeTable,
  encodeTable,
  Field,
  type FieldTable,
  type FieldTag,
  type FieldValue,
  field,
  MAX_TABLE_DEPTH,
  readTable,
  tableSize,
  writeTable,
} from '../../../src/amqp/table.js';
import { ArgumentError, Reader } from '../../../src/amqp/wire.js';
import { equalExact, throwsTyped } from '../../helpers/codec-assert.js';
import { randomTable, randomTagged, SCALAR_TAGS, taggedBack } from '../../helpers/codec-gen.js';
import { amqplibCodec, asAmqplibDecoded, toAmqplib, Unexpressible } from '../../helpers/oracle.js';
import { Random } from '../../helpers/random.js';

/** A table's bytes (length prefix included) around entries given as hex. */
function tableOfRaw(entriesHex: string): string {
  const body = entriesHex.replace(/\s/g, '');
  return (body.length / 2).toString(16).padStart(8, '0') + body;
}

/** The bytes of `{ k: <value> }` given the value's own bytes (tag included). */
const tableOfK = (valueHex: string): string => tableOfRaw(`016b${valueHex}`);

const hexOf = (t: FieldTable): string => encodeTable(t).toString('hex');

// ---- each tag ------------------------------------------------------------------------------------------------------

const tags = suite('table: every type tag by field(tag, value)');

/** [tag, value, bytes of the tagged value, decoded value] */
const TAGGED: [FieldTag, FieldValue, string, unknown][] = [
  ['t', true, '74 01', true],
  ['t', false, '74 00', false],
  ['b', -128, '62 80', -128],
  ['b', 127, '62 7f', 127],
  ['B', 0, '42 00', 0],
  ['B', 255, '42 ff', 255],
  ['s', -32768, '73 8000', -32768],
  ['s', 32767, '73 7fff', 32767],
  ['u', 0, '75 0000', 0],
  ['u', 65535, '75 ffff', 65535],
  ['I', -0x80000000, '49 80000000', -0x80000000],
  ['I', 0x7fffffff, '49 7fffffff', 0x7fffffff],
  ['i', 0, '69 00000000', 0],
  ['i', 0xffffffff, '69 ffffffff', 0xffffffff],
  ['l', -1, '6c ffffffffffffffff', -1],
  ['l', Number.MAX_SAFE_INTEGER, '6c 001fffffffffffff', Number.MAX_SAFE_INTEGER],
  ['l', -Number.MAX_SAFE_INTEGER, '6c ffe0000000000001', -Number.MAX_SAFE_INTEGER],
  ['l', 2n ** 63n - 1n, '6c 7fffffffffffffff', 2n ** 63n - 1n],
  ['l', -(2n ** 63n), '6c 8000000000000000', -(2n ** 63n)],
  ['l', 5n, '6c 0000000000000005', 5],
  ['f', 1.5, '66 3fc00000', 1.5],
  ['f', 0.1, '66 3dcccccd', Math.fround(0.1)],
  ['f', -0, '66 80000000', -0],
  ['f', 3.4028234663852886e38, '66 7f7fffff', 3.4028234663852886e38],
  ['f', 1e-46, '66 00000000', 0],
  ['d', -2.25, '64 c002000000000000', -2.25],
  ['d', -0, '64 8000000000000000', -0],
  ['d', Number.MAX_VALUE, '64 7fefffffffffffff', Number.MAX_VALUE],
  ['d', 7, '64 401c000000000000', 7],
  ['D', new Decimal(2, 12345), '44 02 00003039', new Decimal(2, 12345)],
  ['D', new Decimal(255, 0xffffffff), '44 ff ffffffff', new Decimal(255, 0xffffffff)],
  ['D', new Decimal(0, 0), '44 00 00000000', new Decimal(0, 0)],
  ['S', 'é', '53 00000002 c3a9', 'é'],
  ['S', '', '53 00000000', ''],
  ['S', Buffer.from('hi'), '53 00000002 6869', 'hi'],
  ['x', new Uint8Array([1, 2]), '78 00000002 0102', Buffer.from([1, 2])],
  ['x', Buffer.alloc(0), '78 00000000', Buffer.alloc(0)],
  ['A', [1, 'a'], '41 0000000b 49 00000001 53 00000001 61', [1, 'a']],
  ['A', [], '41 00000000', []],
  ['T', 1700000000, '54 000000006553f100', new Date(1700000000 * 1000)],
  ['T', new Date(1700000000999), '54 000000006553f100', new Date(1700000000 * 1000)],
  ['T', 0, '54 0000000000000000', new Date(0)],
  ['F', {}, '46 00000000', {}],
  ['F', { a: null }, '46 00000003 0161 56', { a: null }],
  ['V', null, '56', null],
  ['V', undefined, '56', null],
];

tags('each tag encodes to the exact bytes and decodes back', () => {
  for (const [tag, value, hex, back] of TAGGED) {
    const what = `${tag} ${String(value)}`;
    const t = { k: field(tag, value) };
    assert.is(hexOf(t), tableOfK(hex), `${what}: bytes`);
    assert.is(tableSize(t), 4 + 2 + hex.replace(/\s/g, '').length / 2, `${what}: size`);
    equalExact(decodeTable(encodeTable(t)), { k: back }, `${what}: decoded`);
  }
  const covered = new Set(TAGGED.map(([t]) => t));
  assert.is(covered.size, 17, 'all 17 tags');
});

tags(
  'values outside a tag are ArgumentErrors (ARGUMENT_INVALID), raised by tableSize before anything is written',
  () => {
    const BAD: [FieldTag, unknown][] = [
      ['t', 1],
      ['t', 'true'],
      ['t', null],
      ['b', -129],
      ['b', 128],
      ['b', 1.5],
      ['b', NaN],
      ['b', '1'],
      ['b', 1n],
      ['B', -1],
      ['B', 256],
      ['s', -32769],
      ['s', 32768],
      ['u', -1],
      ['u', 65536],
      ['I', -0x80000001],
      ['I', 0x80000000],
      ['I', 0.5],
      ['i', -1],
      ['i', 2 ** 32],
      ['i', Infinity],
      ['l', 2n ** 63n],
      ['l', -(2n ** 63n) - 1n],
      ['l', 2 ** 53],
      ['l', 1.5],
      ['l', '1'],
      ['l', NaN],
      ['f', '1'],
      ['f', 1n],
      ['f', null],
      ['d', '1'],
      ['d', 1n],
      ['d', undefined],
      // RabbitMQ closes the connection on NaN or an infinity, so neither is sent; nor a double that overflows float32.
      ['f', NaN],
      ['f', Infinity],
      ['f', -Infinity],
      ['f', 1e39],
      ['f', -Number.MAX_VALUE],
      ['d', NaN],
      ['d', Infinity],
      ['d', -Infinity],
      ['D', { scale: 1, value: 1 }],
      ['D', new Decimal(-1, 1)],
      ['D', new Decimal(256, 1)],
      ['D', new Decimal(1.5, 1)],
      ['D', new Decimal(1, 2 ** 32)],
      ['D', new Decimal(1, -1)],
      ['D', new Decimal(1, 0.5)],
      ['D', 1],
      ['S', 1],
      ['S', null],
      ['S', ['a']],
      ['x', 'abc'],
      ['x', [1, 2]],
      ['x', null],
      ['T', -1],
      ['T', 1.5],
      ['T', new Date(NaN)],
      ['T', new Date(-1000)],
      ['T', '1'],
      ['T', 1n],
      ['T', 2 ** 53],
      ['A', {}],
      ['A', 'abc'],
      ['A', null],
      ['F', []],
      ['F', null],
      ['F', 'x'],
      ['F', Buffer.from('x')],
      ['F', new Date(0)],
      ['F', new Decimal(1, 1)],
      ['F', field('I', 1)],
      ['V', 0],
      ['V', false],
      ['V', ''],
      ['Z' as FieldTag, 1],
      ['U' as FieldTag, 1],
      ['' as FieldTag, 1],
    ];
    for (const [tag, value] of BAD) {
      const t = { k: field(tag, value as FieldValue) };
      throwsTyped(() => tableSize(t), ArgumentError, 'ARGUMENT_INVALID', `${tag} ${String(value)}`);
      throwsTyped(() => encodeTable(t), ArgumentError, 'ARGUMENT_INVALID', `${tag} ${String(value)}`);
    }
  },
);

tags('a bad tagged value deep inside arrays and tables is found too', () => {
  throwsTyped(() => encodeTable({ a: [{ b: [field('u', 70000)] }] }), ArgumentError, 'ARGUMENT_INVALID');
  throwsTyped(() => encodeTable({ a: field('A', [1, field('b', 200)]) }), ArgumentError, 'ARGUMENT_INVALID');
});

// ---- inference -----------------------------------------------------------------------------------------------------

const infer = suite('table: inferred tags');

/** [value, inferred tag, decoded value] */
const INFERRED: [FieldValue, string, unknown][] = [
  [true, 't', true],
  [0, 'I', 0],
  [-0, 'I', 0],
  [0x7fffffff, 'I', 0x7fffffff],
  [-0x80000000, 'I', -0x80000000],
  [0x80000000, 'l', 0x80000000],
  [-0x80000001, 'l', -0x80000001],
  [Number.MAX_SAFE_INTEGER, 'l', Number.MAX_SAFE_INTEGER],
  [-Number.MAX_SAFE_INTEGER, 'l', -Number.MAX_SAFE_INTEGER],
  [2 ** 53, 'd', 2 ** 53],
  [1961979883022188500, 'd', 1961979883022188500],
  [-(2 ** 63), 'd', -(2 ** 63)],
  [2 ** 63, 'd', 2 ** 63],
  [1e20, 'd', 1e20],
  [-1e19, 'd', -1e19],
  [Number.MAX_VALUE, 'd', Number.MAX_VALUE],
  [1.5, 'd', 1.5],
  [-Number.MIN_VALUE, 'd', -Number.MIN_VALUE],
  [5n, 'l', 5],
  [2n ** 62n, 'l', 2n ** 62n],
  ['text', 'S', 'text'],
  [Buffer.from([9]), 'x', Buffer.from([9])],
  [new Uint8Array([9]), 'x', Buffer.from([9])],
  [new Date(1500), 'T', new Date(1000)],
  [new Decimal(3, 7), 'D', new Decimal(3, 7)],
  [[], 'A', []],
  [{}, 'F', {}],
  [null, 'V', null],
];

infer('each JS type gets its tag and decodes back', () => {
  for (const [value, tag, back] of INFERRED) {
    const buf = encodeTable({ k: value });
    assert.is(String.fromCharCode(buf[6]!), tag, `${String(value)}: tag`);
    equalExact(decodeTable(buf), { k: back }, `${String(value)}: decoded`);
  }
});

infer(
  'integral numbers past 2^53 are doubles: no RangeError beyond int64 (regression: 1e20 threw from writeBigInt64BE) and a number comes back as a number, not a bigint (regression found by the fuzzer)',
  () => {
    for (const v of [
      1e20,
      -1e20,
      2 ** 63,
      -(2 ** 64),
      Number.MAX_VALUE,
      -Number.MAX_VALUE,
      2 ** 53,
      2 ** 60,
      -(2 ** 63),
      1961979883022188500,
    ]) {
      const back = decodeTable(encodeTable({ v }))['v'];
      assert.type(back, 'number', String(v));
      equalExact(back, v, String(v));
    }
    // Round trips stay stable: decode, encode, decode gives the same values and types.
    const first = decodeTable(Buffer.from('0000000b' + '0176' + '64' + '43bb3a5a4f000000', 'hex'));
    assert.equal(decodeTable(encodeTable(first)), first);
  },
);

infer(
  'an invalid Date, Decimal, double or out-of-range bigint is an ArgumentError, not a RangeError or silent corruption (regression)',
  () => {
    for (const v of [
      2n ** 63n,
      -(2n ** 63n) - 1n,
      2n ** 70n,
      new Date(NaN),
      new Date(-1000),
      new Date(-1),
      new Decimal(300, 1),
      new Decimal(-1, 1),
      new Decimal(2, 1.5),
      new Decimal(2, 2 ** 32),
      new Decimal(2, -1),
      NaN,
      Infinity,
      -Infinity,
    ]) {
      throwsTyped(() => encodeTable({ v }), ArgumentError, 'ARGUMENT_INVALID', String(v));
      throwsTyped(() => encodeTable({ a: [v] }), ArgumentError, 'ARGUMENT_INVALID', `[${String(v)}]`);
    }
  },
);

infer('undefined is left out of a table and is void in an array', () => {
  assert.is(hexOf({ a: undefined, k: 1 }), tableOfK('49 00000001'));
  equalExact(decodeTable(encodeTable({ a: [undefined, 1] })), { a: [null, 1] }, 'array');
  assert.is(tableSize(undefined), 4);
});

infer('functions and symbols cannot be encoded; symbol keys and inherited keys are ignored', () => {
  for (const v of [() => 1, function named() {}, Symbol('s'), class {}]) {
    throwsTyped(() => encodeTable({ k: v as unknown as FieldValue }), ArgumentError, 'ARGUMENT_INVALID', typeof v);
    throwsTyped(
      () => encodeTable({ k: [v as unknown as FieldValue] }),
      ArgumentError,
      'ARGUMENT_INVALID',
      `[${typeof v}]`,
    );
  }
  assert.is(hexOf({ [Symbol('s')]: 1 } as unknown as FieldTable), '00000000');
  const child = Object.create({ inherited: 1 }) as FieldTable;
  child['own'] = true;
  equalExact(decodeTable(encodeTable(child)), { own: true }, 'inherited');
  const bare = Object.create(null) as FieldTable;
  bare['k'] = 'v';
  equalExact(decodeTable(encodeTable(bare)), { k: 'v' }, 'null prototype');
});

infer('the top level must be an object', () => {
  for (const v of [null, [], 'x', 5, true, () => 1]) {
    throwsTyped(() => tableSize(v as unknown as FieldTable), ArgumentError, 'ARGUMENT_INVALID', String(v));
    throwsTyped(() => encodeTable(v as unknown as FieldTable), ArgumentError, 'ARGUMENT_INVALID', String(v));
  }
});

// ---- keys ----------------------------------------------------------------------------------------------------------

const keys = suite('table: keys');

keys('UTF-8 keys up to 255 bytes round trip; 256 bytes are refused', () => {
  const ok = [
    '',
    'a',
    'ключ',
    '鍵',
    'emoji 🐇',
    'k'.repeat(255),
    '€'.repeat(85),
    'x-dead-letter-exchange',
    'constructor',
    'hasOwnProperty',
  ];
  const t: FieldTable = {};
  ok.forEach((k, i) => {
    t[k] = i;
  });
  const back = decodeTable(encodeTable(t));
  equalExact(back, t, 'keys');
  assert.equal(Object.keys(back), Object.keys(t), 'order kept');
  for (const k of ['k'.repeat(256), '€'.repeat(86), '🐇'.repeat(64)]) {
    throwsTyped(() => encodeTable({ [k]: 1 }), ArgumentError, 'ARGUMENT_INVALID', `${Buffer.byteLength(k)}-byte key`);
  }
});

keys('a __proto__ key is decoded as an own property and pollutes no prototype', () => {
  // { "__proto__": { "polluted": true }, "x": [ { "__proto__": { "polluted": true } } ] }
  const entry = '09 5f5f70726f746f5f5f' + '46 0000000b' + '08 706f6c6c75746564' + '74 01'; // key "__proto__", 'F' { polluted: true }
  const bytes = Buffer.from(tableOfRaw(`${entry}01 7841 0000001f46 0000001a${entry}`), 'hex'); // entry: 26 bytes
  const t = decodeTable(bytes);
  assert.is(Object.getPrototypeOf(t), Object.prototype, 'the table keeps its prototype');
  assert.ok(Object.hasOwn(t, '__proto__'), 'own key');
  assert.equal(Object.keys(t), ['__proto__', 'x']);
  assert.equal(Object.getOwnPropertyDescriptor(t, '__proto__')?.value, { polluted: true });
  const nested = (t['x'] as FieldTable[])[0]!;
  assert.is(Object.getPrototypeOf(nested), Object.prototype);
  assert.ok(Object.hasOwn(nested, '__proto__'));
  assert.is(({} as Record<string, unknown>)['polluted'], undefined, 'Object.prototype untouched');
  assert.is((t as Record<string, unknown>)['polluted'], undefined, 'not inherited by the table');
  // And it encodes back to the same bytes.
  assert.is(encodeTable(t).toString('hex'), bytes.toString('hex'));
});

keys('an own __proto__ key (as JSON.parse makes) is encoded like any other key', () => {
  const t = JSON.parse('{"__proto__": {"x": 1}, "y": 2}') as FieldTable;
  const back = decodeTable(encodeTable(t));
  assert.equal(Object.keys(back), ['__proto__', 'y']);
  assert.equal(Object.getOwnPropertyDescriptor(back, '__proto__')?.value, { x: 1 });
});

// ---- nesting -------------------------------------------------------------------------------------------------------

const nesting = suite('table: nesting, cycles and depth');

/** A table with `n` tables nested below it ({ a: { a: ... {} } }), or `n` arrays ({ a: [[...[]]] }). */
function chain(n: number, kind: 'F' | 'A'): FieldTable {
  let v: FieldValue = kind === 'F' ? {} : [];
  for (let i = 1; i < n; i++) v = kind === 'F' ? { a: v } : [v];
  return { a: v };
}

nesting('nested tables and arrays round trip', () => {
  const t: FieldTable = {
    a: [[[]], [{ b: [{ c: [null, field('u', 5)] }] }]],
    t: { t: { t: { t: {} } } },
    mixed: [1, 'two', [3, { four: 4n }], { five: [new Date(5000)] }],
  };
  equalExact(
    decodeTable(encodeTable(t)),
    {
      a: [[[]], [{ b: [{ c: [null, 5] }] }]],
      t: { t: { t: { t: {} } } },
      mixed: [1, 'two', [3, { four: 4 }], { five: [new Date(5000)] }],
    },
    'nested',
  );
});

nesting(`exactly ${MAX_TABLE_DEPTH} levels below the top encode and decode; one more is refused both ways`, () => {
  for (const kind of ['F', 'A'] as const) {
    const raw = kind === 'F' ? deepTableBytes : deepArrayBytes;
    const ok = encodeTable(chain(MAX_TABLE_DEPTH, kind));
    assert.is(
      ok.toString('hex'),
      raw(MAX_TABLE_DEPTH).toString('hex'),
      `${kind}: the raw builder makes the encoder's bytes`,
    );
    equalExact(decodeTable(ok), chain(MAX_TABLE_DEPTH, kind), `${kind}: decodes`);
    throwsTyped(
      () => encodeTable(chain(MAX_TABLE_DEPTH + 1, kind)),
      ArgumentError,
      'ARGUMENT_INVALID',
      `${kind}: encode`,
    );
    // One level deeper, as bytes (the encoder refuses to make them).
    throwsTyped(() => decodeTable(raw(MAX_TABLE_DEPTH + 1)), FrameError, 'SYNTAX_ERROR', `${kind}: decode`);
  }
});

nesting('cycles are refused by the depth limit, not a stack overflow', () => {
  const t: FieldTable = {};
  t['self'] = t;
  throwsTyped(() => encodeTable(t), ArgumentError, 'ARGUMENT_INVALID', 'table cycle');
  const a: FieldValue[] = [];
  a.push(a);
  throwsTyped(() => encodeTable({ a }), ArgumentError, 'ARGUMENT_INVALID', 'array cycle');
  const x: FieldTable = { list: [] };
  (x['list'] as FieldValue[]).push({ back: x });
  throwsTyped(() => encodeTable(x), ArgumentError, 'ARGUMENT_INVALID', 'mixed cycle');
});

/** Tables nested `n` deep as raw bytes: { a: { a: ... {} } }, 7 bytes per level. */
function deepTableBytes(n: number): Buffer {
  const total = 7 * n + 4;
  const buf = Buffer.alloc(total);
  for (let i = 0; i < n; i++) {
    buf.writeUInt32BE(total - 7 * i - 4, 7 * i);
    buf.set([1, 0x61, 0x46], 7 * i + 4);
  }
  return buf;
}

/** { a: [[[ ... ]]] } with `n` arrays, as raw bytes. */
function deepArrayBytes(n: number): Buffer {
  const total = 4 + 3 + 5 * n - 1;
  const buf = Buffer.alloc(total);
  buf.writeUInt32BE(total - 4, 0);
  buf.set([1, 0x61, 0x41], 4);
  for (let i = 0; i < n; i++) {
    const at = 7 + 5 * i;
    buf.writeUInt32BE(total - at - 4, at);
    if (i < n - 1) buf[at + 4] = 0x41;
  }
  return buf;
}

nesting('10,000 levels of raw nesting are a FrameError (SYNTAX_ERROR), not a stack overflow', () => {
  const t = deepTableBytes(10_000);
  const a = deepArrayBytes(10_000);
  // Sanity: the builders make valid bytes at a legal depth.
  assert.ok(decodeTable(deepTableBytes(MAX_TABLE_DEPTH)) !== null);
  assert.ok(decodeTable(deepArrayBytes(MAX_TABLE_DEPTH)) !== null);
  throwsTyped(() => decodeTable(t), FrameError, 'SYNTAX_ERROR', 'tables');
  throwsTyped(() => decodeTable(a), FrameError, 'SYNTAX_ERROR', 'arrays');
});

// ---- hostile bytes -------------------------------------------------------------------------------------------------

const hostile = suite('table: hostile bytes');

hostile('every truncation of a valid table is a FrameError', () => {
  const bytes = encodeTable({
    s: 'str',
    n: 1,
    l: 2 ** 40,
    d: 0.5,
    x: Buffer.from([1, 2]),
    t: true,
    a: [1, [2]],
    f: { g: null },
    T: new Date(0),
    D: new Decimal(1, 1),
    b: field('b', 1),
    B: field('B', 1),
    s16: field('s', 1),
    u: field('u', 1),
    i: field('i', 1),
    fl: field('f', 1),
  });
  for (let n = 0; n < bytes.length; n++) {
    throwsTyped(() => decodeTable(bytes.subarray(0, n)), FrameError, undefined, `${n} of ${bytes.length}`);
  }
  // A table cut short but with its length prefix corrected is cut inside a value: still a FrameError.
  for (let n = 5; n < bytes.length; n++) {
    const cut = Buffer.from(bytes.subarray(0, n));
    cut.writeUInt32BE(n - 4, 0);
    try {
      decodeTable(cut);
    } catch (e) {
      assert.instance(e, FrameError, `cut at ${n}`);
    }
  }
});

hostile('every unknown tag octet is a FrameError (SYNTAX_ERROR)', () => {
  const known = new Set('tbBsuIilfdDSxATFV');
  for (let tag = 0; tag < 256; tag++) {
    if (known.has(String.fromCharCode(tag))) continue;
    const bytes = Buffer.from([0, 0, 0, 11, 1, 0x6b, tag, 0, 0, 0, 0, 0, 0, 0, 0]);
    throwsTyped(() => decodeTable(bytes), FrameError, 'SYNTAX_ERROR', `tag 0x${tag.toString(16)}`);
  }
});

hostile('declared lengths beyond the table are refused without allocating', () => {
  const cases: [string, Buffer][] = [
    ['table 0xffffffff', Buffer.from('ffffffff', 'hex')],
    ['table 0x7fffffff', Buffer.from('7fffffff0161', 'hex')],
    ['longstr 0xffffffff', Buffer.from('00000007' + '0161' + '53ffffffff', 'hex')],
    ['bytes 0xfffffff0', Buffer.from('00000007' + '0161' + '78fffffff0', 'hex')],
    ['array 0xffffffff', Buffer.from('00000007' + '0161' + '41ffffffff', 'hex')],
    ['nested 0x80000000', Buffer.from('00000007' + '0161' + '4680000000', 'hex')],
    ['key 200', Buffer.from('00000003' + 'c86162', 'hex')],
  ];
  const before = process.memoryUsage().arrayBuffers;
  for (const [what, bytes] of cases) throwsTyped(() => decodeTable(bytes), FrameError, 'FRAME_ERROR', what);
  assert.ok(process.memoryUsage().arrayBuffers - before < 1 << 20, 'no large allocation');
});

hostile('a value cannot borrow bytes from after its table (nested lengths are confined)', () => {
  // The outer table (9 bytes) holds { a: <table> } whose nested table claims 4 bytes where the outer one has 2 left;
  // the two bytes after the outer table would complete it ({ b: void }) but must not be used.
  const bytes = Buffer.from('00000009' + '0161' + '46' + '00000004' + '0162' + '5600', 'hex');
  throwsTyped(() => readTable(new Reader(bytes)), FrameError, 'FRAME_ERROR', 'nested table');
  const arr = Buffer.from('00000009' + '0161' + '41' + '00000004' + '4900' + '000001', 'hex');
  throwsTyped(() => readTable(new Reader(arr)), FrameError, 'FRAME_ERROR', 'nested array');
  const str = Buffer.from('00000009' + '0161' + '53' + '00000004' + '6162' + '6364', 'hex');
  throwsTyped(() => readTable(new Reader(str)), FrameError, 'FRAME_ERROR', 'longstr');
});

hostile(
  'a timestamp beyond what a Date holds decodes (to an invalid Date) instead of failing the frame; int64 beyond 2^53 is a bigint',
  () => {
    for (const hex of ['ffffffffffffffff', '0020000000000000', '000007dba8218001']) {
      const t = decodeTable(Buffer.from(`0000000b016154${hex}`, 'hex'))['a'];
      assert.instance(t, Date, hex);
      assert.ok(Number.isNaN((t as Date).getTime()), hex);
    }
    equalExact(
      decodeTable(Buffer.from('0000000b' + '0161' + '54' + '000007dba8218000', 'hex')),
      { a: new Date(8.64e15) },
      'the last valid Date',
    );
    equalExact(
      decodeTable(Buffer.from('0000000b' + '0161' + '6c7fffffffffffffff', 'hex')),
      { a: 2n ** 63n - 1n },
      'int64',
    );
  },
);

hostile('NaN and the infinities a peer sends are decoded, though we never send them', () => {
  const t = decodeTable(Buffer.from('00000012' + '0164' + '647ff8000000000000' + '0166' + '66ff800000', 'hex'));
  assert.ok(Number.isNaN(t['d']));
  assert.is(t['f'], -Infinity);
});

hostile('readTable leaves the cursor after the table and decodeTable refuses trailing bytes', () => {
  const t = encodeTable({ a: 1 });
  const r = new Reader(Buffer.concat([t, Buffer.from([0xee])]));
  equalExact(readTable(r), { a: 1 }, 'value');
  assert.is(r.pos, t.length);
  throwsTyped(() => decodeTable(Buffer.concat([t, Buffer.from([0])])), FrameError, 'SYNTAX_ERROR', 'trailing');
});

// ---- round trips and the size/write contract -----------------------------------------------------------------------

const trips = suite('table: random round trips');

trips('300 random tables: tableSize = bytes written, decoded = expected', () => {
  const rng = new Random(0x7ab1e);
  for (let i = 0; i < 300; i++) {
    const { table, expected } = randomTable(rng, 3);
    const n = tableSize(table);
    const buf = Buffer.alloc(n + 10, 0xee);
    assert.is(writeTable(buf, 5, table), 5 + n, `#${i}: writeTable end`);
    assert.is(buf[4], 0xee, `#${i}: before untouched`);
    assert.is(buf[5 + n], 0xee, `#${i}: after untouched`);
    const r = new Reader(buf, 5, 5 + n);
    equalExact(readTable(r), expected, `#${i}`);
    assert.is(r.pos, 5 + n);
  }
});

trips('every scalar tag, 100 random values each', () => {
  const rng = new Random(0x5ca1a);
  for (const tag of SCALAR_TAGS) {
    for (let i = 0; i < 100; i++) {
      const v = randomTagged(rng, tag);
      equalExact(decodeTable(encodeTable({ v: field(tag, v) })), { v: taggedBack(tag, v) }, `${tag} ${String(v)}`);
    }
  }
});

// ---- amqplib -------------------------------------------------------------------------------------------------------

const oracle = suite('table: against amqplib 2.3.1 (lib/codec.js)');

const scratch = Buffer.alloc(1 << 20);
function amqplibEncode(v: unknown): string {
  return scratch.subarray(0, amqplibCodec.encodeTable(scratch, v, 0)).toString('hex');
}

oracle('every tag, explicitly typed on both sides: byte-identical on 250 random tables', () => {
  const rng = new Random(0xa11);
  let compared = 0;
  for (let i = 0; i < 250; i++) {
    const { table } = randomTable(rng, 2);
    let theirs: unknown;
    try {
      theirs = toAmqplib(table);
    } catch (e) {
      if (e instanceof Unexpressible) continue;
      throw e;
    }
    assert.is(hexOf(table), amqplibEncode(theirs), `#${i}`);
    compared++;
  }
  assert.ok(compared > 200, `compared ${compared}`);
});

oracle('the inferred types both libraries agree on encode identically', () => {
  const t: FieldTable = {
    yes: true,
    no: false,
    s: 'string',
    empty: '',
    u: 'ünï©ødé 🐇',
    bytes: Buffer.from([0, 255]),
    nil: null,
    frac: 1.25,
    neg: -1e-10,
    list: ['a', true, null, [0.5, { in: 'side' }]],
    table: { nested: { deeper: 'x' } },
    emptyList: [],
    emptyTable: {},
  };
  assert.is(hexOf(t), amqplibEncode(t));
});

oracle('our decoder and amqplib decodeFields agree on 200 random tables', () => {
  const rng = new Random(0xdec0de);
  for (let i = 0; i < 200; i++) {
    const bytes = encodeTable(randomTable(rng, 3).table);
    const theirs = amqplibCodec.decodeFields(bytes.subarray(4));
    assert.equal(asAmqplibDecoded(decodeTable(bytes)), theirs, `#${i}`);
  }
});

oracle('Field and the {"!": type} notation name the same 17 types', () => {
  assert.instance(field('u', 1), Field);
  const t = Object.fromEntries(
    TAGGED.filter(
      ([tag, v]) =>
        !(tag === 'S' && typeof v !== 'string') && !(tag === 'D' && (v as Decimal).value < 0) && v !== undefined,
    ).map(([tag, v], i) => [`${tag}${i}`, field(tag, v)]),
  );
  assert.is(hexOf(t), amqplibEncode(toAmqplib(t)));
});

tags.run();
infer.run();
keys.run();
nesting.run();
hostile.run();
trips.run();
oracle.run();
