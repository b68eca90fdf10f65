/**
 * A message body that writes itself where it will be sent from, instead of being handed over as bytes that are then
 * copied there: the AMQP client gives it the frame buffer (src/amqp/publish-frames.ts), the outbox its record
 * (src/device/outbox.ts), the sealer the payload slot of an envelope (src/crypto/envelope.ts). The codec makes one
 * from a message (`bodyWriter` in src/codec), the sealer from a payload. docs/bus.md, "Copies of a body", counts
 * what this saves.
 *
 * JSON's size is known only once written, so a writer with a `sizeHint` may be offered less room than `maxBytes`: at
 * least the hint, and more when the buffer has it. It answers MORE_ROOM when the room was too small, and is called
 * again with twice the room (nextRoom), up to maxBytes. Writing twice costs a second encoding of what fitted, which a
 * hint close to the real size makes rare.
 */

export interface BodyWriter {
  /** The most writeTo ever writes. */
  readonly maxBytes: number;
  /**
   * About what writeTo will write. Given, the writer accepts less room than maxBytes and may answer MORE_ROOM;
   * without it, it is always given maxBytes.
   */
  readonly sizeHint?: number;
  /**
   * Writes the body from `offset`, before `end`, and returns the offset after its last byte (or MORE_ROOM, see
   * sizeHint). It writes the same bytes every time it is called: a publish sent again after a reconnection is
   * written again.
   */
  writeTo(target: Buffer, offset: number, end: number): number;
}

/** What a writer with a sizeHint answers when the room it was given is too small. */
export const MORE_ROOM = -1;

/** The room to offer after `room` was too small, or undefined when it already was maxBytes. */
export function nextRoom(room: number, maxBytes: number): number | undefined {
  return room >= maxBytes ? undefined : Math.min(maxBytes, Math.max(64, room * 2));
}

/** The room to offer first. */
export function firstRoom(writer: BodyWriter): number {
  return Math.min(writer.maxBytes, writer.sizeHint ?? writer.maxBytes);
}

export function isBodyWriter(b: unknown): b is BodyWriter {
  return (
    b !== null &&
    typeof b === 'object' &&
    typeof (b as BodyWriter).writeTo === 'function' &&
    Number.isSafeInteger((b as BodyWriter).maxBytes) &&
    (b as BodyWriter).maxBytes >= 0
  );
}

/**
 * The body as bytes, for whoever needs a Buffer (the in-memory transport; MQTT.js will): a writer is written once
 * into a buffer of its own, bytes are returned as they are (a view, no copy). The result may be a view of a larger
 * allocation (the room offered).
 */
export function bodyBytes(body: Uint8Array | BodyWriter): Buffer {
  if (body instanceof Uint8Array)
    return Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.length);
  let room: number | undefined = firstRoom(body);
  while (room !== undefined) {
    const buf = Buffer.allocUnsafe(room);
    const end = body.writeTo(buf, 0, room);
    if (end !== MORE_ROOM) return buf.subarray(0, checkedEnd(body, end, 0, room));
    room = nextRoom(room, body.maxBytes);
  }
  throw new RangeError(`a body writer asked for more than its maxBytes (${body.maxBytes})`);
}

/** The length written, after checking the end offset a writer returned for the room [offset, end). */
export function checkedEnd(writer: BodyWriter, returned: number, offset: number, end: number): number {
  if (!Number.isInteger(returned) || returned < offset || returned > end || returned - offset > writer.maxBytes)
    throw new RangeError(`body writer returned ${returned}: expected an offset within [${offset}, ${end}]`);
  return returned - offset;
}
