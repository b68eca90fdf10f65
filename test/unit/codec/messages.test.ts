/** The first message tables: D3.1.3's examples, round trips, strict emit, and bad input answered with code and path. */

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { duplicateScans } from '../../../src/codec/duplicate-keys.js';
import {
  DecodeError,
  decode,
  EbTime,
  EncodeError,
  encode,
  encodeInto,
  type Message,
} from '../../../src/codec/index.js';
import { repoRoot } from '../../helpers/oracle.js';

interface Example {
  line: number;
  msg: string;
  errata: string[];
  json: string;
}
const examples = JSON.parse(
  readFileSync(path.join(repoRoot(), 'test/vectors/codec/d3.1.3-examples.json'), 'utf8'),
) as Example[];
/** The D3.1.3 example of one message type, as JSON text. */
function example(msg: string): string {
  const e = examples.find((x) => x.msg === msg);
  if (e === undefined) throw new Error(`no D3.1.3 example for ${msg}`);
  return e.json;
}

function decodeError(body: string | Buffer): DecodeError {
  try {
    decode(body);
  } catch (err) {
    if (err instanceof DecodeError) return err;
    throw new Error(`not a DecodeError: ${String(err)}`);
  }
  throw new Error(`decoded: ${String(body).slice(0, 80)}`);
}

const golden = suite('D3.1.3 examples');

golden('D3.1.3 has an example of 33 types, and the codec knows every one of them', () => {
  assert.is(examples.length, 33);
  assert.is(new Set(examples.map((e) => e.msg)).size, 33);
});

golden('every example decodes; the documented errata are accepted with a diagnostic; re-encoding is stable', () => {
  for (const ex of examples) {
    const { message, diagnostics } = decode(Buffer.from(ex.json));
    for (const e of ex.errata)
      assert.ok(
        diagnostics.some((d) => d.includes(e)),
        `line ${ex.line}: diagnostic for ${e}: ${diagnostics.join('; ')}`,
      );
    if (ex.errata.length === 0) assert.equal(diagnostics, [], `line ${ex.line}`);
    const once = encode(message);
    const again = decode(once);
    assert.equal(again.diagnostics, [], `line ${ex.line}: emitted in the correct form`);
    assert.equal(encode(again.message), once, `line ${ex.line}: stable`);
    // Same content as the example, up to the errata and the canonical time form.
    const original = JSON.parse(ex.json) as Record<string, unknown>;
    const emitted = JSON.parse(once.toString()) as Record<string, unknown>;
    for (const k of Object.keys(original)) {
      if (k === 'signals' || k === 'quantity') continue;
      assert.equal(emitted[k], original[k], `line ${ex.line}: ${k}`);
    }
  }
});

golden('the first version (D3.2.1): get_load_report answered with load_report, a plain values array', () => {
  const req = decode(
    '{"msg":"get_load_report","from":"2013-07-21T10:00:00Z","to":"2013-07-21T10:04:00Z","resolution":60,"device":"WaterHeater01"}',
  ).message as Message<'get_load_report'>;
  const answer: Message<'load_report'> = {
    msg: 'load_report',
    from: req.from,
    to: req.to,
    resolution: req.resolution,
    device: req.device ?? null,
    values: [0.12, 0.17, 0.33, 0],
  };
  assert.is(
    encode(answer).toString(),
    '{"msg":"load_report","from":"2013-07-21T10:00:00.000Z","to":"2013-07-21T10:04:00.000Z","resolution":60,"device":"WaterHeater01","values":[0.12,0.17,0.33,0]}',
  );
  assert.throws(
    () => encode({ ...answer, values: [1, 2] }),
    (e: EncodeError) => e.path === 'load_report.values',
  );
});

golden('the errata are corrected: one signal per element, a numeric quantity', () => {
  const g = decode(example('get_report')).message as Message<'get_report'>;
  assert.equal(g.signals, ['total.ua', 'total.ub', 'total.uc', 'WaterHeater01.p']);
  const m = decode(example('modify_activation')).message as Message<'modify_activation'>;
  assert.is(m.quantity, 3.6);
  assert.match(encode(m).toString(), '"quantity":3.6');
});

