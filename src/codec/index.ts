/**
 * The eBADGE data model codec: `decode(body)` turns the bytes of a message into a typed, validated Message;
 * `encode(message)` / `encodeInto(message, buffer, offset)` write one, validated, straight into a Buffer;
 * `bodyWriter(message)` lets whoever sends it have it encoded where the bytes go (the bus does: docs/bus.md).
 *
 * Decoding parses with JSON.parse on the body's text (V8's native parser; see bench/RESULTS.md "Codec: decode
 * path") and then walks the message's schema table. Before JSON.parse builds anything, the bytes must be UTF-8 and a
 * body over 4 KiB must stay within the nesting and value bounds (a tree costs many times its bytes: 1 MiB of `{},`
 * took 22 MB of heap and 0.2 s to parse). Bad input of any kind ends in a DecodeError carrying the eBADGE response
 * code, the JSON path and a sentence; nothing else is thrown.
 */
import { type BodyWriter, MORE_ROOM } from '../core/body-writer.js';
import { isObject } from '../core/is-object.js';
import { exceedsBounds, pathAt, withinBounds } from '../core/json-scan.js';
import { cut } from '../core/shown.js';
import { invalidUtf8At, LONE_SURROGATE } from '../core/utf8.js';
import { findDuplicateKey } from './duplicate-keys.js';
import { EncodeError, refuse, shown } from './errors.js';
import { JsonWriter } from './json-writer.js';
import { type Message, type MessageSchema, type MessageType, SCHEMAS, type Violation } from './messages.js';
import { colonsIn, type DecodeContext, decodeFields, encodeFields, isName } from './schema.js';

export { DecodeError, EncodeError, type ResponseCode } from './errors.js';
// The JSON Schema of a field type (SCHEMAS[type].fields[name].type) or a field table, for other languages.
export { jsonSchemaOf, objectSchema } from './json-schema.js';
export { JsonWriter } from './json-writer.js';
export { type Message, type MessageType, SCHEMAS } from './messages.js';
export { EbTime } from './time.js';

export interface DecodeLimits {
  /** Largest body accepted (default 1 MiB). */
  maxBytes?: number;
  /** Longest string (default 65,536 characters). */
  maxStringLength?: number;
  /** Longest array (default 100,000 items). */
  maxArrayLength?: number;
  /**
   * Deepest nesting inside `ext_*` and unknown values, which are kept or skipped as they are (default 16). The body
   * as a whole may nest twice as deep: a larger body nested deeper is refused before JSON.parse runs.
   */
  maxDepth?: number;
  /**
   * Most arrays, objects and object members in a body (default 50,000), counted over its bytes before JSON.parse
   * builds anything: what makes a parsed tree cost many times its bytes. Numbers, strings, true, false and null in
   * arrays are not counted: they cost about their bytes, which maxBytes bounds.
   */
  maxValues?: number;
}

export interface Decoded {
  message: Message;
  /** What was tolerated: unknown fields, documented errata (numeric strings, comma-joined signals). */
  diagnostics: string[];
}

const MSG_KEY = JsonWriter.encodeKey('msg');
/**
 * Bodies up to this size skip the bound check before JSON.parse: the largest tree they make is about 4,000 nodes
 * (a fraction of a megabyte, under a millisecond), and the schema walk refuses what nests too deep after it.
 */
const BOUND_CHECK_FROM = 4096;

