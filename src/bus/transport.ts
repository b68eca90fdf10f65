/**
 * What the bus needs from a transport, in eBADGE terms: our entity and its peers, send a message to a peer, hand over
 * what arrives and settle it, say what the connection is doing, and say what the protocol can do. The Connector above
 * it does not change with the transport: AMQP 0-9-1 now (amqp-transport.ts), MQTT 3.1.1 / 5 later (issue 16), and an
 * in-memory pair for tests (memory-transport.ts). Exchanges, queues, topics and QoS stay below this line; nothing
 * here names them, and nothing in src/bus outside a transport module imports a protocol client.
 */
import type { BodyWriter } from '../core/body-writer.js';

export { type BodyWriter, bodyBytes } from '../core/body-writer.js';

/** The properties every eBADGE message carries (data model §3.8); MQTT 5 carries them as properties and user properties. */
export interface OutgoingProperties {
  messageId: string;
  correlationId?: string;
  /** The eBADGE `msg`. */
  type: string;
  contentType: string;
  timestamp: Date;
  /** The sender's entity name. */
  appId: string;
  /** Strings only: what both AMQP headers and MQTT 5 user properties carry. */
  headers: Readonly<Record<string, string>>;
}

export interface Outgoing {
  /** The peer's entity name. */
  to: string;
  /** `<msg>` or `<msg>.<heh_id>` (D3.2.3): the AMQP routing key, the last levels of an MQTT topic. */
  routingKey: string;
  /**
   * Bytes, or a BodyWriter (src/core/body-writer.ts) that writes the body where the transport sends it from: the
   * Connector hands over a message encoded (and sealed) on the spot that way, so that its body is written once. AMQP
   * writes it straight into the frame buffer; a transport whose client takes only a Buffer (MQTT.js) materialises it
   * once with bodyBytes(), and the client's packet copy is then the copy that AMQP avoids. A writer is written when
   * the message is sent, again if it is sent again; an error it throws (an invalid message) fails the send.
   */
  body: Uint8Array | BodyWriter;
  properties: OutgoingProperties;
}

/** One delivery. `Raw` is the transport's own message (an AMQP `Message`), for applications that need more. */
export interface Incoming<Raw = unknown> {
  /** The peer the transport vouches for (the exchange `<peer>-to-<me>`, the peer's queue or topic), or undefined. */
  readonly from: string | undefined;
  readonly body: Buffer;
  /** As the transport saw it: `<msg>[.<heh_id or sender>]`, or the queue's name in the first version's topology. */
  readonly routingKey: string;
  readonly messageId: string | undefined;
  readonly correlationId: string | undefined;
  readonly contentType: string | undefined;
  readonly type: string | undefined;
  readonly appId: string | undefined;
  /** Header values as the protocol carries them (AMQP field values; MQTT 5 user properties are strings). */
  readonly headers: Readonly<Record<string, unknown>>;
  /** The broker says it delivered this message before. */
  readonly redelivered: boolean;
  /** Earlier failed deliveries as the broker counts them (quorum queues), 0 when it does not (see capabilities). */
  readonly deliveryCount: number;
  /**
   * Set when the transport refused the body for its size (over StartOptions.maxBodyBytes) before receiving it: the
   * size announced. `body` is then empty, and the message is already settled (an AMQP reject without requeue, which
   * dead-letters it through the queue's dead-letter exchange): ack, retry and deadLetter do nothing.
   */
  readonly oversized?: number;
  /**
   * Set when the transport refused the message itself for what the protocol carried it with (an MQTT message kept
   * retained by the broker, one sent at QoS 0) and settled it: why, and the code. Only told, as `oversized` is; the
   * body is the one that came (its size is what a log tells).
   */
  readonly refused?: { readonly reason: string; readonly code: string };
  /** Handed over by another instance of our party (Transport.relay): never relayed again. */
  readonly relayed?: boolean;
  /**
   * On the first delivery of a shard this instance has just taken over: the dedupe keys (`<sender>:<message id>`)
   * the instances of our party handled there recently, which the Connector counts as seen (docs/bus.md, "Instances").
   */
  readonly remembered?: readonly string[];
  /** Records that this message was handled, under its dedupe key, for whichever instance has its shard next; the ack
   * that follows waits for the record. */
  remember?(key: string): void;
  readonly raw: Raw;
  ack(): void;
  /** Gives the message back for another attempt (see TransportCapabilities.requeue). */
  retry(): void;
  /**
   * Moves the message to the dead letters with `reason` (and its code) recorded, then acks it; the promise settles
   * once the dead-letter copy is safe. It resolves `false` when it could do nothing because the delivery was lost
   * with its connection (the broker delivers the message again); the Connector then neither answers nor forgets it.
   */
  deadLetter(reason: string, code?: string): Promise<boolean | undefined>;
}

/**
 * What a transport can promise. The Connector's guarantees (docs/bus.md: lose nothing, do nothing twice) hold on
 * any transport; these say how much of the work the broker does and how much is left to the transport itself.
 */