golden('wire sizes stay within the sizes D3.1.3 §7 measured', () => {
  const report: Message<'report'> = {
    msg: 'report',
    from: EbTime.parse('2015-06-01T10:00:00Z'),
    to: EbTime.parse('2015-06-01T10:03:00Z'),
    resolution: 60,
    values: {
      'total.p': [1.73, 1.68, 0.43],
      'HeatPump01.p': [1.33, 1.21, 0.02],
      'HeatPump01.q': [0.13, 0.11, 0.01],
      'Boiler01.p': [2.1, 2.2, null],
      'Boiler01.t': [55.5, 55.25, 55],
      'total.temperature_outside': [3.2, 3.2, 3.3],
    },
    heh_id: null,
  };
  assert.ok(encode(report).length <= 343, `report 6x3: ${encode(report).length} B`);
  // D3.1.3 §7 measured these for the pilot's messages; ours are the same messages re-encoded.
  const measured: [string, number][] = [
    ['capabilities', 316],
    ['device_capabilities', 573],
    ['get_periodic_report', 254],
    ['activate', 239],
    ['contingency_activate', 164],
    ['accept_activation', 96],
    ['reject_activation', 96],
    ['modify_activation', 201],
  ];
  for (const [msg, max] of measured) {
    const size = encode(decode(example(msg)).message).length;
    assert.ok(size <= max, `${msg}: ${size} B, D3.1.3 measured ${max}`);
  }
});

golden.run();

const wire = suite('encode in place');

wire('encodeInto writes at an offset of a caller buffer; a region too small is a capacity error', () => {
  const { message } = decode(example('activate'));
  const buf = Buffer.alloc(400, 0xee);
  const end = encodeInto(message, buf, 7);
  assert.equal(buf.subarray(7, end), encode(message));
  assert.is(buf[6], 0xee);
  assert.is(buf[end], 0xee);
  assert.throws(
    () => encodeInto(message, buf, 7, 60),
    (e: EncodeError) => e instanceof EncodeError && e.kind === 'capacity',
  );
});

wire('ext_ fields survive decode and re-encode; unknown fields are ignored and listed', () => {
  const body =
    '{"msg":"accept_activation","id":"938f2b97-314c-49e8-9860-f441df2284a1","modification_count":1,' +
    '"ext_com_example_note":{"a":[1,"two",null]},"colour":"blue"}';
  const { message, diagnostics } = decode(body);
  assert.equal((message as Record<string, unknown>)['ext_com_example_note'], { a: [1, 'two', null] });
  assert.not.ok('colour' in message);
  assert.ok(diagnostics.some((d) => d === 'accept_activation.colour: unknown field ignored'));
  assert.match(encode(message).toString(), '"ext_com_example_note":{"a":[1,"two",null]}');
});

wire('strict emit: invalid messages are refused before a byte is written', () => {
  const base: Message<'activate'> = {
    msg: 'activate',
    id: '938f2b97-314c-49e8-9860-f441df2284a1',
    modification_count: 0,
    from: EbTime.parse('2015-06-01T10:00:00Z'),
    to: EbTime.parse('2015-06-01T10:15:00Z'),
    quantity: 1.5,
    device: null,
  };
  assert.is(decode(encode(base)).message.msg, 'activate');
  const bad: [string, Record<string, unknown>][] = [
    ['quantity NaN', { quantity: NaN }],
    ['quantity Infinity', { quantity: Infinity }],
    ['a Date is not a time with an offset', { from: new Date() }],
    ['from after to', { from: EbTime.parse('2015-06-01T11:00:00Z') }],
    ['negative modification_count', { modification_count: -1 }],
    ['upper-case UUID', { id: '938F2B97-314C-49E8-9860-F441DF2284A1' }],
    ['missing device (nullable, not optional)', { device: undefined }],
    ['a string quantity', { quantity: '1.5' }],
  ];
  for (const [what, change] of bad) {
    assert.throws(
      () => encode({ ...base, ...change } as Message),
      (e: EncodeError) => e instanceof EncodeError && e.kind === 'invalid',
      what,
    );
  }
  const report: Message<'report'> = {
    msg: 'report',
    from: base.from,
    to: EbTime.parse('2015-06-01T10:10:00Z'),
    resolution: 180,
    values: {},
  };
  assert.throws(
    () => encode(report),
    (e: EncodeError) => e.path === 'report.to',
    'a period that is not a multiple of the resolution',
  );
  assert.throws(
    () => encode({ msg: 'get_report', from: base.from, to: base.to, resolution: 60, signals: ['a.p, b.p'] }),
    (e: EncodeError) => e.kind === 'invalid',
  );
});

wire.run();

const bad = suite('bad input: DecodeError with the response code and the JSON path');

