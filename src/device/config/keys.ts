/**
 * The peers and the keyring, checked as the run uses them, by `check-config` and by the run before anything starts
 * (the same sentence, exit 78). With crypto on, a message to or from a peer the keyring has no keys for goes in
 * clear text (the bus seals only for peers with keys): a peer left out of the keyring by mistake would silently lose
 * its sealing, so that is a configuration error unless the peer says `"clearText": true`. Keys for a peer hub.json
 * does not name are unused, a sign of a typo or a stale keyring: a warning, which check-config prints and the run logs.
 */
import { allowsNothing, Keyring, selectBackend } from '../../crypto/index.js';
import { ConfigError, type HubConfig } from './types.js';

/** Warnings for the operator; throws ConfigError for a peer without keys (and CryptoError for a keyring that is not one). */
export function checkPeerKeys(config: HubConfig, file: string): string[] {
  const crypto = config.crypto;
  if (crypto === undefined) return [];
  const keyring = Keyring.load(crypto.keyring, crypto.privateKey, selectBackend(crypto.backend));
  config.peers.forEach((p, i) => {
    if (keyring.peers.has(p.name) || p.clearText === true) return;
    throw new ConfigError(
      file,
      `$.peers[${i}]`,
      `keys for ${p.name} in the keyring (crypto is on: without them its messages go and are accepted in clear text), or "clearText": true to allow that`,
      `no keys for ${p.name} in ${crypto.keyring}`,
    );
  });
  const warnings: string[] = [];
  for (const p of config.peers) {
    const peer = keyring.peers.get(p.name);
    const inert = peer === undefined ? undefined : allowsNothing(peer);
    if (inert !== undefined) warnings.push(`${crypto.keyring}: ${inert}`);
  }
  const unknown = [...keyring.peers.keys()].filter((name) => !config.peers.some((p) => p.name === name));
  if (unknown.length > 0)
    warnings.push(
      `${crypto.keyring} has keys for peer(s) hub.json does not name: ${unknown.join(', ')}; unused (add them to $.peers, or remove them from the keyring)`,
    );
  return warnings;
}
