/**
 * A channel: its state machine, the synchronous calls of its API, and the routing of its incoming frames. The work
 * is done by the parts it owns, one file each:
 *
 *   rpc.ts         synchronous calls, one in flight at a time (spec §2.2.2), the rest queued in order
 *   publisher.ts   the publish pipeline: waiting when publishing must pause, confirms, deadlines (its frames:
 *                  publish-frames.ts)
 *   content.ts     incoming content: method, header and body frames assembled into one message
 *   deliveries.ts  consumers, basic.get results, and the delivery tags waiting for ack / nack / reject
 *
 *   opening --open-ok--> open --close()--> closing --close-ok--> closed
 *                          |                  ^
 *                          +--server close----+---- connection lost / protocol error ----> closed
 *
 * While closing, only the close handshake and confirms are read (the broker requeues what it delivered); closing
 * fails the calls and the waiting publishes at once, and the publishes still unconfirmed at close-ok. A protocol
 * violation is thrown as a FrameError: the connection closes with its reply code.
 *
 * ChannelHost is all a channel needs of its connection, so the unit tests drive a channel with frames and no socket.
 *
 * It stays longer than the other files (over 500 lines) because the channel's API is about thirty public methods,
 * which must live on the class; each hands its work to one of the parts above in a few lines.
 */

import { TypedEmitter } from '../core/emitter.js';
import { type Content, ContentAssembler } from './content.js';
import { Deliveries, messageOf, oversizedText } from './deliveries.js';
import { AmqpError, ChannelError, type CloseReason, channelFrameError, PublishError } from './errors.js';
import { FRAME_BODY, FRAME_HEADER, FRAME_METHOD } from './frame.js';
import { Consumer, type Message, type MessageHandler, type Settler } from './message.js';
import { decodeMethod, encodeMethodFrame } from './methods.js';
import type { ResolvedOptions } from './options.js';
import type { Output } from './output.js';
import type { MessageProperties } from './properties.js';
import { type Body, Publisher, type PublishOptions, type PublishSink } from './publisher.js';
import { type Rpc, RpcQueue } from './rpc.js';
import {
  METHOD_BASIC_ACK,
  METHOD_BASIC_DELIVER,
  METHOD_BASIC_NACK,
  METHOD_CHANNEL_CLOSE,
  METHOD_CHANNEL_CLOSE_OK,
  type Method,
  type MethodArgs,
  type MethodName,
} from './spec.js';
import type { FieldTable } from './table.js';
import { ArgumentError } from './wire.js';

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
  /** A body frame's payload is kept as it lies (FrameReader.keep); absent when nothing reads into it again. */
  keepFrame?(): void;
  channelClosed(ch: Channel): void;
  handlerError(err: unknown, where: string): void;
  /** The broker owed `what` an answer for longer than options.rpcTimeout: the connection cannot be trusted. */
  unanswered?(channel: number, what: string, ms: number): void;
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
  /**
   * Largest body this consumer takes (default, and at most, the connection's maxMessageBytes). A delivery announced
   * larger is skipped as it arrives, rejected without requeue (dead-lettered when its queue has a dead-letter
   * exchange) and reported by the channel's `oversized` event, never handed to the consumer.
   */
  maxMessageBytes?: number;
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

const RESOLVED: Promise<void> = Promise.resolve();
const noop = (): void => {};

export interface ChannelEvents {
  close: [error: Error | undefined];
  return: [message: Message];
  flow: [active: boolean];
  cancel: [consumerTag: string];
  /**
   * Content over its limit arrived and was dropped unread: a delivery or basic.get result (rejected without requeue,
   * unless taken with noAck), or a return. `message` has an empty body and cannot be settled. Without a listener, a
   * process warning says it.
   */
  oversized: [message: Message, bodySize: number, limit: number];
  /**
   * Content whose properties cannot be read (a headers table nested deeper than the client takes): refused and
   * reported like oversized content, with why; the connection and the channel go on. Without a listener, a process
   * warning says it.
   */
  malformed: [message: Message, reason: string];
}

