/**
 * Who is who (docs/crypto.md §6 "Keys", "Key distribution and rotation"): the keyring file, public and installed
 * by the operator, lists the peers with their Ed25519 identity key, their X25519 keys per epoch and the message
 * types each may send us and receive from us; the private key file (a secret: readable by the hub alone, refused otherwise) holds our own
 * Ed25519 seed, our X25519 secrets per epoch and the group keys of the topics we are in.
 *
 * Everything is checked at load, with the JSON path of what is wrong: key lengths, small-order Ed25519 keys (a
 * forged signature verifies under one with OpenSSL), low-order X25519 keys, unique key ids. Keys are imported
 * into the backend once, here. Messages about the private file never quote its values.
 */
import { createHash } from 'node:crypto';
import * as ed from '@noble/ed25519';
import { currentReader, type FileReader, fileProblem } from '../core/file-check.js';
import { isObject } from '../core/is-object.js';
import { shown } from '../core/shown.js';
import { JsonFileError, readJsonFile } from '../store/json-file.js';
import type { CryptoBackend, DhPublic, DhSecret, SigningKey, VerifyKey } from './backend.js';
import { refuse } from './errors.js';
import { parseIsoTime } from './iso-time.js';
import { KNOWN_TYPES } from './types.js';

export const KEYRING_FORMAT = 'heh-keyring/1';
export const PRIVATE_FORMAT = 'heh-private/1';
/** The most X25519 keys a peer may have at once (its keyring entry's and those its key_updates announced). */
export const MAX_PEER_KEYS = 16;
/** How long an ended key is kept: the longest freshness window (reports, 24 h), so what was sealed with it opens. */
const ENDED_KEPT_MS = 24 * 3_600_000;

/** An X25519 public key of a peer, valid from notBefore (epoch ms) to notAfter (or for ever). */
export interface PeerEpoch {
  readonly kid: string;
  readonly key: DhPublic;
  readonly notBefore: number;
  readonly notAfter: number | undefined;
}

export interface Peer {
  readonly id: string;
  readonly roles: readonly string[];
  readonly ed25519: VerifyKey;
  /** SHA-256(Ed25519 key)[0..8] in hex: the sender identity its sequence numbers (and our replay window) belong to. */
  readonly identity: string;
  /** Oldest first; key_update appends. */
  readonly epochs: PeerEpoch[];
  /** Types this peer may send us. */
  readonly maySend: ReadonlySet<string>;
  /** Types we may send this peer. */
  readonly mayReceive: ReadonlySet<string>;
  /** Topics this peer may broadcast on (SIGNED and GROUP modes). */
  readonly topics: ReadonlySet<string>;
}

export interface OwnEpoch {
  readonly kid: string;
  readonly secret: DhSecret;
  readonly notBefore: number;
  readonly notAfter: number | undefined;
}

export interface GroupKey {
  readonly topic: string;
  readonly kid: string;
  readonly key: Uint8Array;
  readonly notBefore: number;
  readonly notAfter: number | undefined;
}

/** kid(X) = SHA-256(X25519 public key)[0..8], as 16 hex digits. Only for lookup: security rests on the full keys. */
/**
 * A peer whose entry lets nothing through (maySend, mayReceive and topics all empty), as `keygen`'s public entry is
 * before it is filled in: every sealed message to or from it is refused TYPE_NOT_ALLOWED, while the keyring itself is
 * valid. Said by `keyring verify` and the hub's `check-config` as a warning.
 */
export function allowsNothing(peer: Peer): string | undefined {
  if (peer.maySend.size > 0 || peer.mayReceive.size > 0 || peer.topics.size > 0) return undefined;
  return `the keyring lets ${peer.id} send and receive nothing: every sealed message to or from it is refused (TYPE_NOT_ALLOWED); fill in its maySend and mayReceive (docs/crypto.md)`;
}

export function keyId(x25519Public: Uint8Array): string {
  return createHash('sha256').update(x25519Public).digest('hex').slice(0, 16);
}

/** The id of a group key, domain-separated so that it says nothing usable about the key. */
export function groupKeyId(key: Uint8Array): string {
  return createHash('sha256').update('HEH-E2E/v1/group\0').update(key).digest('hex').slice(0, 16);
}

/** The recipient field of a SIGNED broadcast: the topic's id. */
export function topicId(topic: string): string {
  return createHash('sha256').update('HEH-E2E/v1/topic\0').update(topic).digest('hex').slice(0, 16);
}

