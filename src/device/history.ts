/**
 * The measurement history `get_report` and `get_load_report` are answered from: a ring of at least 24 h of samples at
 * the configured resolution, in memory for queries and on the SD card in compact segments so a reboot loses nothing.
 *
 * Disk format (all integers little-endian), segment files as in src/store/segment-log.ts. One file per hour of slots,
 * named `<startSlot, 10 digits>.<resolutionS>s.<tag>.seg`, e.g. `0028401120.60s.9a3c41d2.seg`, where slot =
 * floor(t / resolution) and tag = CRC32 of the configuration (resolution and signal list). A segment covers
 * N = max(1, floor(3600 / res)) slots starting at a multiple of N. Segment layout:
 *
 *   header   "EBHH" | u16 version (1) | u16 header length H | u32 resolutionS | u32 startSlot | u32 N |
 *            u16 signal count | per signal: u8 byte length, UTF-8 name | u32 CRC32 of the header's first H - 4 bytes
 *   records  (from offset H, fixed size 8 + 8 * signals) u32 slot | f64 per signal in header order, NaN = null |
 *            u32 CRC32 of the record's slot and values
 *
 * Append-only: a record rewritten for a slot already on disk is appended again, and the last one wins on reading.
 * Values are float64 because meter counters in Wh pass float32's 24-bit mantissa (16.7 MWh) within a few years, and
 * a counter rounded to 1-2 Wh steps makes every difference of two readings wrong; the cost is 16 B per record for
 * 4 signals. A u32 slot is enough: resolutions are whole seconds, so the slot stays below 2^32 until 2106.
 *
 * Reading back: every segment is read on open. A record with a bad CRC or a slot outside its segment is skipped
 * alone; a torn tail is cut off the current set's segments. A bad header, or one that does not match the file name,
 * gets the file renamed `.bad` (deleted by retention like the others); a newer format version of another set is
 * left alone. Problems are reported to `onWarning` as a HistoryError 'CORRUPT', never thrown: open succeeds.
 *
 * A change of the signal list starts a new segment set (another tag); older sets with the same resolution stay
 * readable, their signals mapped by name (a signal no longer configured is dropped, a new one is null there), so a
 * configuration change keeps the history. They are read before the current set, which therefore wins a slot both
 * hold. Segments written at another resolution would need resampling and are ignored with a warning.
 * Segments whose every slot is older than `retentionHours` are deleted on open and, as time passes, after a flush.
 *
 * Wear: record() only touches memory and marks the slot pending. A flush, at most once per `fsyncIntervalMs`
 * (default 60 s) unless called explicitly, appends each pending slot once (a slot recorded five times between two
 * flushes costs one record) with one fdatasync per segment touched, usually one; a new segment adds a directory
 * fsync, once an hour. For 4 signals at 60 s: ~2.5 kB and 60 fdatasyncs an hour (~1 MiB rewritten on the card),
 * ~60 kB a day in 24-25 files (the tests measure it). A longer fsyncIntervalMs scales the syncs down; it is also the
 * most a power cut can lose.
 *
 * Memory: the ring holds (retention + 5 min) / resolution slots x (signals + 1) x 8 B (24 h, 60 s, 4 signals: 58 kB).
 */

import { promises as fsp } from 'node:fs';
import { TextDecoder } from 'node:util';
import { EbadgeError } from '../core/errors.js';
import { crc32 } from '../store/crc32.js';
import { type RecordFraming, type SegmentFile, SegmentLog, scanRecords, sealRecord } from '../store/segment-log.js';

export type HistoryErrorCode = 'RESOLUTION' | 'CORRUPT' | 'IO';

export class HistoryError extends EbadgeError<HistoryErrorCode> {
  override name = 'HistoryError';
}

