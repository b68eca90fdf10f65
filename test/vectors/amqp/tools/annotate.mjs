// Turns raw AMQP 0-9-1 frames into annotated vectors: hex lines with a comment per field, and the expected value in
// the "typed JSON" the test helper (test/helpers/vectors.ts) revives. The argument lists come from amqplib's generated
// defs (lib/defs.js `info(id)`), never from our own spec.ts, and every value is cross-checked against amqplib's own
// decoder before a vector is written, so a vector never merely restates what our decoder believes.
import { createRequire } from 'node:module';
import { isDeepStrictEqual } from 'node:util';

const require = createRequire(import.meta.url);
export const amqplibDefs = require('../../../../node_modules/amqplib/lib/defs.js');
export const amqplibCodec = require('../../../../node_modules/amqplib/lib/codec.js');

const WRAP = 24; // bytes per hex line

const hex = (buf, from, to) => {
  const out = [];
  for (let i = from; i < to; i += WRAP)
    out.push(
      buf
        .subarray(i, Math.min(to, i + WRAP))
        .toString('hex')
        .replace(/(..)(?!$)/g, '$1 '),
    );
  return out.length === 0 ? [''] : out;
};

/** Lines for bytes [from, to) with one comment on the first line. */
function emit(lines, buf, from, to, indent, comment) {
  const parts = hex(buf, from, to);
  parts.forEach((h, i) => {
    lines.push(i === 0 ? `${h.padEnd(WRAP * 3)}# ${'  '.repeat(indent)}${comment}` : h);
  });
}

const printable = (b) => {
  const s = b.toString('utf8');
  return Buffer.from(s, 'utf8').equals(b) && /^[\x20-\x7e\u00a0-\uffff\n\t]*$/.test(s);
};

export const typedBytes = (b) => (printable(b) ? { $utf8: b.toString('utf8') } : { $bytes: b.toString('hex') });

const num = (n) =>
  Number.isNaN(n)
    ? { $num: 'NaN' }
    : n === Infinity
      ? { $num: 'Infinity' }
      : n === -Infinity
        ? { $num: '-Infinity' }
        : Object.is(n, -0)
          ? { $num: '-0' }
          : n;

/** Walks one field table at `off` (length prefix included). Returns the typed value and the offset after it. */
export function walkTable(buf, off, lines, indent, what) {
  const len = buf.readUInt32BE(off);
  emit(lines, buf, off, off + 4, indent, `${what}: table of ${len} bytes`);
  const end = off + 4 + len;
  let p = off + 4;
  const t = {};
  while (p < end) {
    const klen = buf[p];
    const key = buf.toString('utf8', p + 1, p + 1 + klen);
    emit(lines, buf, p, p + 1 + klen, indent + 1, `key ${JSON.stringify(key)}`);
    p += 1 + klen;
    const r = walkValue(buf, p, lines, indent + 1);
    Object.defineProperty(t, key, { value: r.value, enumerable: true, writable: true, configurable: true });
    p = r.end;
  }
  if (p !== end) throw new Error(`table overran: ${p} vs ${end}`);
  return { value: t, end };
}

function walkArray(buf, off, lines, indent, what) {
  const len = buf.readUInt32BE(off);
  emit(lines, buf, off, off + 4, indent, `${what}: array of ${len} bytes`);
  const end = off + 4 + len;
  let p = off + 4;
  const a = [];
  while (p < end) {
    const r = walkValue(buf, p, lines, indent + 1);
    a.push(r.value);
    p = r.end;
  }
  return { value: a, end };
}

