/**
 * The primitives on both backends: the published vectors (RFC 8032, 8439, 7748, 5869, draft-irtf-cfrg-xchacha-03,
 * "Taming the many EdDSAs"), then the two backends against each other on 500 random cases per primitive, byte
 * for byte. Any disagreement between node:crypto and noble is a failing test.
 */

import * as crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  type CryptoBackend,
  CryptoError,
  checkIdentityKey,
  nobleBackend,
  nodeBackend,
} from '../../../src/crypto/index.js';
import { hchacha20 } from '../../../src/crypto/node-backend.js';
import { repoRoot } from '../../helpers/oracle.js';
import { Random } from '../../helpers/random.js';

type Vector = Record<string, string | number | boolean>;
const vectors = (name: string): Vector[] =>
  (JSON.parse(readFileSync(path.join(repoRoot(), `test/vectors/crypto/${name}.json`), 'utf8')) as { vectors: Vector[] })
    .vectors;
const hex = (s: unknown): Buffer => Buffer.from(s as string, 'hex');
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const BACKENDS: CryptoBackend[] = [nodeBackend, nobleBackend];

const rfc = suite('published vectors, on both backends');

rfc('RFC 8032 §7.1: public keys and signatures, and a flipped bit fails', () => {
  const list = vectors('rfc8032-ed25519');
  assert.is(list.length, 5);
  for (const b of BACKENDS) {
    for (const v of list) {
      const key = b.signingKey(hex(v['secretKey']));
      assert.is(toHex(key.publicKey), v['publicKey'], `${b.name} ${String(v['name'])}`);
      const sig = b.sign(key, hex(v['message']));
      assert.is(toHex(sig), v['signature'], `${b.name} ${String(v['name'])}`);
      const vk = b.verifyKey(hex(v['publicKey']));
      assert.ok(b.verify(vk, hex(v['message']), sig));
      const bad = Buffer.from(sig);
      bad[10] = (bad[10] as number) ^ 1;
      assert.not.ok(b.verify(vk, hex(v['message']), bad), `${b.name}: a flipped signature bit`);
      assert.not.ok(
        b.verify(vk, Buffer.concat([hex(v['message']), Buffer.from([0])]), sig),
        `${b.name}: another message`,
      );
    }
  }
});

rfc('RFC 7748 §5.2 and §6.1: scalar multiplications and the Diffie-Hellman example', () => {
  for (const b of BACKENDS) {
    for (const v of vectors('rfc7748-x25519')) {
      if (v['type'] === 'scalarmult') {
        assert.is(
          toHex(b.dh(b.dhSecret(hex(v['scalar'])), b.dhPublic(hex(v['u'])))),
          v['output'],
          `${b.name} ${String(v['name'])}`,
        );
      } else {
        const alice = b.dhSecret(hex(v['alicePrivate']));
        const bob = b.dhSecret(hex(v['bobPrivate']));
        assert.is(toHex(alice.publicKey), v['alicePublic']);
        assert.is(toHex(bob.publicKey), v['bobPublic']);
        assert.is(toHex(b.dh(alice, b.dhPublic(bob.publicKey))), v['sharedSecret']);
        assert.is(toHex(b.dh(bob, b.dhPublic(alice.publicKey))), v['sharedSecret']);
      }
    }
  }
});

rfc('RFC 7748: low-order public keys give all zeros, and both backends refuse them', () => {
  const lowOrder = [
    '00'.repeat(32),
    `01${'00'.repeat(31)}`,
    'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
    '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
    `ec${'ff'.repeat(30)}7f`,
  ];
  for (const b of BACKENDS) {
    const me = b.dhSecret(crypto.randomBytes(32));
    for (const u of lowOrder) {
      assert.throws(
        () => b.dh(me, b.dhPublic(hex(u))),
        (e: CryptoError) => e instanceof CryptoError && e.code === 'LOW_ORDER_KEY',
        `${b.name} ${u}`,
      );
    }
  }
});

rfc('RFC 5869 A.1-A.3: HKDF-SHA256', () => {
  for (const b of BACKENDS) {
    for (const v of vectors('rfc5869-hkdf')) {
      assert.is(
        toHex(b.hkdf(hex(v['ikm']), hex(v['salt']), hex(v['info']), v['L'] as number)),
        v['okm'],
        `${b.name} ${String(v['name'])}`,
      );
    }
  }
});

rfc('RFC 8439 §2.8.2 and A.5: ChaCha20-Poly1305, the AEAD under XChaCha on each side', () => {
  for (const v of vectors('rfc8439-aead')) {
    const c = crypto.createCipheriv('chacha20-poly1305', hex(v['key']), hex(v['nonce']), { authTagLength: 16 });
    c.setAAD(hex(v['aad']), { plaintextLength: hex(v['plaintext']).length });
    const ct = c.update(hex(v['plaintext']));
    c.final();
    assert.is(toHex(ct), v['ciphertext'], String(v['name']));
    assert.is(toHex(c.getAuthTag()), v['tag']);
    const sealed = chacha20poly1305(hex(v['key']), hex(v['nonce']), hex(v['aad'])).encrypt(hex(v['plaintext']));
    assert.is(toHex(sealed), `${String(v['ciphertext'])}${String(v['tag'])}`);
  }
});

