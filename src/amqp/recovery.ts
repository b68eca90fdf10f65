/**
 * Automatic recovery: a connection that outlives its sockets, for applications that must not notice short outages.
 * This file holds RecoveringConnection (its options and events, the reconnect loop with backoff over the endpoints,
 * and the order of a restore); the rest of the layer is in topology.ts (what is declared again), recovering-channel.ts
 * (RecoveringChannel, RecoveringConsumer) and publish-buffer.ts (each publish until its single outcome).
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
import { TypedEmitter } from '../core/emitter.js';
import { type Connection, startConnection } from './connection.js';
import { AmqpError, AuthenticationError, BY_APP } from './errors.js';
import { type ConnectOptions, parseUrl, resolveOptions } from './options.js';
import { type ChannelSetup, RecoveringChannel } from './recovering-channel.js';
import { Topology } from './topology.js';

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

/** The recovery options that are integers, each checked by its name. */
type RecoveryIntegerOption =
  | 'reconnectDelay'
  | 'maxReconnectDelay'
  | 'authFailureDelay'
  | 'bufferMessages'
  | 'bufferBytes'
  | 'ackWarningAfter'
  | 'nackRetries'
  | 'initialAttempts';

export class RecoveringConnection extends TypedEmitter<RecoveryEvents> {
  declare readonly options: Readonly<Resolved>;
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
  readonly #topology = new Topology((from, to) => {
    for (const c of this.#channels) c._renameQueue(from, to);
    this.emitSafe('queue-renamed', from, to);
  });
  #loop: Promise<void> | null = null;

  constructor(url?: string | URL | RecoveryOptions, options: RecoveryOptions = {}) {
    super();
    const fromUrl = typeof url === 'string' || url instanceof URL ? parseUrl(url) : (url ?? {});
    const o: RecoveryOptions = { ...fromUrl, ...options };
    /** Option `k` (`d` when absent): an integer of at least `min`. */
    const int = (k: RecoveryIntegerOption, d: number, min: number): number => {
      const v = o[k];
      const x = v ?? d;
      if (!Number.isSafeInteger(x) || x < min)
        throw new AmqpError('OPTION_INVALID', `${k}: expected an integer >= ${min}, got ${String(v)}`);
      return x;
    };
    const reconnectDelay = int('reconnectDelay', 5000, 2000);
    this.options = {
      reconnectDelay,
      maxReconnectDelay: int('maxReconnectDelay', Math.max(60_000, reconnectDelay), reconnectDelay),
      authFailureDelay: int('authFailureDelay', Math.max(60_000, reconnectDelay), reconnectDelay),
      bufferMessages: int('bufferMessages', 10_000, 0),
      bufferBytes: int('bufferBytes', 16 << 20, 0),
      overflow: o.overflow ?? 'reject-new',
      ackWarningAfter: int('ackWarningAfter', 25 * 60_000, 1000),
      nackRetries: int('nackRetries', 3, 0),
      initialAttempts: o.initialAttempts === undefined ? Infinity : int('initialAttempts', 1, 1),
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

  /** @internal what the channels declared, declared again by every recovery (RecoveringChannel records into it). */
  get _topology(): Topology {
    return this.#topology;
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
        const { conn, opened } = startConnection({ ...this.#base, hostname: ep.hostname, port: ep.port });
        // Held before it opens: close() then ends the handshake instead of waiting for the connect timeout.
        this.#conn = conn;
        await opened;
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
    if (!this.#topology.empty)
      await this.#topology.restore(conn, (err, what) => this.emitSafe('topology-failed', err, what));
    for (const ch of channels) await ch._resumeConsumers();
    for (const ch of channels) ch._flush();
    // Channels the application created while this ran missed the snapshot above.
    for (const ch of [...this.#channels]) if (ch.channel === null) await ch._attach(conn);
  }
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
  return new AmqpError('CLOSED', `the recovering connection ${BY_APP}`);
}
