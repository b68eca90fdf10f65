/**
 * Every refusal of the envelope and the keyring is a CryptoError with a stable `code`. The codes are for the
 * local log and for the bus (which acks and drops a DUPLICATE, dead-letters the rest); the peer is only ever
 * told "rejected" (docs/crypto.md, pitfall 14), and no message carries key material.
 */
import { EbadgeError } from '../core/errors.js';

export type CryptoErrorCode =
  // envelope, in the order the receiver checks
  | 'TOO_LARGE'
  | 'TOO_SHORT'
  | 'BAD_VERSION'
  | 'BAD_MODE'
  | 'UNKNOWN_SENDER'
  | 'NOT_FOR_US'
  | 'DECRYPT_FAILED'
  | 'BAD_SIGNATURE'
  | 'TYPE_NOT_ALLOWED'
  | 'DUPLICATE'
  | 'REPLAYED'
  | 'STALE'
  | 'FROM_THE_FUTURE'
  // sending
  | 'NO_KEY_FOR_PEER'
  | 'UNKNOWN_TYPE'
  // keys and keyrings
  | 'LOW_ORDER_KEY'
  | 'SMALL_ORDER_KEY'
  | 'BAD_KEY'
  | 'KEY_FILE_PERMISSIONS'
  | 'KEYRING_INVALID'
  | 'BACKEND_UNAVAILABLE';

export class CryptoError extends EbadgeError<CryptoErrorCode> {
  override name = 'CryptoError';
}

/**
 * Throws the CryptoError `code`: the check-and-throw of each refusal in src/crypto, written once. The stack starts
 * at the caller, as a `throw new CryptoError` there would.
 */
export function refuse(code: CryptoErrorCode, message: string): never {
  const err = new CryptoError(code, message);
  Error.captureStackTrace(err, refuse);
  throw err;
}
