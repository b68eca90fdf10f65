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
 * alone (fixed-size records: damage never hides the next one); a torn tail is cut off the current set's segments.
 * A bad header, or one that does not match the file name, gets the file renamed `.bad` (deleted by retention). Its
 * records are recovered, and written again into the current set, when the name's tag (the CRC32 of the
 * configuration) gives their layout: the current signals, or those of a good header with that tag; a guessed signal
 * count would put values under wrong names. A newer format version of another set is left alone; empty files (a
 * create whose first write failed) are removed. Problems go to `onWarning` as HistoryError 'CORRUPT'.
 *
 * Disk faults: slots a flush could not write stay pending in the ring for the next; a vanished directory is
 * re-created and the ring's slots of its segments written anew. The reporter hears of failures, of the flush that
 * catches up and of slots lost (aged out of the ring unwritten, or pending at close). Only explicit flush() rejects.
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

import { TextDecoder } from 'node:util';
import { EbadgeError } from '../core/errors.js';
import { crc32 } from '../store/crc32.js';
import { isDiskFault, type StorageReporter } from '../store/health.js';
import {
  type RecordFraming,
  type RecordScan,
  type SegmentFile,
  SegmentLog,
  scanRecords,
  sealRecord,
} from '../store/segment-log.js';

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
  /** Told of failed writes instead of onWarning, of the flush that catches up, and of samples lost. */
  reporter?: StorageReporter;
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

