/**
 * The durable outbox: every message the hub hands to the bus is on the SD card before `append` resolves, and stays
 * there until the broker confirms it, so a crash or power cut between the two resends instead of losing it.
 *
 * Disk format (integers little-endian), segment files as in src/store/segment-log.ts: `<seq, 10 digits>.obx` in
 * creation order, each opened by the header "EBOX" | u16 version (1) | u16 header length (8), then records:
 *
 *   record   u32 payload length L | payload (L bytes) | u32 CRC32 of the length field and the payload
 *   message  u8 kind 1 | u48 id | u8 length + UTF-8 of peer, messageId, type, routingKey (each <= 255 B) | body
 *   ack      u8 kind 2 | u48 id                                  (a tombstone: 15 B on disk)
 *
 * Acks are tombstones in the same stream rather than an ack file: one file is written and synced, not two, and the
 * order of a message and its ack on disk is the order they happened in. A tombstone only ever follows its message,
 * so a segment may be deleted once all its messages are acked and the messages its tombstones ack live in it or in
 * segments already deleted (otherwise a restart would resurrect them). The segment being appended to is never
 * deleted: at 10 messages a minute, each acked at once, deleting it would create a file (and fsync the directory)
 * per message; it goes after it is rolled over at `segmentBytes`.
 *
 * Recovery: open reads every segment in order and replays it. A record with a bad CRC is skipped alone and counted
 * (`corrupt`). A length outside 7..16 MiB or one that runs past the end of the file cannot be trusted, so the rest
 * of that segment is dropped (and reported): a length that is corrupt yet plausible makes the following records
 * fail their CRC until the rest is dropped the same way, except for a 2^-32 chance of garbage passing a CRC. Only
 * the newest segment is appended to, so only its torn tail is cut off. A segment whose header is bad is renamed
 * `.bad`, or removed when it is the newest and shorter than a header (a crash while creating it). Problems go to
 * `onWarning` as OutboxError 'CORRUPT'; open never fails for them. Delivery is at least once: an ack not yet on
 * disk at a crash (tombstones ride along with the next write or flush) means a resend, which the receiver dedupes by
 * messageId. Ids increase for the life of an Outbox and continue above every id on disk after a reopen.
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

import { promises as fsp } from 'node:fs';
import { EbadgeError } from '../core/errors.js';
import {
  type RecordFraming,
  type RecordScan,
  type SegmentFile,
  SegmentLog,
  scanRecords,
  sealRecord,
} from '../store/segment-log.js';

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
  /** Corruption found on open ('CORRUPT') and failed background syncs ('IO'); default process.emitWarning. */
  onWarning?: (warning: OutboxError) => void;
}

export interface OutboxMeta {
  messageId: string;
  type: string;
  routingKey: string;
}

export interface OutboxRecord extends OutboxMeta {
  id: number;
  peer: string;
  body: Buffer;
}

const MAGIC = 0x584f4245; // "EBOX" read as a little-endian u32
const VERSION = 1;
const HEADER = 8;
const KIND_MESSAGE = 1;
const KIND_ACK = 2;
const MIN_PAYLOAD = 7;
const MAX_PAYLOAD = 16 * 1024 * 1024;
const TOMBSTONE = 4 + MIN_PAYLOAD + 4;
const SEGMENT_NAME = /^(\d{10})\.obx$/;

interface Segment {
  seq: number;
  file: SegmentFile;
  /** Unacked messages in it. */
  live: Set<number>;
  /** Older segments holding messages its tombstones ack: it must outlive them. */
  deps: Set<Segment>;
  deleted: boolean;
}

const segmentName = (seq: number): string => `${String(seq).padStart(10, '0')}.obx`;

function header(): Buffer {
  const buf = Buffer.alloc(HEADER);
  buf.writeUInt32LE(MAGIC, 0);
  buf.writeUInt16LE(VERSION, 4);
  buf.writeUInt16LE(HEADER, 6);
  return buf;
}

const ioError = (what: string, err: unknown): OutboxError =>
  err instanceof OutboxError ? err : new OutboxError('IO', `${what}: ${(err as Error).message}`, { cause: err });

function stamp(buf: Buffer, id: number): void {
  buf.writeUIntLE(id, 5, 6);
  sealRecord(buf);
}

function tombstone(id: number): Buffer {
  const buf = Buffer.alloc(TOMBSTONE);
  buf.writeUInt32LE(MIN_PAYLOAD, 0);
  buf[4] = KIND_ACK;
  stamp(buf, id);
  return buf;
}

/** One record of a segment file: a message, or the tombstone acking the message with that id. */
export type OutboxEntry = { kind: 'ack'; id: number } | ({ kind: 'message' } & OutboxRecord);
type Decoded = OutboxEntry;

