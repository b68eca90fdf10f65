/**
 * methods.ts and the generated spec.ts: the spec table checked against the spec JSON and against amqplib's own
 * generated tables, every method round-tripped (defaults, random values, every bit combination, 255-byte shortstrs),
 * argument validation, hostile payloads, and byte-identical encodings against amqplib's lib/defs.js.
 */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FrameError } from '../../../src/amqp/errors.js';
import * as frameConsts from '../../../src/amqp/frame.js';
import { decodeMethod, methodSize, methodSpec, writeMethod } from '../../../src/amqp/methods.js';
import * as spec from '../../../src/amqp/spec.js';
import {
  BASIC_PROPERTIES,
  METHOD_BY_ID,
  METHOD_BY_NAME,
  METHODS,
  type MethodName,
  type MethodSpec,
  REPLY_CODES,
} from '../../../src/amqp/spec.js';
import { ArgumentError } from '../../../src/amqp/wire.js';
import { equalExact, throwsTyped } from '../../helpers/codec-assert.js';
import {
  bitArgs,
  defaultBack,
  encodeMethod,
  frame,
  MAX_SAFE,
  randomArg,
  randomArgs,
  SHORTSTR_EDGES,
} from '../../helpers/codec-gen.js';
import {
  amqplibDefs,
  amqplibInfo,
  asAmqplibDecoded,
  repoRoot,
  toAmqplib,
  Unexpressible,
} from '../../helpers/oracle.js';
import { Random } from '../../helpers/random.js';

// ---- the generated table against its sources -----------------------------------------------------------------------

interface JsonArg {
  name: string;
  type?: string;
  domain?: string;
  'default-value'?: unknown;
}
interface JsonSpec {
  domains: [string, string][];
  constants: { name: string; value: number; class?: string }[];
  classes: {
    id: number;
    name: string;
    methods: { id: number; name: string; synchronous?: boolean; content?: boolean; arguments: JsonArg[] }[];
    properties?: { name: string; type: string }[];
  }[];
}

const json = JSON.parse(readFileSync(join(repoRoot(), 'spec', 'amqp-rabbitmq-0.9.1.json'), 'utf8')) as JsonSpec;
const camel = (s: string): string => s.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());

const table = suite('methods: spec.ts against the spec JSON and amqplib');

table('METHODS lists every method of the JSON in order, with ids, flags, argument names, types and defaults', () => {
  const domains = new Map(json.domains);
  const fromJson = json.classes.flatMap((k) =>
    k.methods.map((m) => ({
      name: `${k.name}.${m.name}`,
      classId: k.id,
      methodId: m.id,
      synchronous: m.synchronous === true,
      content: m.content === true,
      args: m.arguments.map((a) => ({
        name: camel(a.name),
        type: a.type ?? domains.get(a.domain ?? ''),
        default: a['default-value'],
      })),
    })),
  );
  assert.is(METHODS.length, fromJson.length);
  assert.ok(METHODS.length >= 66);
  fromJson.forEach((m, i) => {
    assert.equal({ ...METHODS[i], args: METHODS[i]!.args.map((a) => ({ ...a })) }, m, m.name);
  });
  // Only the content-carrying methods of basic are flagged, and they are the four the spec names.
  assert.equal(
    METHODS.filter((m) => m.content)
      .map((m) => m.name)
      .sort(),
    ['basic.deliver', 'basic.get-ok', 'basic.publish', 'basic.return'],
  );
});

table('METHOD_BY_ID and METHOD_BY_NAME index every method exactly once', () => {
  assert.is(METHOD_BY_ID.size, METHODS.length);
  assert.is(METHOD_BY_NAME.size, METHODS.length);
  for (const m of METHODS) {
    assert.is(METHOD_BY_ID.get((m.classId << 16) | m.methodId), m, m.name);
    assert.is(METHOD_BY_NAME.get(m.name), m, m.name);
    assert.is(methodSpec(m.name), m, m.name);
  }
});