bad('each mutation of a valid activate gives its code and path', () => {
  const ok = JSON.parse(example('activate')) as Record<string, unknown>;
  const cases: [string, Record<string, unknown> | string, number, string][] = [
    ['required field dropped', { ...ok, id: undefined }, 400, 'activate.id'],
    ['wrong type', { ...ok, modification_count: 'zero' }, 400, 'activate.modification_count'],
    ['fraction for an integer', { ...ok, modification_count: 1.5 }, 454, 'activate.modification_count'],
    ['naive time', { ...ok, from: '2013-07-24T11:10:20' }, 454, 'activate.from'],
    ['malformed time', { ...ok, to: 'tomorrow' }, 454, 'activate.to'],
    ['from >= to', { ...ok, to: ok['from'] }, 454, 'activate.to'],
    ['not a UUID', { ...ok, id: 'x' }, 454, 'activate.id'],
    ['null for a required field', { ...ok, quantity: null }, 400, 'activate.quantity'],
    ['1e400', example('activate').replace('"quantity":3.4', '"quantity":1e400'), 454, 'activate.quantity'],
    ['unknown msg', { ...ok, msg: 'launch_rockets' }, 453, 'launch_rockets'],
    ['msg missing', { ...ok, msg: undefined }, 400, 'message.msg'],
    ['trailing garbage', `${example('activate')} x`, 400, 'message'],
    ['not an object', '[1,2,3]', 400, 'message'],
    ['empty body', '', 400, 'message'],
    ['NaN literal', example('activate').replace('"quantity":3.4', '"quantity":NaN'), 400, 'message'],
    ['Infinity literal', example('activate').replace('"quantity":3.4', '"quantity":Infinity'), 400, 'message'],
    ['numeric string NaN', { ...ok, quantity: 'NaN' }, 400, 'activate.quantity'],
    ['negative modification count', { ...ok, modification_count: -1 }, 454, 'activate.modification_count'],
    [
      'duplicate key, last one valid',
      example('activate').replace('"quantity":3.4', '"quantity":"lots","quantity":3.4'),
      400,
      'activate.quantity',
    ],
    [
      'duplicate key, same value',
      example('activate').replace('"quantity":3.4', '"quantity":3.4 , "quantity" :3.4'),
      400,
      'activate.quantity',
    ],
    ['duplicate msg', example('activate').replace('{', '{"msg":"get_report",'), 400, 'activate.msg'],
  ];
  for (const [what, body, code, path] of cases) {
    const e = decodeError(typeof body === 'string' ? body : JSON.stringify(body));
    assert.is(e.code, code, what);
    assert.is(e.path, path, what);
  }
});

bad('encoding what is not an object, or an object without a known msg: an EncodeError, not a TypeError', () => {
  for (const [v, reason] of [
    [null, 'expected an object, got null'],
    ['get_all_prices', 'expected an object, got string'],
    [{ msg: 'launch_rockets' }, 'unknown message type "launch_rockets"'],
  ] as const) {
    assert.throws(
      () => encode(v as unknown as Message),
      (e: unknown) => e instanceof EncodeError && e.kind === 'invalid' && e.message.includes(reason),
      String(v),
    );
  }
});

bad('an integer too large to be exact is named as such, not as "not an integer"', () => {
  const ok = JSON.parse(example('activate')) as Record<string, unknown>;
  const big = decodeError(
    JSON.stringify(ok).replace(/"modification_count":\d+/, '"modification_count":9007199254740993'),
  );
  assert.equal([big.code, big.path], [454, 'activate.modification_count']);
  assert.match(big.message, '9007199254740992 is past 2^53 - 1, the largest exact integer');
  assert.match(decodeError(JSON.stringify({ ...ok, modification_count: 1.5 })).message, '1.5 is not an integer');
});

bad(
  'duplicate keys anywhere are refused with their path; colons and quotes inside strings do not confuse the check',
  () => {
    const report = JSON.parse(example('report')) as { values: Record<string, unknown[]> };
    const [signal, samples] = Object.entries(report.values)[0] as [string, unknown[]];
    const text = JSON.stringify(report);
    const dupSignal = text.replace(`"${signal}":`, `"${signal}":${JSON.stringify(samples)},"${signal}":`);
    assert.is(decodeError(dupSignal).path, `report.values.${signal}`);
    const gr = {
      msg: 'get_report',
      from: '2015-06-01T10:00:00+02:00',
      to: '2015-06-01T11:00:00+02:00',
      resolution: 60,
      signals: ['a.p'],
    };
    const withExt = (ext: string): string => `${JSON.stringify(gr).slice(0, -1)},"ext_com_example":${ext}}`;
    assert.is(decodeError(withExt('{"a":{"k:1":1,"k:1":2}}')).path, 'get_report.ext_com_example.a.k:1');
    assert.is(decodeError(withExt('[{"q":"\\":","q":1}]')).path, 'get_report.ext_com_example[0].q');
    assert.is(decodeError(`${JSON.stringify(gr).slice(0, -1)},"junk":1,"junk":2}`).path, 'get_report.junk');
    // Colons in times with offsets, in keys and in free text, escaped quotes: no false alarm.
    const fine = `${JSON.stringify({ ...gr, 'x:y': 'a:b"c:' }).slice(0, -1)},"ext_com_example":{"u:v":["w::", {"\\"": ":"}]}}`;
    const scans = duplicateScans;
    const { message, diagnostics } = decode(fine);
    assert.is(duplicateScans, scans, 'the colon count matched without a rescan');
    assert.is(message.msg, 'get_report');
    assert.ok(diagnostics.some((d) => d.includes('x:y')));
    const resp = { msg: 'response', msg_id: null, response_code: 200, response_desc: 'a: b: c' };
    assert.is(decode(JSON.stringify(resp)).message.msg, 'response');
    assert.is(
      decodeError(JSON.stringify(resp).replace('"response_code":200', '"response_code":500,"response_code":200')).path,
      'response.response_code',
    );
  },
);

