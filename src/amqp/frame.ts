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
 *
 * A view may be kept beyond the call only when the receiver says so (keep(): a body handed to the application as it
 * lies: bodies of 4 KiB or more, content.ts); the decoders of methods and content headers copy what they keep (strings,
 * longstr arguments, a table's byte arrays), and smaller bodies are copied. What no kept view points into is used again: the assembly buffer
 * of the next split frame, and the chunk itself (`chunkKept` false: the connection reads into it again). Without
 * that, the body frames of a skipped 60 MB delivery left 60 MB of assembly buffers and 60 MB of read buffers for the
 * garbage collector, which V8 only starts after 64 MB of such memory: the hub's RSS rose by 34 MB per flood.
 */
import { FrameError } from './errors.js';
import { FRAME_END, FRAME_HEADER, FRAME_HEARTBEAT } from './spec.js';

// The frame types, FRAME-END and FRAME-MIN-SIZE are the spec's constants (generated in spec.ts); re-exported so that
// whatever deals in frames imports them from here.
export { FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD, FRAME_MIN_SIZE } from './spec.js';
/** Bytes a frame adds around its payload: 7 of header, 1 frame-end. */
export const FRAME_OVERHEAD = 8;
/** How far past frame_max a content header frame from the broker may go (see FrameReader's size check). */
export const HEADER_SLACK = 65_536;

export const PROTOCOL_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1]); // "AMQP" 0 0 9 1
export const HEARTBEAT_FRAME = Buffer.from([FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);

export type FrameHandler = (type: number, channel: number, payload: Buffer) => void;

export class FrameReader {
  /** Largest acceptable frame, header and frame-end included (the negotiated frame_max). */
  declare frameMax: number;
  #head = Buffer.alloc(7);
  #headLen = 0;
  #partial: Buffer | null = null;
  /** The buffer #partial was cut from (it may be longer: a reused one). */
  #partialBase: Buffer | null = null;
  #partialLen = 0;
  /** An assembly buffer whose frame nobody kept, for the next split frame that fits. */
  #spare: Buffer | null = null;
  #kept = false;
  #chunkKept = false;

  readonly #onFrame: FrameHandler;
  constructor(onFrame: FrameHandler, frameMax: number) {
    this.#onFrame = onFrame;
    this.frameMax = frameMax;
  }

  /** True while bytes of an incomplete frame are held. */
  get pending(): boolean {
    return this.#headLen > 0 || this.#partial !== null;
  }

  /** Called by the receiver of a body frame, during onFrame, when it keeps the payload view beyond the call. */
  keep(): void {
    this.#kept = true;
  }

  /** After push(): whether a view of the chunk was kept (else its memory may be read into again). */
  get chunkKept(): boolean {
    return this.#chunkKept;
  }

  /** Feeds one chunk; calls onFrame for each complete frame in order. Throws FrameError on a protocol violation. */
  push(chunk: Buffer): void {
    this.#chunkKept = false;
    let off = 0;
    const len = chunk.length;
    if (this.#headLen > 0 || this.#partial !== null) {
      off = this.#continuePartial(chunk);
      if (off < 0) return; // chunk consumed, frame still incomplete
    }
    while (len - off >= 7) {
      const size = chunk.readUInt32BE(off + 3);
      this.#checkSize(size, chunk[off] as number);
      const end = off + 7 + size;
      if (end >= len) break; // the frame-end octet is not here yet
      if (chunk[end] !== FRAME_END) throw badEnd(chunk[end] as number);
      if (this.#hand(chunk[off] as number, chunk.readUInt16BE(off + 1), chunk.subarray(off + 7, end)))
        this.#chunkKept = true;
      off = end + 1;
    }
    if (off < len) this.#stash(chunk, off);
  }

  #checkSize(size: number, type: number): void {
    // A content header gets HEADER_SLACK more: RabbitMQ adds headers of its own to a delivery (x-delivery-count on a
    // redelivery, x-death) without checking frame_max, so a message published with headers just under it came back
    // over it, and the connection closed on every reconnection while the queue delivered it first.
    const max = type === FRAME_HEADER ? this.frameMax + HEADER_SLACK : this.frameMax;
    if (size + FRAME_OVERHEAD > max) {
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
    this.#partial = this.#assembly(chunk.readUInt32BE(off + 3));
    chunk.copy(this.#partial, 0, off);
    this.#partialLen = rest;
  }

  /** A buffer for a split frame of `size` payload bytes: the spare one when it fits. */
  #assembly(size: number): Buffer {
    let base = this.#spare;
    if (base !== null && base.length >= size + FRAME_OVERHEAD) this.#spare = null;
    else base = Buffer.allocUnsafe(size + FRAME_OVERHEAD);
    this.#partialBase = base;
    return base.length === size + FRAME_OVERHEAD ? base : base.subarray(0, size + FRAME_OVERHEAD);
  }

  /** Hands a frame out; true when the receiver kept its payload view (keep()). */
  #hand(type: number, channel: number, payload: Buffer): boolean {
    this.#kept = false;
    this.#onFrame(type, channel, payload);
    return this.#kept;
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
      this.#checkSize(size, this.#head[0] as number);
      this.#partial = this.#assembly(size);
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
    const base = this.#partialBase as Buffer;
    this.#partialBase = null;
    // Nobody kept it: the next split frame is assembled in the same buffer.
    if (!this.#hand(frame[0] as number, frame.readUInt16BE(1), frame.subarray(7, end))) {
      if (this.#spare === null || base.length > this.#spare.length) this.#spare = base;
    }
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
