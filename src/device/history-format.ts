/**
 * The history's segment files (src/device/history.ts): their names, header and records, written by the history and
 * read back by its recovery (history-recovery.ts). Apart from both so that the bytes on disk are described once.
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
 */

import { TextDecoder } from 'node:util';
import { crc32 } from '../store/crc32.js';
import type { RecordFraming } from '../store/segment-log.js';

const MAGIC = 0x48484245; // "EBHH" read as a little-endian u32
const VERSION = 1;
const HEADER_FIXED = 22; // magic .. signal count
/** A segment's name: start slot, resolution, tag, and `.bad` once set aside. */
export const NAME_RE = /^(\d{10})\.(\d+)s\.([0-9a-f]{8})\.seg(\.bad)?$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

export const slotsPerSegment = (resolutionS: number): number => Math.max(1, Math.floor(3600 / resolutionS));
export const segmentName = (start: number, resolutionS: number, tag: string): string =>
  `${String(start).padStart(10, '0')}.${resolutionS}s.${tag}.seg`;

/** The tag of a configuration (configBytes): the CRC32 in 8 hex digits, as segment names carry it. */
export const tagOf = (config: Buffer): string => crc32(config).toString(16).padStart(8, '0');

/** The length of the header of a configuration (configBytes). */
export const headerLength = (config: Buffer): number => HEADER_FIXED + (config.length - 6) + 4;

export interface Header {
  length: number;
  resolutionS: number;
  startSlot: number;
  span: number;
  signals: string[];
}

/** The header, or why it cannot be used ('version' when a later format wrote it). */
export function parseHeader(buf: Buffer): Header | { bad: string } | 'version' {
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
export function configBytes(resolutionS: number, signals: readonly string[]): Buffer {
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

export function encodeHeader(config: Buffer, startSlot: number, span: number): Buffer {
  const length = headerLength(config);
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
export function records(signals: number, start: number, span: number): RecordFraming<number> {
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
