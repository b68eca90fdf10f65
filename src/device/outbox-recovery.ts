/**
 * How the outbox (src/device/outbox.ts) opens what a crash, a power cut or a bad disk left: every segment read in
 * order and replayed into the messages still unacked. Apart from the Outbox class because it runs once, before
 * anything is appended, and decides on damage alone; the class then takes over the books it returns.
 *
 * A record with a bad CRC, or a stretch whose length field is damaged, is skipped and counted (`corrupt`): the reader
 * resynchronises on the next offset where a whole record holds (plausible length and kind, valid UTF-8 names, its
 * CRC), so only damaged records are lost. Only the newest segment is appended to, so only its torn tail is cut off. A
 * file shorter than a header holds no record and is removed. A segment whose header is bad has its records read the
 * same way (the header is fixed, the records describe themselves; there is one format version, so a header naming
 * another is damage too): its unacked messages and the tombstones others still need are copied into the newest
 * segment by the outbox, then it is renamed `.bad` (the 3 newest `.bad` files are kept for inspection, older ones
 * deleted). Problems are told as corruption ('CORRUPT' warnings); recovery never fails for them.
 */

import { isDiskFault } from '../store/health.js';
import type { SegmentLog } from '../store/segment-log.js';
import {
  BAD_NAME,
  goodHeader,
  HEADER,
  type OutboxEntry,
  type OutboxRecord,
  SEGMENT_NAME,
  type Segment,
  scanSegment,
} from './outbox-format.js';

/** `.bad` files kept for inspection; older ones are deleted at open. */
const MAX_BAD = 3;

/** What recovery found: the books the outbox continues with. */
export interface RecoveredOutbox {
  /** The segments with a good header, oldest first. */
  segments: Segment[];
  /** Unacked messages, in the order they were appended. */
  pending: Map<number, OutboxRecord>;
  segmentOf: Map<number, Segment>;
  /** The newest segment when its header is good: appends continue in it. */
  active: Segment | undefined;
  /** Segments with a bad header: their unacked messages and needed tombstones are to be copied, then renamed .bad. */
  orphans: Segment[];
  nextId: number;
  nextSeq: number;
  /** Bytes of the good segments. */
  size: number;
  /** Records skipped or cut off as corrupt or torn. */
  corrupt: number;
}

export interface RecoveryHooks {
  /** Damage found (the outbox's 'CORRUPT' warning). */
  corrupt(message: string): void;
  /** A disk fault (told and retried by the outbox). */
  fault(what: string, err: unknown): void;
}

/**
 * Reads and repairs the segments of `log` (torn tails cut, empty files and surplus `.bad` files removed); undefined
 * when the directory cannot be opened for a disk fault (then messages wait in memory until it can be created).
 */
export async function recoverOutbox(log: SegmentLog, hooks: RecoveryHooks): Promise<RecoveredOutbox | undefined> {
  let names: string[];
  try {
    await log.ensureDir();
    names = await log.list(/\.obx(\.bad)?$/);
  } catch (err) {
    if (!isDiskFault(err)) throw err;
    // A read-only disk without the directory, or none at all: messages wait in memory until it can be created.
    hooks.fault('open the outbox directory', err);
    return undefined;
  }
  const r: RecoveredOutbox = {
    segments: [],
    pending: new Map(),
    segmentOf: new Map(),
    active: undefined,
    orphans: [],
    nextId: 1,
    nextSeq: 1,
    size: 0,
    corrupt: 0,
  };
  const segs = names.filter((n) => SEGMENT_NAME.test(n));
  let maxId = 0;
  let newestGood: Segment | undefined;
  for (const [i, name] of segs.entries()) {
    const seq = Number(SEGMENT_NAME.exec(name)![1]);
    r.nextSeq = Math.max(r.nextSeq, seq + 1);
    const newest = i === segs.length - 1;
    let buf: Buffer;
    try {
      buf = await log.read(name);
    } catch (err) {
      if (!isDiskFault(err)) throw err;
      hooks.corrupt(`${name}: cannot be read (${(err as NodeJS.ErrnoException).code}); left as it is`);
      continue;
    }
    if (buf.length < HEADER) {
      // No record fits: a crash or a full disk while it was being created.
      await log.remove(name).catch((err: unknown) => hooks.fault(`delete ${name}`, err));
      continue;
    }
    const seg: Segment = {
      seq,
      file: log.file(name, buf.length, true),
      live: new Set(),
      deps: new Set(),
      deleted: false,
    };
    if (!goodHeader(buf)) {
      const scan = scanSegment(buf);
      r.corrupt += scan.lost;
      seg.acked = [];
      r.orphans.push(seg);
      hooks.corrupt(
        `${name}: bad segment header; ${scan.entries.length} record(s) recovered by their own CRC${scan.lost > 0 ? `, ${scan.lost} damaged` : ''}; the unacked messages are copied to a new segment, then it is renamed .bad`,
      );
      for (const rec of scan.entries) {
        maxId = Math.max(maxId, rec.id);
        replay(r, seg, rec);
      }
      continue;
    }
    const scan = scanSegment(buf);
    const { bad, rest, goodEnd, resynced } = scan;
    r.corrupt += scan.lost;
    const resync = resynced > 0 ? ` (${resynced} after a damaged length, found again by resynchronising)` : '';
    if (newest && goodEnd < buf.length) {
      // A torn write: cut it off so the next append starts at a record boundary.
      hooks.corrupt(
        `${name}: ${bad} bad record(s)${resync}, ${buf.length - goodEnd} B after the last good record cut off`,
      );
      let torn = false;
      await log.cutTail(name, goodEnd, true).catch(() => {
        torn = true; // a read-only disk: the first append cuts it
      });
      seg.file = log.file(name, goodEnd, true, torn);
    } else if (scan.lost > 0) {
      hooks.corrupt(`${name}: ${bad} bad record(s)${resync}${rest ? `, the rest dropped at ${rest}` : ''}`);
    }
    r.segments.push(seg);
    if (newest) newestGood = seg;
    for (const rec of scan.entries) {
      maxId = Math.max(maxId, rec.id);
      replay(r, seg, rec);
    }
    r.size += seg.file.size;
  }
  r.nextId = maxId + 1;
  // Appends continue in the newest segment only when it is a good one.
  if (newestGood !== undefined) {
    r.active = newestGood;
    await newestGood.file.open().catch((err: unknown) => hooks.fault(`open ${newestGood.file.name}`, err));
  }
  const bad = names.filter((n) => BAD_NAME.test(n));
  for (const name of bad.slice(0, Math.max(0, bad.length - MAX_BAD)))
    await log.remove(name).catch((err: unknown) => hooks.fault(`delete ${name}`, err));
  return r;
}

/** A record read back: a message becomes pending in `seg`, a tombstone acks its message (which `seg` then needs). */
function replay(r: RecoveredOutbox, seg: Segment, rec: OutboxEntry): void {
  if (rec.kind === 'message') {
    if (r.pending.has(rec.id)) return;
    const { kind: _, ...record } = rec;
    r.pending.set(rec.id, record);
    r.segmentOf.set(rec.id, seg);
    seg.live.add(rec.id);
    return;
  }
  const target = r.segmentOf.get(rec.id);
  if (!target || !r.pending.delete(rec.id)) return;
  r.segmentOf.delete(rec.id);
  target.live.delete(rec.id);
  if (target !== seg) {
    seg.deps.add(target);
    seg.acked?.push({ id: rec.id, target });
  }
}
