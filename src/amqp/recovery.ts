/**
 * Automatic recovery: a connection that outlives its sockets, for applications that must not notice short outages.
 *
 *   const rc = new RecoveringConnection({ endpoints: ['127.0.0.1:5672', '127.0.0.1:5673'], username, password });
 *   const ch = await rc.createChannel({ confirm: true, prefetch: 10 });
 *   await ch.queueDeclare('jobs', { durable: true });
 *   await ch.basicConsume('jobs', (m) => { work(m); m.ack(); });
 *   await ch.basicPublish('', 'jobs', body, { deliveryMode: 2 });   // survives a broker restart in the middle
 *
 * What it promises (docs/RELIABILITY.md maps each to the obligation and the test that proves it):
 * - Connecting, the first time too, retries forever with exponential backoff and jitter (never sooner than 2 s, so
 *   the broker has cleaned up a lost connection's exclusive queues), going round a shuffled list of endpoints.
 *   Refused credentials are their own, slow and loud, case. Nothing is retried after close().
 * - Recovery runs in RabbitMQ's order: channels with their qos and confirm mode, exchanges, queues (a server-named
 *   queue gets a new name, which its bindings and consumers follow), bindings (exchange-to-exchange too), consumers.
 *   A channel the broker closed is re-created alone; the connection stays.
 * - A publish settles exactly once. Made while disconnected, it waits in a bounded buffer (overflow: reject-new or
 *   drop-oldest); unconfirmed when the connection went, it is sent again after recovery with the same message_id
 *   (every publish gets one), so consumers can drop the duplicate. Its deadline counts from the call, and is never
 *   shorter than the heartbeat timeout.
 * - Deliveries from a channel that is gone cannot be settled on its successor: their acks are dropped (the broker
 *   requeued them), never sent with a stale delivery tag.
 * - A delivery left unsettled near the broker's consumer_timeout is reported before the broker closes the channel.
 */
import { randomUUID } from 'node:crypto';
import { TypedEmitter } from '../core/emitter.js';
import type { Channel, ConsumeOptions, ExchangeOptions, QueueDeclareOk, QueueOptions } from './channel.js';
import { type Connection, connect } from './connection.js';
import { AmqpError, AuthenticationError, PublishError } from './errors.js';
import type { Consumer, Message, MessageHandler } from './message.js';
import { type ConnectOptions, parseUrl, resolveOptions } from './options.js';
import type { MessageProperties } from './properties.js';
import { type Body, checkPublishTimeout, type PublishOptions } from './publisher.js';
import type { FieldTable } from './table.js';

export interface Endpoint {
  hostname: string;
  port: number;
}

export interface RecoveryOptions extends ConnectOptions {
  /** Brokers (`host:port` or objects), shuffled once, tried in turn; default the hostname and port of the options. */
  endpoints?: readonly (string | Endpoint)[];
  /** First delay before reconnecting, ms (default 5000, at least 2000). Each failed attempt doubles it, plus jitter. */
  reconnectDelay?: number;
  /** Cap of the backoff, ms (default 60000); the jitter adds up to 50% to it. */
  maxReconnectDelay?: number;
  /** Delay after the broker refused the credentials, ms (default 60000): a wrong password is not fixed by hammering. */
  authFailureDelay?: number;
  /** Publishes a channel keeps while disconnected (default 10000) ... */
  bufferMessages?: number;
  /** ... and their body bytes (default 16 MiB). */
  bufferBytes?: number;
  /** A full buffer fails the new publish (`reject-new`, default) or the oldest waiting one (`drop-oldest`). */
  overflow?: 'reject-new' | 'drop-oldest';
  /**
   * A publish the broker nacked is sent again this many times (default 3; after 0.25, 0.5, 1 s) within its deadline:
   * a quorum queue nacks while it elects a new leader. Then the publish fails as `nacked`.
   */
  nackRetries?: number;
  /** Give up after this many failed attempts before the first open (default: never; a CLI wants 1). */
  initialAttempts?: number;
  /** Report a delivery unsettled for this long, ms (default 25 min; RabbitMQ's consumer_timeout is 30 min). */
  ackWarningAfter?: number;
  /**
   * Uniform numbers in [0, 1) for the endpoint shuffle and the backoff jitter (default Math.random). The shuffle
   * draws n - 1 of them for n endpoints, in the constructor (Fisher-Yates from the end of the list); then each
   * reconnect delay draws one. Give a seeded or scripted source to make the order and the delays reproducible.
   */
  random?: () => number;
}

