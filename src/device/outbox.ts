/**
 * The durable outbox: every message the hub hands to the bus is on the SD card before `append` resolves, and stays
 * there until the broker confirms it, so a crash or power cut between the two resends instead of losing it. The
 * segment files and their records are src/device/outbox-format.ts; opening what a crash left, outbox-recovery.ts.
 * The class stays whole (about 600 lines): append, ack, the sync rounds, fault retries and segment deletion share one
 * task queue and one set of books (pending, unwritten, tombstones, segments), whose invariants read best in one place.
 *
 * A tombstone only ever follows its message, so a segment may be deleted once all its messages are acked and the
 * messages its tombstones ack live in it or in segments already deleted (otherwise a restart would resurrect them).
 * The segment being appended to is never deleted: at 10 messages a minute, each acked at once, deleting it would
 * create a file (and fsync the directory) per message; it goes after it is rolled over at `segmentBytes`.
 *
 * Recovery problems go to `onWarning` as OutboxError 'CORRUPT'; open never fails for them. Delivery is at least
 * once: an ack not yet on disk at a crash (tombstones ride along with the next write or flush) means a resend, which
 * the receiver dedupes by messageId. Ids increase for the life of an Outbox and continue above every id on disk after
 * a reopen.
 *
 * Disk faults (full, read-only, the directory removed) never reach the caller of append: a record the disk refuses
 * stays in memory (still pending, so it is delivered all the same) and is written, with the tombstones waiting, by
 * the next append or a retry with backoff (1 s doubling to 30 s); a failed write is cut back and retried in the same
 * segment, so faults add no files. A vanished directory (an append cannot fail then: the descriptor is still open,
 * so each sync round checks the link count) is re-created and every unacked message written anew. Failures, the
 * write that catches up and what could not be kept (messages dropped by the size cap, unwritten ones at close) go
 * to `reporter` (src/store/health.ts), which tells the operator once per episode.
 *
 * Durability: `append` resolves when write() is done, i.e. the record is in the page cache and survives a crash of
 * the process but not a power cut. fdatasync is batched: at most one sync round per `fsyncIntervalMs`, so a power
 * cut can lose the records of the last fsyncIntervalMs. `appendDurable` waits for the sync round covering its record.
 *
 * Size cap `maxBytes` (all segment files on disk). 'drop-oldest' (default) acks the oldest unacked messages as
 * `dropped` until the new one fits: the outbox only fills when the broker has been unreachable for a long time
 * (8 MiB is ~35 h of 10 reports a minute), and then the newest reports describe the hub's present state while the
 * oldest are stale, and the caller of append, deep in a measurement loop, has nothing better to do with a refusal.
 * 'reject-new' keeps the old ones and rejects with OutboxError 'FULL' (for commands that must be sent in order).
 *
 * Wear at 10 reports a minute with fsyncIntervalMs 60_000: docs/RELIABILITY.md (60 fdatasyncs an hour, counted by
 * the tests), plus 2 in the round after each roll to a new segment (its directory, the old one's last sync), about
 * hourly. With the default 1000 ms every message gets its own round, 600 an hour (~10 MiB rewritten on the card):
 * the hub should pass 60_000 unless it cannot afford losing a minute.
 */

import type { BodyWriter } from '../core/body-writer.js';
import { type Clock, systemClock, type Timer } from '../core/clock.js';
import { EbadgeError, throwRangeError } from '../core/errors.js';
import type { StorageReporter } from '../store/health.js';
import { SegmentLog } from '../store/segment-log.js';
import {
  encodeMessage,
  HEADER,
  header,
  type OutboxMeta,
  type OutboxRecord,
  type Segment,
  segmentName,
  stamp,
  tombstone,
} from './outbox-format.js';
import { recoverOutbox } from './outbox-recovery.js';

export {
  type OutboxEntry,
  type OutboxMeta,
  type OutboxRecord,
  type OutboxSegmentScan,
  scanOutbox,
} from './outbox-format.js';

export type OutboxErrorCode = 'FULL' | 'CORRUPT' | 'IO';

export class OutboxError extends EbadgeError<OutboxErrorCode> {
  override name = 'OutboxError';
}