rfc(
  'draft-irtf-cfrg-xchacha-03: HChaCha20 (§2.2.1) and XChaCha20-Poly1305 (§A.3.1); a flipped tag or AAD bit fails',
  () => {
    const [h, x] = vectors('xchacha') as [Vector, Vector];
    assert.is(toHex(hchacha20(hex(h['key']), hex(h['nonce']))), h['subkey']);
    for (const b of BACKENDS) {
      const sealed = b.seal(hex(x['key']), hex(x['nonce']), hex(x['aad']), hex(x['plaintext']));
      assert.is(toHex(sealed), `${String(x['ciphertext'])}${String(x['tag'])}`, b.name);
      assert.is(toHex(b.open(hex(x['key']), hex(x['nonce']), hex(x['aad']), sealed) as Uint8Array), x['plaintext']);
      const tag = Buffer.from(sealed);
      tag[tag.length - 1] = (tag[tag.length - 1] as number) ^ 0x80;
      assert.is(b.open(hex(x['key']), hex(x['nonce']), hex(x['aad']), tag), null, `${b.name}: a flipped tag bit`);
      const aad = hex(x['aad']);
      aad[0] = (aad[0] as number) ^ 1;
      assert.is(b.open(hex(x['key']), hex(x['nonce']), aad, sealed), null, `${b.name}: a flipped AAD bit`);
      assert.is(
        b.open(hex(x['key']), hex(x['nonce']), hex(x['aad']), sealed.subarray(0, 15)),
        null,
        `${b.name}: shorter than a tag`,
      );
    }
  },
);

rfc('Taming the many EdDSAs: a key the keyring accepts gets the same verdict from both backends', () => {
  const cases = vectors('ed25519-speccheck');
  assert.is(cases.length, 12);
  const reached: unknown[] = [];
  for (const c of cases) {
    let keyOk = true;
    try {
      checkIdentityKey(hex(c['pub_key']));
    } catch (err) {
      assert.instance(err, CryptoError);
      keyOk = false;
    }
    // Every case that OpenSSL and noble judge differently has a small-order, mixed-order or non-canonical key.
    if (c['node'] !== c['nobleStrict'])
      assert.not.ok(keyOk, `case ${String(c['index'])}: the backends disagree, so the key must be refused`);
    if (!keyOk) continue;
    reached.push(c['index']);
    const verdicts = BACKENDS.map((b) =>
      b.verify(b.verifyKey(hex(c['pub_key'])), hex(c['message']), hex(c['signature'])),
    );
    assert.equal(verdicts, [c['expected'], c['expected']], `case ${String(c['index'])}: ${String(c['description'])}`);
  }
  // Only the two cases with a prime-order key reach the verifiers (S >= L), and both backends refuse them.
  assert.equal(reached, [6, 7]);
});

rfc.run();

const cross = suite('node:crypto and noble agree, 500 random cases per primitive');
const N = 500;

cross("Ed25519: identical public keys and signatures, each verifies the other's", () => {
  const r = new Random(8032);
  for (let i = 0; i < N; i++) {
    const seed = crypto.randomBytes(32);
    const msg = crypto.randomBytes(r.int(2000));
    const [a, b] = [nodeBackend.signingKey(seed), nobleBackend.signingKey(seed)];
    assert.is(toHex(a.publicKey), toHex(b.publicKey));
    const [sa, sb] = [nodeBackend.sign(a, msg), nobleBackend.sign(b, msg)];
    assert.is(toHex(sa), toHex(sb));
    assert.ok(nobleBackend.verify(nobleBackend.verifyKey(a.publicKey), msg, sa));
    assert.ok(nodeBackend.verify(nodeBackend.verifyKey(b.publicKey), msg, sb));
  }
});

cross('X25519: identical public keys and shared secrets', () => {
  for (let i = 0; i < N; i++) {
    const [x, y] = [crypto.randomBytes(32), crypto.randomBytes(32)];
    const [nx, bx] = [nodeBackend.dhSecret(x), nobleBackend.dhSecret(x)];
    assert.is(toHex(nx.publicKey), toHex(bx.publicKey));
    const ny = nodeBackend.dhSecret(y);
    const s1 = nodeBackend.dh(nx, nodeBackend.dhPublic(ny.publicKey));
    const s2 = nobleBackend.dh(nobleBackend.dhSecret(y), nobleBackend.dhPublic(bx.publicKey));
    assert.is(toHex(s1), toHex(s2));
  }
});

cross('HKDF-SHA256: identical output for random lengths', () => {
  const r = new Random(5869);
  for (let i = 0; i < N; i++) {
    const [ikm, salt, info] = [
      crypto.randomBytes(r.int(80)),
      crypto.randomBytes(r.int(80)),
      crypto.randomBytes(r.int(80)),
    ];
    const len = 1 + r.int(100);
    assert.is(toHex(nodeBackend.hkdf(ikm, salt, info, len)), toHex(nobleBackend.hkdf(ikm, salt, info, len)));
  }
});

cross("XChaCha20-Poly1305: identical ciphertexts, each opens the other's, HChaCha20 equal to noble's", () => {
  const r = new Random(439);
  for (let i = 0; i < N; i++) {
    const [key, nonce] = [crypto.randomBytes(32), crypto.randomBytes(24)];
    const aad = crypto.randomBytes(r.int(100));
    const msg = crypto.randomBytes(r.int(4096));
    const a = nodeBackend.seal(key, nonce, aad, msg);
    const b = nobleBackend.seal(key, nonce, aad, msg);
    assert.is(toHex(a), toHex(b));
    assert.is(toHex(nodeBackend.open(key, nonce, aad, b) as Uint8Array), toHex(msg));
    assert.is(toHex(nobleBackend.open(key, nonce, aad, a) as Uint8Array), toHex(msg));
  }
});

cross.run();
