/**
 * properties.ts: the 14 basic properties in a content header (spec §4.2.6.1): every subset of flags, timestamps,
 * headers, validation, hostile headers, and byte-identical encodings against amqplib's encodeProperties.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FrameError } from '../../../src/amqp/errors.js';
import {
  type MessageProperties,
  propertiesSize,
  readContentHeader,
  writeProperties,
} from '../../../src/amqp/properties.js';
import { BASIC_PROPERTIES } from '../../../src/amqp/spec.js';
import { Decimal, field } from '../../../src/amqp/table.js';
import { ArgumentError } from '../../../src/amqp/wire.js';
import { equalExact, throwsTyped } from '../../helpers/codec-assert.js';
import {
  encodeHeader,
  frame,
  MAX_SAFE,
  PROPERTY_NAMES,
  randomProperties,
  SHORTSTR_EDGES,
} from '../../helpers/codec-gen.js';
import { amqplibDefs, asAmqplibDecoded, toAmqplib, Unexpressible } from '../../helpers/oracle.js';
import { Random } from '../../helpers/random.js';

const ALL = (1 << 14) - 1;
/** The flags word for a mask over PROPERTY_NAMES (bit i of the mask = flag bit 15 - i). */
const flagsOf = (mask: number): number =>
  PROPERTY_NAMES.reduce((f, _n, i) => ((mask & (1 << i)) !== 0 ? f | (1 << (15 - i)) : f), 0);

const subsets = suite('properties: every subset of the 14 flags');

subsets('PROPERTY_NAMES is the spec order, which the flag bits follow', () => {
  assert.equal(
    [...PROPERTY_NAMES],
    BASIC_PROPERTIES.map((p) => p.name),
  );
});

subsets('all 16,384 subsets round trip, with the flags word naming exactly the properties present', () => {
  // The subsets exercise the flag logic; the value space is the random and differential tests' job, so each subset
  // takes its values from a small pool of full property sets with short ASCII strings and small header tables (this
  // keeps the 16,384 encodes and decodes to a few hundred milliseconds).
  const rng = new Random(0x14);
  const pool = Array.from({ length: 64 }, (_, i) => {
    const full = randomProperties(rng, ALL, 0);
    for (const p of BASIC_PROPERTIES) {
      if (p.type !== 'shortstr') continue;
      const v = `${p.name.slice(0, 3)}-${i}-${rng.u32().toString(36)}`.slice(0, 1 + rng.int(12));
      (full.props as Record<string, unknown>)[p.name] = full.expected[p.name] = v;
    }
    if (i % 4 !== 0) (full.props as Record<string, unknown>)['headers'] = full.expected['headers'] = { n: i, s: 'x' };
    return full;
  });
  for (let mask = 0; mask <= ALL; mask++) {
    const src = pool[mask % pool.length]!;
    const props: Record<string, unknown> = {};
    const expected: Record<string, unknown> = {};
    PROPERTY_NAMES.forEach((n, i) => {
      if ((mask & (1 << i)) === 0) return;
      props[n] = (src.props as Record<string, unknown>)[n];
      expected[n] = src.expected[n];
    });
    const bodySize = mask * 977;
    const payload = encodeHeader(bodySize, props);
    assert.is(payload.readUInt16BE(12), flagsOf(mask), `mask ${mask}: flags`);
    const h = readContentHeader(payload);
    if (h.classId !== 60 || h.bodySize !== bodySize)
      assert.unreachable(`mask ${mask}: class ${h.classId} size ${h.bodySize}`);
    // Field by field (a full deep comparison of 16,384 objects would dominate the run time).
    const got = h.properties as Record<string, unknown>;
    if (Object.keys(got).length !== Object.keys(expected).length)
      assert.equal(Object.keys(got), Object.keys(expected), `mask ${mask}: keys`);
    for (const [k, v] of Object.entries(expected)) {
      const g = got[k];
      const same =
        k === 'headers'
          ? g !== undefined
          : v instanceof Date
            ? g instanceof Date && g.getTime() === v.getTime()
            : g === v;
      if (!same) assert.equal(g, v, `mask ${mask}: ${k}`);
    }
    if (expected['headers'] !== undefined && (mask & 0xff) === 4)
      equalExact(got['headers'], expected['headers'], `mask ${mask}: headers`);
  }
});

