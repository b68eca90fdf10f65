/**
 * Key rotation over the bus (docs/crypto.md, "Rotation"), on the in-memory transport: announceKeys() sends a sealed
 * key_update per key of ours that has not ended, sealed with the key the peer knows; the receiver learns the key,
 * acks, and neither answers nor hands it to a handler; a key kept by onKeyLearned is acked only once kept.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CONTENT_TYPE_SEALED, type MemoryTransport } from '../../../src/bus/index.js';
import { EbTime, type Message } from '../../../src/codec/index.js';
import {
  KEY_UPDATE,
  type Keyring,
  MAX_PEER_KEYS,
  type OwnEpoch,
  type SealerOptions,
} from '../../../src/crypto/index.js';
import { HUB, pair, sealers, until, VPP } from '../../helpers/memory-bus.js';

const s = suite('bus: key_update');
const T0 = Date.UTC(2026, 0, 1);
const HOUR = 3_600_000;

/** A hub that may send reports to a VPP, both sealing; `now` moves the sealers' clock. */
function rig(vppOptions: Pick<SealerOptions, 'onKeyLearned'> = {}) {
  const now = { t: T0 };
  const keys = sealers(HUB, VPP, ['report', 'response'], ['get_report'], () => now.t, vppOptions);
  const p = pair({ hub: { sealer: keys.a }, vpp: { sealer: keys.b } });
  const learned: [string, string, boolean][] = [];
  p.vpp.on('key-update', (sender, kid, isNew) => learned.push([sender, kid, isNew]));
  const reports: string[] = [];
  p.vpp.onReport((_m, ctx) => {
    reports.push(ctx.sender);
  });
  const dead: string[] = [];
  p.vpp.on('dead-letter', (_reason, code) => dead.push(code));
  return { ...p, now, keys, learned, reports, dead };
}

const report = (): Message =>
  ({
    msg: 'report',
    from: EbTime.fromEpochMs(T0),
    to: EbTime.fromEpochMs(T0 + 900_000),
    resolution: 900,
    values: { 'meter.p': [1] },
  }) as unknown as Message;

const senderKid = (t: MemoryTransport, i: number): string => Buffer.from(t.sent[i]?.body ?? []).toString('hex', 4, 12);

/**
 * As `keyring rotate` leaves the key file, in the running keyring: a new key in force from `notBefore`, and the keys
 * in force now end a day after it (their grace).
 */
function rotate(keyring: Keyring, notBefore: number, seed: number): OwnEpoch {
  keyring.own.forEach((e, i) => {
    if (e.notAfter === undefined) keyring.own[i] = { ...e, notAfter: notBefore + 24 * HOUR };
  });
  return keyring.addOwnSecret(Buffer.alloc(32, seed), notBefore, undefined);
}

s(
  'a key announced before it is in force: learned, acked, unanswered; traffic moves to it once the old key ended',
  async () => {
    const r = rig();
    const oldKid = r.keys.a.keyring.currentOwn(r.now.t)?.kid as string;
    const next = rotate(r.keys.a.keyring, T0 + HOUR, 7);
    await r.vpp.start();
    await r.hub.start();
    await r.hub.announceKeys();
    await until(() => r.learned.length === 2);
    // Both keys not ended are announced: the new one is learned, and the one the VPP knew from its keyring gets the
    // end the rotation gave it (both change what the VPP knew).
    assert.equal(
      r.learned.map(([, kid, changed]) => `${kid}:${changed}`).sort(),
      [`${oldKid}:true`, `${next.kid}:true`].sort(),
    );
    assert.is(r.keys.b.keyring.peerByKid(oldKid)?.epoch.notAfter, T0 + 25 * HOUR);
    const sent = r.hub.transport.sent;
    assert.equal(
      sent.map((m) => [m.routingKey, m.properties.type, m.properties.contentType]),
      [
        [KEY_UPDATE, KEY_UPDATE, CONTENT_TYPE_SEALED],
        [KEY_UPDATE, KEY_UPDATE, CONTENT_TYPE_SEALED],
      ],
    );
    assert.equal(
      [senderKid(r.hub.transport, 0), senderKid(r.hub.transport, 1)],
      [oldKid, oldKid],
      'sealed with the key the VPP knows',
    );
    assert.equal(r.vpp.transport.sent, [], 'a key_update is never answered');
    assert.equal(
      r.vpp.transport.settlements.map((x) => x.outcome),
      ['ack', 'ack'],
    );
    // The new key in force: the old one still seals while it runs out its grace (every peer knows it)...
    r.now.t = T0 + HOUR + 1000;
    await r.hub.publish(VPP, report());
    await until(() => r.reports.length === 1);
    assert.is(senderKid(r.hub.transport, 2), oldKid);
    // ... and once it ended, the new one, which the VPP learned.
    r.now.t = T0 + 25 * HOUR + 1000;
    await r.hub.publish(VPP, report());
    await until(() => r.reports.length === 2);
    assert.is(senderKid(r.hub.transport, 3), next.kid);
    assert.equal(r.dead, []);
    await r.hub.close();
    await r.vpp.close();
  },
);

