/**
 * Errors form a small hierarchy by severity. Tests and applications branch on `code` (a stable string), never on
 * the message text.
 *
 *   AmqpError                   anything this client raises; `code` says what
 *   ├─ FrameError               the peer sent bytes that violate the protocol (we close the connection with `replyCode`)
 *   ├─ ArgumentError            an argument of ours cannot be encoded (checked before anything is written)
 *   ├─ ChannelError             the broker closed one channel (soft error: 403, 404, 405, 406 ...)
 *   ├─ ConnectionError          the connection is gone (broker close, socket error, heartbeat timeout, our close)
 *   │  └─ AuthenticationError   the broker refused the credentials (never retried in a hot loop)
 *   └─ PublishError             a publish did not reach the broker's custody (nacked, returned, closed, timeout ...)
 */
import { EbadgeError } from '../core/errors.js';
import { METHOD_BY_ID, REPLY_CODES } from './spec.js';

/**
 * The words of every refusal after our own close() (`the channel was closed by the application`, `the connection
 * ...`), written once.
 */
export const BY_APP = 'was closed by the application';

/** `code` is stable and machine-readable, e.g. `NOT_FOUND`, `FRAME_ERROR`, `HEARTBEAT_TIMEOUT`, `ALREADY_SETTLED`. */
export class AmqpError extends EbadgeError {
  override name = 'AmqpError';
}

/** Name of a reply code from the spec (`404` -> `NOT_FOUND`), or `REPLY_<n>` for codes the spec does not list. */
export function replyCodeName(code: number): string {
  return REPLY_CODES.get(code)?.[0] ?? `REPLY_${code}`;
}

/** Malformed, truncated or oversized input from the peer. `replyCode` is what we send in connection.close. */
export class FrameError extends AmqpError {
  override name = 'FrameError';
  declare readonly replyCode: number;
  constructor(message: string, replyCode = 501) {
    super(replyCodeName(replyCode), message);
    this.replyCode = replyCode;
  }
}

/** A frame that has no place on channel `id` now: `channel <id>: <text>`, 505 UNEXPECTED_FRAME unless told otherwise. */
export const channelFrameError = (id: number, text: string, replyCode = 505): FrameError =>
  new FrameError(`channel ${id}: ${text}`, replyCode);

/** Fields of a channel.close or connection.close: who failed, with which code, in reply to which method. */
export interface CloseReason {
  replyCode: number;
  replyText: string;
  classId: number;
  methodId: number;
}

/** The broker closed a channel (soft error). Every pending call and unconfirmed publish of that channel fails with it. */
export class ChannelError extends AmqpError {
  override name = 'ChannelError';
  declare readonly replyCode: number;
  declare readonly replyText: string;
  declare readonly classId: number;
  declare readonly methodId: number;
  declare readonly channel: number;
  constructor(channel: number, reason: CloseReason, code = replyCodeName(reason.replyCode)) {
    super(code, `channel ${channel} closed: ${reason.replyCode} ${reason.replyText}${failedMethod(reason)}`);
    this.replyCode = reason.replyCode;
    this.replyText = reason.replyText;
    this.classId = reason.classId;
    this.methodId = reason.methodId;
    this.channel = channel;
  }
}

/** The connection is closed; `code` tells why (a reply-code name, or SOCKET_CLOSED, HEARTBEAT_TIMEOUT, CLOSED ...). */
export class ConnectionError extends AmqpError {
  override name = 'ConnectionError';
  declare readonly replyCode: number;
  declare readonly replyText: string;
  declare readonly classId: number;
  declare readonly methodId: number;
  constructor(code: string, message: string, reason?: Partial<CloseReason>, options?: { cause?: unknown }) {
    super(code, message + failedMethod(reason), options);
    this.replyCode = reason?.replyCode ?? 0;
    this.replyText = reason?.replyText ?? '';
    this.classId = reason?.classId ?? 0;
    this.methodId = reason?.methodId ?? 0;
  }
}

/** The broker refused our credentials (ACCESS_REFUSED during the handshake, or a close right after start-ok). */
export class AuthenticationError extends ConnectionError {
  override name = 'AuthenticationError';
}

/** Why a publish failed; see PublishError. */
export type PublishFailure =
  | 'nacked' // the broker could not take responsibility (basic.nack, e.g. x-overflow reject-publish)
  | 'returned' // mandatory and unroutable (basic.return before the ack)
  | 'closed' // the channel or connection went away before the confirm: the outcome is unknown
  | 'timeout' // no confirm before the deadline: the outcome is unknown
  | 'refused' // the broker closed the channel over it (403 a permission, 404 no such exchange): never sent again
  | 'buffer-full'; // the write buffer and the wait queue are full and the caller asked not to wait

/** A publish that did not end in the broker's custody. `code` is the failure kind in upper case. */
export class PublishError extends AmqpError {
  override name = 'PublishError';
  declare readonly failure: PublishFailure;
  /** For `returned`: the broker's reply code and text (312 NO_ROUTE ...). */
  declare readonly replyCode: number;
  declare readonly replyText: string;
  constructor(
    failure: PublishFailure,
    message: string,
    options?: { cause?: unknown; replyCode?: number; replyText?: string },
  ) {
    super(failure.toUpperCase().replace('-', '_'), message, options);
    this.failure = failure;
    this.replyCode = options?.replyCode ?? 0;
    this.replyText = options?.replyText ?? '';
  }
}

function failedMethod(reason?: Partial<CloseReason>): string {
  if (reason?.classId === undefined || reason.classId === 0) return '';
  const id = (reason.classId << 16) | (reason.methodId ?? 0);
  return ` (in reply to ${METHOD_BY_ID.get(id)?.name ?? `class ${reason.classId} method ${reason.methodId ?? 0}`})`;
}
