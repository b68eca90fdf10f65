/**
 * The primitives the envelope needs, behind one interface with two implementations (docs/crypto.md §5, decision):
 * node:crypto (OpenSSL; the default, 7-50x faster for curve maths on the Pi) and noble (audited pure JS; the
 * reference and the fallback where the running Node lacks Ed25519, X25519 or ChaCha20-Poly1305).
 *
 * Keys are imported once into opaque handles: an OpenSSL key import costs 0.4 ms on x86 and 16 ms on an ARMv6,
 * more than the signature itself, so the keyring imports at load and the envelope only ever passes handles.
 * A handle belongs to the backend that made it.
 */
import { throwRangeError, throwTypeError } from '../core/errors.js';

export type BackendName = 'node' | 'noble';

/** An Ed25519 private key (from its 32-byte seed: never from a separate secret and public key, pitfall 11). */
export interface SigningKey {
  readonly backend: BackendName;
  readonly publicKey: Uint8Array;
}

export interface VerifyKey {
  readonly backend: BackendName;
  readonly publicKey: Uint8Array;
}

/** An X25519 secret (32 bytes, clamped by the primitive) with its public key. */
export interface DhSecret {
  readonly backend: BackendName;
  readonly publicKey: Uint8Array;
}

export interface DhPublic {
  readonly backend: BackendName;
  readonly publicKey: Uint8Array;
}

export interface CryptoBackend {
  readonly name: BackendName;
  signingKey(seed: Uint8Array): SigningKey;
  verifyKey(publicKey: Uint8Array): VerifyKey;
  /** Ed25519 (RFC 8032, pure): 64 bytes. */
  sign(key: SigningKey, message: Uint8Array): Uint8Array;
  /**
   * Ed25519 verification. Neither backend is relied upon to refuse small-order public keys (OpenSSL accepts a
   * forgery under one): the keyring refuses them at load, so every VerifyKey in use has passed that check.
   */
  verify(key: VerifyKey, message: Uint8Array, signature: Uint8Array): boolean;
  dhSecret(secret: Uint8Array): DhSecret;
  dhPublic(publicKey: Uint8Array): DhPublic;
  /** X25519; throws CryptoError LOW_ORDER_KEY when the result is all zero (a low-order peer key). */
  dh(secret: DhSecret, peer: DhPublic): Uint8Array;
  /** HKDF-SHA256 (RFC 5869). */
  hkdf(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Uint8Array;
  /** XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03): ciphertext followed by the 16-byte tag. */
  seal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array;
  /**
   * The same into `output` (plaintext.length + 16 bytes), which may start at the plaintext itself: encrypted in
   * place then, and the tag written after it.
   */
  sealInto(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, output: Uint8Array): void;
  /** The plaintext, or null when the tag does not match. */
  open(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Uint8Array | null;
}

export const KEY_BYTES = 32;
export const NONCE_BYTES = 24;
export const TAG_BYTES = 16;
export const SIGNATURE_BYTES = 64;

/** Checks a handle's origin: a key imported by one backend cannot be used by the other. */
export function own<K extends { readonly backend: BackendName }>(backend: BackendName, key: K, what: string): K {
  if (key.backend !== backend) throwTypeError(`${what} was imported by the ${key.backend} backend, not ${backend}`);
  return key;
}

export function checkLength(bytes: Uint8Array, length: number, what: string): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) {
    throwRangeError(
      `${what} must be ${length} bytes, got ${bytes instanceof Uint8Array ? bytes.length : typeof bytes}`,
    );
  }
}

/** An XChaCha20-Poly1305 key and nonce, checked alike by both backends. */
export function checkKeyAndNonce(key: Uint8Array, nonce: Uint8Array): void {
  checkLength(key, KEY_BYTES, 'an XChaCha20-Poly1305 key');
  checkLength(nonce, NONCE_BYTES, 'an XChaCha20-Poly1305 nonce');
}
