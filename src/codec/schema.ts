/**
 * One schema table per message type drives everything (data model §3.9, decision 5): the TypeScript type (inferred
 * from the table, never written twice), validation on both sides, encoding straight into a Buffer through
 * JsonWriter, and decoding from the parsed JSON value.
 *
 * A field is a FieldType (how one JSON value is checked, converted and written) plus two flags: optional (may be
 * absent) and nullable (may be null). Strict emit, lenient parse (§3.1): encoders refuse anything the data model
 * forbids; decoders accept the documented errata (a numeric string, comma-joined signal names) and record a
 * diagnostic, never silently.
 *
 * It stays one file (over 500 lines): the field types and the object type are one small language whose pieces call
 * each other (path, limits, diagnostics), read together when a rule of §3.1 changes. Their JSON Schema output is
 * json-schema.ts's, read from what each type says it was made by (`by`, `arg`), so that the hub does not carry it.
 */

import { isObject } from '../core/is-object.js';
import { DecodeError, EncodeError, type ResponseCode, refuse, shown } from './errors.js';
import { JsonWriter } from './json-writer.js';
import { EbTime } from './time.js';

/** Collected while decoding: what was tolerated (errata, unknown fields) and the limits in force. */
export interface DecodeContext {
  readonly diagnostics: string[];
  readonly maxStringLength: number;
  readonly maxArrayLength: number;
  /** Deepest nesting allowed inside `ext_*` and unknown values, which are kept or skipped as they are. */
  readonly maxDepth: number;
  /**
   * The colons the decoded values account for: one per object key, plus those inside keys and strings. JSON.parse
   * keeps the last of duplicate keys without a word; the text holding more colons than this is how we notice.
   */
  colons: number;
}

/** Colons in `s` (keys and string values may hold them: a time holds two or three). */
export function colonsIn(s: string): number {
  let n = 0;
  for (let i = s.indexOf(':'); i !== -1; i = s.indexOf(':', i + 1)) n++;
  return n;
}

/**
 * Walks a value kept as it is (`ext_*`) or ignored (unknown fields): its colons are counted, its depth is limited.
 * Iterative, so that a hostile depth cannot overflow the stack.
 */
export function walkOpaque(v: unknown, path: string, ctx: DecodeContext): void {
  const stack: unknown[] = [v, 0];
  while (stack.length > 0) {
    const d = stack.pop() as number;
    const x = stack.pop();
    if (typeof x === 'string') {
      ctx.colons += colonsIn(x);
      continue;
    }
    if (x === null || typeof x !== 'object') continue;
    if (d >= ctx.maxDepth) refuse(400, path, `nested deeper than ${ctx.maxDepth}`);
    if (Array.isArray(x)) {
      for (const y of x) stack.push(y, d + 1);
    } else {
      for (const k of Object.keys(x)) {
        ctx.colons += 1 + colonsIn(k);
        stack.push((x as Record<string, unknown>)[k], d + 1);
      }
    }
  }
}

/** A JSON Schema (draft 2020-12) fragment: emitted for other languages, and used by the tests' generators. */
export type JsonSchema = { readonly [key: string]: unknown };

export interface FieldType<T> {
  /** For messages: `string`, `time`, `uuid`, `number` ... */
  readonly name: string;
  /**
   * The factory below that made this type, and the argument it was given (its options, values, item or fields):
   * what jsonSchemaOf() (json-schema.ts) writes its JSON Schema from. The hub, which never writes a schema, does
   * not carry that code.
   */
  readonly by: (...args: never[]) => FieldType<unknown>;
  readonly arg?: unknown;
  /** Decodes the value found at `parent` + `key`; the path string is only built for an error or a diagnostic. */
  decode(v: unknown, parent: string, key: string | number, ctx: DecodeContext): T;
  /** Writes `v`, the value at `parent` + `key`; the path string is only built for an error. */
  encode(w: JsonWriter, v: T, parent: string, key: string | number): void;
}

export interface Field<T, O extends boolean = boolean, N extends boolean = boolean> {
  readonly type: FieldType<T>;
  readonly optional: O;
  readonly nullable: N;
}

export type Fields = Readonly<Record<string, Field<unknown>>>;