const B64_32 = /^[A-Za-z0-9_-]{43}$/;
const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Reads JSON values with the path of each one, so that every error names what was wrong and where. */
class Reader {
  declare readonly file: string;
  declare readonly secret: boolean;
  /** BAD_KEY for a key that came in a message, not from a file. */
  declare readonly code: 'KEYRING_INVALID' | 'BAD_KEY';
  constructor(file: string, secret: boolean, code: 'KEYRING_INVALID' | 'BAD_KEY' = 'KEYRING_INVALID') {
    this.file = file;
    this.secret = secret;
    this.code = code;
  }

  fail(path: string, reason: string): never {
    refuse(this.code, `${this.file}: ${path}: ${reason}`);
  }

  object(v: unknown, path: string): Record<string, unknown> {
    if (!isObject(v)) this.fail(path, `expected an object, found ${this.describe(v)}`);
    return v as Record<string, unknown>;
  }

  array(v: unknown, path: string): unknown[] {
    if (!Array.isArray(v)) this.fail(path, `expected an array, found ${this.describe(v)}`);
    return v;
  }

  string(v: unknown, path: string): string {
    if (typeof v !== 'string') this.fail(path, `expected a string, found ${this.describe(v)}`);
    return v;
  }

  key32(v: unknown, path: string): Uint8Array {
    if (typeof v !== 'string' || !B64_32.test(v))
      this.fail(path, `expected 32 bytes in base64url (43 characters), found ${this.describe(v)}`);
    return new Uint8Array(Buffer.from(v, 'base64url'));
  }

  time(v: unknown, path: string): number {
    return (
      parseIsoTime(this.string(v, path)) ??
      this.fail(path, `expected an ISO 8601 time with an offset, found ${this.describe(v)}`)
    );
  }

  optionalTime(v: unknown, path: string): number | undefined {
    return v === undefined ? undefined : this.time(v, path);
  }

  types(v: unknown, path: string): Set<string> {
    const out = new Set<string>();
    if (v === undefined) return out;
    this.array(v, path).forEach((t, i) => {
      const type = this.string(t, `${path}[${i}]`);
      if (!KNOWN_TYPES.includes(type)) this.fail(`${path}[${i}]`, `unknown message type "${type}"`);
      out.add(type);
    });
    return out;
  }

  strings(v: unknown, path: string): string[] {
    if (v === undefined) return [];
    return this.array(v, path).map((s, i) => this.string(s, `${path}[${i}]`));
  }

  describe(v: unknown): string {
    if (this.secret) return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
    if (typeof v === 'string') return shown(v, 60);
    return v === null ? 'null' : Array.isArray(v) ? 'an array' : v === undefined ? 'nothing' : typeof v;
  }
}

/**
 * Refuses an Ed25519 public key that is not canonical, of small order (docs/crypto.md pitfall 4: a forged
 * signature verifies under it with OpenSSL), or with a torsion component. An honestly generated key is always in
 * the prime-order subgroup; a mixed-order one is where OpenSSL (cofactorless) and noble (cofactored) disagree on
 * the "Taming the many EdDSAs" cases 2-5, so refusing it here makes both backends give the same verdicts.
 */
function checkEd25519(r: Reader, bytes: Uint8Array, path: string): void {
  let point: ed.Point;
  try {
    point = ed.Point.fromBytes(bytes, false);
  } catch {
    return r.fail(path, 'not a valid Ed25519 public key');
  }
  if (point.isSmallOrder()) {
    refuse(
      'SMALL_ORDER_KEY',
      `${r.file}: ${path}: an Ed25519 key of small order (any signature would verify under it)`,
    );
  }
  if (!point.isTorsionFree()) {
    refuse(
      'SMALL_ORDER_KEY',
      `${r.file}: ${path}: an Ed25519 key with a small-order component (no honest key has one)`,
    );
  }
}

/** Refuses a low-order X25519 public key: a DH with it gives all zeros, which both backends refuse. */
/** The same check for one key outside a keyring file (tests, tools): throws CryptoError BAD_KEY or SMALL_ORDER_KEY. */
export function checkIdentityKey(publicKey: Uint8Array, where = 'Ed25519 key'): void {
  if (publicKey.length !== 32) refuse('BAD_KEY', `${where}: expected 32 bytes, got ${publicKey.length}`);
  checkEd25519(new Reader(where, false, 'BAD_KEY'), publicKey, '$');
}

