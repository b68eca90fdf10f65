/**
 * Annotated byte vectors (test/vectors/amqp/*.json, provenance in its README) and the one helper that turns each into
 * four checks: parse (the bytes decode to the expected value), generate (the expected value encodes to the bytes),
 * mirror (what we generate parses back to the expected value) and split (the bytes fed to the FrameReader at every
 * split point give the same result).
 *
 * Bytes are written as hex with a comment after `#` on every line. Expected values are JSON with a few markers for
 * what JSON lacks: {"$bytes": hex}, {"$utf8": text} (a Buffer), {"$date": seconds}, {"$bigint": "digits"},
 * {"$num": "NaN" | "Infinity" | "-Infinity" | "-0"}, {"$decimal": [scale, value]} and {"$field": [tag, value]} (an
 * explicitly tagged field-table value).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { type AmqpError, FrameError } from '../../src/amqp/errors.js';
import { FRAME_BODY, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD, HEARTBEAT_FRAME } from '../../src/amqp/frame.js';
import { decodeMethod } from '../../src/amqp/methods.js';
import { type MessageProperties, readContentHeader } from '../../src/amqp/properties.js';
import { Decimal, decodeTable, encodeTable, type FieldTable, type FieldTag, field } from '../../src/amqp/table.js';
import { ArgumentError } from '../../src/amqp/wire.js';
import { equalExact, throwsTyped } from './codec-assert.js';
import {
  bodyFrame,
  encodeHeader,
  frame,
  int64Back,
  methodFrame,
  readFrames,
  splitAt,
  taggedBack,
} from './codec-gen.js';
import { repoRoot } from './oracle.js';

export type VectorKind = 'method' | 'header' | 'body' | 'heartbeat' | 'table' | 'stream';

export interface Vector {
  name: string;
  kind: VectorKind;
  channel?: number;
  frameMax?: number;
  bytes: string[];
  expect?: unknown;
  /** The bytes are invalid: decoding must fail with this error (whole and at every split point). */
  error?: { class: string; code: string };
  /** Valid bytes our encoder deliberately refuses to produce (NaN, infinities): generate must fail with this. */
  refuse?: { class: string; code: string };
}

export interface VectorFile {
  source: string;
  vectors: Vector[];
}

export const VECTOR_DIR = join(repoRoot(), 'test', 'vectors', 'amqp');

export function loadVectors(file: string): VectorFile {
  return JSON.parse(readFileSync(join(VECTOR_DIR, file), 'utf8')) as VectorFile;
}

/** The bytes of annotated hex lines: everything after `#` is a comment, whitespace is ignored. */
export function hexBytes(lines: readonly string[]): Buffer {
  const hex = lines.map((l) => l.replace(/#.*$/, '').replace(/\s+/g, '')).join('');
  if (!/^([0-9a-f]{2})*$/i.test(hex)) throw new Error(`not hex: ${hex.slice(0, 40)}`);
  return Buffer.from(hex, 'hex');
}

/**
 * Revives typed JSON. `encode` gives what our encoders take (tags kept as Field), `decode` what our decoders return.
 */
export function revive(v: unknown, mode: 'encode' | 'decode'): unknown {
  if (Array.isArray(v)) return v.map((x) => revive(x, mode));
  if (v === null || typeof v !== 'object') return v;
  const o = v as Record<string, unknown>;
  if ('$bytes' in o) return Buffer.from(o['$bytes'] as string, 'hex');
  if ('$utf8' in o) return Buffer.from(o['$utf8'] as string, 'utf8');
  if ('$date' in o) return new Date((o['$date'] as number) * 1000);
  if ('$bigint' in o)
    return mode === 'decode' ? int64Back(BigInt(o['$bigint'] as string)) : BigInt(o['$bigint'] as string);
  if ('$num' in o) return Number(o['$num']);
  if ('$decimal' in o) {
    const [s, d] = o['$decimal'] as [number, number];
    return new Decimal(s, d);
  }
  if ('$field' in o) {
    const [tag, inner] = o['$field'] as [FieldTag, unknown];
    const value = revive(inner, 'encode');
    return mode === 'encode' ? field(tag, value as never) : taggedBack(tag, value);
  }
  // Own properties only, defined (not assigned) so that a "__proto__" key stays a key.
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o))
    Object.defineProperty(out, k, { value: revive(o[k], mode), enumerable: true, writable: true, configurable: true });
  return out;
}

// ---- the four checks ------------------------------------------------------------------------------------------------

const FRAME_TYPE: Partial<Record<VectorKind, number>> = {
  method: FRAME_METHOD,
  header: FRAME_HEADER,
  body: FRAME_BODY,
  heartbeat: FRAME_HEARTBEAT,
};
const ERRORS: Record<string, abstract new (...args: never[]) => AmqpError> = { FrameError, ArgumentError };

