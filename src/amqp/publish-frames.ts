/**
 * One published message as frames, encoded by hand straight into the connection's output buffer rather than by the
 * generic codec of methods.ts, because this is the hot path of publishing:
 *
 *   method frame   basic.publish: method id (u32) | ticket (u16, 0) | exchange (shortstr) | routing-key (shortstr) |
 *                  bits (1: mandatory)
 *   header frame   class-id basic (u16) | weight 0 (u16) | body size (u64) | property flags | properties
 *   body frames    the body cut at frame_max - 8 bytes; none for an empty body
 *
 * All of it is reserved and written at once, so nothing can come between the frames of one message. A Buffer body
 * of 64 KiB or more is queued by reference instead of copied; a BodyWriter writes the whole body after the header,
 * which is then cut into frames in place (the only copy of a body that is not such a writer is the one into the frame).
 */
import { type BodyWriter, firstRoom, MORE_ROOM, nextRoom } from '../core/body-writer.js';
import { FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_METHOD, writeFrameHeader } from './frame.js';
import type { Output } from './output.js';
import { type MessageProperties, writeProperties } from './properties.js';
import { CLASS, METHOD_BASIC_PUBLISH } from './spec.js';
import { ArgumentError, writeShortstr, writeU64 } from './wire.js';

/** A message checked and sized by the publish pipeline. */
export interface OutgoingMessage {
  readonly exchange: string;
  readonly routingKey: string;
  /** A string only when it fits in one body frame. */
  readonly body: Buffer | string | BodyWriter | null;
  /** For a BodyWriter, its maxBytes. */
  readonly bodyLen: number;
  readonly properties: MessageProperties | undefined;
  readonly propsSize: number;
  readonly mandatory: boolean;
}

/** The first four bytes of a basic content header: class-id basic, weight 0. */
const BASIC_HEADER_START = CLASS.BASIC << 16;
/** Bodies at least this large are queued by reference instead of copied into the frame buffer. */
const ZERO_COPY_BYTES = 64 * 1024;

/**
 * Writes method, header and body frames of one message into the output buffer in one go: nothing else can come
 * between them, so the frames of two messages never interleave on a channel. A BodyWriter that fails (or returns a
 * bad offset: ArgumentError) throws before anything is committed to the output.
 */
export function writeMessage(out: Output, id: number, frameMax: number, msg: OutgoingMessage): void {
  const body = msg.body;
  if (typeof body === 'object' && body !== null && !Buffer.isBuffer(body))
    return writeFromWriter(out, id, frameMax, msg, body);
  const maxBody = frameMax - 8;
  const zeroCopy = Buffer.isBuffer(body) && msg.bodyLen >= ZERO_COPY_BYTES;
  let frames = msg.bodyLen === 0 ? 0 : Math.ceil(msg.bodyLen / maxBody);
  const buf = out.reserve(headSize(msg) + (zeroCopy ? 0 : msg.bodyLen + 8 * frames));
  let o = writeHead(buf, out.pos, id, msg, msg.bodyLen);
  if (zeroCopy) {
    out.commit(o);
    const b = body as Buffer;
    for (let at = 0; at < msg.bodyLen; at += maxBody) {
      const n = Math.min(maxBody, msg.bodyLen - at);
      const hb = out.reserve(8);
      out.commit(writeFrameHeader(hb, out.pos, FRAME_BODY, id, n));
      out.writeRef(b.subarray(at, at + n));
      const eb = out.reserve(1);
      eb[out.pos] = FRAME_END;
      out.commit(out.pos + 1);
    }
    return;
  }
  if (typeof body === 'string') {
    if (frames === 1) {
      o = writeFrameHeader(buf, o, FRAME_BODY, id, msg.bodyLen);
      o += buf.write(body, o, 'utf8');
      buf[o++] = FRAME_END;
    }
  } else if (body !== null) {
    for (let at = 0; frames > 0; frames--, at += maxBody) {
      const n = Math.min(maxBody, msg.bodyLen - at);
      o = writeFrameHeader(buf, o, FRAME_BODY, id, n);
      buf.set(n === body.length ? body : body.subarray(at, at + n), o); // a plain memcpy, cheaper than Buffer#copy
      o += n;
      buf[o++] = FRAME_END;
    }
  }
  out.commit(o);
}

