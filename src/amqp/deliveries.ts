/**
 * The consuming side of a channel: where a complete delivery goes (its consumer's handler or async iterator, or the
 * basic.get that asked for it), and the delivery tags handed out with manual acknowledgement and not yet settled.
 *
 * A tag is outstanding from its delivery until it is acked, nacked or rejected (with `multiple`, every outstanding
 * tag up to it). Settling a tag that is not outstanding is refused here (ALREADY_SETTLED, UNKNOWN_DELIVERY_TAG): sent
 * to the broker it would close the channel with PRECONDITION_FAILED. The outstanding tags are kept in delivery order
 * with their arrival time, for `multiple` and for the recovery layer's warning before the broker's consumer timeout.
 *
 *   basic.ack / basic.nack / basic.reject frame payload (13 bytes):
 *   method id (u32) | delivery-tag (u64) | bits: ack, nack: 1 multiple; nack: 2 requeue; reject: 1 requeue
 *
 * Acks are written lazily (Output.commitLazy): a consumer acking each delivery of a burst makes one socket write.
 *
 * A delivery whose body was over its limit (content.ts) is never handed to its consumer: it is rejected at once
 * without requeue (so that it goes to the queue's dead-letter exchange, or is dropped, instead of coming back to the
 * head of the queue), and the channel reports it with a Message whose body is empty and which cannot be settled.
 */
import type { ChannelHost } from './channel.js';
import type { Content } from './content.js';
import { AmqpError, channelFrameError } from './errors.js';
import { FRAME_END, FRAME_METHOD, writeFrameHeader } from './frame.js';
import { type Consumer, Message, type Settler } from './message.js';
import type { DeliveredProperties } from './properties.js';
import { METHOD_BASIC_ACK, METHOD_BASIC_NACK, METHOD_BASIC_REJECT } from './spec.js';
import { writeU64 } from './wire.js';

/**
 * The Message of complete content, settled through `settler` (null: nothing to settle). Each kind's Content holds
 * what its Message says (content.ts, channel.ts): a get-ok's consumer tag is '', a return's delivery tag 0 and its
 * message count 0, a delivery's reply code 0 and reply text ''.
 */
export function messageOf(c: Content, settler: Settler | null): Message {
  return new Message(
    c.body as Buffer,
    c.properties as DeliveredProperties,
    c.exchange,
    c.routingKey,
    c.deliveryTag,
    c.redelivered,
    c.consumerTag,
    settler,
    c.replyCode,
    c.replyText,
    c.messageCount,
  );
}

/** What deliveries need of their channel: it settles them (Channel.settle checks its state, then calls settle here). */
export interface DeliveringChannel extends Settler {
  readonly id: number;
  readonly isOpen: boolean;
}

export class Deliveries {
  readonly #consumers = new Map<string, Consumer>();
  /** Delivery tags delivered with manual ack and not yet settled, in delivery order, with when they arrived. */
  readonly #unacked = new Map<number, number>();
  #lastDeliveryTag = 0;
  readonly #id: number;
  readonly #channel: DeliveringChannel;
  readonly #host: ChannelHost;

  constructor(channel: DeliveringChannel, host: ChannelHost) {
    this.#id = channel.id;
    this.#channel = channel;
    this.#host = host;
  }

