/**
 * The node:crypto (OpenSSL) backend. Node has no XChaCha20-Poly1305, so it is built from two OpenSSL ciphers
 * (docs/crypto.md §5): HChaCha20 is read off one block of the `chacha20` keystream, whose 16-byte IV is exactly
 * state words 12-15, by subtracting the known input words; then `chacha20-poly1305` runs with that subkey and the
 * nonce 0x00000000 ‖ nonce[16..24].
 */
import * as crypto from 'node:crypto';
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

const ED_PKCS8 = Buffer.from('302e020100300506032b657004220420', 'hex');
const ED_SPKI = Buffer.from('302a300506032b6570032100', 'hex');
const X_PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const X_SPKI = Buffer.from('302a300506032b656e032100', 'hex');
const ZERO_BLOCK = Buffer.alloc(64);
/** "expand 32-byte k", the ChaCha constants, as little-endian words. */
const SIGMA = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574];

interface NodeKey {
  readonly backend: 'node';
  readonly publicKey: Uint8Array;
  readonly key: crypto.KeyObject;
}

const rawPublic = (key: crypto.KeyObject): Uint8Array =>
  new Uint8Array(key.export({ format: 'der', type: 'spki' }).subarray(12));

/** Imports a raw 32-byte private key once (OpenSSL key imports are slow); the handle carries its public key. */
function importPrivate(pkcs8: Buffer, raw: Uint8Array, what: string): NodeKey {
  checkLength(raw, 32, what);
  const key = crypto.createPrivateKey({ key: Buffer.concat([pkcs8, raw]), format: 'der', type: 'pkcs8' });
  return { backend: 'node', publicKey: rawPublic(crypto.createPublicKey(key)), key };
}

function importPublic(spki: Buffer, raw: Uint8Array, what: string): NodeKey {
  checkLength(raw, 32, what);
  const key = crypto.createPublicKey({ key: Buffer.concat([spki, raw]), format: 'der', type: 'spki' });
  return { backend: 'node', publicKey: new Uint8Array(raw), key };
}

/** True when this Node's OpenSSL has everything the envelope needs. */
export function nodeCryptoAvailable(): boolean {
  try {
    const ciphers = crypto.getCiphers();
    if (!ciphers.includes('chacha20') || !ciphers.includes('chacha20-poly1305')) return false;
    crypto.generateKeyPairSync('ed25519');
    crypto.generateKeyPairSync('x25519');
    return true;
  } catch {
    return false;
  }
}

/** HChaCha20(key, 16-byte input): the XChaCha subkey. */
export function hchacha20(key: Uint8Array, input: Uint8Array): Buffer {
  const c = crypto.createCipheriv('chacha20', key, input);
  const ks = c.update(ZERO_BLOCK);
  const out = Buffer.allocUnsafe(32);
  for (let i = 0; i < 4; i++) {
    out.writeUInt32LE((ks.readUInt32LE(i * 4) - (SIGMA[i] as number)) >>> 0, i * 4);
    out.writeUInt32LE((ks.readUInt32LE(48 + i * 4) - readLE(input, i * 4)) >>> 0, 16 + i * 4);
  }
  return out;
}

function readLE(b: Uint8Array, at: number): number {
  return (
    ((b[at] as number) |
      ((b[at + 1] as number) << 8) |
      ((b[at + 2] as number) << 16) |
      ((b[at + 3] as number) << 24)) >>>
    0
  );
}

function innerNonce(nonce: Uint8Array): Buffer {
  const n = Buffer.alloc(12);
  n.set(nonce.subarray(16, 24), 4);
  return n;
}

export const nodeBackend: CryptoBackend = {
  name: 'node',

  signingKey(seed): SigningKey {
    return importPrivate(ED_PKCS8, seed, 'an Ed25519 seed');
  },

  verifyKey(publicKey): VerifyKey {
    checkLength(publicKey, 32, 'an Ed25519 public key');
    try {
      return importPublic(ED_SPKI, publicKey, 'an Ed25519 public key');
    } catch (err) {
      throw new CryptoError('BAD_KEY', 'the Ed25519 public key is not a curve point', { cause: err });
    }
  },

  sign(key, message) {
    return new Uint8Array(crypto.sign(null, message, (own('node', key, 'the signing key') as NodeKey).key));
  },

  verify(key, message, signature) {
    if (signature.length !== 64) return false;
    return crypto.verify(null, message, (own('node', key, 'the verify key') as NodeKey).key, signature);
  },

  dhSecret(secret): DhSecret {
    return importPrivate(X_PKCS8, secret, 'an X25519 secret');
  },

  dhPublic(publicKey): DhPublic {
    return importPublic(X_SPKI, publicKey, 'an X25519 public key');
  },

  dh(secret, peer) {
    try {
      return new Uint8Array(
        crypto.diffieHellman({
          privateKey: (own('node', secret, 'the X25519 secret') as NodeKey).key,
          publicKey: (own('node', peer, 'the X25519 public key') as NodeKey).key,
        }),
      );
    } catch (err) {
      // OpenSSL refuses an all-zero shared secret: the peer key is of low order.
      throw new CryptoError('LOW_ORDER_KEY', 'the X25519 public key is of low order', { cause: err });
    }
  },

  hkdf(ikm, salt, info, length) {
    return new Uint8Array(crypto.hkdfSync('sha256', ikm, salt, info, length));
  },

  seal(key, nonce, aad, plaintext) {
    const out = new Uint8Array(plaintext.length + 16);
    nodeBackend.sealInto(key, nonce, aad, plaintext, out);
    return out;
  },

  sealInto(key, nonce, aad, plaintext, output) {
    checkKeyAndNonce(key, nonce);
    checkLength(output, plaintext.length + 16, 'the output of XChaCha20-Poly1305');
    const c = crypto.createCipheriv('chacha20-poly1305', hchacha20(key, nonce.subarray(0, 16)), innerNonce(nonce), {
      authTagLength: 16,
    });
    c.setAAD(aad, { plaintextLength: plaintext.length });
    // Node's Cipher has no update-into (node 18 to 24): OpenSSL writes the ciphertext into a Buffer of its own, and
    // this copy into `output` is the one that costs. Read before it is overwritten, so `output` may be `plaintext`.
    output.set(c.update(plaintext), 0);
    c.final();
    output.set(c.getAuthTag(), plaintext.length);
  },

  open(key, nonce, aad, sealed) {
    checkKeyAndNonce(key, nonce);
    if (sealed.length < 16) return null;
    const d = crypto.createDecipheriv('chacha20-poly1305', hchacha20(key, nonce.subarray(0, 16)), innerNonce(nonce), {
      authTagLength: 16,
    });
    d.setAAD(aad, { plaintextLength: sealed.length - 16 });
    d.setAuthTag(sealed.subarray(sealed.length - 16));
    const out = d.update(sealed.subarray(0, sealed.length - 16));
    try {
      d.final();
    } catch {
      return null;
    }
    return new Uint8Array(out.buffer, out.byteOffset, out.length);
  },
};