export interface OutboxOptions {
  fsyncIntervalMs?: number;
  maxBytes?: number;
  segmentBytes?: number;
  overflow?: 'reject-new' | 'drop-oldest';
  /** The clock sync rounds are spaced by; injectable so tests can spend hours without waiting. */
  now?: () => number;
  /** The timers of the due sync round and of the retry after a fault (default the system's; a test's never fire late). */
  clock?: Pick<Clock, 'setTimeout'>;
  /** Corruption found on open ('CORRUPT') and, without a reporter, failed writes ('IO'); default process.emitWarning. */
  onWarning?: (warning: OutboxError) => void;
  /** Told of disk faults, of the write that catches up and of messages that could not be kept. */
  reporter?: StorageReporter;
  /** The first retry after a fault (default 1 s), doubled up to 30 s. */
  retryMs?: number;
}

const MAX_RETRY_MS = 30_000;

const ioError = (what: string, err: unknown): OutboxError =>
  err instanceof OutboxError ? err : new OutboxError('IO', `${what}: ${(err as Error).message}`, { cause: err });

export class Outbox {
  readonly #log: SegmentLog;
  readonly #intervalMs: number;
  readonly #maxBytes: number;
  readonly #segmentBytes: number;
  readonly #overflow: 'reject-new' | 'drop-oldest';
  readonly #now: () => number;
  readonly #clock: Pick<Clock, 'setTimeout'>;
  readonly #onWarning: (warning: OutboxError) => void;
  readonly #reporter: StorageReporter | undefined;
  /** The three below are recovery's books (outbox-recovery.ts), taken over at open. */
  #segments: Segment[] = [];
  #pending = new Map<number, OutboxRecord>();
  #segmentOf = new Map<number, Segment>();
  /** Records the disk refused (or lost with a vanished directory), sealed, by id: written by the next write. */
  readonly #unwritten = new Map<number, Buffer>();
  #unwrittenBytes = 0;
  /** Segments with a bad header whose messages were copied to #unwritten: renamed .bad once the copies are synced. */
  #orphans: Segment[] = [];
  /** Tombstones not yet written, with the segment of the message each one acks. */
  #acks: Array<{ buf: Buffer; target: Segment }> = [];
  #active: Segment | undefined;
  #nextId = 1;
  #nextSeq = 1;
  #size = 0;
  #lastSync: number;
  #timer: Timer | undefined;
  #chain: Promise<void> = Promise.resolve();
  #closed = false;
  /** The last write or sync failed. */
  #failing = false;
  /** Records that went to memory because of a fault since the last catch-up: told when they are written. */
  #late = 0;
  #retryTimer: Timer | undefined;
  readonly #retryMs: number;
  #retryDelay: number;

  /** Bytes written to the segment files since open. */
  bytes = 0;
  /** Unacked messages given up by the 'drop-oldest' policy. */
  dropped = 0;
  /** Records skipped or cut off as corrupt or torn while opening. */
  corrupt = 0;