function walkValue(buf, p, lines, indent) {
  const tag = String.fromCharCode(buf[p]);
  const fixed = (n, read, label, wrap) => {
    const v = read(p + 1);
    const shown = typeof v === 'bigint' ? v.toString() : Object.is(v, -0) ? '-0' : String(v);
    emit(lines, buf, p, p + 1 + n, indent, `'${tag}' ${label} ${shown}`);
    return { value: wrap(v), end: p + 1 + n };
  };
  switch (tag) {
    case 't':
      return fixed(
        1,
        (o) => buf[o] !== 0,
        'boolean',
        (v) => v,
      );
    case 'b':
      return fixed(
        1,
        (o) => buf.readInt8(o),
        'int8',
        (v) => ({ $field: ['b', v] }),
      );
    case 'B':
      return fixed(
        1,
        (o) => buf.readUInt8(o),
        'uint8',
        (v) => ({ $field: ['B', v] }),
      );
    case 's':
      return fixed(
        2,
        (o) => buf.readInt16BE(o),
        'int16',
        (v) => ({ $field: ['s', v] }),
      );
    case 'u':
      return fixed(
        2,
        (o) => buf.readUInt16BE(o),
        'uint16',
        (v) => ({ $field: ['u', v] }),
      );
    case 'I':
      return fixed(
        4,
        (o) => buf.readInt32BE(o),
        'int32',
        (v) => v,
      );
    case 'i':
      return fixed(
        4,
        (o) => buf.readUInt32BE(o),
        'uint32',
        (v) => ({ $field: ['i', v] }),
      );
    case 'l':
      return fixed(
        8,
        (o) => buf.readBigInt64BE(o),
        'int64',
        (v) => {
          const n = Number(v);
          if (!Number.isSafeInteger(n)) return { $field: ['l', { $bigint: v.toString() }] };
          return n >= -0x80000000 && n <= 0x7fffffff ? { $field: ['l', n] } : n;
        },
      );
    case 'f':
      return fixed(
        4,
        (o) => buf.readFloatBE(o),
        'float',
        (v) => ({ $field: ['f', num(v)] }),
      );
    case 'd':
      return fixed(
        8,
        (o) => buf.readDoubleBE(o),
        'double',
        (v) => (Number.isFinite(v) && !Number.isInteger(v) ? v : { $field: ['d', num(v)] }),
      );
    case 'D':
      return fixed(
        5,
        (o) => [buf[o], buf.readInt32BE(o + 1)],
        'decimal [scale, value]',
        (v) => ({ $decimal: v }),
      );
    case 'T':
      return fixed(
        8,
        (o) => Number(buf.readBigUInt64BE(o)),
        'timestamp (s)',
        (v) => ({ $date: v }),
      );
    case 'V':
      emit(lines, buf, p, p + 1, indent, `'V' void`);
      return { value: null, end: p + 1 };
    case 'S':
    case 'x': {
      const n = buf.readUInt32BE(p + 1);
      const b = buf.subarray(p + 5, p + 5 + n);
      emit(lines, buf, p, p + 5, indent, `'${tag}' ${tag === 'S' ? 'longstr' : 'byte array'} of ${n} bytes`);
      if (n > 0)
        emit(lines, buf, p + 5, p + 5 + n, indent + 1, tag === 'S' ? JSON.stringify(b.toString('utf8')) : 'bytes');
      return { value: tag === 'S' ? b.toString('utf8') : { $bytes: b.toString('hex') }, end: p + 5 + n };
    }
    case 'A': {
      emit(lines, buf, p, p + 1, indent, `'A' field array`);
      return walkArray(buf, p + 1, lines, indent, 'array');
    }
    case 'F': {
      emit(lines, buf, p, p + 1, indent, `'F' nested table`);
      return walkTable(buf, p + 1, lines, indent, 'table');
    }
    default:
      throw new Error(`unknown tag ${tag}`);
  }
}

const METHOD_NAMES = new Map();
for (const [k, v] of Object.entries(amqplibDefs)) if (k.startsWith('methodInfo')) METHOD_NAMES.set(v.id, v);
const CLASS_NAMES = {
  10: 'connection',
  20: 'channel',
  30: 'access',
  40: 'exchange',
  50: 'queue',
  60: 'basic',
  85: 'confirm',
  90: 'tx',
};
/** "BasicGetOk" (amqplib) -> "basic.get-ok" (the spec's name, which ours uses). */
export function specName(info) {
  const cls = CLASS_NAMES[info.classId];
  const rest = info.name.slice(cls.length).replace(/[A-Z]/g, (c, i) => (i === 0 ? '' : '-') + c.toLowerCase());
  return `${cls}.${rest}`;
}

