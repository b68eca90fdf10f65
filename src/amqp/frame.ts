/**
 * Frames (spec §4.2.3) and the incremental reader that cuts a TCP byte stream into them.
 *
 *   0      1         3             7                  7+size   8+size
 *   +------+---------+-------------+------------------+--------+
 *   | type | channel |    size     |  payload ...     |  0xCE  |
 *   +------+---------+-------------+------------------+--------+
 *    octet   short      long         size octets        frame-end
 *
 * frame_max bounds the whole frame (8 + size). The reader accepts chunks of any size: a frame that arrived whole is
 * handed out as a view of the chunk (no copy); only a frame split over chunks is assembled, in one buffer allocated
 * after its size was checked against the limit.
 */
import { FrameError } from './errors.js';
import { FRAME_END, FRAME_HEARTBEAT } from './spec.js';

// The frame types, FRAME-END and FRAME-MIN-SIZE are the spec's constants (generated in spec.ts); re-exported so that
// whatever deals in frames imports them from here.
export { FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD, FRAME_MIN_SIZE } from './spec.js';
/** Bytes a frame adds around its payload: 7 of header, 1 frame-end. */
export const FRAME_OVERHEAD = 8;

export const PROTOCOL_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1]); // "AMQP" 0 0 9 1
export const HEARTBEAT_FRAME = Buffer.from([FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);

export type FrameHandler = (type: number, channel: number, payload: Buffer) => void;

export class FrameReader {
  /** Largest acceptable frame, header and frame-end included (the negotiated frame_max). */
  frameMax: number;
  #head = Buffer.alloc(7);
  #headLen = 0;
  #partial: Buffer | null = null;
  #partialLen = 0;

  readonly #onFrame: FrameHandler;
  constructor(onFrame: FrameHandler, frameMax: number) {
    this.#onFrame = onFrame;
    this.frameMax = frameMax;
  }

  /** True while bytes of an incomplete frame are held. */
  get pending(): boolean {
    return this.#headLen > 0 || this.#partial !== null;
  }

  /** Feeds one chunk; calls onFrame for each complete frame in order. Throws FrameError on a protocol violation. */
  push(chunk: Buffer): void {
    let off = 0;
    const len = chunk.length;
    if (this.#headLen > 0 || this.#partial !== null) {
      off = this.#continuePartial(chunk);
      if (off < 0) return; // chunk consumed, frame still incomplete
    }
    while (len - off >= 7) {
      const size = chunk.readUInt32BE(off + 3);
      this.#checkSize(size);
      const end = off + 7 + size;
      if (end >= len) break; // the frame-end octet is not here yet
      if (chunk[end] !== FRAME_END) throw badEnd(chunk[end] as number);
      this.#onFrame(chunk[off] as number, chunk.readUInt16BE(off + 1), chunk.subarray(off + 7, end));
      off = end + 1;
    }
    if (off < len) this.#stash(chunk, off);
  }

  #checkSize(size: number): void {
    if (size + FRAME_OVERHEAD > this.frameMax) {
      throw new FrameError(`frame of ${size + FRAME_OVERHEAD} bytes exceeds frame_max ${this.frameMax}`, 501);
    }
  }

  /** Keeps the tail of a chunk: the header bytes, or the frame so far in a buffer of the frame's full size. */
  #stash(chunk: Buffer, off: number): void {
    const rest = chunk.length - off;
    if (rest < 7) {
      chunk.copy(this.#head, 0, off);
      this.#headLen = rest;
      return;
    }
    const size = chunk.readUInt32BE(off + 3);
    this.#partial = Buffer.allocUnsafe(size + FRAME_OVERHEAD);
    chunk.copy(this.#partial, 0, off);
    this.#partialLen = rest;
  }

  /** Continues a held frame with the start of `chunk`. Returns the offset after it, or -1 if it is still incomplete. */
  #continuePartial(chunk: Buffer): number {
    let off = 0;
    if (this.#partial === null) {
      const take = Math.min(7 - this.#headLen, chunk.length);
      chunk.copy(this.#head, this.#headLen, 0, take);
      this.#headLen += take;
      off = take;
      if (this.#headLen < 7) return -1;
      const size = this.#head.readUInt32BE(3);
      this.#checkSize(size);
      this.#partial = Buffer.allocUnsafe(size + FRAME_OVERHEAD);
      this.#head.copy(this.#partial, 0);
      this.#partialLen = 7;
      this.#headLen = 0;
    }
    const frame = this.#partial;
    const take = Math.min(frame.length - this.#partialLen, chunk.length - off);
    chunk.copy(frame, this.#partialLen, off, off + take);
    this.#partialLen += take;
    off += take;
    if (this.#partialLen < frame.length) return -1;
    this.#partial = null;
    this.#partialLen = 0;
    const end = frame.length - 1;
    if (frame[end] !== FRAME_END) throw badEnd(frame[end] as number);
    this.#onFrame(frame[0] as number, frame.readUInt16BE(1), frame.subarray(7, end));
    return off;
  }
}

function badEnd(octet: number): FrameError {
  return new FrameError(`frame-end octet is 0x${octet.toString(16).padStart(2, '0')}, expected 0xce`, 501);
}

/** Writes a frame header at `off`; the caller writes the payload after it and the frame-end octet. */
export function writeFrameHeader(buf: Buffer, off: number, type: number, channel: number, size: number): number {
  buf[off] = type;
  buf.writeUInt16BE(channel, off + 1);
  buf.writeUInt32BE(size, off + 3);
  return off + 7;
}