/** Decodes one frame's payload according to the vector's kind. */
function decodePayload(kind: VectorKind, payload: Buffer): unknown {
  switch (kind) {
    case 'method': {
      const m = decodeMethod(payload);
      return { name: m.name, args: m.args };
    }
    case 'header':
      return readContentHeader(payload);
    case 'body':
      return Buffer.from(payload);
    case 'heartbeat':
      return payload.length === 0 ? null : payload;
    default:
      throw new Error(`not a frame kind: ${kind}`);
  }
}

/** Reads the chunks as one frame of the vector's kind and decodes it. */
function parseFrame(v: Vector, chunks: readonly Buffer[]): unknown {
  const frames = readFrames(chunks, v.frameMax ?? 131072);
  assert.is(frames.length, 1, `${v.name}: one frame`);
  const f = frames[0]!;
  assert.is(f.type, FRAME_TYPE[v.kind], `${v.name}: frame type`);
  if (v.channel !== undefined) assert.is(f.channel, v.channel, `${v.name}: channel`);
  return decodePayload(v.kind, f.payload);
}

/** The bytes our encoders produce for the vector's expected value. */
export function generate(v: Vector): Buffer {
  const e = revive(v.expect, 'encode') as Record<string, unknown>;
  const ch = v.channel ?? 0;
  switch (v.kind) {
    case 'method':
      return methodFrame(ch, e['name'] as string, e['args'] as Record<string, unknown>);
    case 'header':
      return frame(
        FRAME_HEADER,
        ch,
        encodeHeader(e['bodySize'] as number, e['properties'] as MessageProperties, e['classId'] as number),
      );
    case 'body':
      return bodyFrame(ch, e as unknown as Buffer);
    case 'heartbeat':
      return Buffer.from(HEARTBEAT_FRAME);
    case 'table':
      return encodeTable(e as FieldTable);
    default:
      throw new Error(`cannot generate ${v.kind}`);
  }
}

/** A table vector carried as the headers of a content header frame, so that it can be split like a frame. */
function tableInHeader(table: Buffer): Buffer {
  const payload = Buffer.alloc(14 + table.length);
  payload.writeUInt16BE(60, 0);
  payload.writeUInt16BE(0x2000, 12); // headers only
  table.copy(payload, 14);
  return frame(FRAME_HEADER, 1, payload);
}

/** Runs parse, generate, mirror and split for a positive vector, or the expected error (whole and split) otherwise. */
export function checkVector(v: Vector): void {
  const bytes = hexBytes(v.bytes);
  if (v.error !== undefined) return checkErrorVector(v, bytes);
  const expected = revive(v.expect, 'decode');
  if (v.kind === 'table') {
    equalExact(decodeTable(bytes), expected, `${v.name}: parse`);
    if (v.refuse !== undefined) {
      throwsTyped(
        () => generate(v),
        errorClass(v.name, v.refuse.class),
        v.refuse.code,
        `${v.name}: generate is refused`,
      );
    } else {
      const gen = generate(v);
      assert.is(gen.toString('hex'), bytes.toString('hex'), `${v.name}: generate`);
      equalExact(decodeTable(gen), expected, `${v.name}: mirror`);
    }
    const carried = tableInHeader(bytes);
    for (let i = 0; i <= carried.length; i++) {
      const frames = readFrames(splitAt(carried, [i]));
      equalExact(readContentHeader(frames[0]!.payload).properties.headers, expected, `${v.name}: split at ${i}`);
    }
    return;
  }
  equalExact(parseFrame(v, [bytes]), expected, `${v.name}: parse`);
  if (v.refuse !== undefined) {
    throwsTyped(() => generate(v), errorClass(v.name, v.refuse.class), v.refuse.code, `${v.name}: generate is refused`);
  } else {
    const gen = generate(v);
    assert.is(gen.toString('hex'), bytes.toString('hex'), `${v.name}: generate`);
    equalExact(parseFrame(v, [gen]), expected, `${v.name}: mirror`);
  }
  for (let i = 0; i <= bytes.length; i++)
    equalExact(parseFrame(v, splitAt(bytes, [i])), expected, `${v.name}: split at ${i}`);
}

function errorClass(name: string, cls: string): abstract new (...args: never[]) => AmqpError {
  const c = ERRORS[cls];
  if (c === undefined) throw new Error(`${name}: unknown error class ${cls}`);
  return c;
}

function checkErrorVector(v: Vector, bytes: Buffer): void {
  const cls = errorClass(v.name, v.error!.class);
  const run = (chunks: readonly Buffer[]): unknown => {
    if (v.kind === 'table') return decodeTable(Buffer.concat(chunks));
    if (v.kind === 'stream') return readFrames(chunks, v.frameMax ?? 131072);
    return parseFrame(v, chunks);
  };
  throwsTyped(() => run([bytes]), cls, v.error!.code, `${v.name}: whole`);
  if (v.kind === 'table') return;
  for (let i = 0; i <= bytes.length; i++)
    throwsTyped(() => run(splitAt(bytes, [i])), cls, v.error!.code, `${v.name}: split at ${i}`);
}
