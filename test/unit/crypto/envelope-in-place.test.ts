/**
 * Sealer.envelope (src/crypto/envelope.ts), the envelope written where it is sent from: in every mode and on both
 * backends it writes seal()'s bytes at any offset, nothing outside its room (a SIGNED envelope puts back the 15 bytes
 * it borrows before itself), the same bytes when written again, from a payload given as bytes or encoded in place
 * by the codec's bodyWriter (which may ask for more room); node:crypto and noble write the same envelope; the
 * receiver opens it.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bodyWriter, EbTime, encode, type Message } from '../../../src/codec/index.js';
import { MORE_ROOM } from '../../../src/core/body-writer.js';
import {
  type CryptoBackend,
  type Destination,
  generateIdentity,
  Keyring,
  nobleBackend,
  nodeBackend,
  type PrivateKeyFile,
  Sealer,
} from '../../../src/crypto/index.js';

const T0 = Date.parse('2026-11-26T10:00:00Z');
const GROUP_KEY = Buffer.alloc(32, 9).toString('base64url');
const notBefore = new Date(T0 - 3_600_000).toISOString();
const ids = {
  hub: generateIdentity('hub-1', nodeBackend, T0 - 3_600_000),
  vpp: generateIdentity('vpp-1', nodeBackend, T0 - 3_600_000),
};

function sealer(backend: CryptoBackend, me: 'hub' | 'vpp'): Sealer {
  const other = me === 'hub' ? 'vpp' : 'hub';
  const p = ids[other].publicEntry;
  const keyring = new Keyring(backend, {
    keyring: {
      format: 'heh-keyring/1',
      peers: {
        [other === 'hub' ? 'hub-1' : 'vpp-1']: {
          ed25519: p.ed25519,
          x25519: p.x25519.map(({ pub, notBefore: nb }) => ({ pub, notBefore: nb })),
          maySend: ['report'],
          mayReceive: ['report'],
        },
      },
    },
    privateKey: {
      ...(ids[me].privateKey as PrivateKeyFile),
      groups: { 'prices.north': [{ key: GROUP_KEY, notBefore }] },
    },
  });
  return new Sealer({
    keyring,
    backend,
    sequence: { take: async () => 77n },
    replay: { check: () => 'new', accept: () => undefined, persist: async () => undefined },
    now: () => T0,
    random: (nonce) => nonce.fill(5),
  });
}

const report: Message<'report'> = {
  msg: 'report',
  from: EbTime.fromEpochMs(T0 - 3_600_000),
  to: EbTime.fromEpochMs(T0),
  resolution: 900,
  values: { 'meter.p': [1.5, 2.25, 3, 4.125] },
};
const payload = encode(report);
const MODES: [string, Destination][] = [
  ['pair', { peer: 'vpp-1' }],
  ['group', { group: 'prices.north' }],
  ['signed', { topic: 'prices.north' }],
];

const t = suite('envelope written in place');

t("every mode, both backends, any offset: seal()'s bytes, nothing written outside, the same bytes again", async () => {
  const seen = new Map<string, Buffer>();
  for (const backend of [nodeBackend, nobleBackend]) {
    const s = sealer(backend, 'hub');
    for (const [mode, to] of MODES) {
      const sealed = await s.seal(to, 'report', payload);
      const other = seen.get(mode);
      if (other === undefined) seen.set(mode, sealed);
      else assert.equal(sealed, other, `${mode}: node:crypto and noble seal the same bytes`);
      for (const offset of [0, 7, 14, 15, 40]) {
        const body = await s.envelope(to, 'report', payload);
        assert.is(body.maxBytes, sealed.length);
        const buf = Buffer.alloc(offset + body.maxBytes + 9, 0xee);
        const end = body.writeTo(buf, offset, offset + body.maxBytes);
        assert.equal(buf.subarray(offset, end), sealed, `${backend.name} ${mode} at ${offset}`);
        assert.ok(
          buf.subarray(0, offset).every((b) => b === 0xee),
          `${mode} at ${offset}: the bytes before kept`,
        );
        assert.ok(
          buf.subarray(end).every((b) => b === 0xee),
          `${mode} at ${offset}: the bytes after kept`,
        );
        assert.is(body.writeTo(buf, offset, end), end);
        assert.equal(buf.subarray(offset, end), sealed, `${mode} at ${offset}: written again, the same`);
      }
    }
  }
});

t('a payload encoded in place by the codec: the same envelope; too little room asks for more', async () => {
  for (const backend of [nodeBackend, nobleBackend]) {
    const s = sealer(backend, 'hub');
    const sealed = await s.seal({ peer: 'vpp-1' }, 'report', payload);
    const body = await s.envelope({ peer: 'vpp-1' }, 'report', bodyWriter(report));
    assert.ok(body.sizeHint !== undefined, 'hinted, as the payload is');
    const buf = Buffer.alloc(sealed.length + 50);
    assert.is(body.writeTo(buf, 10, 10 + sealed.length - 1), MORE_ROOM);
    const end = body.writeTo(buf, 10, buf.length);
    assert.equal(buf.subarray(10, end), sealed, backend.name);
    const opened = sealer(backend, 'vpp').open(buf.subarray(10, end));
    assert.equal(Buffer.from(opened.payload), payload, `${backend.name}: the receiver opens it`);
  }
});

t.run();