subsets('each property alone sets its own flag bit and costs its own size', () => {
  const one: Record<string, [unknown, number]> = {
    contentType: ['a', 2],
    contentEncoding: ['', 1],
    headers: [{}, 4],
    deliveryMode: [2, 1],
    priority: [9, 1],
    correlationId: ['abc', 4],
    replyTo: ['r', 2],
    expiration: ['60000', 6],
    messageId: ['m', 2],
    timestamp: [1, 8],
    type: ['t', 2],
    userId: ['u', 2],
    appId: ['a', 2],
    clusterId: ['c', 2],
  };
  PROPERTY_NAMES.forEach((name, i) => {
    const [value, size] = one[name]!;
    const props = { [name]: value } as MessageProperties;
    assert.is(propertiesSize(props), 2 + size, `${name}: size`);
    const payload = encodeHeader(0, props);
    assert.is(payload.readUInt16BE(12), 1 << (15 - i), `${name}: flag`);
    const back = readContentHeader(payload).properties as Record<string, unknown>;
    assert.equal(Object.keys(back), [name], name);
  });
});

subsets('no properties: flags 0, nothing else', () => {
  for (const p of [
    undefined,
    {},
    { unknownKey: 'x' } as MessageProperties,
    { contentType: undefined } as unknown as MessageProperties,
  ]) {
    assert.is(propertiesSize(p), 2);
    const buf = Buffer.alloc(4, 0xee);
    assert.is(writeProperties(buf, 1, p), 3);
    assert.equal([...buf], [0xee, 0, 0, 0xee]);
  }
  equalExact(readContentHeader(encodeHeader(0, undefined)), { classId: 60, bodySize: 0, properties: {} }, 'empty');
});

subsets('255-byte shortstrs in every property', () => {
  for (const s of SHORTSTR_EDGES) {
    const props = Object.fromEntries(
      BASIC_PROPERTIES.filter((p) => p.type === 'shortstr').map((p) => [p.name, s]),
    ) as MessageProperties;
    equalExact(readContentHeader(encodeHeader(1, props)).properties, props, `${Buffer.byteLength(s)} bytes`);
  }
});

const values = suite('properties: timestamps, headers and body sizes');

values('a Date is sent as whole seconds; seconds come back as a Date', () => {
  const cases: [Date | number, number][] = [
    [new Date(1500), 1],
    [new Date(0), 0],
    [0, 0],
    [1700000000, 1700000000],
    [new Date(1700000000999), 1700000000],
    [new Date(8.64e15), 8.64e12],
    [8.64e12, 8.64e12],
  ];
  for (const [t, secs] of cases) {
    const payload = encodeHeader(0, { timestamp: t });
    assert.is(Number(payload.readBigUInt64BE(14)), secs, `${String(t)}: seconds`);
    equalExact(readContentHeader(payload).properties.timestamp, new Date(secs * 1000), String(t));
  }
});

values('timestamps that cannot be sent are ArgumentErrors', () => {
  for (const t of [
    new Date(NaN),
    new Date(-1),
    new Date(-1000),
    -1,
    1.5,
    NaN,
    Infinity,
    MAX_SAFE + 1,
    '1700000000',
    1n,
    null,
  ]) {
    throwsTyped(() => propertiesSize({ timestamp: t as never }), ArgumentError, 'ARGUMENT_INVALID', String(t));
  }
});

values('a timestamp past what a Date can hold decodes to an invalid Date rather than failing the frame', () => {
  const payload = encodeHeader(0, { timestamp: MAX_SAFE });
  for (const secs of [BigInt(MAX_SAFE), 2n ** 53n, 2n ** 64n - 1n, 8640000000001n]) {
    payload.writeBigUInt64BE(secs, 14);
    const t = readContentHeader(payload).properties.timestamp;
    assert.instance(t, Date);
    assert.ok(Number.isNaN(t!.getTime()), String(secs));
  }
});

