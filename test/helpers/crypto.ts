/** Assertions for CryptoError refusals: the code must match, and the error is returned for further checks. */
import * as assert from 'uvu/assert';
import { CryptoError, type CryptoErrorCode } from '../../src/crypto/index.js';

function check(err: unknown, code: CryptoErrorCode, what: string): CryptoError {
  if (!(err instanceof CryptoError)) throw new Error(`${what}: expected a CryptoError ${code}, got ${String(err)}`);
  assert.is(err.code, code, `${what}: ${err.message}`);
  return err;
}

export function cryptoError(fn: () => unknown, code: CryptoErrorCode, what = 'refusal'): CryptoError {
  try {
    fn();
  } catch (err) {
    return check(err, code, what);
  }
  assert.unreachable(`${what}: expected a CryptoError ${code}, but it was accepted`);
  throw new Error('unreachable');
}

export async function cryptoErrorAsync(
  p: Promise<unknown> | (() => Promise<unknown>),
  code: CryptoErrorCode,
  what = 'refusal',
): Promise<CryptoError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    return check(err, code, what);
  }
  assert.unreachable(`${what}: expected a CryptoError ${code}, but it was accepted`);
  throw new Error('unreachable');
}
