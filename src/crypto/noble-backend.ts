/**
 * The noble backend: @noble/ed25519 for signatures (2x faster signing than curves' ed25519, which matters on a hub
 * that signs every message), @noble/curves' Montgomery ladder for X25519, @noble/ciphers for XChaCha20-Poly1305: the
 * three primitives a Node may lack (its OpenSSL built without them). SHA-512 and HKDF-SHA256 come from node:crypto,
 * which every Node since 15 has whatever its OpenSSL: @noble/hashes would add 14 KB to the hub's bundle and be 24x
 * slower on the SHA-512 of every signature. Node 18 has no globalThis.crypto, so noble's own randomness is never
 * used: every secret is generated with node:crypto and handed in.
 */

import { createHash, hkdfSync } from 'node:crypto';
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { pow } from '@noble/curves/abstract/modular.js';
import { montgomery } from '@noble/curves/abstract/montgomery.js';
import * as ed from '@noble/ed25519';
import {
  type CryptoBackend,
  checkKeyAndNonce,
  checkLength,
  type DhPublic,
  type DhSecret,
  own,
  type SigningKey,
  type VerifyKey,
} from './backend.js';
import { CryptoError } from './errors.js';

// The synchronous API needs a SHA-512; without this @noble/ed25519 v3 only offers the WebCrypto-based async one.
ed.hashes.sha512 = (message: Uint8Array) => new Uint8Array(createHash('sha512').update(message).digest());

/**
 * X25519 (RFC 7748) from curves' audited ladder with the curve's parameters. Not `x25519` from
 * '@noble/curves/ed25519.js': its faster fixed-base path builds a whole Edwards curve (edwards.js, curve.js and most
 * of modular.js: 18 KB of the hub's bundle, and 4 ms of start-up for its tables). Here the public key goes through
 * the same ladder as a shared secret; a hub derives one public key per load.
 */
const P = 2n ** 255n - 19n;
const x25519 = montgomery({
  P,
  type: 'x25519',
  powPminus2: (x) => pow(x, P - 2n, P),
  // RFC 7748 §5 decodeScalar25519: clear the 3 low bits, clear bit 255, set bit 254.
  adjustScalarBytes: (b: Uint8Array) => {
    b[0] = (b[0] as number) & 248;
    b[31] = ((b[31] as number) & 127) | 64;
    return b;
  },
});

interface NobleKey {
  readonly backend: 'noble';
  readonly publicKey: Uint8Array;
  readonly raw: Uint8Array;
}

export const nobleBackend: CryptoBackend = {
  name: 'noble',

  signingKey(seed): SigningKey {
    checkLength(seed, 32, 'an Ed25519 seed');
    const raw = new Uint8Array(seed);
    return { backend: 'noble', publicKey: ed.getPublicKey(raw), raw } as NobleKey;
  },

  verifyKey(publicKey): VerifyKey {
    checkLength(publicKey, 32, 'an Ed25519 public key');
    try {
      ed.Point.fromBytes(publicKey, false);
    } catch (err) {
      throw new CryptoError('BAD_KEY', 'the Ed25519 public key is not a curve point', { cause: err });
    }
    return { backend: 'noble', publicKey: new Uint8Array(publicKey), raw: new Uint8Array(publicKey) } as NobleKey;
  },

  sign(key, message) {
    return ed.sign(message, (own('noble', key, 'the signing key') as NobleKey).raw);
  },

  verify(key, message, signature) {
    if (signature.length !== 64) return false;
    try {
      // zip215: false is RFC 8032 / FIPS 186-5 strict, so noble is never the more permissive backend.
      return ed.verify(signature, message, (own('noble', key, 'the verify key') as NobleKey).raw, { zip215: false });
    } catch {
      return false;
    }
  },

  dhSecret(secret): DhSecret {
    checkLength(secret, 32, 'an X25519 secret');
    const raw = new Uint8Array(secret);
    return { backend: 'noble', publicKey: x25519.getPublicKey(raw), raw } as NobleKey;
  },

  dhPublic(publicKey): DhPublic {
    checkLength(publicKey, 32, 'an X25519 public key');
    return { backend: 'noble', publicKey: new Uint8Array(publicKey), raw: new Uint8Array(publicKey) } as NobleKey;
  },

  dh(secret, peer) {
    try {
      return x25519.getSharedSecret(
        (own('noble', secret, 'the X25519 secret') as NobleKey).raw,
        (own('noble', peer, 'the X25519 public key') as NobleKey).raw,
      );
    } catch (err) {
      throw new CryptoError('LOW_ORDER_KEY', 'the X25519 public key is of low order', { cause: err });
    }
  },

  hkdf(ikm, salt, info, length) {
    return new Uint8Array(hkdfSync('sha256', ikm, salt, info, length));
  },

  seal(key, nonce, aad, plaintext) {
    checkKeyAndNonce(key, nonce);
    return xchacha20poly1305(key, nonce, aad).encrypt(plaintext);
  },

  sealInto(key, nonce, aad, plaintext, output) {
    checkKeyAndNonce(key, nonce);
    checkLength(output, plaintext.length + 16, 'the output of XChaCha20-Poly1305');
    // In place when output starts at the plaintext (noble's encrypt first copies the plaintext into output, onto
    // itself then), the keystream XORed over it, the tag after it.
    xchacha20poly1305(key, nonce, aad).encrypt(plaintext, output);
  },

  open(key, nonce, aad, sealed) {
    checkKeyAndNonce(key, nonce);
    if (sealed.length < 16) return null;
    try {
      return xchacha20poly1305(key, nonce, aad).decrypt(sealed);
    } catch {
      return null;
    }
  },
};