values('headers carry every field type, nested', () => {
  const headers = {
    s: 'x',
    n: -5,
    big: 2 ** 40,
    f: 0.5,
    t: true,
    nil: null,
    bytes: Buffer.from([1]),
    when: new Date(2000),
    dec: new Decimal(1, 5),
    u8: field('B', 200),
    list: [1, [2, { three: 3 }]],
    nested: { deeper: { deepest: 'yes' } },
  };
  equalExact(
    readContentHeader(encodeHeader(5, { headers })).properties.headers,
    {
      s: 'x',
      n: -5,
      big: 2 ** 40,
      f: 0.5,
      t: true,
      nil: null,
      bytes: Buffer.from([1]),
      when: new Date(2000),
      dec: new Decimal(1, 5),
      u8: 200,
      list: [1, [2, { three: 3 }]],
      nested: { deeper: { deepest: 'yes' } },
    },
    'headers',
  );
});

values('body sizes up to 2^53-1 are read; beyond is a FrameError (SYNTAX_ERROR)', () => {
  for (const n of [0, 1, 2 ** 32, MAX_SAFE]) assert.is(readContentHeader(encodeHeader(n, {})).bodySize, n);
  const p = encodeHeader(0, {});
  p.writeBigUInt64BE(2n ** 53n, 4);
  throwsTyped(() => readContentHeader(p), FrameError, 'SYNTAX_ERROR', '2^53');
  p.writeBigUInt64BE(2n ** 64n - 1n, 4);
  throwsTyped(() => readContentHeader(p), FrameError, 'SYNTAX_ERROR', '2^64-1');
});

values('class-id and weight are read as given (the channel checks the class)', () => {
  const p = encodeHeader(3, { priority: 1 }, 61);
  p.writeUInt16BE(7, 2);
  const h = readContentHeader(p);
  assert.is(h.classId, 61);
  assert.is(h.bodySize, 3);
});

const valid = suite('properties: validation');

valid('every property refuses the wrong type with ArgumentError (ARGUMENT_INVALID)', () => {
  const bad: Record<string, unknown[]> = {
    shortstr: ['x'.repeat(256), '🐇'.repeat(64), 5, null, Buffer.from('x'), true, {}],
    octet: [-1, 256, 1.5, '2', null, NaN],
    table: [[], 'x', 5, null, true, { k: Symbol('s') }, { ['k'.repeat(256)]: 1 }],
    timestamp: [new Date(NaN), -1],
  };
  let n = 0;
  for (const p of BASIC_PROPERTIES) {
    for (const v of bad[p.type]!) {
      throwsTyped(
        () => propertiesSize({ [p.name]: v } as MessageProperties),
        ArgumentError,
        'ARGUMENT_INVALID',
        `${p.name} = ${String(v)}`,
      );
      n++;
    }
  }
  assert.ok(n > 70);
});

valid('delivery mode is 1 (transient) or 2 (persistent): RabbitMQ closes the channel for anything else', () => {
  for (const v of [0, 3, 255])
    throwsTyped(() => propertiesSize({ deliveryMode: v }), ArgumentError, 'ARGUMENT_INVALID', String(v));
  for (const v of [1, 2]) assert.is(readContentHeader(encodeHeader(0, { deliveryMode: v })).properties.deliveryMode, v);
  // A peer's header is decoded as sent, whatever the mode.
  const p = encodeHeader(0, { deliveryMode: 1 });
  p[14] = 7;
  assert.is(readContentHeader(p).properties.deliveryMode, 7);
});

valid('properties that are not an object are ArgumentErrors (regression: null threw TypeError)', () => {
  for (const p of [null, 5, 'x', true])
    throwsTyped(() => propertiesSize(p as never), ArgumentError, 'ARGUMENT_INVALID', String(p));
});

const hostile = suite('properties: hostile content headers');

valid('reserved flag bits 0 and 1 are FrameErrors (SYNTAX_ERROR)', () => {
  for (const extra of [0x0001, 0x0002, 0x0003]) {
    for (const mask of [0, ALL, 1]) {
      const p = encodeHeader(0, randomProperties(new Random(mask), mask).props);
      p.writeUInt16BE(p.readUInt16BE(12) | extra, 12);
      throwsTyped(() => readContentHeader(p), FrameError, 'SYNTAX_ERROR', `0x${extra} with mask ${mask}`);
    }
  }
});