function decode(buf: Buffer, start: number, end: number): Decoded | undefined {
  const kind = buf[start];
  const id = buf.readUIntLE(start + 1, 6);
  if (kind === KIND_ACK) return end - start === MIN_PAYLOAD ? { kind: 'ack', id } : undefined;
  if (kind !== KIND_MESSAGE) return undefined;
  const strings: string[] = [];
  let off = start + 7;
  for (let i = 0; i < 4; i++) {
    if (off >= end) return undefined;
    const n = buf[off]!;
    if (off + 1 + n > end) return undefined;
    strings.push(buf.toString('utf8', off + 1, off + 1 + n));
    off += 1 + n;
  }
  const [peer, messageId, type, routingKey] = strings as [string, string, string, string];
  return { kind: 'message', id, peer, messageId, type, routingKey, body: Buffer.from(buf.subarray(off, end)) };
}

const goodHeader = (buf: Buffer): boolean =>
  buf.length >= HEADER &&
  buf.readUInt32LE(0) === MAGIC &&
  buf.readUInt16LE(4) === VERSION &&
  buf.readUInt16LE(6) === HEADER;

/** Records as the top comment frames them; a length outside MIN_PAYLOAD..MAX_PAYLOAD drops the rest. */
const FRAMING: RecordFraming<OutboxEntry> = {
  prefix: 4,
  end(buf, off) {
    const len = buf.readUInt32LE(off);
    return len < MIN_PAYLOAD || len > MAX_PAYLOAD ? `an impossible length ${len}` : off + 4 + len + 4;
  },
  decode: (buf, start, end) => decode(buf, start + 4, end - 4),
};

export interface OutboxSegmentScan extends Pick<RecordScan<OutboxEntry>, 'entries' | 'goodEnd' | 'bad' | 'rest'> {
  /** The file name, e.g. `0000000001.obx`. */
  name: string;
  /** The file's size in bytes. */
  size: number;
  /** False when the header is missing or wrong; then nothing else was read. */
  header: boolean;
}

/**
 * Reads every segment file of an outbox as it is on disk, changing nothing: no truncation, no renaming, no
 * deletion, unlike open's recovery. For tools and tests that look at the outbox of a hub that may be running or
 * may have crashed; open sees the same entries, in the same order.
 */