bad('periods: a negative or zero resolution, from >= to', () => {
  const gr = {
    msg: 'get_report',
    from: '2015-06-01T10:00:00+02:00',
    to: '2015-06-01T11:00:00+02:00',
    resolution: 60,
    signals: ['a.p'],
  };
  for (const resolution of [-60, 0]) {
    const e = decodeError(JSON.stringify({ ...gr, resolution }));
    assert.is(e.code, 454);
    assert.is(e.path, 'get_report.resolution');
  }
  assert.is(decodeError(JSON.stringify({ ...gr, to: '2015-06-01T08:00:00Z' })).path, 'get_report.to');
});

bad('report values: wrong length, non-numbers and NaN-like strings are refused', () => {
  const ok = JSON.parse(example('report')) as { values: Record<string, unknown[]> };
  const withValues = (values: Record<string, unknown>): string => JSON.stringify({ ...ok, values });
  assert.is(decodeError(withValues({ 'total.p': [1, 2] })).path, 'report.values.total.p');
  assert.is(decodeError(withValues({ 'total.p': [1, 2, 3, 4, 'x'] })).code, 400);
  assert.is(decodeError(withValues({ 'total.p': [1, 2, 3, 4, 'NaN'] })).code, 400);
  assert.is(decode(withValues({ 'total.p': [1, null, 3, 4, 5] })).message.msg, 'report');
});

bad('limits: oversized bodies, huge strings and arrays, deep ext nesting, invalid UTF-8', () => {
  assert.is(decodeError(Buffer.alloc(2 << 20, 0x20)).code, 400);
  const ok = JSON.parse(example('accept_activation')) as Record<string, unknown>;
  assert.is(
    decodeError(
      JSON.stringify({ msg: 'response', msg_id: null, response_code: 200, response_desc: 'x'.repeat(100_000) }),
    ).path,
    'response.response_desc',
  );
  const many = JSON.stringify({
    msg: 'get_report',
    from: '2015-06-01T10:00:00Z',
    to: '2015-06-01T11:00:00Z',
    resolution: 60,
    signals: Array.from({ length: 100_001 }, () => 'a.p'),
  });
  assert.is(decodeError(many).path, 'get_report.signals');
  // Built as text: JSON.stringify itself would overflow the stack on 10,000 levels. Over 4 KiB, the body is refused
  // before JSON.parse, at the first level past twice maxDepth; a small one by the schema walk, after it.
  const nested = (levels: number): string =>
    `${JSON.stringify(ok).slice(0, -1)},"ext_com_example_deep":${'['.repeat(levels)}1${']'.repeat(levels)}}`;
  const deep = decodeError(nested(10_000));
  assert.ok(deep.path.startsWith(`message.ext_com_example_deep${'[0]'.repeat(31)}`), deep.path);
  assert.match(deep.reason, /^nested deeper than 32 at byte \d+$/);
  assert.is(decodeError(nested(1_000)).path, 'accept_activation.ext_com_example_deep');
  const invalid = Buffer.concat([
    Buffer.from('{"msg":"accept_activation","id":"938f2b97-314c-49e8-9860-f441df2284a1","modification_count":0,"x":"'),
    Buffer.from([0xc3, 0x28]),
    Buffer.from('"}'),
  ]);
  assert.is(decodeError(invalid).code, 400);
});

bad('a fuzz loop of 10,000 mutated bodies: each decodes or fails with a DecodeError, nothing else', () => {
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  const bodies = examples.map((e) => Buffer.from(e.json));
  for (let i = 0; i < Number(process.env['FUZZ_ITERATIONS'] ?? 10_000); i++) {
    const src = bodies[rnd(bodies.length)] as Buffer;
    const b = Buffer.from(src);
    for (let k = 0, n = 1 + rnd(4); k < n; k++)
      b[rnd(b.length)] = rnd(4) === 0 ? rnd(256) : (b[rnd(b.length)] as number);
    const body = rnd(5) === 0 ? b.subarray(0, rnd(b.length)) : b;
    try {
      const { message } = decode(body);
      decode(encode(message)); // whatever decodes re-encodes and decodes again
    } catch (err) {
      if (!(err instanceof DecodeError)) throw new Error(`iteration ${i}: ${String(err)} for ${body.toString()}`);
    }
  }
});

bad.run();
