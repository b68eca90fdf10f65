/**
 * The eBADGE connector: what a hub, a VPP, a DSO or a TSO uses to exchange typed messages with its peers (D3.2.1
 * §4.2's `Connector` and `AbstractConsumer`, in TypeScript idiom), over any Transport:
 *
 *   const bus = amqpBus({ name: 'vpp-acme', peers: ['heh-b827ebea02c1'], url });   // or new Connector({ transport })
 *   bus.onReport(async (report, ctx) => { store(ctx.sender, report); });
 *   await bus.start();
 *   const report = await bus.request('heh-b827ebea02c1', { msg: 'get_report', ... });   // resolves with the report
 *
 * Our entity name and peers are the transport's. What happens to an incoming message is receive.ts (checks, codec,
 * duplicates, replies) then dispatch.ts (the handler, acks, retries, dead letters, the one response per msg_id);
 * request / reply matching is requests.ts. This file holds the lifecycle and the sending side.
 */
import { randomUUID } from 'node:crypto';
import { bodyWriter, type DecodeLimits, type Message, type MessageType, SCHEMAS } from '../codec/index.js';
import { type Clock, systemClock } from '../core/clock.js';
import { TypedEmitter } from '../core/emitter.js';
import { KEY_UPDATE, OVERHEAD, type Sealer } from '../crypto/index.js';
import { type BudgetOptions, SenderBudget } from './budget.js';
import { SeenIds } from './dedupe.js';
import { BusError, fail } from './errors.js';
import type { ConnectorEvents, Handler, StoredHandler, TypedHandlerMethods } from './handler.js';
import {
  CONTENT_TYPE_JSON,
  CONTENT_TYPE_SEALED,
  DM_HEADER,
  DM_VERSION,
  routingKeyOf,
  typeOfRoutingKey,
} from './protocol.js';
import { Receiver } from './receive.js';
import { PendingRequests, type ReplyType } from './requests.js';
import type { BodyWriter, Incoming, RawOf, Transport } from './transport.js';

export interface ConnectorOptions<T extends Transport = Transport> {
  /** How messages travel (amqpBus() builds an AmqpTransport); our name and peers are the transport's. */
  transport: T;
  /** End-to-end sealing with the peers that have keys in its keyring. */
  sealer?: Sealer;
  limits?: DecodeLimits;
  /** Deliveries of one message (its first included) before a failing handler's message is dead-lettered (default 5). */
  deliveryLimit?: number;
  /** Message ids remembered for dropping duplicates (default 10,000 for the transport's message TTL, or 15 minutes). */
  dedupe?: { capacity?: number; ttlMs?: number };
  /** Default timeout of `request` (default 5,000 ms: the data model's 5 s for acks and activation decisions). */
  requestTimeoutMs?: number;
  /**
   * Each sender's budget of messages and bytes a second (budget.ts; docs/bus.md, "Fairness"): a request over it is
   * answered 503. Default 100 messages a second in bursts of 1,000, 8 MiB a second in bursts of 32 MiB; `false`:
   * none.
   */
  budget?: BudgetOptions | false;
  /** Time for request timeouts, the dedupe window and draining (default the system clock; tests move a ManualClock). */
  clock?: Clock;
}

/** The Connector's own options, as a bus factory (amqpBus, mqttBus) takes them beside its transport's in one object. */
export type BusOptions = Omit<ConnectorOptions, 'transport'>;

/** A factory's one object split: the transport made from its own options, the Connector over it with the rest. */
export function busOver<T extends Transport, O extends BusOptions>(
  options: O,
  makeTransport: (options: Omit<O, keyof BusOptions>) => T,
): Connector<T> {
  const { sealer, limits, deliveryLimit, dedupe, requestTimeoutMs, clock, budget, ...transport } = options;
  return new Connector({
    transport: makeTransport(transport),
    ...(budget === undefined ? {} : { budget }),
    ...(sealer === undefined ? {} : { sealer }),
    ...(limits === undefined ? {} : { limits }),
    ...(deliveryLimit === undefined ? {} : { deliveryLimit }),
    ...(dedupe === undefined ? {} : { dedupe }),
    ...(requestTimeoutMs === undefined ? {} : { requestTimeoutMs }),
    ...(clock === undefined ? {} : { clock }),
  });
}