const errno = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | undefined)?.code;

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
  readonly #reporter: StorageReporter | undefined;
  /** Slots a failed flush put back: counted when a flush writes them (what the reporter hears was written late). */
  readonly #late = new Set<number>();
  /** The last flush failed. */
  #failing = false;
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
    this.#reporter = o.reporter;
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

  /** Flushes and stops. Never rejects for the disk: samples it could not write are reported lost. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#timer);
      await this.idle();
      try {
        await this.flush();
      } catch (err) {
        const n = this.#pending.size;
        if (this.#reporter !== undefined)
          this.#tell((r) => r.lost('history', n, 'measurement slot(s) not written before the stop'));
        else this.#warn(ioError(`${n} measurement slot(s) not written before the stop`, err));
      }
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
      // With a reporter the failure was told there, once per episode rather than once a minute.
      if (this.#reporter === undefined) this.#warn(this.lastError);
    });
  }

  #tell(fn: (r: StorageReporter) => void): void {
    if (this.#reporter === undefined) return;
    try {
      fn(this.#reporter);
    } catch {
      /* a throwing reporter must not break recording */
    }
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
      let failure = await this.#writePending();
      let told = false;
      let revived = -1;
      if (failure !== undefined && errno(failure) === 'ENOENT') {
        // The directory or a segment vanished: what memory holds of them is written anew.
        this.#tell((r) => r.failed('history', `write the history in ${this.#log.dir}`, failure));
        told = true;
        try {
          revived = await this.#revive();
          failure = await this.#writePending();
        } catch (err) {
          failure = err;
        }
      }
      await this.#deleteExpired(this.#now());
      if (failure !== undefined) {
        this.#failing = true;
        if (!told) this.#tell((r) => r.failed('history', `write the history in ${this.#log.dir}`, failure));
        throw ioError('cannot write the history', failure);
      }
      if (this.#failing || revived >= 0) {
        const late = this.#late.size;
        this.#late.clear();
        this.#failing = false;
        this.#tell((r) =>
          r.ok(
            'history',
            revived >= 0
              ? `${revived} measurement slot(s) of vanished history segments, from memory`
              : `${late} measurement slot(s) of the history`,
          ),
        );
      }
    } finally {
      this.#writing = false;
    }
  }

  /** Appends every pending slot; the first failure, with its slots pending again, or undefined. */
  async #writePending(): Promise<unknown> {
    // Taken before the first await: what is recorded from here on goes to the next write.
    const all = [...this.#pending].sort((a, b) => a - b);
    this.#pending.clear();
    // A slot no longer in the ring was recorded, then not written for longer than the retention: it is gone.
    const slots = all.filter((s) => this.#row(s, false) >= 0);
    const aged = all.length - slots.length;
    if (aged > 0) this.#tell((r) => r.lost('history', aged, 'measurement slot(s) aged out of memory, never written'));
    if (slots.length === 0) {
      // Nothing to write tells nothing about the disk: after a fault the directory must at least be there again.
      if (this.#failing)
        return this.#log.ensureDir().then(
          () => undefined,
          (err: unknown) => err,
        );
      return undefined;
    }
    this.writes++;
    this.#lastFlushAt = this.#now();
    const bySegment = new Map<number, number[]>();
    for (const s of slots) {
      const start = s - (s % this.#span);
      const list = bySegment.get(start);
      if (list === undefined) bySegment.set(start, [s]);
      else list.push(s);
    }
    let failure: unknown;
    for (const [start, list] of bySegment) {
      try {
        await this.#append(start, list);
      } catch (err) {
        for (const s of list) {
          this.#pending.add(s);
          if (this.#reporter !== undefined) this.#late.add(s);
        }
        failure ??= err;
      }
    }
    return failure;
  }

  /**
   * After an ENOENT: re-creates the directory, forgets the segments that are gone and puts back the slots the ring
   * still holds of them; returns how many.
   */
  async #revive(): Promise<number> {
    await this.#log.ensureDir();
    const gone: [number, number][] = [];
    for (const [start, seg] of this.#segments) {
      if (!(await seg.vanished())) continue;
      this.#segments.delete(start);
      gone.push([start, start + this.#span]);
    }
    for (const name of [...this.#others.keys()]) {
      if (await this.#log.exists(name)) continue;
      this.#others.delete(name);
      const m = NAME_RE.exec(name)!;
      const res = Number(m[2]);
      const startMs = Number(m[1]) * res * 1000;
      gone.push([startMs / this.#resMs, (startMs + slotsPerSegment(res) * res * 1000) / this.#resMs]);
    }
    let n = 0;
    const [lo, hi] = this.#window(this.#now());
    for (let s = lo; s <= hi; s++) {
      if (this.#row(s, false) < 0 || !gone.some(([a, b]) => s >= a && s < b)) continue;
      if (!this.#pending.has(s)) n++;
      this.#pending.add(s);
    }
    return n;
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
      if (row < 0) continue; // aged out of the ring (counted by #writePending)
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
    let names: string[] = [];
    try {
      await this.#log.ensureDir();
      names = await this.#log.list(NAME_RE);
    } catch (err) {
      if (!isDiskFault(err)) throw ioError(`cannot read the history directory ${this.#log.dir}`, err);
      // A read-only or vanished disk: the hub measures into memory and writes once it can.
      this.#failing = true;
      this.#tell((r) => r.failed('history', `open the history directory ${this.#log.dir}`, err));
    }
    const cutoff = this.#cutoffMs(this.#now());
    const files: { name: string; start: number; ours: boolean; buf: Buffer }[] = [];
    for (const name of names) {
      const m = NAME_RE.exec(name)!;
      const start = Number(m[1]);
      const res = Number(m[2]);
      if (res < 1) continue;
      const end = (start + slotsPerSegment(res)) * res * 1000;
      if (end <= cutoff) {
        await this.#unlink(name);
        continue;
      }
      if (m[4] !== undefined) {
        this.#others.set(name, end);
        continue;
      }
      const ours = res === this.#res && m[3] === this.#tag;
      if (!ours) this.#others.set(name, end);
      try {
        files.push({ name, start, ours, buf: await this.#log.read(name) });
      } catch (err) {
        this.#warn(ioError(`cannot read history segment ${name}; skipped`, err));
      }
    }
    // The layout each tag stands for, from the good headers: a damaged header of the same set is read with it.
    const layouts = new Map<string, Header>();
    for (const f of files) {
      const h = parseHeader(f.buf);
      const tag = NAME_RE.exec(f.name)![3]!;
      if (
        typeof h === 'object' &&
        'signals' in h &&
        crc32(configBytes(h.resolutionS, h.signals)).toString(16).padStart(8, '0') === tag
      )
        layouts.set(tag, h);
    }
    // Other sets first: the current set, read last, wins a slot both hold.
    for (const f of files) if (!f.ours) await this.#readSegment(f.name, f.start, false, f.buf, layouts);
    for (const f of files) if (f.ours) await this.#readSegment(f.name, f.start, true, f.buf, layouts);
  }

  async #readSegment(
    name: string,
    start: number,
    ours: boolean,
    buf: Buffer,
    layouts: ReadonlyMap<string, Header>,
  ): Promise<void> {
    const corrupt = (what: string) => this.#warn(new HistoryError('CORRUPT', `history segment ${name}: ${what}`));
    if (buf.length === 0) {
      // Created by an append that then failed (a full disk), or by a crash right after: nothing to keep.
      await this.#unlink(name);
      return;
    }
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
      // A version field other than ours under the current set's name is damage (this hub wrote that name).
      const layout = this.#layoutOf(name, start, layouts);
      let recovered = 0;
      if (layout !== undefined) {
        // The records carry their own CRC and slot: read with the layout the name gives, written again below.
        recovered = this.#fill(buf, layout, true).entries.length;
        corrupt(
          `${why ?? 'unreadable header'}; ${recovered} record(s) recovered with the layout of its name, to be written again; the file is renamed .bad`,
        );
      } else {
        corrupt(`${why ?? 'unreadable header'}; its layout is unknown, its records are lost; the file is renamed .bad`);
      }
      try {
        const moved = await this.#log.moveAside(name);
        const res = Number(NAME_RE.exec(name)?.[2]);
        this.#others.delete(name);
        this.#others.set(moved, (start + slotsPerSegment(res)) * res * 1000);
      } catch (err) {
        // Left in place: the current set's next append to this hour replaces it (its records are pending).
        this.#warn(ioError(`cannot move the corrupt segment ${name} aside`, err));
      }
      return;
    }
    if (h.resolutionS !== this.#res) {
      corrupt(`written at ${h.resolutionS} s, not ${this.#res} s; ignored until it ages out`);
      return;
    }
    const scan = this.#fill(buf, h, false);
    const torn = buf.length - scan.restAt;
    this.skipped += scan.lost;
    if (scan.lost > 0)
      corrupt(`${scan.bad} corrupt record(s)${torn > 0 ? `, a torn record of ${torn} B` : ''} skipped`);
    if (!ours) return;
    let cut = scan.goodEnd === buf.length;
    if (!cut) {
      // Appends must start on a record boundary; what is cut is already known to be bad.
      try {
        await this.#log.cutTail(name, scan.goodEnd, false);
        cut = true;
      } catch {
        // A read-only disk: the first append cuts it (appends fail there until the disk takes writes anyway).
      }
    }
    this.#segments.set(start, this.#log.file(name, scan.goodEnd, true, !cut));
  }

  /** The layout of a segment whose header is damaged, from its name: the current set's, or a set with a good header. */
  #layoutOf(name: string, start: number, layouts: ReadonlyMap<string, Header>): Header | undefined {
    const m = NAME_RE.exec(name)!;
    const res = Number(m[2]);
    if (res !== this.#res) return undefined;
    const known = m[3] === this.#tag ? { resolutionS: res, signals: this.#signals } : layouts.get(m[3]!);
    if (known === undefined || known.resolutionS !== res) return undefined;
    const config = configBytes(res, known.signals);
    return {
      length: HEADER_FIXED + (config.length - 6) + 4,
      resolutionS: res,
      startSlot: start,
      span: slotsPerSegment(res),
      signals: [...known.signals],
    };
  }

  /** Puts the good records of `buf` into the ring (mapped by signal name); `pending` to write them again. */
  #fill(buf: Buffer, h: Header, pending: boolean): RecordScan<number> {
    const n = this.#signals.length;
    const map = h.signals.map((s) => this.#index.get(s) ?? -1);
    const m = h.signals.length;
    const scan = scanRecords(buf, h.length, records(m, h.startSlot, h.span));
    const [lo, hi] = this.#window(this.#now());
    for (const off of scan.entries) {
      const slot = buf.readUInt32LE(off);
      if (slot < lo || slot > hi) continue;
      const row = this.#row(slot, true);
      // A record of another set only fills the signals both share; one of the current set is the whole slot.
      for (let j = 0; j < m; j++) {
        if (map[j]! >= 0) this.#vals[row * n + map[j]!] = buf.readDoubleLE(off + 4 + 8 * j);
      }
      if (pending) this.#pending.add(slot);
    }
    return scan;
  }
}
