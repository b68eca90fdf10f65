/**
 * A channel: synchronous calls (one in flight at a time, as spec §2.2.2 asks, the rest queued in order), publishing
 * with confirms, consumers, and the content state machine for incoming messages.
 *
 *   opening --open-ok--> open --close()--> closing --close-ok--> closed
 *                          |                  ^
 *                          +--server close----+---- connection lost / protocol error ----> closed
 *
 * Incoming content (basic.deliver / get-ok / return) is a method frame, one header frame, then body frames up to the
 * announced size; any other frame in between is a connection error (505 UNEXPECTED_FRAME). A body that arrived in
 * one frame is handed out as a view of that frame, without a copy.
 *
 * Publishing waits (in order, bounded) while the broker blocked the connection, sent channel.flow(false), the write
 * buffer is over its limit, or too many publishes are unconfirmed; each publish has a deadline.
 */

import { TypedEmitter } from '../core/emitter.js';
import { ConfirmTracker, type PendingConfirm } from './confirms.js';
import { AmqpError, ChannelError, type CloseReason, FrameError, PublishError } from './errors.js';
import { FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_METHOD, writeFrameHeader } from './frame.js';
import { Consumer, Message, type MessageHandler, type Settler } from './message.js';
import { decodeMethod, methodSize, writeMethod } from './methods.js';
import type { ResolvedOptions } from './options.js';
import type { Output } from './output.js';
import {
  type DeliveredProperties,
  type MessageProperties,
  propertiesSize,
  readContentHeader,
  writeProperties,
} from './properties.js';
import {
  CLASS,
  METHOD_BASIC_ACK,
  METHOD_BASIC_DELIVER,
  METHOD_BASIC_NACK,
  METHOD_BASIC_PUBLISH,
  METHOD_BASIC_REJECT,
  METHOD_CHANNEL_CLOSE,
  METHOD_CHANNEL_CLOSE_OK,
  type Method,
  type MethodArgs,
  type MethodName,
} from './spec.js';
import type { FieldTable } from './table.js';
import { ArgumentError, checkInt, shortstrSize, writeShortstr, writeU64 } from './wire.js';

/** What a channel needs from its connection. */
export interface ChannelHost {
  readonly out: Output;
  readonly frameMax: number;
  readonly options: ResolvedOptions;
  /** Negotiated heartbeat timeout in seconds (0: none). No publish deadline may be shorter (PUB-7). */
  readonly heartbeat: number;
  /** The broker sent connection.blocked. */
  readonly blocked: boolean;
  /** Encoded bytes not yet written to the network (ours and the socket's). */
  backlog(): number;
  channelClosed(ch: Channel): void;
  handlerError(err: unknown, where: string): void;
}

/**
 * A body written straight into the frame buffer (e.g. JSON encoded in place, no intermediate copy): `writeTo` writes
 * at most `maxBytes` at `offset` and returns the offset after the last byte written.
 */
export interface BodyWriter {
  readonly maxBytes: number;
  writeTo(target: Buffer, offset: number): number;
}

export type Body = Buffer | Uint8Array | string | BodyWriter;

/** Where a publish's outcome goes when it is not a promise (the recovery layer); called once, either one. */
export interface PublishSink {
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
}

export interface PublishOptions {
  /** Return the message (and fail the publish) when no queue is bound to take it. */
  mandatory?: boolean;
  /**
   * Deadline in ms for buffer waits and the confirm (default: the connection's publishTimeout). One shorter than the
   * negotiated heartbeat timeout is refused (ArgumentError, ARGUMENT_INVALID): it would fail publishes that a live
   * connection can still confirm.
   */
  timeout?: number;
  /** false: fail with `buffer-full` instead of waiting when publishing must pause. */
  wait?: boolean;
}

export interface ConsumeOptions {
  /** Unacknowledged deliveries the broker may push to this consumer (basic.qos per consumer). Default: unlimited. */
  prefetch?: number;
  /** Automatic acknowledgement (unsafe: a crash loses what was delivered). Default false. */
  noAck?: boolean;
  exclusive?: boolean;
  noLocal?: boolean;
  consumerTag?: string;
  arguments?: FieldTable;
}

export interface ExchangeOptions {
  passive?: boolean;
  durable?: boolean;
  autoDelete?: boolean;
  internal?: boolean;
  arguments?: FieldTable;
}
export interface QueueOptions {
  passive?: boolean;
  durable?: boolean;
  exclusive?: boolean;
  autoDelete?: boolean;
  arguments?: FieldTable;
}
export interface QueueDeclareOk {
  queue: string;
  messageCount: number;
  consumerCount: number;
}

type ChannelState = 'opening' | 'open' | 'closing' | 'closed';

interface Rpc {
  frame: Buffer;
  args: Record<string, unknown>;
  expects: readonly MethodName[];
  onSend: (() => void) | undefined;
  resolve(m: Method | Message | null): void;
  reject(e: Error): void;
}

interface Incoming {
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
}

/**
 * One publish from the call to its outcome: the same object waits in the queue (when publishing must pause), and
 * then is the pending confirm, so a publish costs one allocation besides its promise. The body is dropped once
 * written: the tracker must not keep 20,000 bodies alive until their confirms.
 */
