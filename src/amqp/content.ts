/**
 * Assembly of incoming content on one channel: basic.deliver, basic.get-ok and basic.return each come as a method
 * frame, one content header frame, then body frames up to the size the header announced.
 *
 *   idle --deliver | get-ok | return--> method --header--> header --body ... until body size--> complete --> idle
 *                                                                 (a body of 0 bytes completes at the header)
 *   any other frame in between: a connection error (505 UNEXPECTED_FRAME), raised by the channel or here
 *
 *   content header payload:   class-id (u16) | weight (u16) | body size (u64) | property flags | properties
 *   basic.deliver arguments:  consumer-tag (shortstr) | delivery-tag (u64) | redelivered (bit octet) |
 *                             exchange (shortstr) | routing-key (shortstr)
 *
 * basic.deliver is parsed here by hand, without the generic codec of methods.ts: it is the hot path of consuming,
 * and its strings repeat from one delivery to the next. A body that arrived in one frame is handed out as a view of
 * that frame, without a copy; one in several frames is copied into one buffer of the announced size.
 *
 * A body larger than its limit (the consumer's maxMessageBytes, else the connection's) is refused at its header:
 * nothing is allocated for it, its body frames are counted and dropped as they arrive, and the content completes
 * `oversized` with an empty body, for the channel to settle and report. The channel stays open: closing it would put
 * the message back at the head of its queue, to be delivered, and refused, again and again.
 */
import { channelFrameError, FrameError } from './errors.js';
import { type DeliveredProperties, readContentHeader } from './properties.js';
import { CLASS } from './spec.js';

/** A content method, its header, and its body: so far while it arrives, whole once complete. */
export interface Content {
  kind: 'deliver' | 'get' | 'return';
  exchange: string;
  routingKey: string;
  deliveryTag: number;
  redelivered: boolean;
  consumerTag: string;
  replyCode: number;
  replyText: string;
  messageCount: number;
  properties: DeliveredProperties | null;
  bodySize: number;
  body: Buffer | null;
  received: number;
  /** The body was over its limit, or its properties could not be read: its frames were dropped, `body` is empty. */
  oversized: boolean;
  /** Why its properties could not be read (then `oversized` too), else null. */
  unreadable: string | null;
}

const EMPTY = Buffer.alloc(0);

/** Bodies in one frame of this size or more are handed out as views of the frame; smaller ones are copied. */
export const VIEW_FROM = 4096;

export class ContentAssembler {
  /**
   * The content being received, between its method frame and its last body frame: any other method frame then is a
   * protocol error. A field rather than a getter because the channel reads it for every method frame (set only here).
   */
  incoming: Content | null = null;
  readonly #strings = new StringCache(3);
  readonly #id: number;
  readonly #limitOf: (c: Content) => number;
  readonly #keep: () => void;

  /**
   * `limitOf` gives the largest body accepted for a content (per consumer for deliveries); `keep` is told when a body
   * frame's payload is kept as it lies (a body in one frame), so that the reader does not read into it again.
   */
  constructor(channelId: number, limitOf: (c: Content) => number, keep: () => void) {
    this.#id = channelId;
    this.#limitOf = limitOf;
    this.#keep = keep;
  }

  /** basic.deliver, parsed from its payload (the hot path). */
  deliver(p: Buffer): void {
    let o = 4;
    const need = (n: number): void => {
      if (o + n > p.length) throw new FrameError('truncated basic.deliver', 501);
    };
    need(1);
    const tagLen = p[o] as number;
    need(1 + tagLen + 9 + 1);
    // Every delivery of a consumer repeats the same tag (and mostly the same exchange and routing key): reuse the
    // last decoded strings when the bytes match instead of allocating new ones.
    const consumerTag = this.#strings.get(p, o + 1, tagLen, 0);
    o += 1 + tagLen;
    const hi = p.readUInt32BE(o);
    if (hi > 0x1fffff) throw new FrameError('basic.deliver delivery-tag beyond 2^53', 502);
    const deliveryTag = hi * 0x100000000 + p.readUInt32BE(o + 4);
    const redelivered = ((p[o + 8] as number) & 1) !== 0;
    o += 9;
    const exLen = p[o] as number;
    need(1 + exLen + 1);
    const exchange = this.#strings.get(p, o + 1, exLen, 1);
    o += 1 + exLen;
    const rkLen = p[o] as number;
    need(1 + rkLen);
    const routingKey = this.#strings.get(p, o + 1, rkLen, 2);
    if (o + 1 + rkLen !== p.length) throw new FrameError('basic.deliver: unexpected bytes after the arguments', 501);
    // The same shape as content() makes, written out: this is the hot path.
    this.incoming = {
      kind: 'deliver',
      exchange,
      routingKey,
      deliveryTag,
      redelivered,
      consumerTag,
      replyCode: 0,
      replyText: '',
      messageCount: 0,
      properties: null,
      bodySize: 0,
      body: null,
      received: 0,
      oversized: false,
      unreadable: null,
    };
  }

