/**
 * Append-only segment files, the form of everything the hub keeps on its SD card that grows (the measurement history,
 * the outbox): the mechanics whose mistakes lose data after a crash or a power cut live here once, while each owner
 * keeps its header, its record layout, its index, when it syncs and which segments it deletes.
 *
 *   segment  header (the owner's: starts with a magic, a u16 version, a u16 header length) | record | record ...
 *   record   the owner's bytes: a fixed size, or a length field first | u32 CRC32 of the record's bytes before it
 *
 * Reading (scanRecords, no I/O): records are framed one after the other from the end of the header. A record whose
 * CRC or content is bad is skipped alone: its frame still gives the next boundary. Where a damaged length field may
 * hide that boundary, a framing with `resync` has the scan look from the next byte on for an offset where a whole
 * record holds (plausible to the owner, CRC good), so only damaged records are lost; the risk of a false match is
 * that of 32 random bits matching, on a candidate that also passed the owner's checks. Where no boundary can be found,
 * a record running past the end (a torn write) or a frame the owner cannot trust, the rest is dropped and its
 * offset reported.
 * Everything after the last good record is the torn tail: a segment that is appended to again gets it cut off
 * (cutTail), so the next record starts on a boundary. A segment whose header cannot be trusted is renamed
 * `<name>.bad` (moveAside): out of the way of new segments, kept for inspection.
 *
 * Writing (SegmentFile): a record goes at the end of what is known good, and a write that failed part way is cut
 * back before the next one. An append is durable (synced before it counts: the history's flushes) or buffered
 * (synced by the owner's next round: the outbox). fdatasync suffices, the files only grow; a created file also
 * needs its directory fsynced once, or its name may not survive a power cut with the data synced under it. Each
 * sync rewrites at least a 4 KiB page of the card plus a journal commit, so every one is counted (`syncs`) and the
 * owners batch them.
 *
 * Problems are returned or thrown to the owner, which words its own warnings (they are in the hub's logs).
 */
import { constants as fsc } from 'node:fs';
import * as path from 'node:path';
import { crc32 } from './crc32.js';
import { syncDirectory } from './durable.js';
import { type StoreHandle, storeFs } from './fs.js';

/** How an owner's records are framed and read. */
export interface RecordFraming<T> {
  /** Bytes needed to tell where a record ends: its fixed size, or its length field. */
  readonly prefix: number;
  /** The end of the record at `off` (past the buffer when it is torn), or why no boundary after it can be trusted. */
  end(buf: Buffer, off: number): number | string;
  /** The record [start, end), CRC included, once its CRC matched; undefined skips it as bad. */
  decode(buf: Buffer, start: number, end: number): T | undefined;
  /**
   * Set where a damaged record may hide the next boundary (a length field): after a bad record the scan looks for
   * the next offset where a whole record holds (see resync in the top comment). Fixed-size records need none.
   */
  readonly resync?: boolean;
  /** A cheap test of a candidate record's fields before its CRC is computed (resync candidates only). */
  plausible?(buf: Buffer, start: number, end: number): boolean;
}

export interface RecordScan<T> {
  /** What decode made of the good records, in file order. */
  entries: T[];
  /** The end of the last good record (the start of the records when there is none): the torn tail begins here. */
  goodEnd: number;
  /** Records skipped for a bad CRC or content, and damaged stretches skipped by resynchronising. */
  bad: number;
  /** Of `bad`, the stretches after which the scan found the next record by resynchronising. */
  resynced: number;
  /** Why the rest of the segment was dropped: 'a short record' (torn) or the framing's reason; '' when nothing was. */
  rest: string;
  /** Where the dropped rest begins; the buffer's length when nothing was dropped. */
  restAt: number;
  /** Records lost (at least): the bad ones, plus one for a dropped rest. */
  lost: number;
}

/** Writes the CRC of buf[start, end - 4) into the record's last 4 bytes. */
export function sealRecord(buf: Buffer, start = 0, end = buf.length): void {
  buf.writeUInt32LE(crc32(buf, start, end - 4), end - 4);
}