export function decode(body: Uint8Array | string, limits: DecodeLimits = {}): Decoded {
  const maxBytes = limits.maxBytes ?? 1 << 20;
  const size = body.length;
  if (size > maxBytes) refuse(400, 'message', `a body of ${size} bytes exceeds the limit of ${maxBytes}`);
  const bytes =
    typeof body === 'string'
      ? undefined
      : Buffer.isBuffer(body)
        ? body
        : Buffer.from(body.buffer, body.byteOffset, size);
  const text = bytes === undefined ? (body as string) : bytes.toString('utf8');
  // Invalid UTF-8 decodes to U+FFFD; only then are the bytes checked, so that valid bodies pay nothing more.
  if (bytes !== undefined && text.indexOf('\uFFFD') !== -1) {
    const bad = invalidUtf8At(bytes);
    if (bad !== -1)
      refuse(
        400,
        placeOf(bytes, bad),
        `not valid UTF-8 at byte ${bad} (0x${(bytes[bad] as number).toString(16).padStart(2, '0')})`,
      );
  }
  const maxDepth = limits.maxDepth ?? 16;
  if (size > BOUND_CHECK_FROM) checkBounds(bytes ?? Buffer.from(text), 2 * maxDepth, limits.maxValues ?? 50_000);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    refuse(400, 'message', `not valid JSON (${(err as Error).message})`);
  }
  if (!isObject(value)) refuse(400, 'message', 'the body is not a JSON object');
  const obj = value as Record<string, unknown>;
  const msg = obj['msg'];
  if (typeof msg !== 'string') refuse(400, 'message.msg', 'the message type is missing');
  if (!Object.hasOwn(SCHEMAS, msg)) {
    if (msg.length > 255 || !isName(msg)) refuse(400, 'message.msg', `${shown(msg)} is not a message type name`);
    refuse(453, msg, `message type ${shown(msg)} is not recognized`);
  }
  // A string body may hold a lone surrogate raw as well as escaped; a Buffer's text only escaped (raw is not UTF-8).
  if (SURROGATE_ESCAPE.test(text) || (bytes === undefined && LONE_SURROGATE.test(text))) refuseLoneSurrogate(obj, msg);
  const schema = SCHEMAS[msg as MessageType] as unknown as MessageSchema;
  const ctx: DecodeContext = {
    diagnostics: [],
    maxStringLength: limits.maxStringLength ?? 65_536,
    maxArrayLength: limits.maxArrayLength ?? 100_000,
    maxDepth,
    colons: 0,
  };
  const out: Record<string, unknown> = { msg };
  decodeFields(schema.fields, obj, out, msg, ctx, 'msg');
  if (colonsIn(text) !== ctx.colons) {
    const path = findDuplicateKey(text, msg);
    if (path !== null) refuse(400, path, 'the key appears twice in one object');
  }
  const violation = schema.check?.(out as never, false, (d) => ctx.diagnostics.push(d));
  if (violation !== undefined) refuse(violation[0], violation[1], violation[2]);
  return { message: out as Message, diagnostics: ctx.diagnostics };
}

/** A `\\uD800`-`\\uDFFF` escape, its backslash not itself escaped: the text may hold a lone surrogate. */
const SURROGATE_ESCAPE = /(?:^|[^\\])(?:\\\\)*\\u[dD][89a-fA-F][0-9a-fA-F]{2}/;

/**
 * Refuses a string or key holding a lone surrogate: JSON may escape one (`"\\ud800"`), but it is not a character,
 * UTF-8 cannot carry it (invalid UTF-8 is refused the same way), and peers in other languages drop, replace or refuse
 * it (a routing key took it as U+FFFD). Only bodies whose text has such an escape are walked.
 */
function refuseLoneSurrogate(value: unknown, path: string): void {
  if (typeof value === 'string') {
    if (LONE_SURROGATE.test(value)) refuse(400, path, 'a lone surrogate is not a character');
  } else if (Array.isArray(value)) {
    for (const [i, v] of value.entries()) refuseLoneSurrogate(v, `${path}[${i}]`);
  } else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (LONE_SURROGATE.test(k)) refuse(400, path, 'a key holds a lone surrogate, which is not a character');
      refuseLoneSurrogate(v, `${path}.${k}`);
    }
  }
}

/** Refuses, before JSON.parse builds a tree, a body that nests deeper than `maxNesting` or holds too many values. */
function checkBounds(bytes: Buffer, maxNesting: number, maxValues: number): void {
  if (withinBounds(bytes, maxNesting, maxValues)) return;
  const over = exceedsBounds(bytes, maxNesting, maxValues);
  if (over === undefined) return;
  refuse(
    400,
    placeOf(bytes, over.at),
    over.bound === 'depth'
      ? `nested deeper than ${maxNesting} at byte ${over.at}`
      : `more than ${maxValues} arrays, objects and object members (at byte ${over.at})`,
  );
}

/**
 * The JSON path of the value at byte `at`, for a refusal found on the bytes (the bytes before it are UTF-8); past the
 * first 64 KiB only `message`, so that refusing a hostile body never costs a scan of a megabyte (the reason says the
 * byte offset), and cut at 256 characters.
 */
