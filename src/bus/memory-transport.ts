/**
 * The bus without a broker, for tests (ours, and an aggregator developer's own): a MemoryNetwork plays the broker
 * (one queue per entity, FIFO, kept while its transport is closed, so a restarted connector finds what waited), and
 * each MemoryTransport is one entity's connection to it. Two connectors in one process:
 *
 *   const clock = new ManualClock();
 *   const [hubSide, vppSide] = MemoryTransport.pair('heh-1', 'vpp-1', { clock });
 *   const hub = new Connector({ transport: hubSide, clock });
 *   const vpp = new Connector({ transport: vppSide, clock });
 *
 * It behaves as the AMQP transport does where the Connector can tell: deliveries in flight up to a prefetch, acks,
 * retries that requeue at the head and count deliveries (or not: `countDeliveries: false` is a classic queue),
 * dead letters kept with their reason, messages older than the queue's TTL dead-lettered, sends to an entity with no
 * queue refused (unroutable). Everything is recorded (`sent`, `settlements`, `deadLetters`, `problems`), and faults
 * are injected: `sendFailure` / `deadLetterFailure` hooks, `disconnect()` (unsettled deliveries go back, marked
 * redelivered, and their late acks are dropped, as on a closed AMQP channel) and `reconnect()`. A body over the
 * Connector's maxBodyBytes is refused as the AMQP transport refuses it: dead-lettered (`TOO_LARGE`) and handed over
 * as an `oversized` Incoming with no body.
 *
 * About 500 lines, kept whole: the network and its transports share the queues, and each behaviour mirrors the AMQP
 * transport's, easiest to compare when read in one file.
 */
import { type Clock, settle, systemClock } from '../core/clock.js';
import { TypedEmitter } from '../core/emitter.js';
import { EbadgeError } from '../core/errors.js';
import { fail } from './errors.js';
import {
  bodyBytes,
  type Incoming,
  type Loopback,
  type Outgoing,
  type OutgoingProperties,
  type StartOptions,
  type Transport,
  type TransportCapabilities,
  type TransportEvents,
} from './transport.js';

export class MemoryTransportError extends EbadgeError<'NO_ROUTE' | 'INJECTED'> {
  override name = 'MemoryTransportError';
}

/** A message in a queue: the transport's own message, `delivery.raw` in a handler. */
export interface MemoryMessage {
  /** Unique in the network, in the order messages were queued. */
  readonly seq: number;
  readonly from: string | undefined;
  readonly to: string;
  readonly routingKey: string;
  readonly body: Buffer;
  readonly properties: Partial<Omit<OutgoingProperties, 'headers'>> & { headers: Readonly<Record<string, unknown>> };
  /** Failed deliveries so far (what a quorum queue counts). */
  deliveryCount: number;
  redelivered: boolean;
  readonly queuedAt: number;
}

export type Outcome = 'ack' | 'retry' | 'dead';

export interface Settlement {
  readonly message: MemoryMessage;
  readonly outcome: Outcome;
  /** The delivery count the delivery was made with. */
  readonly deliveryCount: number;
  readonly reason?: string;
  readonly code?: string;
}

export interface DeadLetter {
  readonly message: MemoryMessage;
  readonly reason: string;
  readonly code: string | undefined;
  readonly at: number;
}

/** A message as sent: its body in bytes (a BodyWriter was written when the message was sent). */
export interface SentMessage extends Omit<Outgoing, 'body'> {
  readonly body: Buffer;
}

/** A message put straight into an entity's queue (`inject`): any body, any sender, any properties. */
export interface InjectedMessage {
  /** The sender the transport vouches for; undefined: none (an unknown sender). Default: the first peer. */
  from?: string | undefined;
  body: Uint8Array | string;
  routingKey?: string;
  properties?: Partial<Omit<OutgoingProperties, 'headers'>> & { headers?: Readonly<Record<string, unknown>> };
  deliveryCount?: number;
  redelivered?: boolean;
}

