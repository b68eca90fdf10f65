/**
 * The bus over AMQP 0-9-1 (src/amqp), in the two topologies of the data model §3.8 / §3.9 decision 1.
 *
 * `exchanges` (D3.2.3, the default): we publish to the durable topic exchange `<me>-to-<peer>` with the routing
 * key `<msg>.<heh_id or our name>`, never to the default exchange; we consume `private-<me>-in`, a durable quorum queue
 * with `x-message-ttl` (15 minutes) whose dead letters go through `private-<me>-dlx` into `private-<me>-dead`,
 * bound to `<peer>-to-<me>` with `#` for every peer. The exchange a message came through names its sender: the
 * broker's permissions (write `<user>-to-.*` only) make that trustworthy, the JSON never says who sent it.
 * D3.2.3 gives the configure permission on the pair exchanges to one side only, so the other side checks them
 * (passive declare) instead of declaring them.
 *
 * `queues` (D3.2.1, the first version): a hub has `<name>-up` (hub to controller) and `<name>-down` (controller
 * to hub), used through the default exchange; a controller publishes to `<peer>-down` and consumes `<peer>-up`.
 *
 * The connection's own events (src/amqp's RecoveringConnection) reach the application as the transport's neutral
 * TransportEvents; `connection` and `channel` stay reachable for what only AMQP has. amqpBus() builds a Connector
 * over this transport from one flat set of options.
 *
 * Nothing can hold our inbox up for good. A body over the Connector's limit is refused at its content header, unread,
 * rejected without requeue (so dead-lettered) and handed over as an `oversized` Incoming; the consumer goes on. And
 * the inbox gets a delivery limit (`x-delivery-limit`, quorum queues): a message that keeps failing for any other
 * reason (a crash while it is handled, a closed channel) goes to the dead letters after that many deliveries instead
 * of coming back to the head of the queue. RabbitMQ refuses to re-declare an existing queue with another argument
 * (406), so an inbox that exists without the limit is declared as it is and reported (`degraded`): a policy gives it
 * one without deleting it (docs/bus.md, "Inbox protections").
 *
 * It stays one file (over 500 lines): it is the one place that maps the Transport interface onto AMQP, topology,
 * publishing, consuming and events together, so that nothing else in the bus names AMQP (test/unit/layers.test.ts).
 */
import { randomUUID } from 'node:crypto';
import {
  ArgumentError,
  ChannelError,
  type FieldTable,
  type Message,
  PublishError,
  type RecoveringChannel,
  RecoveringConnection,
  type RecoveringConsumer,
  type RecoveryEvents,
  type RecoveryOptions,
} from '../amqp/index.js';
import { TypedEmitter } from '../core/emitter.js';
import { instanceQueue, instanceTag, isShardQueue, relayExchange, shardOf, shardQueue } from '../core/shard.js';
import { type InstancesHost, openLedger, shardSetOf } from './amqp-instances.js';
import type { Ledger } from './amqp-ledger.js';
import { publishWithHeaders, routingKeyFor } from './amqp-republish.js';
import type { ShardSet, ShardStatus } from './amqp-shards.js';
import { busOver, type Connector, type ConnectorOptions } from './connector.js';
import { BusError, fail } from './errors.js';
import type {
  Incoming,
  Loopback,
  Outgoing,
  StartOptions,
  Transport,
  TransportCapabilities,
  TransportEvents,
} from './transport.js';

/** What an AMQP connection is given: URL parts, credentials, TLS, endpoints, backoff, the publish buffer (src/amqp). */
export type AmqpConnectOptions = RecoveryOptions;

export type Topology = 'exchanges' | 'queues';

