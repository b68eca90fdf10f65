/**
 * PUBACK and PUBREC reason codes that MQTT.js's parser cannot take. Mosquitto answers a PUBLISH over its
 * `message_size_limit` with PUBACK 0x95 (Packet too large), which MQTT 5 does not list for a PUBACK; mqtt-packet then
 * fails the packet ('Invalid puback reason code'), drops what it had buffered after it (the connection is out of step
 * until the keep-alive kills it) and MQTT.js never calls the publish back. So the bytes a connection brings are
 * framed here, before the parser sees them, by the fixed header and the remaining length only (a payload is skipped
 * by its length, never read), and such a code is noted by packet id and rewritten in place to 0x80 (Unspecified
 * error): MQTT.js calls the publish back with an error and removes it from its store, and the transport tells the
 * true code (transport.ts, #refusal).
 */

/** The PUBACK and PUBREC codes mqtt-packet 9 accepts (MQTT 5 §3.4.2.1): any other fails its parser. */
const ACCEPTED = new Set([0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]);
const PUBACK = 4;
const PUBREC = 5;
/** What a code it cannot take becomes: MQTT 5's Unspecified error, an error to MQTT.js. */
export const STAND_IN = 0x80;

const HEADER = 0;
const LENGTH = 1;
const BODY = 2;
/** A remaining length of more than 4 bytes: the parser refuses the connection's stream; nothing more is framed. */
const LOST = 3;

/** One connection's incoming bytes, fed in order, each chunk as it comes (any split). */
export class AckFramer {
  #state = HEADER;
  #type = 0;
  /** The remaining length, then what is left of it. */
  #left = 0;
  #lengthBytes = 0;
  /** Position in the packet's body: PUBACK and PUBREC read their first 3 bytes (packet id, reason code). */
  #pos = 0;
  #id = 0;

  /** `refused(packetId, code)` is called for each code rewritten. */
  constructor(readonly refused: (packetId: number, code: number) => void) {}

  /** Frames `chunk`, rewriting in place a reason code the parser cannot take. */
  feed(chunk: Uint8Array): void {
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      if (this.#state === BODY) {
        if ((this.#type === PUBACK || this.#type === PUBREC) && this.#pos < 3) {
          this.#ackByte(chunk, i);
          i++;
          this.#pos++;
          this.#left--;
        } else {
          const step = Math.min(this.#left, n - i);
          i += step;
          this.#left -= step;
        }
        if (this.#left === 0) this.#state = HEADER;
      } else if (this.#state === HEADER) {
        this.#type = (chunk[i++] as number) >> 4;
        this.#state = LENGTH;
        this.#left = 0;
        this.#lengthBytes = 0;
        this.#pos = 0;
      } else if (this.#state === LENGTH) {
        const b = chunk[i++] as number;
        this.#left += (b & 0x7f) * 128 ** this.#lengthBytes++;
        if ((b & 0x80) === 0) this.#state = this.#left === 0 ? HEADER : BODY;
        else if (this.#lengthBytes === 4) this.#state = LOST;
      } else return;
    }
  }

  #ackByte(chunk: Uint8Array, i: number): void {
    const b = chunk[i] as number;
    if (this.#pos === 0) this.#id = b << 8;
    else if (this.#pos === 1) this.#id |= b;
    else if (!ACCEPTED.has(b)) {
      // A reason code is there only when the remaining length is over 2 (MQTT 5 §3.4.2.1): #pos 2 is that byte.
      this.refused(this.#id, b);
      chunk[i] = STAND_IN;
    }
  }
}