function checkX25519(r: Reader, backend: CryptoBackend, probe: DhSecret, bytes: Uint8Array, path: string): DhPublic {
  const key = backend.dhPublic(bytes);
  try {
    backend.dh(probe, key);
  } catch {
    refuse('LOW_ORDER_KEY', `${r.file}: ${path}: an X25519 key of low order`);
  }
  return key;
}

function checkPeriod(r: Reader, notBefore: number, notAfter: number | undefined, path: string): void {
  if (notAfter !== undefined && notAfter <= notBefore) r.fail(`${path}.notAfter`, 'is not after notBefore');
}

export interface KeyringSources {
  /** The parsed keyring (public) and its file name for messages. */
  keyring: unknown;
  keyringFile?: string;
  /** The parsed private key file and its file name for messages. */
  privateKey: unknown;
  privateKeyFile?: string;
}

export class Keyring {
  readonly id: string;
  readonly signing: SigningKey;
  readonly own: OwnEpoch[] = [];
  readonly peers = new Map<string, Peer>();
  readonly groups = new Map<string, GroupKey[]>();
  readonly #peerKids = new Map<string, { peer: Peer; epoch: PeerEpoch }>();
  readonly #ownKids = new Map<string, OwnEpoch>();
  readonly #groupKids = new Map<string, GroupKey>();
  readonly #backend: CryptoBackend;
  readonly #probe: DhSecret;

  /** Loads and checks both files; the private key file must be readable by the hub alone (checkPrivateFileMode). */
  static load(keyringFile: string, privateKeyFile: string, backend: CryptoBackend): Keyring {
    checkPrivateFileMode(privateKeyFile);
    return new Keyring(backend, {
      keyring: readJson(keyringFile),
      keyringFile,
      privateKey: readJson(privateKeyFile),
      privateKeyFile,
    });
  }