export interface AmqpTransportOptions {
  /** Our entity name (the RabbitMQ user, e.g. `heh-b827ebea02c1` or `vpp-acme`). */
  name: string;
  /** The entities we exchange messages with. */
  peers: readonly string[];
  /** How to connect (with recovery: endpoints, backoff, buffer); or pass `connection` to share one (many simulated hubs). */
  url?: string | AmqpConnectOptions;
  /** Settings that take precedence over the URL's (a password read from a file, more endpoints, TLS files ...). */
  connectOptions?: AmqpConnectOptions;
  connection?: RecoveringConnection;
  topology?: Topology;
  /** `queues` topology only: a hub owns `<name>-up/-down`, a controller uses its peers'. Default `hub`. */
  role?: 'hub' | 'controller';
  /** Declare the pair exchanges (configure permission needed); false: only check that they exist. Default true. */
  declareExchanges?: boolean;
  /** Message TTL of our queues (default 900,000 ms, D3.2.3). */
  queueTtlMs?: number;
  /** Deliveries in flight to us (default 100; the data model suggests 10 on a hub). */
  prefetch?: number;
  /** `quorum` (default) or `classic` for our queues (both sides of the `queues` topology must agree). */
  queueType?: 'quorum' | 'classic';
  /** Messages kept in the dead-letter queue before the oldest are dropped (default 100,000). */
  deadLetterMax?: number;
  /**
   * `x-delivery-limit` of a new quorum inbox (`exchanges` topology): deliveries a message may fail before the broker
   * dead-letters it (default 10, above the Connector's own deliveryLimit, so that the bus's dead letter with its
   * reason comes first; 0: none). An inbox that exists keeps its arguments (see `degraded`).
   */
  queueDeliveryLimit?: number;
  /** false: declare and publish only, never consume (a send-only tool must not take the entity's messages). */
  consume?: boolean;
  /**
   * `exchanges` topology: `shared` (default, D3.2.3) feeds every peer's exchange into `private-<me>-in`; `per-peer`
   * gives each peer its own inbox `private-<me>-in:<peer>`, consumed side by side, so that a peer that floods us
   * waits behind its own messages, never in front of another peer's (docs/bus.md, "Fairness"). For a party with a
   * few peers (a hub: its aggregator, a DSO, a market). `{ shards: K }`, for a party with thousands of peers (an
   * aggregator): K inboxes `private-<me>-shard:<k>`, each peer always on the same one (FNV-1a of its name, mod K),
   * so that a peer's flood delays only the peers of its shard, and each peer's messages stay in order.
   */
  inboxes?: 'shared' | 'per-peer' | { shards: number };
  /**
   * This instance's name, when the party runs as several (docs/bus.md, "Instances"): it gets a queue of its own,
   * `private-<me>-instance:<tag>`, bound to the party's relay exchange `private-<me>-relay`, through which the other
   * instances hand it the answers to its requests that reached them. The tag is 4 hex digits of the name's FNV-1a.
   */
  instance?: string;
  /**
   * With `instance` and shards: how often the instance tells the others it is there (default 2,000 ms). The instances
   * share the shards out among those heard within three intervals (docs/bus.md, "Instances"). 0: they do not (a hot
   * standby: the first instance to subscribe has every shard until it goes).
   */
  presenceMs?: number;
  /**
   * With `instance`: this one takes no share of the shards; it hands any it is given to the instances it hears, and
   * keeps them only while it hears none (a command-line tool, a process that only sends requests).
   */
  standby?: boolean;
  /**
   * With `instance` and shards: what the instances handled is kept in the stream `private-<me>-handled` for the
   * instance that takes a shard over next, which reads `windowMs` of it back (default 5 minutes); false: not kept.
   */
  ledger?: false | { windowMs?: number };
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/;

/** Each transport event, from the RecoveringConnection event it is. */
const FROM_CONNECTION = {
  up: 'connected',
  down: 'disconnected',
  reconnecting: 'recovering',
  recovered: 'recovered',
  failed: 'failed',
  blocked: 'blocked',
  unblocked: 'unblocked',
  'restore-failed': 'topology-failed',
  'settle-overdue': 'ack-deadline',
  'internal-error': 'handler-error',
  resumed: 'channel-recovered',
  'source-cancelled': 'consumer-cancelled',
} as const satisfies { [K in Exclude<keyof TransportEvents, 'degraded'>]: keyof RecoveryEvents };

export class AmqpTransport extends TypedEmitter<TransportEvents> implements Transport<Message> {
  readonly name = 'amqp';
  declare readonly options: Readonly<AmqpTransportOptions>;
  declare readonly topology: Topology;
  declare readonly capabilities: TransportCapabilities;
  readonly #conn: RecoveringConnection;
  readonly #ownsConnection: boolean;
  #closed = false;
  #pub: RecoveringChannel | undefined;
  #sub: RecoveringChannel | undefined;
  /** `inboxes: { shards }`: each shard on a channel of its own, shared out among the instances. */
  #shards: ShardSet | undefined;
  /** With `instance` and shards: what the instances handled, in the broker (amqp-ledger.ts). */
  #ledger: Ledger | undefined;
  readonly #inbound = new Map<string, string>(); // exchange or queue -> peer
  readonly #consumers: RecoveringConsumer[] = [];
  /** Set by stopConsuming(): what is delivered after it is left unsettled, for the broker to take back on close. */
  #holding = false;
  /** A Set: an aggregator has thousands of peers and looks one up per message. */
  readonly #peers: ReadonlySet<string>;
  /** Connection events already forwarded: attached on the first listener, so that a shared connection (thousands of
   * simulated hubs) does not collect a listener per transport and event for nothing. */
  readonly #forwarded = new Set<string>();

