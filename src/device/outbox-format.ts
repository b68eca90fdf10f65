/**
 * The outbox's segment files (src/device/outbox.ts): their header and record layout, the encoding of a message into
 * its record, the reading of a segment back, and the books the outbox keeps on each file. Apart from the Outbox class
 * so that the bytes on disk are described and checked in one place, which scanOutbox and recovery read with the same
 * framing the writer uses.
 *
 * Disk format (integers little-endian), segment files as in src/store/segment-log.ts: `<seq, 10 digits>.obx` in
 * creation order, each opened by the header "EBOX" | u16 version (1) | u16 header length (8), then records:
 *
 *   record   u32 payload length L | payload (L bytes) | u32 CRC32 of the length field and the payload
 *   message  u8 kind 1 | u48 id | u8 length + UTF-8 of peer, messageId, type, routingKey (each <= 255 B) | body
 *   ack      u8 kind 2 | u48 id                                  (a tombstone: 15 B on disk)
 *
 * Acks are tombstones in the same stream rather than an ack file: one file is written and synced, not two, and the
 * order of a message and its ack on disk is the order they happened in.
 */

import { TextDecoder } from 'node:util';
import { type BodyWriter, checkedEnd, firstRoom, MORE_ROOM, nextRoom } from '../core/body-writer.js';
import { throwRangeError } from '../core/errors.js';
import {
  type RecordFraming,
  type RecordScan,
  type SegmentFile,
  SegmentLog,
  scanRecords,
  sealRecord,
} from '../store/segment-log.js';

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
/** The header's length: a segment no longer than it holds no record. */
export const HEADER = 8;
const KIND_MESSAGE = 1;
const KIND_ACK = 2;
const MIN_PAYLOAD = 7;
const MAX_PAYLOAD = 16 * 1024 * 1024;
const TOMBSTONE = 4 + MIN_PAYLOAD + 4;
export const SEGMENT_NAME = /^(\d{10})\.obx$/;
export const BAD_NAME = /^\d{10}\.obx\.bad$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A segment file as the outbox keeps books on it. */
export interface Segment {
  seq: number;
  file: SegmentFile;
  /** Unacked messages in it. */
  live: Set<number>;
  /** Older segments holding messages its tombstones ack: it must outlive them. */
  deps: Set<Segment>;
  deleted: boolean;
  /** A segment with a bad header: the ids its tombstones ack in other segments, to be written again. */
  acked?: Array<{ id: number; target: Segment }>;
}

export const segmentName = (seq: number): string => `${String(seq).padStart(10, '0')}.obx`;

/** The header a new segment starts with. */
export function header(): Buffer {
  const buf = Buffer.alloc(HEADER);
  buf.writeUInt32LE(MAGIC, 0);
  buf.writeUInt16LE(VERSION, 4);
  buf.writeUInt16LE(HEADER, 6);
  return buf;
}

/** Writes the id into a record and seals it with its CRC. */
export function stamp(buf: Buffer, id: number): void {
  buf.writeUIntLE(id, 5, 6);
  sealRecord(buf);
}

/** The tombstone acking message `id`. */
export function tombstone(id: number): Buffer {
  const buf = Buffer.alloc(TOMBSTONE);
  buf.writeUInt32LE(MIN_PAYLOAD, 0);
  buf[4] = KIND_ACK;
  stamp(buf, id);
  return buf;
}

/** One record of a segment file: a message, or the tombstone acking the message with that id. */
export type OutboxEntry = { kind: 'ack'; id: number } | ({ kind: 'message' } & OutboxRecord);