table('BASIC_PROPERTIES, reply codes and frame constants match the JSON (and frame.ts exports the same values)', () => {
  const basic = json.classes.find((k) => k.name === 'basic')!;
  assert.equal(
    BASIC_PROPERTIES.map((p) => ({ ...p })),
    basic.properties!.map((p) => ({ name: camel(p.name), type: p.type })),
  );
  assert.is(BASIC_PROPERTIES.length, 14);
  const exported: Record<string, unknown> = { ...spec };
  const frameExports: Record<string, unknown> = { ...frameConsts };
  const fromJson = new Map(json.constants.map((c) => [c.name.replace(/-/g, '_'), c.value]));
  for (const c of json.constants) {
    const name = c.name.replace(/-/g, '_');
    assert.is(exported[name], c.value, name);
    if (c.class !== undefined) assert.equal(REPLY_CODES.get(c.value), [name, c.class === 'hard-error'], name);
  }
  // frame.ts re-exports these from spec.ts: checked against the JSON, so that a hand-written copy there could not
  // drift from the spec unnoticed.
  for (const k of [
    'FRAME_METHOD',
    'FRAME_HEADER',
    'FRAME_BODY',
    'FRAME_HEARTBEAT',
    'FRAME_END',
    'FRAME_MIN_SIZE',
  ] as const) {
    assert.ok(fromJson.has(k), `${k} in the JSON`);
    assert.is(frameExports[k], fromJson.get(k), k);
  }
});

table('a METHOD_<CLASS>_<METHOD> constant per method is (class-id << 16) | method-id, and there is no other', () => {
  const exported: Record<string, unknown> = { ...spec };
  const expected = new Map<string, number>();
  for (const k of json.classes)
    for (const m of k.methods)
      expected.set(`METHOD_${k.name}_${m.name}`.replace(/-/g, '_').toUpperCase(), k.id * 65536 + m.id);
  assert.is(expected.size, METHODS.length);
  for (const [name, id] of expected) {
    assert.is(exported[name], id, name);
    assert.is(METHOD_BY_ID.get(id)?.name.replace(/[.-]/g, '_').toUpperCase(), name.slice('METHOD_'.length), name);
  }
  const stray = Object.keys(exported).filter(
    (k) => k.startsWith('METHOD_') && k !== 'METHOD_BY_ID' && k !== 'METHOD_BY_NAME' && !expected.has(k),
  );
  assert.equal(stray, []);
  // What the hot paths write and compare: the first four bytes of the payload the generic codec encodes.
  for (const m of METHODS) {
    const name = `METHOD_${m.name.replace(/[.-]/g, '_').toUpperCase()}`;
    assert.is(encodeMethod(m.name, randomArgs(new Random(4), m).args).readUInt32BE(0), exported[name], name);
  }
});

table(
  'amqplib, generated from its own copy of the spec, has the same methods, argument names, types and defaults',
  () => {
    for (const m of METHODS) {
      const theirs = amqplibInfo(m.classId, m.methodId);
      assert.ok(theirs !== undefined, `${m.name} in amqplib`);
      assert.equal(
        m.args.map((a) => [a.name, a.type, a.default]),
        theirs!.args.map((a) => [a.name, a.type, a.default]),
        m.name,
      );
    }
  },
);

// ---- round trips ---------------------------------------------------------------------------------------------------

const trips = suite('methods: round trips of every method');

function roundTrip(
  name: string,
  args: Record<string, unknown>,
  expected: Record<string, unknown>,
  what: string,
): Buffer {
  const m = METHOD_BY_NAME.get(name)!;
  const payload = encodeMethod(name, args);
  const decoded = decodeMethod(payload);
  equalExact(
    { ...decoded, args: { ...decoded.args } },
    { name, classId: m.classId, methodId: m.methodId, args: expected },
    what,
  );
  return payload;
}

trips('defaults: every optional argument left out comes back as its spec default', () => {
  const rng = new Random(1);
  for (const m of METHODS) {
    const args: Record<string, unknown> = {};
    const expected: Record<string, unknown> = {};
    for (const a of m.args) {
      if (a.default !== undefined) {
        expected[a.name] = defaultBack(a);
        continue;
      }
      const s = randomArg(rng, a);
      args[a.name] = s.value;
      expected[a.name] = s.expected;
    }
    roundTrip(m.name, args, expected, `${m.name} defaults`);
    // An explicit undefined is the same as leaving it out.
    const explicit = Object.fromEntries(m.args.map((a) => [a.name, args[a.name]]));
    assert.is(
      encodeMethod(m.name, explicit).toString('hex'),
      encodeMethod(m.name, args).toString('hex'),
      `${m.name}: undefined`,
    );
  }
});

