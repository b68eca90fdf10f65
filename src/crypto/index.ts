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
export {
  type Destination,
  HEADER_BYTES,
  type KeyUpdate,
  type Mode,
  type Opened,
  OVERHEAD,
  type ReplayGuard,
  SealedBody,
  Sealer,
  type SealerOptions,
  type SequenceSource,
} from './envelope.js';
export { CryptoError, type CryptoErrorCode } from './errors.js';
export {
  generateIdentity,
  type PrivateKeyFile,
  type PublicEntry,
  publicEntry,
  readPrivateKeyFile,
  rotateX25519,
  writePrivateKeyFile,
} from './keyfile.js';
export {
  allowsNothing,
  checkIdentityKey,
  type GroupKey,
  groupKeyId,
  Keyring,
  keyId,
  MAX_PEER_KEYS,
  type OwnEpoch,
  type Peer,
  type PeerEpoch,
  topicId,
} from './keyring.js';
export { ReplayStateError, ReplayWindow, SequenceReserver } from './replay.js';
export { KEY_UPDATE, KNOWN_TYPES, typeCode, typeName } from './types.js';
export { nobleBackend, nodeBackend };

let nodeOk: boolean | undefined;

/** `auto` (the default): node:crypto when this Node has Ed25519, X25519 and ChaCha20-Poly1305, else noble. */
export function selectBackend(choice: 'auto' | 'node' | 'noble' = 'auto'): CryptoBackend {
  if (choice === 'noble') return nobleBackend;
  nodeOk ??= nodeCryptoAvailable();
  if (choice === 'node' && !nodeOk)
    throw new CryptoError('BACKEND_UNAVAILABLE', 'this Node lacks Ed25519, X25519 or ChaCha20-Poly1305 in node:crypto');
  return nodeOk ? nodeBackend : nobleBackend;
}
