/**
 * Making keys: a new identity (keygen) and a new X25519 epoch (rotation). Secrets come from node:crypto (Node 18
 * has no globalThis.crypto for noble's generator) and are written only to the private key file, mode 0600 when new
 * (a replaced file keeps its owner, group and group read), with a durable replace; what is printed is the public part, in the shape of a keyring entry.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fchmodSync,
  fchownSync,
  fstatSync,
  fsyncSync,
  openSync,
  readFileSync,
  type Stats,
  statSync,
} from 'node:fs';
import { writeFileDurably } from '../store/durable.js';
import type { CryptoBackend } from './backend.js';
import { refuse } from './errors.js';
import { checkPrivateFileMode, keyId, PRIVATE_FORMAT } from './keyring.js';

const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64url');
const iso = (ms: number): string => new Date(ms).toISOString();

export interface PrivateEpoch {
  secret: string;
  notBefore: string;
  notAfter?: string;
}
export interface PrivateKeyFile {
  format: typeof PRIVATE_FORMAT;
  id: string;
  ed25519: string;
  x25519: PrivateEpoch[];
  groups?: Record<string, unknown>;
}

/** The keyring entry others install for this identity (roles and permissions are the operator's to add). */
export interface PublicEntry {
  ed25519: string;
  x25519: { pub: string; notBefore: string; notAfter?: string; kid: string }[];
}

export function generateIdentity(
  id: string,
  backend: CryptoBackend,
  now = Date.now(),
): { privateKey: PrivateKeyFile; publicEntry: PublicEntry } {
  const seed = randomBytes(32);
  const secret = randomBytes(32);
  const privateKey: PrivateKeyFile = {
    format: PRIVATE_FORMAT,
    id,
    ed25519: b64(seed),
    x25519: [{ secret: b64(secret), notBefore: iso(now) }],
  };
  return { privateKey, publicEntry: publicEntry(privateKey, backend) };
}

/** The public half of a private key file. */
export function publicEntry(file: PrivateKeyFile, backend: CryptoBackend): PublicEntry {
  return {
    ed25519: b64(backend.signingKey(Buffer.from(file.ed25519, 'base64url')).publicKey),
    x25519: file.x25519.map((e) => {
      const pub = backend.dhSecret(Buffer.from(e.secret, 'base64url')).publicKey;
      return {
        pub: b64(pub),
        notBefore: e.notBefore,
        ...(e.notAfter === undefined ? {} : { notAfter: e.notAfter }),
        kid: keyId(pub),
      };
    }),
  };
}

/**
 * Writes the file whole (a durable replace, mode 0600). A file it replaces keeps its owner and group, and its group
 * read when it had a safe one: rotating `root:ebadge 0640` under sudo must not leave a root-only file the hub can no
 * longer read at its next start.
 */
export async function writePrivateKeyFile(file: string, content: PrivateKeyFile): Promise<void> {
  let before: Stats | undefined;
  try {
    before = statSync(file);
  } catch {
    before = undefined;
  }
  await writeFileDurably(file, `${JSON.stringify(content, null, 2)}\n`, 0o600);
  if (before?.isFile() === true) keepOwnership(file, before);
}

function keepOwnership(file: string, before: Stats): void {
  const fd = openSync(file, 'r');
  try {
    const now = fstatSync(fd);
    let sameGroup = now.gid === before.gid;
    if (now.uid !== before.uid || !sameGroup) {
      try {
        fchownSync(fd, before.uid, before.gid);
        sameGroup = true;
      } catch {
        // Not root and not in that group: the file stays ours, 0600, which the hub running as us can read.
      }
    }
    const old = before.mode & 0o777;
    // Group read is given back only with the group it was meant for, and only when nothing else was open.
    if (sameGroup && (old & 0o040) !== 0 && (old & 0o037) === 0) fchmodSync(fd, 0o640);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function readPrivateKeyFile(file: string): PrivateKeyFile {
  checkPrivateFileMode(file);
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    refuse('KEYRING_INVALID', `${file}: not a readable JSON private key file`);
  }
  const f = v as PrivateKeyFile;
  if (f === null || typeof f !== 'object' || f.format !== PRIVATE_FORMAT || !Array.isArray(f.x25519)) {
    refuse('KEYRING_INVALID', `${file}: not a ${PRIVATE_FORMAT} file`);
  }
  return f;
}

/**
 * Adds a new X25519 key in force from `notBefore` and ends the current ones at `notBefore` + `graceMs` (at least
 * the longest queue TTL: messages sealed to the old key may still be queued); keys not yet started by `notBefore`
 * stay open. Keys ended before `now` - `graceMs`
 * are dropped from the file. Returns the new epoch's public part for the key_update.
 */
export async function rotateX25519(
  file: string,
  notBefore: number,
  graceMs: number,
  now = Date.now(),
): Promise<{ secret: Uint8Array; notBefore: number }> {
  const content = readPrivateKeyFile(file);
  const secret = randomBytes(32);
  const kept = content.x25519
    .filter((e) => e.notAfter === undefined || Date.parse(e.notAfter) > now - graceMs)
    // A key scheduled to start at or after the new one (an earlier rotation with a later notBefore) is left open:
    // ending it at notBefore + grace could end it before it starts, and the file would no longer load.
    .map((e) =>
      e.notAfter === undefined && Date.parse(e.notBefore) < notBefore
        ? { ...e, notAfter: iso(notBefore + graceMs) }
        : e,
    );
  kept.push({ secret: b64(secret), notBefore: iso(notBefore) });
  await writePrivateKeyFile(file, { ...content, x25519: kept });
  return { secret: new Uint8Array(secret), notBefore };
}
