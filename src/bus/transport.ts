/**
 * What the bus needs from a transport: send a message to a peer, hand over what arrives, and settle it. The
 * handler API above it does not change with the transport: AMQP now (amqp-transport.ts), MQTT later. Addressing
 * is in eBADGE terms (a peer's name, a message type, a routing key); exchanges, queues and topics stay below.
 */
import type { Body, FieldTable } from '../amqp/index.js';

/** The properties every eBADGE message carries (data model §3.8). */
export interface OutgoingProperties {
  messageId: string;
  correlationId?: string;
  /** The eBADGE `msg`. */
  type: string;
  contentType: string;
  timestamp: Date;
  /** The sender's entity name. */
  appId: string;
  headers: FieldTable;
}

export interface Outgoing {
  /** The peer's entity name. */
  to: string;
  /** `<msg>` or `<msg>.<heh_id>`. */
  routingKey: string;
  body: Body;
  properties: OutgoingProperties;
}

export interface Incoming {
  /** The peer the transport vouches for (the exchange `<peer>-to-<me>`, the peer's queue), or undefined. */
  readonly from: string | undefined;
  readonly body: Buffer;
  readonly routingKey: string;
  readonly messageId: string | undefined;
  readonly correlationId: string | undefined;
  readonly contentType: string | undefined;
  readonly type: string | undefined;
  readonly appId: string | undefined;
  readonly headers: FieldTable;
  readonly redelivered: boolean;
  /** Earlier failed deliveries as the broker counts them (quorum queues), 0 when unknown. */
  readonly deliveryCount: number;
  /** The transport's own message object (an AMQP Message), for applications that need it. */
  readonly raw: unknown;
  ack(): void;
  /** Gives the message back for another attempt. */
  retry(): void;
  /**
   * Moves the message to the dead-letter queue with `reason` (and its source) in headers, then acks it; the
   * promise settles once the dead-letter copy is safe.
   */
  deadLetter(reason: string, code?: string): Promise<void>;
}

export interface Transport {
  readonly name: string;
  /** Declares or checks the topology, then delivers every incoming message to `onMessage`, one at a time per prefetch slot. */
  start(onMessage: (message: Incoming) => Promise<void>): Promise<void>;
  send(message: Outgoing): Promise<void>;
  /** Stops taking new messages; those already delivered can still be settled. */
  stopConsuming(): Promise<void>;
  close(): Promise<void>;
}