  /** A content method decoded by the generic codec (get-ok, return; deliver only when the fast path was bypassed). */
  begin(
    kind: Content['kind'],
    exchange: string,
    routingKey: string,
    deliveryTag: number,
    redelivered: boolean,
    consumerTag: string,
    replyCode: number,
    replyText: string,
    messageCount: number,
  ): void {
    this.incoming = content(
      kind,
      exchange,
      routingKey,
      deliveryTag,
      redelivered,
      consumerTag,
      replyCode,
      replyText,
      messageCount,
    );
  }

  /** A content header frame; returns the content if it completed it (a body of 0 bytes), else null. */
  header(payload: Buffer): Content | null {
    const inc = this.incoming;
    if (inc === null || inc.properties !== null) throw channelFrameError(this.#id, 'unexpected content header frame');
    const h = readContentHeader(payload);
    if (h.classId !== CLASS.BASIC)
      throw new FrameError(`content header for class ${h.classId}, expected basic (${CLASS.BASIC})`, 505);
    inc.properties = h.properties;
    inc.bodySize = h.bodySize;
    // Properties we cannot read: the body is skipped as an oversized one is, and the message refused alone.
    if (h.unreadable !== undefined) {
      inc.unreadable = h.unreadable;
      inc.oversized = true;
    }
    // Over the limit the body is skipped, never assembled (a limit is at least 0, so the body is not empty).
    else if (h.bodySize > this.#limitOf(inc)) inc.oversized = true;
    return h.bodySize === 0 ? this.#complete(inc, EMPTY) : null;
  }

  /** A content body frame; returns the content if it completed it, else null. */
  body(payload: Buffer): Content | null {
    const inc = this.incoming;
    if (inc === null || inc.properties === null) throw channelFrameError(this.#id, 'unexpected content body frame');
    const total = inc.received + payload.length;
    if (total > inc.bodySize)
      throw channelFrameError(this.#id, `body frames exceed the announced ${inc.bodySize} bytes`);
    if (inc.oversized) {
      inc.received = total;
      return total === inc.bodySize ? this.#complete(inc, EMPTY) : null;
    }
    if (total === inc.bodySize && inc.received === 0) {
      // A small body is copied (into Node's pool): a view would hold the whole 64 KiB read buffer for as long as the
      // application holds the message, and would stop the reader from reading into that buffer again.
      if (payload.length < VIEW_FROM) return this.#complete(inc, Buffer.from(payload));
      this.#keep();
      return this.#complete(inc, payload); // whole: a view, no copy
    }
    if (inc.body === null) inc.body = Buffer.allocUnsafe(inc.bodySize);
    payload.copy(inc.body, inc.received);
    inc.received = total;
    return total === inc.bodySize ? this.#complete(inc, inc.body) : null;
  }

  /** The channel closed: content in progress is dropped. */
  reset(): void {
    this.incoming = null;
  }

  #complete(inc: Content, body: Buffer): Content {
    this.incoming = null;
    inc.body = body;
    return inc;
  }
}

// Every Content has the same shape (one hidden class on the hot path): keep deliver()'s literal in step.
function content(
  kind: Content['kind'],
  exchange: string,
  routingKey: string,
  deliveryTag: number,
  redelivered: boolean,
  consumerTag: string,
  replyCode: number,
  replyText: string,
  messageCount: number,
): Content {
  return {
    kind,
    exchange,
    routingKey,
    deliveryTag,
    redelivered,
    consumerTag,
    replyCode,
    replyText,
    messageCount,
    properties: null,
    bodySize: 0,
    body: null,
    received: 0,
    oversized: false,
    unreadable: null,
  };
}

/** The last string decoded in each of a few slots, with its bytes: repeated shortstrs cost a compare, not an allocation. */
class StringCache {
  readonly #bytes: Buffer[];
  readonly #lens: number[];
  readonly #strs: string[];
  constructor(slots: number) {
    this.#bytes = Array.from({ length: slots }, () => Buffer.alloc(255));
    this.#lens = new Array<number>(slots).fill(-1);
    this.#strs = new Array<string>(slots).fill('');
  }

  get(src: Buffer, start: number, len: number, slot: number): string {
    const cached = this.#bytes[slot] as Buffer;
    if (this.#lens[slot] === len) {
      let i = 0;
      while (i < len && cached[i] === src[start + i]) i++;
      if (i === len) return this.#strs[slot] as string;
    }
    const s = src.toString('utf8', start, start + len);
    src.copy(cached, 0, start, start + len);
    this.#lens[slot] = len;
    this.#strs[slot] = s;
    return s;
  }
}
