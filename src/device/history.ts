/**
 * (About 500 lines, one concept: the class that keeps ring, files, flushes and faults in step; its format, ring and
 * recovery are modules of their own already.)
 *
 * The measurement history `get_report` and `get_load_report` are answered from: a ring of at least 24 h of samples at
 * the configured resolution, in memory for queries (src/device/history-ring.ts) and on the SD card in compact
 * segments (their format: history-format.ts) so a reboot loses nothing; reading them back on open is
 * history-recovery.ts, which tells problems to `onWarning` as HistoryError 'CORRUPT'.
 *
 * Disk faults: slots a flush could not write stay pending in the ring for the next; a vanished directory is
 * re-created and the ring's slots of its segments written anew. The reporter hears of failures, of the flush that
 * catches up and of slots lost (aged out of the ring unwritten, or pending at close). Only explicit flush() rejects.
 *
 * A change of the signal list starts a new segment set (another tag); older sets with the same resolution stay
 * readable, their signals mapped by name (a signal no longer configured is dropped, a new one is null there), so a
 * configuration change keeps the history. Segments written at another resolution would need resampling and are
 * ignored with a warning. Segments whose every slot is older than `retentionHours` are deleted on open and, as time
 * passes, after a flush.
 *
 * Wear: record() only touches memory and marks the slot pending. A flush, at most once per `fsyncIntervalMs`
 * (default 60 s) unless called explicitly, appends each pending slot once (a slot recorded five times between two
 * flushes costs one record) with one fdatasync per segment touched, usually one; a new segment adds a directory
 * fsync, once an hour. For 4 signals at 60 s: ~2.5 kB and 60 fdatasyncs an hour (~1 MiB rewritten on the card),
 * ~60 kB a day in 24-25 files (the tests measure it). A longer fsyncIntervalMs scales the syncs down; it is also the
 * most a power cut can lose.
 */

import { MAX_TIMEOUT_MS } from '../core/clock.js';
import { EbadgeError, throwRangeError } from '../core/errors.js';
import type { StorageReporter } from '../store/health.js';
import { type SegmentFile, SegmentLog, sealRecord } from '../store/segment-log.js';
import { configBytes, encodeHeader, NAME_RE, segmentName, slotsPerSegment, tagOf } from './history-format.js';
import { loadHistory } from './history-recovery.js';
import { SlotRing } from './history-ring.js';

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

/** A query answer larger than this (slots x signals) would exhaust a Pi Zero's memory and the bus's frame size. */
const MAX_QUERY_VALUES = 1_000_000;

const errno = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | undefined)?.code;

const ioError = (what: string, err: unknown): HistoryError =>
  err instanceof HistoryError ? err : new HistoryError('IO', `${what}: ${(err as Error).message}`, { cause: err });

export class History {
  readonly #log: SegmentLog;
  readonly #res: number;
  readonly #resMs: number;
  readonly #signals: readonly string[];
  readonly #index: ReadonlyMap<string, number>;
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
  readonly #ring: SlotRing;
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
      throwRangeError('resolutionS must be a whole number of seconds from 1 to 86400');
    if (!Number.isFinite(retentionHours) || retentionHours < 24) throwRangeError('retentionHours must be at least 24');
    if (signals.length === 0 || signals.length > 0xffff) throwRangeError('signals must list 1 to 65535 names');
    if (new Set(signals).size !== signals.length) throwRangeError('signals must be unique');
    for (const s of signals) {
      const n = Buffer.byteLength(s, 'utf8');
      if (n < 1 || n > 255) throwRangeError(`signal name "${s}" must be 1 to 255 bytes of UTF-8`);
    }
    const interval = o.fsyncIntervalMs ?? 60_000;
    if (!Number.isFinite(interval) || interval <= 0) throwRangeError('fsyncIntervalMs must be positive');
    this.#log = new SegmentLog(dir);
    this.#res = res;
    this.#resMs = res * 1000;
    this.#signals = [...signals];
    this.#index = new Map(signals.map((s, i) => [s, i]));
    this.#span = slotsPerSegment(res);
    this.#config = configBytes(res, signals);
    this.#tag = tagOf(this.#config);
    this.#intervalMs = interval;
    this.#now = o.now ?? Date.now;
    this.#onWarning = o.onWarning ?? ((w) => process.emitWarning(w));
    this.#reporter = o.reporter;
    this.#ring = new SlotRing(res, retentionHours, signals.length);
    this.#lastFlushAt = this.#now();
  }

  static async open(dir: string, options: HistoryOptions): Promise<History> {
    const h = new History(dir, options);
    await h.#load();
    // A quarter of the interval: a due flush waits at most that long when no sample arrives to trigger it.
    h.#timer = setInterval(() => h.#tick(), Math.min(MAX_TIMEOUT_MS, Math.max(1000, h.#intervalMs / 4)));
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
    const [lo, hi] = this.#ring.window(now);
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
      if (row < 0) row = this.#ring.row(slot, true);
      this.#ring.vals[row * n + j] = typeof v === 'number' && Number.isFinite(v) ? v : NaN;
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
      throwRangeError('from and to must be finite epoch milliseconds');
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
    const cols = wanted.map((s) => this.#index.get(s)!);
    const out = this.#ring.averages(Math.ceil(from / this.#resMs), steps, resolutionS / this.#res, cols, this.#now());
    const values: Record<string, (number | null)[]> = {};
    wanted.forEach((s, c) => {
      values[s] = out[c]!;
    });
    return { values, from, to: from + steps * stepMs, missing };
  }

  /** Start (epoch ms) of the oldest retained slot holding a sample. */
  oldest(): number | undefined {
    const slot = this.#ring.oldest(this.#now());
    return slot === undefined ? undefined : slot * this.#resMs;
  }

  /** Start (epoch ms) of the newest slot holding a sample. */
  newest(): number | undefined {
    const slot = this.#ring.newest(this.#now());
    return slot === undefined ? undefined : slot * this.#resMs;
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
    const slots = all.filter((s) => this.#ring.row(s, false) >= 0);
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
    const [lo, hi] = this.#ring.window(this.#now());
    for (let s = lo; s <= hi; s++) {
      if (this.#ring.row(s, false) < 0 || !gone.some(([a, b]) => s >= a && s < b)) continue;
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
      const row = this.#ring.row(s, false);
      if (row < 0) continue; // aged out of the ring (counted by #writePending)
      buf.writeUInt32LE(s, off);
      for (let j = 0; j < n; j++) buf.writeDoubleLE(this.#ring.vals[row * n + j]!, off + 4 + 8 * j);
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
    return this.#ring.window(now)[0] * this.#resMs;
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
    this.skipped += await loadHistory({
      log: this.#log,
      resolutionS: this.#res,
      signals: this.#signals,
      index: this.#index,
      tag: this.#tag,
      span: this.#span,
      ring: this.#ring,
      pending: this.#pending,
      segments: this.#segments,
      others: this.#others,
      now: () => this.#now(),
      unlink: (name) => this.#unlink(name),
      corrupt: (message) => this.#warn(new HistoryError('CORRUPT', message)),
      warnIo: (what, err) => this.#warn(ioError(what, err)),
      ioError,
      failing: (err) => {
        this.#failing = true;
        this.#tell((r) => r.failed('history', `open the history directory ${this.#log.dir}`, err));
      },
    });
  }
}