/**
 * What a caller hands publish() or request(), checked before any field of it is read: anything but an object whose
 * `msg` names a message type is INVALID_MESSAGE, not a TypeError from inside the bus. Its fields are the codec's.
 */
function checkMessage(message: unknown): void {
  const msg = typeof message === 'object' && message !== null ? (message as { msg?: unknown }).msg : undefined;
  if (typeof msg === 'string' && Object.hasOwn(SCHEMAS, msg)) return;
  const got =
    typeof message !== 'object' || message === null
      ? `${message === null ? 'null' : typeof message}`
      : `msg ${typeof msg === 'string' ? JSON.stringify(msg.slice(0, 64)) : String(msg)}`;
  fail('INVALID_MESSAGE', `expected a message (an object whose msg is a message type), got ${got}`);
}

// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the merged interface only types the onX methods defined on the prototype below
export class Connector<T extends Transport = Transport> extends TypedEmitter<ConnectorEvents<RawOf<T>>> {
  declare readonly name: string;
  declare readonly transport: T;
  readonly #o: ConnectorOptions<T>;
  readonly #clock: Clock;
  readonly #handlers = new Map<string, StoredHandler<T>>();
  readonly #peers: ReadonlySet<string>;
  readonly #requests: PendingRequests;
  readonly #receiver: Receiver<T>;
  #started = false;
  #closed = false;
  #closing: Promise<void> | undefined;
  #active = 0;
  #idle: (() => void) | undefined;