type ValueOf<F> = F extends Field<infer T, boolean, infer N> ? (N extends true ? T | null : T) : never;
type RequiredKeys<F extends Fields> = {
  [K in keyof F]: F[K] extends Field<unknown, false, boolean> ? K : never;
}[keyof F];
type OptionalKeys<F extends Fields> = Exclude<keyof F, RequiredKeys<F>>;
/** The object type a field table describes: required keys plain, optional ones with `?`. */
export type Infer<F extends Fields> = { [K in RequiredKeys<F>]: ValueOf<F[K]> } & {
  [K in OptionalKeys<F>]?: ValueOf<F[K]>;
};

export const required = <T>(type: FieldType<T>): Field<T, false, false> => ({ type, optional: false, nullable: false });
export const optional = <T>(type: FieldType<T>): Field<T, true, false> => ({ type, optional: true, nullable: false });
export const nullable = <T>(type: FieldType<T>): Field<T, false, true> => ({ type, optional: false, nullable: true });
export const optionalNullable = <T>(type: FieldType<T>): Field<T, true, true> => ({
  type,
  optional: true,
  nullable: true,
});

/** The JSON path of a field or an array item: `report.values.total.p`, `get_report.signals[2]`. */
export function at(parent: string, key: string | number): string {
  return typeof key === 'number' ? `${parent}[${key}]` : `${parent}.${key}`;
}

function typeError(path: string, expected: string, v: unknown): DecodeError {
  const got =
    v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'string' ? `the string ${shown(v)}` : typeof v;
  return new DecodeError(400, path, `expected ${expected}, got ${got}`);
}

function emitError(path: string, reason: string): EncodeError {
  return new EncodeError('invalid', path, reason);
}

// ---- field types ------------------------------------------------------------------------------------------------

/** The UUID pattern checked by hand (a regular expression costs more than the rest of a field's decoding). */
function isUuid(s: string): boolean {
  if (s.length !== 36) return false;
  for (let i = 0; i < 36; i++) {
    const c = s.charCodeAt(i);
    if (i === 8 || i === 13 || i === 18 || i === 23) {
      if (c !== 0x2d) return false;
    } else if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66))) {
      return false;
    }
  }
  return true;
}

/** A name per D3.1.3 §4, `[A-Za-z][A-Za-z0-9_]*`, checked by hand: the regular expression is slower. */
export function isName(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a)) continue;
    if (i > 0 && (c === 0x5f || (c >= 0x30 && c <= 0x39))) continue;
    return false;
  }
  return true;
}

export function string(opts: { max?: number; pattern?: RegExp; what?: string } = {}): FieldType<string> {
  const what = opts.what ?? 'a string';
  const check = (s: string, path: string, fail: (path: string, reason: string) => Error, limit: number): void => {
    const max = Math.min(opts.max ?? limit, limit);
    if (s.length > max) throw fail(path, `a string of ${s.length} characters exceeds the limit of ${max}`);
    if (opts.pattern !== undefined && !opts.pattern.test(s)) throw fail(path, `${shown(s)} is not ${what}`);
  };
  return {
    name: 'string',
    by: string,
    arg: opts,
    decode(v, parent, key, ctx) {
      if (typeof v !== 'string') throw typeError(at(parent, key), what, v);
      if (
        v.length > ctx.maxStringLength ||
        (opts.max !== undefined && v.length > opts.max) ||
        (opts.pattern !== undefined && !opts.pattern.test(v))
      ) {
        check(
          v,
          at(parent, key),
          (p, r) => new DecodeError(v.length > (opts.max ?? ctx.maxStringLength) ? 400 : 454, p, r),
          ctx.maxStringLength,
        );
      }
      if (v.indexOf(':') !== -1) ctx.colons += colonsIn(v);
      return v;
    },
    encode(w, v, parent, key) {
      if (typeof v !== 'string') throw emitError(at(parent, key), `expected ${what}`);
      check(v, at(parent, key), emitError, Infinity);
      w.string(v);
    },
  };
}