  constructor(options: AmqpTransportOptions) {
    super();
    for (const n of [options.name, ...options.peers]) {
      if (!NAME.test(n)) fail('CONFIG', `"${n}" is not an entity name (letters, digits, ".", "_", "-")`);
    }
    const shards = typeof options.inboxes === 'object' ? options.inboxes.shards : 1;
    if (!Number.isInteger(shards) || shards < 1 || shards > 1024)
      fail('CONFIG', `inboxes.shards must be an integer from 1 to 1024 (got ${shards})`);
    this.options = options;
    this.topology = options.topology ?? 'exchanges';
    this.#peers = new Set(options.peers);
    this.#ownsConnection = options.connection === undefined;
    this.capabilities = {
      requeue: true,
      // Classic queues do not count deliveries; the Connector then counts failures itself.
      deliveryCount: (options.queueType ?? 'quorum') === 'quorum',
      deadLetterQueue: true,
      confirmedSend: true,
      authenticatedSender: this.topology === 'exchanges' || (options.role ?? 'hub') === 'controller',
      // The first version publishes through the default exchange: its routing key is the queue's name.
      routingKeyNamesType: this.topology === 'exchanges',
    };
    // Not connecting yet: that starts with start(), after the application has attached its listeners.
    this.#conn =
      options.connection ??
      new RecoveringConnection(options.url ?? 'amqp://guest:guest@127.0.0.1:5672', {
        connectionName: options.name,
        ...options.connectOptions,
      });
  }

  get entity(): string {
    return this.options.name;
  }

  get instanceTag(): string | undefined {
    const i = this.options.instance;
    return i === undefined ? undefined : instanceTag(i);
  }

  /** The exchange through which the instances of our party hand each other answers (options.instance). */
  get relayExchange(): string {
    return relayExchange(this.options.name);
  }

  async relay(tag: string, message: Incoming): Promise<boolean> {
    const m = message.raw as Message;
    const p = m.properties;
    try {
      await publishWithHeaders(
        (q) => this.channel.basicPublish(this.relayExchange, tag, message.body, q, { mandatory: true }),
        p,
        { 'x-ebadge-relayed-from': message.from ?? '', 'x-ebadge-routing-key': message.routingKey },
      );
      return true;
    } catch (err) {
      if (err instanceof PublishError && err.failure === 'returned') return false;
      throw err;
    }
  }

  get peers(): readonly string[] {
    return this.options.peers;
  }

  /** x-message-ttl of our queues: what a peer's copy of a message can wait, so how long duplicates are remembered. */
  get messageTtlMs(): number {
    return this.options.queueTtlMs ?? 900_000;
  }

  override on<K extends keyof TransportEvents & string>(
    event: K,
    listener: (...args: TransportEvents[K]) => void,
  ): this {
    this.#forward(event);
    return super.on(event, listener);
  }

  override once<K extends keyof TransportEvents & string>(
    event: K,
    listener: (...args: TransportEvents[K]) => void,
  ): this {
    this.#forward(event);
    return super.once(event, listener);
  }

  #forward(event: keyof TransportEvents & string): void {
    if (this.#forwarded.has(event) || !Object.hasOwn(FROM_CONNECTION, event)) return;
    this.#forwarded.add(event);
    const source = FROM_CONNECTION[event as keyof typeof FROM_CONNECTION] as keyof RecoveryEvents & string;
    this.#conn.on(source, (...args: unknown[]) =>
      this.emitSafe(event, ...(args as TransportEvents[keyof TransportEvents])),
    );
  }

  protected listenerFailed(err: unknown, event: string): void {
    process.emitWarning(`a listener of the AMQP transport's ${event} event threw: ${String(err)}`);
  }

