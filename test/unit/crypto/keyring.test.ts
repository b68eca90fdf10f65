/**
 * The keyring and the private key file (docs/crypto.md §6 "Keys", "Key distribution and rotation"): loading two
 * identities that name each other, which epoch is current, every malformed input refused with its JSON path,
 * small-order Ed25519 and low-order X25519 keys, the private file's mode and secrecy, learning keys, and the
 * key file tools (write, rotate, public entry). Keys are involved, so most of it runs for both backends.
 */

import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ed from '@noble/ed25519';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  type CryptoBackend,
  CryptoError,
  type CryptoErrorCode,
  checkIdentityKey,
  generateIdentity,
  Keyring,
  keyId,
  MAX_PEER_KEYS,
  nobleBackend,
  nodeBackend,
  type PrivateKeyFile,
  publicEntry,
  readPrivateKeyFile,
  rotateX25519,
  writePrivateKeyFile,
} from '../../../src/crypto/index.js';
import { checkPrivateFileMode } from '../../../src/crypto/keyring.js';
import { cryptoError, cryptoErrorAsync } from '../../helpers/crypto.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const T0 = Date.parse('2026-03-01T12:00:00.000Z');
const iso = (ms: number): string => new Date(ms).toISOString();
const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64url');
const hex = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));
const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

const IDENTITY_POINT = (() => {
  const b = new Uint8Array(32);
  b[0] = 1;
  return b;
})();
const LOW_ORDER_ED = hex('c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a');
const X_ZERO = new Uint8Array(32);
const X_ONE = IDENTITY_POINT;
const X_ORDER_8 = hex('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800');

const KR = 'keyring.json';
const PK = 'hub.key';