export interface ChannelSetup {
  /** Publisher confirms (default true): a publish resolves only when the broker has the message. */
  confirm?: boolean;
  /** basic.qos for the consumers of this channel (default none: set one per consumer or here). */
  prefetch?: number;
}

export interface RecoveryEvents {
  /** Open for the first time. */
  connected: [endpoint: string];
  /** The connection was lost; recovery follows. */
  disconnected: [error: Error | undefined];
  /** The next attempt is in `delayMs`. */
  recovering: [info: { attempt: number; delayMs: number; endpoint: string }];
  /** Open again, topology and consumers restored. */
  recovered: [info: { endpoint: string; downtimeMs: number }];
  /** A connection attempt failed (`authentication`: the credentials were refused). */
  failed: [error: Error, info: { attempt: number; endpoint: string; authentication: boolean }];
  /** A channel the broker closed was re-created (the connection stayed). */
  'channel-recovered': [error: Error | undefined];
  /** Re-declaring a recorded exchange, queue or binding failed during recovery; the rest went on. */
  'topology-failed': [error: Error, what: string];
  /** A server-named queue came back with a new name; bindings and consumers follow it. */
  'queue-renamed': [from: string, to: string];
  /** The broker cancelled a consumer (queue deleted, node down); it is re-declared and re-consumed. */
  'consumer-cancelled': [queue: string, error: Error];
  /** A full publish buffer failed a publish (`policy` says which one). */
  'buffer-overflow': [policy: 'reject-new' | 'drop-oldest'];
  /** A delivery has waited `ageMs` for its ack: the broker closes the channel at its consumer_timeout. */
  'ack-deadline': [ageMs: number, queue: string];
  blocked: [reason: string];
  unblocked: [];
  /** A listener or handler threw. */
  'handler-error': [error: unknown, where: string];
  /** close() finished. */
  closed: [];
}

type Resolved = Required<
  Pick<
    RecoveryOptions,
    | 'reconnectDelay'
    | 'maxReconnectDelay'
    | 'authFailureDelay'
    | 'bufferMessages'
    | 'bufferBytes'
    | 'overflow'
    | 'ackWarningAfter'
    | 'initialAttempts'
    | 'nackRetries'
  >
>;

interface BindingRecord {
  exchangeToExchange: boolean;
  destination: string;
  source: string;
  routingKey: string;
  args: FieldTable;
}
interface QueueRecord {
  name: string;
  serverNamed: boolean;
  options: QueueOptions;
}

export class RecoveringConnection extends TypedEmitter<RecoveryEvents> {
  readonly options: Readonly<Resolved>;
  readonly #base: ConnectOptions;
  readonly #random: () => number;
  /** publishTimeout and heartbeat (ms) as resolved from the options, for publishes made before any connection. */
  readonly #publishTimeout: number;
  #heartbeatMs: number;
  readonly #endpoints: Endpoint[];
  #next = 0;
  #conn: Connection | null = null;
  #closed = false;
  #everOpen = false;
  /** Why the connection gave up before it ever opened (initialAttempts). */
  #failure: Error | undefined;
  #wake: (() => void) | null = null;
  #waiters: { resolve(): void; reject(e: Error): void }[] = [];
  readonly #channels = new Set<RecoveringChannel>();
  readonly #exchanges = new Map<string, { type: string; options: ExchangeOptions }>();
  readonly #queues = new Map<string, QueueRecord>();
  /** By bindingKey(): an aggregator records thousands, one lookup each. */
  #bindings = new Map<string, BindingRecord>();
  #loop: Promise<void> | null = null;

