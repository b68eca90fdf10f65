/**
 * The hub and key rotation (docs/crypto.md, "Rotation"), without a broker: a sealing hub announces its keys before
 * anything else when it registers, and the keys a peer announces are kept in the hub state and given back to the
 * keyring at the next start, so that what the peer seals with its new key still opens after a restart.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { ManualClock } from '../../../src/bus/index.js';
import {
  generateIdentity,
  KEY_UPDATE,
  Keyring,
  KNOWN_TYPES,
  nodeBackend,
  type OwnEpoch,
  type PublicEntry,
  Sealer,
} from '../../../src/crypto/index.js';
import { keepPeerKey, restorePeerKeys } from '../../../src/device/peer-keys.js';
import { memoryReplay, soon, until } from '../../helpers/memory-bus.js';
import { AGG, HEH, type HubRig, hubRig, T0 } from '../../helpers/memory-hub.js';

const MINUTE = 60_000;

const entry = (e: PublicEntry): Record<string, unknown> => ({
  ed25519: e.ed25519,
  x25519: e.x25519.map(({ pub, notBefore }) => ({ pub, notBefore })),
  maySend: KNOWN_TYPES,
  mayReceive: KNOWN_TYPES,
});

/** A sealing hub and VPP: the hub's keyring is loaded afresh at every start, as main.ts loads it. */
async function sealedRig(
  options: { restore?: boolean; rotating?: boolean } = {},
): Promise<HubRig & { vppKeyring: Keyring }> {
  let clock: ManualClock | undefined;
  const now = (): number => clock?.now() ?? T0;
  const heh = generateIdentity(HEH, nodeBackend, T0 - 60_000);
  if (options.rotating === true) {
    // The hub's key file as keyring rotate leaves it: a new key from T0 + 1 min, the first ending a day later.
    const first = heh.privateKey.x25519[0] as { secret: string; notBefore: string; notAfter?: string };
    first.notAfter = new Date(T0 + MINUTE + 24 * 60 * MINUTE).toISOString();
    heh.privateKey.x25519.push({
      secret: Buffer.alloc(32, 9).toString('base64url'),
      notBefore: new Date(T0 + MINUTE).toISOString(),
    });
  }
  const agg = generateIdentity(AGG, nodeBackend, T0 - 60_000);
  const vppKeyring = new Keyring(nodeBackend, {
    keyring: { format: 'heh-keyring/1', peers: { [HEH]: entry(heh.publicEntry) } },
    privateKey: agg.privateKey,
  });
  let hubSeq = 0n;
  let vppSeq = 0n;
  const hubReplay = memoryReplay();
  const rig = await hubRig({
    sealing: {
      vpp: new Sealer({
        keyring: vppKeyring,
        backend: nodeBackend,
        now,
        sequence: { take: async () => ++vppSeq },
        replay: memoryReplay(),
      }),
      hub: async (store, log) => {
        const keyring = new Keyring(nodeBackend, {
          keyring: { format: 'heh-keyring/1', peers: { [AGG]: entry(agg.publicEntry) } },
          privateKey: heh.privateKey,
        });
        if (options.restore !== false) await restorePeerKeys(keyring, store, log, now());
        return new Sealer({
          keyring,
          backend: nodeBackend,
          now,
          sequence: { take: async () => ++hubSeq },
          replay: hubReplay,
          onKeyLearned: keepPeerKey(keyring, store),
        });
      },
    },
  });
  clock = rig.clock;
  return Object.assign(rig, { vppKeyring });
}

const s = suite('hub: keys');

s('registration: the hub announces its keys to the peer before capabilities', async () => {
  const rig = await sealedRig();
  try {
    const types = rig.bus.transport.sent.map((m) => m.properties.type);
    assert.is(types[0], KEY_UPDATE);
    assert.is(types.indexOf('capabilities'), 1, types.join(' '));
    assert.ok(
      rig.vpp.transport.settlements.every((x) => x.outcome === 'ack'),
      'the VPP took it and everything after',
    );
  } finally {
    await rig.close();
  }
});

s('while a rotation runs, the hub announces its keys again every hour; once the old key ended, no more', async () => {
  const rig = await sealedRig({ rotating: true });
  try {
    const announcements = (): number => rig.bus.transport.sent.filter((m) => m.properties.type === KEY_UPDATE).length;
    assert.is(announcements(), 2, 'both keys, at the registration');
    await rig.clock.advance(60 * MINUTE);
    await until(() => announcements() === 4);
    await rig.clock.advance(24 * 60 * MINUTE);
    const after = announcements();
    await rig.clock.advance(120 * MINUTE);
    assert.is(announcements(), after, 'one key left: nothing more to announce');
  } finally {
    await rig.close();
  }
});

for (const restore of [true, false]) {
  s(
    restore
      ? "a peer's announced key is kept in the hub state: after a restart, what it seals with it still opens"
      : 'without giving the kept keys back at start, the same request is refused (the check above can fail)',
    async () => {
      const rig = await sealedRig({ restore });
      try {
        // As keyring rotate leaves the VPP's key file: a new key from T0 + 1 min, the old one ending at T0 + 2 min.
        const old = rig.vppKeyring.own[0] as OwnEpoch;
        rig.vppKeyring.own[0] = { ...old, notAfter: T0 + 2 * MINUTE };
        const next = rig.vppKeyring.addOwnSecret(Buffer.alloc(32, 5), T0 + MINUTE, undefined);
        await rig.vpp.announceKeys([HEH]);
        // Kept: the new key, and the end the rotation gave the key of the hub's keyring file.
        await until(() => rig.store.state.peerKeys.length === 2);
        const b64 = (k: Uint8Array): string => Buffer.from(k).toString('base64url');
        assert.equal(
          [...rig.store.state.peerKeys].sort((a, b) => a.notBefore - b.notBefore),
          [
            { peer: AGG, x25519: b64(old.secret.publicKey), notBefore: old.notBefore, notAfter: T0 + 2 * MINUTE },
            { peer: AGG, x25519: b64(next.secret.publicKey), notBefore: T0 + MINUTE },
          ],
        );
        await rig.restart();
        // The old key ended: the VPP seals with the new one.
        await rig.clock.advance(2 * MINUTE + 1000);
        const dead: string[] = [];
        rig.bus.on('dead-letter', (_r, code) => dead.push(code));
        const answer = rig.vpp.request(
          HEH,
          { msg: 'get_capabilities', device: null, request_id: '6f1c2e9a-1111-4222-8333-000000000001' },
          { timeout: 2000 },
        );
        if (restore) {
          assert.is((await soon(answer)).msg, 'capabilities');
          assert.equal(dead, []);
        } else {
          answer.catch(() => undefined);
          await until(() => dead.length === 1);
          assert.equal(dead, ['UNKNOWN_SENDER']);
        }
      } finally {
        await rig.close();
      }
    },
  );
}

s.run();
