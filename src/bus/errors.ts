/**
 * BusError: what the bus itself refuses or gives up on, with a stable `code`. Failures of the layers below keep
 * their own classes (AmqpError, PublishError, DecodeError, EncodeError, CryptoError) and arrive unwrapped.
 */
import type { Message } from '../codec/index.js';

export type BusErrorCode =
  | 'CONFIG'
  | 'NOT_STARTED'
  | 'CLOSED'
  | 'UNKNOWN_PEER'
  | 'TOPOLOGY'
  | 'TIMEOUT'
  | 'REJECTED'
  | 'NO_KEY'
  | 'INVALID_MESSAGE';

export class BusError extends Error {
  override name = 'BusError';
  readonly code: BusErrorCode;
  /** REJECTED: the peer's answer (a `response` with an error code; a `reject_activation` is a reply, not an error). */
  readonly reply: Message | undefined;
  constructor(code: BusErrorCode, message: string, options?: { cause?: unknown; reply?: Message }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.reply = options?.reply;
  }
}