class Job implements PendingConfirm {
  resolve: () => void = noop;
  reject: (e: Error) => void = noop;
  returned: PendingConfirm['returned'] = undefined;
  messageId: string | undefined;
  cost = 0;
  constructor(
    readonly exchange: string,
    readonly routingKey: string,
    public body: Buffer | string | BodyWriter | null,
    readonly bodyLen: number,
    readonly properties: MessageProperties | undefined,
    readonly propsSize: number,
    readonly mandatory: boolean,
    readonly timeout: number,
    readonly deadline: number,
  ) {
    this.messageId = properties?.messageId;
  }
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

/** The first four bytes of a basic content header: class-id basic, weight 0. */
const BASIC_HEADER_START = CLASS.BASIC << 16;
/** Bodies at least this large are queued by reference instead of copied into the frame buffer. */
const ZERO_COPY_BYTES = 64 * 1024;
/** Bookkeeping per waiting publish, counted against publishQueueBytes. */
const WAIT_OVERHEAD = 256;
const RESOLVED: Promise<void> = Promise.resolve();
const noop = (): void => {};

export interface ChannelEvents {
  close: [error: Error | undefined];
  return: [message: Message];
  flow: [active: boolean];
  cancel: [consumerTag: string];
}

export class Channel extends TypedEmitter<ChannelEvents> implements Settler {
  #state: ChannelState = 'opening';
  #rpcs: Rpc[] = [];
  readonly #consumers = new Map<string, Consumer>();
  #confirms: ConfirmTracker | null = null;
  /** Delivery tags delivered with manual ack and not yet settled, in delivery order, with when they arrived. */
  readonly #unacked = new Map<number, number>();
  #lastDeliveryTag = 0;
  #incoming: Incoming | null = null;
  readonly #strings = new StringCache(3);
  #flowActive = true;
  /** Publishes waiting to be written, in call order, and the synchronous calls made after them (which must not overtake them). */
  #waiting: (Job | Rpc)[] = [];
  #waitingHead = 0;
  #waitingBytes = 0;
  #timer: ReturnType<typeof setInterval> | null = null;
  #sweepEvery = Infinity;
  #closing: Promise<void> | null = null;
  #resolveClosing: (() => void) | null = null;
  #closeError: Error | undefined;

  readonly #host: ChannelHost;

  constructor(
    readonly id: number,
    host: ChannelHost,
  ) {
    super();
    this.#host = host;
  }

  /** True until the channel closed (for any reason). */
  get isOpen(): boolean {
    return this.#state === 'open';
  }

  /**
   * When the channel is gone, drop acks, nacks and rejects of its deliveries instead of throwing: the broker has
   * requeued them already. Set by the recovery layer, whose applications cannot know that the channel under a
   * delivery was replaced.
   */
  dropStaleSettles = false;

  /** When the oldest delivery still waiting for its ack arrived (ms since the epoch), or undefined. */
  get oldestUnsettledAt(): number | undefined {
    for (const at of this.#unacked.values()) return at;
    return undefined;
  }

  /** In confirm mode: publishes not yet acked or nacked. */
  get unconfirmed(): number {
    return this.#confirms?.size ?? 0;
  }

  // ---- synchronous calls ------------------------------------------------------------------------------------------

  /** @internal sends channel.open; the connection awaits it. */
  _open(): Promise<void> {
    return this.#call('channel.open', {}, ['channel.open-ok']).then(() => {
      if (this.#state === 'opening') this.#state = 'open';
    });
  }

  exchangeDeclare(exchange: string, type: string, options: ExchangeOptions = {}): Promise<void> {
    return this.#call(
      'exchange.declare',
      {
        exchange,
        type,
        ...flags(options, ['passive', 'durable', 'autoDelete', 'internal']),
        arguments: options.arguments ?? {},
      },
      ['exchange.declare-ok'],
    ).then(noop);
  }

