/**
 * The HEH-E2E v1 envelope on both backends: round trips in the three modes with the exact overhead, every byte
 * flipped, and each attack the design names refused with its own code: wrong recipient, reflection, swapped key
 * ids, replay, staleness, a forged sender, a sender without the right to a type, a small-order key.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  type CryptoBackend,
  CryptoError,
  generateIdentity,
  Keyring,
  nobleBackend,
  nodeBackend,
  OVERHEAD,
  type OwnEpoch,
  type PrivateKeyFile,
  type PublicEntry,
  ReplayWindow,
  Sealer,
  SequenceReserver,
} from '../../../src/crypto/index.js';
import { cryptoError, cryptoErrorAsync } from '../../helpers/crypto.js';

const T0 = Date.parse('2026-11-26T10:00:00Z');
const GROUP_KEY = Buffer.alloc(32, 9).toString('base64url');

interface Party {
  id: string;
  privateKey: PrivateKeyFile;
  entry: PublicEntry;
}

function party(id: string): Party {
  const { privateKey, publicEntry } = generateIdentity(id, nodeBackend, T0 - 3_600_000);
  return { id, privateKey, entry: publicEntry };
}

const hub = party('hub-1');
const vpp = party('vpp-acme');
const dso = party('dso-north');
const other = party('hub-2');

function peerEntry(p: Party, maySend: string[], mayReceive: string[], topics: string[] = []): Record<string, unknown> {
  return {
    roles: [],
    ed25519: p.entry.ed25519,
    x25519: p.entry.x25519.map(({ pub, notBefore }) => ({ pub, notBefore })),
    maySend,
    mayReceive,
    topics,
  };
}

/** Each party's view: the hub knows the VPP and the DSO; the VPP knows both hubs; the DSO knows the hub. */
function keyringOf(p: Party, backend: CryptoBackend): Keyring {
  const peers: Record<string, unknown> = {};
  const groups: Record<string, unknown> = {};
  if (p === hub || p === other) {
    peers['vpp-acme'] = peerEntry(vpp, ['get_report', 'activate'], ['report', 'accept_activation', 'bid_accepted']);
    peers['dso-north'] = peerEntry(dso, ['load_price'], [], ['prices.north']);
    groups['prices.north'] = [{ key: GROUP_KEY, notBefore: new Date(T0 - 3_600_000).toISOString() }];
  } else if (p === vpp) {
    peers['hub-1'] = peerEntry(hub, ['report', 'accept_activation', 'bid_accepted'], ['get_report', 'activate']);
    peers['hub-2'] = peerEntry(other, ['report'], ['get_report']);
  } else {
    peers['hub-1'] = peerEntry(hub, [], ['load_price']);
    groups['prices.north'] = [{ key: GROUP_KEY, notBefore: new Date(T0 - 3_600_000).toISOString() }];
  }
  return new Keyring(backend, { keyring: { format: 'heh-keyring/1', peers }, privateKey: { ...p.privateKey, groups } });
}

interface World {
  dir: string;
  now: { t: number };
  seal(p: Party): Promise<Sealer>;
}

function world(backend: CryptoBackend): World {
  const dir = mkdtempSync(path.join(tmpdir(), 'heh-e2e-'));
  const now = { t: T0 };
  const sealers = new Map<Party, Sealer>();
  return {
    dir,
    now,
    async seal(p) {
      let s = sealers.get(p);
      if (s === undefined) {
        s = new Sealer({
          keyring: keyringOf(p, backend),
          backend,
          now: () => now.t,
          sequence: await SequenceReserver.open(path.join(dir, `${p.id}.seq`)),
          replay: await ReplayWindow.open(path.join(dir, `${p.id}.replay`)),
        });
        sealers.set(p, s);
      }
      return s;
    },
  };
}

const payload = Buffer.from(
  '{"msg":"get_report","from":"2026-11-26T09:00:00.000Z","to":"2026-11-26T10:00:00.000Z","resolution":900,"signals":["total.p"]}',
);