  /** When the oldest delivery still waiting for its ack arrived (ms since the epoch), or undefined. */
  get oldestUnsettledAt(): number | undefined {
    for (const at of this.#unacked.values()) return at;
    return undefined;
  }

  /** Registered as its consume-ok is processed, before any delivery that follows it. */
  addConsumer(c: Consumer): void {
    this.#consumers.set(c.tag, c);
  }

  /**
   * The limit a consumer set for its bodies, if any, read at the delivery's content header: a delivery for a consumer
   * we do not have fails there, before its body is read (held whole under the connection's 64 MiB limit, it let a
   * broker fill the hub's memory past the 1 MiB its consumer takes).
   */
  limitOf(tag: string): number | undefined {
    return this.#consumerOf(tag).maxMessageBytes;
  }

  removeConsumer(tag: string): Consumer | undefined {
    const c = this.#consumers.get(tag);
    this.#consumers.delete(tag);
    return c;
  }

  /** The consumer a delivery is for; one the broker made up is a protocol error (the connection closes). */
  #consumerOf(tag: string): Consumer {
    const c = this.#consumers.get(tag);
    if (c === undefined) throw channelFrameError(this.#id, `delivery for unknown consumer ${JSON.stringify(tag)}`);
    return c;
  }

  /** A complete basic.deliver: to its consumer's handler, or queued for its iterator. */
  deliver(inc: Content): void {
    if (inc.deliveryTag > this.#lastDeliveryTag) this.#lastDeliveryTag = inc.deliveryTag;
    const c = this.#consumerOf(inc.consumerTag);
    if (!c.noAck) this.#unacked.set(inc.deliveryTag, Date.now());
    const msg = messageOf(inc, c.noAck ? null : this.#channel);
    const handler = c.handler;
    if (handler === null) return c._push(msg);
    try {
      const r = handler(msg);
      if (r !== undefined && typeof (r as Promise<void>).then === 'function') {
        (r as Promise<void>).then(undefined, (err: unknown) => this.#handlerFailed(err, msg));
      }
    } catch (err) {
      this.#handlerFailed(err, msg);
    }
  }

  /** A complete basic.get-ok: the message its call resolves with. */
  got(inc: Content, noAck: boolean): Message {
    if (inc.deliveryTag > this.#lastDeliveryTag) this.#lastDeliveryTag = inc.deliveryTag;
    if (!noAck) this.#unacked.set(inc.deliveryTag, Date.now());
    return messageOf(inc, noAck ? null : this.#channel);
  }

  /**
   * Content over its limit, dropped as it arrived: a delivery (or a basic.get-ok, `getNoAck` telling how it was asked
   * for) is rejected without requeue unless the broker already counts it acknowledged; a return has nothing to settle.
   * Returns what the channel reports: the message with an empty body, settled already.
   */
  refuse(inc: Content, getNoAck: boolean): Message {
    let noAck = true;
    if (inc.kind === 'deliver') {
      noAck = this.#consumerOf(inc.consumerTag).noAck;
    } else if (inc.kind === 'get') {
      noAck = getNoAck;
    }
    if (inc.deliveryTag > this.#lastDeliveryTag) this.#lastDeliveryTag = inc.deliveryTag;
    if (!noAck) this.#write('reject', inc.deliveryTag, false, false);
    return messageOf(inc, null);
  }

  /**
   * Settles outstanding deliveries on an open channel and writes the frame. `multiple` with tag 0 settles everything
   * outstanding.
   */
  settle(tag: number, how: 'ack' | 'nack' | 'reject', multiple: boolean, requeue: boolean): void {
    const id = this.#id;
    if (multiple) {
      if (tag === 0) tag = this.#lastDeliveryTag;
      let any = false;
      for (const t of this.#unacked.keys()) {
        if (t > tag) break;
        this.#unacked.delete(t);
        any = true;
      }
      if (!any) throw new AmqpError('ALREADY_SETTLED', `cannot ${how} up to delivery ${tag}: nothing outstanding`);
    } else if (!this.#unacked.delete(tag)) {
      const code = tag >= 1 && tag <= this.#lastDeliveryTag ? 'ALREADY_SETTLED' : 'UNKNOWN_DELIVERY_TAG';
      throw new AmqpError(
        code,
        `cannot ${how} delivery ${tag} on channel ${id}: ` +
          (code === 'ALREADY_SETTLED' ? 'it was already settled' : 'no such delivery on this channel'),
      );
    }
    this.#write(how, tag, multiple, requeue);
  }

  #write(how: 'ack' | 'nack' | 'reject', tag: number, multiple: boolean, requeue: boolean): void {
    const id = this.#id;
    const out = this.#host.out;
    const buf = out.reserve(21);
    const o = writeFrameHeader(buf, out.pos, FRAME_METHOD, id, 13);
    buf.writeUInt32BE(how === 'ack' ? METHOD_BASIC_ACK : how === 'nack' ? METHOD_BASIC_NACK : METHOD_BASIC_REJECT, o);
    writeU64(buf, o + 4, tag);
    buf[o + 12] = how === 'reject' ? (requeue ? 1 : 0) : (multiple ? 1 : 0) | (requeue && how === 'nack' ? 2 : 0);
    buf[o + 13] = FRAME_END;
    out.commitLazy(o + 14);
  }

  /** basic.recover: everything outstanding is redelivered under new tags, and the old ones must never be acked. */
  forgetUnsettled(): void {
    this.#unacked.clear();
  }

  /** The channel closed: consumers end (with `err`, or cleanly), nothing is outstanding any more. */
  end(err: Error | undefined): void {
    for (const c of this.#consumers.values()) c._end(err, err !== undefined);
    this.#consumers.clear();
    this.#unacked.clear();
  }

  #handlerFailed(err: unknown, msg: Message): void {
    // Not settled by the handler: give the message back rather than leave it stuck until the channel closes.
    if (this.#channel.isOpen && this.#unacked.has(msg.deliveryTag))
      this.#channel.settle(msg.deliveryTag, 'nack', false, true);
    this.#host.handlerError(err, `consumer ${msg.consumerTag} on channel ${this.#id}`);
  }
}

/** What an oversized content is reported as when nobody listens for it. */
export function oversizedText(m: Message, bodySize: number, limit: number): string {
  const where = [
    m.exchange === '' ? `queue ${m.routingKey}` : `exchange ${m.exchange}, routing key ${m.routingKey}`,
    ...(m.properties.messageId === undefined ? [] : [`message id ${m.properties.messageId}`]),
  ].join(', ');
  const what = m.replyCode !== 0 ? 'returned' : m.consumerTag === '' ? 'fetched (basic.get) and rejected' : 'rejected';
  return `a message of ${bodySize} bytes (${where}) is over the limit of ${limit} bytes: ${what} without its body`;
}