  constructor(options: ConnectorOptions<T>) {
    super();
    const { transport } = options;
    if ((transport as Transport | undefined) === undefined)
      fail('CONFIG', 'a Connector needs a transport (amqpBus() builds one over AMQP)');
    this.#o = options;
    this.name = transport.entity;
    this.transport = transport;
    this.#peers = new Set(transport.peers);
    this.#clock = options.clock ?? systemClock;
    this.#requests = new PendingRequests(this.#clock, transport.instanceTag);
    // Elapsed time, not the wall clock's: NTP stepping a Pi's clock forward must not forget the ids handled.
    const elapsed = (): number => this.#clock.elapsed?.() ?? this.#clock.now();
    const seen = new SeenIds(
      options.dedupe?.capacity ?? 10_000,
      options.dedupe?.ttlMs ?? transport.messageTtlMs ?? 900_000,
      elapsed,
    );
    const maxBodyBytes = (options.limits?.maxBytes ?? 1 << 20) + OVERHEAD.pair;
    const budget = options.budget === false ? undefined : new SenderBudget(options.budget ?? {}, elapsed, maxBodyBytes);
    this.#receiver = new Receiver<T>({
      name: this.name,
      transport,
      handlers: this.#handlers,
      sealer: options.sealer,
      limits: options.limits,
      deliveryLimit: options.deliveryLimit ?? 5,
      maxBodyBytes,
      seen,
      budget,
      requests: this.#requests,
      publish: (peer, message, o) => this.publish(peer, message, o),
      emit: (event, ...args) => this.emitSafe(event, ...args),
    });
  }

  /**
   * Registers the handler of one message type (replacing an earlier one). Only before `start()`: consuming begins
   * there, and a message that arrives before its type has a handler is answered 453 and acked, so a handler added
   * later would silently miss (and lose) every message already waiting in the queue.
   */
  handle<K extends MessageType>(type: K, handler: Handler<K, T>): this {
    if (!Object.hasOwn(SCHEMAS, type)) fail('CONFIG', `unknown message type "${type}"`);
    if (this.#started)
      fail(
        'CONFIG',
        `${this.name}: the ${type} handler was registered after start(); handlers must be registered before start(), ` +
          'or the messages already waiting in the queue are answered 453 and acked without ever reaching them',
      );
    this.#handlers.set(type, handler as unknown as StoredHandler<T>);
    return this;
  }

  /**
   * The largest body the transport hands over: the codec's limit (limits.maxBytes, 1 MiB by default) plus a sealed
   * envelope's overhead. A larger one is refused by the transport before it is received, where it can (AMQP), and
   * reported as a dead letter (`TOO_LARGE`).
   */
  get maxBodyBytes(): number {
    return this.#receiver.maxBodyBytes;
  }

  /**
   * Connects, declares and consumes. Waits while the broker cannot be reached (the transport's `failed` events tell
   * each attempt; `initialAttempts` in the connection options ends the wait), and rejects ACCESS_REFUSED when the
   * broker refuses our credentials before we were ever connected: a wrong password, not a broker that is away. The
   * transport goes on trying, so start() may be called again.
   */
  async start(): Promise<this> {
    if (this.#closing !== undefined) fail('CLOSED', 'the connector was closed');
    if (this.#started) return this;
    this.#started = true;
    try {
      await this.transport.start(
        async (m) => {
          this.#active++;
          try {
            // T's own start() hands over Incoming<RawOf<T>>; seen through the Transport constraint it is Incoming<unknown>.
            await this.#receiver.receive(m as Incoming<RawOf<T>>);
          } finally {
            if (--this.#active === 0) this.#idle?.();
          }
        },
        { maxBodyBytes: this.maxBodyBytes },
      );
    } catch (err) {
      // The broker refused a declaration (a permission, an exchange the peer has not declared yet): the application
      // may start again later, once that is fixed.
      this.#started = false;
      // Closed while it waited (a broker away): the application's own stop, told as a start() after close() is, so
      // that one check of BusError CLOSED covers both (it was the AMQP client's error of the same code).
      if (this.#closing !== undefined) fail('CLOSED', 'the connector was closed while it started', { cause: err });
      throw err;
    }
    return this;
  }

  /**
   * Stops: no new messages are taken, the handlers at work finish (up to `drainMs`, default 10 s), pending
   * requests fail with CLOSED, and the transport closes (anything still unsettled returns to the queue). From inside a
   * handler it waits `drainMs` for that handler as well: call it after the handler returns.
   */
  close(drainMs = 10_000): Promise<void> {
    this.#closing ??= this.#close(drainMs);
    return this.#closing;
  }

  async #close(drainMs: number): Promise<void> {
    if (this.#started) {
      // One deadline for both waits. A broker that blocks our connection (a resource alarm) reads nothing from it,
      // so a consumer's cancel is not answered until the alarm ends: a stop waited for hours.
      let timer: { cancel(): void } | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = this.#clock.setTimeout(resolve, drainMs);
      });
      await Promise.race([this.transport.stopConsuming().catch(() => undefined), deadline]);
      // Handlers still at work may reply: publishing stays open until they are done.
      if (this.#active > 0)
        await Promise.race([
          new Promise<void>((resolve) => {
            this.#idle = resolve;
          }),
          deadline,
        ]);
      timer?.cancel();
      this.#idle = undefined;
    }
    this.#closed = true;
    this.#requests.failAll(new BusError('CLOSED', 'the connector was closed'));
    await this.transport.close();
  }

  /**
   * Sends a typed message to a peer: validated and encoded straight into where the transport sends it from (the
   * AMQP frame; sealed in place when the peer has keys), resolved when the broker has it. An invalid message rejects
   * with its EncodeError and nothing is sent. The message is encoded when it is written, so it must not change until
   * the promise settles.
   */
  async publish(
    peer: string,
    message: Message,
    options: { correlationId?: string; messageId?: string } = {},
  ): Promise<void> {
    this.#check(peer);
    checkMessage(message);
    const m = message as { msg_id?: unknown };
    await this.#send(peer, message.msg, bodyWriter(message), {
      routingKey: routingKeyOf(message),
      // A response's msg_id names the message it answers, so it is never the response's own id.
      messageId:
        options.messageId ?? (message.msg !== 'response' && typeof m.msg_id === 'string' ? m.msg_id : randomUUID()),
      ...(options.correlationId === undefined ? {} : { correlationId: options.correlationId }),
    });
  }

  /**
   * Sends a message already encoded (and validated) by the codec, e.g. one kept in the hub's outbox: sealed when
   * the peer has keys, sent through the transport. The bytes are read when they are written (into the frame, or
   * into the envelope), so they must not change until the promise settles.
   */
  async publishEncoded(
    peer: string,
    type: MessageType,
    encoded: Uint8Array,
    options: { routingKey: string; messageId: string; correlationId?: string },
  ): Promise<void> {
    this.#check(peer);
    await this.#send(peer, type, encoded, options);
  }

  async #send(
    peer: string,
    type: MessageType | typeof KEY_UPDATE,
    payload: Uint8Array | BodyWriter,
    options: { routingKey: string; messageId: string; correlationId?: string },
  ): Promise<void> {
    // A receiver refuses a message whose routing key names another type (receive.ts): refused here before it goes.
    if (typeOfRoutingKey(options.routingKey) !== type)
      fail('INVALID_MESSAGE', `the routing key '${options.routingKey}' does not name ${type}`);
    // Sealed when we have keys for this peer: the envelope is written where the payload would have been.
    const sealer = this.#o.sealer?.keyring.peers.has(peer) ? this.#o.sealer : undefined;
    const body = sealer === undefined ? payload : await sealer.envelope({ peer }, type, payload);
    await this.transport.send({
      to: peer,
      routingKey: options.routingKey,
      body,
      properties: {
        messageId: options.messageId,
        ...(options.correlationId === undefined ? {} : { correlationId: options.correlationId }),
        type,
        contentType: sealer === undefined ? CONTENT_TYPE_JSON : CONTENT_TYPE_SEALED,
        timestamp: new Date(this.#clock.now()),
        appId: this.name,
        headers: { [DM_HEADER]: DM_VERSION },
      },
    });
  }

  /** The sealer given (its keyring tells whether a rotation is under way: several of our keys not ended). */
  get sealer(): Sealer | undefined {
    return this.#o.sealer;
  }

  /**
   * Announces our X25519 keys that have not ended (the one in force and any to come after a `keyring rotate`) to
   * each peer we seal for, or to those named: a `key_update` per key, sealed with our oldest key in force, which the
   * peer knows already (docs/crypto.md, "Rotation"); a peer that knows a key already only acks it. Resolves when the
   * broker has them all; a peer without keys gets nothing.
   */
  async announceKeys(peers: readonly string[] = this.transport.peers): Promise<void> {
    const sealer = this.#o.sealer;
    if (sealer === undefined) return;
    for (const peer of peers) this.#check(peer);
    const now = this.#clock.now();
    const keys = sealer.keyring.own.filter((e) => e.notAfter === undefined || e.notAfter > now);
    for (const peer of peers) {
      if (!sealer.keyring.peers.has(peer)) continue;
      for (const key of keys)
        await this.#send(peer, KEY_UPDATE, sealer.keyUpdatePayload(peer, key), {
          routingKey: KEY_UPDATE,
          messageId: randomUUID(),
        });
    }
  }

  /**
   * Sends a request and resolves with its reply (data model §3.5; requests.ts says how replies are matched). A
   * `response` with an error code for the request rejects with BusError REJECTED, a message of a type that does not
   * answer it (ReplyType), or a reply we refused as invalid, with INVALID_REPLY; no reply in time rejects with
   * BusError TIMEOUT.
   */
  async request<K extends MessageType>(
    peer: string,
    message: Message<K>,
    options: { timeout?: number } = {},
  ): Promise<Message<ReplyType<K>>> {
    const timeout = options.timeout ?? this.#o.requestTimeoutMs ?? 5000;
    // A NaN or negative timeout would time the request out at once, as if the peer had not answered.
    if (!(timeout > 0)) fail('CONFIG', `request timeout: expected a number of ms above 0, got ${timeout}`);
    checkMessage(message);
    const r = this.#requests.open(peer, message, timeout);
    // Not awaited: the timeout is the request's, whatever the publish waits for (its confirm from a broker in a
    // resource alarm took a minute, the publish deadline, past a timeout of seconds). A failed send fails it.
    this.publish(peer, r.message, { messageId: r.messageId }).catch((err: unknown) => r.fail(err as Error));
    // requests.ts resolves only with a message of ReplyType<K> (PendingRequests.answer checks its type).
    return r.reply as Promise<Message<ReplyType<K>>>;
  }

  #check(peer: string): void {
    if (this.#closed) fail('CLOSED', 'the connector was closed');
    if (!this.#peers.has(peer)) fail('UNKNOWN_PEER', `"${peer}" is not a configured peer of ${this.name}`);
  }

  protected listenerFailed(err: unknown, event: string): void {
    process.emitWarning(`a listener of the connector's ${event} event threw: ${String(err)}`);
  }
}

/** Declaration merging: the typed per-type methods are added to the prototype below. */
export interface Connector<T extends Transport = Transport> extends TypedHandlerMethods<T> {}

for (const type of Object.keys(SCHEMAS)) {
  const method = `on${type
    .split('_')
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join('')}`;
  Object.defineProperty(Connector.prototype, method, {
    value(this: Connector, handler: Handler<MessageType>) {
      return this.handle(type as MessageType, handler);
    },
    writable: true,
    configurable: true,
  });
}