function placeOf(bytes: Buffer, at: number): string {
  if (at > 65_536) return 'message';
  const before = bytes.toString('utf8', 0, at);
  const path = pathAt(before, before.length, 'message');
  return cut(path, 256); // a key may be 64 KiB long
}

/** Encodes into a new Buffer (exactly the message's bytes). */
export function encode(message: Message): Buffer {
  const w = new JsonWriter();
  write(w, message);
  return Buffer.from(w.bytes());
}

/**
 * Encodes into `target` from `offset`, up to `limit` (default: the end of target), and returns the end offset:
 * the bus places the body right after the AMQP frame header this way. Fails with an EncodeError of kind
 * `capacity` when the region is too small, without writing past it.
 */
export function encodeInto(message: Message, target: Buffer, offset: number, limit = target.length): number {
  const w = new JsonWriter(target, offset, limit);
  write(w, message);
  return w.pos;
}

/** The largest body bodyWriter writes: what the AMQP client accepts by default (maxMessageBytes). */
const MAX_BODY_BYTES = 64 * 1024 * 1024;
/** Per message type, the room its last encoding needed plus an eighth: the next one of that type likely fits. */
const roomHints = new Map<string, number>();

/**
 * `message` as a BodyWriter (src/core/body-writer.ts): validated and encoded where the body is sent from (the AMQP
 * frame, the outbox record, an envelope's payload slot), once, with no intermediate buffer. Encoding happens when
 * the body is written, so the message must not change until then (for a publish: until it settles; one sent again
 * after a reconnection is encoded again). An invalid message makes writeTo throw its EncodeError.
 */
export function bodyWriter(message: Message): BodyWriter {
  return new MessageBody(message);
}

class MessageBody implements BodyWriter {
  readonly maxBytes = MAX_BODY_BYTES;
  declare readonly sizeHint: number;
  readonly #message: Message;

  constructor(message: Message) {
    this.#message = message;
    this.sizeHint = roomHints.get((message as { msg?: unknown }).msg as string) ?? 512;
  }

  writeTo(target: Buffer, offset: number, end: number): number {
    let at: number;
    try {
      at = encodeInto(this.#message, target, offset, end);
    } catch (err) {
      if (err instanceof EncodeError && err.kind === 'capacity' && end - offset < this.maxBytes) return MORE_ROOM;
      throw err;
    }
    const n = at - offset;
    roomHints.set(this.#message.msg, n + (n >> 3) + 16);
    return at;
  }
}

function write(w: JsonWriter, message: Message): void {
  if (typeof message !== 'object' || message === null)
    throw new EncodeError(
      'invalid',
      'message',
      `expected an object, got ${message === null ? 'null' : typeof message}`,
    );
  const msg = (message as { msg?: unknown }).msg;
  if (typeof msg !== 'string' || !Object.hasOwn(SCHEMAS, msg)) {
    throw new EncodeError(
      'invalid',
      'message.msg',
      `unknown message type ${typeof msg === 'string' ? shown(msg) : String(msg)}`,
    );
  }
  const schema = SCHEMAS[msg as MessageType] as unknown as MessageSchema;
  // The check across fields (from before to ...) runs first, so that an invalid message fails whatever the room.
  // It reads fields not validated yet: when it fails (a violation, or a throw on a field missing or of another
  // type), the fields are validated first, into a scratch writer, so that a bad field is named as itself.
  const fields = message as Record<string, unknown>;
  let violation: Violation | undefined;
  let threw = false;
  try {
    violation = schema.check?.(message as never, true, () => undefined);
  } catch {
    threw = true;
  }
  if (threw || violation !== undefined) {
    encodeFields(new JsonWriter(), schema.fields, schema.keys, fields, msg);
    if (threw) violation = schema.check?.(message as never, true, () => undefined);
    if (violation !== undefined) throw new EncodeError('invalid', violation[1], `${violation[2]} (${violation[0]})`);
  }
  w.beginObject().rawKey(MSG_KEY).string(msg);
  encodeFields(w, schema.fields, schema.keys, fields, msg);
  for (const k of Object.keys(message)) {
    if (k.startsWith('ext_')) w.key(k).value((message as Record<string, unknown>)[k]);
  }
  w.endObject();
}
