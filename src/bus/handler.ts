/**
 * What a handler is given: the typed message and its context. The context is typed by the transport the connector
 * runs on, so that what lies below stays reachable without a cast: over an AmqpTransport, `ctx.transport` has the
 * `connection` and `channel`, and `ctx.delivery.raw` is the AMQP `Message`.
 */
import type { Message, MessageType } from '../codec/index.js';
import type { Connector } from './connector.js';
import type { Incoming, RawOf, Transport } from './transport.js';

export interface HandlerContext<T extends Transport = Transport> {
  /** The peer that sent the message (vouched for by the transport, and by the signature when sealed). */
  readonly sender: string;
  /** The delivery as the transport gave it; `delivery.raw` is the transport's own message. */
  readonly delivery: Incoming<RawOf<T>>;
  /** The transport underneath (an AmqpTransport exposes `connection` and `channel`). */
  readonly transport: T;
  /** What the codec tolerated in this message (errata, unknown fields). */
  readonly diagnostics: readonly string[];
  /** True when the message came sealed end to end. */
  readonly sealed: boolean;
  /** Sends `message` to the sender, correlated: `request_id` echoed, `msg_id` answered, correlation_id set. */
  reply(message: Message): Promise<void>;
  /**
   * The `response` to the message's `msg_id` (at most one is ever sent). Without a msg_id, an error code (400 and
   * up) is still answered when the message carries a request_id or an id: msg_id null, those echoed (§3.5 rule 3).
   */
  respond(code: number, description?: string, subcode?: number): Promise<void>;
  /** Decide yourself: ack now (the connector then does nothing more), or give it back / drop it. */
  ack(): void;
  nack(requeue?: boolean): void;
}

export type Handler<K extends MessageType, T extends Transport = Transport> = (
  message: Message<K>,
  ctx: HandlerContext<T>,
) => void | Promise<void>;

/**
 * A handler as the connector keeps it. A method's type is checked bivariantly in its parameters, so that a
 * Connector<AmqpTransport> is also a Connector<Transport>: code written for any transport's context accepts the AMQP
 * one, which has more. (A plain function type would make the connector contravariant in its transport.)
 */
export type StoredHandler<T extends Transport> = {
  handler(message: Message, ctx: HandlerContext<T>): void | Promise<void>;
}['handler'];

type Pascal<S extends string> = S extends `${infer H}_${infer R}` ? `${Capitalize<H>}${Pascal<R>}` : Capitalize<S>;
/** `onGetReport(handler)`, `onActivate(handler)` ...: one typed method per message type. */
export type TypedHandlerMethods<T extends Transport = Transport> = {
  [K in MessageType as `on${Pascal<K>}`]: (handler: Handler<K, T>) => Connector<T>;
};

export interface ConnectorEvents<Raw = unknown> {
  /** A message went to the dead letters: why, and the code (a codec, crypto or bus code). */
  'dead-letter': [reason: string, code: string, delivery: Incoming<Raw>];
  /** A handler threw; `final` when the message was dead-lettered for it. */
  'handler-error': [error: unknown, type: string, final: boolean];
  /** A valid message nobody handles (no handler for its type, or a reply that came after its request gave up). */
  unhandled: [message: Message, sender: string];
  /** A duplicate was dropped. */
  duplicate: [messageId: string, sender: string];
  /**
   * A request over its sender's budget was answered 503 and acked, not handled (docs/bus.md, "Fairness"); `id` is
   * its msg_id, or its request_id or id.
   */
  'over-budget': [sender: string, type: string, id: string];
  /**
   * A peer's sealed key_update was verified and taken (docs/crypto.md, "Rotation"): `kid` is the key it announced,
   * `learned` false when we knew it already. It is acked and never answered or handed to a handler.
   */
  'key-update': [sender: string, kid: string, learned: boolean];
}