trips(
  'random values: 15 argument sets per method, methodSize = bytes written, writeMethod touches nothing else',
  () => {
    const rng = new Random(0x3e7);
    for (const m of METHODS) {
      for (let i = 0; i < 15; i++) {
        const { args, expected } = randomArgs(rng, m);
        const n = methodSize(m.name, args);
        const buf = Buffer.alloc(n + 9, 0xee);
        assert.is(writeMethod(buf, 4, m.name, args), 4 + n, `${m.name} #${i}: end`);
        assert.ok(
          buf.subarray(0, 4).every((b) => b === 0xee) && buf.subarray(4 + n).every((b) => b === 0xee),
          `${m.name} #${i}: outside untouched`,
        );
        const decoded = decodeMethod(buf.subarray(4, 4 + n));
        equalExact({ ...decoded }, expected, `${m.name} #${i}`);
      }
    }
  },
);

trips('longstr arguments are copies: the frame they came from is read into again (frame.ts)', () => {
  const args = { mechanisms: Buffer.from('PLAIN EXTERNAL'), locales: Buffer.from('en_US') };
  const m = { versionMajor: 0, versionMinor: 9, serverProperties: {}, ...args };
  const buf = Buffer.alloc(methodSize('connection.start', m));
  writeMethod(buf, 0, 'connection.start', m);
  const decoded = decodeMethod(buf).args as unknown as { mechanisms: Buffer; locales: Buffer };
  buf.fill(0);
  assert.is(decoded.mechanisms.toString(), 'PLAIN EXTERNAL');
  assert.is(decoded.locales.toString(), 'en_US');
});

trips('bits: every combination of every method round trips and packs LSB first into one octet', () => {
  const rng = new Random(0xb175);
  let combos = 0;
  for (const m of METHODS) {
    const bits = bitArgs(m);
    if (bits.length === 0) continue;
    assert.ok(bits.length <= 8, `${m.name}: at most 8 bits (one octet)`);
    const base = randomArgs(rng, m, 0);
    const zero = encodeMethod(m.name, base.args);
    for (let combo = 0; combo < 1 << bits.length; combo++) {
      const args = { ...base.args };
      const expected = { ...base.expected.args };
      bits.forEach((a, i) => {
        args[a.name] = expected[a.name] = (combo & (1 << i)) !== 0;
      });
      const payload = roundTrip(m.name, args, expected, `${m.name} bits ${combo.toString(2)}`);
      assert.is(payload.length, zero.length);
      const diff: number[] = [];
      for (let i = 0; i < payload.length; i++) if (payload[i] !== zero[i]) diff.push(payload[i]!);
      assert.equal(diff, combo === 0 ? [] : [combo], `${m.name} ${combo.toString(2)}: one octet holding the bits`);
      combos++;
    }
  }
  assert.ok(combos >= 100, `${combos} combinations`);
});

trips('consecutive bits share an octet; a bit after another type starts a new one (basic.deliver, basic.nack)', () => {
  // basic.nack: delivery-tag, then multiple and requeue packed in one octet: 0x01 | 0x02.
  assert.is(
    encodeMethod('basic.nack', { deliveryTag: 1, multiple: true, requeue: true }).toString('hex'),
    '003c0078' + '0000000000000001' + '03',
  );
  // basic.deliver: the redelivered bit sits alone between the delivery-tag and the exchange.
  assert.is(
    encodeMethod('basic.deliver', {
      consumerTag: 'c',
      deliveryTag: 2,
      redelivered: true,
      exchange: 'e',
      routingKey: 'r',
    }).toString('hex'),
    '003c003c' + '0163' + '0000000000000002' + '01' + '0165' + '0172',
  );
  // access.request: a shortstr, then five bits in one octet.
  assert.is(
    encodeMethod('access.request', {
      realm: '',
      exclusive: true,
      passive: false,
      active: true,
      write: false,
      read: true,
    }).toString('hex'),
    '001e000a' + '00' + '15',
  );
});

trips('every shortstr argument takes 255 bytes in any UTF-8 width, and the extremes of every integer', () => {
  const rng = new Random(0x255);
  for (const m of METHODS) {
    for (const edge of SHORTSTR_EDGES) {
      const { args, expected } = randomArgs(rng, m);
      for (const a of m.args) if (a.type === 'shortstr') args[a.name] = expected.args[a.name] = edge;
      roundTrip(m.name, args, expected.args, `${m.name} ${Buffer.byteLength(edge)}-byte shortstr`);
    }
    for (const extreme of ['min', 'max'] as const) {
      const { args, expected } = randomArgs(rng, m);
      for (const a of m.args) {
        const v = {
          octet: [0, 255],
          short: [0, 65535],
          long: [0, 0xffffffff],
          longlong: [0, MAX_SAFE],
          timestamp: [0, MAX_SAFE],
        }[a.type as 'octet'];
        if (v !== undefined) args[a.name] = expected.args[a.name] = v[extreme === 'min' ? 0 : 1];
      }
      roundTrip(m.name, args, expected.args, `${m.name} ${extreme}`);
    }
  }
});