/** A lowercase UUID (data model §3.2); upper case is accepted on input and normalised. */
export function uuid(): FieldType<string> {
  return {
    name: 'uuid',
    by: uuid,
    decode(v, parent, key) {
      if (typeof v !== 'string') throw typeError(at(parent, key), 'a UUID string', v);
      if (isUuid(v)) return v;
      const s = v.length === 36 ? v.toLowerCase() : v;
      if (!isUuid(s)) refuse(454, at(parent, key), `${shown(v)} is not a UUID`);
      return s;
    },
    encode(w, v, parent, key) {
      if (typeof v !== 'string' || !isUuid(v))
        throw emitError(at(parent, key), `${typeof v === 'string' ? shown(v) : typeof v} is not a lowercase UUID`);
      w.string(v);
    },
  };
}

/** A name per D3.1.3 §4: `[A-Za-z][A-Za-z0-9_]*`. */
export function name(): FieldType<string> {
  const what = 'a name ([A-Za-z][A-Za-z0-9_]*)';
  return {
    name: 'string',
    by: name,
    decode(v, parent, key) {
      if (typeof v !== 'string') throw typeError(at(parent, key), what, v);
      if (v.length > 255) refuse(400, at(parent, key), `a string of ${v.length} characters exceeds the limit of 255`);
      if (!isName(v)) refuse(454, at(parent, key), `${shown(v)} is not ${what}`);
      return v; // a name holds no colon
    },
    encode(w, v, parent, key) {
      if (typeof v !== 'string' || v.length > 255 || !isName(v))
        throw emitError(at(parent, key), `${typeof v === 'string' ? shown(v) : typeof v} is not ${what}`);
      w.string(v);
    },
  };
}

export function time(): FieldType<EbTime> {
  return {
    name: 'time',
    by: time,
    decode(v, parent, key, ctx) {
      if (typeof v !== 'string') throw typeError(at(parent, key), 'an ISO 8601 time with an offset', v);
      try {
        const t = EbTime.parse(v);
        ctx.colons += v.length === 24 ? 2 : colonsIn(v);
        return t;
      } catch {
        return EbTime.parse(v, at(parent, key)); // fails again, now naming the field
      }
    },
    encode(w, v, parent, key) {
      if (!(v instanceof EbTime))
        throw emitError(at(parent, key), 'expected an EbTime (a time with an offset; a naive time cannot be emitted)');
      w.time(v);
    },
  };
}

interface NumberOpts {
  min?: number;
  max?: number;
  integer?: boolean;
  what?: string;
}

/** A finite number (NaN and Infinity are refused both ways). A numeric string is accepted with a diagnostic. */
export function number(opts: NumberOpts = {}): FieldType<number> {
  const what = opts.what ?? (opts.integer === true ? 'an integer' : 'a number');
  const checked = opts.integer === true || opts.min !== undefined || opts.max !== undefined;
  const range = (n: number, path: string, fail: (path: string, reason: string) => Error): void => {
    if (opts.integer === true && !Number.isSafeInteger(n))
      // 2^53 + 1 reads as 9007199254740992, an integer: what is wrong with it is that it lost its last digit.
      throw fail(
        path,
        Number.isInteger(n) ? `${n} is past 2^53 - 1, the largest exact integer` : `${n} is not an integer`,
      );
    if (opts.min !== undefined && n < opts.min) throw fail(path, `${n} is below the minimum ${opts.min}`);
    if (opts.max !== undefined && n > opts.max) throw fail(path, `${n} is above the maximum ${opts.max}`);
  };
  return {
    name: opts.integer === true ? 'integer' : 'number',
    by: number,
    arg: opts,
    decode(v, parent, key, ctx) {
      let n: number;
      if (typeof v === 'number') {
        n = v;
      } else if (typeof v === 'string' && /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(v)) {
        // D3.1.3's modify_activation example sends "quantity":"3.6": read it, say so, never emit it that way.
        n = Number(v);
        ctx.diagnostics.push(`${at(parent, key)}: numeric string ${shown(v)} read as a number`);
      } else {
        throw typeError(at(parent, key), what, v);
      }
      if (!Number.isFinite(n)) refuse(454, at(parent, key), `${shown(String(v))} is not a finite number`);
      if (checked) range(n, at(parent, key), (p, r) => new DecodeError(454, p, r));
      return n;
    },
    encode(w, v, parent, key) {
      if (typeof v !== 'number' || !Number.isFinite(v))
        throw emitError(at(parent, key), `${String(v)} is not a finite number`);
      if (checked) range(v, at(parent, key), emitError);
      w.number(v);
    },
  };
}