/** Bytes of the method frame and the content header frame. */
function headSize(msg: OutgoingMessage): number {
  const methodLen = 4 + 2 + 1 + Buffer.byteLength(msg.exchange) + 1 + Buffer.byteLength(msg.routingKey) + 1;
  return 8 + methodLen + 8 + 12 + msg.propsSize;
}

/** The method frame and the content header frame at `at`; returns the offset after them. */
function writeHead(buf: Buffer, at: number, id: number, msg: OutgoingMessage, bodyLen: number): number {
  const methodLen = 4 + 2 + 1 + Buffer.byteLength(msg.exchange) + 1 + Buffer.byteLength(msg.routingKey) + 1;
  let o = writeFrameHeader(buf, at, FRAME_METHOD, id, methodLen);
  buf.writeUInt32BE(METHOD_BASIC_PUBLISH, o);
  buf.writeUInt16BE(0, o + 4); // ticket
  o = writeShortstr(buf, o + 6, msg.exchange);
  o = writeShortstr(buf, o, msg.routingKey);
  buf[o++] = msg.mandatory ? 1 : 0;
  buf[o++] = FRAME_END;
  o = writeFrameHeader(buf, o, FRAME_HEADER, id, 12 + msg.propsSize);
  buf.writeUInt32BE(BASIC_HEADER_START, o);
  writeU64(buf, o + 4, bodyLen);
  o = writeProperties(buf, o + 12, msg.properties);
  buf[o++] = FRAME_END;
  return o;
}

/** The body's bytes with their frame headers and ends. */
const framed = (len: number, maxBody: number): number => len + 8 * Math.ceil(len / maxBody);

/**
 * A BodyWriter writes the whole body after the header frame, which is then cut into frames in place. One with a
 * sizeHint is offered what the output buffer has left (at least the hint), and more when it asks: the frames are then
 * written again from the start, nothing having been committed.
 */
function writeFromWriter(out: Output, id: number, frameMax: number, msg: OutgoingMessage, writer: BodyWriter): void {
  const maxBody = frameMax - 8;
  const head = headSize(msg);
  let room: number | undefined = firstRoom(writer);
  while (room !== undefined) {
    const buf = out.reserve(head + framed(room, maxBody));
    if (writer.sizeHint !== undefined) {
      const left = buf.length - out.pos - head;
      room = Math.min(writer.maxBytes, Math.max(room, left - 8 * Math.ceil(left / (maxBody + 8))));
    }
    const o = writeHead(buf, out.pos, id, msg, 0);
    const start = o + 7;
    const end = writer.writeTo(buf, start, start + room);
    if (end === MORE_ROOM && writer.sizeHint !== undefined) {
      room = nextRoom(room, writer.maxBytes);
      continue;
    }
    if (!Number.isInteger(end) || end < start || end - start > room) {
      throw new ArgumentError(`body writer returned ${end}: expected an offset within [${start}, ${start + room}]`);
    }
    out.commit(frameInPlace(buf, o, id, o - 8 - 12 - msg.propsSize, end - start, maxBody));
    return;
  }
  throw new ArgumentError(`the body writer needs more than its maxBytes (${writer.maxBytes})`);
}

/** Cuts the body written at `o + 7` into frames in place and patches the body size; returns the end offset. */
function frameInPlace(buf: Buffer, o: number, id: number, headerAt: number, len: number, maxBody: number): number {
  writeU64(buf, headerAt + 7 + 4, len);
  if (len === 0) return o;
  const start = o + 7;
  const end = start + len;
  const frames = Math.ceil(len / maxBody);
  // Move pieces 1..n-1 right (last first, so nothing is overwritten before it moved), then frame each piece.
  for (let i = frames - 1; i > 0; i--) {
    const from = start + i * maxBody;
    buf.copyWithin(o + i * (maxBody + 8) + 7, from, Math.min(from + maxBody, end));
  }
  for (let i = 0; i < frames; i++) {
    const n = Math.min(maxBody, len - i * maxBody);
    const at = o + i * (maxBody + 8);
    writeFrameHeader(buf, at, FRAME_BODY, id, n);
    buf[at + 7 + n] = FRAME_END;
  }
  return o + len + 8 * frames;
}
