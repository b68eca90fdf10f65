/**
 * End-to-end sealing of eBADGE messages (docs/crypto.md §6, "HEH-E2E v1"): the broker can neither read nor forge
 * them. `Sealer` seals and opens envelopes; `Keyring` loads who is who; `selectBackend` picks node:crypto where
 * the running Node has it, noble otherwise (or as asked).
 */
import type { CryptoBackend } from './backend.js';
import { CryptoError } from './errors.js';
import { nobleBackend } from './noble-backend.js';
import { nodeBackend, nodeCryptoAvailable } from './node-backend.js';

export type { BackendName, CryptoBackend, DhPublic, DhSecret, SigningKey, VerifyKey } from './backend.js';
export { CryptoError, type CryptoErrorCode } from './errors.js';
export {
  Keyring,
  checkIdentityKey,
  keyId,
  topicId,
  groupKeyId,
  type Peer,
  type PeerEpoch,
  type OwnEpoch,
  type GroupKey,
} from './keyring.js';
export {
  Sealer,
  OVERHEAD,
  HEADER_BYTES,
  type Destination,
  type KeyUpdate,
  type Mode,
  type Opened,
  type ReplayGuard,
  type SealerOptions,
  type SequenceSource,
} from './envelope.js';
export { SequenceReserver, ReplayWindow, ReplayStateError } from './replay.js';
export {
  generateIdentity,
  publicEntry,
  readPrivateKeyFile,
  rotateX25519,
  writePrivateKeyFile,
  type PrivateKeyFile,
  type PublicEntry,
} from './keyfile.js';
export { KEY_UPDATE, KNOWN_TYPES, typeCode, typeName } from './types.js';
export { nodeBackend, nobleBackend };

let nodeOk: boolean | undefined;

/** `auto` (the default): node:crypto when this Node has Ed25519, X25519 and ChaCha20-Poly1305, else noble. */
export function selectBackend(choice: 'auto' | 'node' | 'noble' = 'auto'): CryptoBackend {
  if (choice === 'noble') return nobleBackend;
  nodeOk ??= nodeCryptoAvailable();
  if (choice === 'node' && !nodeOk)
    throw new CryptoError('BACKEND_UNAVAILABLE', 'this Node lacks Ed25519, X25519 or ChaCha20-Poly1305 in node:crypto');
  return nodeOk ? nodeBackend : nobleBackend;
}