  /** The AMQP connection underneath, which recovers by itself (the API stays transparent). */
  get connection(): RecoveringConnection {
    return this.#conn;
  }

  /** The confirm channel messages are published on. */
  get channel(): RecoveringChannel {
    if (this.#pub === undefined) fail('NOT_STARTED', 'the transport is not started');
    return this.#pub;
  }

  /** D3.2.3's inbox; with `inboxes: 'per-peer'` it only drains what it held before (no peer is bound to it). */
  get inboxQueue(): string {
    return `private-${this.options.name}-in`;
  }

  /**
   * Where `peer`'s messages wait for us. A per-peer inbox is named with `:`, which no entity name can hold, so that
   * it can never be another party's queue (the party `a-in:b` cannot exist; `a-in.b`, whose inbox is
   * `private-a-in.b-in`, can).
   */
  inboxOf(peer: string): string {
    const mode = this.options.inboxes ?? 'shared';
    if (this.topology !== 'exchanges' || mode === 'shared') return this.inboxQueue;
    if (mode === 'per-peer') return `${this.inboxQueue}:${peer}`;
    return shardQueue(this.options.name, shardOf(peer, mode.shards));
  }

  get deadLetterQueue(): string {
    return `private-${this.options.name}-dead`;
  }

  get deadLetterExchange(): string {
    return `private-${this.options.name}-dlx`;
  }

  async start(onMessage: (message: Incoming<Message>) => Promise<void>, options: StartOptions = {}): Promise<void> {
    const o = this.options;
    await openOrRefused(this.connection);
    try {
      this.#pub = await this.#conn.createChannel({ confirm: true });
      this.#sub = await this.#conn.createChannel({ confirm: false });
      const queues = this.topology === 'exchanges' ? await this.#declareExchanges() : await this.#declareQueues();
      const own = o.consume === false ? undefined : await this.#declareInstance();
      if (o.consume === false) return;
      // Refused by the client at the content header (never assembled) and rejected without requeue: reported here.
      this.#sub.on('oversized', (m, size) => void onMessage(this.#refused(m, size)));
      this.#sub.on('malformed', (m, reason) => void onMessage(this.#malformed(m, reason)));
      const max = options.maxBodyBytes;
      const consume = { prefetch: o.prefetch ?? 100, ...(max === undefined ? {} : { maxMessageBytes: max }) };
      this.#holding = false;
      for (const q of queues) {
        if (isShardQueue(o.name, q)) continue;
        this.#consumers.push(
          await this.#sub.basicConsume(
            q,
            (m) => (this.#holding ? Promise.resolve() : onMessage(this.#incoming(m))),
            consume,
          ),
        );
      }
      const shards =
        typeof o.inboxes === 'object' && this.topology === 'exchanges'
          ? shardSetOf(this.#instancesHost(), this.#ledger, onMessage, consume)
          : undefined;
      this.#shards = shards;
      if (own !== undefined) {
        this.#consumers.push(
          await this.#sub.basicConsume(
            own,
            (m) =>
              shards?.presence(m) === true || this.#holding ? Promise.resolve() : onMessage(this.#relayedIncoming(m)),
            consume,
          ),
        );
      }
      await shards?.start();
    } catch (err) {
      // Refused (a permission, an exchange not declared yet) or cut: nothing of this attempt stays, so that start()
      // can be called again (the hub retries until the broker's side is fixed).
      await this.stopConsuming();
      await Promise.allSettled([this.#pub?.close(), this.#sub?.close(), this.#shards?.close(), this.#ledger?.close()]);
      this.#pub = undefined;
      this.#sub = undefined;
      this.#shards = undefined;
      throw err;
    }
  }

  async send(m: Outgoing): Promise<void> {
    const ch = this.channel;
    const { to } = m;
    if (!this.#peers.has(to)) fail('UNKNOWN_PEER', `"${to}" is not a configured peer of ${this.options.name}`);
    // The key is `<msg>.<heh_id or sender>` (data model §3.8, as the reference code sends it): without a heh_id the
    // sender comes second, so that the 2015 reference peers, which bind `*.*`, receive it; our own bindings are `#`.
    const [exchange, routingKey] =
      this.topology === 'exchanges'
        ? [
            `${this.options.name}-to-${to}`,
            m.routingKey.includes('.') ? m.routingKey : `${m.routingKey}.${this.options.name}`,
          ]
        : ['', this.#role() === 'hub' ? `${this.options.name}-up` : `${to}-down`];
    await ch.basicPublish(exchange, routingKey, m.body, { ...m.properties, deliveryMode: 2 }, { mandatory: true });
  }

  /**
   * A server-named exclusive queue of our own, fed through the default exchange on a confirm channel of the
   * connection of the moment (not recovered: a lost connection fails the measurement instead of pausing it).
   */
  async loopback(onMessage: (body: Buffer) => void): Promise<Loopback> {
    await this.#conn.whenOpen();
    const ch = await this.#raw().createConfirmChannel();
    const { queue } = await ch.queueDeclare('', { exclusive: true, autoDelete: true });
    await ch.basicConsume(
      queue,
      (msg) => {
        msg.ack();
        onMessage(msg.body);
      },
      { prefetch: 10 },
    );
    return {
      send: async (body) => {
        await ch.basicPublish('', queue, body, { messageId: randomUUID(), deliveryMode: 2 });
      },
      close: () => ch.close(),
    };
  }

  /**
   * Stops handing deliveries over. A shard's consumer is not cancelled: cancelling the active consumer of a
   * single-active-consumer queue makes the broker activate the next instance at once, while the deliveries this one
   * holds unsettled go back to the queue only later, behind what the next one was given: a peer's order would break.
   * What arrives from now on is left unsettled instead, and closing the channel gives it back, to the head of the
   * queue, before the next instance gets anything (bus-inboxes.test: two instances, one closed mid-flood).
   */
  async stopConsuming(): Promise<void> {
    this.#holding = true;
    const consumers = this.#consumers.splice(0);
    await Promise.allSettled([...consumers.map((c) => c.cancel()), this.#shards?.stop()]);
  }

  /** Each shard as this instance sees it: who should have it, whether the broker made us its consumer. */
  shardStatus(): ShardStatus[] {
    return this.#shards?.status() ?? [];
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#shards?.close();
    await this.#ledger?.close().catch(() => undefined);
    if (this.#ownsConnection) {
      await this.#conn.close();
    } else {
      await Promise.allSettled([this.#sub?.close(), this.#pub?.close()]);
    }
  }

  #role(): 'hub' | 'controller' {
    return this.options.role ?? 'hub';
  }

  /** Arguments of a queue owned by `owner`: both sides declare a hub's up/down queues, so they must agree. */
  #queueArgs(owner = this.options.name): FieldTable {
    return {
      'x-queue-type': this.options.queueType ?? 'quorum',
      'x-message-ttl': this.options.queueTtlMs ?? 900_000,
      'x-dead-letter-exchange': `private-${owner}-dlx`,
    };
  }

  /** The connection of the moment, for what must not be recorded for recovery (a passive check). */
  #raw(): NonNullable<RecoveringConnection['connection']> {
    const c = this.connection.connection;
    if (c === null) fail('NOT_STARTED', 'the connection to the broker is recovering');
    return c;
  }

  async #declareDeadLetters(ch: RecoveringChannel): Promise<void> {
    const dlx = this.deadLetterExchange;
    const dead = this.deadLetterQueue;
    await guard(() => ch.exchangeDeclare(dlx, 'fanout', { durable: true }), `declaring exchange ${dlx}`);
    await guard(
      () =>
        ch.queueDeclare(dead, {
          durable: true,
          arguments: {
            'x-queue-type': this.options.queueType ?? 'quorum',
            'x-max-length': this.options.deadLetterMax ?? 100_000,
          },
        }),
      `declaring ${dead}`,
    );
    await guard(() => ch.queueBind(dead, dlx, ''), `binding ${dead} to ${dlx}`);
  }

  async #declareExchanges(): Promise<string[]> {
    const o = this.options;
    const ch = this.#pub as RecoveringChannel;
    await this.#declareDeadLetters(ch);
    const inbox = this.inboxQueue;
    const declareInbox = async (q: string, extra: FieldTable = {}): Promise<void> => {
      const args = await this.#withDeliveryLimit(q, { ...this.#queueArgs(), ...extra });
      await guard(() => ch.queueDeclare(q, { durable: true, arguments: args }), `declaring ${q}`);
    };
    await declareInbox(inbox);
    const consumed = [inbox];
    // Every shard, whether a peer falls in it yet or not: they are the same for every instance and for provisioning.
    // One consumer at a time per shard (single active consumer): several instances of the party each subscribe to
    // every shard, the broker delivers a shard to one of them and moves it to another when that one is gone, so a
    // peer's messages are handled in order even across a failover.
    if (typeof o.inboxes === 'object') {
      for (let k = 0; k < o.inboxes.shards; k++) {
        const shard = shardQueue(o.name, k);
        await declareInbox(shard, { 'x-single-active-consumer': true });
        consumed.push(shard);
      }
    }
    const declared = new Set(consumed);
    for (const peer of o.peers) {
      const own = this.inboxOf(peer);
      if (own !== inbox && !declared.has(own)) {
        await declareInbox(own);
        consumed.push(own);
        declared.add(own);
      }
      await this.#declarePeer(ch, peer, inbox);
    }
    return consumed;
  }

  /** A peer's pair exchanges (or a check that they exist) and the binding of its exchange to its inbox. */
  async #declarePeer(ch: RecoveringChannel, peer: string, inbox: string): Promise<void> {
    const o = this.options;
    for (const x of [`${o.name}-to-${peer}`, `${peer}-to-${o.name}`]) {
      if (o.declareExchanges === false) {
        // A passive check that fails closes its channel: use a throw-away one.
        const probe = await this.#raw().createChannel();
        await guard(
          () => probe.exchangeDeclare(x, 'topic', { passive: true }),
          `checking exchange ${x} (declareExchanges is false)`,
        );
        await probe.close();
      } else {
        await guard(() => ch.exchangeDeclare(x, 'topic', { durable: true }), `declaring exchange ${x}`);
      }
    }
    const incoming = `${peer}-to-${o.name}`;
    const own = this.inboxOf(peer);
    await guard(() => ch.queueBind(own, incoming, '#'), `binding ${own} to ${incoming}`);
    // A hub that had the shared inbox before: from now on its peer's messages go only to their own queue (what
    // the shared one holds is still consumed). Unbinding what is not bound is no error.
    if (own !== inbox) await guard(() => ch.queueUnbind(inbox, incoming, '#'), `unbinding ${inbox} from ${incoming}`);
    this.#inbound.set(incoming, peer);
  }

  async #declareQueues(): Promise<string[]> {
    const o = this.options;
    const ch = this.#pub as RecoveringChannel;
    await this.#declareDeadLetters(ch);
    const declare = async (q: string, owner: string): Promise<void> => {
      await guard(() => ch.queueDeclare(q, { durable: true, arguments: this.#queueArgs(owner) }), `declaring ${q}`);
    };
    if (this.#role() === 'hub') {
      await declare(`${o.name}-up`, o.name);
      await declare(`${o.name}-down`, o.name);
      return [`${o.name}-down`];
    }
    const consumed: string[] = [];
    for (const peer of o.peers) {
      // The hub's queues dead-letter into the hub's exchange, which may not exist yet if the hub never ran.
      await ch.exchangeDeclare(`private-${peer}-dlx`, 'fanout', { durable: true });
      await declare(`${peer}-up`, peer);
      await declare(`${peer}-down`, peer);
      this.#inbound.set(`${peer}-up`, peer);
      consumed.push(`${peer}-up`);
    }
    return consumed;
  }

  /**
   * The inbox's arguments with the delivery limit it can have. A throw-away channel tries them first (a refusal
   * closes the channel it came on): a new queue takes the limit; an existing one keeps the limit it has, or none,
   * which is reported. RabbitMQ's 406 says which (`... received '10' but current is none`).
   */
  async #withDeliveryLimit(queue: string, args: FieldTable): Promise<FieldTable> {
    const limit = this.options.queueDeliveryLimit ?? 10;
    if (limit <= 0 || args['x-queue-type'] !== 'quorum') return args;
    const wanted = { ...args, 'x-delivery-limit': limit };
    const probe = await this.#raw().createChannel();
    try {
      await probe.queueDeclare(queue, { durable: true, arguments: wanted });
      return wanted;
    } catch (err) {
      const text = err instanceof ChannelError && err.replyCode === 406 ? err.replyText : '';
      if (!text.includes("'x-delivery-limit'")) throw err;
      const vhost = this.#raw().options.vhost;
      const policy = `rabbitmqctl set_policy -p '${vhost}' --apply-to queues ebadge-inbox-delivery-limit '^private-.+-(in|in:.+|shard:[0-9]+)$' '{"delivery-limit":${limit}}'`;
      if (/current is none/.test(text)) {
        this.emitSafe(
          'degraded',
          `${queue} exists without x-delivery-limit: a message that keeps failing comes back to the head of the queue ` +
            `without end, unless a broker policy sets delivery-limit (ebadge provision sets one)`,
          `${policy} (it applies to the existing queue, messages kept), or delete the queue for the hub to declare it anew (its messages are lost)`,
        );
        return args;
      }
      const current = /current is (?:the value )?'(\d+)'/.exec(text)?.[1];
      if (current === undefined) throw err;
      this.emitSafe(
        'degraded',
        `${queue} exists with x-delivery-limit ${current}, not the ${limit} asked for: it keeps ${current}`,
        `${policy} (the lower of the policy and the argument applies), or delete the queue for the hub to declare it anew`,
      );
      return { ...args, 'x-delivery-limit': Number(current) };
    } finally {
      if (probe.isOpen) await probe.close();
    }
  }

  /**
   * This instance's own queue for answers relayed to it: exclusive (gone with the connection, so that a relay to a
   * stopped instance is returned and handled by the one that has it), bound to the relay exchange with our tag.
   */
  async #declareInstance(): Promise<string | undefined> {
    const tag = this.instanceTag;
    if (tag === undefined || this.topology !== 'exchanges') return undefined;
    const ch = this.#pub as RecoveringChannel;
    const x = this.relayExchange;
    const q = instanceQueue(this.options.name, tag);
    await guard(() => ch.exchangeDeclare(x, 'direct', { durable: true }), `declaring exchange ${x}`);
    await guard(() => ch.queueDeclare(q, { exclusive: true, autoDelete: true }), `declaring ${q}`);
    await guard(() => ch.queueBind(q, x, tag), `binding ${q} to ${x}`);
    // The instances of a sharded party share the shards out among those they hear (amqp-shards.ts).
    if (typeof this.options.inboxes === 'object' && this.options.presenceMs !== 0) {
      await guard(() => ch.queueBind(q, x, 'presence'), `binding ${q} to ${x} for presence`);
    }
    if (typeof this.options.inboxes === 'object' && this.options.ledger !== false)
      this.#ledger = await openLedger(this.#instancesHost());
    return q;
  }

  /** What the instances' machinery (amqp-instances.ts) needs of this transport. */
  #instancesHost(): InstancesHost {
    const o = this.options;
    return {
      party: o.name,
      shards: typeof o.inboxes === 'object' ? o.inboxes.shards : 1,
      tag: this.instanceTag,
      instance: o.instance,
      standby: o.standby === true,
      presenceMs: o.presenceMs,
      ledgerWindowMs: typeof o.ledger === 'object' ? o.ledger.windowMs : undefined,
      relayExchange: this.relayExchange,
      connection: this.#conn,
      publisher: () => this.#pub as RecoveringChannel,
      probe: () => this.#raw().createChannel(),
      incoming: (m) => this.#incoming(m),
      refused: (m, size) => this.#refused(m, size),
      holding: () => this.#holding,
      warn: (what, fix) => this.emitSafe('degraded', what, fix),
    };
  }

