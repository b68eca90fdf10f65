/**
 * The base of every error this project raises. Programs branch on `code`, a stable value (a string, or for the
 * codec the eBADGE response code), never on the message text, which is a sentence for people and may change.
 * Each subclass sets its own `name` as a literal: the bundles are minified, so a name taken from the constructor
 * would print as a single letter.
 */
export class EbadgeError<Code extends string | number = string> extends Error {
  override name = 'EbadgeError';
  declare readonly code: Code;
  constructor(code: Code, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
}

/**
 * Throw a TypeError or a RangeError: the check-and-throw of a caller's bad argument, written once (a global's name
 * is not minified, so each `throw new TypeError` costs its full length). The stack starts at the caller.
 */
export function throwTypeError(message: string): never {
  const err = new TypeError(message);
  Error.captureStackTrace(err, throwTypeError);
  throw err;
}

export function throwRangeError(message: string): never {
  const err = new RangeError(message);
  Error.captureStackTrace(err, throwRangeError);
  throw err;
}
