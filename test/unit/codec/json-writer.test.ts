/** JsonWriter: byte for byte what Buffer.from(JSON.stringify(v)) gives, written in place, bounded by its region. */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { EncodeError } from '../../../src/codec/errors.js';
import { JsonWriter } from '../../../src/codec/json-writer.js';
import { EbTime } from '../../../src/codec/time.js';
import { Random } from '../../helpers/random.js';

const json = suite('JsonWriter');

function same(v: unknown, what = JSON.stringify(v)): void {
  const w = new JsonWriter().value(v);
  assert.equal(w.bytes(), Buffer.from(JSON.stringify(v)), what);
}

json('scalars, containers and nesting match JSON.stringify', () => {
  for (const v of [
    0,
    -0,
    1,
    -1,
    7.5,
    1e21,
    1e-7,
    123456789012345,
    1234567890123456,
    Number.MAX_SAFE_INTEGER,
    -(2 ** 53),
    5e-324,
    Number.MAX_VALUE,
    true,
    false,
    null,
    '',
    'x',
    [],
    {},
    [[]],
    { a: {} },
    [1, [2, [3, { b: [null, true] }]]],
    { msg: 'report', values: { 'dev1.power': [1.5, null, 2] } },
  ]) {
    same(v);
  }
});

json('numbers: 200,000 seeded decimals, integers and doubles print exactly as JSON.stringify does', () => {
  const r = new Random(161803);
  for (let i = 0; i < 200_000; i++) {
    const k = r.int(6);
    const sign = r.int(2) === 0 ? -1 : 1;
    const n =
      i % 3 === 2
        ? sign * r.next() * 10 ** (r.int(40) - 20)
        : (sign * Math.floor(r.next() * 10 ** r.int(13))) / 10 ** k;
    const got = new JsonWriter().number(n).bytes().toString('latin1');
    if (got !== JSON.stringify(n)) assert.unreachable(`${n}: wrote ${got}, JSON.stringify gives ${JSON.stringify(n)}`);
  }
  for (const n of [0.001, 0.0015, 999999999.999, 1e9, 0.1, 0.2, 0.3, 1.005, 2.675, -0.5, 100.125, 1e-3, 9.995, -0]) {
    assert.is(new JsonWriter().number(n).bytes().toString(), JSON.stringify(n), String(n));
  }
});

json('strings: every escape, every UTF-8 length, lone and paired surrogates', () => {
  for (let c = 0; c < 0x800; c++) same(String.fromCharCode(c), `U+${c.toString(16)}`);
  for (const s of [
    '"',
    '\\',
    '\u007f',
    'é',
    '€',
    '😀',
    '\ud800',
    '\udfff',
    'a\ud800b',
    '\udc00\ud800',
    '\ud83d\ude00\ud83d',
    'line\nbreak\ttab\r\b\f',
    '\u2028\u2029',
    'x'.repeat(10_000),
  ]) {
    same(s);
    same({ [s]: s });
  }
});

json('10,000 random values (seeded) match JSON.stringify', () => {
  const r = new Random(31415);
  const str = (): string =>
    Array.from({ length: r.int(12) }, () =>
      String.fromCharCode(r.int(4) === 0 ? r.int(0x10000) : 0x20 + r.int(95)),
    ).join('');
  const gen = (depth: number): unknown => {
    switch (r.int(depth > 3 ? 4 : 6)) {
      case 0:
        return r.int(2) === 0 ? r.int(1_000_000) : (r.next() - 0.5) * 10 ** r.int(30);
      case 1:
        return str();
      case 2:
        return [true, false, null][r.int(3)];
      case 3:
        return r.int(1000) - 500;
      case 4:
        return Array.from({ length: r.int(5) }, () => gen(depth + 1));
      default:
        return Object.fromEntries(Array.from({ length: r.int(5) }, () => [str(), gen(depth + 1)]));
    }
  };
  for (let i = 0; i < 10_000; i++) same(gen(0));
});

json('writes in place into a caller buffer region and leaves the rest untouched', () => {
  const buf = Buffer.alloc(64, 0xaa);
  const w = new JsonWriter(buf, 7, 60)
    .beginObject()
    .key('msg')
    .string('response')
    .key('response_code')
    .number(200)
    .endObject();
  const expected = '{"msg":"response","response_code":200}';
  assert.is(w.length, expected.length);
  assert.is(buf.subarray(7, 7 + w.length).toString(), expected);
  assert.ok(buf.subarray(0, 7).every((b) => b === 0xaa));
  assert.ok(buf.subarray(7 + w.length).every((b) => b === 0xaa));
  assert.is(w.bytes().buffer, buf.buffer, 'a view of the caller buffer, no copy');
});

json('a region too small fails with a capacity EncodeError, never writing past the limit', () => {
  const buf = Buffer.alloc(32, 0xaa);
  const w = new JsonWriter(buf, 4, 20);
  assert.throws(
    () => w.value({ msg: 'a fairly long message type name' }),
    (e: EncodeError) => e instanceof EncodeError && e.kind === 'capacity',
  );
  assert.ok(buf.subarray(20).every((b) => b === 0xaa));
});

json('a region of exactly the right size is enough; one byte less is a capacity error', () => {
  const r = new Random(2718);
  for (let i = 0; i < 2000; i++) {
    const str = Array.from({ length: r.int(20) }, () =>
      String.fromCharCode(r.int(3) === 0 ? r.int(0x10000) : r.int(0x80)),
    ).join('');
    const exact = Buffer.byteLength(JSON.stringify(str));
    const buf = Buffer.alloc(exact + 8);
    assert.is(new JsonWriter(buf, 4, 4 + exact).string(str).length, exact);
    assert.throws(
      () => new JsonWriter(buf, 4, 3 + exact).string(str),
      (e: EncodeError) => e.kind === 'capacity',
    );
  }
});

json('pre-encoded keys give the same bytes as key()', () => {
  const keys = ['msg', 'from', 'modification_count', 'ünïcode', 'quo"te'].map(
    (k) => [k, JsonWriter.encodeKey(k)] as const,
  );
  const a = new JsonWriter().beginObject();
  const b = new JsonWriter().beginObject();
  for (const [k, enc] of keys) {
    a.key(k).number(k.length);
    b.rawKey(enc).number(k.length);
  }
  assert.equal(b.endObject().bytes(), a.endObject().bytes());
  assert.equal(a.bytes(), Buffer.from(JSON.stringify(Object.fromEntries(keys.map(([k]) => [k, k.length])))));
});

json('NaN, Infinity, functions and deep nesting are refused with an invalid EncodeError', () => {
  for (const v of [NaN, Infinity, -Infinity, [1, NaN], { a: { b: Infinity } }]) {
    assert.throws(
      () => new JsonWriter().value(v),
      (e: EncodeError) => e instanceof EncodeError && e.kind === 'invalid',
      String(v),
    );
  }
  assert.throws(
    () => new JsonWriter().value(() => 1),
    (e: EncodeError) => e.kind === 'invalid',
  );
  let deep: unknown = 1;
  for (let i = 0; i < 40; i++) deep = [deep];
  assert.throws(
    () => new JsonWriter().value(deep),
    (e: EncodeError) => e.kind === 'invalid',
  );
});

json('timestamps are written in the canonical UTC form', () => {
  const w = new JsonWriter().beginObject().key('from').time(EbTime.parse('2015-06-01T10:00:00+02:00')).endObject();
  assert.is(w.bytes().toString(), '{"from":"2015-06-01T08:00:00.000Z"}');
});

json.run();