export interface TransportCapabilities {
  /**
   * retry() hands the message back to the broker, which delivers it again (AMQP nack with requeue). MQTT has no
   * negative acknowledgement: its transport withholds the PUBACK and delivers the message again itself.
   */
  readonly requeue: boolean;
  /** deliveryCount is counted by the broker; false: it is always 0 and the Connector counts failures itself. */
  readonly deliveryCount: boolean;
  /** deadLetter() keeps the message where an operator can read it (a dead-letter queue), not only in a log. */
  readonly deadLetterQueue: boolean;
  /** send() resolves once the broker has taken responsibility for the message (publisher confirms; QoS 1 PUBACK). */
  readonly confirmedSend: boolean;
  /** `from` is vouched for by the broker's permissions (per-sender exchanges, topic ACLs), not by the message. */
  readonly authenticatedSender: boolean;
  /**
   * The routing key starts with the message type (D3.2.3's `<msg>[.<heh_id>]`, an MQTT topic's last levels), so the
   * Connector refuses a message whose routing key names another type: broker permissions can only restrict what the
   * routing key says. False where it names something else (the first version's queue names). Undefined: true.
   */
  readonly routingKeyNamesType?: boolean;
}

export interface ConnectionFailure {
  attempt: number;
  endpoint: string;
  /** The broker refused our credentials (AMQP ACCESS_REFUSED; MQTT CONNACK 4/5, reason 0x86/0x87). */
  authentication: boolean;
}

/**
 * The connection as an operator follows it (the hub logs each one). A transport reconnects by itself; these only
 * report. A transport without a connection (the in-memory one) emits only what a test simulates.
 */
export interface TransportEvents {
  /** Connected for the first time. */
  up: [endpoint: string];
  /** The connection was lost; the transport reconnects by itself. */
  down: [error: Error | undefined];
  /** The next connection attempt is in `delayMs`. */
  reconnecting: [info: { attempt: number; delayMs: number; endpoint: string }];
  /** Connected again, our queues or subscriptions and consumers restored. */
  recovered: [info: { endpoint: string; downtimeMs: number }];
  /** A connection attempt failed. */
  failed: [error: Error, info: ConnectionFailure];
  /** The broker stopped taking our messages for now (a RabbitMQ resource alarm); sends wait. */
  blocked: [reason: string];
  unblocked: [];
  /** Restoring one of our queues, bindings or subscriptions after a reconnect failed; the rest went on. */
  'restore-failed': [error: Error, what: string];
  /** A delivery has been unsettled for `ageMs`; the broker takes it back at its own timeout. */
  'settle-overdue': [ageMs: number, source: string];
  /** The protocol client underneath failed internally (a bug, or a listener that threw). */
  'internal-error': [error: unknown, where: string];
  /**
   * The broker closed our consuming or publishing path alone (an AMQP channel: a refused declaration, the consumer
   * timeout) and it was reopened, its consumers restored; `error` says why it closed. The connection stayed.
   */
  resumed: [error: Error | undefined];
  /** The broker stopped a consumer of ours (its queue was deleted, its node went down); it is restored. */
  'source-cancelled': [source: string, error: Error];
  /** A protection the transport could not put in place, and what an operator can do about it. */
  degraded: [what: string, fix: string];
}

/** What the Connector tells the transport when it starts. */
export interface StartOptions {
  /**
   * The largest body the Connector can accept (its codec limit plus a sealed envelope's overhead). A transport that
   * learns a message's size before its body (AMQP's content header) refuses a larger one unread and hands over an
   * Incoming with `oversized` set; one that cannot, hands the body over and the codec refuses it.
   */
  maxBodyBytes?: number;
}

/**
 * A private path to ourselves through the broker, for measuring round trips (`hub.js bench`): what is sent comes
 * back to the handler given to `loopback()`, and nobody else sees it.
 */
export interface Loopback {
  send(body: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

export interface Transport<Raw = unknown> {
  /** The protocol, for messages: `amqp`, `mqtt`, `memory`. */
  readonly name: string;
  /** Our entity name (`heh-b827ebea02c1`, `vpp-acme`): the broker's user, our queue's or topics' owner. */
  readonly entity: string;
  /** The entities we exchange messages with. */
  readonly peers: readonly string[];
  readonly capabilities: TransportCapabilities;
  /** How long the broker keeps a message nobody took (AMQP x-message-ttl), if it drops them: duplicates are remembered that long. */
  readonly messageTtlMs?: number | undefined;
  /**
   * Declares or checks what we consume and publish to, then delivers every incoming message to `onMessage`,
   * several at a time up to the transport's window (AMQP prefetch, MQTT receive maximum).
   */
  start(onMessage: (message: Incoming<Raw>) => Promise<void>, options?: StartOptions): Promise<void>;
  /** Resolves when the broker has the message (see capabilities.confirmedSend); rejects for an unknown peer. */
  send(message: Outgoing): Promise<void>;
  /** Stops taking new messages; those already delivered can still be settled. */
  stopConsuming(): Promise<void>;
  /** Closes; what is still unsettled goes back to the broker. */
  close(): Promise<void>;
  /**
   * Several instances of one party (docs/bus.md, "Instances"): this instance's tag (4 hex digits), which the
   * Connector writes into the ids of its requests, so that whichever instance receives the answer can tell whose
   * request it answers.
   */
  readonly instanceTag?: string | undefined;
  /**
   * Hands `message` (settled by the caller once this resolves true) to the instance tagged `tag`; false when no
   * such instance is there (it stopped, or the tag was a random id's), and the caller handles it itself.
   */
  relay?(tag: string, message: Incoming): Promise<boolean>;
  /** Optional (hub.js bench): see Loopback. Connects if needed; start() is not required. */
  loopback?(onMessage: (body: Buffer) => void): Promise<Loopback>;
  on<K extends keyof TransportEvents & string>(event: K, listener: (...args: TransportEvents[K]) => void): this;
  off<K extends keyof TransportEvents & string>(event: K, listener: (...args: TransportEvents[K]) => void): this;
}

/** The transport's own message type of a Transport type (`Message` for an AmqpTransport). */
export type RawOf<T> = T extends Transport<infer R> ? R : unknown;