export interface HistoryOptions {
  resolutionS: number;
  /** `device.signal` names; their order is the order of the values on disk. */
  signals: string[];
  /** At least 24. */
  retentionHours: number;
  fsyncIntervalMs?: number;
  now?: () => number;
  /** Corrupt segments found on open ('CORRUPT') and failed background flushes ('IO'); default process.emitWarning. */
  onWarning?: (warning: HistoryError) => void;
}

export interface HistoryQuery {
  values: Record<string, (number | null)[]>;
  from: number;
  to: number;
  missing: string[];
}

// ---- format --------------------------------------------------------------------------------------------------

const MAGIC = 0x48484245; // "EBHH" read as a little-endian u32
const VERSION = 1;
const HEADER_FIXED = 22; // magic .. signal count
const NAME_RE = /^(\d{10})\.(\d+)s\.([0-9a-f]{8})\.seg(\.bad)?$/;
/** Device clocks run a little ahead of the hub's; samples further ahead than this are refused. */
const FUTURE_TOLERANCE_S = 300;
/** A query answer larger than this (slots x signals) would exhaust a Pi Zero's memory and the bus's frame size. */
const MAX_QUERY_VALUES = 1_000_000;
const utf8 = new TextDecoder('utf-8', { fatal: true });

const slotsPerSegment = (resolutionS: number): number => Math.max(1, Math.floor(3600 / resolutionS));
const segmentName = (start: number, resolutionS: number, tag: string): string =>
  `${String(start).padStart(10, '0')}.${resolutionS}s.${tag}.seg`;

interface Header {
  length: number;
  resolutionS: number;
  startSlot: number;
  span: number;
  signals: string[];
}

/** The header, or why it cannot be used ('version' when a later format wrote it). */
function parseHeader(buf: Buffer): Header | { bad: string } | 'version' {
  if (buf.length < HEADER_FIXED + 4) return { bad: 'shorter than a header' };
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (dv.getUint32(0, true) !== MAGIC) return { bad: 'bad magic' };
  if (dv.getUint16(4, true) !== VERSION) return 'version';
  const length = dv.getUint16(6, true);
  if (length < HEADER_FIXED + 4 || length > buf.length) return { bad: 'bad header length' };
  if (crc32(buf, 0, length - 4) !== dv.getUint32(length - 4, true)) return { bad: 'header CRC mismatch' };
  const count = dv.getUint16(20, true);
  const signals: string[] = [];
  let off = HEADER_FIXED;
  for (let i = 0; i < count; i++) {
    const n = off < length - 4 ? buf[off]! : -1;
    if (n < 1 || off + 1 + n > length - 4) return { bad: 'bad signal list' };
    try {
      signals.push(utf8.decode(buf.subarray(off + 1, off + 1 + n)));
    } catch {
      return { bad: 'signal name not UTF-8' };
    }
    off += 1 + n;
  }
  if (off !== length - 4 || count === 0) return { bad: 'bad signal list' };
  return {
    length,
    resolutionS: dv.getUint32(8, true),
    startSlot: dv.getUint32(12, true),
    span: dv.getUint32(16, true),
    signals,
  };
}

/** Header bytes from offset 8 on minus the start slot: what the tag identifies. */
function configBytes(resolutionS: number, signals: readonly string[]): Buffer {
  const names = signals.map((s) => Buffer.from(s, 'utf8'));
  const buf = Buffer.alloc(6 + names.reduce((a, b) => a + 1 + b.length, 0));
  buf.writeUInt32LE(resolutionS, 0);
  buf.writeUInt16LE(signals.length, 4);
  let off = 6;
  for (const b of names) {
    buf[off] = b.length;
    b.copy(buf, off + 1);
    off += 1 + b.length;
  }
  return buf;
}

function encodeHeader(config: Buffer, startSlot: number, span: number): Buffer {
  const length = HEADER_FIXED + (config.length - 6) + 4;
  const buf = Buffer.alloc(length);
  buf.writeUInt32LE(MAGIC, 0);
  buf.writeUInt16LE(VERSION, 4);
  buf.writeUInt16LE(length, 6);
  buf.writeUInt32LE(config.readUInt32LE(0), 8);
  buf.writeUInt32LE(startSlot, 12);
  buf.writeUInt32LE(span, 16);
  config.copy(buf, 20, 4);
  buf.writeUInt32LE(crc32(buf, 0, length - 4), length - 4);
  return buf;
}