s(
  'twenty rotations a month apart, each announced: the peer keeps only the keys that have not ended long ago, and opens every report',
  async () => {
    const r = rig();
    await r.vpp.start();
    await r.hub.start();
    const vppView = r.keys.b.keyring.peers.get(HUB);
    for (let i = 1; i <= 20; i++) {
      const at = T0 + i * 30 * 24 * HOUR;
      r.now.t = at - HOUR;
      rotate(r.keys.a.keyring, at, i);
      // The ended keys of the hub's own file are dropped there, as keyring rotate drops them.
      const live = r.keys.a.keyring.own.filter((e) => e.notAfter === undefined || e.notAfter > r.now.t);
      r.keys.a.keyring.own.splice(0, r.keys.a.keyring.own.length, ...live);
      const [sentBefore, seenBefore] = [r.hub.transport.sent.length, r.learned.length];
      await r.hub.announceKeys();
      const announced = r.hub.transport.sent.length - sentBefore;
      await until(() => r.learned.length === seenBefore + announced, 400);
      r.now.t = at + 25 * HOUR;
      await r.hub.publish(VPP, report());
      await until(() => r.reports.length === i, 400);
    }
    assert.equal(r.dead, []);
    // The end a rotation gives the old key reaches the peer with the announcement: ended keys make room (they were
    // kept without an end, and the 16th rotation was refused BAD_KEY, then every report UNKNOWN_SENDER).
    const epochs = vppView?.epochs ?? [];
    assert.ok(epochs.length <= MAX_PEER_KEYS, `${epochs.length} keys kept`);
    assert.ok(epochs.filter((e) => e.notAfter === undefined || e.notAfter > r.now.t - 24 * HOUR).length <= 2);
    await r.hub.close();
    await r.vpp.close();
  },
);

s(
  'a key already in force (rotated, then restarted) is announced under the old key, still open in its grace',
  async () => {
    const r = rig();
    const oldKey = r.keys.a.keyring.currentOwn(r.now.t);
    // As `keyring rotate` leaves the file: the old key ends a day after the new one starts, which is now.
    r.keys.a.keyring.own.splice(0, 1, { ...(oldKey as NonNullable<typeof oldKey>), notAfter: T0 + 24 * HOUR });
    const next = r.keys.a.keyring.addOwnSecret(Buffer.alloc(32, 9), T0 - 1000, undefined);
    assert.is(r.keys.a.keyring.currentOwn(r.now.t)?.kid, next.kid, 'the new key is the one in force');
    await r.vpp.start();
    await r.hub.start();
    await r.hub.announceKeys([VPP]);
    await until(() => r.learned.length === 2);
    assert.ok(r.learned.some(([, kid, isNew]) => kid === next.kid && isNew));
    await r.hub.publish(VPP, report());
    await until(() => r.reports.length === 1);
    assert.equal(r.dead, []);
    await r.hub.close();
    await r.vpp.close();
  },
);

s(
  'a learned key is acked only once onKeyLearned kept it; a hook that failed is called again on the next copy',
  async () => {
    let failures = 1;
    const kept: string[] = [];
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const r = rig({
      onKeyLearned: async (_peer, update) => {
        if (failures-- > 0) throw new Error('disk full');
        await held;
        kept.push(Buffer.from(update.x25519).toString('hex'));
      },
    });
    const errors: string[] = [];
    r.vpp.on('handler-error', (err, type) => errors.push(`${type}: ${(err as Error).message}`));
    const next = r.keys.a.keyring.addOwnSecret(Buffer.alloc(32, 7), T0 + HOUR, undefined);
    await r.vpp.start();
    await r.hub.start();
    await r.hub.announceKeys();
    await until(() => errors.length >= 1);
    assert.equal(errors, ['key_update: disk full']);
    const outcomes = (): string[] => r.vpp.transport.settlements.map((x) => x.outcome);
    // The redelivered copy: the key is known in memory now, but it was not kept, so the hook runs again and the ack
    // waits for it.
    await until(() => outcomes().filter((o) => o === 'ack').length === 1);
    assert.ok(outcomes().includes('retry'), 'the first copy was given back, not acked');
    assert.is(outcomes().filter((o) => o === 'ack').length, 1, 'only the key already in the keyring file acked');
    release();
    await until(() => outcomes().filter((o) => o === 'ack').length === 2);
    assert.equal(kept, [Buffer.from(next.secret.publicKey).toString('hex')]);
    assert.equal(r.vpp.transport.sent, []);
    await r.hub.close();
    await r.vpp.close();
  },
);

s('announceKeys: a peer that is not configured is UNKNOWN_PEER; without a sealer nothing is sent', async () => {
  const r = rig();
  await r.hub.start();
  const refused = await r.hub.announceKeys(['nobody']).then(
    () => 'sent',
    (err: Error) => err.message,
  );
  assert.is(refused, '"nobody" is not a configured peer of heh-unit');
  const clear = pair();
  await clear.hub.start();
  await clear.hub.announceKeys();
  assert.equal(clear.hub.transport.sent, []);
  await clear.hub.close();
  await r.hub.close();
});

s.run();