async function inTempDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'heh-'));
  try {
    await fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A fresh X25519 public key that is not of low order. */
const xPub = (backend: CryptoBackend): Uint8Array => backend.dhSecret(randomBytes(32)).publicKey;

interface Fixture {
  hub: ReturnType<typeof generateIdentity>;
  vpp: ReturnType<typeof generateIdentity>;
  /** The hub's keyring, naming the VPP. */
  hubRing: Record<string, unknown> & { peers: Record<string, Record<string, unknown>> };
  /** The VPP's keyring, naming the hub. */
  vppRing: Record<string, unknown> & { peers: Record<string, Record<string, unknown>> };
}

function fixture(backend: CryptoBackend): Fixture {
  const hub = generateIdentity('hub', backend, T0 - DAY);
  const vpp = generateIdentity('vpp-acme', backend, T0 - DAY);
  const entry = (e: typeof hub.publicEntry) => e.x25519.map(({ pub, notBefore }) => ({ pub, notBefore }));
  const hubRing = {
    format: 'heh-keyring/1',
    peers: {
      'vpp-acme': {
        roles: ['aggregator'],
        ed25519: vpp.publicEntry.ed25519,
        x25519: entry(vpp.publicEntry),
        maySend: ['get_report', 'activate'],
        mayReceive: ['report', 'accept_activation'],
      },
    },
  };
  const vppRing = {
    format: 'heh-keyring/1',
    peers: {
      hub: {
        roles: ['hub'],
        ed25519: hub.publicEntry.ed25519,
        x25519: entry(hub.publicEntry),
        maySend: ['report', 'accept_activation'],
        mayReceive: ['get_report', 'activate'],
      },
    },
  };
  return { hub, vpp, hubRing, vppRing };
}

const make = (backend: CryptoBackend, keyring: unknown, privateKey: unknown): Keyring =>
  new Keyring(backend, { keyring, keyringFile: KR, privateKey, privateKeyFile: PK });

/** Refused with `code`, and the message starts with the file and the exact JSON path. */
function refused(
  backend: CryptoBackend,
  keyring: unknown,
  privateKey: unknown,
  code: CryptoErrorCode,
  file: string,
  jsonPath: string,
): CryptoError {
  const err = cryptoError(() => make(backend, keyring, privateKey), code);
  assert.ok(
    err.message.startsWith(`${file}: ${jsonPath}: `),
    `expected "${file}: ${jsonPath}: ...", got: ${err.message}`,
  );
  return err;
}

for (const backend of [nodeBackend, nobleBackend]) {
  const B = backend.name;

  // ---------------------------------------------------------------------------------------------------------------
  const load = suite(`Keyring (${B}): a valid pair of identities`);

  load('both keyrings load; ids, identity keys, permissions and key ids are what the files say', () => {
    const { hub, vpp, hubRing, vppRing } = fixture(backend);
    const h = make(backend, hubRing, hub.privateKey);
    const v = make(backend, vppRing, vpp.privateKey);
    assert.is(h.id, 'hub');
    assert.is(v.id, 'vpp-acme');
    assert.is(b64(h.signing.publicKey), hub.publicEntry.ed25519);
    assert.is(h.signing.backend, B);
    assert.equal([...h.peers.keys()], ['vpp-acme']);
    const peer = h.peers.get('vpp-acme')!;
    assert.is(b64(peer.ed25519.publicKey), vpp.publicEntry.ed25519);
    assert.equal(peer.roles, ['aggregator']);
    assert.equal([...peer.maySend].sort(), ['activate', 'get_report']);
    assert.equal([...peer.mayReceive].sort(), ['accept_activation', 'report']);
    assert.is(peer.topics.size, 0);

    const vppKid = vpp.publicEntry.x25519[0]!.kid;
    const hubKid = hub.publicEntry.x25519[0]!.kid;
    assert.is(vppKid, keyId(Buffer.from(vpp.publicEntry.x25519[0]!.pub, 'base64url')));
    const found = h.peerByKid(vppKid);
    assert.ok(found !== undefined);
    assert.is(found.peer, peer);
    assert.is(found.epoch.notBefore, T0 - DAY);
    assert.is(found.epoch.notAfter, undefined);
    assert.is(h.peerByKid(hubKid), undefined, 'our own kid is not a peer kid');
    assert.is(h.ownByKid(vppKid), undefined, 'a peer kid is not ours');
    assert.is(h.ownByKid(hubKid)?.kid, hubKid);
    assert.is(h.currentOwn(T0)?.kid, hubKid);
    assert.is(h.currentPeer(peer, T0)?.kid, vppKid);
    assert.is(v.currentPeer(v.peers.get('hub')!, T0)?.kid, hubKid);
  });

  load('the two sides derive the same X25519 shared secret from what they loaded', () => {
    const { hub, vpp, hubRing, vppRing } = fixture(backend);
    const h = make(backend, hubRing, hub.privateKey);
    const v = make(backend, vppRing, vpp.privateKey);
    const a = backend.dh(h.currentOwn(T0)!.secret, h.currentPeer(h.peers.get('vpp-acme')!, T0)!.key);
    const b = backend.dh(v.currentOwn(T0)!.secret, v.currentPeer(v.peers.get('hub')!, T0)!.key);
    assert.is(a.length, 32);
    assert.equal(a, b);
  });

  load(
    'not yet in force (notBefore in the future) and ended (notAfter in the past) are not current; the newest in force wins',
    () => {
      const { hub, hubRing } = fixture(backend);
      const [past, old, recent, future] = [xPub(backend), xPub(backend), xPub(backend), xPub(backend)];
      hubRing.peers['vpp-acme']!['x25519'] = [
        { pub: b64(past), notBefore: iso(T0 - 10 * DAY), notAfter: iso(T0 - DAY) },
        { pub: b64(old), notBefore: iso(T0 - 5 * DAY) },
        { pub: b64(recent), notBefore: iso(T0 - 2 * DAY), notAfter: iso(T0 + 5 * DAY) },
        { pub: b64(future), notBefore: iso(T0 + DAY) },
      ];
      const h = make(backend, hubRing, hub.privateKey);
      const peer = h.peers.get('vpp-acme')!;
      assert.is(peer.epochs.length, 4);
      const cur = (t: number) => h.currentPeer(peer, t)?.kid;
      assert.is(cur(T0), keyId(recent));
      assert.is(cur(T0 - 3 * DAY), keyId(old), 'before "recent" starts, "old" is the newest in force');
      assert.is(cur(T0 - 9 * DAY), keyId(past));
      assert.is(cur(T0 - DAY), keyId(recent), 'notAfter is exclusive');
      assert.is(cur(T0 + DAY), keyId(future), 'notBefore is inclusive');
      assert.is(cur(T0 + DAY - 1), keyId(recent));
      assert.is(cur(T0 - 20 * DAY), undefined, 'nothing in force yet');
      // Every epoch can still be looked up by its kid (messages sealed to an old key may still be queued).
      for (const k of [past, old, recent, future]) assert.is(h.peerByKid(keyId(k))?.peer, peer);
    },
  );

  load('own epochs: the newest in force is the one we send with', () => {
    const { hub, hubRing } = fixture(backend);
    const s1 = randomBytes(32),
      s2 = randomBytes(32),
      s3 = randomBytes(32);
    const priv = {
      ...hub.privateKey,
      x25519: [
        { secret: b64(s1), notBefore: iso(T0 - 30 * DAY), notAfter: iso(T0 + HOUR) },
        { secret: b64(s2), notBefore: iso(T0 - HOUR) },
        { secret: b64(s3), notBefore: iso(T0 + 2 * HOUR) },
      ],
    };
    const h = make(backend, hubRing, priv);
    const kid = (s: Uint8Array) => keyId(backend.dhSecret(s).publicKey);
    assert.is(h.own.length, 3);
    assert.is(h.currentOwn(T0 - 2 * HOUR)?.kid, kid(s1));
    assert.is(h.currentOwn(T0)?.kid, kid(s2));
    assert.is(h.currentOwn(T0 + 2 * HOUR)?.kid, kid(s3));
    assert.is(h.currentOwn(T0 - 31 * DAY), undefined);
    for (const s of [s1, s2, s3]) assert.is(h.ownByKid(kid(s))?.kid, kid(s));
  });

  // ---------------------------------------------------------------------------------------------------------------
  const bad = suite(`Keyring (${B}): malformed input is refused with the JSON path`);

  bad('the keyring file', () => {
    const f = fixture(backend);
    const vppPeer = () => f.hubRing.peers['vpp-acme']!;
    const withRing = (
      mutate: (r: Record<string, unknown> & { peers: Record<string, Record<string, unknown>> }) => void,
    ) => {
      const r = clone(f.hubRing);
      mutate(r);
      return r;
    };
    const cases: [string, unknown, string][] = [
      ['not an object', [], '$'],
      [
        'wrong format',
        withRing((r) => {
          r['format'] = 'heh-keyring/2';
        }),
        '$.format',
      ],
      [
        'no format',
        withRing((r) => {
          delete r['format'];
        }),
        '$.format',
      ],
      [
        'peers an array',
        withRing((r) => {
          (r as Record<string, unknown>)['peers'] = [];
        }),
        '$.peers',
      ],
      [
        'peers a string',
        withRing((r) => {
          (r as Record<string, unknown>)['peers'] = 'vpp-acme';
        }),
        '$.peers',
      ],
      [
        'peer not an object',
        withRing((r) => {
          (r.peers as Record<string, unknown>)['vpp-acme'] = 'x';
        }),
        '$.peers.vpp-acme',
      ],
      [
        'ed25519 of 31 bytes',
        withRing((r) => {
          r.peers['vpp-acme']!['ed25519'] = b64(randomBytes(31));
        }),
        '$.peers.vpp-acme.ed25519',
      ],
      [
        'ed25519 of 33 bytes',
        withRing((r) => {
          r.peers['vpp-acme']!['ed25519'] = b64(randomBytes(33));
        }),
        '$.peers.vpp-acme.ed25519',
      ],
      [
        'ed25519 in base64, not base64url',
        withRing((r) => {
          r.peers['vpp-acme']!['ed25519'] = `${'+'.repeat(42)}A`;
        }),
        '$.peers.vpp-acme.ed25519',
      ],
      [
        'ed25519 padded',
        withRing((r) => {
          r.peers['vpp-acme']!['ed25519'] = `${String(vppPeer()['ed25519'])}=`;
        }),
        '$.peers.vpp-acme.ed25519',
      ],
      [
        'ed25519 in hex',
        withRing((r) => {
          r.peers['vpp-acme']!['ed25519'] = Buffer.from(randomBytes(32)).toString('hex');
        }),
        '$.peers.vpp-acme.ed25519',
      ],
      [
        'ed25519 missing',
        withRing((r) => {
          delete r.peers['vpp-acme']!['ed25519'];
        }),
        '$.peers.vpp-acme.ed25519',
      ],
      [
        'x25519 not an array',
        withRing((r) => {
          r.peers['vpp-acme']!['x25519'] = { pub: b64(xPub(backend)), notBefore: iso(T0) };
        }),
        '$.peers.vpp-acme.x25519',
      ],
      [
        'x25519 missing',
        withRing((r) => {
          delete r.peers['vpp-acme']!['x25519'];
        }),
        '$.peers.vpp-acme.x25519',
      ],
      [
        'x25519 entry not an object',
        withRing((r) => {
          r.peers['vpp-acme']!['x25519'] = [b64(xPub(backend))];
        }),
        '$.peers.vpp-acme.x25519[0]',
      ],
      [
        'x25519 pub of 31 bytes',
        withRing((r) => {
          r.peers['vpp-acme']!['x25519'] = [{ pub: b64(randomBytes(31)), notBefore: iso(T0) }];
        }),
        '$.peers.vpp-acme.x25519[0].pub',
      ],
      [
        'notBefore naive',
        withRing((r) => {
          r.peers['vpp-acme']!['x25519'] = [{ pub: b64(xPub(backend)), notBefore: '2026-01-01T00:00:00' }];
        }),
        '$.peers.vpp-acme.x25519[0].notBefore',
      ],
      [
        'notBefore garbage',
        withRing((r) => {
          r.peers['vpp-acme']!['x25519'] = [{ pub: b64(xPub(backend)), notBefore: 'yesterday' }];
        }),
        '$.peers.vpp-acme.x25519[0].notBefore',
      ],
      [
        'notBefore a number',
        withRing((r) => {
          r.peers['vpp-acme']!['x25519'] = [{ pub: b64(xPub(backend)), notBefore: T0 }];
        }),
        '$.peers.vpp-acme.x25519[0].notBefore',
      ],
      [
        'notBefore missing',
        withRing((r) => {
          r.peers['vpp-acme']!['x25519'] = [{ pub: b64(xPub(backend)) }];
        }),
        '$.peers.vpp-acme.x25519[0].notBefore',
      ],
      [
        'notAfter garbage',
        withRing((r) => {
          r.peers['vpp-acme']!['x25519'] = [
            { pub: b64(xPub(backend)), notBefore: iso(T0), notAfter: '2026-13-01T00:00:00Z' },
          ];
        }),
        '$.peers.vpp-acme.x25519[0].notAfter',
      ],
      [
        'notAfter == notBefore',
        withRing((r) => {
          r.peers['vpp-acme']!['x25519'] = [{ pub: b64(xPub(backend)), notBefore: iso(T0), notAfter: iso(T0) }];
        }),
        '$.peers.vpp-acme.x25519[0].notAfter',
      ],
      [
        'notAfter < notBefore (same instant written in another zone is not later)',
        withRing((r) => {
          r.peers['vpp-acme']!['x25519'] = [
            { pub: b64(xPub(backend)), notBefore: iso(T0) },
            { pub: b64(xPub(backend)), notBefore: '2026-03-01T12:00:00Z', notAfter: '2026-03-01T13:00:00+02:00' },
          ];
        }),
        '$.peers.vpp-acme.x25519[1].notAfter',
      ],
      [
        'unknown type in maySend',
        withRing((r) => {
          r.peers['vpp-acme']!['maySend'] = ['get_report', 'launch_missiles'];
        }),
        '$.peers.vpp-acme.maySend[1]',
      ],
      [
        'unknown type in mayReceive',
        withRing((r) => {
          r.peers['vpp-acme']!['mayReceive'] = ['Report'];
        }),
        '$.peers.vpp-acme.mayReceive[0]',
      ],
      [
        'maySend not an array',
        withRing((r) => {
          r.peers['vpp-acme']!['maySend'] = 'report';
        }),
        '$.peers.vpp-acme.maySend',
      ],
      [
        'a role not a string',
        withRing((r) => {
          r.peers['vpp-acme']!['roles'] = ['aggregator', 7];
        }),
        '$.peers.vpp-acme.roles[1]',
      ],
      [
        'a topic not a string',
        withRing((r) => {
          r.peers['vpp-acme']!['topics'] = [null];
        }),
        '$.peers.vpp-acme.topics[0]',
      ],
      [
        'a peer id with a space',
        withRing((r) => {
          r.peers['vpp acme'] = r.peers['vpp-acme']!;
          delete r.peers['vpp-acme'];
        }),
        '$.peers.vpp acme',
      ],
      [
        'a peer id starting with "-"',
        withRing((r) => {
          r.peers['-vpp'] = r.peers['vpp-acme']!;
          delete r.peers['vpp-acme'];
        }),
        '$.peers.-vpp',
      ],
      [
        'a peer id of 129 characters',
        withRing((r) => {
          r.peers[`v${'x'.repeat(128)}`] = r.peers['vpp-acme']!;
          delete r.peers['vpp-acme'];
        }),
        `$.peers.v${'x'.repeat(128)}`,
      ],
      [
        'our own id as a peer',
        withRing((r) => {
          r.peers['hub'] = { ed25519: vppPeer()['ed25519'], x25519: [{ pub: b64(xPub(backend)), notBefore: iso(T0) }] };
        }),
        '$.peers.hub',
      ],
    ];
    for (const [what, ring, jsonPath] of cases) {
      try {
        refused(backend, ring, f.hub.privateKey, 'KEYRING_INVALID', KR, jsonPath);
      } catch (err) {
        throw new Error(`${what}: ${(err as Error).message}`);
      }
    }
  });

  bad('the messages about the keyring quote the offending value (it is public)', () => {
    const f = fixture(backend);
    const r = clone(f.hubRing);
    r.peers['vpp-acme']!['x25519'] = [{ pub: b64(xPub(backend)), notBefore: '2026-01-01T00:00:00' }];
    const err = refused(backend, r, f.hub.privateKey, 'KEYRING_INVALID', KR, '$.peers.vpp-acme.x25519[0].notBefore');
    assert.ok(err.message.includes('2026-01-01T00:00:00'), err.message);
    const r2 = clone(f.hubRing);
    r2.peers['vpp-acme']!['maySend'] = ['launch_missiles'];
    assert.ok(
      refused(backend, r2, f.hub.privateKey, 'KEYRING_INVALID', KR, '$.peers.vpp-acme.maySend[0]').message.includes(
        'launch_missiles',
      ),
    );
  });

  bad(
    'the same X25519 key for two peers, or for a peer and us, or twice for one peer: the duplicate kid is refused',
    () => {
      const f = fixture(backend);
      const shared = f.hubRing.peers['vpp-acme']!['x25519'];
      const r = clone(f.hubRing);
      r.peers['dso-north'] = {
        roles: ['dso'],
        ed25519: b64(backend.signingKey(randomBytes(32)).publicKey),
        x25519: clone(shared),
        topics: ['prices.north'],
      };
      const kid = f.vpp.publicEntry.x25519[0]!.kid;
      const err = refused(backend, r, f.hub.privateKey, 'KEYRING_INVALID', KR, '$.peers.dso-north.x25519[0]');
      assert.ok(err.message.includes(kid), err.message);
      assert.ok(err.message.includes('vpp-acme'), err.message);

      const r2 = clone(f.hubRing);
      r2.peers['vpp-acme']!['x25519'] = [
        ...(clone(shared) as unknown[]),
        { pub: f.vpp.publicEntry.x25519[0]!.pub, notBefore: iso(T0 + DAY) },
      ];
      refused(backend, r2, f.hub.privateKey, 'KEYRING_INVALID', KR, '$.peers.vpp-acme.x25519[1]');

      const r3 = clone(f.hubRing);
      r3.peers['vpp-acme']!['x25519'] = [{ pub: f.hub.publicEntry.x25519[0]!.pub, notBefore: iso(T0) }];
      assert.ok(
        refused(backend, r3, f.hub.privateKey, 'KEYRING_INVALID', KR, '$.peers.vpp-acme.x25519[0]').message.includes(
          'our own key',
        ),
      );
    },
  );

  bad('an Ed25519 key that is not a point is refused as invalid', () => {
    // Find a y for which x^2 has no square root (about half of all y).
    let notAPoint: Uint8Array | undefined;
    for (let i = 2; i < 256 && notAPoint === undefined; i++) {
      const b = new Uint8Array(32);
      b[0] = i;
      try {
        ed.Point.fromBytes(b);
      } catch {
        notAPoint = b;
      }
    }
    assert.ok(notAPoint !== undefined);
    const f = fixture(backend);
    f.hubRing.peers['vpp-acme']!['ed25519'] = b64(notAPoint);
    refused(backend, f.hubRing, f.hub.privateKey, 'KEYRING_INVALID', KR, '$.peers.vpp-acme.ed25519');
  });

  bad('the private key file', () => {
    const f = fixture(backend);
    const withPriv = (mutate: (p: Record<string, unknown>) => void) => {
      const p = clone(f.hub.privateKey) as unknown as Record<string, unknown>;
      mutate(p);
      return p;
    };
    const x0 = () => clone(f.hub.privateKey.x25519[0]!);
    const cases: [string, unknown, string][] = [
      ['not an object', 'hub', '$'],
      [
        'wrong format',
        withPriv((p) => {
          p['format'] = 'heh-keyring/1';
        }),
        '$.format',
      ],
      [
        'id missing',
        withPriv((p) => {
          delete p['id'];
        }),
        '$.id',
      ],
      [
        'id with a slash',
        withPriv((p) => {
          p['id'] = 'hub/1';
        }),
        '$.id',
      ],
      [
        'id empty',
        withPriv((p) => {
          p['id'] = '';
        }),
        '$.id',
      ],
      [
        'ed25519 of 31 bytes',
        withPriv((p) => {
          p['ed25519'] = b64(randomBytes(31));
        }),
        '$.ed25519',
      ],
      [
        'ed25519 missing',
        withPriv((p) => {
          delete p['ed25519'];
        }),
        '$.ed25519',
      ],
      [
        'x25519 missing',
        withPriv((p) => {
          delete p['x25519'];
        }),
        '$.x25519',
      ],
      [
        'no x25519 entry',
        withPriv((p) => {
          p['x25519'] = [];
        }),
        '$.x25519',
      ],
      [
        'x25519 secret of 31 bytes',
        withPriv((p) => {
          p['x25519'] = [{ ...x0(), secret: b64(randomBytes(31)) }];
        }),
        '$.x25519[0].secret',
      ],
      [
        'x25519 notBefore naive',
        withPriv((p) => {
          p['x25519'] = [{ ...x0(), notBefore: '2026-01-01T00:00' }];
        }),
        '$.x25519[0].notBefore',
      ],
      [
        'x25519 notAfter before notBefore',
        withPriv((p) => {
          p['x25519'] = [{ ...x0(), notAfter: iso(T0 - 2 * DAY) }];
        }),
        '$.x25519[0].notAfter',
      ],
      [
        'the same secret twice',
        withPriv((p) => {
          p['x25519'] = [x0(), { ...x0(), notBefore: iso(T0) }];
        }),
        '$.x25519[1]',
      ],
      [
        'groups an array',
        withPriv((p) => {
          p['groups'] = [];
        }),
        '$.groups',
      ],
      [
        'group key of 31 bytes',
        withPriv((p) => {
          p['groups'] = { 'prices.north': [{ key: b64(randomBytes(31)), notBefore: iso(T0) }] };
        }),
        '$.groups.prices.north[0].key',
      ],
    ];
    for (const [what, priv, jsonPath] of cases) {
      try {
        refused(backend, f.hubRing, priv, 'KEYRING_INVALID', PK, jsonPath);
      } catch (err) {
        throw new Error(`${what}: ${(err as Error).message}`);
      }
    }
  });

  bad('messages about the private key file never quote its values', () => {
    const f = fixture(backend);
    const seed31 = b64(randomBytes(31));
    const secret31 = b64(randomBytes(31));
    const longSecret = `${f.hub.privateKey.ed25519}AAAA`;
    const cases: [unknown, string, string][] = [
      [{ ...f.hub.privateKey, ed25519: seed31 }, seed31, '$.ed25519'],
      [{ ...f.hub.privateKey, ed25519: longSecret }, longSecret, '$.ed25519'],
      [{ ...f.hub.privateKey, ed25519: longSecret.slice(0, 40) }, longSecret.slice(0, 40), '$.ed25519'],
      [{ ...f.hub.privateKey, x25519: [{ secret: secret31, notBefore: iso(T0) }] }, secret31, '$.x25519[0].secret'],
      [
        {
          ...f.hub.privateKey,
          x25519: [{ secret: f.hub.privateKey.x25519[0]!.secret, notBefore: 'sekrit-time-value' }],
        },
        'sekrit-time-value',
        '$.x25519[0].notBefore',
      ],
      [{ ...f.hub.privateKey, groups: { t: [{ key: secret31, notBefore: iso(T0) }] } }, secret31, '$.groups.t[0].key'],
    ];
    for (const [priv, value, jsonPath] of cases) {
      const err = refused(backend, f.hubRing, priv, 'KEYRING_INVALID', PK, jsonPath);
      assert.not.ok(err.message.includes(value), `${jsonPath}: the message quotes the value: ${err.message}`);
      // Not even a prefix of it.
      assert.not.ok(err.message.includes(value.slice(0, 12)), `${jsonPath}: ${err.message}`);
      assert.not.ok(String(err.stack).includes(value), `${jsonPath}: the stack quotes the value`);
    }
  });

  // ---------------------------------------------------------------------------------------------------------------
  const order = suite(`Keyring (${B}): small-order and low-order keys`);

  const mixed = (): Uint8Array => {
    const honest = backend.signingKey(randomBytes(32)).publicKey;
    return ed.Point.fromBytes(honest).add(ed.Point.fromBytes(LOW_ORDER_ED)).toBytes();
  };

  order('small-order Ed25519 keys of a peer are refused with SMALL_ORDER_KEY and the path', () => {
    const f = fixture(backend);
    const m = mixed();
    assert.ok(
      !ed.Point.fromBytes(m).isSmallOrder() && !ed.Point.fromBytes(m).isTorsionFree(),
      'the test key is of mixed order',
    );
    for (const key of [IDENTITY_POINT, LOW_ORDER_ED, m]) {
      const r = clone(f.hubRing);
      r.peers['vpp-acme']!['ed25519'] = b64(key);
      refused(backend, r, f.hub.privateKey, 'SMALL_ORDER_KEY', KR, '$.peers.vpp-acme.ed25519');
    }
    // The honest key the mixed one was made from loads (and so does the fixture's).
    make(backend, f.hubRing, f.hub.privateKey);
  });

  order('all eight small-order points are refused (the multiples of the order-8 point)', () => {
    const f = fixture(backend);
    const p8 = ed.Point.fromBytes(LOW_ORDER_ED);
    let q = p8;
    const seen = new Set<string>();
    for (let i = 1; i <= 8; i++, q = q.add(p8)) {
      const bytes = q.toBytes();
      seen.add(b64(bytes));
      const r = clone(f.hubRing);
      r.peers['vpp-acme']!['ed25519'] = b64(bytes);
      refused(backend, r, f.hub.privateKey, 'SMALL_ORDER_KEY', KR, '$.peers.vpp-acme.ed25519');
    }
    assert.is(seen.size, 8);
  });

  order(
    'checkIdentityKey: SMALL_ORDER_KEY for small and mixed order, BAD_KEY for a wrong length, silence for an honest key',
    () => {
      cryptoError(() => checkIdentityKey(IDENTITY_POINT), 'SMALL_ORDER_KEY');
      cryptoError(() => checkIdentityKey(LOW_ORDER_ED), 'SMALL_ORDER_KEY');
      cryptoError(() => checkIdentityKey(mixed()), 'SMALL_ORDER_KEY');
      cryptoError(() => checkIdentityKey(new Uint8Array(31)), 'BAD_KEY');
      const e = cryptoError(() => checkIdentityKey(LOW_ORDER_ED, 'the DSO key'), 'SMALL_ORDER_KEY');
      assert.ok(e.message.startsWith('the DSO key'), e.message);
      checkIdentityKey(backend.signingKey(randomBytes(32)).publicKey);
    },
  );

  order('low-order X25519 keys of a peer are refused with LOW_ORDER_KEY and the path', () => {
    const f = fixture(backend);
    for (const key of [X_ZERO, X_ONE, X_ORDER_8]) {
      const r = clone(f.hubRing);
      r.peers['vpp-acme']!['x25519'] = [
        { pub: b64(xPub(backend)), notBefore: iso(T0) },
        { pub: b64(key), notBefore: iso(T0 + DAY) },
      ];
      refused(backend, r, f.hub.privateKey, 'LOW_ORDER_KEY', KR, '$.peers.vpp-acme.x25519[1]');
    }
  });

  // ---------------------------------------------------------------------------------------------------------------
  const files = suite(`Keyring.load (${B}): the files`);

  const writeFiles = (dir: string, f: Fixture, mode = 0o600): { kr: string; pk: string } => {
    const kr = path.join(dir, 'keyring.json');
    const pk = path.join(dir, 'hub.key');
    fs.writeFileSync(kr, JSON.stringify(f.hubRing));
    fs.writeFileSync(pk, JSON.stringify(f.hub.privateKey), { mode });
    fs.chmodSync(pk, mode);
    return { kr, pk };
  };

  files(
    "0600 and 0640 in the hub's group load; a file open to others, writable by its group, or readable by a group the hub is not in is refused with KEY_FILE_PERMISSIONS, naming the file, its mode and the command that fixes it",
    () =>
      inTempDir((dir) => {
        const f = fixture(backend);
        const { kr, pk } = writeFiles(dir, f);
        const ring = Keyring.load(kr, pk, backend);
        assert.is(ring.id, 'hub');
        assert.is(ring.peers.get('vpp-acme')?.epochs.length, 1);
        const fixes: [number, string][] = [
          [0o644, 'chmod o-rwx'],
          [0o604, 'chmod o-rwx'],
          [0o601, 'chmod o-rwx'],
          [0o660, 'chmod g-w'],
          [0o666, 'chmod g-w,o-rwx'],
        ];
        for (const [mode, fix] of fixes) {
          fs.chmodSync(pk, mode);
          const err = cryptoError(() => Keyring.load(kr, pk, backend), 'KEY_FILE_PERMISSIONS');
          assert.ok(err.message.includes(`${pk} with mode 0${mode.toString(8)}`), err.message);
          assert.ok(err.message.includes(`run ${fix} ${pk}`), err.message);
        }
        fs.chmodSync(pk, 0o400);
        assert.is(Keyring.load(kr, pk, backend).id, 'hub', 'read-only for the owner is fine');
        // The file's group is the hub's own (the test's, here): what /etc/ebadge's root:ebadge 0640 is for the hub.
        fs.chmodSync(pk, 0o640);
        assert.is(Keyring.load(kr, pk, backend).id, 'hub', "0640 in the hub's group is fine");
        const gid = fs.statSync(pk).gid;
        const mine = { uid: 4242, gid, groups: [gid] };
        checkPrivateFileMode(pk, mine);
        checkPrivateFileMode(pk, { uid: 4242, gid: gid + 1, groups: [gid + 2, gid] });
        const stranger = { uid: 4242, gid: gid + 1, groups: [gid + 2] };
        const err = cryptoError(() => checkPrivateFileMode(pk, stranger), 'KEY_FILE_PERMISSIONS');
        assert.ok(err.message.includes(`${pk} with mode 0640 and group `), err.message);
        assert.ok(err.message.includes(`which the user 4242 is not in: run chgrp `), err.message);
        assert.ok(err.message.includes(`or chmod g-rwx ${pk}`), err.message);
        // Root (check-config, the key tools under sudo) is in none of the hub's groups: not held to that rule.
        checkPrivateFileMode(pk, { uid: 0, gid: gid + 1, groups: [gid + 1] });
        fs.chmodSync(pk, 0o600);
        checkPrivateFileMode(pk, stranger);
      }),
  );

  files('the messages of a file-level error name the file', () =>
    inTempDir((dir) => {
      const f = fixture(backend);
      const { kr, pk } = writeFiles(dir, f);
      const missing = path.join(dir, 'nope.key');
      const e1 = cryptoError(() => Keyring.load(kr, missing, backend), 'KEYRING_INVALID');
      assert.ok(e1.message.includes(missing), e1.message);
      const missingRing = path.join(dir, 'nope.json');
      const e2 = cryptoError(() => Keyring.load(missingRing, pk, backend), 'KEYRING_INVALID');
      assert.ok(e2.message.includes(missingRing), e2.message);
      // A value error names the real file, with the path.
      const r = clone(f.hubRing);
      r['format'] = 'nope';
      fs.writeFileSync(kr, JSON.stringify(r));
      const e3 = cryptoError(() => Keyring.load(kr, pk, backend), 'KEYRING_INVALID');
      assert.ok(e3.message.startsWith(`${kr}: $.format: `), e3.message);
      fs.writeFileSync(kr, '{"format": "heh-keyring/1", "peers": {');
      const e4 = cryptoError(() => Keyring.load(kr, pk, backend), 'KEYRING_INVALID');
      assert.ok(e4.message.includes(kr) && e4.message.includes('JSON'), e4.message);
    }),
  );

  files('a key written twice in either file is refused with the file and the path', () =>
    inTempDir((dir) => {
      const f = fixture(backend);
      const { kr, pk } = writeFiles(dir, f);
      const ring = JSON.stringify(f.hubRing);
      fs.writeFileSync(kr, ring.replace('{"format":', '{"format":"heh-keyring/1","format":'));
      const e1 = cryptoError(() => Keyring.load(kr, pk, backend), 'KEYRING_INVALID');
      assert.is(e1.message, `${kr}: $.format: the key "format" a second time`);
      fs.writeFileSync(kr, ring);
      const priv = JSON.stringify(f.hub.privateKey);
      fs.writeFileSync(
        pk,
        priv.replace('{"format":', `{"ed25519":${JSON.stringify(f.hub.privateKey.ed25519)},"format":`),
      );
      const e2 = cryptoError(() => Keyring.load(kr, pk, backend), 'KEYRING_INVALID');
      assert.is(e2.message, `${pk}: $.ed25519: the key "ed25519" a second time`);
      assert.not.ok(e2.message.includes(f.hub.privateKey.ed25519.slice(0, 12)), e2.message);
    }),
  );

  files('invalid JSON: the line and column of the error', () =>
    inTempDir((dir) => {
      const f = fixture(backend);
      const { kr, pk } = writeFiles(dir, f);
      fs.writeFileSync(kr, '{\n  "format": "heh-keyring/1",\n  "peers": {,\n}');
      const err = cryptoError(() => Keyring.load(kr, pk, backend), 'KEYRING_INVALID');
      assert.is(err.message, `${kr}: invalid JSON at line 3 column 13: expected a key in double quotes`);
    }),
  );

  files('invalid JSON in the private key file: the message quotes none of its text', () =>
    inTempDir((dir) => {
      const f = fixture(backend);
      const { kr, pk } = writeFiles(dir, f);
      const secret = 'SUPERSECRET-3f9a1c77e2b4d6e8-seed';
      for (const text of [
        `{"format": "heh-private/1", "id": "hub", "ed25519": "${secret}`,
        `{"format": "heh-private/1", "id": "hub", "ed25519": ${secret}}`,
        `${secret}`,
        `{"ed25519": "${secret}",}`,
      ]) {
        fs.writeFileSync(pk, text);
        const err = cryptoError(() => Keyring.load(kr, pk, backend), 'KEYRING_INVALID');
        assert.ok(err.message.includes(pk), err.message);
        // V8 quotes about ten characters around the error ("SUPERSECRE"...): look for a short prefix.
        assert.not.ok(err.message.includes('SUPERS'), err.message);
        assert.not.ok(err.message.includes('3f9a1c'), err.message);
        assert.not.ok(String(err.stack).includes('SUPERS'), 'the stack quotes the file');
        assert.is((err as { cause?: unknown }).cause, undefined, 'no cause carrying the parser message');
      }
    }),
  );

  files('a 31-byte seed in the private key file on disk: refused with the path, never quoted', () =>
    inTempDir((dir) => {
      const f = fixture(backend);
      const { kr, pk } = writeFiles(dir, f);
      const seed31 = b64(randomBytes(31));
      fs.writeFileSync(pk, JSON.stringify({ ...f.hub.privateKey, ed25519: seed31 }));
      const err = cryptoError(() => Keyring.load(kr, pk, backend), 'KEYRING_INVALID');
      assert.ok(err.message.startsWith(`${pk}: $.ed25519: `), err.message);
      assert.not.ok(err.message.includes(seed31), err.message);
    }),
  );

  // ---------------------------------------------------------------------------------------------------------------
  const learn = suite(`Keyring.learn (${B})`);

  learn('a new key is added, found by its kid, and becomes current once its notBefore passes', () => {
    const f = fixture(backend);
    const ring = make(backend, f.hubRing, f.hub.privateKey);
    const peer = ring.peers.get('vpp-acme')!;
    const oldKid = f.vpp.publicEntry.x25519[0]!.kid;
    const k = xPub(backend);
    assert.is(ring.learn(peer, k, T0 + HOUR, undefined), true);
    assert.is(peer.epochs.length, 2);
    assert.is(ring.peerByKid(keyId(k))?.peer, peer);
    assert.is(ring.peerByKid(keyId(k))?.epoch.notBefore, T0 + HOUR);
    assert.is(ring.currentPeer(peer, T0)?.kid, oldKid);
    assert.is(ring.currentPeer(peer, T0 + HOUR - 1)?.kid, oldKid);
    assert.is(ring.currentPeer(peer, T0 + HOUR)?.kid, keyId(k));
    assert.equal(ring.currentPeer(peer, T0 + HOUR)?.key.publicKey, k);
    assert.is(ring.currentPeer(peer, T0 + HOUR)?.key.backend, B);
    // Learning the same key again changes nothing.
    assert.is(ring.learn(peer, k, T0 + 2 * HOUR, undefined), false);
    assert.is(peer.epochs.length, 2);
    assert.is(ring.peerByKid(keyId(k))?.epoch.notBefore, T0 + HOUR);
    // So is re-announcing the key from the keyring file.
    assert.is(ring.learn(peer, Buffer.from(f.vpp.publicEntry.x25519[0]!.pub, 'base64url'), T0, undefined), false);
  });

  learn('a key whose kid belongs to another peer or to us is refused, and nothing changes', () => {
    const f = fixture(backend);
    const dsoKey = xPub(backend);
    f.hubRing.peers['dso-north'] = {
      roles: ['dso'],
      ed25519: b64(backend.signingKey(randomBytes(32)).publicKey),
      x25519: [{ pub: b64(dsoKey), notBefore: iso(T0) }],
    };
    const ring = make(backend, f.hubRing, f.hub.privateKey);
    const vpp = ring.peers.get('vpp-acme')!;
    const dso = ring.peers.get('dso-north')!;
    const e = cryptoError(() => ring.learn(vpp, dsoKey, T0, undefined), 'BAD_KEY');
    assert.ok(e.message.includes('dso-north') && e.message.includes('vpp-acme'), e.message);
    assert.is(vpp.epochs.length, 1);
    assert.is(ring.peerByKid(keyId(dsoKey))?.peer, dso);
    // The VPP's key announced as the DSO's.
    cryptoError(
      () => ring.learn(dso, Buffer.from(f.vpp.publicEntry.x25519[0]!.pub, 'base64url'), T0, undefined),
      'BAD_KEY',
    );
    // Our own X25519 key announced by a peer.
    const own = Buffer.from(f.hub.publicEntry.x25519[0]!.pub, 'base64url');
    assert.throws(
      () => ring.learn(vpp, own, T0, undefined),
      (err: unknown) => err instanceof CryptoError,
    );
    assert.is(vpp.epochs.length, 1);
    assert.is(ring.peerByKid(keyId(own)), undefined);
  });

  learn('a low-order key or an empty period is refused', () => {
    const f = fixture(backend);
    const ring = make(backend, f.hubRing, f.hub.privateKey);
    const vpp = ring.peers.get('vpp-acme')!;
    for (const k of [X_ZERO, X_ONE, X_ORDER_8]) cryptoError(() => ring.learn(vpp, k, T0, undefined), 'LOW_ORDER_KEY');
    cryptoError(() => ring.learn(vpp, xPub(backend), T0, T0), 'BAD_KEY');
    cryptoError(() => ring.learn(vpp, xPub(backend), T0, T0 - 1), 'BAD_KEY');
    assert.is(vpp.epochs.length, 1);
    // A bounded period is fine.
    const k = xPub(backend);
    assert.ok(ring.learn(vpp, k, T0 + HOUR, T0 + 2 * HOUR));
    assert.is(ring.currentPeer(vpp, T0 + HOUR)?.kid, keyId(k));
    assert.is(
      ring.currentPeer(vpp, T0 + 2 * HOUR)?.kid,
      f.vpp.publicEntry.x25519[0]!.kid,
      'after it ends, the previous key is current again',
    );
  });

  learn('at most 16 keys a peer: those ended over a day ago make room, then a new one is refused', () => {
    const f = fixture(backend);
    const ring = make(backend, f.hubRing, f.hub.privateKey);
    const vpp = ring.peers.get('vpp-acme')!;
    // Keys that ended an hour after they began, one a day apart; the keyring file's is the first.
    const ended: Uint8Array[] = [];
    for (let i = 1; i < MAX_PEER_KEYS; i++) {
      const k = xPub(backend);
      ended.push(k);
      assert.ok(ring.learn(vpp, k, T0 + i * DAY, T0 + i * DAY + HOUR, T0 + i * DAY));
    }
    assert.is(vpp.epochs.length, MAX_PEER_KEYS);
    const now = T0 + MAX_PEER_KEYS * DAY;
    // Only the key that ended yesterday is within a day: the others (and their kids) go for the new one.
    const k = xPub(backend);
    assert.ok(ring.learn(vpp, k, now, undefined, now));
    assert.equal(
      vpp.epochs.map((e) => e.kid),
      [f.vpp.publicEntry.x25519[0]!.kid, keyId(ended.at(-1)!), keyId(k)],
    );
    assert.is(ring.peerByKid(keyId(ended[0]!)), undefined, 'a pruned key no longer opens anything');
    // Full of keys that have not ended: refused, and nothing changes.
    for (let i = vpp.epochs.length; i < MAX_PEER_KEYS; i++) ring.learn(vpp, xPub(backend), now, undefined, now);
    const e = cryptoError(() => ring.learn(vpp, xPub(backend), now, undefined, now), 'BAD_KEY');
    assert.match(e.message, /vpp-acme: it has 16 X25519 keys already/);
    assert.is(vpp.epochs.length, MAX_PEER_KEYS);
  });

  learn('oldestOwn: the oldest of our keys in force, which a key_update is sealed with', () => {
    const f = fixture(backend);
    const ring = make(backend, f.hubRing, f.hub.privateKey);
    const first = ring.currentOwn(T0)!;
    const next = ring.addOwnSecret(randomBytes(32), T0 + HOUR, undefined);
    assert.is(ring.oldestOwn(T0 + 2 * HOUR)?.kid, first.kid);
    assert.is(ring.currentOwn(T0 + 2 * HOUR)?.kid, next.kid);
    assert.is(ring.oldestOwn(T0)?.kid, first.kid, 'a key to come is not in force');
  });

  // ---------------------------------------------------------------------------------------------------------------
  const kf = suite(`keyfile (${B})`);

  kf('generateIdentity: a private file of the right shape whose public entry matches it', () => {
    const { privateKey, publicEntry: pub } = generateIdentity('hub-7', backend, T0);
    assert.is(privateKey.format, 'heh-private/1');
    assert.is(privateKey.id, 'hub-7');
    assert.is(privateKey.x25519.length, 1);
    assert.is(privateKey.x25519[0]!.notBefore, iso(T0));
    assert.is(Buffer.from(privateKey.ed25519, 'base64url').length, 32);
    assert.is(Buffer.from(privateKey.x25519[0]!.secret, 'base64url').length, 32);
    assert.is(pub.ed25519, b64(backend.signingKey(Buffer.from(privateKey.ed25519, 'base64url')).publicKey));
    assert.is(
      pub.x25519[0]!.pub,
      b64(backend.dhSecret(Buffer.from(privateKey.x25519[0]!.secret, 'base64url')).publicKey),
    );
    const other = generateIdentity('hub-7', backend, T0);
    assert.is.not(other.privateKey.ed25519, privateKey.ed25519);
    assert.is.not(other.privateKey.x25519[0]!.secret, privateKey.x25519[0]!.secret);
    // Nothing secret in the public entry.
    const text = JSON.stringify(pub);
    assert.not.ok(text.includes(privateKey.ed25519) || text.includes(privateKey.x25519[0]!.secret));
  });

  kf('publicEntry: the kids are keyId of the public keys; both backends agree', () => {
    const file: PrivateKeyFile = {
      format: 'heh-private/1',
      id: 'hub',
      ed25519: b64(randomBytes(32)),
      x25519: [
        { secret: b64(randomBytes(32)), notBefore: iso(T0 - DAY), notAfter: iso(T0 + DAY) },
        { secret: b64(randomBytes(32)), notBefore: iso(T0) },
      ],
    };
    const pub = publicEntry(file, backend);
    assert.is(pub.x25519.length, 2);
    for (const e of pub.x25519) assert.is(e.kid, keyId(Buffer.from(e.pub, 'base64url')));
    assert.is.not(pub.x25519[0]!.kid, pub.x25519[1]!.kid);
    assert.is(pub.x25519[0]!.notAfter, iso(T0 + DAY));
    assert.ok(!('notAfter' in pub.x25519[1]!), 'no notAfter key when the epoch has none');
    const other = backend === nodeBackend ? nobleBackend : nodeBackend;
    assert.equal(publicEntry(file, other), pub);
    // The entry loads as a peer, and the kids are those the keyring computes.
    const me = generateIdentity('vpp-acme', backend, T0);
    const ring = make(backend, { format: 'heh-keyring/1', peers: { hub: pub } }, me.privateKey);
    for (const e of pub.x25519) assert.is(ring.peerByKid(e.kid)?.peer.id, 'hub');
  });

  kf(
    'writePrivateKeyFile: mode 0600 even with umask 0, also over an existing 0644 file; readPrivateKeyFile reads it back',
    () =>
      inTempDir(async (dir) => {
        const { privateKey } = generateIdentity('hub', backend, T0);
        const file = path.join(dir, 'hub.key');
        const old = process.umask(0);
        try {
          await writePrivateKeyFile(file, privateKey);
          assert.is(fs.statSync(file).mode & 0o777, 0o600);
          fs.chmodSync(file, 0o644);
          await writePrivateKeyFile(file, privateKey);
          assert.is(fs.statSync(file).mode & 0o777, 0o600);
        } finally {
          process.umask(old);
        }
        assert.is(process.umask(), old, 'umask restored');
        assert.equal(readPrivateKeyFile(file), privateKey);
        assert.equal(fs.readdirSync(dir), ['hub.key'], 'no temporary file left behind');
        fs.chmodSync(file, 0o644);
        cryptoError(() => readPrivateKeyFile(file), 'KEY_FILE_PERMISSIONS');
        fs.chmodSync(file, 0o600);
        fs.writeFileSync(file, '{"format": "heh-private/1", "ed25519": SUPERSECRET-x}');
        const e = cryptoError(() => readPrivateKeyFile(file), 'KEYRING_INVALID');
        assert.not.ok(e.message.includes('SUPERS'), e.message);
        fs.writeFileSync(file, '{"format": "heh-keyring/1", "peers": {}}');
        cryptoError(() => readPrivateKeyFile(file), 'KEYRING_INVALID');
      }),
  );

  kf('rotateX25519: adds a key, ends the open ones at notBefore + grace, drops those ended more than grace ago', () =>
    inTempDir(async (dir) => {
      const file = path.join(dir, 'hub.key');
      const gone = b64(randomBytes(32)),
        ending = b64(randomBytes(32)),
        open = b64(randomBytes(32));
      const start: PrivateKeyFile = {
        format: 'heh-private/1',
        id: 'hub',
        ed25519: b64(randomBytes(32)),
        x25519: [
          { secret: gone, notBefore: iso(T0 - 80 * DAY), notAfter: iso(T0 - DAY - 1) },
          { secret: ending, notBefore: iso(T0 - 60 * DAY), notAfter: iso(T0 - 12 * HOUR) },
          { secret: open, notBefore: iso(T0 - 30 * DAY) },
        ],
        groups: { 'prices.north': [{ key: b64(randomBytes(32)), notBefore: iso(T0 - DAY) }] },
      };
      await writePrivateKeyFile(file, start);
      const notBefore = T0 + HOUR;
      const r = await rotateX25519(file, notBefore, DAY, T0);
      assert.is(r.notBefore, notBefore);
      assert.is(r.secret.length, 32);
      const after = readPrivateKeyFile(file);
      assert.is(fs.statSync(file).mode & 0o777, 0o600);
      assert.is(after.id, 'hub');
      assert.is(after.ed25519, start.ed25519);
      assert.equal(after.groups, start.groups, 'the group keys are kept');
      assert.equal(
        after.x25519.map((e) => e.secret),
        [ending, open, b64(r.secret)],
      );
      assert.equal(after.x25519[0], start.x25519[1], 'a key that ended within the grace period is kept as it was');
      assert.is(after.x25519[1]!.notAfter, iso(notBefore + DAY));
      assert.is(after.x25519[1]!.notBefore, iso(T0 - 30 * DAY));
      assert.equal(after.x25519[2], { secret: b64(r.secret), notBefore: iso(notBefore) });

      // The rotated file loads; the new key takes over at notBefore, the old one still opens until it ends.
      const ring = make(backend, { format: 'heh-keyring/1', peers: {} }, after);
      const newKid = keyId(backend.dhSecret(r.secret).publicKey);
      const openKid = keyId(backend.dhSecret(Buffer.from(open, 'base64url')).publicKey);
      assert.is(ring.currentOwn(T0)?.kid, openKid);
      assert.is(ring.currentOwn(notBefore)?.kid, newKid);
      assert.ok(ring.ownByKid(openKid) !== undefined);
      assert.equal(
        publicEntry(after, backend).x25519.map((e) => e.kid),
        after.x25519.map((e) => keyId(backend.dhSecret(Buffer.from(e.secret, 'base64url')).publicKey)),
      );

      // A second rotation a day and a half later drops "ending" (ended 36 h before, grace 24 h), keeps "open" (ended 1 h ago).
      const r2 = await rotateX25519(file, T0 + 36 * HOUR, DAY, T0 + 26 * HOUR);
      const after2 = readPrivateKeyFile(file);
      assert.equal(
        after2.x25519.map((e) => e.secret),
        [open, b64(r.secret), b64(r2.secret)],
      );
      assert.is(after2.x25519[1]!.notAfter, iso(T0 + 36 * HOUR + DAY));
      assert.is(after2.x25519[0]!.notAfter, iso(notBefore + DAY), 'an ended key keeps its end');
    }),
  );

  kf('rotateX25519 twice, the second before the first key starts: the file still loads', () =>
    inTempDir(async (dir) => {
      const file = path.join(dir, 'hub.key');
      const { privateKey } = generateIdentity('hub', backend, T0 - 10 * DAY);
      await writePrivateKeyFile(file, privateKey);
      const scheduled = await rotateX25519(file, T0 + 30 * DAY, DAY, T0);
      const sooner = await rotateX25519(file, T0 + HOUR, DAY, T0);
      const after = readPrivateKeyFile(file);
      assert.is(after.x25519.length, 3);
      const ring = make(backend, { format: 'heh-keyring/1', peers: {} }, after);
      assert.is(ring.own.length, 3);
      const kid = (s: Uint8Array) => keyId(backend.dhSecret(s).publicKey);
      const firstKid = keyId(backend.dhSecret(Buffer.from(privateKey.x25519[0]!.secret, 'base64url')).publicKey);
      assert.is(ring.currentOwn(T0)?.kid, firstKid);
      assert.is(ring.currentOwn(T0 + HOUR)?.kid, kid(sooner.secret));
      assert.is(
        ring.currentOwn(T0 + 30 * DAY)?.kid,
        kid(scheduled.secret),
        'the scheduled key still takes over when it starts',
      );
      for (const e of after.x25519) {
        if (e.notAfter !== undefined)
          assert.ok(
            Date.parse(e.notAfter) > Date.parse(e.notBefore),
            JSON.stringify({ notBefore: e.notBefore, notAfter: e.notAfter }),
          );
      }
    }),
  );

  kf("rotateX25519 keeps the replaced file's owner, group and group read (root:ebadge 0640 rotated under sudo)", () =>
    inTempDir(async (dir) => {
      const file = path.join(dir, 'hub.key');
      const { privateKey } = generateIdentity('hub', backend, T0);
      await writePrivateKeyFile(file, privateKey);
      fs.chmodSync(file, 0o640);
      // As root, another owner and group, as /etc/ebadge has them; otherwise our own, which is all we may give.
      const root = process.getuid?.() === 0;
      if (root) fs.chownSync(file, 4242, 4343);
      const before = fs.statSync(file);
      await rotateX25519(file, T0 + HOUR, DAY, T0 + HOUR);
      const after = fs.statSync(file);
      assert.is(readPrivateKeyFile(file).x25519.length, 2, 'rotated');
      assert.is(after.ino === before.ino, false, 'a new file (a durable replace)');
      assert.equal([after.uid, after.gid, after.mode & 0o777], [before.uid, before.gid, 0o640]);
      if (root) assert.equal([after.uid, after.gid], [4242, 4343]);
      assert.equal(fs.readdirSync(dir), ['hub.key'], 'no temporary file left behind');
    }),
  );

  kf('rotateX25519 refuses a private file readable by others and leaves it alone', () =>
    inTempDir(async (dir) => {
      const file = path.join(dir, 'hub.key');
      const { privateKey } = generateIdentity('hub', backend, T0);
      await writePrivateKeyFile(file, privateKey);
      fs.chmodSync(file, 0o644);
      await cryptoErrorAsync(rotateX25519(file, T0, DAY, T0), 'KEY_FILE_PERMISSIONS');
      fs.chmodSync(file, 0o600);
      assert.equal(readPrivateKeyFile(file), privateKey);
    }),
  );

  load.run();
  bad.run();
  order.run();
  files.run();
  learn.run();
  kf.run();
}
