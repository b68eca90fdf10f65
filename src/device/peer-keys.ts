/**
 * The keys peers announced with a sealed key_update (docs/crypto.md, "Rotation"), kept in the hub state so that a
 * restart does not forget them: forgotten, a peer's messages sealed with its new key would be refused (no peer has
 * that key id) until it announces again, at its next connection.
 */
import { type Keyring, type KeyUpdate, keyId, type Peer } from '../crypto/index.js';
import type { Logger } from './log.js';
import type { PeerKey, StateStore } from './state.js';

/**
 * Gives the keyring the keys kept from earlier runs. One the keyring refuses now (its peer is gone from the keyring,
 * its id is taken by a key the keyring file gives, too many keys) is logged and dropped from the state.
 */
export async function restorePeerKeys(keyring: Keyring, store: StateStore, log: Logger, now: number): Promise<void> {
  const dropped: string[] = [];
  for (const k of store.state.peerKeys) {
    const peer = keyring.peers.get(k.peer);
    try {
      if (peer === undefined) throw new Error('no such peer in the keyring');
      keyring.learn(peer, Buffer.from(k.x25519, 'base64url'), k.notBefore, k.notAfter, now);
    } catch (err) {
      dropped.push(`${k.peer} ${k.x25519}: ${(err as Error).message}`);
    }
  }
  if (dropped.length > 0) log.warn('announced peer keys dropped', { keys: dropped });
  // Those the keyring no longer holds (refused, or ended and pruned) leave the state too.
  if (dropped.length > 0 || store.state.peerKeys.some((k) => !held(keyring, k)))
    await store.update((s) => {
      s.peerKeys = s.peerKeys.filter((k) => held(keyring, k));
    });
}

/** SealerOptions.onKeyLearned: the key goes into the state (and any the keyring pruned for it out); resolves once written. */
export function keepPeerKey(keyring: Keyring, store: StateStore): (peer: Peer, update: KeyUpdate) => Promise<void> {
  return (peer, update) =>
    store.update((s) => {
      const x25519 = Buffer.from(update.x25519).toString('base64url');
      // A key already kept whose end was brought forward is replaced.
      s.peerKeys = s.peerKeys.filter((k) => held(keyring, k) && !(k.peer === peer.id && k.x25519 === x25519));
      s.peerKeys.push({
        peer: peer.id,
        x25519,
        notBefore: update.notBefore,
        ...(update.notAfter === undefined ? {} : { notAfter: update.notAfter }),
      });
    });
}

function held(keyring: Keyring, k: PeerKey): boolean {
  return keyring.peerByKid(keyId(Buffer.from(k.x25519, 'base64url')))?.peer.id === k.peer;
}