export class Channel extends TypedEmitter<ChannelEvents> implements Settler {
  #state: ChannelState = 'opening';
  #closing: Promise<void> | null = null;
  #resolveClosing: (() => void) | null = null;
  #closeError: Error | undefined;
  readonly #host: ChannelHost;
  readonly #rpcs: RpcQueue;
  readonly #pub: Publisher<Rpc>;
  readonly #content: ContentAssembler;
  readonly #deliveries: Deliveries;
  /** The deadline of the answer the broker owes (a call in flight, or the close-ok): see ConnectionOptions.rpcTimeout. */
  #deadline: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly id: number,
    host: ChannelHost,
  ) {
    super();
    this.#host = host;
    this.#rpcs = new RpcQueue(
      id,
      host.out,
      (rpc) => this.#pub.defer(rpc),
      (what) => this.#owed(what),
    );
    this.#pub = new Publisher<Rpc>(this, host, (rpc) => {
      if (this.#state === 'open') this.#rpcs.writeDeferred(rpc);
    });
    this.#content = new ContentAssembler(
      id,
      (c) => this.#limitOf(c),
      () => host.keepFrame?.(),
    );
    this.#deliveries = new Deliveries(this, host);
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
    return this.#deliveries.oldestUnsettledAt;
  }

  /** In confirm mode: publishes not yet acked or nacked. */
  get unconfirmed(): number {
    return this.#pub.unconfirmed;
  }

  // ---- synchronous calls ------------------------------------------------------------------------------------------

  /** @internal sends channel.open; the connection awaits it. */
  _open(): Promise<void> {
    return this.#call('channel.open', {}).then(() => {
      if (this.#state === 'opening') this.#state = 'open';
    });
  }

  exchangeDeclare(exchange: string, type: string, options: ExchangeOptions = {}): Promise<void> {
    return this.#done('exchange.declare', {
      exchange,
      type,
      ...flags(options, ['passive', 'durable', 'autoDelete', 'internal']),
      arguments: options.arguments ?? {},
    });
  }

  exchangeDelete(exchange: string, options: { ifUnused?: boolean } = {}): Promise<void> {
    return this.#done('exchange.delete', { exchange, ifUnused: options.ifUnused ?? false });
  }

  /** Routes messages from `source` to `destination` (RabbitMQ's exchange-to-exchange binding). */
  exchangeBind(destination: string, source: string, routingKey = '', args: FieldTable = {}): Promise<void> {
    return this.#done('exchange.bind', { destination, source, routingKey, arguments: args });
  }

  exchangeUnbind(destination: string, source: string, routingKey = '', args: FieldTable = {}): Promise<void> {
    return this.#done('exchange.unbind', { destination, source, routingKey, arguments: args });
  }

  /** Declares a queue; an empty name asks the broker to name it (the name is in the result). */
  async queueDeclare(queue = '', options: QueueOptions = {}): Promise<QueueDeclareOk> {
    const m = await this.#call('queue.declare', {
      queue,
      ...flags(options, ['passive', 'durable', 'exclusive', 'autoDelete']),
      arguments: options.arguments ?? {},
    });
    const a = (m as Extract<Method, { name: 'queue.declare-ok' }>).args;
    return { queue: a.queue, messageCount: a.messageCount, consumerCount: a.consumerCount };
  }

  queueBind(queue: string, exchange: string, routingKey = '', args: FieldTable = {}): Promise<void> {
    return this.#done('queue.bind', { queue, exchange, routingKey, arguments: args });
  }

  queueUnbind(queue: string, exchange: string, routingKey = '', args: FieldTable = {}): Promise<void> {
    return this.#done('queue.unbind', { queue, exchange, routingKey, arguments: args });
  }

  /** Removes every ready message; resolves with how many. */
  async queuePurge(queue: string): Promise<number> {
    const m = await this.#call('queue.purge', { queue });
    return (m as Extract<Method, { name: 'queue.purge-ok' }>).args.messageCount;
  }

  /** Deletes a queue; resolves with the number of messages it held. */
  async queueDelete(queue: string, options: { ifUnused?: boolean; ifEmpty?: boolean } = {}): Promise<number> {
    const m = await this.#call('queue.delete', {
      queue,
      ifUnused: options.ifUnused ?? false,
      ifEmpty: options.ifEmpty ?? false,
    });
    return (m as Extract<Method, { name: 'queue.delete-ok' }>).args.messageCount;
  }

  /** Prefetch for consumers started after it on this channel (RabbitMQ: per consumer unless `global`). */
  basicQos(prefetchCount: number, options: { global?: boolean; prefetchSize?: number } = {}): Promise<void> {
    return this.#done('basic.qos', {
      prefetchCount,
      prefetchSize: options.prefetchSize ?? 0,
      global: options.global ?? false,
    });
  }

  /**
   * Starts a consumer. With a handler, each delivery is passed to it (if it throws or rejects before settling the
   * message, the message is nacked with requeue and the error reported); without, the Consumer is an async iterator.
   * Manual acknowledgement is the default.
   */
  basicConsume(queue: string, handler?: MessageHandler | null, options: ConsumeOptions = {}): Promise<Consumer> {
    const noAck = options.noAck ?? false;
    const max = options.maxMessageBytes;
    if (max !== undefined && !(Number.isInteger(max) && max >= 0))
      return Promise.reject(new ArgumentError(`maxMessageBytes: expected an integer >= 0, got ${String(max)}`));
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
      (m) => {
        // Registered while the consume-ok frame is processed, before any delivery that follows it.
        const tag = (m as Extract<Method, { name: 'basic.consume-ok' }>).args.consumerTag;
        const c = new Consumer(tag, queue, noAck, (x) => this.basicCancel(x.tag), handler ?? null, max);
        this.#deliveries.addConsumer(c);
        return c;
      },
    ) as unknown as Promise<Consumer>;
    if (qos === undefined) return consume;
    // Both are written before either answer comes: when the connection is lost in between, both reject, and the one
    // not returned must not be an unhandled rejection (it ended the hub's process when a link dropped at that step).
    qos.catch(noop);
    consume.catch(noop);
    return qos.then(() => consume);
  }

  /** Cancels a consumer; deliveries sent before the broker's cancel-ok still reach it. */
  async basicCancel(consumerTag: string): Promise<void> {
    await this.#call('basic.cancel', { consumerTag, nowait: false });
    this.#deliveries.removeConsumer(consumerTag)?._end(undefined, false);
  }

  /** Fetches one message, or null when the queue is empty. */
  basicGet(queue: string, options: { noAck?: boolean } = {}): Promise<Message | null> {
    return this.#call('basic.get', { queue, noAck: options.noAck ?? false }, undefined, undefined, [
      'basic.get-ok',
      'basic.get-empty',
    ]) as unknown as Promise<Message | null>;
  }

  /** Redelivers every unacknowledged message of this channel (requeue true: possibly to other consumers). */
  basicRecover(requeue = true): Promise<void> {
    return this.#done('basic.recover', { requeue }, () => this.#deliveries.forgetUnsettled());
  }

  /** Puts the channel in confirm mode: from now on every publish resolves only when the broker confirms it. */
  confirmSelect(): Promise<void> {
    if (this.#pub.confirming) return RESOLVED;
    return this.#done('confirm.select', { nowait: false }, undefined, () => this.#pub.selectConfirms());
  }

  txSelect(): Promise<void> {
    return this.#done('tx.select', {});
  }

  txCommit(): Promise<void> {
    return this.#done('tx.commit', {});
  }

  txRollback(): Promise<void> {
    return this.#done('tx.rollback', {});
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

  /** A synchronous call whose reply carries nothing the caller wants. */
  #done(
    name: MethodName,
    args: Record<string, unknown>,
    onReply?: (m: Method) => unknown,
    onSend?: () => void,
  ): Promise<void> {
    return this.#call(name, args, onReply, onSend).then(noop);
  }

  /** A synchronous call; the reply expected is the method's "-ok" unless `expects` says otherwise (basic.get). */
  #call(
    name: MethodName,
    args: Record<string, unknown>,
    onReply?: (m: Method) => unknown,
    onSend?: () => void,
    expects: readonly MethodName[] = [`${name}-ok` as MethodName],
  ): Promise<Method> {
    if (
      this.#state === 'closing' ||
      this.#state === 'closed' ||
      (this.#state === 'opening' && name !== 'channel.open')
    ) {
      return Promise.reject(this.#closedError());
    }
    return this.#rpcs.call(name, args, expects, onReply, onSend);
  }

  // ---- publishing (publisher.ts) ----------------------------------------------------------------------------------

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
    if (this.#state !== 'open') return Promise.reject(this.#cannotPublish());
    return this.#pub.publish(exchange, routingKey, body, properties, options);
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
    if (this.#state !== 'open') return sink.reject(this.#cannotPublish());
    this.#pub.publishTo(sink, exchange, routingKey, body, properties, mandatory, deadline);
  }

  /** @internal conditions changed (drain, unblocked, flow on, confirms arrived): send what waits, in order. */
  _resume(): void {
    this.#pub.resume();
  }

  #cannotPublish(): PublishError {
    return new PublishError('closed', `cannot publish: ${this.#closedError().message}`, {
      cause: this.#closedError(),
    });
  }

  // ---- acknowledgements (deliveries.ts) ---------------------------------------------------------------------------

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
    this.#deliveries.settle(tag, how, multiple, requeue);
  }

  // ---- incoming frames --------------------------------------------------------------------------------------------

  /** @internal one frame for this channel. Throws FrameError for protocol violations (the connection closes). */
  _frame(type: number, payload: Buffer): void {
    // Until close-ok, only the close handshake and confirms matter; deliveries will be requeued by the broker.
    const closing = this.#state === 'closing';
    if (this.#state === 'closed' || (closing && type !== FRAME_METHOD)) return;
    if (type === FRAME_METHOD) {
      if (!closing && this.#content.incoming !== null)
        throw channelFrameError(this.id, 'method frame while content was expected');
      const id = payload.length >= 4 ? payload.readUInt32BE(0) : 0;
      if (id === METHOD_BASIC_DELIVER && !closing) return this.#content.deliver(payload); // the hot path
      if (id === METHOD_BASIC_ACK || id === METHOD_BASIC_NACK)
        return this.#pub.confirm(payload, id === METHOD_BASIC_ACK);
      if (!closing || id === METHOD_CHANNEL_CLOSE || id === METHOD_CHANNEL_CLOSE_OK)
        this.#method(decodeMethod(payload));
      return;
    }
    if (type === FRAME_BODY) {
      const c = this.#content.body(payload);
      if (c === null) return;
      if (c.kind === 'deliver' && !c.oversized) return this.#deliveries.deliver(c); // the hot path
      return this.#complete(c);
    }
    if (type === FRAME_HEADER) {
      const c = this.#content.header(payload);
      if (c !== null) this.#complete(c);
      return;
    }
    throw channelFrameError(this.id, `frame type ${type} is not allowed on a channel`, 501);
  }

  #method(m: Method): void {
    switch (m.name) {
      case 'channel.close': {
        this.#writeFrame('channel.close-ok', {});
        const err = new ChannelError(this.id, m.args);
        // Closes crossed (a publish refused as we closed): the broker answers ours too, with a close-ok after this
        // close (spec: "The response to receiving a Close after sending Close must be to send Close-Ok"). Finished now,
        // the channel gave up its id, and that close-ok closed the whole connection (504, no such channel open).
        if (this.#state === 'closing') this.#closeError ??= err;
        else this.#finish(err);
        return;
      }
      case 'channel.close-ok':
        if (this.#state !== 'closing') throw channelFrameError(this.id, 'close-ok without close');
        this.#finish(this.#closeError);
        return;
      case 'channel.flow': {
        this.#pub.setFlow(m.args.active);
        this.#writeFrame('channel.flow-ok', { active: m.args.active });
        this.emitSafe('flow', m.args.active);
        if (m.args.active) this._resume();
        return;
      }
      case 'basic.get-ok': {
        const a = m.args;
        this.#content.begin('get', a.exchange, a.routingKey, a.deliveryTag, a.redelivered, '', 0, '', a.messageCount);
        if (this.#rpcs.current?.expects.includes('basic.get-ok') !== true)
          throw channelFrameError(this.id, 'unexpected basic.get-ok');
        // Answered: its body may take long on a slow link, which the heartbeat's whole-frame deadline watches.
        this.#owed(undefined);
        return;
      }
      case 'basic.return': {
        const a = m.args;
        this.#content.begin('return', a.exchange, a.routingKey, 0, false, '', a.replyCode, a.replyText, 0);
        return;
      }
      case 'basic.deliver': {
        // Reached only when the fast path was bypassed; keep the two in agreement.
        const a = m.args;
        this.#content.begin('deliver', a.exchange, a.routingKey, a.deliveryTag, a.redelivered, a.consumerTag, 0, '', 0);
        return;
      }
      case 'basic.get-empty':
        return this.#rpcs.reply(null, m.name);
      case 'basic.cancel': {
        // The broker cancelled a consumer (queue deleted, node failure ...): https://www.rabbitmq.com/docs/consumer-cancel
        if (!m.args.nowait) this.#writeFrame('basic.cancel-ok', { consumerTag: m.args.consumerTag });
        const c = this.#deliveries.removeConsumer(m.args.consumerTag);
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
        return this.#rpcs.reply(m, m.name);
    }
  }

  /** Complete incoming content, from content.ts. */
  #complete(c: Content): void {
    if (c.oversized) return this.#oversized(c);
    if (c.kind === 'deliver') return this.#deliveries.deliver(c);
    if (c.kind === 'get') {
      const noAck = this.#rpcs.current?.args['noAck'] === true;
      return this.#rpcs.reply(this.#deliveries.got(c, noAck), 'basic.get-ok');
    }
    const msg = messageOf(c, null);
    this.#pub.returned(c.exchange, c.routingKey, msg.properties.messageId, c.replyCode, c.replyText);
    this.emitSafe('return', msg);
  }

  /** The largest body accepted for a content: the consumer's own limit for a delivery, never over the connection's. */
  #limitOf(c: Content): number {
    const max = this.#host.options.maxMessageBytes;
    const own = c.kind === 'deliver' ? this.#deliveries.limitOf(c.consumerTag) : undefined;
    return own !== undefined && own < max ? own : max;
  }

  /**
   * Content over its limit, or whose properties could not be read, skipped as it arrived (content.ts): settled without
   * requeue, reported, never delivered.
   */
  #oversized(c: Content): void {
    // Too large for its limit, or with properties that cannot be read (then its properties are {}: no message id).
    const reason = c.unreadable;
    const limit = reason === null ? this.#limitOf(c) : 0;
    const msg = this.#deliveries.refuse(c, this.#rpcs.current?.args['noAck'] === true);
    const text =
      reason === null
        ? oversizedText(msg, c.bodySize, limit)
        : `a message whose properties cannot be read (exchange '${c.exchange}', routing key '${c.routingKey}'): ` +
          `${reason}; rejected without its body`;
    if (c.kind === 'get') {
      const code = reason === null ? 'CONTENT_TOO_LARGE' : 'CONTENT_MALFORMED';
      this.#rpcs.reply(null, 'basic.get-ok', new AmqpError(code, text));
    } else if (c.kind === 'return') {
      this.#pub.returned(c.exchange, c.routingKey, msg.properties.messageId, c.replyCode, c.replyText);
    }
    if (reason === null && this.listenerCount('oversized') > 0) this.emitSafe('oversized', msg, c.bodySize, limit);
    else if (reason !== null && this.listenerCount('malformed') > 0) this.emitSafe('malformed', msg, reason);
    else process.emitWarning(text, reason === null ? 'AmqpOversizedWarning' : 'AmqpMalformedWarning');
  }

  // ---- closing ----------------------------------------------------------------------------------------------------

  /** Sends channel.close and waits for close-ok; `err` is what pending work fails with (undefined: our clean close). */
  #startClose(reason: CloseReason, err: Error | undefined): void {
    if (this.#state === 'closing' || this.#state === 'closed') return;
    this.#state = 'closing';
    this.#closeError = err;
    this.#writeFrame('channel.close', reason);
    // Nothing more will be answered; publishes already written can still be confirmed before close-ok.
    const cause = err ?? this.#closedError();
    this.#rpcs.failAll(cause);
    this.#pub.failWaiting(cause);
    this.#owed('channel.close');
  }

  /** Starts the deadline of the answer the broker owes now (`what`), or ends it (undefined). */
  #owed(what: string | undefined): void {
    if (this.#deadline !== undefined) clearTimeout(this.#deadline);
    this.#deadline = undefined;
    const ms = this.#host.options.rpcTimeout;
    if (what === undefined || this.#host.unanswered === undefined) return;
    this.#deadline = setTimeout(() => {
      // A broker in a resource alarm reads nothing more from a connection that published (connection.blocked): a
      // call waits as long as the alarm lasts, hours for a disk, and only blockedTimeout may end that wait.
      if (this.#host.blocked) this.#owed(what);
      else this.#host.unanswered?.(this.id, what, ms);
    }, ms);
    this.#deadline.unref?.();
  }

  /** @internal the connection is gone (or failed): everything fails with `err`, nothing is sent. */
  _lost(err: Error): void {
    this.#finish(err);
  }

  #finish(err: Error | undefined): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#owed(undefined);
    this.#closeError = err;
    const cause = err ?? this.#closedError();
    this.#rpcs.failAll(cause);
    this.#pub.end(cause);
    this.#deliveries.end(err);
    this.#content.reset();
    this.#host.channelClosed(this);
    this.#resolveClosing?.();
    this.emitSafe('close', err);
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

function flags<T extends object>(o: T, names: readonly (keyof T & string)[]): Record<string, boolean> {
  const r: Record<string, boolean> = {};
  for (const n of names) r[n] = o[n] === true;
  return r;
}