/** The records of a segment of `signals` values from `start`: the offset of each good one. */
function records(signals: number, start: number, span: number): RecordFraming<number> {
  const size = 8 + 8 * signals;
  return {
    prefix: size,
    end: (_buf, off) => off + size,
    decode(buf, off) {
      const slot = buf.readUInt32LE(off);
      return slot >= start && slot < start + span ? off : undefined;
    },
  };
}

const ioError = (what: string, err: unknown): HistoryError =>
  err instanceof HistoryError ? err : new HistoryError('IO', `${what}: ${(err as Error).message}`, { cause: err });

export class History {
  readonly #log: SegmentLog;
  readonly #res: number;
  readonly #resMs: number;
  readonly #signals: readonly string[];
  readonly #index: ReadonlyMap<string, number>;
  readonly #retSlots: number;
  readonly #futureSlots: number;
  readonly #span: number;
  readonly #config: Buffer;
  readonly #tag: string;
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #onWarning: (w: HistoryError) => void;
  readonly #cap: number;
  /** Ring: the slot held at index slot % cap, or -1. */
  readonly #tags: Float64Array;
  /** Ring values, cap x signals, NaN = null. */
  readonly #vals: Float64Array;
  readonly #pending = new Set<number>();
  /** Segments of the current set, by start slot: the only files ever written. */
  readonly #segments = new Map<number, SegmentFile>();
  /** Files of other sets and `.bad` files: read-only, kept until they age out (name -> end time in ms). */
  readonly #others = new Map<string, number>();
  #lastFlushAt: number;
  #writing = false;
  #current: Promise<void> = Promise.resolve();
  #queued: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;

  /** Values of signals not configured, ignored. */
  dropped = 0;
  /** Samples outside the retained range or too far in the future, ignored. */
  rejected = 0;
  /** Records skipped on open as corrupt or torn. */
  skipped = 0;
  /** Flushes that wrote to disk; in steady state at most one per fsyncIntervalMs. */
  writes = 0;
  /** The last failure of a background flush (an explicit flush() rejects instead). */
  lastError: HistoryError | undefined;

  private constructor(dir: string, o: HistoryOptions) {
    const { resolutionS: res, signals, retentionHours } = o;
    if (!Number.isInteger(res) || res < 1 || res > 86_400)
      throw new RangeError('resolutionS must be a whole number of seconds from 1 to 86400');
    if (!Number.isFinite(retentionHours) || retentionHours < 24)
      throw new RangeError('retentionHours must be at least 24');
    if (signals.length === 0 || signals.length > 0xffff) throw new RangeError('signals must list 1 to 65535 names');
    if (new Set(signals).size !== signals.length) throw new RangeError('signals must be unique');
    for (const s of signals) {
      const n = Buffer.byteLength(s, 'utf8');
      if (n < 1 || n > 255) throw new RangeError(`signal name "${s}" must be 1 to 255 bytes of UTF-8`);
    }
    const interval = o.fsyncIntervalMs ?? 60_000;
    if (!Number.isFinite(interval) || interval <= 0) throw new RangeError('fsyncIntervalMs must be positive');
    this.#log = new SegmentLog(dir);
    this.#res = res;
    this.#resMs = res * 1000;
    this.#signals = [...signals];
    this.#index = new Map(signals.map((s, i) => [s, i]));
    this.#retSlots = Math.ceil((retentionHours * 3600) / res);
    this.#futureSlots = Math.max(1, Math.ceil(FUTURE_TOLERANCE_S / res));
    this.#span = slotsPerSegment(res);
    this.#config = configBytes(res, signals);
    this.#tag = crc32(this.#config).toString(16).padStart(8, '0');
    this.#intervalMs = interval;
    this.#now = o.now ?? Date.now;
    this.#onWarning = o.onWarning ?? ((w) => process.emitWarning(w));
    // The valid window [lo, hi] spans exactly cap slots, so two slots in it never share an index.
    this.#cap = this.#retSlots + this.#futureSlots;
    this.#tags = new Float64Array(this.#cap).fill(-1);
    this.#vals = new Float64Array(this.#cap * signals.length).fill(NaN);
    this.#lastFlushAt = this.#now();
  }

