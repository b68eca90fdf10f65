/**
 * A channel that outlives the channels underneath it: the one underneath is re-created after every connection
 * recovery, and alone when the broker closed only it (an error, the consumer timeout), with its qos and confirm mode,
 * then its consumers, then the publishes that waited.
 *
 *   attached (a live Channel) --channel or connection lost--> recovering --_attach() on the new connection--> attached
 *        \--close() or the connection's close()--> closed (for good: consumers stop, waiting publishes fail)
 *
 * Its methods mirror Channel's. Declarations are recorded in the connection's Topology once the broker accepted them,
 * and fail with RECOVERING while there is no channel (the application retries after `recovered`). Publishes go
 * through its PublishBuffer, which makes each settle once whatever happens to the channels. Deliveries from a channel
 * that is gone cannot be settled on its successor: the channels are made with dropStaleSettles, so those acks are
 * dropped (the broker requeued the messages) instead of sent with a stale delivery tag. A delivery left unsettled
 * for ackWarningAfter is reported (ack-deadline) before the broker's consumer_timeout closes the channel.
 */
import { randomUUID } from 'node:crypto';
import { TypedEmitter } from '../core/emitter.js';
import type { Channel, ConsumeOptions, ExchangeOptions, QueueDeclareOk, QueueOptions } from './channel.js';
import type { Connection } from './connection.js';
import { oversizedText } from './deliveries.js';
import { AmqpError, BY_APP, ChannelError, PublishError } from './errors.js';
import type { Consumer, Message, MessageHandler } from './message.js';
import type { MessageProperties } from './properties.js';
import { PublishBuffer } from './publish-buffer.js';
import { type Body, checkPublishTimeout, type PublishOptions } from './publisher.js';
import type { RecoveringConnection } from './recovery.js';
import type { FieldTable } from './table.js';

export interface ChannelSetup {
  /** Publisher confirms (default true): a publish resolves only when the broker has the message. */
  confirm?: boolean;
  /** basic.qos for the consumers of this channel (default none: set one per consumer or here). */
  prefetch?: number;
}

/** A consumer that survives recovery; its handler gets every delivery, from whichever channel it arrives on. */
export class RecoveringConsumer {
  #current: Consumer | null = null;
  /** The channel #current consumes on, or one a basic.consume for it is under way on. */
  #on: Channel | null = null;
  #cancelled = false;
  /** @internal a re-consume loop runs for it (one at a time: several made one consumer several on the broker). */
  _retrying = false;
  constructor(
    public queue: string,
    readonly handler: MessageHandler,
    readonly options: ConsumeOptions,
    readonly channel: RecoveringChannel,
  ) {}

  /** The consumer tag on the broker now (changes with recovery unless `options.consumerTag` fixes it). */
  get tag(): string | undefined {
    return this.#current?.tag;
  }

  get cancelled(): boolean {
    return this.#cancelled;
  }

  /** Stops it for good: no re-consume after recovery. */
  async cancel(): Promise<void> {
    this.#cancelled = true;
    this.channel._dropConsumer(this);
    const c = this.#current;
    this.#current = null;
    if (c !== null && !c.cancelled) await c.cancel();
  }

  /** @internal */
  _set(c: Consumer | null, on: Channel | null = null): void {
    this.#current = c;
    this.#on = on;
  }

  /** @internal consuming on `ch` already, or about to (a basic.consume under way there). */
  _on(ch: Channel): boolean {
    return this.#on === ch && (this.#current === null || !this.#current.cancelled);
  }
}

export interface RecoveringChannelEvents {
  /** A mandatory publish nobody could route (its publish also fails as `returned`). */
  return: [message: Message];
  /** This channel alone was re-created (the connection stayed); after a connection recovery, the connection's
   *  `recovered` event says it for every channel. */
  recovered: [];
  /** Closed by the application (the channel or its connection). */
  close: [];
  /**
   * A delivery over its consumer's maxMessageBytes (or the connection's) was dropped unread and rejected without
   * requeue (Channel's `oversized`); without a listener, a process warning says it.
   */
  oversized: [message: Message, bodySize: number, limit: number];
  /** A delivery whose properties could not be read, rejected without requeue (Channel's `malformed`). */
  malformed: [message: Message, reason: string];
}