trips('a longstr of 100 KB and raw bytes of every value pass through untouched', () => {
  const big = Buffer.alloc(100_000);
  for (let i = 0; i < big.length; i++) big[i] = i % 256;
  roundTrip('connection.secure', { challenge: big }, { challenge: big }, 'big');
  roundTrip('connection.secure', { challenge: '' }, { challenge: Buffer.alloc(0) }, 'empty');
});

// ---- validation ----------------------------------------------------------------------------------------------------

const valid = suite('methods: argument validation');

const BAD: Record<string, readonly unknown[]> = {
  bit: [1, 0, 'true', null, {}],
  octet: [-1, 256, 1.5, '1', null, NaN, 1n, true],
  short: [-1, 65536, 0.5, '1', null, Infinity],
  long: [-1, 2 ** 32, 0.5, null, '0'],
  longlong: [-1, 2 ** 53, 1.5, 1n, null, '1'],
  timestamp: [-1, 2 ** 53, new Date(0)],
  shortstr: ['x'.repeat(256), '€'.repeat(86), 5, null, Buffer.from('x'), ['a'], true],
  longstr: [5, null, {}, [1], true, new ArrayBuffer(1)],
  table: [5, 'x', [], null, true, { k: () => 1 }, { k: { ['y'.repeat(256)]: 1 } }],
};

valid('every argument of every method refuses the wrong types and ranges with ArgumentError (ARGUMENT_INVALID)', () => {
  const rng = new Random(0xbad);
  let checked = 0;
  for (const m of METHODS) {
    for (const a of m.args) {
      for (const bad of BAD[a.type]!) {
        const { args } = randomArgs(rng, m);
        args[a.name] = bad;
        throwsTyped(
          () => methodSize(m.name, args),
          ArgumentError,
          'ARGUMENT_INVALID',
          `${m.name} ${a.name} = ${String(bad)}`,
        );
        checked++;
      }
    }
  }
  assert.ok(checked > 500, `${checked} checks`);
});

valid('every required argument (no default) must be given', () => {
  const rng = new Random(2);
  let required = 0;
  for (const m of METHODS) {
    for (const a of m.args.filter((x) => x.default === undefined)) {
      const { args } = randomArgs(rng, m);
      delete args[a.name];
      throwsTyped(() => methodSize(m.name, args), ArgumentError, 'ARGUMENT_INVALID', `${m.name} without ${a.name}`);
      required++;
    }
  }
  assert.ok(required > 20);
});

valid(
  'an unknown method name, or arguments that are not an object, are ArgumentErrors (regression: null threw TypeError)',
  () => {
    for (const name of ['basic.nope', '', 'basic', 'BasicPublish', '__proto__', 'constructor']) {
      throwsTyped(() => methodSize(name as MethodName, {}), ArgumentError, 'ARGUMENT_INVALID', name);
      throwsTyped(() => methodSpec(name as MethodName), ArgumentError, 'ARGUMENT_INVALID', name);
    }
    for (const args of [null, undefined, 5, 'x', true]) {
      throwsTyped(() => methodSize('basic.qos', args as never), ArgumentError, 'ARGUMENT_INVALID', String(args));
      throwsTyped(
        () => methodSize('tx.select', args as never),
        ArgumentError,
        'ARGUMENT_INVALID',
        `tx.select ${String(args)}`,
      );
    }
  },
);

// ---- hostile payloads ----------------------------------------------------------------------------------------------

const hostile = suite('methods: hostile payloads');

hostile('every strict prefix of every method is a FrameError (FRAME_ERROR); one byte more is too', () => {
  const rng = new Random(0x7e1);
  for (const m of METHODS) {
    for (let i = 0; i < 1; i++) {
      const payload = encodeMethod(m.name, randomArgs(rng, m).args);
      for (let n = 0; n < payload.length; n++) {
        throwsTyped(
          () => decodeMethod(payload.subarray(0, n)),
          FrameError,
          'FRAME_ERROR',
          `${m.name}: ${n} of ${payload.length}`,
        );
      }
      throwsTyped(
        () => decodeMethod(Buffer.concat([payload, Buffer.from([0])])),
        FrameError,
        'FRAME_ERROR',
        `${m.name}: trailing`,
      );
    }
  }
});

