/**
 * Writes JSON text straight into a Buffer: the bus hands it the region right after an AMQP content frame header, so
 * an eBADGE message is encoded once, in place, with no intermediate string and no second copy.
 *
 * The output is byte for byte what `Buffer.from(JSON.stringify(value))` gives for the same values: the same escapes
 * (`\"` `\\` `\b` `\f` `\n` `\r` `\t`, `\u00XX` for other controls, `\uDXXX` for lone surrogates, as ES2019's
 * well-formed JSON.stringify), UTF-8 for everything else, and numbers as `String(n)`. Non-finite numbers are refused:
 * JSON has no NaN, and the data model forbids them (§3.2 "num").
 *
 * The writer either owns a growable buffer, or writes into a caller's buffer between `offset` and `limit`, where it
 * throws an EncodeError of kind `capacity` rather than write past the limit.
 */
import { throwRangeError } from '../core/errors.js';
import { EncodeError } from './errors.js';
import type { EbTime } from './time.js';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const HEX = '0123456789abcdef';
/** Escape sequences JSON.stringify uses for the short-form controls. */
const SHORT_ESCAPE: Readonly<Record<number, number>> = { 8: 0x62, 12: 0x66, 10: 0x6e, 13: 0x72, 9: 0x74 };
/** eBADGE messages nest four levels at most; one bit per level of the `#first` mask. */
const MAX_DEPTH = 31;

export class JsonWriter {
  declare buf: Buffer;
  declare pos: number;
  declare readonly start: number;
  #limit: number;
  readonly #growable: boolean;
  /** One bit per open container: set while it has no element yet (so no comma is due). */
  #first = 0;
  #depth = 0;

  /** A writer into `target` from `offset` up to `limit` (default: its end), or into its own growable buffer. */
  constructor(target?: Buffer, offset = 0, limit = target?.length ?? 0) {
    if (target === undefined) {
      this.buf = Buffer.allocUnsafe(512);
      this.#limit = this.buf.length;
      this.#growable = true;
    } else {
      if (offset < 0 || limit > target.length || offset > limit)
        throwRangeError(`JsonWriter: region [${offset}, ${limit}) is outside a buffer of ${target.length}`);
      this.buf = target;
      this.#limit = limit;
      this.#growable = false;
    }
    this.start = this.pos = target === undefined ? 0 : offset;
  }

  /** Bytes written so far. */
  get length(): number {
    return this.pos - this.start;
  }

  /** The JSON written so far, as a view of the buffer. */
  bytes(): Buffer {
    return this.buf.subarray(this.start, this.pos);
  }

  beginObject(): this {
    this.#open(0x7b);
    return this;
  }

  endObject(): this {
    this.#close(0x7d);
    return this;
  }

  beginArray(): this {
    this.#open(0x5b);
    return this;
  }

  endArray(): this {
    this.#close(0x5d);
    return this;
  }

  /** An object key (escaped like any string), followed by the colon. */
  key(name: string): this {
    this.#comma();
    this.#string(name);
    this.#ensure(1);
    this.buf[this.pos++] = COLON;
    this.#first |= 1 << this.#depth; // the value after a key takes no comma
    return this;
  }

  /** A key encoded ahead of time by `JsonWriter.encodeKey`: schema-driven encoders write their field names this way. */
  rawKey(encoded: Buffer): this {
    this.#comma();
    this.#ensure(encoded.length);
    this.buf.set(encoded, this.pos);
    this.pos += encoded.length;
    this.#first |= 1 << this.#depth;
    return this;
  }

  /** `"name":` as bytes, for rawKey. */
  static encodeKey(name: string): Buffer {
    const w = new JsonWriter();
    w.#string(name);
    w.#ensure(1);
    w.buf[w.pos++] = COLON;
    return Buffer.from(w.bytes());
  }

  string(s: string): this {
    this.#comma();
    this.#string(s);
    return this;
  }