/** Annotates a method payload; returns the typed expect ({ name, args }). */
function walkMethod(buf, off, end, lines) {
  const id = buf.readUInt32BE(off);
  const info = METHOD_NAMES.get(id);
  if (info === undefined) throw new Error(`unknown method id ${id}`);
  const name = specName(info);
  emit(lines, buf, off, off + 4, 0, `${name} (class ${info.classId}, method ${info.methodId})`);
  let p = off + 4;
  const args = {};
  let group = null; // the octet holding the current run of bits (spec 4.2.5.2: packed LSB first, 8 per octet)
  const flush = () => {
    if (group !== null)
      emit(
        lines,
        buf,
        group.at,
        group.at + 1,
        0,
        `bits (LSB first): ${group.names.map((n) => `${n}=${args[n]}`).join(' ')}`,
      );
    group = null;
  };
  for (const a of info.args) {
    if (a.type === 'bit') {
      if (group === null || group.names.length === 8) {
        flush();
        group = { at: p, names: [] };
        p += 1;
      }
      args[a.name] = (buf[group.at] & (1 << group.names.length)) !== 0;
      group.names.push(a.name);
      continue;
    }
    flush();
    switch (a.type) {
      case 'octet':
        args[a.name] = buf[p];
        emit(lines, buf, p, p + 1, 0, `${a.name} (octet) ${buf[p]}`);
        p += 1;
        break;
      case 'short':
        args[a.name] = buf.readUInt16BE(p);
        emit(lines, buf, p, p + 2, 0, `${a.name} (short) ${args[a.name]}`);
        p += 2;
        break;
      case 'long':
        args[a.name] = buf.readUInt32BE(p);
        emit(lines, buf, p, p + 4, 0, `${a.name} (long) ${args[a.name]}`);
        p += 4;
        break;
      case 'longlong':
      case 'timestamp':
        args[a.name] = Number(buf.readBigUInt64BE(p));
        emit(lines, buf, p, p + 8, 0, `${a.name} (${a.type}) ${args[a.name]}`);
        p += 8;
        break;
      case 'shortstr': {
        const n = buf[p];
        args[a.name] = buf.toString('utf8', p + 1, p + 1 + n);
        emit(lines, buf, p, p + 1 + n, 0, `${a.name} (shortstr, ${n} bytes) ${JSON.stringify(args[a.name])}`);
        p += 1 + n;
        break;
      }
      case 'longstr': {
        const n = buf.readUInt32BE(p);
        const b = buf.subarray(p + 4, p + 4 + n);
        args[a.name] = typedBytes(b);
        emit(lines, buf, p, p + 4, 0, `${a.name} (longstr) of ${n} bytes`);
        if (n > 0) emit(lines, buf, p + 4, p + 4 + n, 1, printable(b) ? JSON.stringify(b.toString('utf8')) : 'bytes');
        p += 4 + n;
        break;
      }
      case 'table': {
        const r = walkTable(buf, p, lines, 0, `${a.name}`);
        args[a.name] = r.value;
        p = r.end;
        break;
      }
      default:
        throw new Error(`type ${a.type}`);
    }
  }
  flush();
  if (p !== end) throw new Error(`${name}: ${end - p} trailing bytes`);
  return { name, args, info };
}

const PROPS = [
  'contentType',
  'contentEncoding',
  'headers',
  'deliveryMode',
  'priority',
  'correlationId',
  'replyTo',
  'expiration',
  'messageId',
  'timestamp',
  'type',
  'userId',
  'appId',
  'clusterId',
];

function walkHeader(buf, off, end, lines) {
  const classId = buf.readUInt16BE(off);
  emit(lines, buf, off, off + 2, 0, `class-id ${classId}`);
  emit(lines, buf, off + 2, off + 4, 0, `weight ${buf.readUInt16BE(off + 2)}`);
  const bodySize = Number(buf.readBigUInt64BE(off + 4));
  emit(lines, buf, off + 4, off + 12, 0, `body-size ${bodySize}`);
  const flags = buf.readUInt16BE(off + 12);
  const present = PROPS.filter((_, i) => flags & (1 << (15 - i)));
  emit(
    lines,
    buf,
    off + 12,
    off + 14,
    0,
    `property flags 0x${flags.toString(16).padStart(4, '0')}: ${present.join(' ') || 'none'}`,
  );
  let p = off + 14;
  const props = {};
  for (const name of present) {
    if (name === 'headers') {
      const r = walkTable(buf, p, lines, 0, 'headers');
      props.headers = r.value;
      p = r.end;
      continue;
    }
    if (name === 'deliveryMode' || name === 'priority') {
      props[name] = buf[p];
      emit(lines, buf, p, p + 1, 0, `${name} ${buf[p]}`);
      p += 1;
      continue;
    }
    if (name === 'timestamp') {
      const s = Number(buf.readBigUInt64BE(p));
      props.timestamp = { $date: s };
      emit(lines, buf, p, p + 8, 0, `timestamp ${s} (${new Date(s * 1000).toISOString()})`);
      p += 8;
      continue;
    }
    const n = buf[p];
    props[name] = buf.toString('utf8', p + 1, p + 1 + n);
    emit(lines, buf, p, p + 1 + n, 0, `${name} ${JSON.stringify(props[name])}`);
    p += 1 + n;
  }
  if (p !== end) throw new Error(`header: ${end - p} trailing bytes`);
  return { classId, bodySize, properties: props };
}