export interface MemoryTransportOptions {
  name: string;
  peers: readonly string[];
  /** Deliveries in flight at once (default 100, as the AMQP transport). */
  prefetch?: number;
  /** Count failed deliveries like a quorum queue (default true); false: deliveryCount stays 0, as a classic queue. */
  countDeliveries?: boolean;
  /** Messages that waited longer are dead-lettered instead of delivered (x-message-ttl); default: none expire. */
  messageTtlMs?: number;
}

interface Queue {
  readonly messages: MemoryMessage[];
  transport: MemoryTransport | undefined;
}

/** The broker: the entities' queues and the routing between them. */
export class MemoryNetwork {
  readonly clock: Clock;
  readonly #queues = new Map<string, Queue>();
  #seq = 0;

  constructor(options: { clock?: Clock } = {}) {
    this.clock = options.clock ?? systemClock;
  }

  /** Our entity's connection; its queue is made now if it is new, and kept after close() for the next one. */
  transport(options: MemoryTransportOptions): MemoryTransport {
    const q = this.#queue(options.name);
    if (q.transport !== undefined && !q.transport.closed)
      fail('CONFIG', `${options.name} already has an open memory transport`);
    q.transport = new MemoryTransport(this, options, q.messages);
    return q.transport;
  }

  /** Messages waiting in an entity's queue (not delivered, or given back). */
  queued(entity: string): readonly MemoryMessage[] {
    return this.#queues.get(entity)?.messages ?? [];
  }