  constructor(url?: string | URL | RecoveryOptions, options: RecoveryOptions = {}) {
    super();
    const fromUrl = typeof url === 'string' || url instanceof URL ? parseUrl(url) : (url ?? {});
    const o: RecoveryOptions = { ...fromUrl, ...options };
    const int = (v: number | undefined, d: number, min: number, what: string): number => {
      const x = v ?? d;
      if (!Number.isSafeInteger(x) || x < min)
        throw new AmqpError('OPTION_INVALID', `${what}: expected an integer >= ${min}, got ${String(v)}`);
      return x;
    };
    const reconnectDelay = int(o.reconnectDelay, 5000, 2000, 'reconnectDelay');
    this.options = {
      reconnectDelay,
      maxReconnectDelay: int(
        o.maxReconnectDelay,
        Math.max(60_000, reconnectDelay),
        reconnectDelay,
        'maxReconnectDelay',
      ),
      authFailureDelay: int(o.authFailureDelay, Math.max(60_000, reconnectDelay), reconnectDelay, 'authFailureDelay'),
      bufferMessages: int(o.bufferMessages, 10_000, 0, 'bufferMessages'),
      bufferBytes: int(o.bufferBytes, 16 << 20, 0, 'bufferBytes'),
      overflow: o.overflow ?? 'reject-new',
      ackWarningAfter: int(o.ackWarningAfter, 25 * 60_000, 1000, 'ackWarningAfter'),
      nackRetries: int(o.nackRetries, 3, 0, 'nackRetries'),
      initialAttempts: o.initialAttempts === undefined ? Infinity : int(o.initialAttempts, 1, 1, 'initialAttempts'),
    };
    if (this.options.overflow !== 'reject-new' && this.options.overflow !== 'drop-oldest') {
      throw new AmqpError(
        'OPTION_INVALID',
        `overflow: expected "reject-new" or "drop-oldest", got ${JSON.stringify(o.overflow)}`,
      );
    }
    if (o.random !== undefined && typeof o.random !== 'function')
      throw new AmqpError('OPTION_INVALID', `random: expected a function, got ${typeof o.random}`);
    this.#random = o.random ?? Math.random;
    // The connection options are checked now, not at each attempt: a bad one would otherwise fail forever, quietly.
    const resolved = resolveOptions(o);
    this.#publishTimeout = resolved.publishTimeout;
    this.#heartbeatMs = resolved.heartbeat * 1000;
    const list = (o.endpoints ?? []).map(parseEndpoint);
    if (list.length === 0)
      list.push({
        hostname: o.hostname ?? '127.0.0.1',
        port: o.port ?? (o.tls !== undefined && o.tls !== false ? 5671 : 5672),
      });
    // Shuffled, so that a fleet of hubs does not pile onto the first node of the list after a failover.
    for (let i = list.length - 1; i > 0; i--) {
      const j = Math.floor(this.#random() * (i + 1));
      [list[i], list[j]] = [list[j] as Endpoint, list[i] as Endpoint];
    }
    this.#endpoints = list;
    this.#base = o;
  }

  /** The live connection, or null while disconnected. */
  get connection(): Connection | null {
    return this.#conn?.isOpen ? this.#conn : null;
  }

  get isOpen(): boolean {
    return this.connection !== null;
  }

  /**
   * Resolves when open (now, or after the next successful recovery); rejects once close() was called. The first
   * call (or createChannel) starts connecting, so listeners can be attached before anything happens.
   */
  whenOpen(): Promise<void> {
    this.#loop ??= this.#run();
    if (this.#closed) return Promise.reject(this.#failure ?? closedError());
    if (this.isOpen && this.#conn !== null && this.#restored) return Promise.resolve();
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** A channel that is re-created with its qos, confirm mode and consumers after every recovery. */
  async createChannel(setup: ChannelSetup = {}): Promise<RecoveringChannel> {
    if (this.#closed) throw closedError();
    this.#loop ??= this.#run();
    const rch = new RecoveringChannel(this, setup);
    this.#channels.add(rch);
    const conn = this.connection;
    if (conn !== null && this.#restored) {
      try {
        await rch._attach(conn);
      } catch (err) {
        this.#channels.delete(rch);
        throw err;
      }
    }
    return rch;
  }

  /** Closes for good: buffered publishes fail with `closed`, no recovery follows. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#wake?.();
      for (const w of this.#waiters.splice(0)) w.reject(closedError());
      for (const ch of this.#channels) ch._shutdown();
      await this.#conn?.close();
    }
    await this.#loop;
  }

  // ---- topology records (used by RecoveringChannel) ------------------------------------------------------------------

  /** @internal */
  _recordExchange(name: string, type: string, options: ExchangeOptions): void {
    if (options.passive !== true && name !== '' && !name.startsWith('amq.'))
      this.#exchanges.set(name, { type, options });
  }

  /** @internal */
  _recordQueue(requested: string, options: QueueOptions, ok: QueueDeclareOk): void {
    if (options.passive === true) return;
    this.#queues.set(ok.queue, { name: ok.queue, serverNamed: requested === '', options });
  }

  /** @internal */
  _recordBinding(b: BindingRecord, bind: boolean): void {
    if (bind) this.#bindings.set(bindingKey(b), b);
    else this.#bindings.delete(bindingKey(b));
  }

  /** @internal */
  _forgetExchange(name: string): void {
    this.#exchanges.delete(name);
    for (const [k, b] of this.#bindings)
      if (b.source === name || (b.exchangeToExchange && b.destination === name)) this.#bindings.delete(k);
  }

  /** @internal */
  _forgetQueue(name: string): void {
    this.#queues.delete(name);
    for (const [k, b] of this.#bindings) if (!b.exchangeToExchange && b.destination === name) this.#bindings.delete(k);
  }

  /** @internal re-declares a recorded queue and its bindings (after the broker cancelled its consumer). */
  async _redeclareQueue(ch: Channel, name: string): Promise<string> {
    const q = this.#queues.get(name);
    if (q === undefined) return name;
    const to = await this.#declareQueue(ch, q);
    for (const b of this.#bindings.values())
      if (!b.exchangeToExchange && b.destination === to) await ch.queueBind(to, b.source, b.routingKey, b.args);
    return to;
  }

  /** @internal */
  _channelGone(ch: RecoveringChannel): void {
    this.#channels.delete(ch);
  }

  /**
   * @internal the publish deadlines (ms) of PUB-7: the heartbeat timeout no deadline may undercut (the live
   * connection's, else the last one negotiated, else the one asked for: 0 until the broker's is known), and the
   * default deadline, never below it.
   */
  _deadlines(): { floor: number; fallback: number } {
    const floor = this.#heartbeatMs;
    return { floor, fallback: Math.max(this.#publishTimeout, floor) };
  }

  /** @internal a listener or handler threw. */
  _report(err: unknown, where: string): void {
    this.reportError(err, where, 'AmqpRecoveryWarning');
  }

  /** @internal */
  _emit<K extends keyof RecoveryEvents & string>(event: K, ...args: RecoveryEvents[K]): void {
    this.emitSafe(event, ...args);
  }

  protected listenerFailed(err: unknown, event: string): void {
    this._report(err, `recovery '${event}' listener`);
  }

  // ---- the loop ------------------------------------------------------------------------------------------------------

  #restored = false;

  async #run(): Promise<void> {
    let attempt = 0;
    let downSince = Date.now();
    while (!this.#closed) {
      const ep = this.#endpoints[this.#next++ % this.#endpoints.length] as Endpoint;
      const where = `${ep.hostname}:${ep.port}`;
      let error: Error | undefined;
      try {
        const conn = await connect({ ...this.#base, hostname: ep.hostname, port: ep.port });
        this.#conn = conn;
        this.#heartbeatMs = conn.heartbeat * 1000;
        if (this.#closed) {
          await conn.close();
          break;
        }
        conn.on('blocked', (r) => this.emitSafe('blocked', r));
        conn.on('unblocked', () => this.emitSafe('unblocked'));
        conn.on('handler-error', (e, w) => this._report(e, w));
        await this.#restore(conn);
        this.#restored = true;
        attempt = 0;
        if (this.#everOpen) this.emitSafe('recovered', { endpoint: where, downtimeMs: Date.now() - downSince });
        else this.emitSafe('connected', where);
        this.#everOpen = true;
        for (const w of this.#waiters.splice(0)) w.resolve();
        error = await conn.closed;
        this.#restored = false;
        downSince = Date.now();
        if (this.#closed) break;
        this.emitSafe('disconnected', error);
      } catch (err) {
        this.#restored = false;
        error = err instanceof Error ? err : new Error(String(err));
        // A failure half way through the restore leaves a connection open: start again from a clean one.
        this.#conn?.close().catch(() => undefined);
        if (this.#closed) break;
        attempt++;
        this.emitSafe('failed', error, {
          attempt,
          endpoint: where,
          authentication: error instanceof AuthenticationError,
        });
        if (!this.#everOpen && attempt >= this.options.initialAttempts) {
          this.#closed = true;
          this.#failure = error;
          for (const w of this.#waiters.splice(0)) w.reject(error);
          break;
        }
      }
      const delayMs =
        error instanceof AuthenticationError ? this.options.authFailureDelay : this.#backoff(Math.max(attempt, 1));
      this.emitSafe('recovering', { attempt: attempt + 1, delayMs, endpoint: this.#peekEndpoint() });
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, delayMs);
        this.#wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.#wake = null;
    }
    this.#conn = null;
    for (const ch of this.#channels) ch._shutdown();
    this.emitSafe('closed');
  }

  /**
   * Exponential from reconnectDelay, capped at maxReconnectDelay, then up to +50% jitter: applied after the cap, so
   * that a fleet of hubs that all reached the cap during a long outage does not come back in step.
   */
  #backoff(attempt: number): number {
    const o = this.options;
    const d = Math.min(o.maxReconnectDelay, o.reconnectDelay * 2 ** Math.min(attempt - 1, 20));
    return Math.round(d * (1 + this.#random() / 2));
  }

  #peekEndpoint(): string {
    const ep = this.#endpoints[this.#next % this.#endpoints.length] as Endpoint;
    return `${ep.hostname}:${ep.port}`;
  }

  /** RabbitMQ's order: channels (qos, confirm), exchanges, queues, bindings, then consumers, then buffered publishes. */
  async #restore(conn: Connection): Promise<void> {
    const channels = [...this.#channels];
    for (const ch of channels) await ch._attach(conn, false);
    if (this.#exchanges.size + this.#queues.size + this.#bindings.size > 0) await this.#restoreTopology(conn);
    for (const ch of channels) await ch._resumeConsumers();
    for (const ch of channels) ch._flush();
    // Channels the application created while this ran missed the snapshot above.
    for (const ch of [...this.#channels]) if (ch.channel === null) await ch._attach(conn);
  }

  async #restoreTopology(conn: Connection): Promise<void> {
    let ch = await conn.createChannel();
    // A refused declaration closes the channel: report it, carry on with a fresh one.
    const attempt = async (what: string, fn: (c: Channel) => Promise<unknown>): Promise<void> => {
      try {
        await fn(ch);
      } catch (err) {
        if (!conn.isOpen) throw err;
        this.emitSafe('topology-failed', err as Error, what);
        if (!ch.isOpen) ch = await conn.createChannel();
      }
    };
    for (const [name, x] of this.#exchanges)
      await attempt(`exchange ${name}`, (c) => c.exchangeDeclare(name, x.type, x.options));
    for (const q of [...this.#queues.values()]) await attempt(`queue ${q.name}`, (c) => this.#declareQueue(c, q));
    for (const b of this.#bindings.values()) {
      await attempt(`binding ${b.source} -> ${b.destination} (${b.routingKey})`, (c) =>
        b.exchangeToExchange
          ? c.exchangeBind(b.destination, b.source, b.routingKey, b.args)
          : c.queueBind(b.destination, b.source, b.routingKey, b.args),
      );
    }
    if (ch.isOpen) await ch.close();
  }

  /** Declares a recorded queue; a server-named one gets a new name, which its records and consumers take. */
  async #declareQueue(ch: Channel, q: QueueRecord): Promise<string> {
    const ok = await ch.queueDeclare(q.serverNamed ? '' : q.name, q.options);
    if (ok.queue !== q.name) {
      const from = q.name;
      this.#queues.delete(from);
      q.name = ok.queue;
      this.#queues.set(ok.queue, q);
      const renamed = new Map<string, BindingRecord>();
      for (const b of this.#bindings.values()) {
        if (!b.exchangeToExchange && b.destination === from) b.destination = ok.queue;
        renamed.set(bindingKey(b), b);
      }
      this.#bindings = renamed;
      for (const c of this.#channels) c._renameQueue(from, ok.queue);
      this.emitSafe('queue-renamed', from, ok.queue);
    }
    return ok.queue;
  }
}

/** One publish from the call to its single outcome, across as many channels as recovery needs. */
interface Pending {
  exchange: string;
  routingKey: string;
  body: Body;
  bytes: number;
  properties: MessageProperties;
  mandatory: boolean;
  deadline: number;
  /** The channel generation it was last written on (-1: waiting in the buffer). */
  gen: number;
  nacks: number;
  settled: boolean;
  resolve(): void;
  reject(e: Error): void;
}

/** A consumer that survives recovery; its handler gets every delivery, from whichever channel it arrives on. */
export class RecoveringConsumer {
  #current: Consumer | null = null;
  #cancelled = false;
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
  _set(c: Consumer | null): void {
    this.#current = c;
  }
}

/**
 * A channel with recorded setup, topology and consumers. Its methods mirror Channel's; declarations are recorded
 * after the broker accepted them and replayed after recovery.
 */
export interface RecoveringChannelEvents {
  /** A mandatory publish nobody could route (its publish also fails as `returned`). */
  return: [message: Message];
  /** This channel alone was re-created (the connection stayed); after a connection recovery, the connection's
   *  `recovered` event says it for every channel. */
  recovered: [];
  /** Closed by the application (the channel or its connection). */
  close: [];
}

export class RecoveringChannel extends TypedEmitter<RecoveringChannelEvents> {
  readonly confirm: boolean;
  readonly prefetch: number | undefined;
  #ch: Channel | null = null;
  #gen = 0;
  #closed = false;
  #inflight = new Set<Pending>();
  #buffer: Pending[] = [];
  #bufferBytes = 0;
  #sweep: ReturnType<typeof setInterval> | null = null;
  #ackTimer: ReturnType<typeof setInterval> | null = null;
  #warnedAt = 0;
  #reopenAttempts = 0;
  #lastReopen = 0;
  readonly #consumers = new Set<RecoveringConsumer>();
  readonly #rc: RecoveringConnection;

  constructor(rc: RecoveringConnection, setup: ChannelSetup) {
    super();
    this.#rc = rc;
    this.confirm = setup.confirm ?? true;
    this.prefetch = setup.prefetch;
  }

  /** The live channel underneath, or null while recovering. */
  get channel(): Channel | null {
    return this.#ch?.isOpen ? this.#ch : null;
  }

  /** Publishes waiting for a connection. */
  get buffered(): number {
    return this.#buffer.length;
  }

  /** Publishes written and not yet confirmed. */
  get inflight(): number {
    return this.#inflight.size;
  }

  // ---- topology: recorded after the broker accepted it ----------------------------------------------------------------

  async exchangeDeclare(exchange: string, type: string, options: ExchangeOptions = {}): Promise<void> {
    await this.#live().exchangeDeclare(exchange, type, options);
    this.#rc._recordExchange(exchange, type, options);
  }

  async exchangeDelete(exchange: string, options: { ifUnused?: boolean } = {}): Promise<void> {
    await this.#live().exchangeDelete(exchange, options);
    this.#rc._forgetExchange(exchange);
  }

  async exchangeBind(destination: string, source: string, routingKey = '', args: FieldTable = {}): Promise<void> {
    await this.#live().exchangeBind(destination, source, routingKey, args);
    this.#rc._recordBinding({ exchangeToExchange: true, destination, source, routingKey, args }, true);
  }

  async exchangeUnbind(destination: string, source: string, routingKey = '', args: FieldTable = {}): Promise<void> {
    await this.#live().exchangeUnbind(destination, source, routingKey, args);
    this.#rc._recordBinding({ exchangeToExchange: true, destination, source, routingKey, args }, false);
  }

  async queueDeclare(queue = '', options: QueueOptions = {}): Promise<QueueDeclareOk> {
    const ok = await this.#live().queueDeclare(queue, options);
    this.#rc._recordQueue(queue, options, ok);
    return ok;
  }

  async queueDelete(queue: string, options: { ifUnused?: boolean; ifEmpty?: boolean } = {}): Promise<number> {
    const n = await this.#live().queueDelete(queue, options);
    this.#rc._forgetQueue(queue);
    return n;
  }

  async queueBind(queue: string, exchange: string, routingKey = '', args: FieldTable = {}): Promise<void> {
    await this.#live().queueBind(queue, exchange, routingKey, args);
    this.#rc._recordBinding(
      { exchangeToExchange: false, destination: queue, source: exchange, routingKey, args },
      true,
    );
  }

  async queueUnbind(queue: string, exchange: string, routingKey = '', args: FieldTable = {}): Promise<void> {
    await this.#live().queueUnbind(queue, exchange, routingKey, args);
    this.#rc._recordBinding(
      { exchangeToExchange: false, destination: queue, source: exchange, routingKey, args },
      false,
    );
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
    if (this.#closed)
      return Promise.reject(new PublishError('closed', 'cannot publish: the channel was closed by the application'));
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
    let resolve!: () => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    promise.catch(noop);
    const p: Pending = {
      exchange,
      routingKey,
      body,
      properties: props,
      mandatory: options.mandatory ?? false,
      deadline: Date.now() + timeout,
      bytes:
        typeof body === 'string' ? Buffer.byteLength(body) : body instanceof Uint8Array ? body.length : body.maxBytes,
      gen: -1,
      nacks: 0,
      settled: false,
      resolve,
      reject,
    };
    p.resolve = () => {
      if (!p.settled) {
        p.settled = true;
        resolve();
      }
    };
    p.reject = (e) => {
      if (!p.settled) {
        p.settled = true;
        reject(e);
      }
    };
    const ch = this.channel;
    if (ch !== null && this.#buffer.length === 0) this.#send(ch, p);
    else this.#enqueue(p);
    return promise;
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
          ? 'the channel was closed by the application'
          : 'the connection is recovering; try again after the next recovered event',
      );
    return ch;
  }

  #send(ch: Channel, p: Pending): void {
    const gen = this.#gen;
    p.gen = gen;
    this.#inflight.add(p);
    // The channel's callback form: no promise of its own per publish (this record is the only one that matters).
    ch._publish(
      {
        resolve: () => {
          this.#inflight.delete(p);
          p.resolve();
        },
        reject: (err: Error) => this.#failed(p, gen, err),
      },
      p.exchange,
      p.routingKey,
      p.body,
      p.properties,
      p.mandatory,
      p.deadline,
    );
  }

  #failed(p: Pending, gen: number, err: Error): void {
    // Lost with its channel: the close handler puts it back in the buffer (this can run before or after it).
    if (p.gen !== gen || (err instanceof PublishError && err.failure === 'closed' && !this.#closed)) return;
    this.#inflight.delete(p);
    const delay = 250 * 2 ** p.nacks;
    if (
      err instanceof PublishError &&
      err.failure === 'nacked' &&
      !this.#closed &&
      p.nacks < this.#rc.options.nackRetries &&
      Date.now() + delay < p.deadline
    ) {
      p.nacks++;
      setTimeout(() => this.#retry(p), delay);
      return;
    }
    p.reject(err);
  }

  /** Sends a nacked publish again (or buffers it, ahead of newer ones, while recovering). */
  #retry(p: Pending): void {
    if (p.settled) return;
    if (this.#closed)
      return p.reject(
        new PublishError('closed', 'the channel was closed by the application before the publish was confirmed'),
      );
    const ch = this.channel;
    if (ch !== null) return this.#send(ch, p);
    p.gen = -1;
    this.#buffer.unshift(p);
    this.#bufferBytes += p.bytes;
    this.#sweep ??= setInterval(() => this.#expire(), 1000);
  }

  #enqueue(p: Pending): void {
    const o = this.#rc.options;
    while (this.#buffer.length >= o.bufferMessages || this.#bufferBytes + p.bytes > o.bufferBytes) {
      const oldest = this.#buffer[0];
      if (o.overflow === 'reject-new' || oldest === undefined) {
        this.#rc._emit('buffer-overflow', 'reject-new');
        return p.reject(
          new PublishError(
            'buffer-full',
            `the publish buffer is full (${this.#buffer.length} messages, ${this.#bufferBytes} bytes) while the connection recovers`,
          ),
        );
      }
      this.#buffer.shift();
      this.#bufferBytes -= oldest.bytes;
      this.#rc._emit('buffer-overflow', 'drop-oldest');
      oldest.reject(
        new PublishError(
          'buffer-full',
          'dropped from the full publish buffer to make room for a newer one (overflow: drop-oldest)',
        ),
      );
    }
    p.gen = -1;
    this.#buffer.push(p);
    this.#bufferBytes += p.bytes;
    // Kept referenced: waiting publishes are pending work, and their deadlines must fire.
    this.#sweep ??= setInterval(() => this.#expire(), 1000);
  }

  #expire(): void {
    const now = Date.now();
    const keep: Pending[] = [];
    for (const p of this.#buffer) {
      if (p.deadline > now) keep.push(p);
      else {
        this.#bufferBytes -= p.bytes;
        p.reject(new PublishError('timeout', 'the publish waited past its deadline for the connection to recover'));
      }
    }
    this.#buffer = keep;
    if (keep.length === 0 && this.#sweep !== null) {
      clearInterval(this.#sweep);
      this.#sweep = null;
    }
  }

  /** @internal opens the channel on `conn` with its qos and confirm mode; consumers follow when `consume`. */
  async _attach(conn: Connection, consume = true): Promise<void> {
    if (this.#closed) return;
    const ch = await conn.createChannel();
    ch.dropStaleSettles = true;
    if (this.confirm) await ch.confirmSelect();
    if (this.prefetch !== undefined) await ch.basicQos(this.prefetch);
    this.#gen++;
    this.#ch = ch;
    ch.on('return', (m) => this.emitSafe('return', m));
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
   * last consumer, and connection recovery (which re-declares everything first) did not run.
   */
  async _resumeConsumers(redeclare = false): Promise<void> {
    const ch = this.channel;
    if (ch === null) return;
    for (const c of this.#consumers) {
      if (redeclare) c.queue = await this.#rc._redeclareQueue(ch, c.queue);
      await this.#consume(ch, c);
    }
  }

  /** @internal sends what waited, in call order (unconfirmed re-sends first: they were put at the front). */
  _flush(): void {
    while (this.#buffer.length > 0) {
      const ch = this.channel;
      if (ch === null) return;
      const p = this.#buffer.shift() as Pending;
      this.#bufferBytes -= p.bytes;
      this.#send(ch, p);
    }
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
    const err = new PublishError(
      'closed',
      'the connection was closed by the application before the publish was confirmed',
    );
    for (const p of this.#buffer) p.reject(err);
    this.#buffer = [];
    this.#bufferBytes = 0;
    if (this.#sweep !== null) clearInterval(this.#sweep);
    if (this.#ackTimer !== null) clearInterval(this.#ackTimer);
    this.#sweep = this.#ackTimer = null;
    this.#consumers.clear();
    this.emitSafe('close');
  }

  async #consume(ch: Channel, c: RecoveringConsumer): Promise<void> {
    const consumer = await ch.basicConsume(c.queue, c.handler, c.options);
    c._set(consumer);
    consumer.onCancel((reason) => {
      if (!(reason instanceof AmqpError) || reason.code !== 'CONSUMER_CANCELLED' || c.cancelled || this.#closed) return;
      // The broker cancelled it (queue deleted, its node gone): re-declare what we know of the queue and consume again.
      this.#rc._emit('consumer-cancelled', c.queue, reason);
      void this.#reconsume(c, 1);
    });
  }

  async #reconsume(c: RecoveringConsumer, attempt: number): Promise<void> {
    await sleep(Math.min(this.#rc.options.maxReconnectDelay, this.#rc.options.reconnectDelay * 2 ** (attempt - 1)));
    const ch = this.channel;
    if (ch === null || c.cancelled || this.#closed) return; // recovery will consume it again
    try {
      c.queue = await this.#rc._redeclareQueue(ch, c.queue);
      await this.#consume(ch, c);
    } catch (err) {
      // A refused consume closes the channel, and channel recovery re-consumes; otherwise try again later.
      if (ch.isOpen) void this.#reconsume(c, attempt + 1);
      this.#rc._report(err, `re-consuming ${c.queue}`);
    }
  }

  /** The channel underneath ended: its unconfirmed publishes go back to the front of the buffer, then recovery. */
  #lost(ch: Channel, err: Error | undefined): void {
    if (ch !== this.#ch) return;
    this.#ch = null;
    this.#gen++;
    for (const c of this.#consumers) c._set(null);
    if (this.#closed) {
      for (const p of this.#inflight)
        p.reject(
          new PublishError('closed', 'the channel was closed by the application before the publish was confirmed'),
        );
      this.#inflight.clear();
      return;
    }
    const back = [...this.#inflight];
    this.#inflight.clear();
    for (const p of back) p.gen = -1;
    this.#buffer = back.concat(this.#buffer);
    for (const p of back) this.#bufferBytes += p.bytes;
    if (back.length > 0) this.#sweep ??= setInterval(() => this.#expire(), 1000);
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
      await this._attach(conn);
      this.#rc._emit('channel-recovered', err);
      this.emitSafe('recovered');
    } catch (e) {
      this.#rc._report(e, 're-creating a channel');
      if (this.#ch === null && conn.isOpen) void this.#reopen(conn, err);
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

function bindingKey(b: BindingRecord): string {
  // Field tables may hold bigints (int64), which JSON.stringify refuses.
  return JSON.stringify([b.exchangeToExchange, b.destination, b.source, b.routingKey, b.args], (_k, v: unknown) =>
    typeof v === 'bigint' ? `${v}n` : v,
  );
}

function parseEndpoint(e: string | Endpoint): Endpoint {
  if (typeof e !== 'string') return e;
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(e);
  const port = m === null ? NaN : Number(m[2]);
  if (m === null || port < 1 || port > 65535)
    throw new AmqpError('OPTION_INVALID', `endpoints: expected "host:port", got ${JSON.stringify(e)}`);
  return { hostname: m[1] as string, port };
}

function closedError(): AmqpError {
  return new AmqpError('CLOSED', 'the recovering connection was closed by the application');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function noop(): void {
  /* a rejection is observed by the caller */
}