/** The records of a segment from offset `from` (the end of its header); see the top comment. */
export function scanRecords<T>(buf: Buffer, from: number, framing: RecordFraming<T>): RecordScan<T> {
  const entries: T[] = [];
  let off = from;
  let goodEnd = from;
  let bad = 0;
  let resynced = 0;
  let rest = '';
  /** Resync found no good record after here: none after a later offset either. */
  let barren = Number.POSITIVE_INFINITY;
  const frame = (at: number): number | string => {
    const end = at + framing.prefix > buf.length ? Number.POSITIVE_INFINITY : framing.end(buf, at);
    if (typeof end === 'string') return end;
    if (end > buf.length) return 'a short record';
    // Smaller would not move forward: a framing bug, not corrupt data.
    if (!(end >= at + 5)) throw new RangeError(`a record framed at ${at}..${end} leaves no room for its CRC`);
    return end;
  };
  const good = (at: number, end: number): T | undefined =>
    crc32(buf, at, end - 4) === buf.readUInt32LE(end - 4) ? framing.decode(buf, at, end) : undefined;
  /** The next offset after `at` where a whole, plausible record with a good CRC starts. */
  const resync = (at: number): number | undefined => {
    for (let p = at + 1; p + framing.prefix <= buf.length; p++) {
      const end = frame(p);
      if (typeof end === 'string' || (framing.plausible !== undefined && !framing.plausible(buf, p, end))) continue;
      if (good(p, end) !== undefined) return p;
    }
    return undefined;
  };
  while (off < buf.length) {
    const end = frame(off);
    const entry = typeof end === 'number' ? good(off, end) : undefined;
    if (entry !== undefined) {
      entries.push(entry);
      goodEnd = end as number;
      off = end as number;
      continue;
    }
    const next = framing.resync === true && off < barren ? resync(off) : undefined;
    if (next === undefined) barren = Math.min(barren, off);
    if (next !== undefined) {
      bad++;
      resynced++;
      off = next;
    } else if (typeof end === 'string') {
      rest = end;
      break;
    } else {
      bad++;
      off = end;
    }
  }
  return { entries, goodEnd, bad, resynced, rest, restAt: off, lost: bad + (rest ? 1 : 0) };
}

const errno = (err: unknown): string | undefined => (err as NodeJS.ErrnoException).code;

/** The segment files of one directory, and the syncs spent on them. */
export class SegmentLog {
  declare readonly dir: string;
  /** Shared with the log's files: `created` says a file was created since the directory was last synced. */
  readonly #ledger = { syncs: 0, created: false };

  constructor(dir: string) {
    this.dir = dir;
  }

  /** fdatasync and directory fsync calls: the figure the card's wear follows. */
  get syncs(): number {
    return this.#ledger.syncs;
  }

  path(name: string): string {
    return path.join(this.dir, name);
  }

  /** Creates the directory (and its parents) if it is missing: at open, and after it vanished. */
  ensureDir(): Promise<void> {
    return storeFs.mkdir(this.dir, 0o700);
  }

  /**
   * The file names matching `pattern`, sorted: zero-padded numbered names come oldest first. Only regular files: a
   * directory, a symbolic link or a FIFO under a segment's name (a FIFO held the hub's start in open(2) for ever;
   * the others stopped it with a stack) is renamed `<name>.not-a-file` where it can be, and left out either way.
   */
  async list(pattern: RegExp): Promise<string[]> {
    const names: string[] = [];
    for (const n of (await storeFs.readdir(this.dir)).filter((x) => pattern.test(x)).sort()) {
      const stat = await storeFs.lstat(this.path(n)).catch(() => undefined);
      if (stat === undefined) continue; // gone since readdir
      if (stat.isFile()) names.push(n);
      else await storeFs.rename(this.path(n), this.path(`${n}.not-a-file`)).catch(() => undefined);
    }
    return names;
  }

  read(name: string): Promise<Buffer> {
    return storeFs.readFile(this.path(name));
  }

  /** Whether `name` is still there (a vanished directory takes its files with it). */
  async exists(name: string): Promise<boolean> {
    try {
      await storeFs.stat(this.path(name));
      return true;
    } catch (err) {
      if (errno(err) === 'ENOENT') return false;
      throw err;
    }
  }