  /**
   * Waits until nothing moves: no queue has a message its started consumer could take, no delivery is unsettled
   * for less than a turn, and the promise work settles. Handlers that wait for files take real time: this waits,
   * turning the event loop, up to `ms` (default 5 s) of real time, then throws.
   */
  async idle(ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    for (let quiet = 0; quiet < 3; ) {
      await settle(5);
      const busy = [...this.#queues.values()].some((q) => q.transport?.busy === true);
      quiet = busy ? 0 : quiet + 1;
      if (busy && Date.now() > deadline) throw new Error(`the memory network is still busy after ${ms} ms`);
      if (busy) await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }

  /** @internal a send: into the queue of `to`, if `to` has one and takes messages from the sender. */
  _route(from: string, m: SentMessage): MemoryMessage {
    const q = this.#queues.get(m.to);
    if (q === undefined || (q.transport !== undefined && !q.transport.peers.includes(from)))
      throw new MemoryTransportError('NO_ROUTE', `nothing takes messages from ${from} to ${m.to} (312 NO_ROUTE)`);
    return this._enqueue(m.to, from, m.routingKey, Buffer.from(m.body), { ...m.properties }, 0, false);
  }

  /** @internal */
  _enqueue(
    to: string,
    from: string | undefined,
    routingKey: string,
    body: Buffer,
    properties: MemoryMessage['properties'],
    deliveryCount: number,
    redelivered: boolean,
  ): MemoryMessage {
    const message: MemoryMessage = {
      seq: ++this.#seq,
      from,
      to,
      routingKey,
      body,
      properties,
      deliveryCount,
      redelivered,
      queuedAt: this.clock.now(),
    };
    this.#queue(to).messages.push(message);
    // Delivered on a later turn: the caller first learns what it queued (inject() waits for its settlement).
    queueMicrotask(() => this.#queues.get(to)?.transport?._pump());
    return message;
  }

  #queue(name: string): Queue {
    let q = this.#queues.get(name);
    if (q === undefined) {
      q = { messages: [], transport: undefined };
      this.#queues.set(name, q);
    }
    return q;
  }
}

interface Delivery {
  readonly message: MemoryMessage;
  readonly deliveryCount: number;
  settled: boolean;
  /** Given back by a disconnect: its late settlement is dropped, as an ack on a closed AMQP channel. */
  stale: boolean;
  /** The consumer's promise for it has finished: inject() learns the settlement only then, after what the consumer
   * does once it settled (an answer sent after a dead letter, say). */
  done: boolean;
  settlement?: Settlement;
  onSettled?: (s: Settlement) => void;
}

export class MemoryTransport extends TypedEmitter<TransportEvents> implements Transport<MemoryMessage> {
  readonly name = 'memory';
  readonly entity: string;
  readonly peers: readonly string[];
  readonly capabilities: TransportCapabilities;
  readonly messageTtlMs: number | undefined;
  /** What this transport sent, in order (only what the network took). */
  readonly sent: SentMessage[] = [];
  /** How each delivery to us was settled, in order. */
  readonly settlements: Settlement[] = [];
  readonly deadLetters: DeadLetter[] = [];
  /** What the consumer did wrong: a delivery settled twice, a handler promise that rejected. Must stay empty. */
  readonly problems: string[] = [];
  /** Return an error to fail that send (a nack, an unroutable message ...); undefined: it goes through. */
  sendFailure: ((m: SentMessage) => Error | undefined) | undefined;
  /** Return a promise to hold that send until it settles (a confirm that does not come: a broker gone meanwhile). */
  sendHold: ((m: SentMessage) => Promise<void> | undefined) | undefined;
  /** Return an error to fail that dead-lettering (the message then stays unsettled). */
  deadLetterFailure: ((reason: string, code: string | undefined) => Error | undefined) | undefined;
  readonly #network: MemoryNetwork;
  readonly #queue: MemoryMessage[];
  readonly #prefetch: number;
  readonly #inFlight = new Set<Delivery>();
  #onMessage: ((m: Incoming<MemoryMessage>) => Promise<void>) | undefined;
  #maxBodyBytes = Number.POSITIVE_INFINITY;
  #consuming = false;
  #connected = true;
  #closed = false;
  #gate: Promise<void> = Promise.resolve();
  #open: () => void = () => undefined;
  readonly #whenUp: (() => void)[] = [];
  /** inject()'s promises, by message, until its first delivery. */
  readonly #waiters = new Map<MemoryMessage, (s: Settlement) => void>();
  #running = 0;

  /** Builds both ends of a network of two entities that are each other's only peer. */
  static pair(
    a: string,
    b: string,
    options: { clock?: Clock } & Omit<MemoryTransportOptions, 'name' | 'peers'> = {},
  ): [MemoryTransport, MemoryTransport] {
    const { clock, ...rest } = options;
    const network = new MemoryNetwork(clock === undefined ? {} : { clock });
    return [network.transport({ ...rest, name: a, peers: [b] }), network.transport({ ...rest, name: b, peers: [a] })];
  }

  /** @internal made by MemoryNetwork.transport(). */
  constructor(network: MemoryNetwork, options: MemoryTransportOptions, queue: MemoryMessage[]) {
    super();
    this.#network = network;
    this.#queue = queue;
    this.entity = options.name;
    this.peers = [...options.peers];
    this.#prefetch = options.prefetch ?? 100;
    this.messageTtlMs = options.messageTtlMs;
    this.capabilities = {
      requeue: true,
      deliveryCount: options.countDeliveries ?? true,
      deadLetterQueue: true,
      confirmedSend: true,
      authenticatedSender: true,
      routingKeyNamesType: true,
    };
  }

  get network(): MemoryNetwork {
    return this.#network;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Deliveries handed over and not settled yet. */
  get unsettled(): number {
    return this.#inFlight.size;
  }

  /** @internal for MemoryNetwork.idle(). */
  get busy(): boolean {
    return this.#running > 0 || (this.#deliverable() && this.#queue.length > 0);
  }

  /** Keeps start() from finishing until releaseStart(): a connector can be looked at while it is starting. */
  holdStart(): void {
    this.#gate = new Promise((resolve) => {
      this.#open = resolve;
    });
  }

  releaseStart(): void {
    this.#open();
  }

  async start(onMessage: (m: Incoming<MemoryMessage>) => Promise<void>, options: StartOptions = {}): Promise<void> {
    if (this.#closed) fail('CLOSED', 'the transport is closed');
    await this.#gate;
    this.#onMessage = onMessage;
    this.#maxBodyBytes = options.maxBodyBytes ?? Number.POSITIVE_INFINITY;
    this.#consuming = true;
    this._pump();
  }

  async send(o: Outgoing): Promise<void> {
    if (this.#closed) fail('CLOSED', 'the transport is closed');
    if (!this.peers.includes(o.to)) fail('UNKNOWN_PEER', `"${o.to}" is not a configured peer of ${this.entity}`);
    // While disconnected a send waits, as the AMQP transport's publish buffer does.
    if (!this.#connected) await new Promise<void>((resolve) => this.#whenUp.push(resolve));
    // Written when it goes, as AMQP writes a body writer into the frame then.
    const m: SentMessage = { ...o, body: bodyBytes(o.body) };
    await this.sendHold?.(m);
    const failure = this.sendFailure?.(m);
    if (failure !== undefined) throw failure;
    this.#network._route(this.entity, m);
    this.sent.push(m);
  }

  async stopConsuming(): Promise<void> {
    this.#consuming = false;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#consuming = false;
    this.#giveBack();
    for (const resolve of this.#whenUp.splice(0)) resolve();
  }

  /**
   * Puts a message into our queue as if `from` had sent it, and resolves with the first settlement of its first
   * delivery (a retried message goes back to the queue and is delivered again; see `settlements` for the rest), once
   * the consumer is done with that delivery.
   */
  inject(m: InjectedMessage): Promise<Settlement> {
    const from = 'from' in m ? m.from : this.peers[0];
    const message = this.#network._enqueue(
      this.entity,
      from,
      m.routingKey ?? m.properties?.type ?? '',
      Buffer.from(m.body),
      { ...m.properties, headers: m.properties?.headers ?? {} },
      m.deliveryCount ?? 0,
      m.redelivered ?? false,
    );
    return new Promise((resolve) => this.#waiters.set(message, resolve));
  }

  /** The connection is lost: unsettled deliveries go back to the queue, sends wait, `down` is emitted. */
  disconnect(error?: Error): void {
    if (!this.#connected) return;
    this.#connected = false;
    this.#giveBack();
    this.emitSafe('down', error);
  }

  /** The connection is back: deliveries and the waiting sends resume, `recovered` is emitted. */
  reconnect(downtimeMs = 0): void {
    if (this.#connected) return;
    this.#connected = true;
    this.emitSafe('recovered', { endpoint: 'memory', downtimeMs });
    for (const resolve of this.#whenUp.splice(0)) resolve();
    this._pump();
  }

  /** Emits any connection event, for code that follows them (the hub's logs). */
  simulate<K extends keyof TransportEvents & string>(event: K, ...args: TransportEvents[K]): void {
    this.emitSafe(event, ...args);
  }

  async loopback(onMessage: (body: Buffer) => void): Promise<Loopback> {
    let open = true;
    return {
      send: async (body) => {
        if (!open) fail('CLOSED', 'the loopback is closed');
        const copy = Buffer.from(body);
        setImmediate(() => onMessage(copy));
      },
      close: async () => {
        open = false;
      },
    };
  }

  /** @internal hands waiting messages to the consumer, up to the prefetch. */
  _pump(): void {
    while (this.#deliverable() && this.#inFlight.size < this.#prefetch && this.#queue.length > 0) {
      const message = this.#queue.shift() as MemoryMessage;
      const ttl = this.messageTtlMs;
      if (ttl !== undefined && this.#network.clock.now() - message.queuedAt > ttl) {
        this.deadLetters.push({ message, reason: 'expired', code: 'EXPIRED', at: this.#network.clock.now() });
        continue;
      }
      this.#deliver(message);
    }
  }

  #deliverable(): boolean {
    return this.#consuming && this.#connected && !this.#closed && this.#onMessage !== undefined;
  }

  #deliver(message: MemoryMessage): void {
    const d: Delivery = { message, deliveryCount: message.deliveryCount, settled: false, stale: false, done: false };
    const waiter = this.#waiters.get(message);
    if (waiter !== undefined) {
      this.#waiters.delete(message);
      d.onSettled = waiter;
    }
    this.#inFlight.add(d);
    const onMessage = this.#onMessage as (m: Incoming<MemoryMessage>) => Promise<void>;
    this.#running++;
    // On a later turn of the event loop, as a broker's delivery is: a send resolves before the peer's handler runs,
    // and a message retried without end (a handler that always fails) cannot starve timers and I/O.
    setImmediate(() => {
      onMessage(this.#incoming(d))
        .catch((err: unknown) => {
          this.problems.push(`the consumer failed on message ${message.seq}: ${String(err)}`);
          this.emitSafe('internal-error', err, 'consumer');
        })
        .finally(() => {
          this.#running--;
          d.done = true;
          if (d.settlement !== undefined) d.onSettled?.(d.settlement);
        });
    });
  }

  #incoming(d: Delivery): Incoming<MemoryMessage> {
    const m = d.message;
    if (m.body.length > this.#maxBodyBytes) {
      // As a broker's dead-letter exchange takes a rejected message: settled before the consumer sees it.
      const reason = `rejected: a body of ${m.body.length} bytes is over ${this.#maxBodyBytes}`;
      this.deadLetters.push({ message: m, reason, code: 'TOO_LARGE', at: this.#network.clock.now() });
      this.#settle(d, 'dead', reason, 'TOO_LARGE');
      const none = async (): Promise<undefined> => undefined;
      const settled = { ack: none, retry: none, deadLetter: none };
      return { ...this.#view(m, d), ...settled, body: Buffer.alloc(0), oversized: m.body.length };
    }
    return this.#view(m, d);
  }

  #view(m: MemoryMessage, d: Delivery): Incoming<MemoryMessage> {
    const p = m.properties;
    return {
      from: m.from,
      body: m.body,
      routingKey: m.routingKey,
      messageId: p.messageId,
      correlationId: p.correlationId,
      contentType: p.contentType,
      type: p.type,
      appId: p.appId,
      headers: p.headers,
      redelivered: m.redelivered,
      deliveryCount: d.deliveryCount,
      raw: m,
      ack: () => this.#settle(d, 'ack'),
      retry: () => {
        if (!this.#settle(d, 'retry')) return;
        if (this.capabilities.deliveryCount) m.deliveryCount++;
        m.redelivered = true;
        this.#queue.unshift(m);
        this._pump();
      },
      deadLetter: async (reason, code) => {
        const failure = this.deadLetterFailure?.(reason, code);
        if (failure !== undefined) throw failure;
        // The copy is kept only by the settlement that counts (not by a stale or a second one). A stale delivery
        // comes again (it was given back): nothing was done, as MQTT's, whose PUBACK cannot be sent any more.
        if (!d.stale && !d.settled) this.deadLetters.push({ message: m, reason, code, at: this.#network.clock.now() });
        return this.#settle(d, 'dead', reason, code) ? undefined : false;
      },
    };
  }

  /** Records a settlement; false when it does not count (a stale delivery, or one already settled). */
  #settle(d: Delivery, outcome: Outcome, reason?: string, code?: string): boolean {
    if (d.stale) return false;
    if (d.settled) {
      this.problems.push(`message ${d.message.seq} settled twice (${outcome} after an earlier settlement)`);
      return false;
    }
    d.settled = true;
    this.#inFlight.delete(d);
    const s: Settlement = {
      message: d.message,
      outcome,
      deliveryCount: d.deliveryCount,
      ...(reason === undefined ? {} : { reason }),
      ...(code === undefined ? {} : { code }),
    };
    this.settlements.push(s);
    if (d.done) d.onSettled?.(s);
    else d.settlement = s;
    if (outcome !== 'retry') queueMicrotask(() => this._pump());
    return true;
  }

  /** Unsettled deliveries back to the head of the queue, in their order, marked redelivered. */
  #giveBack(): void {
    const back = [...this.#inFlight].map((d) => {
      d.stale = true;
      d.message.redelivered = true;
      return d.message;
    });
    this.#inFlight.clear();
    this.#queue.unshift(...back);
  }

  protected listenerFailed(err: unknown, event: string): void {
    process.emitWarning(`a listener of the memory transport's ${event} event threw: ${String(err)}`);
  }
}