  /** A delivery another instance relayed: its sender and routing key as that instance received them. */
  #relayedIncoming(m: Message): Incoming<Message> {
    const h = m.properties.headers ?? {};
    const from = h['x-ebadge-relayed-from'];
    const key = h['x-ebadge-routing-key'];
    return {
      ...this.#incoming(m),
      // Only our own instances can write to the relay exchange (its name is in our private namespace).
      from: typeof from === 'string' && this.#peers.has(from) ? from : undefined,
      routingKey: typeof key === 'string' ? key : m.routingKey,
      relayed: true,
    };
  }

  /** The peer a delivery comes from, as the topology tells it (see the file's header). */
  #senderOf(m: Message): string | undefined {
    const p = m.properties;
    const from = this.#inbound.get(this.topology === 'exchanges' ? m.exchange : m.routingKey);
    if (from !== undefined || this.topology !== 'queues' || this.#role() !== 'hub') return from;
    // The first version names no sender: the app_id if it is a peer, else the only peer there is.
    return p.appId !== undefined && this.#peers.has(p.appId)
      ? p.appId
      : this.options.peers.length === 1
        ? this.options.peers[0]
        : undefined;
  }

  /** A delivery the client refused for its size: settled already (rejected, so dead-lettered), with no body. */
  #refused(m: Message, size: number): Incoming<Message> {
    return { ...this.#incoming(m), oversized: size, ...SETTLED };
  }

  /** A delivery whose properties the client could not read (a header table too deep): refused already, told. */
  #malformed(m: Message, reason: string): Incoming<Message> {
    return {
      ...this.#incoming(m),
      refused: { reason: `its properties cannot be read: ${reason}`, code: 'MALFORMED' },
      ...SETTLED,
    };
  }

  #incoming(m: Message): Incoming<Message> {
    const p = m.properties;
    const pub = this.#pub as RecoveringChannel;
    const dlx = this.deadLetterExchange;
    return {
      from: this.#senderOf(m),
      body: m.body,
      routingKey: m.routingKey,
      // Ids whose invalid UTF-8 decoded past 255 bytes could not be echoed in an answer's correlation_id (the answer
      // would fail): they were not text, and are taken as absent.
      messageId: echoable(p.messageId),
      correlationId: echoable(p.correlationId),
      contentType: p.contentType,
      type: p.type,
      appId: p.appId,
      headers: p.headers ?? {},
      redelivered: m.redelivered,
      deliveryCount: m.deliveryCount,
      raw: m,
      ack: () => m.ack(),
      retry: () => m.nack(true),
      async deadLetter(reason, code) {
        const ours: Record<string, unknown> = {
          'x-ebadge-error': reason.slice(0, 1000),
          ...(code === undefined ? {} : { 'x-ebadge-error-code': code }),
          'x-ebadge-source': m.exchange === '' ? m.routingKey : m.exchange,
          'x-ebadge-dead-at': new Date(),
        };
        const routingKey = routingKeyFor(m.routingKey, ours);
        const withId = p.messageId === undefined ? { ...p, messageId: randomUUID() } : p;
        try {
          await publishWithHeaders((q) => pub.basicPublish(dlx, routingKey, m.body, q), withId, ours);
        } catch (err) {
          if (!(err instanceof ArgumentError)) throw err;
          // Nothing of it can be published again: rejected without requeue (the queue's own dead-lettering takes
          // it where it has one), never requeued to come back for ever.
          m.nack(false);
          return;
        }
        m.ack();
      },
    };
  }
}