  number(n: number): this {
    if (!Number.isFinite(n))
      throw new EncodeError('invalid', this.#where(), `${n} is not a finite number (JSON has no NaN or Infinity)`);
    this.#comma();
    const a = n < 0 ? -n : n;
    if (a < 1e15 && Number.isInteger(a)) {
      if (n < 0) this.#minus();
      this.#digits(a);
    } else if (!(a < 1e9 && a >= 0.001 && this.#decimal(n, a))) {
      const text = String(n);
      this.#ensure(text.length);
      this.pos += this.buf.write(text, this.pos, 'latin1');
    }
    return this;
  }

  /**
   * Readings and prices have a few decimals (1.5 kW, 0.125 EUR/kWh): written without String(n), which is the slow
   * part of number output. For 0.001 <= |n| < 1e9, the smallest k <= 3 such that n * 10^k is an integer m with
   * m / 10^k === n gives a decimal that parses back to n (both sides are correctly rounded) and that is the
   * shortest such one, which is exactly what String(n) prints. Otherwise returns false and String(n) is used.
   */
  #decimal(n: number, a: number): boolean {
    for (let k = 1, scale = 10; k <= 3; k++, scale *= 10) {
      const m = a * scale;
      if (!Number.isInteger(m) || m / scale !== a) continue;
      const ip = Math.floor(a);
      let frac = m - ip * scale;
      // a * 10^k can round to an integer one step late (9.13 * 100 = 913.0000000000001, 9.13 * 1000 = 9130):
      // drop the trailing zeros that leaves, so the digits stay the shortest.
      while (frac % 10 === 0) {
        frac /= 10;
        scale /= 10;
        k--;
      }
      if (n < 0) this.#minus();
      this.#digits(ip);
      this.#ensure(1 + k);
      this.buf[this.pos++] = 0x2e;
      for (let d = scale / 10, f = frac; d >= 1; d /= 10) {
        const digit = Math.floor(f / d);
        this.buf[this.pos++] = 0x30 + digit;
        f -= digit * d;
      }
      return true;
    }
    return false;
  }

  #minus(): void {
    this.#ensure(1);
    this.buf[this.pos++] = 0x2d;
  }

  boolean(b: boolean): this {
    this.#comma();
    this.#ascii(b ? 'true' : 'false');
    return this;
  }

  null(): this {
    this.#comma();
    this.#ascii('null');
    return this;
  }

  /** A timestamp in the canonical form the data model emits: `YYYY-MM-DDTHH:mm:ss.sssZ`. */
  time(t: EbTime): this {
    this.#comma();
    this.#ensure(26);
    this.buf[this.pos++] = QUOTE;
    this.pos = t.writeCanonical(this.buf, this.pos);
    this.buf[this.pos++] = QUOTE;
    return this;
  }

  /** Any JSON-compatible value (plain objects, arrays, strings, finite numbers, booleans, null). */
  value(v: unknown): this {
    switch (typeof v) {
      case 'string':
        return this.string(v);
      case 'number':
        return this.number(v);
      case 'boolean':
        return this.boolean(v);
      case 'object':
        if (v === null) return this.null();
        if (Array.isArray(v)) {
          this.beginArray();
          for (const x of v) this.value(x === undefined || typeof x === 'function' || typeof x === 'symbol' ? null : x);
          return this.endArray();
        }
        if (typeof (v as { toJSON?: unknown }).toJSON === 'function')
          return this.value((v as { toJSON(): unknown }).toJSON());
        this.beginObject();
        for (const k of Object.keys(v)) {
          const x = (v as Record<string, unknown>)[k];
          if (x === undefined || typeof x === 'function' || typeof x === 'symbol') continue;
          this.key(k).value(x);
        }
        return this.endObject();
      default:
        throw new EncodeError('invalid', this.#where(), `a ${typeof v} has no JSON form`);
    }
  }

  #open(ch: number): void {
    if (this.#depth >= MAX_DEPTH) throw new EncodeError('invalid', this.#where(), `nested deeper than ${MAX_DEPTH}`);
    this.#comma();
    this.#ensure(1);
    this.buf[this.pos++] = ch;
    this.#depth++;
    this.#first |= 1 << this.#depth;
  }

  #close(ch: number): void {
    if (this.#depth === 0) throw new EncodeError('invalid', this.#where(), 'closing a container that is not open');
    this.#ensure(1);
    this.buf[this.pos++] = ch;
    this.#first &= ~(1 << this.#depth);
    this.#depth--;
  }

  #comma(): void {
    const bit = 1 << this.#depth;
    if ((this.#first & bit) !== 0) {
      this.#first &= ~bit;
      return;
    }
    if (this.#depth === 0 && this.pos === this.start) return;
    this.#ensure(1);
    this.buf[this.pos++] = COMMA;
  }

  #where(): string {
    return `json at byte ${this.pos - this.start}`;
  }

  #ensure(n: number): void {
    if (this.pos + n <= this.#limit) return;
    if (!this.#growable) {
      throw new EncodeError(
        'capacity',
        this.#where(),
        `the message needs more than the ${this.#limit - this.start} bytes available`,
      );
    }
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
    this.#limit = next.length;
  }

  #ascii(text: string): void {
    this.#ensure(text.length);
    for (let i = 0; i < text.length; i++) this.buf[this.pos++] = text.charCodeAt(i);
  }