hostile('unknown class and method ids are FrameErrors (NOT_IMPLEMENTED, 540)', () => {
  const classes = new Set(METHODS.map((m) => m.classId));
  let unknown = 0;
  const probe = (classId: number, methodId: number): void => {
    const payload = Buffer.alloc(4);
    payload.writeUInt16BE(classId, 0);
    payload.writeUInt16BE(methodId, 2);
    if (METHOD_BY_ID.has((classId << 16) | methodId)) return;
    const e = throwsTyped(() => decodeMethod(payload), FrameError, 'NOT_IMPLEMENTED', `${classId}.${methodId}`);
    assert.is(e.replyCode, 540);
    unknown++;
  };
  for (const c of classes) for (let mid = 0; mid < 256; mid++) probe(c, mid);
  for (let c = 0; c < 256; c++) probe(c, 10);
  for (const c of [0x8000, 0xffff, 0x8028]) probe(c, 0x000a); // high class ids must not alias known ones via the sign bit
  probe(0x0028, 0x800a);
  assert.ok(unknown > 2000);
});

hostile('longlong arguments beyond 2^53 are FrameErrors (SYNTAX_ERROR), not silently rounded', () => {
  const payload = encodeMethod('basic.ack', { deliveryTag: 1 });
  for (const hi of [0x00200000, 0xffffffff]) {
    payload.writeUInt32BE(hi, 4);
    throwsTyped(() => decodeMethod(payload), FrameError, 'SYNTAX_ERROR', hi.toString(16));
  }
  const getOk = encodeMethod('basic.get-ok', { deliveryTag: MAX_SAFE, exchange: '', routingKey: '', messageCount: 0 });
  assert.is((decodeMethod(getOk).args as { deliveryTag: number }).deliveryTag, MAX_SAFE);
});

hostile('a table argument is bounded by the payload and by the depth limit', () => {
  const p = encodeMethod('queue.declare', { queue: 'q', arguments: { a: 1 } });
  // queue.declare: id(4) ticket(2) queue(2) bits(1) then the table length at offset 9.
  p.writeUInt32BE(0xfffffff0, 9);
  throwsTyped(() => decodeMethod(p), FrameError, 'FRAME_ERROR', 'table length');
});

// ---- amqplib -------------------------------------------------------------------------------------------------------

const oracle = suite('methods: against amqplib 2.3.1 (lib/defs.js)');

/** Our arguments in amqplib's notation: longstrs as Buffers, tables in its {'!': type} notation. */
function amqplibFields(m: MethodSpec, args: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const a of m.args) {
    const v = args[a.name];
    out[a.name] = a.type === 'longstr' ? Buffer.from(v as string | Uint8Array) : a.type === 'table' ? toAmqplib(v) : v;
  }
  return out;
}

oracle(
  'every method, 15 random argument sets each: byte-identical frames, and amqplib decodes ours to the same values',
  () => {
    const rng = new Random(0x0ac1e);
    let compared = 0;
    for (const m of METHODS) {
      const id = m.classId * 65536 + m.methodId;
      for (let i = 0; i < 15; i++) {
        const { args } = randomArgs(rng, m);
        let fields: Record<string, unknown>;
        try {
          fields = amqplibFields(m, args);
        } catch (e) {
          if (e instanceof Unexpressible) continue;
          throw e;
        }
        const channel = rng.range(0, 65535);
        const ours = frame(1, channel, encodeMethod(m.name, args));
        assert.is(
          ours.toString('hex'),
          amqplibDefs.encodeMethod(id, channel, fields).toString('hex'),
          `${m.name} #${i}`,
        );
        const theirs = amqplibDefs.decode(id, ours.subarray(11, ours.length - 1));
        assert.equal(
          asAmqplibDecoded({ ...decodeMethod(ours.subarray(7, ours.length - 1)).args }),
          { ...theirs },
          `${m.name} #${i}: decoded`,
        );
        compared++;
      }
    }
    assert.ok(compared > METHODS.length * 10, `${compared} compared`);
  },
);

table.run();
trips.run();
valid.run();
hostile.run();
oracle.run();