  private constructor(dir: string, o: OutboxOptions) {
    this.#log = new SegmentLog(dir);
    this.#intervalMs = o.fsyncIntervalMs ?? 1000;
    this.#segmentBytes = o.segmentBytes ?? 256 * 1024;
    this.#maxBytes = o.maxBytes ?? 8 * 1024 * 1024;
    this.#overflow = o.overflow ?? 'drop-oldest';
    this.#now = o.now ?? Date.now;
    this.#clock = o.clock ?? systemClock;
    this.#onWarning = o.onWarning ?? ((w) => process.emitWarning(w));
    this.#reporter = o.reporter;
    this.#retryMs = o.retryMs ?? 1000;
    this.#retryDelay = this.#retryMs;
    if (!Number.isFinite(this.#intervalMs) || this.#intervalMs < 0) throwRangeError('fsyncIntervalMs must be >= 0');
    if (!(this.#segmentBytes >= 64)) throwRangeError('segmentBytes must be at least 64');
    // Room for a full segment being retired next to the active one, or drop-oldest could never free anything.
    if (!(this.#maxBytes >= 2 * this.#segmentBytes)) throwRangeError('maxBytes must be at least 2 x segmentBytes');
    this.#lastSync = this.#now();
  }

  /** Opens (and recovers) the outbox; a disk fault does not stop it (the top comment), other errors do. */
  static async open(dir: string, options: OutboxOptions = {}): Promise<Outbox> {
    const box = new Outbox(dir, options);
    try {
      await box.#recover();
    } catch (err) {
      await box.#closeHandles();
      throw ioError(`opening the outbox in ${dir}`, err);
    }
    return box;
  }

  /** Bytes of all segment files on disk; maxBytes caps them with the records kept in memory. */
  get size(): number {
    return this.#size;
  }

  /** Records kept in memory because the disk refused them. */
  get unwritten(): number {
    return this.#unwritten.size;
  }

  /** fdatasync and directory fsync calls. */
  get fsyncs(): number {
    return this.#log.syncs;
  }

  /**
   * Resolves with the record's id once it is written, or kept in memory because the disk refused it. A BodyWriter
   * (the codec's bodyWriter) is encoded straight into the record; the pending record's body (get, pending) is a
   * view of the record, so the message is sent from the bytes that went to the disk, with no copy of its own.
   */
  append(peer: string, body: Uint8Array | BodyWriter, meta: OutboxMeta): Promise<number> {
    let rec: { buf: Buffer; body: Buffer };
    try {
      if (this.#closed) throw new OutboxError('IO', 'the outbox is closed');
      rec = encodeMessage(peer, body, meta);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#enqueue(() => this.#appendTask(rec.buf, peer, rec.body, meta));
  }

  /** As append, but resolves only once the record has been fdatasync'ed; rejects if the disk refused it. */
  async appendDurable(peer: string, body: Uint8Array | BodyWriter, meta: OutboxMeta): Promise<number> {
    const id = await this.append(peer, body, meta);
    await this.#enqueue(() => this.#sync());
    if (this.#unwritten.has(id)) throw new OutboxError('IO', `message ${id} is kept in memory: the disk refused it`);
    return id;
  }

  /** The broker confirmed `id`. Unknown or already acked ids are ignored: confirms may repeat after a reconnect. */
  ack(id: number): void {
    if (this.#closed) return;
    // No timer and no sync of its own: a tombstone lost in a crash costs a duplicate, not a message, so it rides
    // along with the next append's write (or flush/close) instead of adding SD-card writes.
    this.#forget(id);
  }

  pending(): OutboxRecord[] {
    return [...this.#pending.values()];
  }

  /** The pending message `id` (undefined once acked or dropped). */
  get(id: number): OutboxRecord | undefined {
    return this.#pending.get(id);
  }

  /**
   * Writes what waits (tombstones, records kept in memory) and syncs everything written so far; rejects if the
   * disk still refuses some of it.
   */
  flush(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return this.#enqueue(async () => {
      await this.#flushTask();
      if (this.#unwritten.size > 0) {
        throw new OutboxError('IO', `${this.#unwritten.size} message(s) kept in memory: the disk refuses them`);
      }
    });
  }

  /** Flushes and closes. Never rejects for the disk: what could not be written is reported lost. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#retryTimer?.cancel();
    this.#retryTimer = undefined;
    try {
      await this.#enqueue(() => this.#flushTask());
    } catch (err) {
      this.#fault('sync the outbox at close', err);
    } finally {
      await this.#closeHandles();
    }
    const n = this.#unwritten.size;
    if (n === 0) return;
    const what = 'unconfirmed outbox message(s) neither on disk nor delivered at the stop';
    if (this.#reporter !== undefined) this.#tell((r) => r.lost('outbox', n, what));
    else this.#onWarning(new OutboxError('IO', `${n} ${what}`));
  }

  // ---- writing ---------------------------------------------------------------------------------------------------
  #enqueue<T>(task: () => Promise<T>): Promise<T> {
    const p = this.#chain.then(task);
    this.#chain = p.then(
      () => undefined,
      () => undefined,
    );
    return p;
  }

  #background(task: () => Promise<void>): void {
    this.#enqueue(task).catch((err: unknown) => this.#fault('sync the outbox', err));
  }

  #tell(fn: (r: StorageReporter) => void): void {
    try {
      if (this.#reporter !== undefined) fn(this.#reporter);
    } catch {
      /* a throwing reporter must not break the outbox */
    }
  }

  /** A write, sync or deletion failed: told (once per episode, by the reporter) and retried with backoff. */
  #fault(what: string, err: unknown): void {
    this.#failing = true;
    if (this.#reporter !== undefined) this.#tell((r) => r.failed('outbox', `${what} in ${this.#log.dir}`, err));
    else this.#onWarning(ioError(`${what} in ${this.#log.dir}`, err));
    if (this.#retryTimer !== undefined || this.#closed) return;
    this.#retryTimer = this.#clock.setTimeout(
      () => {
        this.#retryTimer = undefined;
        this.#background(() => this.#flushTask());
      },
      this.#retryDelay,
      { unref: true },
    );
    this.#retryDelay = Math.min(MAX_RETRY_MS, this.#retryDelay * 2);
  }

  /** Everything in memory is written and synced again after a fault. */
  #healthy(): void {
    if (!this.#failing || this.#unwritten.size > 0) return;
    this.#failing = false;
    this.#retryDelay = this.#retryMs;
    const late = this.#late;
    this.#late = 0;
    this.#tell((r) => r.ok('outbox', late > 0 ? `${late} outbox message(s) kept in memory` : undefined));
  }

  /** Ensures what is written now reaches the disk within fsyncIntervalMs even if nothing else is written. */
  #arm(): void {
    if (this.#timer || this.#closed) return;
    this.#timer = this.#clock.setTimeout(
      () => {
        this.#timer = undefined;
        this.#background(() => this.#flushTask());
      },
      this.#intervalMs,
      { unref: true },
    );
  }

  #keep(id: number, buf: Buffer): void {
    this.#unwritten.set(id, buf);
    this.#unwrittenBytes += buf.length;
  }

  #forget(id: number, drop = false): void {
    if (!this.#pending.delete(id)) return;
    if (drop) {
      this.dropped++;
      this.#tell((r) =>
        r.lost('outbox', 1, 'unconfirmed outbox message(s) dropped, oldest first, to stay within maxBytes'),
      );
    }
    const kept = this.#unwritten.get(id);
    if (kept !== undefined) {
      // Never on disk: nothing to ack there (a write in flight adds the tombstone itself, see #write).
      this.#unwritten.delete(id);
      this.#unwrittenBytes -= kept.length;
      return;
    }
    const seg = this.#segmentOf.get(id);
    if (!seg) return;
    this.#segmentOf.delete(id);
    seg.live.delete(id);
    this.#acks.push({ buf: tombstone(id), target: seg });
  }

  /** Tombstones still worth writing: those whose message's segment is gone need none. */
  #liveAcks(): Array<{ buf: Buffer; target: Segment }> {
    this.#acks = this.#acks.filter((a) => !a.target.deleted);
    return this.#acks;
  }

  #willRoll(len: number): boolean {
    const a = this.#active;
    return !a || (a.file.size > HEADER && a.file.size + len > this.#segmentBytes);
  }

  async #appendTask(buf: Buffer, peer: string, body: Buffer, meta: OutboxMeta): Promise<number> {
    if (this.#closed) throw new OutboxError('IO', 'the outbox is closed');
    const need = (): number => {
      const len = this.#liveAcks().reduce((n, a) => n + a.buf.length, buf.length + this.#unwrittenBytes);
      return len + (this.#willRoll(len) ? HEADER : 0);
    };
    if (buf.length + HEADER > this.#maxBytes)
      throw new OutboxError('FULL', `a ${buf.length} B record exceeds maxBytes`);
    if (this.#size + need() > this.#maxBytes) {
      if (this.#overflow === 'reject-new') {
        throw new OutboxError('FULL', `the outbox holds ${this.#size + this.#unwrittenBytes} B of ${this.#maxBytes} B`);
      }
      for (const id of this.#pending.keys()) {
        if (this.#size + need() <= this.#maxBytes) break;
        this.#forget(id, true);
        await this.#collect();
      }
      if (this.#size + need() > this.#maxBytes && this.#active && this.#active.live.size === 0) {
        // Everything is acked yet the active segment pins the space: retire it so it can go too.
        this.#retire();
        await this.#collect();
      }
      if (this.#size + need() > this.#maxBytes) throw new OutboxError('FULL', 'acked segments still fill maxBytes');
    }
    const id = this.#nextId++;
    stamp(buf, id);
    this.#pending.set(id, {
      id,
      peer,
      body,
      messageId: meta.messageId,
      type: meta.type,
      routingKey: meta.routingKey,
    });
    this.#keep(id, buf);
    if (!(await this.#writeOut()) || this.#unwritten.has(id)) {
      this.#late++;
      return id;
    }
    const now = this.#now();
    if (now - this.#lastSync >= this.#intervalMs) {
      // Taken now, not when the round completes: otherwise rounds drift later by the sync's own duration.
      this.#lastSync = now;
      this.#background(() => this.#sync());
    } else {
      this.#arm();
    }
    return id;
  }

  async #flushTask(): Promise<void> {
    await this.#writeOut();
    await this.#sync();
    await this.#collect();
  }

  /**
   * Writes the tombstones and the records kept in memory. Never throws: a failure is told and retried, and what
   * was not written stays queued. Returns whether everything was written.
   */
  async #writeOut(): Promise<boolean> {
    if (this.#failing && this.#unwritten.size === 0 && this.#liveAcks().length === 0) {
      // Nothing to write tells nothing about the disk: the directory must at least be there again.
      try {
        await this.#log.ensureDir();
      } catch (err) {
        this.#fault('create the outbox directory', err);
        return false;
      }
    }
    if (this.#unwritten.size > 0 || this.#liveAcks().length > 0) {
      try {
        await this.#write();
      } catch (err) {
        this.#fault('write the outbox', err);
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return false;
        // The directory vanished (a new segment cannot be created in it): what memory holds is written anew.
        try {
          await this.#revive();
          await this.#write();
        } catch (again) {
          this.#fault('write the outbox', again);
          return false;
        }
      }
    }
    if (this.#orphans.length > 0 && this.#unwritten.size === 0) await this.#retireOrphans();
    this.#healthy();
    return true;
  }

  /** Writes the queued tombstones and the records kept in memory in one write() at the end of the active segment. */
  async #write(): Promise<Segment> {
    const acks = this.#liveAcks();
    this.#acks = [];
    const ids = [...this.#unwritten.keys()];
    const parts = [...acks.map((a) => a.buf), ...ids.map((id) => this.#unwritten.get(id)!)];
    const len = parts.reduce((n, b) => n + b.length, 0);
    let buf: Buffer;
    let seg: Segment;
    try {
      if (this.#willRoll(len)) {
        this.#retire();
        const seq = this.#nextSeq++;
        const file = await this.#log.create(segmentName(seq));
        const created: Segment = { seq, file, live: new Set(), deps: new Set(), deleted: false };
        this.#segments.push(created);
        this.#active = created;
      }
      seg = this.#active!;
      // Its header too when a first write failed: a fault is retried in the same file, it does not make new ones.
      if (seg.file.size === 0) parts.unshift(header());
      // One write(): a record alone goes as it is; with tombstones or a header, it is copied once into the write.
      buf = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
      await seg.file.append(buf);
    } catch (err) {
      this.#acks = acks.concat(this.#acks);
      throw err;
    }
    this.#size += buf.length;
    this.bytes += buf.length;
    for (const a of acks) if (a.target !== seg) seg.deps.add(a.target);
    for (const id of ids) {
      const kept = this.#unwritten.get(id);
      if (kept !== undefined) {
        this.#unwritten.delete(id);
        this.#unwrittenBytes -= kept.length;
      }
      if (this.#pending.has(id)) {
        this.#segmentOf.set(id, seg);
        seg.live.add(id);
      } else {
        // Acked while being written: it is on disk now, so it needs its tombstone.
        this.#acks.push({ buf: tombstone(id), target: seg });
      }
    }
    return seg;
  }

  /** Stops appending to the active segment; it is synced (if needed) and closed in the next sync round. */
  #retire(): void {
    const seg = this.#active;
    this.#active = undefined;
    if (seg && !seg.file.unsynced && seg.file.isOpen) seg.file.close().catch(() => undefined);
  }

  /**
   * One sync round: every segment written since the last one, and the directory if a segment was created. It first
   * checks that the active segment is still linked: after `rm -r` of the directory, writes to its descriptor succeed.
   */
  async #sync(): Promise<void> {
    this.#lastSync = this.#now();
    const active = this.#active;
    if (active?.file.isOpen && (await active.file.vanished())) {
      const gone = Object.assign(new Error(`${active.file.path} vanished`), { code: 'ENOENT', path: active.file.path });
      this.#fault('write the outbox', gone);
      await this.#revive();
      if (!(await this.#writeOut())) return;
    }
    for (const seg of this.#segments) {
      if (!seg.file.unsynced || !seg.file.isOpen) continue;
      await seg.file.sync();
      if (seg !== this.#active) await seg.file.close();
    }
    await this.#log.syncDirectory();
    this.#healthy();
  }

  /**
   * After an ENOENT or an unlinked active segment: re-creates the directory and queues every unacked message of the
   * segments that are gone to be written anew.
   */
  async #revive(): Promise<void> {
    await this.#log.ensureDir();
    for (const seg of [...this.#segments]) {
      if (!(await seg.file.vanished())) continue;
      await seg.file.close().catch(() => undefined);
      seg.deleted = true;
      this.#segments.splice(this.#segments.indexOf(seg), 1);
      this.#size -= seg.file.size;
      if (seg === this.#active) this.#active = undefined;
      for (const id of seg.live) this.#rewrite(id);
      seg.live.clear();
    }
  }

  /** Queues pending message `id`, whose segment is gone or set aside, to be written again. */
  #rewrite(id: number): void {
    const r = this.#pending.get(id);
    if (r === undefined) return;
    this.#segmentOf.delete(id);
    const { buf } = encodeMessage(r.peer, r.body, r);
    stamp(buf, id);
    this.#keep(id, buf);
    this.#late++;
  }

  /** The copies of the bad-header segments' messages are synced: the segments go out of the way as `.bad`. */
  async #retireOrphans(): Promise<void> {
    try {
      await this.#sync();
    } catch (err) {
      this.#fault('sync the outbox', err);
      return;
    }
    for (const o of [...this.#orphans]) {
      try {
        await this.#log.moveAside(o.file.name);
      } catch (err) {
        this.#fault(`rename ${o.file.name} to .bad`, err);
        return;
      }
      o.deleted = true;
      this.#orphans.splice(this.#orphans.indexOf(o), 1);
    }
  }

  /** Deletes the segments nothing on disk needs any more (see the top comment), oldest first; never throws. */
  async #collect(): Promise<void> {
    for (const seg of [...this.#segments]) {
      if (seg === this.#active || seg.live.size > 0) continue;
      if ([...seg.deps].some((d) => !d.deleted)) continue;
      await seg.file.close();
      try {
        await this.#log.remove(seg.file.name);
      } catch (err) {
        this.#fault(`delete ${seg.file.name}`, err);
        return;
      }
      seg.deleted = true;
      this.#size -= seg.file.size;
      this.#segments.splice(this.#segments.indexOf(seg), 1);
    }
  }

  async #closeHandles(): Promise<void> {
    for (const seg of this.#segments) await seg.file.close().catch(() => undefined);
  }

  // ---- recovery --------------------------------------------------------------------------------------------------

  #corrupt(message: string): void {
    this.#onWarning(new OutboxError('CORRUPT', message));
  }

  /** Takes over the books recovery found, and queues the copies of the bad-header segments' messages. */
  async #recover(): Promise<void> {
    const r = await recoverOutbox(this.#log, {
      corrupt: (message) => this.#corrupt(message),
      fault: (what, err) => this.#fault(what, err),
    });
    if (r === undefined) return;
    this.#segments = r.segments;
    this.#pending = r.pending;
    this.#segmentOf = r.segmentOf;
    this.#active = r.active;
    this.#nextId = r.nextId;
    this.#nextSeq = r.nextSeq;
    this.#size = r.size;
    this.corrupt += r.corrupt;
    const orphans = r.orphans;
    for (const o of orphans) {
      for (const id of o.live) this.#rewrite(id);
      o.live.clear();
      for (const { id, target } of o.acked ?? [])
        if (!target.deleted && !orphans.includes(target)) this.#acks.push({ buf: tombstone(id), target });
    }
    this.#late = 0; // copies, not what a fault kept back
    this.#orphans = orphans;
    await this.#collect();
    if (this.#orphans.length > 0) await this.#writeOut();
  }
}