export const integer = (opts: Omit<NumberOpts, 'integer'> = {}): FieldType<number> =>
  number({ ...opts, integer: true });

export function boolean(): FieldType<boolean> {
  return {
    name: 'boolean',
    by: boolean,
    decode(v, parent, key) {
      if (typeof v !== 'boolean') throw typeError(at(parent, key), 'true or false', v);
      return v;
    },
    encode(w, v, parent, key) {
      if (typeof v !== 'boolean') throw emitError(at(parent, key), 'expected a boolean');
      w.boolean(v);
    },
  };
}

export function oneOf<const E extends string>(values: readonly E[], code: ResponseCode = 454): FieldType<E> {
  const set = new Set<string>(values);
  if (values.some((x) => x.includes(':')))
    throw new Error('oneOf: a colon in an enum value would upset the duplicate-key count');
  return {
    name: `enum(${values.join('|')})`,
    by: oneOf,
    arg: values,
    decode(v, parent, key) {
      if (typeof v !== 'string') throw typeError(at(parent, key), `one of ${values.join(', ')}`, v);
      if (!set.has(v)) refuse(code, at(parent, key), `${shown(v)} is not one of ${values.join(', ')}`);
      return v as E;
    },
    encode(w, v, parent, key) {
      if (!set.has(v)) throw emitError(at(parent, key), `${shown(String(v))} is not one of ${values.join(', ')}`);
      w.string(v);
    },
  };
}

function checkArrayLength(v: unknown[], path: string, ctx: DecodeContext): void {
  if (v.length > ctx.maxArrayLength)
    refuse(400, path, `an array of ${v.length} items exceeds the limit of ${ctx.maxArrayLength}`);
}

export function arrayOf<T>(item: FieldType<T>): FieldType<T[]> {
  return list(item, false, arrayOf);
}

/** An array whose items may be null (a missing sample in `report.values`, data model §3.2 "num"). */
export function arrayOfNullable<T>(item: FieldType<T>): FieldType<(T | null)[]> {
  return list<T | null>(item as FieldType<T | null>, true, arrayOfNullable);
}

/** arrayOf and arrayOfNullable: one walk, `nulls` telling whether an item may be null. */
function list<T>(item: FieldType<T>, nulls: boolean, by: FieldType<T[]>['by']): FieldType<T[]> {
  return {
    name: nulls ? `(${item.name}|null)[]` : `${item.name}[]`,
    by,
    arg: item,
    decode(v, parent, key, ctx) {
      if (!Array.isArray(v)) throw typeError(at(parent, key), `an array of ${item.name}${nulls ? ' or null' : ''}`, v);
      const path = at(parent, key);
      checkArrayLength(v, path, ctx);
      const out = new Array<T>(v.length);
      for (let i = 0; i < v.length; i++)
        out[i] = nulls && v[i] === null ? (null as T) : item.decode(v[i], path, i, ctx);
      return out;
    },
    encode(w, v, parent, key) {
      if (!Array.isArray(v)) throw emitError(at(parent, key), 'expected an array');
      const path = at(parent, key);
      w.beginArray();
      for (let i = 0; i < v.length; i++) {
        const x = v[i];
        if (nulls && (x === null || x === undefined)) w.null();
        else item.encode(w, x as T, path, i);
      }
      w.endArray();
    },
  };
}

/** A JSON object used as a map (e.g. `report.values`: signal name -> samples); keys are non-empty, <= 255 chars. */
export function mapOf<T>(value: FieldType<T>): FieldType<Record<string, T>> {
  const badKey = (k: string): boolean => k.length === 0 || k.length > 255;
  const badKeyReason = (k: string): string => `key ${shown(k)} is empty or longer than 255 characters`;
  return {
    name: `map<${value.name}>`,
    by: mapOf,
    arg: value,
    decode(v, parent, key, ctx) {
      const path = at(parent, key);
      if (!isObject(v)) throw typeError(path, 'an object', v);
      const out: Record<string, T> = {};
      const keys = Object.keys(v);
      ctx.colons += keys.length;
      for (const k of keys) {
        if (k.indexOf(':') !== -1) ctx.colons += colonsIn(k);
        if (badKey(k)) refuse(454, path, badKeyReason(k));
        const x = value.decode((v as Record<string, unknown>)[k], path, k, ctx);
        // A key named __proto__ must become an own property, never the object's prototype.
        if (k === '__proto__')
          Object.defineProperty(out, k, { value: x, enumerable: true, writable: true, configurable: true });
        else out[k] = x;
      }
      return out;
    },
    encode(w, v, parent, key) {
      if (v === null || typeof v !== 'object') throw emitError(at(parent, key), 'expected an object');
      const path = at(parent, key);
      w.beginObject();
      for (const k of Object.keys(v)) {
        if (badKey(k)) throw emitError(at(parent, key), badKeyReason(k));
        w.key(k);
        value.encode(w, v[k] as T, path, k);
      }
      w.endObject();
    },
  };
}