/** What settling a delivery the client refused does: nothing, it is settled already. */
const SETTLED = { ack: () => undefined, retry: () => undefined, deadLetter: async (): Promise<undefined> => undefined };

const echoable = (id: string | undefined): string | undefined =>
  id === undefined || Buffer.byteLength(id) <= 255 ? id : undefined;

/** Runs a topology call and turns a broker refusal into a BusError that says what was being done. */
async function guard<T>(fn: () => Promise<T>, what: string): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ChannelError) {
      fail('TOPOLOGY', `${what}: the broker answered ${err.replyCode} ${err.replyText}`, { cause: err });
    }
    throw err;
  }
}

/**
 * Resolves when `conn` is open; rejects ACCESS_REFUSED when the broker refuses our credentials before it ever was
 * (the connection goes on trying, slowly), or as whenOpen() does.
 */
function openOrRefused(conn: RecoveringConnection): Promise<void> {
  return new Promise((resolve, reject) => {
    const refused = (err: Error, i: { authentication: boolean }): void => {
      if (!i.authentication) return;
      conn.off('failed', refused);
      reject(new BusError('ACCESS_REFUSED', `the broker refused our credentials: ${err.message}`, { cause: err }));
    };
    conn.on('failed', refused);
    conn.whenOpen().then(
      () => {
        conn.off('failed', refused);
        resolve();
      },
      (err: unknown) => {
        conn.off('failed', refused);
        reject(err);
      },
    );
  });
}

/** A Connector over AMQP, from the transport's options and the bus's in one object. */
export interface AmqpBusOptions extends AmqpTransportOptions, Omit<ConnectorOptions<AmqpTransport>, 'transport'> {}

/** `amqpBus({ name, peers, url })`: an AmqpTransport and the Connector over it (handlers first, then start()). */
export function amqpBus(options: AmqpBusOptions): Connector<AmqpTransport> {
  return busOver(options, (transport) => new AmqpTransport(transport));
}