/**
 * A channel with recorded setup, topology and consumers. Its methods mirror Channel's; declarations are recorded
 * after the broker accepted them and replayed after recovery.
 */
export class RecoveringChannel extends TypedEmitter<RecoveringChannelEvents> {
  declare readonly confirm: boolean;
  declare readonly prefetch: number | undefined;
  #ch: Channel | null = null;
  #closed = false;
  readonly #publishes: PublishBuffer;
  #ackTimer: ReturnType<typeof setInterval> | null = null;
  #warnedAt = 0;
  #reopenAttempts = 0;
  #unstuckAt = 0;
  #lastReopen = 0;
  readonly #consumers = new Set<RecoveringConsumer>();
  readonly #rc: RecoveringConnection;

  constructor(rc: RecoveringConnection, setup: ChannelSetup) {
    super();
    this.#rc = rc;
    this.confirm = setup.confirm ?? true;
    this.prefetch = setup.prefetch;
    this.#publishes = new PublishBuffer(
      rc.options,
      () => this.channel,
      (policy) => rc._emit('buffer-overflow', policy),
    );
    this.#publishes.stuck = () => this.#unstick();
  }

  /**
   * Nacks in a row: the channel is re-created, at most once in 30 s. A quorum queue that refused publishes
   * (`overflow: reject-publish`) went on nacking every publish of that channel after it had room again (RabbitMQ
   * 3.10: the state is per publisher), while a new channel's were taken; the hub's reports were refused for minutes.
   */
  #unstick(): void {
    const ch = this.#ch;
    if (ch === null || !ch.isOpen || Date.now() - this.#unstuckAt < 30_000) return;
    this.#unstuckAt = Date.now();
    void ch.close().catch(() => undefined);
  }

  /** The live channel underneath, or null while recovering. */
  get channel(): Channel | null {
    return this.#ch?.isOpen ? this.#ch : null;
  }

  /** Publishes waiting for a connection. */
  get buffered(): number {
    return this.#publishes.buffered;
  }

  /** Publishes written and not yet confirmed. */
  get inflight(): number {
    return this.#publishes.inflight;
  }

  // ---- topology: recorded after the broker accepted it ----------------------------------------------------------------

  async exchangeDeclare(exchange: string, type: string, options: ExchangeOptions = {}): Promise<void> {
    await this.#live().exchangeDeclare(exchange, type, options);
    this.#rc._topology.recordExchange(exchange, type, options);
  }

  async exchangeDelete(exchange: string, options: { ifUnused?: boolean } = {}): Promise<void> {
    await this.#live().exchangeDelete(exchange, options);
    this.#rc._topology.forgetExchange(exchange);
  }

  async exchangeBind(destination: string, source: string, routingKey = '', args: FieldTable = {}): Promise<void> {
    await this.#live().exchangeBind(destination, source, routingKey, args);
    this.#rc._topology.recordBinding(true, destination, source, routingKey, args, true);
  }

  async exchangeUnbind(destination: string, source: string, routingKey = '', args: FieldTable = {}): Promise<void> {
    await this.#live().exchangeUnbind(destination, source, routingKey, args);
    this.#rc._topology.recordBinding(true, destination, source, routingKey, args, false);
  }

  async queueDeclare(queue = '', options: QueueOptions = {}): Promise<QueueDeclareOk> {
    const ok = await this.#live().queueDeclare(queue, options);
    this.#rc._topology.recordQueue(queue, options, ok);
    return ok;
  }

  async queueDelete(queue: string, options: { ifUnused?: boolean; ifEmpty?: boolean } = {}): Promise<number> {
    const n = await this.#live().queueDelete(queue, options);
    this.#rc._topology.forgetQueue(queue);
    return n;
  }

  async queueBind(queue: string, exchange: string, routingKey = '', args: FieldTable = {}): Promise<void> {
    await this.#live().queueBind(queue, exchange, routingKey, args);
    this.#rc._topology.recordBinding(false, queue, exchange, routingKey, args, true);
  }

  async queueUnbind(queue: string, exchange: string, routingKey = '', args: FieldTable = {}): Promise<void> {
    await this.#live().queueUnbind(queue, exchange, routingKey, args);
    this.#rc._topology.recordBinding(false, queue, exchange, routingKey, args, false);
  }

  queuePurge(queue: string): Promise<number> {
    return this.#live().queuePurge(queue);
  }

  // ---- consuming -----------------------------------------------------------------------------------------------------

  /** Starts a consumer that is re-created after every recovery (manual acks by default). */
  async basicConsume(
    queue: string,
    handler: MessageHandler,
    options: ConsumeOptions = {},
  ): Promise<RecoveringConsumer> {
    const rc = new RecoveringConsumer(queue, handler, options, this);
    this.#consumers.add(rc);
    const ch = this.channel;
    if (ch !== null) {
      try {
        await this.#consume(ch, rc);
      } catch (err) {
        this.#consumers.delete(rc);
        throw err;
      }
    }
    return rc;
  }

  // ---- publishing ----------------------------------------------------------------------------------------------------

  /**
   * Publishes; settles exactly once: resolved when confirmed (or written, without confirms), rejected with a
   * PublishError when nacked, returned (mandatory), past its deadline, refused by a full buffer, or the channel was
   * closed by the application. A message without a messageId gets one, so that a re-send can be recognised.
   * A BodyWriter may be written more than once (once per attempt). An explicit `timeout` shorter than the heartbeat
   * timeout is refused with an ArgumentError (ARGUMENT_INVALID), as on a plain channel.
   */
  basicPublish(
    exchange: string,
    routingKey: string,
    body: Body,
    properties: MessageProperties = {},
    options: PublishOptions = {},
  ): Promise<void> {
    if (this.#closed) return Promise.reject(new PublishError('closed', `cannot publish: the channel ${BY_APP}`));
    // PUB-7, as on a plain channel: the deadline counts from this call and is never shorter than the heartbeat timeout.
    const { floor, fallback } = this.#rc._deadlines();
    let timeout = fallback;
    if (options.timeout !== undefined) {
      try {
        timeout = checkPublishTimeout(options.timeout, floor);
      } catch (err) {
        return Promise.reject(err);
      }
    }
    const props = properties.messageId === undefined ? { ...properties, messageId: randomUUID() } : properties;
    return this.#publishes.publish(exchange, routingKey, body, props, options.mandatory ?? false, Date.now() + timeout);
  }

  /** Closes for good: consumers stop, buffered publishes fail with `closed`. */
  async close(): Promise<void> {
    const ch = this.#ch;
    this._shutdown();
    this.#rc._channelGone(this);
    if (ch?.isOpen) await ch.close();
  }

  // ---- internals -----------------------------------------------------------------------------------------------------

  #live(): Channel {
    const ch = this.channel;
    if (ch === null)
      throw new AmqpError(
        'RECOVERING',
        this.#closed
          ? `the channel ${BY_APP}`
          : 'the connection is recovering; try again after the next recovered event',
      );
    return ch;
  }

  /** @internal opens the channel on `conn` with its qos and confirm mode; consumers follow when `consume`. */
  async _attach(conn: Connection, consume = true): Promise<void> {
    if (this.#closed) return;
    const ch = await conn.createChannel();
    ch.dropStaleSettles = true;
    if (this.confirm) await ch.confirmSelect();
    if (this.prefetch !== undefined) await ch.basicQos(this.prefetch);
    this.#publishes.attached();
    this.#ch = ch;
    ch.on('return', (m) => this.emitSafe('return', m));
    ch.on('oversized', (m, size, limit) => {
      if (this.listenerCount('oversized') > 0) this.emitSafe('oversized', m, size, limit);
      else process.emitWarning(oversizedText(m, size, limit), 'AmqpOversizedWarning');
    });
    ch.on('malformed', (m, reason) => {
      if (this.listenerCount('malformed') > 0) this.emitSafe('malformed', m, reason);
      else process.emitWarning(`a message whose properties cannot be read: ${reason}`, 'AmqpMalformedWarning');
    });
    ch.on('close', (err) => this.#lost(ch, err));
    this.#ackTimer ??= setInterval(
      () => this.#checkAcks(),
      Math.min(60_000, Math.max(250, this.#rc.options.ackWarningAfter / 4)),
    );
    this.#ackTimer.unref();
    if (consume) {
      await this._resumeConsumers(true);
      this._flush();
    }
  }

  /**
   * @internal consumes again; `redeclare` when only this channel was re-created: an auto-delete queue went with its
   * last consumer, and connection recovery (which re-declares everything first) did not run. Each queue is declared
   * on a channel of its own (#redeclare): one the broker refuses no longer closes the channel of every other consumer.
   */
  async _resumeConsumers(redeclare = false): Promise<void> {
    const ch = this.channel;
    if (ch === null) return;
    for (const c of this.#consumers) {
      if (redeclare && !(await this.#redeclare(c))) {
        void this.#reconsume(c);
        continue;
      }
      await this.#consume(ch, c);
    }
  }

  /**
   * Declares `c`'s queue again on a scratch channel: a refused declaration (406: a queue of that name with other
   * arguments, made by someone else) closes the channel it is made on, and made on ours it closed every consumer
   * of this channel, again at each re-creation. True when it may be consumed: declared, or there with other
   * arguments (then consumed as it is, and the refusal reported as a topology failure, with its reason).
   */
  async #redeclare(c: RecoveringConsumer): Promise<boolean> {
    const conn = this.#rc.connection;
    if (conn === null) return false;
    try {
      c.queue = await this.#rc._topology.redeclareQueue(conn, c.queue, (e, what) =>
        this.#rc._emit('topology-failed', e, what),
      );
      return true;
    } catch (err) {
      if (!conn.isOpen) throw err;
      this.#rc._emit('topology-failed', err as Error, `queue ${c.queue}`);
      return err instanceof ChannelError && err.replyCode === 406;
    }
  }

  /** @internal sends what waited, in call order (unconfirmed re-sends first: they were put at the front). */
  _flush(): void {
    this.#publishes.flush();
  }

  /** @internal */
  _renameQueue(from: string, to: string): void {
    for (const c of this.#consumers) if (c.queue === from) c.queue = to;
  }

  /** @internal */
  _dropConsumer(c: RecoveringConsumer): void {
    this.#consumers.delete(c);
  }

  /** @internal the application closed the connection or this channel: everything waiting fails, once. */
  _shutdown(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#publishes.shutdown();
    if (this.#ackTimer !== null) clearInterval(this.#ackTimer);
    this.#ackTimer = null;
    this.#consumers.clear();
    this.emitSafe('close');
  }

  async #consume(ch: Channel, c: RecoveringConsumer): Promise<void> {
    // Once per channel, and never for a consumer cancelled meanwhile: the re-declarations now take round trips,
    // during which the application may cancel it, or a re-consume loop and a channel recovery both get to it.
    if (c.cancelled || this.#closed || c._on(ch)) return;
    c._set(null, ch);
    let consumer: Consumer;
    try {
      consumer = await ch.basicConsume(c.queue, c.handler, c.options);
    } catch (err) {
      c._set(null);
      throw err;
    }
    if (c.cancelled || this.#closed) {
      await consumer.cancel().catch(() => undefined);
      return;
    }
    c._set(consumer, ch);
    consumer.onCancel((reason) => {
      if (!(reason instanceof AmqpError) || reason.code !== 'CONSUMER_CANCELLED' || c.cancelled || this.#closed) return;
      // The broker cancelled it (queue deleted, its node gone): re-declare what we know of the queue and consume again.
      this.#rc._emit('consumer-cancelled', c.queue, reason);
      void this.#reconsume(c);
    });
  }

  /** Re-declares and consumes `c` again, with backoff, until it is consumed, cancelled, or its channel goes. */
  async #reconsume(c: RecoveringConsumer): Promise<void> {
    if (c._retrying) return;
    c._retrying = true;
    try {
      for (let attempt = 1; ; attempt++) {
        await sleep(Math.min(this.#rc.options.maxReconnectDelay, this.#rc.options.reconnectDelay * 2 ** (attempt - 1)));
        const ch = this.channel;
        // Gone: the channel's recovery consumes it again. Consumed meanwhile (by that recovery): done.
        if (ch === null || c.cancelled || this.#closed || c._on(ch)) return;
        try {
          if (!(await this.#redeclare(c))) continue;
          await this.#consume(ch, c);
          return;
        } catch (err) {
          this.#rc._report(err, `re-consuming ${c.queue}`);
          // A refused consume closes the channel, and channel recovery re-consumes; otherwise try again later.
          if (!ch.isOpen) return;
        }
      }
    } finally {
      c._retrying = false;
    }
  }

  /** The channel underneath ended: its unconfirmed publishes go back to the front of the buffer, then recovery. */
  #lost(ch: Channel, err: Error | undefined): void {
    if (ch !== this.#ch) return;
    this.#ch = null;
    for (const c of this.#consumers) c._set(null);
    this.#publishes.lost(err);
    if (this.#closed) return;
    const conn = this.#rc.connection;
    // Only the channel failed (an ack timeout, a refused declaration): re-create it alone, soon but not in a hot loop.
    if (conn !== null) void this.#reopen(conn, err);
  }

  async #reopen(conn: Connection, err: Error | undefined): Promise<void> {
    const now = Date.now();
    this.#reopenAttempts = now - this.#lastReopen < 10_000 ? this.#reopenAttempts + 1 : 0;
    this.#lastReopen = now;
    if (this.#reopenAttempts > 0)
      await sleep(Math.min(this.#rc.options.maxReconnectDelay, 500 * 2 ** this.#reopenAttempts));
    if (this.#closed || !conn.isOpen || this.#ch !== null) return;
    try {
      await this.#redeclareExchange(conn, err);
      await this._attach(conn);
      this.#rc._emit('channel-recovered', err);
      this.emitSafe('recovered');
    } catch (e) {
      this.#rc._report(e, 're-creating a channel');
      if (this.#ch === null && conn.isOpen) void this.#reopen(conn, err);
    }
  }

  /**
   * A publish found an exchange of ours deleted (404 no exchange): it is declared again, with its bindings, before the
   * channel comes back. It waited for a whole reconnection, every publish to it closing the channel meanwhile.
   */
  async #redeclareExchange(conn: Connection, err: Error | undefined): Promise<void> {
    const name =
      err instanceof ChannelError && err.replyCode === 404 ? /no exchange '([^']*)'/.exec(err.replyText) : null;
    if (name === null) return;
    try {
      await this.#rc._topology.redeclareExchange(conn, name[1] as string, (e, what) =>
        this.#rc._emit('topology-failed', e, what),
      );
    } catch (e) {
      if (!conn.isOpen) throw e;
      this.#rc._emit('topology-failed', e as Error, `exchange ${name[1] as string}`);
    }
  }

  #checkAcks(): void {
    const at = this.#ch?.oldestUnsettledAt;
    if (at === undefined || at === this.#warnedAt) return;
    const age = Date.now() - at;
    if (age < this.#rc.options.ackWarningAfter) return;
    this.#warnedAt = at;
    const queues = [...this.#consumers].map((c) => c.queue).join(', ');
    this.#rc._emit('ack-deadline', age, queues);
  }

  protected listenerFailed(err: unknown, event: string): void {
    this.#rc._report(err, `recovering channel '${event}' listener`);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