for (const backend of [nodeBackend, nobleBackend]) {
  const s = suite(`envelope (${backend.name} backend)`);

  s(
    'PAIR: round trip, exact overhead of 140 bytes, sender and type authenticated; commit makes a copy a duplicate',
    async () => {
      const w = world(backend);
      try {
        const [v, h] = [await w.seal(vpp), await w.seal(hub)];
        const env = await v.seal({ peer: 'hub-1' }, 'get_report', payload);
        assert.is(env.length, payload.length + 140);
        assert.is(OVERHEAD.pair, 140);
        const opened = h.open(env);
        assert.is(opened.sender.id, 'vpp-acme');
        assert.is(opened.type, 'get_report');
        assert.is(opened.mode, 'pair');
        assert.is(opened.timestamp, T0);
        assert.is(Buffer.from(opened.payload).toString(), payload.toString());
        assert.not.ok(env.includes(Buffer.from('get_report')), 'the payload is not readable on the wire');
        cryptoError(() => h.open(env), 'DUPLICATE', 'a second copy while the first is in flight');
        await opened.commit();
        cryptoError(() => h.open(env), 'DUPLICATE', 'a redelivery after the commit');
        const next = h.open(await v.seal({ peer: 'hub-1' }, 'get_report', payload));
        assert.ok(next.sequence > opened.sequence);
        next.release();
        assert.is(h.open(Buffer.from(await v.seal({ peer: 'hub-1' }, 'activate', payload))).type, 'activate');
      } finally {
        rmSync(w.dir, { recursive: true, force: true });
      }
    },
  );

  s("SIGNED (124 bytes) and GROUP (140 bytes): broadcasts only the topic's sender can make", async () => {
    const w = world(backend);
    try {
      const [d, h] = [await w.seal(dso), await w.seal(hub)];
      const signed = await d.seal({ topic: 'prices.north' }, 'load_price', payload);
      assert.is(signed.length, payload.length + 124);
      const o1 = h.open(signed);
      assert.is(o1.mode, 'signed');
      assert.is(o1.topic, 'prices.north');
      assert.ok(signed.includes(payload), 'SIGNED is readable, by design');
      const group = await d.seal({ group: 'prices.north' }, 'load_price', payload);
      assert.is(group.length, payload.length + 140);
      const o2 = h.open(group);
      assert.is(o2.mode, 'group');
      assert.is(Buffer.from(o2.payload).toString(), payload.toString());
      // The VPP knows no DSO key: neither broadcast means anything to it.
      const v = await w.seal(vpp);
      cryptoError(() => v.open(group), 'UNKNOWN_SENDER', 'GROUP to a party outside the group');
      cryptoError(() => v.open(signed), 'UNKNOWN_SENDER', 'SIGNED from a sender it does not know');
    } finally {
      rmSync(w.dir, { recursive: true, force: true });
    }
  });

  s('every byte flipped, in the header, the ciphertext and the tag: refused with a CryptoError', async () => {
    const w = world(backend);
    try {
      const [v, h] = [await w.seal(vpp), await w.seal(hub)];
      const env = await v.seal({ peer: 'hub-1' }, 'get_report', payload);
      const codes = new Set<string>();
      for (let i = 0; i < env.length; i++) {
        const bad = Buffer.from(env);
        bad[i] = (bad[i] as number) ^ (1 << (i % 8));
        try {
          h.open(bad);
          assert.unreachable(`byte ${i} flipped: accepted`);
        } catch (err) {
          if (!(err instanceof CryptoError)) throw err;
          codes.add(err.code);
        }
      }
      assert.ok(
        codes.has('BAD_VERSION') &&
          codes.has('DECRYPT_FAILED') &&
          codes.has('UNKNOWN_SENDER') &&
          codes.has('NOT_FOR_US'),
        [...codes].join(),
      );
      const d = await w.seal(dso);
      const signed = await d.seal({ topic: 'prices.north' }, 'load_price', payload);
      for (let i = 0; i < signed.length; i++) {
        const bad = Buffer.from(signed);
        bad[i] = (bad[i] as number) ^ 0x40;
        assert.throws(
          () => h.open(bad),
          (e: unknown) => e instanceof CryptoError && e.code !== 'DUPLICATE',
          `SIGNED byte ${i}`,
        );
      }
      assert.ok(h.open(env) !== undefined, 'the original still opens');
    } finally {
      rmSync(w.dir, { recursive: true, force: true });
    }
  });

  s('wrong recipient, reflection, swapped key ids, truncation, oversize, unknown version and mode', async () => {
    const w = world(backend);
    try {
      const [v, h, o] = [await w.seal(vpp), await w.seal(hub), await w.seal(other)];
      const toHub = await v.seal({ peer: 'hub-1' }, 'get_report', payload);
      cryptoError(() => o.open(toHub), 'NOT_FOR_US', 'a message for hub-1 delivered to hub-2');
      const fromHub = await h.seal({ peer: 'vpp-acme' }, 'report', payload);
      cryptoError(() => h.open(fromHub), 'UNKNOWN_SENDER', 'a message reflected to its sender');
      const swapped = Buffer.from(fromHub);
      fromHub.copy(swapped, 4, 12, 20);
      fromHub.copy(swapped, 12, 4, 12);
      cryptoError(
        () => h.open(swapped),
        'DECRYPT_FAILED',
        'sender and recipient ids swapped: the pair key is directional',
      );
      cryptoError(() => h.open(toHub.subarray(0, 100)), 'TOO_SHORT', 'truncated');
      cryptoError(() => h.open(Buffer.alloc((1 << 20) + 1000)), 'TOO_LARGE', 'oversized');
      const v2 = Buffer.from(toHub);
      v2[0] = 2;
      cryptoError(() => h.open(v2), 'BAD_VERSION', 'version 2');
      const m9 = Buffer.from(toHub);
      m9[1] = 9;
      cryptoError(() => h.open(m9), 'BAD_MODE', 'mode 9');
    } finally {
      rmSync(w.dir, { recursive: true, force: true });
    }
  });

  s(
    'rights: a type the sender may not send, a type the peer does not receive, a topic the sender does not own',
    async () => {
      const w = world(backend);
      try {
        const [v, h, d] = [await w.seal(vpp), await w.seal(hub), await w.seal(dso)];
        // hub-2 may only send report to the VPP; the VPP's keyring refuses hub-2's accept_activation.
        const o = await w.seal(other);
        cryptoError(() => v.open(Buffer.from('x')), 'TOO_SHORT', 'junk');
        await cryptoErrorAsync(
          () => o.seal({ peer: 'vpp-acme' }, 'get_report', payload),
          'TYPE_NOT_ALLOWED',
          'hub-2 keyring: the VPP does not receive get_report',
        );
        await cryptoErrorAsync(
          () => v.seal({ peer: 'hub-1' }, 'report', payload),
          'TYPE_NOT_ALLOWED',
          'the hub does not receive report',
        );
        await cryptoErrorAsync(
          () => v.seal({ peer: 'nobody' }, 'get_report', payload),
          'NO_KEY_FOR_PEER',
          'no such peer',
        );
        await cryptoErrorAsync(
          () => v.seal({ group: 'prices.north' }, 'load_price', payload),
          'NO_KEY_FOR_PEER',
          'the VPP has no group key',
        );
        const allowed = await h.seal({ peer: 'vpp-acme' }, 'accept_activation', payload);
        assert.is(v.open(allowed).type, 'accept_activation');
        // hub-2's keyring lets it seal accept_activation to the VPP, but the VPP's keyring allows hub-2 only reports.
        const sneaky = await o.seal({ peer: 'vpp-acme' }, 'accept_activation', payload);
        cryptoError(() => v.open(sneaky), 'TYPE_NOT_ALLOWED', 'a type the receiver does not accept from this sender');
        // The DSO signs a topic the hub does not know it for: refused before the signature is even checked.
        const rogueTopic = await d.seal({ topic: 'prices.south' }, 'load_price', payload);
        cryptoError(() => h.open(rogueTopic), 'NOT_FOR_US', 'a topic the DSO does not own');
      } finally {
        rmSync(w.dir, { recursive: true, force: true });
      }
    },
  );

  s('replay window and freshness: too old, stale, from the future; reports may wait longer than commands', async () => {
    const w = world(backend);
    try {
      const [v, h] = [await w.seal(vpp), await w.seal(hub)];
      const first = await v.seal({ peer: 'hub-1' }, 'get_report', payload);
      const later: Buffer[] = [];
      for (let i = 0; i < 70; i++) later.push(await v.seal({ peer: 'hub-1' }, 'get_report', payload));
      await h.open(later[69] as Buffer).commit();
      cryptoError(() => h.open(first), 'REPLAYED', 'older than the 64-wide window');
      await h.open(later[10] as Buffer).commit(); // within the window, out of order: fine
      w.now.t = T0 + 6 * 60_000;
      cryptoError(() => h.open(later[20] as Buffer), 'STALE', 'a command 6 minutes old');
      w.now.t = T0 - 2 * 60_000;
      cryptoError(() => h.open(later[21] as Buffer), 'FROM_THE_FUTURE', 'a command 2 minutes ahead of our clock');
      w.now.t = T0;
      const report = await h.seal({ peer: 'vpp-acme' }, 'report', payload);
      const result = await h.seal({ peer: 'vpp-acme' }, 'bid_accepted', payload);
      w.now.t = T0 + 3 * 3_600_000;
      assert.is(v.open(report).type, 'report', 'a report 3 hours old is still accepted');
      assert.is(v.open(result).type, 'bid_accepted', "so is a market's result");
    } finally {
      rmSync(w.dir, { recursive: true, force: true });
    }
  });

  s(
    'a peer numbering one message 2^48-1 is heard again from its next later message; that one stays refused',
    async () => {
      const w = world(backend);
      try {
        const [v, h] = [await w.seal(vpp), await w.seal(hub)];
        const numbered = (seq: bigint): Sealer =>
          new Sealer({
            keyring: keyringOf(vpp, backend),
            backend,
            now: () => w.now.t,
            sequence: { take: async () => seq },
            replay: { check: () => 'new', accept: () => undefined, persist: async () => undefined },
          });
        await h.open(await v.seal({ peer: 'hub-1' }, 'get_report', payload)).commit();
        // Instance 0's last number (a seq's top 16 bits number the instance of a sender that runs as several).
        const huge = await numbered((1n << 48n) - 1n).seal({ peer: 'hub-1' }, 'get_report', payload);
        await h.open(huge).commit();
        const same = await v.seal({ peer: 'hub-1' }, 'get_report', payload);
        cryptoError(() => h.open(same), 'REPLAYED', 'the same millisecond as the 2^48-1: it could be a replay');
        w.now.t = T0 + 1;
        const next = await v.seal({ peer: 'hub-1' }, 'get_report', payload);
        await h.open(next).commit();
        cryptoError(() => h.open(next), 'DUPLICATE', 'the window goes on from it');
        cryptoError(() => h.open(huge), 'REPLAYED', 'the 2^48-1 message replayed');
        const zero = await numbered(0n).seal({ peer: 'hub-1' }, 'get_report', payload);
        const e = cryptoError(() => h.open(zero), 'REPLAYED', 'sequence 0');
        assert.match(e.message, 'sequence 0, which is never sent (sequences start at 1)');
      } finally {
        rmSync(w.dir, { recursive: true, force: true });
      }
    },
  );

  s('one party as two instances, each numbering with its own instance: the receiver refuses neither', async () => {
    const w = world(backend);
    try {
      const h = await w.seal(hub);
      const instance = async (file: string, name?: string): Promise<Sealer> =>
        new Sealer({
          keyring: keyringOf(vpp, backend),
          backend,
          now: () => w.now.t,
          sequence: await SequenceReserver.open(path.join(w.dir, file), { instance: name }),
          replay: { check: () => 'new', accept: () => undefined, persist: async () => undefined },
        });
      const [a, b] = [await instance('a.seq', 'vpp-acme-1'), await instance('b.seq', 'vpp-acme-2')];
      // In the same millisecond (or with clocks a few apart): no timestamp newer than all to start a window again.
      for (let i = 0; i < 100; i++) {
        await h.open(await a.seal({ peer: 'hub-1' }, 'get_report', payload)).commit();
        await h.open(await b.seal({ peer: 'hub-1' }, 'get_report', payload)).commit();
      }
      // Without instances their counters overlap: the second's numbers are behind the first's window.
      w.now.t = T0 + 200;
      const [c, d] = [await instance('c.seq'), await instance('d.seq')];
      for (let i = 0; i < 100; i++) await h.open(await c.seal({ peer: 'hub-1' }, 'get_report', payload)).commit();
      const overlapping = await d.seal({ peer: 'hub-1' }, 'get_report', payload);
      cryptoError(() => h.open(overlapping), 'REPLAYED', 'numbered as the first instance was 99 messages ago');
    } finally {
      rmSync(w.dir, { recursive: true, force: true });
    }
  });

  s('the replay state survives a restart: a message handled before is a duplicate after', async () => {
    const w = world(backend);
    try {
      const v = await w.seal(vpp);
      const env = await v.seal({ peer: 'hub-1' }, 'get_report', payload);
      const mk = async (): Promise<Sealer> =>
        new Sealer({
          keyring: keyringOf(hub, backend),
          backend,
          now: () => w.now.t,
          sequence: await SequenceReserver.open(path.join(w.dir, 'hub-restart.seq')),
          replay: await ReplayWindow.open(path.join(w.dir, 'hub-restart.replay')),
        });
      await (await mk()).open(env).commit();
      const restarted = await mk();
      cryptoError(() => restarted.open(env), 'DUPLICATE', 'after a restart');
    } finally {
      rmSync(w.dir, { recursive: true, force: true });
    }
  });

  s(
    'rotation: a key_update announces a new X25519 key; traffic moves to it after notBefore; the old key still opens',
    async () => {
      const w = world(backend);
      try {
        const [v, h] = [await w.seal(vpp), await w.seal(hub)];
        const oldKid = h.keyring.currentOwn(T0)?.kid;
        const beforeRotation = await v.seal({ peer: 'hub-1' }, 'get_report', payload);
        const epoch = h.keyring.addOwnSecret(Buffer.alloc(32, 0x42), T0 + 60_000, undefined);
        const learned: string[] = [];
        const v2 = new Sealer({
          keyring: v.keyring,
          backend,
          now: () => w.now.t,
          onKeyLearned: (peer, u) => learned.push(`${peer.id}@${u.notBefore}`),
          sequence: await SequenceReserver.open(path.join(w.dir, `${vpp.id}.seq`)),
          replay: await ReplayWindow.open(path.join(w.dir, 'vpp2.replay')),
        });
        // Another peer of the VPP announces the hub's new public key as its own: it cannot prove it holds the
        // secret, so the key is not taken (first come, it would have locked the hub out), with a proof made up or
        // one of its own key's, or none.
        const o = await w.seal(other);
        const claim = (proof: string | undefined): Buffer =>
          Buffer.from(
            JSON.stringify({
              msg: 'key_update',
              x25519: Buffer.from(epoch.secret.publicKey).toString('base64url'),
              notBefore: new Date(T0 + 60_000).toISOString(),
              ...(proof === undefined ? {} : { proof }),
            }),
          );
        const ownProof = JSON.parse(
          o.keyUpdatePayload('vpp-acme', o.keyring.currentOwn(T0) as OwnEpoch).toString(),
        ) as { proof: string };
        for (const proof of [Buffer.alloc(32, 7).toString('base64url'), ownProof.proof, undefined]) {
          const squat = await o.seal({ peer: 'vpp-acme' }, 'key_update', claim(proof));
          const e = cryptoError(() => v2.open(squat), 'BAD_KEY', 'a key claimed without proof');
          assert.match(e.message, 'hub-2 does not prove it holds the key it announces');
        }
        assert.equal(learned, []);
        const update = v2.open(await h.seal({ peer: 'vpp-acme' }, 'key_update', h.keyUpdatePayload('vpp-acme', epoch)));
        assert.is(update.type, 'key_update');
        assert.equal(learned, [`hub-1@${T0 + 60_000}`]);
        assert.is(
          v2.keyring.currentPeer(v2.keyring.peers.get('hub-1') as never, T0)?.kid,
          oldKid,
          'not before notBefore',
        );
        w.now.t = T0 + 120_000;
        const afterRotation = await v2.seal({ peer: 'hub-1' }, 'get_report', payload);
        assert.is(afterRotation.toString('hex', 12, 20), epoch.kid, 'sealed to the new key');
        assert.is(h.open(afterRotation).type, 'get_report');
        assert.is(
          h.open(beforeRotation).type,
          'get_report',
          'still queued under the old key: opens during the grace period',
        );
        const forged = Buffer.from(
          await h.seal({ peer: 'vpp-acme' }, 'key_update', Buffer.from('{"msg":"key_update","x25519":"short"}')),
        );
        cryptoError(() => v2.open(forged), 'BAD_KEY', 'a malformed key_update');
        // Times as strict as the keyring file's, and a period that ends after it begins: BAD_KEY, nothing learned.
        const epoch2 = h.keyring.addOwnSecret(Buffer.alloc(32, 0x43), T0 + 60_000, undefined);
        const honest = JSON.parse(h.keyUpdatePayload('vpp-acme', epoch2).toString()) as Record<string, unknown>;
        for (const [what, change, message] of [
          ['a year past 9999', { notBefore: '+099999-01-01T00:00:00Z' }, 'is malformed'],
          ['no offset', { notBefore: '2026-12-04T10:00:00' }, 'is malformed'],
          ['notAfter not a time', { notAfter: 'soon' }, 'is malformed'],
          ['an end before the start', { notAfter: new Date(T0).toISOString() }, 'is not after notBefore'],
        ] as const) {
          const bad = await h.seal(
            { peer: 'vpp-acme' },
            'key_update',
            Buffer.from(JSON.stringify({ ...honest, ...change })),
          );
          const e = cryptoError(() => v2.open(bad), 'BAD_KEY', what);
          assert.match(e.message, message, what);
        }
        assert.equal(learned, [`hub-1@${T0 + 60_000}`], 'none of them learned');
        // notAfter null, as other languages write a field without a value: no end, as when it is left out.
        const open = await h.seal(
          { peer: 'vpp-acme' },
          'key_update',
          Buffer.from(JSON.stringify({ ...honest, notAfter: null })),
        );
        assert.is(v2.open(open).keyUpdate?.learned, true);
      } finally {
        rmSync(w.dir, { recursive: true, force: true });
      }
    },
  );

  s.run();
}

