/**
 * amqplib 2.3.1 (a dev dependency) as an independent oracle: its generated method and property codecs
 * (lib/defs.js) and its field-table codec (lib/codec.js). Loaded by path because the package's `exports` hide lib/.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Decimal, Field, type FieldTag } from '../../src/amqp/table.js';

/** The repository root (the first directory above this file with a package.json: /work/main, not .out). */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('no package.json above the test helpers');
    dir = up;
  }
  return dir;
}

export interface AmqplibArg {
  readonly type: string;
  readonly name: string;
  readonly default?: unknown;
}
export interface AmqplibMethodInfo {
  readonly id: number;
  readonly classId: number;
  readonly methodId: number;
  readonly name: string;
  readonly args: readonly AmqplibArg[];
}

export interface AmqplibDefs {
  encodeMethod(id: number, channel: number, fields: Record<string, unknown>): Buffer;
  encodeProperties(id: number, channel: number, size: number, fields: Record<string, unknown>): Buffer;
  decode(id: number, buf: Buffer): Record<string, unknown>;
  info(id: number): AmqplibMethodInfo;
}

export interface AmqplibCodec {
  encodeTable(buf: Buffer, val: unknown, offset: number): number;
  decodeFields(buf: Buffer): Record<string, unknown>;
}

const require = createRequire(import.meta.url);
const lib = join(repoRoot(), 'node_modules', 'amqplib', 'lib');
export const amqplibDefs = require(join(lib, 'defs.js')) as AmqplibDefs;
export const amqplibCodec = require(join(lib, 'codec.js')) as AmqplibCodec;

/** amqplib's info for a method id, or undefined when it does not know the method. */
export function amqplibInfo(classId: number, methodId: number): AmqplibMethodInfo | undefined {
  try {
    return amqplibDefs.info(classId * 65536 + methodId);
  } catch {
    return undefined;
  }
}

const AMQPLIB_TYPE: Record<FieldTag, string> = {
  t: 'boolean',
  b: 'int8',
  B: 'uint8',
  s: 'int16',
  u: 'uint16',
  I: 'int32',
  i: 'uint32',
  l: 'int64',
  f: 'float',
  d: 'double',
  D: 'decimal',
  S: 'string',
  x: 'bytes',
  A: 'array',
  T: 'timestamp',
  F: 'table',
  V: 'void',
};

/**
 * Our field value in amqplib's notation (`{'!': type, value}`), with every number tagged explicitly so both sides
 * encode the same type. Returns undefined for what amqplib cannot express (negative decimals, 'S' given as bytes).
 */
export function toAmqplib(v: unknown): unknown {
  if (v instanceof Field) {
    const inner = v.value;
    switch (v.tag) {
      case 't':
      case 'A':
      case 'F':
      case 'V':
        return toAmqplib(inner);
      case 'S':
        if (typeof inner !== 'string') throw new Unexpressible();
        return inner;
      case 'x':
        return Buffer.from(inner as Uint8Array);
      case 'T':
        return { '!': 'timestamp', value: inner instanceof Date ? Math.floor(inner.getTime() / 1000) : inner };
      case 'D':
        return decimal(inner as Decimal);
      default:
        return { '!': AMQPLIB_TYPE[v.tag], value: inner };
    }
  }
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) return { '!': 'double', value: v };
    return { '!': v >= -0x80000000 && v <= 0x7fffffff ? 'int32' : 'int64', value: v };
  }
  if (typeof v === 'bigint') return { '!': 'int64', value: v };
  if (v instanceof Date) return { '!': 'timestamp', value: Math.floor(v.getTime() / 1000) };
  if (v instanceof Decimal) return decimal(v);
  if (v instanceof Uint8Array) return Buffer.from(v);
  if (v === undefined) throw new Unexpressible(); // amqplib cannot put undefined in an array
  if (Array.isArray(v)) return v.map(toAmqplib);
  if (v !== null && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) o[k] = toAmqplib(x);
    return o;
  }
  return v;
}

function decimal(d: Decimal): unknown {
  if (d.value < 0) throw new Unexpressible(); // amqplib writes the digits as uint32
  return { '!': 'decimal', value: { places: d.scale, digits: d.value } };
}

/** Thrown by toAmqplib for a value amqplib's encoder has no notation for. */
export class Unexpressible extends Error {}

/** Our decoded value in the shape amqplib's decoder returns (timestamps, decimals tagged; int64 as a number). */
export function asAmqplibDecoded(v: unknown): unknown {
  if (v instanceof Date) return { '!': 'timestamp', value: v.getTime() / 1000 };
  if (v instanceof Decimal) return { '!': 'decimal', value: { places: v.scale, digits: v.value >>> 0 } };
  if (typeof v === 'bigint') return Number(v);
  if (Buffer.isBuffer(v)) return v;
  if (Array.isArray(v)) return v.map(asAmqplibDecoded);
  if (v !== null && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = asAmqplibDecoded(x);
    return o;
  }
  return v;
}
