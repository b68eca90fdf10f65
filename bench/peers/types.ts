/**
 * The one interface every contender (ours, amqplib, @cloudamqp/amqp-client) is driven through, so each scenario is
 * written once. An adapter translates these calls into the client's own idiomatic API and nothing more: no extra
 * batching, no extra buffering, no tuning beyond what the scenario names (prefetch, TCP_NODELAY).
 */

export type ContenderName = 'ours' | 'amqplib' | 'amqp-client';

export const CONTENDER_NAMES: readonly ContenderName[] = ['ours', 'amqplib', 'amqp-client'];

export interface ConnectSpec {
  /** Always 127.0.0.1; the port is 5672, or the counting proxy's port in the wire-bytes scenario. */
  port: number;
  /** Force TCP_NODELAY on (ours always has it on; for the peers this is not their default). */
  noDelay: boolean;
}

export interface Received {
  body: Buffer;
  deliveryMode: number | undefined;
}

export interface Contender {
  readonly name: ContenderName;
  /** Name and version, for the report. */
  readonly label: string;
  /** True when TCP_NODELAY is on without being asked. */
  readonly noDelayByDefault: boolean;
  connect(spec: ConnectSpec): Promise<Conn>;
}

export interface Conn {
  /** A channel; `confirm` puts it in publisher-confirm mode. */
  channel(confirm: boolean): Promise<Chan>;
  close(): Promise<void>;
}

export interface Chan {
  /** Declares a durable, non-exclusive, non-auto-delete queue (idempotent). */
  declare(queue: string): Promise<void>;
  /** queue.declare passive: the ready message count. */
  messageCount(queue: string): Promise<number>;
  deleteQueue(queue: string): Promise<void>;
  /** basic.get with auto-ack; null when the queue is empty. */
  get(queue: string): Promise<Received | null>;
  /**
   * Publishes `n` messages to the default exchange with routing key `queue`, keeping as many in flight as the
   * client's own mechanism allows (for amqplib: wait for 'drain' when publish returns false). Resolves when every
   * publish was confirmed (confirm channel) or accepted by the client (plain channel). Rejects on any failure.
   */
  publishAll(queue: string, body: (i: number) => Buffer, n: number, persistent: boolean): Promise<void>;
  /** One publish, not awaited (the latency scenario waits for the delivery instead). Failures are recorded. */
  publishOne(queue: string, body: Buffer, persistent: boolean): void;
  /** Starts a consumer with manual ack; the adapter acks each message right after `onMessage` returns. */
  consume(queue: string, prefetch: number, onMessage: (m: Received) => void): Promise<{ cancel(): Promise<void> }>;
  /** Asynchronous failures seen so far (channel errors, rejected publishes, failed acks). */
  readonly errors: string[];
  close(): Promise<void>;
}

/** One line: name, code when the error has one, message. */
export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  return `${err.name}${typeof code === 'string' || typeof code === 'number' ? ` [${code}]` : ''}: ${err.message.split('\n')[0]}`;
}
