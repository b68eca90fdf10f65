/**
 * The one error the codec throws for bad input. It carries what an eBADGE `response` needs to answer the sender:
 * the response code of the data model (§3.6: 400 bad request, 453 not recognized, 454 invalid data, 459 version,
 * 460 signal not supported ...), the JSON path of the offending field, and a plain sentence:
 *
 *   activate.from: time zone missing in "2015-06-01T10:00:00" (454)
 */
import { EbadgeError } from '../core/errors.js';

export type ResponseCode = 400 | 450 | 451 | 452 | 453 | 454 | 459 | 460 | 461 | 462 | 463 | 469;

export class DecodeError extends EbadgeError<ResponseCode> {
  override name = 'DecodeError';
  /** JSON path of the field, e.g. `report.values[3]`; the message type alone for whole-message problems. */
  declare readonly path: string;
  /** What was wrong, as a sentence without the path. */
  declare readonly reason: string;
  constructor(
    /** The eBADGE response code to answer with. */
    code: ResponseCode,
    path: string,
    reason: string,
  ) {
    super(code, `${path}: ${reason} (${code})`);
    this.path = path;
    this.reason = reason;
  }
}

/**
 * Throws the DecodeError of `path`: the check-and-throw of each refusal in the codec, written once. The stack starts
 * at the caller, as a `throw new DecodeError` there would.
 */
export function refuse(code: ResponseCode, path: string, reason: string): never {
  const err = new DecodeError(code, path, reason);
  Error.captureStackTrace(err, refuse);
  throw err;
}

/**
 * Refused on the way out: `invalid` when a value cannot be emitted (strict emit: NaN, a naive time, a missing
 * required field), `capacity` when the caller's buffer region is too small for the message.
 */
export class EncodeError extends EbadgeError<'invalid' | 'capacity'> {
  override name = 'EncodeError';
  declare readonly kind: 'invalid' | 'capacity';
  declare readonly path: string;
  declare readonly reason: string;
  constructor(kind: 'invalid' | 'capacity', path: string, reason: string) {
    super(kind, `${path}: ${reason}`);
    this.kind = kind;
    this.path = path;
    this.reason = reason;
  }
}

export { shown } from '../core/shown.js';
