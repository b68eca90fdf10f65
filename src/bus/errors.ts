/**
 * BusError: what the bus itself refuses or gives up on, with a stable `code`. Failures of the layers below keep
 * their own classes (AmqpError, PublishError, DecodeError, EncodeError, CryptoError) and arrive unwrapped.
 */
import type { Message } from '../codec/index.js';
import { EbadgeError } from '../core/errors.js';

export type BusErrorCode =
  | 'CONFIG'
  | 'ACCESS_REFUSED'
  | 'NOT_STARTED'
  | 'CLOSED'
  | 'UNKNOWN_PEER'
  | 'TOPOLOGY'
  | 'TIMEOUT'
  | 'REJECTED'
  | 'INVALID_REPLY'
  | 'NO_KEY'
  | 'INVALID_MESSAGE';

export class BusError extends EbadgeError<BusErrorCode> {
  override name = 'BusError';
  /**
   * REJECTED: the peer's answer (a `response` with an error code; a `reject_activation` is a reply, not an error).
   * INVALID_REPLY: the message of another type that carried the request's ids (none when the reply was refused as
   * invalid: the error says why, and the peer got its error response).
   */
  declare readonly reply: Message | undefined;
  constructor(code: BusErrorCode, message: string, options?: { cause?: unknown; reply?: Message }) {
    super(code, message, options);
    this.reply = options?.reply;
  }
}

/**
 * Throws the BusError `code`: the check-and-throw of each refusal in src/bus, written once. The stack starts at the
 * caller, as a `throw new BusError` there would.
 */
export function fail(code: BusErrorCode, message: string, options?: { cause?: unknown; reply?: Message }): never {
  const err = new BusError(code, message, options);
  Error.captureStackTrace(err, fail);
  throw err;
}