  #digits(n: number): void {
    // Non-negative integers below 1e15: fifteen digits at most, written right to left.
    let len = 1;
    for (let x = n; x >= 10; x = Math.floor(x / 10)) len++;
    this.#ensure(len);
    let at = this.pos + len;
    do {
      const q = Math.floor(n / 10);
      this.buf[--at] = 0x30 + (n - q * 10);
      n = q;
    } while (n > 0);
    this.pos += len;
  }

  #string(s: string): void {
    const len = s.length;
    // Worst case 6 bytes per UTF-16 unit (\uXXXX), plus the quotes: checked once, not per character. Near the end of
    // a caller's region the exact size decides instead, so a message that fits is never refused.
    if (this.pos + len * 6 + 2 <= this.#limit || this.#growable) this.#ensure(len * 6 + 2);
    else this.#ensure(jsonStringSize(s));
    const buf = this.buf;
    let p = this.pos;
    buf[p++] = QUOTE;
    for (let i = 0; i < len; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x20 && c < 0x80) {
        if (c === QUOTE || c === BACKSLASH) buf[p++] = BACKSLASH;
        buf[p++] = c;
      } else if (c < 0x20) {
        buf[p++] = BACKSLASH;
        const short = SHORT_ESCAPE[c];
        if (short !== undefined) {
          buf[p++] = short;
        } else {
          p = unicodeEscape(buf, p, c);
        }
      } else if (c < 0x800) {
        buf[p++] = 0xc0 | (c >> 6);
        buf[p++] = 0x80 | (c & 0x3f);
      } else if (c >= 0xd800 && c <= 0xdfff) {
        const next = i + 1 < len ? s.charCodeAt(i + 1) : 0;
        if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
          const cp = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
          buf[p++] = 0xf0 | (cp >> 18);
          buf[p++] = 0x80 | ((cp >> 12) & 0x3f);
          buf[p++] = 0x80 | ((cp >> 6) & 0x3f);
          buf[p++] = 0x80 | (cp & 0x3f);
          i++;
        } else {
          buf[p++] = BACKSLASH;
          p = unicodeEscape(buf, p, c); // a lone surrogate, escaped as ES2019 JSON.stringify does
        }
      } else {
        buf[p++] = 0xe0 | (c >> 12);
        buf[p++] = 0x80 | ((c >> 6) & 0x3f);
        buf[p++] = 0x80 | (c & 0x3f);
      }
    }
    buf[p++] = QUOTE;
    this.pos = p;
  }
}

/** Exact bytes of a string in JSON, quotes included (the same rules as #string). */
function jsonStringSize(s: string): number {
  let n = 2;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c < 0x80) n += c === QUOTE || c === BACKSLASH ? 2 : 1;
    else if (c < 0x20) n += SHORT_ESCAPE[c] !== undefined ? 2 : 6;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdfff) {
      const next = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        n += 4;
        i++;
      } else {
        n += 6;
      }
    } else n += 3;
  }
  return n;
}

/** Writes `uXXXX` (the backslash is already there). */
function unicodeEscape(buf: Buffer, p: number, c: number): number {
  buf[p++] = 0x75;
  buf[p++] = HEX.charCodeAt((c >> 12) & 15);
  buf[p++] = HEX.charCodeAt((c >> 8) & 15);
  buf[p++] = HEX.charCodeAt((c >> 4) & 15);
  buf[p++] = HEX.charCodeAt(c & 15);
  return p;
}