const KIND = { 1: 'method', 2: 'header', 3: 'body', 8: 'heartbeat' };

/** One whole frame -> an annotated vector. */
export function annotateFrame(frame, name) {
  const type = frame[0];
  const channel = frame.readUInt16BE(1);
  const size = frame.readUInt32BE(3);
  if (frame.length !== size + 8 || frame[size + 7] !== 0xce) throw new Error('not one whole frame');
  const kind = KIND[type];
  const lines = [];
  emit(lines, frame, 0, 7, 0, `frame type ${type} (${kind}), channel ${channel}, payload ${size} bytes`);
  let expect;
  if (kind === 'method') {
    const m = walkMethod(frame, 7, 7 + size, lines);
    crossCheck(amqplibDefs.decode(m.info.id, frame.subarray(11, 7 + size)), m.args);
    expect = { name: m.name, args: m.args };
  } else if (kind === 'header') {
    expect = walkHeader(frame, 7, 7 + size, lines);
    const theirs = amqplibDefs.decode(60, frame.subarray(19, 7 + size));
    crossCheck(theirs, expect.properties);
  } else if (kind === 'body') {
    if (size > 0) emit(lines, frame, 7, 7 + size, 0, 'body');
    expect = typedBytes(frame.subarray(7, 7 + size));
  } else {
    expect = null;
  }
  emit(lines, frame, 7 + size, 8 + size, 0, 'frame-end');
  return { name: name ?? expect?.name ?? kind, kind, channel, bytes: lines, expect };
}

/** amqplib's decoded value and our typed expectation must agree (modulo representation) before a vector is written. */
export function crossCheck(theirs, ours) {
  const a = plain(theirs, 'amqplib');
  const b = plain(ours, 'typed');
  if (!isDeepStrictEqual(a, b)) throw new Error(`amqplib disagrees:\n${JSON.stringify(a)}\n${JSON.stringify(b)}`);
}

/** Both representations down to comparable plain JSON. */
function plain(v, from) {
  if (v === undefined) return undefined;
  if (v === null || typeof v !== 'object') return typeof v === 'number' && Number.isNaN(v) ? 'NaN' : v;
  if (Buffer.isBuffer(v)) return { bytes: v.toString('hex') };
  if (Array.isArray(v)) return v.map((x) => plain(x, from));
  if (from === 'typed') {
    if ('$utf8' in v) return { bytes: Buffer.from(v.$utf8).toString('hex') };
    if ('$bytes' in v) return { bytes: v.$bytes };
    if ('$date' in v) return v.$date;
    if ('$num' in v) return v.$num === 'NaN' ? 'NaN' : Number(v.$num);
    if ('$bigint' in v) return Number(BigInt(v.$bigint));
    if ('$decimal' in v) return { places: v.$decimal[0], digits: v.$decimal[1] >>> 0 };
    if ('$field' in v) return plain(v.$field[1], from);
  } else if ('!' in v) {
    return v['!'] === 'timestamp'
      ? v.value
      : v['!'] === 'decimal'
        ? { places: v.value.places, digits: v.value.digits }
        : plain(v.value, from);
  }
  const o = {};
  for (const k of Object.keys(v)) if (v[k] !== undefined) o[k] = plain(v[k], from);
  return o;
}

/** Splits a byte stream into whole frames. */
export function splitFrames(buf) {
  const frames = [];
  let p = 0;
  while (p + 7 <= buf.length) {
    const size = buf.readUInt32BE(p + 3);
    if (p + 8 + size > buf.length) break;
    frames.push(Buffer.from(buf.subarray(p, p + 8 + size)));
    p += 8 + size;
  }
  return { frames, rest: buf.subarray(p) };
}