export async function scanOutbox(dir: string): Promise<OutboxSegmentScan[]> {
  const log = new SegmentLog(dir);
  const out: OutboxSegmentScan[] = [];
  for (const name of await log.list(SEGMENT_NAME)) {
    let buf: Buffer;
    try {
      buf = await log.read(name);
    } catch (err) {
      // Acked segments are deleted by a running outbox: one that vanished since readdir had nothing left to read.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    const header = goodHeader(buf);
    const { entries, goodEnd, bad, rest } = header
      ? scanRecords(buf, HEADER, FRAMING)
      : { entries: [], goodEnd: 0, bad: 0, rest: '' };
    out.push({ name, size: buf.length, header, entries, goodEnd, bad, rest });
  }
  return out;
}

export class Outbox {
  readonly #log: SegmentLog;
  readonly #intervalMs: number;
  readonly #maxBytes: number;
  readonly #segmentBytes: number;
  readonly #overflow: 'reject-new' | 'drop-oldest';
  readonly #now: () => number;
  readonly #onWarning: (warning: OutboxError) => void;
  readonly #segments: Segment[] = [];
  readonly #pending = new Map<number, OutboxRecord>();
  readonly #segmentOf = new Map<number, Segment>();
  /** Tombstones not yet written, with the segment of the message each one acks. */
  #acks: Array<{ buf: Buffer; target: Segment }> = [];
  #active: Segment | undefined;
  #nextId = 1;
  #nextSeq = 1;
  #size = 0;
  #lastSync: number;
  #timer: NodeJS.Timeout | undefined;
  #chain: Promise<void> = Promise.resolve();
  #closed = false;

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
    this.#onWarning = o.onWarning ?? ((w) => process.emitWarning(w));
    if (!Number.isFinite(this.#intervalMs) || this.#intervalMs < 0)
      throw new RangeError('fsyncIntervalMs must be >= 0');
    if (!(this.#segmentBytes >= 64)) throw new RangeError('segmentBytes must be at least 64');
    // Room for a full segment being retired next to the active one, or drop-oldest could never free anything.
    if (!(this.#maxBytes >= 2 * this.#segmentBytes)) throw new RangeError('maxBytes must be at least 2 x segmentBytes');
    this.#lastSync = this.#now();
  }

  static async open(dir: string, options: OutboxOptions = {}): Promise<Outbox> {
    const box = new Outbox(dir, options);
    try {
      await fsp.mkdir(dir, { recursive: true });
      await box.#recover();
    } catch (err) {
      await box.#closeHandles();
      throw ioError(`opening the outbox in ${dir}`, err);
    }
    return box;
  }

  /** Bytes of all segment files on disk, what maxBytes caps. */
  get size(): number {
    return this.#size;
  }

  /** fdatasync and directory fsync calls. */
  get fsyncs(): number {
    return this.#log.syncs;
  }

  append(peer: string, body: Uint8Array, meta: OutboxMeta): Promise<number> {
    let buf: Buffer;
    try {
      buf = this.#encode(peer, body, meta);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#enqueue(() => this.#appendTask(buf, peer, body, meta));
  }

  /** As append, but resolves only once the record has been fdatasync'ed. */
  async appendDurable(peer: string, body: Uint8Array, meta: OutboxMeta): Promise<number> {
    const id = await this.append(peer, body, meta);
    await this.#enqueue(() => this.#sync());
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

  /** Writes queued tombstones and syncs everything written so far. */
  flush(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return this.#enqueue(() => this.#flushTask());
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    try {
      await this.#enqueue(() => this.#flushTask());
    } finally {
      await this.#closeHandles();
    }
  }

  // ---- writing ---------------------------------------------------------------------------------------------------

  #encode(peer: string, body: Uint8Array, meta: OutboxMeta): Buffer {
    if (this.#closed) throw new OutboxError('IO', 'the outbox is closed');
    const strings = [peer, meta.messageId, meta.type, meta.routingKey].map((s) => Buffer.from(s, 'utf8'));
    if (strings.some((s) => s.length > 255))
      throw new RangeError('peer, messageId, type and routingKey are limited to 255 bytes');
    const payload = MIN_PAYLOAD + strings.reduce((a, s) => a + 1 + s.length, 0) + body.length;
    if (payload > MAX_PAYLOAD) throw new RangeError(`a message is limited to ${MAX_PAYLOAD} bytes`);
    const buf = Buffer.alloc(4 + payload + 4);
    buf.writeUInt32LE(payload, 0);
    buf[4] = KIND_MESSAGE;
    let off = 11;
    for (const s of strings) {
      buf[off] = s.length;
      s.copy(buf, off + 1);
      off += 1 + s.length;
    }
    buf.set(body, off);
    return buf;
  }

  #enqueue<T>(task: () => Promise<T>): Promise<T> {
    const p = this.#chain.then(task);
    this.#chain = p.then(
      () => undefined,
      () => undefined,
    );
    return p;
  }

  #background(task: () => Promise<void>): void {
    this.#enqueue(task).catch((err: unknown) => this.#onWarning(ioError('outbox background sync', err)));
  }

  /** Ensures what is written now reaches the disk within fsyncIntervalMs even if nothing else is written. */
  #arm(): void {
    if (this.#timer || this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#background(() => this.#flushTask());
    }, this.#intervalMs);
    this.#timer.unref();
  }

  #forget(id: number, drop = false): void {
    const seg = this.#segmentOf.get(id);
    if (!seg || !this.#pending.delete(id)) return;
    this.#segmentOf.delete(id);
    seg.live.delete(id);
    this.#acks.push({ buf: tombstone(id), target: seg });
    if (drop) this.dropped++;
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

  async #appendTask(buf: Buffer, peer: string, body: Uint8Array, meta: OutboxMeta): Promise<number> {
    if (this.#closed) throw new OutboxError('IO', 'the outbox is closed');
    const need = (): number => {
      const len = this.#liveAcks().reduce((n, a) => n + a.buf.length, buf.length);
      return len + (this.#willRoll(len) ? HEADER : 0);
    };
    if (buf.length + HEADER > this.#maxBytes)
      throw new OutboxError('FULL', `a ${buf.length} B record exceeds maxBytes`);
    if (this.#size + need() > this.#maxBytes) {
      if (this.#overflow === 'reject-new') {
        throw new OutboxError('FULL', `the outbox holds ${this.#size} B of ${this.#maxBytes} B`);
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
    const seg = await this.#write(buf);
    this.#pending.set(id, {
      id,
      peer,
      body: Buffer.from(body),
      messageId: meta.messageId,
      type: meta.type,
      routingKey: meta.routingKey,
    });
    this.#segmentOf.set(id, seg);
    seg.live.add(id);
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
    if (this.#liveAcks().length > 0) await this.#write();
    await this.#sync();
    await this.#collect();
  }

  /** Writes the queued tombstones and `record` in one write() at the end of the active segment. */
  async #write(record?: Buffer): Promise<Segment> {
    const acks = this.#liveAcks();
    this.#acks = [];
    const parts = acks.map((a) => a.buf);
    if (record) parts.push(record);
    let buf = Buffer.concat(parts);
    if (this.#willRoll(buf.length)) {
      this.#retire();
      const seq = this.#nextSeq++;
      const name = segmentName(seq);
      buf = Buffer.concat([header(), buf]);
      let file: SegmentFile;
      try {
        file = await this.#log.create(name);
      } catch (err) {
        this.#acks = acks.concat(this.#acks);
        throw ioError(`creating ${this.#log.path(name)}`, err);
      }
      const seg: Segment = { seq, file, live: new Set(), deps: new Set(), deleted: false };
      this.#segments.push(seg);
      this.#active = seg;
    }
    const seg = this.#active!;
    try {
      await seg.file.append(buf);
    } catch (err) {
      // A partial write may sit at the end: later records go to a new segment, where they line up.
      this.#retire();
      this.#acks = acks.concat(this.#acks);
      throw ioError(`writing ${seg.file.path}`, err);
    }
    this.#size += buf.length;
    this.bytes += buf.length;
    for (const a of acks) if (a.target !== seg) seg.deps.add(a.target);
    return seg;
  }

  /** Stops appending to the active segment; it is synced (if needed) and closed in the next sync round. */
  #retire(): void {
    const seg = this.#active;
    this.#active = undefined;
    if (seg && !seg.file.unsynced && seg.file.isOpen) seg.file.close().catch(() => undefined);
  }

  /** One sync round: every segment written since the last one, and the directory if a segment was created. */
  async #sync(): Promise<void> {
    this.#lastSync = this.#now();
    for (const seg of this.#segments) {
      if (!seg.file.unsynced || !seg.file.isOpen) continue;
      try {
        await seg.file.sync();
      } catch (err) {
        throw ioError(`syncing ${seg.file.path}`, err);
      }
      if (seg !== this.#active) await seg.file.close();
    }
    await this.#log.syncDirectory();
  }

  /** Deletes the segments nothing on disk needs any more (see the top comment), oldest first. */
  async #collect(): Promise<void> {
    for (const seg of [...this.#segments]) {
      if (seg === this.#active || seg.live.size > 0) continue;
      if ([...seg.deps].some((d) => !d.deleted)) continue;
      await seg.file.close();
      try {
        await this.#log.remove(seg.file.name);
      } catch (err) {
        throw ioError(`deleting ${seg.file.path}`, err);
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

  async #recover(): Promise<void> {
    const names = await this.#log.list(SEGMENT_NAME);
    let maxId = 0;
    for (const [i, name] of names.entries()) {
      const seq = Number(SEGMENT_NAME.exec(name)![1]);
      this.#nextSeq = Math.max(this.#nextSeq, seq + 1);
      const newest = i === names.length - 1;
      const buf = await this.#log.read(name);
      if (!goodHeader(buf)) {
        if (newest && buf.length < HEADER) {
          await this.#log.remove(name);
        } else {
          this.#corrupt(`${name}: bad segment header, renamed .bad`);
          await this.#log.moveAside(name);
        }
        continue;
      }
      const scan = scanRecords(buf, HEADER, FRAMING);
      const { bad, rest, goodEnd } = scan;
      this.corrupt += scan.lost;
      let size = buf.length;
      if (newest && goodEnd < buf.length) {
        // A torn write: cut it off so the next append starts at a record boundary.
        this.#corrupt(`${name}: ${bad} bad records, ${buf.length - goodEnd} B after the last good record cut off`);
        await this.#log.cutTail(name, goodEnd, true);
        size = goodEnd;
      } else if (scan.lost > 0) {
        this.#corrupt(`${name}: ${bad} bad records${rest ? `, rest of the segment dropped at ${rest}` : ''}`);
      }
      const seg: Segment = {
        seq,
        file: this.#log.file(name, size, true),
        live: new Set(),
        deps: new Set(),
        deleted: false,
      };
      this.#segments.push(seg);
      for (const rec of scan.entries) {
        maxId = Math.max(maxId, rec.id);
        this.#replay(seg, rec);
      }
      this.#size += size;
    }
    this.#nextId = maxId + 1;
    const last = this.#segments[this.#segments.length - 1];
    if (last) {
      await last.file.open();
      this.#active = last;
    }
    await this.#collect();
  }

  #replay(seg: Segment, rec: Decoded): void {
    if (rec.kind === 'message') {
      if (this.#pending.has(rec.id)) return;
      const { kind: _, ...record } = rec;
      this.#pending.set(rec.id, record);
      this.#segmentOf.set(rec.id, seg);
      seg.live.add(rec.id);
      return;
    }
    const target = this.#segmentOf.get(rec.id);
    if (!target || !this.#pending.delete(rec.id)) return;
    this.#segmentOf.delete(rec.id);
    target.live.delete(rec.id);
    if (target !== seg) seg.deps.add(target);
  }
}
