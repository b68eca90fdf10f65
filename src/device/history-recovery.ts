/**
 * How the history (src/device/history.ts) reads its segments back on open, into the ring, repairing what a crash, a
 * power cut or a bad disk left. Apart from the History class because it runs once, before anything is recorded, and
 * is where every kind of damage is told apart; the class hands it its books to fill (LoadTarget).
 *
 * A record with a bad CRC or a slot outside its segment is skipped alone (fixed-size records: damage never hides the
 * next one); a torn tail is cut off the current set's segments. A bad header, or one that does not match the file
 * name, gets the file renamed `.bad` (deleted by retention). Its records are recovered, and written again into the
 * current set, when the name's tag (the CRC32 of the configuration) gives their layout: the current signals, or those
 * of a good header with that tag; a guessed signal count would put values under wrong names. A newer format version
 * of another set is left alone; empty files (a create whose first write failed) are removed. Older sets with the same
 * resolution are read before the current set, which therefore wins a slot both hold; segments written at another
 * resolution are ignored with a warning. Segments whose every slot is older than the retention are deleted.
 */

import { isDiskFault } from '../store/health.js';
import { type RecordScan, type SegmentFile, type SegmentLog, scanRecords } from '../store/segment-log.js';
import {
  configBytes,
  type Header,
  headerLength,
  NAME_RE,
  parseHeader,
  records,
  slotsPerSegment,
  tagOf,
} from './history-format.js';
import type { SlotRing } from './history-ring.js';

/** The history's books and voice, as recovery fills and uses them. */
export interface LoadTarget {
  readonly log: SegmentLog;
  readonly resolutionS: number;
  readonly signals: readonly string[];
  readonly index: ReadonlyMap<string, number>;
  /** The current set's tag and slots per segment. */
  readonly tag: string;
  readonly span: number;
  readonly ring: SlotRing;
  /** Slots to write (again). */
  readonly pending: Set<number>;
  /** Segments of the current set, by start slot. */
  readonly segments: Map<number, SegmentFile>;
  /** Files of other sets and `.bad` files, name -> end time in ms. */
  readonly others: Map<string, number>;
  now(): number;
  /** Deletes a segment; a failure is warned. */
  unlink(name: string): Promise<void>;
  /** A 'CORRUPT' warning. */
  corrupt(message: string): void;
  /** An 'IO' warning, `what` failed for `err`. */
  warnIo(what: string, err: unknown): void;
  /** The error open throws for `err`. */
  ioError(what: string, err: unknown): Error;
  /** The directory could not be opened for a disk fault: the hub measures into memory and writes once it can. */
  failing(err: unknown): void;
}

/** Reads every segment in the directory into the ring; see the top comment. Returns the records skipped as bad. */
export async function loadHistory(t: LoadTarget): Promise<number> {
  let names: string[] = [];
  try {
    await t.log.ensureDir();
    names = await t.log.list(NAME_RE);
  } catch (err) {
    if (!isDiskFault(err)) throw t.ioError(`cannot read the history directory ${t.log.dir}`, err);
    // A read-only or vanished disk: the hub measures into memory and writes once it can.
    t.failing(err);
  }
  // The start (epoch ms) of the oldest slot kept.
  const cutoff = t.ring.window(t.now())[0] * t.resolutionS * 1000;
  const files: { name: string; start: number; ours: boolean; buf: Buffer }[] = [];
  for (const name of names) {
    const m = NAME_RE.exec(name)!;
    const start = Number(m[1]);
    const res = Number(m[2]);
    if (res < 1) continue;
    const end = (start + slotsPerSegment(res)) * res * 1000;
    if (end <= cutoff) {
      await t.unlink(name);
      continue;
    }
    if (m[4] !== undefined) {
      t.others.set(name, end);
      continue;
    }
    const ours = res === t.resolutionS && m[3] === t.tag;
    if (!ours) t.others.set(name, end);
    try {
      files.push({ name, start, ours, buf: await t.log.read(name) });
    } catch (err) {
      t.warnIo(`cannot read history segment ${name}; skipped`, err);
    }
  }
  // The layout each tag stands for, from the good headers: a damaged header of the same set is read with it.
  const layouts = new Map<string, Header>();
  for (const f of files) {
    const h = parseHeader(f.buf);
    const tag = NAME_RE.exec(f.name)![3]!;
    if (typeof h === 'object' && 'signals' in h && tagOf(configBytes(h.resolutionS, h.signals)) === tag)
      layouts.set(tag, h);
  }
  // Other sets first: the current set, read last, wins a slot both hold.
  let skipped = 0;
  for (const f of files) if (!f.ours) skipped += await readSegment(t, f.name, f.start, false, f.buf, layouts);
  for (const f of files) if (f.ours) skipped += await readSegment(t, f.name, f.start, true, f.buf, layouts);
  return skipped;
}