// ---- objects ----------------------------------------------------------------------------------------------------

/** Encodes the fields of `spec` from `v` (which the caller has opened as a JSON object). */
export function encodeFields(
  w: JsonWriter,
  spec: Fields,
  keys: Readonly<Record<string, Buffer>>,
  v: Record<string, unknown>,
  path: string,
): void {
  for (const k in spec) {
    const f = spec[k] as Field<unknown>;
    const x = v[k];
    if (x === undefined) {
      if (!f.optional) throw emitError(`${path}.${k}`, 'required field missing');
      continue;
    }
    if (x === null) {
      if (!f.nullable) throw emitError(`${path}.${k}`, 'may not be null');
      w.rawKey(keys[k] as Buffer).null();
      continue;
    }
    w.rawKey(keys[k] as Buffer);
    f.type.encode(w, x, path, k);
  }
}

/**
 * Decodes the fields of `spec` from the parsed object `v` into `out`. Unknown `ext_*` fields are kept (they must
 * survive re-encoding); other unknown fields are ignored, as the 2015 peers do, and listed in the diagnostics.
 */
export function decodeFields(
  spec: Fields,
  v: Record<string, unknown>,
  out: Record<string, unknown>,
  path: string,
  ctx: DecodeContext,
  skip?: string,
): void {
  let present = skip !== undefined && v[skip] !== undefined ? 1 : 0;
  for (const k in spec) {
    const f = spec[k] as Field<unknown>;
    const x = v[k];
    if (x !== undefined) present++;
    if (x === undefined) {
      if (!f.optional) refuse(400, `${path}.${k}`, 'required field missing');
      continue;
    }
    if (x === null) {
      if (f.nullable) out[k] = null;
      else if (!f.optional) refuse(400, `${path}.${k}`, 'may not be null');
      else ctx.diagnostics.push(`${path}.${k}: null read as absent`);
      continue;
    }
    out[k] = f.type.decode(x, path, k, ctx);
  }
  const keys = Object.keys(v);
  ctx.colons += keys.length;
  if (keys.length === present) return; // every key is a known field: nothing unknown, no ext_
  for (const k of keys) {
    if (k === skip || Object.hasOwn(spec, k)) continue;
    ctx.colons += colonsIn(k);
    walkOpaque(v[k], `${path}.${k}`, ctx);
    if (k.startsWith('ext_')) {
      out[k] = v[k];
    } else {
      ctx.diagnostics.push(`${path}.${k}: unknown field ignored`);
    }
  }
}

/** Pre-encoded `"key":` bytes for every field of a table. */
export function encodedKeys(spec: Fields): Readonly<Record<string, Buffer>> {
  return Object.fromEntries(Object.keys(spec).map((k) => [k, JsonWriter.encodeKey(k)]));
}

/** A nested object with its own field table (e.g. a market `product`, an `energy_events` event). */
export function object<F extends Fields>(spec: F): FieldType<Infer<F>> {
  const keys = encodedKeys(spec);
  return {
    name: 'object',
    by: object,
    arg: spec,
    decode(v, parent, key, ctx) {
      const path = at(parent, key);
      if (!isObject(v)) throw typeError(path, 'an object', v);
      const out: Record<string, unknown> = {};
      decodeFields(spec, v as Record<string, unknown>, out, path, ctx);
      return out as Infer<F>;
    },
    encode(w, v, parent, key) {
      if (v === null || typeof v !== 'object') throw emitError(at(parent, key), 'expected an object');
      w.beginObject();
      encodeFields(w, spec, keys, v as Record<string, unknown>, at(parent, key));
      w.endObject();
    },
  };
}