  static async open(dir: string, options: HistoryOptions): Promise<History> {
    const h = new History(dir, options);
    await h.#load();
    // A quarter of the interval: a due flush waits at most that long when no sample arrives to trigger it.
    h.#timer = setInterval(() => h.#tick(), Math.max(1000, h.#intervalMs / 4));
    h.#timer.unref();
    return h;
  }

  get signals(): readonly string[] {
    return this.#signals;
  }
  get resolutionS(): number {
    return this.#res;
  }
  /** fdatasync and directory fsync calls. */
  get syncs(): number {
    return this.#log.syncs;
  }

  /**
   * One sample for the slot of `t` (epoch ms). Signals present replace what the slot held, absent ones keep it, so
   * a slot can be filled by several calls; null and non-finite values are stored as null.
   */
  record(t: number, values: Readonly<Record<string, number | null>>): void {
    if (this.#closing !== undefined) throw new Error('the history is closed');
    const now = this.#now();
    const slot = Math.floor(t / this.#resMs);
    const [lo, hi] = this.#window(now);
    if (!Number.isFinite(slot) || slot < lo || slot > hi) {
      this.rejected++;
      return;
    }
    const n = this.#signals.length;
    let row = -1;
    for (const [name, v] of Object.entries(values)) {
      const j = this.#index.get(name);
      if (j === undefined) {
        this.dropped++;
        continue;
      }
      if (row < 0) row = this.#row(slot, true);
      this.#vals[row * n + j] = typeof v === 'number' && Number.isFinite(v) ? v : NaN;
    }
    if (row < 0) return;
    this.#pending.add(slot);
    if (this.#due(now)) this.#background();
  }

  /**
   * Averages of the stored slots per `resolutionS` step from `from` (epoch ms), the period extended to whole
   * steps. A step holds the stored slots whose start lies in it; nulls are left out of the average.
   */
  query(from: number, to: number, resolutionS: number, signals: readonly string[]): HistoryQuery {
    if (!Number.isFinite(from) || !Number.isFinite(to))
      throw new RangeError('from and to must be finite epoch milliseconds');
    if (!Number.isInteger(resolutionS) || resolutionS < this.#res || resolutionS % this.#res !== 0) {
      throw new HistoryError('RESOLUTION', `the resolution must be a multiple of ${this.#res} s, not ${resolutionS}`);
    }
    const stepMs = resolutionS * 1000;
    const steps = to > from ? Math.ceil((to - from) / stepMs) : 0;
    const wanted: string[] = [];
    const missing: string[] = [];
    for (const s of new Set(signals)) (this.#index.has(s) ? wanted : missing).push(s);
    if (steps * Math.max(1, wanted.length) > MAX_QUERY_VALUES) {
      throw new HistoryError(
        'RESOLUTION',
        `${steps} steps of ${resolutionS} s are too many; ask for a coarser resolution`,
      );
    }
    const n = this.#signals.length;
    const cols = wanted.map((s) => this.#index.get(s)!);
    const out = wanted.map(() => new Array<number | null>(steps).fill(null));
    const q = resolutionS / this.#res;
    const first = Math.ceil(from / this.#resMs);
    const [lo, hi] = this.#window(this.#now());
    const sums = new Float64Array(cols.length);
    const counts = new Uint32Array(cols.length);
    for (let k = 0; k < steps; k++) {
      const a = Math.max(first + k * q, lo);
      const b = Math.min(first + (k + 1) * q - 1, hi);
      if (a > b) continue;
      sums.fill(0);
      counts.fill(0);
      for (let s = a; s <= b; s++) {
        const row = this.#row(s, false);
        if (row < 0) continue;
        for (let c = 0; c < cols.length; c++) {
          const v = this.#vals[row * n + cols[c]!]!;
          if (!Number.isNaN(v)) {
            sums[c] = sums[c]! + v;
            counts[c] = counts[c]! + 1;
          }
        }
      }
      for (let c = 0; c < cols.length; c++) if (counts[c]! > 0) out[c]![k] = sums[c]! / counts[c]!;
    }
    const values: Record<string, (number | null)[]> = {};
    wanted.forEach((s, c) => {
      values[s] = out[c]!;
    });
    return { values, from, to: from + steps * stepMs, missing };
  }

  /** Start (epoch ms) of the oldest retained slot holding a sample. */
  oldest(): number | undefined {
    const [lo, hi] = this.#window(this.#now());
    for (let s = lo; s <= hi; s++) if (this.#row(s, false) >= 0) return s * this.#resMs;
    return undefined;
  }

  /** Start (epoch ms) of the newest slot holding a sample. */
  newest(): number | undefined {
    const [lo, hi] = this.#window(this.#now());
    for (let s = hi; s >= lo; s--) if (this.#row(s, false) >= 0) return s * this.#resMs;
    return undefined;
  }

  /**
   * Writes what is pending with one fdatasync per segment touched, and deletes segments past retention. Calls made
   * while a write runs share one follow-up write; with nothing new pending they share the running one.
   */
  flush(): Promise<void> {
    if (this.#queued !== undefined) return this.#queued;
    if (!this.#writing) return this.#run();
    if (this.#pending.size === 0) return this.#current;
    const q = this.#current
      .catch(() => undefined)
      .then(() => {
        this.#queued = undefined;
        return this.#run();
      });
    this.#queued = q;
    return q;
  }

  /** Resolves when no write is running or queued (a background flush included). */
  async idle(): Promise<void> {
    while (this.#writing || this.#queued !== undefined) await (this.#queued ?? this.#current).catch(() => undefined);
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#timer);
      await this.idle();
      await this.flush();
    })();
    return this.#closing;
  }

  // ---- internals ---------------------------------------------------------------------------------------------

  /** The slots queries and records may use: retention back from now, a little tolerance ahead. */
  #window(now: number): [number, number] {
    const nowSlot = Math.floor(now / this.#resMs);
    // Slots are u32 on disk and index the ring by remainder, so they never go below 0.
    return [Math.max(0, nowSlot - this.#retSlots + 1), Math.min(0xffffffff, nowSlot + this.#futureSlots)];
  }

  /** The ring row of `slot`, -1 when it holds no sample (or, with `create`, a fresh all-null row). */
  #row(slot: number, create: boolean): number {
    const i = slot % this.#cap;
    if (this.#tags[i] === slot) return i;
    if (!create) return -1;
    this.#tags[i] = slot;
    const n = this.#signals.length;
    this.#vals.fill(NaN, i * n, (i + 1) * n);
    return i;
  }

  #due(now: number): boolean {
    const elapsed = now - this.#lastFlushAt;
    // A clock stepped back (NTP on a Pi without RTC) must not stop flushing until it catches up.
    return elapsed >= this.#intervalMs || elapsed < 0;
  }

  #tick(): void {
    if (this.#closing !== undefined) return;
    const now = this.#now();
    if ((this.#pending.size > 0 && this.#due(now)) || this.#expiredCount(now) > 0) this.#background();
  }

  #background(): void {
    this.flush().catch((err: unknown) => {
      this.lastError = ioError('background flush failed', err);
      this.#warn(this.lastError);
    });
  }

  #warn(w: HistoryError): void {
    try {
      this.#onWarning(w);
    } catch {
      /* a throwing listener must not break recording */
    }
  }

  #run(): Promise<void> {
    this.#writing = true;
    this.#current = this.#write();
    return this.#current;
  }

  async #write(): Promise<void> {
    try {
      // Taken before the first await: what is recorded from here on goes to the next write.
      const slots = [...this.#pending].sort((a, b) => a - b);
      this.#pending.clear();
      let failure: unknown;
      if (slots.length > 0) {
        this.writes++;
        this.#lastFlushAt = this.#now();
        const bySegment = new Map<number, number[]>();
        for (const s of slots) {
          const start = s - (s % this.#span);
          const list = bySegment.get(start);
          if (list === undefined) bySegment.set(start, [s]);
          else list.push(s);
        }
        for (const [start, list] of bySegment) {
          try {
            await this.#append(start, list);
          } catch (err) {
            for (const s of list) this.#pending.add(s);
            failure ??= err;
          }
        }
      }
      await this.#deleteExpired(this.#now());
      if (failure !== undefined) throw ioError('cannot write the history', failure);
    } finally {
      this.#writing = false;
    }
  }

  async #append(start: number, slots: readonly number[]): Promise<void> {
    let seg = this.#segments.get(start);
    if (seg === undefined) {
      seg = this.#log.file(segmentName(start, this.#res, this.#tag), 0, false);
      this.#segments.set(start, seg);
    }
    const n = this.#signals.length;
    const size = 8 + 8 * n;
    const header = seg.size === 0 ? encodeHeader(this.#config, start, this.#span) : Buffer.alloc(0);
    const buf = Buffer.alloc(header.length + slots.length * size);
    header.copy(buf);
    let off = header.length;
    for (const s of slots) {
      const row = this.#row(s, false);
      if (row < 0) continue; // aged out of the ring since it was recorded
      buf.writeUInt32LE(s, off);
      for (let j = 0; j < n; j++) buf.writeDoubleLE(this.#vals[row * n + j]!, off + 4 + 8 * j);
      sealRecord(buf, off, off + size);
      off += size;
    }
    if (off === header.length) return;
    try {
      await seg.append(buf.subarray(0, off), true);
    } finally {
      // Flushes are a minute or more apart: no descriptor is held between them.
      await seg.close().catch(() => undefined);
    }
    await this.#log.syncDirectory();
  }

  #cutoffMs(now: number): number {
    return this.#window(now)[0] * this.#resMs;
  }

  #expiredCount(now: number): number {
    const cutoff = this.#cutoffMs(now);
    let n = 0;
    for (const start of this.#segments.keys()) if ((start + this.#span) * this.#resMs <= cutoff) n++;
    for (const end of this.#others.values()) if (end <= cutoff) n++;
    return n;
  }

  async #deleteExpired(now: number): Promise<void> {
    const cutoff = this.#cutoffMs(now);
    const doomed: string[] = [];
    for (const [start, seg] of this.#segments) {
      if ((start + this.#span) * this.#resMs <= cutoff) {
        doomed.push(seg.name);
        this.#segments.delete(start);
      }
    }
    for (const [name, end] of this.#others)
      if (end <= cutoff) {
        doomed.push(name);
        this.#others.delete(name);
      }
    for (const name of doomed) await this.#unlink(name);
  }

  async #unlink(name: string): Promise<void> {
    try {
      await this.#log.remove(name);
    } catch (err) {
      this.#warn(ioError(`cannot delete expired segment ${name}`, err));
    }
  }

  async #load(): Promise<void> {
    let names: string[];
    try {
      await fsp.mkdir(this.#log.dir, { recursive: true, mode: 0o700 });
      names = await this.#log.list(NAME_RE);
    } catch (err) {
      throw ioError(`cannot read the history directory ${this.#log.dir}`, err);
    }
    const cutoff = this.#cutoffMs(this.#now());
    const ours: { name: string; start: number }[] = [];
    const theirs: { name: string; start: number; end: number }[] = [];
    for (const name of names) {
      const m = NAME_RE.exec(name)!;
      const start = Number(m[1]);
      const res = Number(m[2]);
      if (res < 1) continue;
      const end = (start + slotsPerSegment(res)) * res * 1000;
      if (end <= cutoff) await this.#unlink(name);
      else if (m[4] !== undefined) this.#others.set(name, end);
      else if (res === this.#res && m[3] === this.#tag) ours.push({ name, start });
      else theirs.push({ name, start, end });
    }
    for (const f of theirs) {
      this.#others.set(f.name, f.end);
      await this.#readSegment(f.name, f.start, false);
    }
    for (const f of ours) await this.#readSegment(f.name, f.start, true);
  }

  async #readSegment(name: string, start: number, ours: boolean): Promise<void> {
    let buf: Buffer;
    try {
      buf = await this.#log.read(name);
    } catch (err) {
      throw ioError(`cannot read history segment ${name}`, err);
    }
    const corrupt = (what: string) => this.#warn(new HistoryError('CORRUPT', `history segment ${name}: ${what}`));
    const h = parseHeader(buf);
    if (h === 'version' && !ours) {
      corrupt('written by a later format version; ignored');
      return;
    }
    let why = h === 'version' ? 'written by a later format version under our name' : 'bad' in h ? h.bad : undefined;
    if (why === undefined && typeof h === 'object' && 'signals' in h) {
      const sameConfig =
        h.resolutionS === this.#res &&
        h.span === this.#span &&
        h.signals.length === this.#signals.length &&
        h.signals.every((s, i) => s === this.#signals[i]);
      if (h.startSlot !== start || (ours && !sameConfig)) why = 'header does not match the file name';
    }
    if (why !== undefined || typeof h !== 'object' || !('signals' in h)) {
      corrupt(`${why ?? 'unreadable header'}; its records are lost, the file is renamed .bad`);
      try {
        const moved = await this.#log.moveAside(name);
        const res = Number(NAME_RE.exec(name)?.[2]);
        this.#others.delete(name);
        this.#others.set(moved, (start + slotsPerSegment(res)) * res * 1000);
      } catch (err) {
        // A current-set name that cannot be moved aside cannot be written either.
        if (ours) throw ioError(`cannot move the corrupt segment ${name} aside`, err);
      }
      return;
    }
    if (h.resolutionS !== this.#res) {
      corrupt(`written at ${h.resolutionS} s, not ${this.#res} s; ignored until it ages out`);
      return;
    }
    const n = this.#signals.length;
    const map = h.signals.map((s) => this.#index.get(s) ?? -1);
    const m = h.signals.length;
    const scan = scanRecords(buf, h.length, records(m, start, h.span));
    const [lo, hi] = this.#window(this.#now());
    for (const off of scan.entries) {
      const slot = buf.readUInt32LE(off);
      if (slot < lo || slot > hi) continue;
      const row = this.#row(slot, true);
      // A record of another set only fills the signals both share; one of the current set is the whole slot.
      for (let j = 0; j < m; j++) {
        if (map[j]! >= 0) this.#vals[row * n + map[j]!] = buf.readDoubleLE(off + 4 + 8 * j);
      }
    }
    const torn = buf.length - scan.restAt;
    this.skipped += scan.lost;
    if (scan.lost > 0)
      corrupt(`${scan.bad} corrupt record(s)${torn > 0 ? `, a torn record of ${torn} B` : ''} skipped`);
    if (!ours) return;
    if (scan.goodEnd < buf.length) {
      // Appends must start on a record boundary; what is cut is already known to be bad.
      try {
        await this.#log.cutTail(name, scan.goodEnd, false);
      } catch (err) {
        throw ioError(`cannot cut the torn tail of ${name}`, err);
      }
    }
    this.#segments.set(start, this.#log.file(name, scan.goodEnd, true));
  }
}