  exchangeDelete(exchange: string, options: { ifUnused?: boolean } = {}): Promise<void> {
    return this.#call('exchange.delete', { exchange, ifUnused: options.ifUnused ?? false }, [
      'exchange.delete-ok',
    ]).then(noop);
  }

  /** Routes messages from `source` to `destination` (RabbitMQ's exchange-to-exchange binding). */
  exchangeBind(destination: string, source: string, routingKey = '', args: FieldTable = {}): Promise<void> {
    return this.#call('exchange.bind', { destination, source, routingKey, arguments: args }, ['exchange.bind-ok']).then(
      noop,
    );
  }

  exchangeUnbind(destination: string, source: string, routingKey = '', args: FieldTable = {}): Promise<void> {
    return this.#call('exchange.unbind', { destination, source, routingKey, arguments: args }, [
      'exchange.unbind-ok',
    ]).then(noop);
  }

  /** Declares a queue; an empty name asks the broker to name it (the name is in the result). */
  async queueDeclare(queue = '', options: QueueOptions = {}): Promise<QueueDeclareOk> {
    const m = await this.#call(
      'queue.declare',
      {
        queue,
        ...flags(options, ['passive', 'durable', 'exclusive', 'autoDelete']),
        arguments: options.arguments ?? {},
      },
      ['queue.declare-ok'],
    );
    const a = (m as Extract<Method, { name: 'queue.declare-ok' }>).args;
    return { queue: a.queue, messageCount: a.messageCount, consumerCount: a.consumerCount };
  }

  queueBind(queue: string, exchange: string, routingKey = '', args: FieldTable = {}): Promise<void> {
    return this.#call('queue.bind', { queue, exchange, routingKey, arguments: args }, ['queue.bind-ok']).then(noop);
  }

  queueUnbind(queue: string, exchange: string, routingKey = '', args: FieldTable = {}): Promise<void> {
    return this.#call('queue.unbind', { queue, exchange, routingKey, arguments: args }, ['queue.unbind-ok']).then(noop);
  }

  /** Removes every ready message; resolves with how many. */
  async queuePurge(queue: string): Promise<number> {
    const m = await this.#call('queue.purge', { queue }, ['queue.purge-ok']);
    return (m as Extract<Method, { name: 'queue.purge-ok' }>).args.messageCount;
  }

  /** Deletes a queue; resolves with the number of messages it held. */
  async queueDelete(queue: string, options: { ifUnused?: boolean; ifEmpty?: boolean } = {}): Promise<number> {
    const m = await this.#call(
      'queue.delete',
      { queue, ifUnused: options.ifUnused ?? false, ifEmpty: options.ifEmpty ?? false },
      ['queue.delete-ok'],
    );
    return (m as Extract<Method, { name: 'queue.delete-ok' }>).args.messageCount;
  }

  /** Prefetch for consumers started after it on this channel (RabbitMQ: per consumer unless `global`). */
  basicQos(prefetchCount: number, options: { global?: boolean; prefetchSize?: number } = {}): Promise<void> {
    return this.#call(
      'basic.qos',
      { prefetchCount, prefetchSize: options.prefetchSize ?? 0, global: options.global ?? false },
      ['basic.qos-ok'],
    ).then(noop);
  }

  /**
   * Starts a consumer. With a handler, each delivery is passed to it (if it throws or rejects before settling the
   * message, the message is nacked with requeue and the error reported); without, the Consumer is an async iterator.
   * Manual acknowledgement is the default.
   */
  basicConsume(queue: string, handler?: MessageHandler | null, options: ConsumeOptions = {}): Promise<Consumer> {
    const noAck = options.noAck ?? false;
    let qos: Promise<void> | undefined;
    // Queued back to back, so no other consume can slip between the qos and the consume it applies to.
    if (options.prefetch !== undefined) qos = this.basicQos(options.prefetch);
    const consume = this.#call(
      'basic.consume',
      {
        queue,
        consumerTag: options.consumerTag ?? '',
        noLocal: options.noLocal ?? false,
        noAck,
        exclusive: options.exclusive ?? false,
        nowait: false,
        arguments: options.arguments ?? {},
      },
      ['basic.consume-ok'],
      (m) => {
        // Registered while the consume-ok frame is processed, before any delivery that follows it.
        const tag = (m as Extract<Method, { name: 'basic.consume-ok' }>).args.consumerTag;
        const c = new Consumer(tag, queue, noAck, (x) => this.basicCancel(x.tag), handler ?? null);
        this.#consumers.set(tag, c);
        return c;
      },
    ) as unknown as Promise<Consumer>;
    if (qos === undefined) return consume;
    qos.catch(noop);
    return qos.then(() => consume);
  }

  /** Cancels a consumer; deliveries sent before the broker's cancel-ok still reach it. */
  async basicCancel(consumerTag: string): Promise<void> {
    await this.#call('basic.cancel', { consumerTag, nowait: false }, ['basic.cancel-ok']);
    const c = this.#consumers.get(consumerTag);
    this.#consumers.delete(consumerTag);
    c?._end(undefined, false);
  }

  /** Fetches one message, or null when the queue is empty. */
  basicGet(queue: string, options: { noAck?: boolean } = {}): Promise<Message | null> {
    return this.#call('basic.get', { queue, noAck: options.noAck ?? false }, [
      'basic.get-ok',
      'basic.get-empty',
    ]) as unknown as Promise<Message | null>;
  }

  /** Redelivers every unacknowledged message of this channel (requeue true: possibly to other consumers). */
  basicRecover(requeue = true): Promise<void> {
    return this.#call('basic.recover', { requeue }, ['basic.recover-ok'], () => {
      // Everything outstanding is redelivered under new tags: the old ones must never be acked.
      this.#unacked.clear();
    }).then(noop);
  }

  /** Puts the channel in confirm mode: from now on every publish resolves only when the broker confirms it. */
  confirmSelect(): Promise<void> {
    if (this.#confirms !== null) return RESOLVED;
    return this.#call('confirm.select', { nowait: false }, ['confirm.select-ok'], undefined, () => {
      // Publishes written after confirm.select are numbered by the broker from 1, even before select-ok arrives.
      this.#confirms ??= new ConfirmTracker();
    }).then(noop);
  }

  txSelect(): Promise<void> {
    return this.#call('tx.select', {}, ['tx.select-ok']).then(noop);
  }

  txCommit(): Promise<void> {
    return this.#call('tx.commit', {}, ['tx.commit-ok']).then(noop);
  }

  txRollback(): Promise<void> {
    return this.#call('tx.rollback', {}, ['tx.rollback-ok']).then(noop);
  }

  /** Closes the channel; unconfirmed publishes whose confirm has not arrived by the close-ok fail as `closed`. */
  close(): Promise<void> {
    if (this.#state === 'closed') return RESOLVED;
    if (this.#closing !== null) return this.#closing;
    this.#closing = new Promise((resolve) => {
      this.#resolveClosing = resolve;
    });
    this.#startClose({ replyCode: 200, replyText: 'Goodbye', classId: 0, methodId: 0 }, undefined);
    return this.#closing;
  }

  #call(
    name: MethodName,
    args: Record<string, unknown>,
    expects: readonly MethodName[],
    onReply?: (m: Method) => unknown,
    onSend?: () => void,
  ): Promise<Method> {
    if (
      this.#state === 'closing' ||
      this.#state === 'closed' ||
      (this.#state === 'opening' && name !== 'channel.open')
    ) {
      return Promise.reject(this.#closedError());
    }
    let frame: Buffer;
    try {
      frame = encodeMethodFrame(this.id, name, args);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<Method>((resolve, reject) => {
      const rpc: Rpc = {
        frame,
        args,
        expects,
        onSend,
        resolve: onReply === undefined ? (resolve as Rpc['resolve']) : (m) => resolve(onReply(m as Method) as Method),
        reject,
      };
      this.#rpcs.push(rpc);
      if (this.#rpcs.length === 1) this.#sendRpc(rpc);
    });
  }

  #sendRpc(rpc: Rpc): void {
    // A call made after publishes that still wait goes out after them: a tx.commit or a passive declare must see
    // every publish made before it, as the caller wrote them.
    if (this.#waitingHead < this.#waiting.length) this.#waiting.push(rpc);
    else this.#writeRpc(rpc);
  }

  #writeRpc(rpc: Rpc): void {
    this.#host.out.write(rpc.frame);
    rpc.onSend?.();
  }

  #reply(m: Method | Message | null, name: MethodName): void {
    const rpc = this.#rpcs[0];
    if (rpc === undefined || !rpc.expects.includes(name)) {
      throw new FrameError(
        `channel ${this.id}: unexpected ${name}${rpc ? ` while waiting for ${rpc.expects.join(' or ')}` : ''}`,
        505,
      );
    }
    this.#rpcs.shift();
    const next = this.#rpcs[0];
    if (next !== undefined) this.#sendRpc(next);
    rpc.resolve(m);
  }

  // ---- publishing -------------------------------------------------------------------------------------------------

  /**
   * Publishes a message. In confirm mode the promise resolves when the broker confirmed it, and rejects with a
   * PublishError (nacked, returned, closed, timeout, buffer-full) otherwise; it settles exactly once. Without
   * confirm mode it resolves once the frames are queued for the socket.
   *
   * A Buffer body of 64 KiB or more is written by reference: do not modify it before the promise settles.
   */
  basicPublish(
    exchange: string,
    routingKey: string,
    body: Body,
    properties?: MessageProperties,
    options?: PublishOptions,
  ): Promise<void> {
    if (this.#state !== 'open')
      return Promise.reject(
        new PublishError('closed', `cannot publish: ${this.#closedError().message}`, { cause: this.#closedError() }),
      );
    let job: Job;
    try {
      const timeout = this.#timeout(options?.timeout);
      job = this.#prepare(
        exchange,
        routingKey,
        body,
        properties,
        options?.mandatory ?? false,
        timeout,
        Date.now() + timeout,
      );
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.#confirms === null && this.#waitingHead === this.#waiting.length && this.#canPublish()) {
      try {
        this.#writeMessage(job);
      } catch (err) {
        return Promise.reject(err);
      }
      return RESOLVED;
    }
    const p = new Promise<void>((resolve, reject) => {
      job.resolve = resolve;
      job.reject = reject;
    });
    // The caller may drop the promise; a failure must never become an unhandled rejection that kills the process.
    p.catch(noop);
    this.#dispatch(job, options?.wait ?? true);
    return p;
  }

  /**
   * @internal basicPublish for the recovery layer, which keeps its own record of each publish: `sink` learns the
   * outcome, exactly once, and no promise is made here. `deadline` (ms since the epoch) was set, and checked against
   * the heartbeat timeout, when the application called: a re-send after a reconnect has only what is left of it.
   */
  _publish(
    sink: PublishSink,
    exchange: string,
    routingKey: string,
    body: Body,
    properties: MessageProperties | undefined,
    mandatory: boolean,
    deadline: number,
  ): void {
    if (this.#state !== 'open')
      return sink.reject(
        new PublishError('closed', `cannot publish: ${this.#closedError().message}`, { cause: this.#closedError() }),
      );
    let job: Job;
    try {
      job = this.#prepare(
        exchange,
        routingKey,
        body,
        properties,
        mandatory,
        Math.max(1, deadline - Date.now()),
        deadline,
      );
    } catch (err) {
      return sink.reject(err as Error);
    }
    job.resolve = sink.resolve;
    job.reject = sink.reject;
    this.#dispatch(job, true);
  }

  /** A publish's deadline in ms: the one asked for (see checkPublishTimeout) or the default, raised likewise. */
  #timeout(requested: number | undefined): number {
    const floor = this.#host.heartbeat * 1000;
    // Raised here as well as in resolveOptions: heartbeat 0 takes the broker's value, known only after tune.
    return requested === undefined
      ? Math.max(this.#host.options.publishTimeout, floor)
      : checkPublishTimeout(requested, floor);
  }

  /** Sends a publish whose outcome callbacks are set, or queues it when publishing must pause. */
  #dispatch(job: Job, wait: boolean): void {
    if (this.#waitingHead < this.#waiting.length || !this.#canPublish()) return this.#enqueue(job, wait);
    if (this.#confirms !== null) return this.#send(job);
    try {
      this.#writeMessage(job);
    } catch (err) {
      return job.reject(err as Error);
    }
    job.resolve();
  }

  #prepare(
    exchange: string,
    routingKey: string,
    body: Body,
    properties: MessageProperties | undefined,
    mandatory: boolean,
    timeout: number,
    deadline: number,
  ): Job {
    shortstrSize(exchange, 'exchange');
    shortstrSize(routingKey, 'routingKey');
    const propsSize = propertiesSize(properties);
    if (12 + propsSize + 8 > this.#host.frameMax)
      throw new ArgumentError(
        `properties of ${propsSize} bytes do not fit in one frame (frame_max ${this.#host.frameMax})`,
      );
    let b: Buffer | string | BodyWriter;
    let bodyLen: number;
    if (typeof body === 'string') {
      bodyLen = Buffer.byteLength(body);
      // A string spanning several frames is converted once, so it can be cut at byte boundaries.
      b = bodyLen > this.#host.frameMax - 8 ? Buffer.from(body) : body;
    } else if (body instanceof Uint8Array) {
      b = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.length);
      bodyLen = body.length;
    } else if (isBodyWriter(body)) {
      b = body;
      bodyLen = body.maxBytes;
    } else {
      throw new ArgumentError('body: expected a Buffer, Uint8Array, string or BodyWriter');
    }
    return new Job(exchange, routingKey, b, bodyLen, properties, propsSize, mandatory, timeout, deadline);
  }

  #canPublish(): boolean {
    return (
      this.#state === 'open' &&
      this.#flowActive &&
      !this.#host.blocked &&
      this.#host.backlog() < this.#host.options.writeBufferBytes &&
      (this.#confirms === null || this.#confirms.size < this.#host.options.maxUnconfirmed)
    );
  }

  /** Writes a publish whose promise exists already; settles it now (no confirms) or hands it to the tracker. */
  #send(job: Job): void {
    try {
      this.#writeMessage(job);
    } catch (err) {
      // Nothing was committed to the output: the broker never sees this message, and the sequence is unchanged.
      return job.reject(err as Error);
    }
    job.body = null;
    if (this.#confirms === null) return job.resolve();
    this.#confirms.add(this.#confirms.nextSeq++, job);
    this.#armTimer(job.timeout);
  }

  #enqueue(job: Job, wait: boolean): void {
    const cost = (typeof job.body === 'string' || Buffer.isBuffer(job.body) ? job.bodyLen : 0) + WAIT_OVERHEAD;
    if (!wait || this.#waitingBytes + cost > this.#host.options.publishQueueBytes) {
      const why = this.#host.blocked
        ? 'the broker blocked the connection'
        : !this.#flowActive
          ? 'the broker paused the channel (flow)'
          : 'the write buffer is full';
      return job.reject(
        new PublishError('buffer-full', `cannot publish now: ${why}${wait ? ' and the publish queue is full' : ''}`),
      );
    }
    job.cost = cost;
    this.#waiting.push(job);
    this.#waitingBytes += cost;
    this.#armTimer(job.timeout);
  }

  /** @internal conditions changed (drain, unblocked, flow on, confirms arrived): send what waits, in order. */
  _resume(): void {
    while (this.#waitingHead < this.#waiting.length) {
      const w = this.#waiting[this.#waitingHead] as Job | Rpc;
      if (w instanceof Job) {
        if (!this.#canPublish()) break;
        this.#waitingBytes -= w.cost;
        this.#waiting[this.#waitingHead++] = undefined as unknown as Job;
        this.#send(w);
      } else {
        this.#waiting[this.#waitingHead++] = undefined as unknown as Job;
        if (this.#state === 'open' && this.#rpcs[0] === w) this.#writeRpc(w);
      }
    }
    if (this.#waitingHead === this.#waiting.length && this.#waitingHead > 0) {
      this.#waiting = [];
      this.#waitingHead = 0;
    }
  }

  /**
   * Writes method, header and body frames of one message into the output buffer in one go: nothing else can come
   * between them, so the frames of two messages never interleave on a channel.
   */
  #writeMessage(job: Job): void {
    const out = this.#host.out;
    const frameMax = this.#host.frameMax;
    const maxBody = frameMax - 8;
    const exLen = Buffer.byteLength(job.exchange);
    const rkLen = Buffer.byteLength(job.routingKey);
    const methodLen = 4 + 2 + 1 + exLen + 1 + rkLen + 1;
    const headerLen = 12 + job.propsSize;
    const body = job.body;
    const writer = typeof body === 'object' && !Buffer.isBuffer(body) ? body : null;
    const zeroCopy = writer === null && Buffer.isBuffer(body) && job.bodyLen >= ZERO_COPY_BYTES;
    let frames = job.bodyLen === 0 ? 0 : Math.ceil(job.bodyLen / maxBody);
    const total = 8 + methodLen + 8 + headerLen + (zeroCopy ? 0 : job.bodyLen + 8 * frames);
    const buf = out.reserve(total);
    let o = writeFrameHeader(buf, out.pos, FRAME_METHOD, this.id, methodLen);
    buf.writeUInt32BE(METHOD_BASIC_PUBLISH, o);
    buf.writeUInt16BE(0, o + 4); // ticket
    o = writeShortstr(buf, o + 6, job.exchange);
    o = writeShortstr(buf, o, job.routingKey);
    buf[o++] = job.mandatory ? 1 : 0;
    buf[o++] = FRAME_END;
    const headerAt = o;
    o = writeFrameHeader(buf, o, FRAME_HEADER, this.id, headerLen);
    buf.writeUInt32BE(BASIC_HEADER_START, o);
    writeU64(buf, o + 4, job.bodyLen);
    o = writeProperties(buf, o + 12, job.properties);
    buf[o++] = FRAME_END;
    if (writer !== null) {
      o = this.#writeBodyInPlace(buf, o, headerAt, writer, maxBody);
    } else if (zeroCopy) {
      out.commit(o);
      const b = body as Buffer;
      for (let at = 0; at < job.bodyLen; at += maxBody) {
        const n = Math.min(maxBody, job.bodyLen - at);
        const hb = out.reserve(8);
        out.commit(writeFrameHeader(hb, out.pos, FRAME_BODY, this.id, n));
        out.writeRef(b.subarray(at, at + n));
        const eb = out.reserve(1);
        eb[out.pos] = FRAME_END;
        out.commit(out.pos + 1);
      }
      return;
    } else if (typeof body === 'string') {
      if (frames === 1) {
        o = writeFrameHeader(buf, o, FRAME_BODY, this.id, job.bodyLen);
        o += buf.write(body, o, 'utf8');
        buf[o++] = FRAME_END;
      }
    } else {
      const b = body as Buffer;
      for (let at = 0; frames > 0; frames--, at += maxBody) {
        const n = Math.min(maxBody, job.bodyLen - at);
        o = writeFrameHeader(buf, o, FRAME_BODY, this.id, n);
        buf.set(n === b.length ? b : b.subarray(at, at + n), o); // a plain memcpy, cheaper than Buffer#copy
        o += n;
        buf[o++] = FRAME_END;
      }
    }
    out.commit(o);
  }

  /** A BodyWriter writes the body contiguously; then it is cut into frames in place and the sizes are patched. */
  #writeBodyInPlace(buf: Buffer, o: number, headerAt: number, writer: BodyWriter, maxBody: number): number {
    const start = o + 7;
    const end = writer.writeTo(buf, start);
    const len = end - start;
    if (!Number.isInteger(end) || len < 0 || len > writer.maxBytes) {
      throw new ArgumentError(
        `body writer returned ${end}: expected an offset within [${start}, ${start + writer.maxBytes}]`,
      );
    }
    writeU64(buf, headerAt + 7 + 4, len);
    if (len === 0) return o;
    const frames = Math.ceil(len / maxBody);
    // Move pieces 1..n-1 right (last first, so nothing is overwritten before it moved), then frame each piece.
    for (let i = frames - 1; i > 0; i--) {
      const from = start + i * maxBody;
      buf.copyWithin(o + i * (maxBody + 8) + 7, from, Math.min(from + maxBody, end));
    }
    for (let i = 0; i < frames; i++) {
      const n = Math.min(maxBody, len - i * maxBody);
      const at = o + i * (maxBody + 8);
      writeFrameHeader(buf, at, FRAME_BODY, this.id, n);
      buf[at + 7 + n] = FRAME_END;
    }
    return o + len + 8 * frames;
  }

  /** Deadlines are checked by one sweep per channel, at a quarter of the shortest deadline in use (50 ms - 1 s). */
  #armTimer(timeout: number): void {
    const every = Math.max(50, Math.min(1000, timeout / 4));
    if (this.#timer !== null) {
      if (every >= this.#sweepEvery) return;
      clearInterval(this.#timer);
    }
    this.#sweepEvery = every;
    // Kept referenced: pending publishes are pending work, and the sweep stops when none is left.
    this.#timer = setInterval(() => this.#sweep(), every);
  }

  #sweep(): void {
    const now = Date.now();
    if (this.#confirms !== null) this.#confirms.expire(now);
    let live = 0;
    for (let i = this.#waitingHead; i < this.#waiting.length; i++) {
      const w = this.#waiting[i] as Job | Rpc;
      if (!(w instanceof Job) || w.deadline > now) {
        this.#waiting[this.#waitingHead + live++] = w;
        continue;
      }
      this.#waitingBytes -= w.cost;
      w.reject(
        new PublishError(
          'timeout',
          'the publish waited past its deadline without being sent' +
            (this.#host.blocked ? ' (the broker blocked the connection)' : ''),
        ),
      );
    }
    this.#waiting.length = this.#waitingHead + live;
    if ((this.#confirms === null || this.#confirms.size === 0) && live === 0 && this.#timer !== null) {
      clearInterval(this.#timer);
      this.#timer = null;
      this.#sweepEvery = Infinity;
    }
    this._resume();
  }

  // ---- acknowledgements -------------------------------------------------------------------------------------------

  basicAck(deliveryTag: number, multiple = false): void {
    this.settle(deliveryTag, 'ack', multiple, false);
  }

  basicNack(deliveryTag: number, multiple = false, requeue = true): void {
    this.settle(deliveryTag, 'nack', multiple, requeue);
  }

  basicReject(deliveryTag: number, requeue = true): void {
    this.settle(deliveryTag, 'reject', false, requeue);
  }

  /**
   * Settles a delivery. A tag that is not outstanding on this channel (already settled, never delivered, or from
   * before a reconnect) is refused here: sent to the broker it would close the channel with PRECONDITION_FAILED.
   * `multiple` with tag 0 settles everything outstanding.
   */
  settle(tag: number, how: 'ack' | 'nack' | 'reject', multiple: boolean, requeue: boolean): void {
    if (this.#state !== 'open' && this.dropStaleSettles) return;
    if (this.#state !== 'open')
      throw new AmqpError('CHANNEL_CLOSED', `cannot ${how} delivery ${tag}: ${this.#closedError().message}`);
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
        `cannot ${how} delivery ${tag} on channel ${this.id}: ` +
          (code === 'ALREADY_SETTLED' ? 'it was already settled' : 'no such delivery on this channel'),
      );
    }
    const out = this.#host.out;
    const buf = out.reserve(21);
    const o = writeFrameHeader(buf, out.pos, FRAME_METHOD, this.id, 13);
    buf.writeUInt32BE(how === 'ack' ? METHOD_BASIC_ACK : how === 'nack' ? METHOD_BASIC_NACK : METHOD_BASIC_REJECT, o);
    writeU64(buf, o + 4, tag);
    buf[o + 12] = how === 'reject' ? (requeue ? 1 : 0) : (multiple ? 1 : 0) | (requeue && how === 'nack' ? 2 : 0);
    buf[o + 13] = FRAME_END;
    out.commitLazy(o + 14);
  }

  // ---- incoming frames --------------------------------------------------------------------------------------------

  /** @internal one frame for this channel. Throws FrameError for protocol violations (the connection closes). */
  _frame(type: number, payload: Buffer): void {
    if (this.#state === 'closing') return this.#frameWhileClosing(type, payload);
    if (this.#state === 'closed') return;
    const inc = this.#incoming;
    if (type === FRAME_METHOD) {
      if (inc !== null) throw new FrameError(`channel ${this.id}: method frame while content was expected`, 505);
      const id = payload.length >= 4 ? payload.readUInt32BE(0) : 0;
      if (id === METHOD_BASIC_DELIVER) return this.#deliverMethod(payload); // the hot path
      if (id === METHOD_BASIC_ACK || id === METHOD_BASIC_NACK)
        return this.#confirmMethod(payload, id === METHOD_BASIC_ACK);
      return this.#method(decodeMethod(payload));
    }
    if (type === FRAME_HEADER) {
      if (inc === null || inc.properties !== null)
        throw new FrameError(`channel ${this.id}: unexpected content header frame`, 505);
      const h = readContentHeader(payload);
      if (h.classId !== 60) throw new FrameError(`content header for class ${h.classId}, expected basic (60)`, 505);
      if (h.bodySize > this.#host.options.maxMessageBytes) {
        this.#incoming = null;
        return this.#startClose(
          {
            replyCode: 311,
            replyText: `CONTENT_TOO_LARGE - body of ${h.bodySize} bytes exceeds the client limit of ${this.#host.options.maxMessageBytes}`,
            classId: 60,
            methodId: 0,
          },
          new ChannelError(this.id, {
            replyCode: 311,
            replyText: `message body of ${h.bodySize} bytes exceeds maxMessageBytes ${this.#host.options.maxMessageBytes}`,
            classId: 60,
            methodId: 0,
          }),
        );
      }
      inc.properties = h.properties;
      inc.bodySize = h.bodySize;
      if (h.bodySize === 0) this.#complete(inc, Buffer.alloc(0));
      return;
    }
    if (type === FRAME_BODY) {
      if (inc === null || inc.properties === null)
        throw new FrameError(`channel ${this.id}: unexpected content body frame`, 505);
      const total = inc.received + payload.length;
      if (total > inc.bodySize)
        throw new FrameError(`channel ${this.id}: body frames exceed the announced ${inc.bodySize} bytes`, 505);
      if (total === inc.bodySize && inc.received === 0) return this.#complete(inc, payload); // whole: a view, no copy
      if (inc.body === null) inc.body = Buffer.allocUnsafe(inc.bodySize);
      payload.copy(inc.body, inc.received);
      inc.received = total;
      if (total === inc.bodySize) this.#complete(inc, inc.body);
      return;
    }
    throw new FrameError(`channel ${this.id}: frame type ${type} is not allowed on a channel`, 501);
  }

  #frameWhileClosing(type: number, payload: Buffer): void {
    // Until close-ok, only the close handshake and confirms matter; deliveries will be requeued by the broker.
    if (type !== FRAME_METHOD) return;
    const id = payload.length >= 4 ? payload.readUInt32BE(0) : 0;
    if (id === METHOD_BASIC_ACK || id === METHOD_BASIC_NACK)
      return this.#confirmMethod(payload, id === METHOD_BASIC_ACK);
    if (id === METHOD_CHANNEL_CLOSE || id === METHOD_CHANNEL_CLOSE_OK) this.#method(decodeMethod(payload));
  }

  #deliverMethod(p: Buffer): void {
    // basic.deliver: consumer-tag shortstr, delivery-tag longlong, redelivered bit, exchange, routing-key shortstrs
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
    this.#incoming = {
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
    };
  }

  #confirmMethod(p: Buffer, ack: boolean): void {
    if (p.length !== 13)
      throw new FrameError(`basic.${ack ? 'ack' : 'nack'}: expected 13 bytes of payload, got ${p.length}`, 501);
    const hi = p.readUInt32BE(4);
    if (hi > 0x1fffff) throw new FrameError('confirm delivery-tag beyond 2^53', 502);
    const tag = hi * 0x100000000 + p.readUInt32BE(8);
    const multiple = ((p[12] as number) & 1) !== 0;
    if (this.#confirms === null)
      throw new FrameError(`channel ${this.id}: basic.${ack ? 'ack' : 'nack'} without confirm mode`, 505);
    if (ack) this.#confirms.ack(tag, multiple);
    else this.#confirms.nack(tag, multiple);
    if (this.#waitingHead < this.#waiting.length) this._resume();
  }

  #method(m: Method): void {
    switch (m.name) {
      case 'channel.close': {
        this.#writeFrame('channel.close-ok', {});
        this.#finish(new ChannelError(this.id, m.args));
        return;
      }
      case 'channel.close-ok':
        if (this.#state !== 'closing') throw new FrameError(`channel ${this.id}: close-ok without close`, 505);
        this.#finish(this.#closeError);
        return;
      case 'channel.flow': {
        this.#flowActive = m.args.active;
        this.#writeFrame('channel.flow-ok', { active: m.args.active });
        this.emitSafe('flow', m.args.active);
        if (m.args.active) this._resume();
        return;
      }
      case 'basic.get-ok':
        this.#incoming = {
          kind: 'get',
          exchange: m.args.exchange,
          routingKey: m.args.routingKey,
          deliveryTag: m.args.deliveryTag,
          redelivered: m.args.redelivered,
          consumerTag: '',
          replyCode: 0,
          replyText: '',
          messageCount: m.args.messageCount,
          properties: null,
          bodySize: 0,
          body: null,
          received: 0,
        };
        if (this.#rpcs[0]?.expects.includes('basic.get-ok') !== true)
          throw new FrameError(`channel ${this.id}: unexpected basic.get-ok`, 505);
        return;
      case 'basic.return':
        this.#incoming = {
          kind: 'return',
          exchange: m.args.exchange,
          routingKey: m.args.routingKey,
          deliveryTag: 0,
          redelivered: false,
          consumerTag: '',
          replyCode: m.args.replyCode,
          replyText: m.args.replyText,
          messageCount: 0,
          properties: null,
          bodySize: 0,
          body: null,
          received: 0,
        };
        return;
      case 'basic.deliver': {
        // Reached only when the fast path was bypassed; keep the two in agreement.
        const a = m.args;
        this.#incoming = {
          kind: 'deliver',
          exchange: a.exchange,
          routingKey: a.routingKey,
          deliveryTag: a.deliveryTag,
          redelivered: a.redelivered,
          consumerTag: a.consumerTag,
          replyCode: 0,
          replyText: '',
          messageCount: 0,
          properties: null,
          bodySize: 0,
          body: null,
          received: 0,
        };
        return;
      }
      case 'basic.get-empty':
        return this.#reply(null, m.name);
      case 'basic.cancel': {
        // The broker cancelled a consumer (queue deleted, node failure ...): https://www.rabbitmq.com/docs/consumer-cancel
        if (!m.args.nowait) this.#writeFrame('basic.cancel-ok', { consumerTag: m.args.consumerTag });
        const c = this.#consumers.get(m.args.consumerTag);
        this.#consumers.delete(m.args.consumerTag);
        c?._end(
          new AmqpError(
            'CONSUMER_CANCELLED',
            `the broker cancelled consumer ${m.args.consumerTag} on queue ${c.queue}`,
          ),
          false,
        );
        this.emitSafe('cancel', m.args.consumerTag);
        return;
      }
      default:
        return this.#reply(m, m.name);
    }
  }

  #complete(inc: Incoming, body: Buffer): void {
    this.#incoming = null;
    const props = inc.properties as DeliveredProperties;
    if (inc.kind === 'return') {
      const msg = new Message(
        body,
        props,
        inc.exchange,
        inc.routingKey,
        0,
        false,
        '',
        null,
        inc.replyCode,
        inc.replyText,
      );
      this.#confirms?.markReturned(inc.exchange, inc.routingKey, props.messageId, inc.replyCode, inc.replyText);
      this.emitSafe('return', msg);
      return;
    }
    if (inc.deliveryTag > this.#lastDeliveryTag) this.#lastDeliveryTag = inc.deliveryTag;
    if (inc.kind === 'get') {
      const noAck = this.#rpcs[0]?.args['noAck'] === true;
      if (!noAck) this.#unacked.set(inc.deliveryTag, Date.now());
      const msg = new Message(
        body,
        props,
        inc.exchange,
        inc.routingKey,
        inc.deliveryTag,
        inc.redelivered,
        '',
        noAck ? null : this,
        0,
        '',
        inc.messageCount,
      );
      this.#reply(msg, 'basic.get-ok');
      return;
    }
    const c = this.#consumers.get(inc.consumerTag);
    if (c === undefined) {
      throw new FrameError(`channel ${this.id}: delivery for unknown consumer ${JSON.stringify(inc.consumerTag)}`, 505);
    }
    if (!c.noAck) this.#unacked.set(inc.deliveryTag, Date.now());
    const msg = new Message(
      body,
      props,
      inc.exchange,
      inc.routingKey,
      inc.deliveryTag,
      inc.redelivered,
      inc.consumerTag,
      c.noAck ? null : this,
    );
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

  #handlerFailed(err: unknown, msg: Message): void {
    // Not settled by the handler: give the message back rather than leave it stuck until the channel closes.
    if (this.#state === 'open' && this.#unacked.has(msg.deliveryTag)) this.settle(msg.deliveryTag, 'nack', false, true);
    this.#host.handlerError(err, `consumer ${msg.consumerTag} on channel ${this.id}`);
  }

  // ---- closing ----------------------------------------------------------------------------------------------------

  /** Sends channel.close and waits for close-ok; `err` is what pending work fails with (undefined: our clean close). */
  #startClose(reason: CloseReason, err: Error | undefined): void {
    if (this.#state === 'closing' || this.#state === 'closed') return;
    this.#state = 'closing';
    this.#closeError = err;
    this.#writeFrame('channel.close', reason);
    // Nothing more will be answered; publishes already written can still be confirmed before close-ok.
    this.#failRpcs(err ?? this.#closedError());
    this.#failWaiting(err);
  }

  /** @internal the connection is gone (or failed): everything fails with `err`, nothing is sent. */
  _lost(err: Error): void {
    this.#finish(err);
  }

  #finish(err: Error | undefined): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#closeError = err;
    if (this.#timer !== null) {
      clearInterval(this.#timer);
      this.#timer = null;
      this.#sweepEvery = Infinity;
    }
    const cause = err ?? this.#closedError();
    this.#failRpcs(cause);
    this.#failWaiting(err);
    this.#confirms?.failAll(cause);
    for (const c of this.#consumers.values()) c._end(err, err !== undefined);
    this.#consumers.clear();
    this.#unacked.clear();
    this.#incoming = null;
    this.#host.channelClosed(this);
    this.#resolveClosing?.();
    this.emitSafe('close', err);
  }

  #failRpcs(err: Error): void {
    const rpcs = this.#rpcs;
    this.#rpcs = [];
    for (const r of rpcs) r.reject(err);
  }

  #failWaiting(err: Error | undefined): void {
    const waiting = this.#waiting.slice(this.#waitingHead);
    this.#waiting = [];
    this.#waitingHead = 0;
    this.#waitingBytes = 0;
    for (const w of waiting) {
      if (w instanceof Job)
        w.reject(
          new PublishError('closed', 'the channel closed before the publish was sent', {
            cause: err ?? this.#closedError(),
          }),
        );
    }
  }

  #closedError(): AmqpError {
    if (this.#closeError !== undefined && this.#closeError instanceof AmqpError) return this.#closeError;
    return new AmqpError(
      'CHANNEL_CLOSED',
      `channel ${this.id} is ${this.#state === 'opening' ? 'not open yet' : 'closed'}`,
    );
  }

  #writeFrame<K extends MethodName>(name: K, args: Partial<MethodArgs[K]>): void {
    this.#host.out.write(encodeMethodFrame(this.id, name, args as Record<string, unknown>));
  }

  protected listenerFailed(err: unknown, event: string): void {
    this.#host.handlerError(err, `channel ${this.id} '${event}' listener`);
  }
}

/**
 * A publish deadline asked for explicitly, in ms (PUB-7): an integer no shorter than the heartbeat timeout (`floorMs`,
 * 0: none), because until the heartbeat declares the connection dead, its confirm can still come. A shorter one is
 * refused rather than silently stretched: the caller would count on a deadline this client does not keep.
 */
export function checkPublishTimeout(timeout: unknown, floorMs: number): number {
  const t = checkInt(timeout, 1, 2 ** 31 - 1, 'timeout');
  if (t < floorMs)
    throw new ArgumentError(
      `timeout: ${t} ms is shorter than the heartbeat timeout of ${floorMs / 1000} s; expected at least ${floorMs} ms`,
    );
  return t;
}

/** A whole method frame in its own buffer (for the infrequent methods; hot paths write into the output directly). */
export function encodeMethodFrame(channel: number, name: MethodName, args: Record<string, unknown>): Buffer {
  const size = methodSize(name, args as Partial<MethodArgs[typeof name]>);
  const buf = Buffer.allocUnsafe(size + 8);
  writeFrameHeader(buf, 0, FRAME_METHOD, channel, size);
  writeMethod(buf, 7, name, args as Partial<MethodArgs[typeof name]>);
  buf[7 + size] = FRAME_END;
  return buf;
}

function isBodyWriter(b: unknown): b is BodyWriter {
  return (
    b !== null &&
    typeof b === 'object' &&
    typeof (b as BodyWriter).writeTo === 'function' &&
    Number.isSafeInteger((b as BodyWriter).maxBytes) &&
    (b as BodyWriter).maxBytes >= 0
  );
}

function flags<T extends object>(o: T, names: readonly (keyof T & string)[]): Record<string, boolean> {
  const r: Record<string, boolean> = {};
  for (const n of names) r[n] = o[n] === true;
  return r;
}