  constructor(backend: CryptoBackend, sources: KeyringSources) {
    this.#backend = backend;
    // Any valid secret works as the probe for low-order checks; this one is fixed so that loading is deterministic.
    this.#probe = backend.dhSecret(new Uint8Array(32).fill(7));
    const pr = new Reader(sources.privateKeyFile ?? 'private key', true);
    const priv = pr.object(sources.privateKey, '$');
    if (priv['format'] !== PRIVATE_FORMAT) pr.fail('$.format', `expected "${PRIVATE_FORMAT}"`);
    this.id = pr.string(priv['id'], '$.id');
    if (!ID.test(this.id)) pr.fail('$.id', 'expected an id of letters, digits, ".", "_" or "-"');
    this.signing = backend.signingKey(pr.key32(priv['ed25519'], '$.ed25519'));
    pr.array(priv['x25519'], '$.x25519').forEach((e, i) => {
      const p = `$.x25519[${i}]`;
      const o = pr.object(e, p);
      const secret = backend.dhSecret(pr.key32(o['secret'], `${p}.secret`));
      const notBefore = pr.time(o['notBefore'], `${p}.notBefore`);
      const notAfter = pr.optionalTime(o['notAfter'], `${p}.notAfter`);
      checkPeriod(pr, notBefore, notAfter, p);
      this.#addOwn({ kid: keyId(secret.publicKey), secret, notBefore, notAfter }, pr, p);
    });
    if (this.own.length === 0) pr.fail('$.x25519', 'no X25519 key');
    const groups = priv['groups'] === undefined ? {} : pr.object(priv['groups'], '$.groups');
    for (const [topic, list] of Object.entries(groups)) {
      pr.array(list, `$.groups.${topic}`).forEach((e, i) => {
        const p = `$.groups.${topic}[${i}]`;
        const o = pr.object(e, p);
        const key = pr.key32(o['key'], `${p}.key`);
        const notBefore = pr.time(o['notBefore'], `${p}.notBefore`);
        const notAfter = pr.optionalTime(o['notAfter'], `${p}.notAfter`);
        checkPeriod(pr, notBefore, notAfter, p);
        const g: GroupKey = { topic, kid: groupKeyId(key), key, notBefore, notAfter };
        if (this.#groupKids.has(g.kid)) pr.fail(p, 'the same group key appears twice');
        this.#groupKids.set(g.kid, g);
        this.groups.set(topic, [...(this.groups.get(topic) ?? []), g]);
      });
    }

    const kr = new Reader(sources.keyringFile ?? 'keyring', false);
    const ring = kr.object(sources.keyring, '$');
    if (ring['format'] !== KEYRING_FORMAT)
      kr.fail('$.format', `expected "${KEYRING_FORMAT}", found ${kr.describe(ring['format'])}`);
    for (const [id, entry] of Object.entries(kr.object(ring['peers'], '$.peers'))) {
      const p = `$.peers.${id}`;
      if (!ID.test(id)) kr.fail(p, 'a peer id is letters, digits, ".", "_" or "-"');
      if (id === this.id) kr.fail(p, `is our own id (${this.id})`);
      const o = kr.object(entry, p);
      const edBytes = kr.key32(o['ed25519'], `${p}.ed25519`);
      checkEd25519(kr, edBytes, `${p}.ed25519`);
      const peer: Peer = {
        id,
        roles: kr.strings(o['roles'], `${p}.roles`),
        ed25519: backend.verifyKey(edBytes),
        identity: keyId(edBytes),
        epochs: [],
        maySend: kr.types(o['maySend'], `${p}.maySend`),
        mayReceive: kr.types(o['mayReceive'], `${p}.mayReceive`),
        topics: new Set(kr.strings(o['topics'], `${p}.topics`)),
      };
      this.peers.set(id, peer);
      kr.array(o['x25519'], `${p}.x25519`).forEach((e, i) => {
        const q = `${p}.x25519[${i}]`;
        const x = kr.object(e, q);
        const notBefore = kr.time(x['notBefore'], `${q}.notBefore`);
        const notAfter = kr.optionalTime(x['notAfter'], `${q}.notAfter`);
        checkPeriod(kr, notBefore, notAfter, q);
        this.#addPeerEpoch(peer, kr.key32(x['pub'], `${q}.pub`), notBefore, notAfter, kr, q);
      });
    }
  }

  /** The peer and epoch of a sender key id. */
  peerByKid(kid: string): { peer: Peer; epoch: PeerEpoch } | undefined {
    return this.#peerKids.get(kid);
  }

  ownByKid(kid: string): OwnEpoch | undefined {
    return this.#ownKids.get(kid);
  }

  groupByKid(kid: string): GroupKey | undefined {
    return this.#groupKids.get(kid);
  }

  /** Our newest X25519 key in force at `now`: the one we send with. */
  currentOwn(now: number): OwnEpoch | undefined {
    return newest(this.own, now);
  }

  /**
   * Our oldest X25519 key in force at `now`: the one we seal with (Sealer.envelope), since every peer knows it (the
   * keyring it was given, or an earlier key_update) while a newer one is still being announced.
   */
  oldestOwn(now: number): OwnEpoch | undefined {
    let best: OwnEpoch | undefined;
    for (const e of this.own) {
      if (e.notBefore > now || (e.notAfter !== undefined && e.notAfter <= now)) continue;
      if (best === undefined || e.notBefore < best.notBefore) best = e;
    }
    return best;
  }

  /** The peer's newest X25519 key in force at `now`: the one we send to. */
  currentPeer(peer: Peer, now: number): PeerEpoch | undefined {
    return newest(peer.epochs, now);
  }

  currentGroup(topic: string, now: number): GroupKey | undefined {
    return newest(this.groups.get(topic) ?? [], now);
  }

  /**
   * Adds a peer's announced X25519 key (a verified key_update), or brings a known one's end forward. Returns false
   * when nothing changed. The key is checked like one from the keyring file. A peer holds at most MAX_PEER_KEYS
   * keys: keys that ended over a day before `now` make room first (nothing sealed with them is fresh any more), and
   * past that the key is refused, so that a peer announcing keys without end cannot grow our memory or the file they
   * are kept in.
   */
  learn(peer: Peer, publicKey: Uint8Array, notBefore: number, notAfter: number | undefined, now = Date.now()): boolean {
    const kid = keyId(publicKey);
    const known = this.#peerKids.get(kid);
    if (known !== undefined) {
      if (known.peer !== peer)
        refuse('BAD_KEY', `key_update from ${peer.id}: the key id ${kid} belongs to ${known.peer.id}`);
      // Its end, announced after a rotation, may only come sooner: a key given without one (the keyring file, an
      // earlier key_update) would otherwise never end here, and 15 rotations filled the peer's MAX_PEER_KEYS.
      const e = known.epoch;
      if (notAfter === undefined || notAfter <= e.notBefore || (e.notAfter !== undefined && notAfter >= e.notAfter))
        return false;
      const ended: PeerEpoch = { ...e, notAfter };
      peer.epochs[peer.epochs.indexOf(e)] = ended;
      this.#peerKids.set(kid, { peer, epoch: ended });
      return true;
    }
    if (this.#ownKids.has(kid))
      refuse('BAD_KEY', `key_update from ${peer.id}: the key id ${kid} is one of our own keys`);
    const r = new Reader(`key_update from ${peer.id}`, false, 'BAD_KEY');
    checkPeriod(r, notBefore, notAfter, '$');
    if (peer.epochs.length >= MAX_PEER_KEYS) {
      for (let i = peer.epochs.length - 1; i >= 0; i--) {
        const e = peer.epochs[i] as PeerEpoch;
        if (e.notAfter !== undefined && e.notAfter < now - ENDED_KEPT_MS) {
          peer.epochs.splice(i, 1);
          this.#peerKids.delete(e.kid);
        }
      }
      if (peer.epochs.length >= MAX_PEER_KEYS)
        refuse(
          'BAD_KEY',
          `key_update from ${peer.id}: it has ${MAX_PEER_KEYS} X25519 keys already, none ended over a day ago`,
        );
    }
    this.#addPeerEpoch(peer, publicKey, notBefore, notAfter, r, '$.x25519');
    return true;
  }

  /** Adds one of our own X25519 secrets (after a rotation). */
  addOwnSecret(secret: Uint8Array, notBefore: number, notAfter: number | undefined): OwnEpoch {
    const s = this.#backend.dhSecret(secret);
    const epoch: OwnEpoch = { kid: keyId(s.publicKey), secret: s, notBefore, notAfter };
    this.#addOwn(epoch, new Reader('rotation', true), '$');
    return epoch;
  }

  #addOwn(epoch: OwnEpoch, r: Reader, path: string): void {
    if (this.#ownKids.has(epoch.kid)) r.fail(path, 'the same X25519 key appears twice');
    this.#ownKids.set(epoch.kid, epoch);
    this.own.push(epoch);
  }

  #addPeerEpoch(
    peer: Peer,
    pub: Uint8Array,
    notBefore: number,
    notAfter: number | undefined,
    r: Reader,
    path: string,
  ): void {
    const key = checkX25519(r, this.#backend, this.#probe, pub, path);
    const epoch: PeerEpoch = { kid: keyId(pub), key, notBefore, notAfter };
    const other = this.#peerKids.get(epoch.kid);
    if (other !== undefined || this.#ownKids.has(epoch.kid)) {
      r.fail(path, `key id ${epoch.kid} is already used by ${other?.peer.id ?? 'our own key'}`);
    }
    this.#peerKids.set(epoch.kid, { peer, epoch });
    peer.epochs.push(epoch);
  }
}

function newest<E extends { notBefore: number; notAfter: number | undefined }>(
  list: readonly E[],
  now: number,
): E | undefined {
  let best: E | undefined;
  for (const e of list) {
    if (e.notBefore > now || (e.notAfter !== undefined && e.notAfter <= now)) continue;
    if (best === undefined || e.notBefore >= best.notBefore) best = e;
  }
  return best;
}

/**
 * The private key file must be a secret only the hub can read (core/file-check.ts: owner, and the hub's own group
 * at most; `root:ebadge 0640` and `ebadge 0600` both pass): one readable by others has leaked already.
 */
export function checkPrivateFileMode(file: string, reader: FileReader | undefined = currentReader()): void {
  const problem = fileProblem(file, 'secret', reader);
  if (problem === undefined) return;
  const code = problem.kind === 'MODE' ? 'KEY_FILE_PERMISSIONS' : 'KEYRING_INVALID';
  refuse(code, `the private key file: expected ${problem.expected}, found ${problem.found}`);
}

/** The shared reader never quotes the file's text, so its messages are safe for the private key file too. */
function readJson(file: string): unknown {
  try {
    return readJsonFile(file);
  } catch (err) {
    if (!(err instanceof JsonFileError)) throw err;
    const message = err.fault.code === 'UNREADABLE' ? `cannot read ${file}: ${err.fault.errno}` : err.message;
    refuse('KEYRING_INVALID', message);
  }
}