  /** Creates `name`, which must not exist yet, and opens it for appending. */
  async create(name: string): Promise<SegmentFile> {
    const fh = await storeFs.open(this.path(name), 'wx', 0o600);
    this.#ledger.created = true;
    return new SegmentFile(this.#ledger, this.path(name), name, 0, true, fh, false);
  }

  /**
   * A segment to append to, opened at its first append (or by open()): an existing file whose first `size` bytes
   * are known good, or with `exists` false a file that its first append creates (emptying a leftover of that name).
   * `torn`: bytes past `size` could not be cut off yet; the first append cuts them.
   */
  file(name: string, size: number, exists: boolean, torn = false): SegmentFile {
    return new SegmentFile(this.#ledger, this.path(name), name, size, exists, undefined, torn || !exists);
  }

  /** Renames a segment whose header cannot be trusted to `<name>.bad`; returns that name. */
  async moveAside(name: string): Promise<string> {
    const bad = `${name}.bad`;
    await storeFs.rename(this.path(name), this.path(bad));
    return bad;
  }

  /**
   * Cuts a torn tail off: `length` is the end of the last good record. With `sync` the cut is made durable now;
   * without, a cut lost to a power cut is made again by the next open, and the next append overwrites those bytes.
   */
  async cutTail(name: string, length: number, sync: boolean): Promise<void> {
    if (!sync) {
      await storeFs.truncate(this.path(name), length);
      return;
    }
    const fh = await storeFs.open(this.path(name), 'r+');
    try {
      await fh.truncate(length);
      await fh.datasync();
      this.#ledger.syncs++;
    } finally {
      await fh.close();
    }
  }

  /** Deletes a segment; one already gone is no error. Not synced: an unlink lost to a power cut is redone on open. */
  async remove(name: string): Promise<void> {
    try {
      await storeFs.unlink(this.path(name));
    } catch (err) {
      if (errno(err) !== 'ENOENT') throw err;
    }
  }

  /** fsyncs the directory if a segment was created in it since the last time, so that the new names are durable. */
  async syncDirectory(): Promise<void> {
    if (!this.#ledger.created) return;
    if (await syncDirectory(this.dir)) this.#ledger.syncs++;
    this.#ledger.created = false;
  }
}

/** One segment file being appended to. */
export class SegmentFile {
  declare readonly name: string;
  declare readonly path: string;
  readonly #ledger: { syncs: number; created: boolean };
  #size: number;
  #exists: boolean;
  #fh: StoreHandle | undefined;
  /** Appended since the last sync. */
  #unsynced = false;
  /** A write (or the sync of a durable append) failed, or a new file may hold a leftover: bytes past #size may be garbage. */
  #torn: boolean;

  /** Use SegmentLog.create or SegmentLog.file. */
  constructor(
    ledger: { syncs: number; created: boolean },
    file: string,
    name: string,
    size: number,
    exists: boolean,
    fh: StoreHandle | undefined,
    torn: boolean,
  ) {
    this.#ledger = ledger;
    this.name = name;
    this.path = file;
    this.#size = size;
    this.#exists = exists;
    this.#fh = fh;
    this.#torn = torn;
  }

  /** The bytes known good (for a segment not appended to since open, the file's size): the next append goes there. */
  get size(): number {
    return this.#size;
  }

  /** Records appended and not yet synced. */
  get unsynced(): boolean {
    return this.#unsynced;
  }

  get isOpen(): boolean {
    return this.#fh !== undefined;
  }

  /** Opens an existing file now rather than at the first append, so that one that cannot be opened fails here. */
  async open(): Promise<void> {
    this.#fh ??= await storeFs.open(this.path, 'r+');
  }

  /**
   * Whether the file is gone from its directory (deleted, or its directory removed): appends to a descriptor still
   * open would then succeed and be lost at the next restart.
   */
  async vanished(): Promise<boolean> {
    if (this.#fh !== undefined) return (await this.#fh.stat()).nlink === 0;
    if (!this.#exists) return false;
    try {
      await storeFs.stat(this.path);
      return false;
    } catch (err) {
      if (errno(err) === 'ENOENT') return true;
      throw err;
    }
  }

  /**
   * Writes `buf` (records, and the header first for a new file) at the end of what is known good. A durable append
   * is fdatasync'ed before it counts: if the sync fails, the next append overwrites it. Otherwise it counts once
   * written and waits for sync(). A file known to exist is not created again: one that vanished fails with ENOENT
   * (its owner decides what to write anew) instead of coming back as a sparse file without a header.
   */
  async append(buf: Buffer, durable = false): Promise<void> {
    let fh = this.#fh;
    if (fh === undefined) {
      fh = await storeFs.open(this.path, this.#exists ? fsc.O_RDWR : fsc.O_RDWR | fsc.O_CREAT, 0o600);
      this.#fh = fh;
      if (!this.#exists) this.#ledger.created = true;
      this.#exists = true;
    }
    if (this.#torn) await fh.truncate(this.#size);
    this.#torn = true;
    for (let done = 0; done < buf.length; ) {
      done += (await fh.write(buf, done, buf.length - done, this.#size + done)).bytesWritten;
    }
    if (durable) {
      await fh.datasync();
      this.#ledger.syncs++;
    }
    this.#torn = false;
    this.#size += buf.length;
    this.#unsynced = !durable;
  }

  /** fdatasyncs what was appended since the last sync, if anything. */
  async sync(): Promise<void> {
    if (!this.#unsynced || this.#fh === undefined) return;
    await this.#fh.datasync();
    this.#ledger.syncs++;
    this.#unsynced = false;
  }

  /** Closes the file; the next append opens it again. */
  async close(): Promise<void> {
    const fh = this.#fh;
    this.#fh = undefined;
    await fh?.close();
  }
}