const mixed = suite('envelope across backends');

mixed('sealed with node:crypto, opened with noble, and the other way round', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'heh-e2e-'));
  try {
    const make = async (p: Party, backend: CryptoBackend): Promise<Sealer> =>
      new Sealer({
        keyring: keyringOf(p, backend),
        backend,
        now: () => T0,
        sequence: await SequenceReserver.open(path.join(dir, `${p.id}-${backend.name}.seq`)),
        replay: await ReplayWindow.open(path.join(dir, `${p.id}-${backend.name}.replay`)),
      });
    const [vNode, hNoble, hNode, vNoble] = [
      await make(vpp, nodeBackend),
      await make(hub, nobleBackend),
      await make(hub, nodeBackend),
      await make(vpp, nobleBackend),
    ];
    assert.is(
      Buffer.from(hNoble.open(await vNode.seal({ peer: 'hub-1' }, 'activate', payload)).payload).toString(),
      payload.toString(),
    );
    assert.is(
      Buffer.from(vNoble.open(await hNode.seal({ peer: 'vpp-acme' }, 'report', payload)).payload).toString(),
      payload.toString(),
    );
    assert.throws(
      () =>
        new Sealer({
          keyring: keyringOf(hub, nodeBackend),
          backend: nobleBackend,
          sequence: { take: async () => 1n },
          replay: { check: () => 'new', accept: () => undefined, persist: async () => undefined },
        }),
      /backend/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

mixed.run();