function decode(buf: Buffer, start: number, end: number): OutboxEntry | undefined {
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

export const goodHeader = (buf: Buffer): boolean =>
  buf.length >= HEADER &&
  buf.readUInt32LE(0) === MAGIC &&
  buf.readUInt16LE(4) === VERSION &&
  buf.readUInt16LE(6) === HEADER;

/** The payload [start, end) has a known kind and, for a message, four strings that fit (valid UTF-8 with `names`). */
function wellFormed(buf: Buffer, start: number, end: number, names: boolean): boolean {
  const kind = buf[start];
  if (kind === KIND_ACK) return end - start === MIN_PAYLOAD;
  if (kind !== KIND_MESSAGE) return false;
  let off = start + 7;
  for (let i = 0; i < 4; i++) {
    if (off >= end || off + 1 + buf[off]! > end) return false;
    if (names) {
      try {
        utf8.decode(buf.subarray(off + 1, off + 1 + buf[off]!));
      } catch {
        return false;
      }
    }
    off += 1 + buf[off]!;
  }
  return true;
}

/** Records as the top comment frames them; a length outside MIN_PAYLOAD..MAX_PAYLOAD is not a boundary. */
const FRAMING: RecordFraming<OutboxEntry> = {
  prefix: 4,
  end(buf, off) {
    const len = buf.readUInt32LE(off);
    return len < MIN_PAYLOAD || len > MAX_PAYLOAD ? `an impossible length ${len}` : off + 4 + len + 4;
  },
  decode: (buf, start, end) => decode(buf, start + 4, end - 4),
  resync: true,
  // A resynchronised record must look like one the hub wrote before its CRC is even computed (top comment).
  plausible: (buf, start, end) => wellFormed(buf, start + 4, end - 4, true),
};

/** The records of a segment, its header good or not (then read from where the fixed header ends). */
export const scanSegment = (buf: Buffer): RecordScan<OutboxEntry> => scanRecords(buf, HEADER, FRAMING);

export interface OutboxSegmentScan extends Pick<RecordScan<OutboxEntry>, 'entries' | 'goodEnd' | 'bad' | 'rest'> {
  /** The file name, e.g. `0000000001.obx`. */
  name: string;
  /** The file's size in bytes. */
  size: number;
  /** False when the header is missing or wrong; the records are read all the same. */
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
    const { entries, goodEnd, bad, rest } = scanSegment(buf);
    out.push({ name, size: buf.length, header, entries, goodEnd, bad, rest });
  }
  return out;
}

/**
 * The record of a message (id and CRC still to stamp) and its body, a view of it: a BodyWriter is encoded straight
 * into the record.
 */
export function encodeMessage(
  peer: string,
  body: Uint8Array | BodyWriter,
  meta: OutboxMeta,
): { buf: Buffer; body: Buffer } {
  const strings = [peer, meta.messageId, meta.type, meta.routingKey];
  const lengths = strings.map((s) => Buffer.byteLength(s));
  if (lengths.some((n) => n > 255)) throwRangeError('peer, messageId, type and routingKey are limited to 255 bytes');
  const at = 4 + MIN_PAYLOAD + lengths.reduce((a, n) => a + 1 + n, 0);
  const most = MAX_PAYLOAD + 4 - at;
  let room: number | undefined = body instanceof Uint8Array ? body.length : Math.min(most, firstRoom(body));
  while (room !== undefined) {
    if (room > most) throw tooLarge();
    const buf = Buffer.allocUnsafe(at + room + 4);
    let end: number;
    if (body instanceof Uint8Array) {
      buf.set(body, at);
      end = at + body.length;
    } else {
      end = body.writeTo(buf, at, at + room);
      if (end === MORE_ROOM) {
        room = nextRoom(room, Math.min(most + 1, body.maxBytes));
        continue;
      }
      checkedEnd(body, end, at, at + room);
    }
    buf.writeUInt32LE(end - 4, 0);
    buf[4] = KIND_MESSAGE;
    let off = 11;
    for (const [i, s] of strings.entries()) {
      buf[off] = lengths[i] as number;
      off += 1 + buf.write(s, off + 1, 'utf8');
    }
    return { buf: buf.subarray(0, end + 4), body: buf.subarray(at, end) };
  }
  throw tooLarge();
}

function tooLarge(): RangeError {
  return new RangeError(`a message is limited to ${MAX_PAYLOAD} bytes`);
}
