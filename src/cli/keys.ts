/**
 * Key commands: keygen, keyring verify, keyring rotate (src/crypto). Nothing secret is ever printed: what goes
 * to stdout is the public part, in the shape of a keyring entry.
 */
import { existsSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { EbTime } from '../codec/time.js';
import {
  allowsNothing,
  generateIdentity,
  Keyring,
  publicEntry,
  readPrivateKeyFile,
  rotateX25519,
  selectBackend,
  writePrivateKeyFile,
} from '../crypto/index.js';
import { backendOption, type Io, need, UsageError } from './common.js';

export const KEYS_USAGE = `  keygen --id <id> --out <private key file> [--public <file>] [--force] [--backend auto|node|noble]
  keyring verify --keyring <file> --private-key <file> [--backend auto|node|noble]
  keyring rotate --private-key <file> [--not-before <ISO time>] [--grace-hours <n>]`;

export async function keygen(args: string[], io: Io): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      id: { type: 'string' },
      out: { type: 'string' },
      public: { type: 'string' },
      force: { type: 'boolean' },
      backend: { type: 'string' },
    },
    strict: true,
  });
  const id = need(values.id, '--id');
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(id))
    throw new UsageError(`--id: letters, digits, ".", "_" or "-", found "${id}"`);
  const out = need(values.out, '--out');
  if (existsSync(out) && values.force !== true)
    throw new UsageError(`${out} exists: a new identity would replace the old one (use --force)`);
  const pub = values.public;
  // Checked before a key is made: a write that fails after it leaves an identity half written, or none at all.
  writableTarget(out, '--out');
  if (pub !== undefined) {
    writableTarget(pub, '--public');
    // The same file twice would write the public entry over the private key just written: the identity lost.
    if (sameFile(pub, out)) throw new UsageError(`--public names the private key file ${out}: give it another file`);
    // A keyring named by mistake would be replaced by this one entry.
    if (existsSync(pub) && values.force !== true)
      throw new UsageError(`${pub} exists: the public entry would replace it (use --force)`);
  }
  const { privateKey, publicEntry: entry } = generateIdentity(id, selectBackend(backendOption(values.backend)));
  await writePrivateKeyFile(out, privateKey);
  const text = JSON.stringify({ [id]: { roles: [], ...entry, maySend: [], mayReceive: [] } }, null, 2);
  if (pub !== undefined) writeFileSync(pub, `${text}\n`);
  io.out(text);
  // 0600, or the group read a replaced file had (writePrivateKeyFile): the mode the file has, not the one it was made with.
  const mode = (statSync(out).mode & 0o777).toString(8).padStart(4, '0');
  io.err(
    `wrote the private key of ${id} to ${out} (mode ${mode}); the JSON above goes into the peers of the other parties' keyrings, with its roles, maySend and mayReceive filled in (left empty, every message to or from it is refused TYPE_NOT_ALLOWED: docs/crypto.md)`,
  );
  return 0;
}

/** The file's folder exists and is a folder, and the file is not one. */
function writableTarget(file: string, flag: string): void {
  const dir = path.dirname(path.resolve(file));
  if (!isDirectory(dir)) throw new UsageError(`${flag}: no folder ${dir} to write ${file} in`);
  if (isDirectory(file)) throw new UsageError(`${flag}: ${file} is a folder, not a file`);
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** Two names of one file: the same path, or (when both exist) the same inode through a link. */
function sameFile(a: string, b: string): boolean {
  if (path.resolve(a) === path.resolve(b)) return true;
  try {
    const sa = statSync(a);
    const sb = statSync(b);
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return false;
  }
}

export function verify(args: string[], io: Io): number {
  const { values } = parseArgs({
    args,
    options: { keyring: { type: 'string' }, 'private-key': { type: 'string' }, backend: { type: 'string' } },
    strict: true,
  });
  const backend = selectBackend(backendOption(values.backend));
  const ring = Keyring.load(need(values.keyring, '--keyring'), need(values['private-key'], '--private-key'), backend);
  const now = Date.now();
  let warnings = 0;
  const current = ring.currentOwn(now);
  io.out(
    `identity ${ring.id}: ${ring.own.length} X25519 key(s), in force: ${current?.kid ?? 'none'} (backend ${backend.name})`,
  );
  if (current === undefined) warnings++;
  for (const peer of ring.peers.values()) {
    const key = ring.currentPeer(peer, now);
    io.out(
      `peer ${peer.id}: ${peer.epochs.length} X25519 key(s), in force: ${key?.kid ?? 'none'}; may send ${peer.maySend.size} type(s), may receive ${peer.mayReceive.size}${peer.topics.size > 0 ? `; topics ${[...peer.topics].join(', ')}` : ''}`,
    );
    if (key === undefined) {
      io.err(`warning: no X25519 key of ${peer.id} is in force now: nothing can be sealed to it`);
      warnings++;
    }
    const inert = allowsNothing(peer);
    if (inert !== undefined) {
      io.err(`warning: ${inert}`);
      warnings++;
    }
  }
  io.out(warnings === 0 ? 'keyring OK' : `keyring OK with ${warnings} warning(s)`);
  return 0;
}

export async function rotate(args: string[], io: Io): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { 'private-key': { type: 'string' }, 'not-before': { type: 'string' }, 'grace-hours': { type: 'string' } },
    strict: true,
  });
  const file = need(values['private-key'], '--private-key');
  let notBefore = Date.now();
  if (values['not-before'] !== undefined) {
    try {
      notBefore = EbTime.parse(values['not-before'], '--not-before').epochMs;
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }
  const hours = values['grace-hours'] === undefined ? 24 : Number(values['grace-hours']);
  if (!Number.isFinite(hours) || hours < 1)
    throw new UsageError(
      `--grace-hours: expected a number >= 1 (at least the longest queue TTL), found "${values['grace-hours']}"`,
    );
  await rotateX25519(file, notBefore, hours * 3_600_000);
  const entry = publicEntry(readPrivateKeyFile(file), selectBackend('auto'));
  io.out(JSON.stringify(entry.x25519, null, 2));
  io.err(
    `added an X25519 key in force from ${new Date(notBefore).toISOString()}; restart the hub to use it: once connected, it announces its keys to its peers with key_update`,
  );
  return 0;
}