hostile('every strict prefix of a full header is a FrameError (FRAME_ERROR), and so is a trailing byte', () => {
  const rng = new Random(0x9e);
  for (let i = 0; i < 10; i++) {
    const p = encodeHeader(rng.safeInt(), randomProperties(rng, i === 0 ? ALL : rng.int(ALL + 1)).props);
    for (let n = 0; n < p.length; n++)
      throwsTyped(() => readContentHeader(p.subarray(0, n)), FrameError, 'FRAME_ERROR', `${n} of ${p.length}`);
    throwsTyped(() => readContentHeader(Buffer.concat([p, Buffer.from([0])])), FrameError, 'FRAME_ERROR', 'trailing');
  }
});

hostile('a flag for a property whose bytes are missing, or lengths past the frame, are FrameErrors', () => {
  const p = encodeHeader(0, { contentType: 'a' });
  p.writeUInt16BE(0xfffc, 12); // claims all 14, carries one
  throwsTyped(() => readContentHeader(p), FrameError, 'FRAME_ERROR', 'all flags');
  const h = encodeHeader(0, { headers: { a: 1 } });
  h.writeUInt32BE(0xffffffff, 14);
  throwsTyped(() => readContentHeader(h), FrameError, 'FRAME_ERROR', 'headers length');
});

hostile('a flag whose property is cut off names that property; so does a property refused on encode', () => {
  PROPERTY_NAMES.forEach((name, i) => {
    // Only this property's flag, and none of its bytes.
    const p = encodeHeader(0, {});
    p.writeUInt16BE(1 << (15 - i), 12);
    assert.throws(
      () => readContentHeader(p),
      (e: Error) => e instanceof FrameError && e.message.includes(name === 'headers' ? 'table length' : name),
      name,
    );
    const bad =
      name === 'headers' ? 5 : name === 'deliveryMode' || name === 'priority' ? -1 : name === 'timestamp' ? -1 : 7;
    assert.throws(
      () => propertiesSize({ [name]: bad } as MessageProperties),
      (e: Error) => e instanceof ArgumentError && e.message.startsWith(`${name}: `),
      name,
    );
  });
});

const oracle = suite('properties: against amqplib 2.3.1 (lib/defs.js encodeProperties)');

oracle('400 random property sets: byte-identical header frames, and amqplib decodes ours to the same values', () => {
  const rng = new Random(0xa9);
  let compared = 0;
  for (let i = 0; i < 400; i++) {
    const { props } = randomProperties(rng, i < 14 ? 1 << i : rng.int(ALL + 1));
    const p = props as Record<string, unknown>;
    let fields: Record<string, unknown>;
    try {
      fields = {
        ...p,
        ...(p['headers'] !== undefined ? { headers: toAmqplib(p['headers']) } : {}),
        ...(p['timestamp'] instanceof Date ? { timestamp: Math.floor(p['timestamp'].getTime() / 1000) } : {}),
      };
    } catch (e) {
      if (e instanceof Unexpressible) continue;
      throw e;
    }
    const channel = rng.range(0, 65535);
    const bodySize = rng.safeInt();
    const ours = frame(2, channel, encodeHeader(bodySize, props));
    assert.is(
      ours.toString('hex'),
      amqplibDefs.encodeProperties(60, channel, bodySize, fields).toString('hex'),
      `#${i}`,
    );
    const theirs = amqplibDefs.decode(60, ours.subarray(19, ours.length - 1));
    const mine = { ...readContentHeader(ours.subarray(7, ours.length - 1)).properties } as Record<string, unknown>;
    if (mine['timestamp'] instanceof Date) mine['timestamp'] = mine['timestamp'].getTime() / 1000;
    const defined = Object.fromEntries(Object.entries(theirs).filter(([, v]) => v !== undefined));
    assert.equal(asAmqplibDecoded(mine), defined, `#${i}: decoded`);
    compared++;
  }
  assert.ok(compared > 300, `${compared} compared`);
});

subsets.run();
values.run();
valid.run();
hostile.run();
oracle.run();