/** Reads one segment into the ring; returns its records skipped as bad. */
async function readSegment(
  t: LoadTarget,
  name: string,
  start: number,
  ours: boolean,
  buf: Buffer,
  layouts: ReadonlyMap<string, Header>,
): Promise<number> {
  const corrupt = (what: string) => t.corrupt(`history segment ${name}: ${what}`);
  if (buf.length === 0) {
    // Created by an append that then failed (a full disk), or by a crash right after: nothing to keep.
    await t.unlink(name);
    return 0;
  }
  const h = parseHeader(buf);
  if (h === 'version' && !ours) {
    corrupt('written by a later format version; ignored');
    return 0;
  }
  let why = h === 'version' ? 'written by a later format version under our name' : 'bad' in h ? h.bad : undefined;
  if (why === undefined && typeof h === 'object' && 'signals' in h) {
    const sameConfig =
      h.resolutionS === t.resolutionS &&
      h.span === t.span &&
      h.signals.length === t.signals.length &&
      h.signals.every((s, i) => s === t.signals[i]);
    if (h.startSlot !== start || (ours && !sameConfig)) why = 'header does not match the file name';
  }
  if (why !== undefined || typeof h !== 'object' || !('signals' in h)) {
    // A version field other than ours under the current set's name is damage (this hub wrote that name).
    const layout = layoutOf(t, name, start, layouts);
    let recovered = 0;
    if (layout !== undefined) {
      // The records carry their own CRC and slot: read with the layout the name gives, written again below.
      recovered = fill(t, buf, layout, true).entries.length;
      corrupt(
        `${why ?? 'unreadable header'}; ${recovered} record(s) recovered with the layout of its name, to be written again; the file is renamed .bad`,
      );
    } else {
      corrupt(`${why ?? 'unreadable header'}; its layout is unknown, its records are lost; the file is renamed .bad`);
    }
    try {
      const moved = await t.log.moveAside(name);
      const res = Number(NAME_RE.exec(name)?.[2]);
      t.others.delete(name);
      t.others.set(moved, (start + slotsPerSegment(res)) * res * 1000);
    } catch (err) {
      // Left in place: the current set's next append to this hour replaces it (its records are pending).
      t.warnIo(`cannot move the corrupt segment ${name} aside`, err);
    }
    return 0;
  }
  if (h.resolutionS !== t.resolutionS) {
    corrupt(`written at ${h.resolutionS} s, not ${t.resolutionS} s; ignored until it ages out`);
    return 0;
  }
  const scan = fill(t, buf, h, false);
  const torn = buf.length - scan.restAt;
  if (scan.lost > 0) corrupt(`${scan.bad} corrupt record(s)${torn > 0 ? `, a torn record of ${torn} B` : ''} skipped`);
  if (!ours) return scan.lost;
  let cut = scan.goodEnd === buf.length;
  if (!cut) {
    // Appends must start on a record boundary; what is cut is already known to be bad.
    try {
      await t.log.cutTail(name, scan.goodEnd, false);
      cut = true;
    } catch {
      // A read-only disk: the first append cuts it (appends fail there until the disk takes writes anyway).
    }
  }
  t.segments.set(start, t.log.file(name, scan.goodEnd, true, !cut));
  return scan.lost;
}

/** The layout of a segment whose header is damaged, from its name: the current set's, or a set with a good header. */
function layoutOf(
  t: LoadTarget,
  name: string,
  start: number,
  layouts: ReadonlyMap<string, Header>,
): Header | undefined {
  const m = NAME_RE.exec(name)!;
  const res = Number(m[2]);
  if (res !== t.resolutionS) return undefined;
  const known = m[3] === t.tag ? { resolutionS: res, signals: t.signals } : layouts.get(m[3]!);
  if (known === undefined || known.resolutionS !== res) return undefined;
  return {
    length: headerLength(configBytes(res, known.signals)),
    resolutionS: res,
    startSlot: start,
    span: slotsPerSegment(res),
    signals: [...known.signals],
  };
}

/** Puts the good records of `buf` into the ring (mapped by signal name); `pending` to write them again. */
function fill(t: LoadTarget, buf: Buffer, h: Header, pending: boolean): RecordScan<number> {
  const n = t.signals.length;
  const map = h.signals.map((s) => t.index.get(s) ?? -1);
  const m = h.signals.length;
  const scan = scanRecords(buf, h.length, records(m, h.startSlot, h.span));
  const [lo, hi] = t.ring.window(t.now());
  for (const off of scan.entries) {
    const slot = buf.readUInt32LE(off);
    if (slot < lo || slot > hi) continue;
    const row = t.ring.row(slot, true);
    // A record of another set only fills the signals both share; one of the current set is the whole slot.
    for (let j = 0; j < m; j++) {
      if (map[j]! >= 0) t.ring.vals[row * n + map[j]!] = buf.readDoubleLE(off + 4 + 8 * j);
    }
    if (pending) t.pending.add(slot);
  }
  return scan;
}
