/**
 * Received messages (basic.deliver, basic.get-ok, basic.return) and consumers.
 *
 * A message remembers the channel it came on: ack, nack and reject go back on that channel only (a delivery tag
 * means nothing elsewhere), and the channel refuses a tag it has already settled instead of letting the broker
 * close the channel with PRECONDITION_FAILED (https://www.rabbitmq.com/docs/confirms#consumer-acks-double-acking).
 */
import { AmqpError } from './errors.js';
import type { DeliveredProperties } from './properties.js';

/** What a message needs from its channel to settle itself. */
export interface Settler {
  settle(tag: number, how: 'ack' | 'nack' | 'reject', multiple: boolean, requeue: boolean): void;
}

export class Message {
  /** The body: a view of the received frame when it arrived in one piece (do not keep it longer than needed). */
  declare readonly body: Buffer;
  declare readonly properties: DeliveredProperties;
  declare readonly exchange: string;
  declare readonly routingKey: string;
  /** 0 for a returned message. */
  declare readonly deliveryTag: number;
  declare readonly redelivered: boolean;
  /** The consumer tag for a delivery; '' for basic.get and returns. */
  declare readonly consumerTag: string;
  /** For a basic.return: why the broker returned it (312 NO_ROUTE ...). */
  declare readonly replyCode: number;
  declare readonly replyText: string;
  /** For basic.get: messages left in the queue. */
  declare readonly messageCount: number;
  readonly #settler: Settler | null;
  constructor(
    body: Buffer,
    properties: DeliveredProperties,
    exchange: string,
    routingKey: string,
    deliveryTag: number,
    redelivered: boolean,
    consumerTag: string,
    settler: Settler | null,
    replyCode = 0,
    replyText = '',
    messageCount = 0,
  ) {
    this.body = body;
    this.properties = properties;
    this.exchange = exchange;
    this.routingKey = routingKey;
    this.deliveryTag = deliveryTag;
    this.redelivered = redelivered;
    this.consumerTag = consumerTag;
    this.replyCode = replyCode;
    this.replyText = replyText;
    this.messageCount = messageCount;
    this.#settler = settler;
  }

  get headers(): DeliveredProperties['headers'] {
    return this.properties.headers;
  }

  /** Quorum queues count deliveries (x-delivery-count); 0 when the header is absent. */
  get deliveryCount(): number {
    const v = this.properties.headers?.['x-delivery-count'];
    return typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : 0;
  }

  /** Acknowledges: the broker may forget the message. `multiple` also settles every earlier unsettled tag. */
  ack(multiple = false): void {
    this.#settlerOrThrow().settle(this.deliveryTag, 'ack', multiple, false);
  }

  /** Negative acknowledgement: requeue (default) or drop / dead-letter it. */
  nack(requeue = true, multiple = false): void {
    this.#settlerOrThrow().settle(this.deliveryTag, 'nack', multiple, requeue);
  }

  /** Like nack for a single message (basic.reject). */
  reject(requeue = true): void {
    this.#settlerOrThrow().settle(this.deliveryTag, 'reject', false, requeue);
  }

  /** The body as UTF-8 text. */
  text(): string {
    return this.body.toString('utf8');
  }

  #settlerOrThrow(): Settler {
    if (this.#settler === null)
      throw new AmqpError('NOT_SETTLEABLE', 'this message was not delivered with manual acknowledgement');
    return this.#settler;
  }
}

export type MessageHandler = (msg: Message) => void | Promise<void>;

/** A consumer: either a callback, or an async iterator over deliveries (`for await (const m of consumer)`). */
export class Consumer implements AsyncIterable<Message> {
  #buffered: Message[] = [];
  #waiting: { resolve(r: IteratorResult<Message>): void; reject(e: unknown): void } | null = null;
  #ended = false;
  #endError: Error | undefined;
  #endFatal = false;
  #cancelListeners: ((reason: Error | undefined) => void)[] = [];

  readonly #doCancel: (c: Consumer) => Promise<void>;
  declare readonly tag: string;
  declare readonly queue: string;
  declare readonly noAck: boolean;
  declare readonly handler: MessageHandler | null;
  /** Largest body this consumer takes (ConsumeOptions.maxMessageBytes); undefined: the connection's. */
  declare readonly maxMessageBytes: number | undefined;

  constructor(
    tag: string,
    queue: string,
    noAck: boolean,
    /** Cancels on the broker (basic.cancel). */
    doCancel: (c: Consumer) => Promise<void>,
    handler: MessageHandler | null,
    maxMessageBytes?: number,
  ) {
    this.tag = tag;
    this.queue = queue;
    this.noAck = noAck;
    this.handler = handler;
    this.maxMessageBytes = maxMessageBytes;
    this.#doCancel = doCancel;
  }

  /** True once cancelled by us, by the broker (queue deleted ...), or by a closed channel. */
  get cancelled(): boolean {
    return this.#ended;
  }

  /** Stops the consumer. Deliveries already received stay available to the iterator and must still be settled. */
  cancel(): Promise<void> {
    return this.#ended ? Promise.resolve() : this.#doCancel(this);
  }

  /** Called once when the consumer ends: `reason` is undefined for our own cancel, an AmqpError otherwise. */
  onCancel(listener: (reason: Error | undefined) => void): void {
    if (this.#ended) listener(this.#endError);
    else this.#cancelListeners.push(listener);
  }

  /** @internal a delivery for the iterator form. */
  _push(msg: Message): void {
    if (this.#waiting !== null) {
      const w = this.#waiting;
      this.#waiting = null;
      w.resolve({ value: msg, done: false });
    } else {
      this.#buffered.push(msg);
    }
  }

  /**
   * @internal the consumer is over. The iterator drains what it holds, then ends; when `fatal` (the channel or the
   * connection failed) it throws `reason` instead, so a loop cannot mistake a failure for a clean end.
   */
  _end(reason: Error | undefined, fatal: boolean): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#endError = reason;
    this.#endFatal = fatal;
    if (this.#waiting !== null) {
      const w = this.#waiting;
      this.#waiting = null;
      if (fatal) w.reject(reason);
      else w.resolve({ value: undefined, done: true });
    }
    const listeners = this.#cancelListeners;
    this.#cancelListeners = [];
    for (const l of listeners) {
      try {
        l(reason);
      } catch (err) {
        process.emitWarning(`a consumer cancel listener threw: ${String(err)}`, 'AmqpHandlerWarning');
      }
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<Message> {
    return {
      next: () => {
        const m = this.#buffered.shift();
        if (m !== undefined) return Promise.resolve({ value: m, done: false });
        if (this.#ended) {
          // A server-side cancel (queue deleted) ends iteration; a channel or connection failure throws.
          if (this.#endFatal) return Promise.reject(this.#endError);
          return Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => {
          this.#waiting = { resolve, reject };
        });
      },
      return: async () => {
        await this.cancel();
        return { value: undefined, done: true };
      },
    };
  }
}
