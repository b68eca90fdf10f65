/**
 * HEH-E2E v1 (docs/crypto.md §6): the envelope that keeps the broker from reading or forging eBADGE messages.
 *
 *   off len
 *     0   1  version = 1 (no negotiation: a new suite is a new version)
 *     1   1  mode: 1 PAIR (one recipient), 2 GROUP (topic key), 3 SIGNED (public broadcast)
 *     2   2  message type code (types.ts)
 *     4   8  sender kid (the sender's X25519 key in force)
 *    12   8  recipient kid: PAIR the recipient's X25519 kid, GROUP the group key id, SIGNED the topic id
 *    20   8  timestamp, ms since the epoch
 *    28   8  sequence, strictly increasing per sender identity
 *    36  24  nonce: random for PAIR and GROUP, zero for SIGNED
 *    60   …  PAIR/GROUP: XChaCha20-Poly1305(k, nonce, AAD = bytes 0..60)(sig ‖ payload) ‖ tag;  SIGNED: payload ‖ sig
 *
 * sig = Ed25519(sender, "HEH-E2E/v1/sig\0" ‖ header ‖ payload): sign-then-encrypt, and the signed header names
 * the recipient, so a peer cannot re-encrypt our message to a third party. The pair key is directional
 * (HKDF over the static X25519 secret, the sender's Ed25519 key and both X25519 keys), so a message reflected
 * to its sender does not open. Overhead: 140 bytes (PAIR, GROUP), 124 (SIGNED).
 *
 * The receiver checks the cheap things first: size, version and mode, both key ids, then the AEAD (microseconds;
 * broker junk stops here), then the signature (the expensive step), the sender's right to send the type, the
 * replay window and the freshness window. The codec comes after, in the bus. AMQP properties and routing keys
 * are not authenticated: only the header counts.
 */
import { randomFillSync, timingSafeEqual } from 'node:crypto';
import { type BodyWriter, checkedEnd, MORE_ROOM } from '../core/body-writer.js';
import { throwRangeError, throwTypeError } from '../core/errors.js';
import { type CryptoBackend, SIGNATURE_BYTES, type SigningKey, TAG_BYTES } from './backend.js';
import { refuse } from './errors.js';
import { parseIsoTime } from './iso-time.js';
import { type GroupKey, type Keyring, keyId, type OwnEpoch, type Peer, type PeerEpoch, topicId } from './keyring.js';
import { KEY_UPDATE, typeCode, typeName } from './types.js';

export const VERSION = 1;
export type Mode = 'pair' | 'group' | 'signed';
const MODE_CODE: Record<Mode, number> = { pair: 1, group: 2, signed: 3 };
const MODES: readonly Mode[] = ['pair', 'group', 'signed'];
export const HEADER_BYTES = 60;
export const OVERHEAD: Readonly<Record<Mode, number>> = {
  pair: HEADER_BYTES + SIGNATURE_BYTES + TAG_BYTES,
  group: HEADER_BYTES + SIGNATURE_BYTES + TAG_BYTES,
  signed: HEADER_BYTES + SIGNATURE_BYTES,
};
const SIG_DOMAIN = Buffer.from('HEH-E2E/v1/sig\0');
const PAIR_SALT = Buffer.from('HEH-E2E/v1');
const PAIR_INFO = Buffer.from('pair\0');

/** Control messages (5 minutes) unless listed: what may sit in a queue while its consumer is away is kept longer. */
const LONG_LIVED = [
  'report',
  'load_report',
  'status_report',
  'energy_events',
  'capabilities',
  'device_capabilities',
  'response',
  'accept_activation',
  'reject_activation',
  'activation_capacity',
  'availability',
  // The market's results and notices (data model §3.4): what happened, told once; stale after 5 minutes, they were
  // dead-lettered unread when the party was away a little longer. A replay is still the sequence's to stop.
  'bid_accepted',
  'market_cleared',
  'balancing_activated',
  'balancing_unachievable',
  KEY_UPDATE,
];
export const DEFAULT_FRESHNESS_MS = 5 * 60_000;
export const LONG_FRESHNESS_MS = 24 * 3_600_000;

/** Where the sender's sequence numbers come from (replay.ts SequenceReserver: reserved on disk in blocks). */
export interface SequenceSource {
  take(): Promise<bigint>;
}

/** The receiver's replay window per sender (replay.ts ReplayWindow: persisted before the ack). */
export interface ReplayGuard {
  /** `timestamp`: the message's (ms), which lets a seq behind the window in when it is newer than all (ReplayWindow). */
  check(sender: string, seq: bigint, timestamp?: number): 'new' | 'duplicate' | 'too-old';
  accept(sender: string, seq: bigint, timestamp?: number): void;
  persist(): Promise<void>;
}

export interface SealerOptions {
  keyring: Keyring;
  backend: CryptoBackend;
  sequence: SequenceSource;
  replay: ReplayGuard;
  /** Largest envelope accepted (default 1 MiB + overhead). */
  maxBytes?: number;
  /** Freshness window per message type in ms (defaults: 5 minutes for control messages, 24 h for reports). */
  freshness?: Readonly<Record<string, number>>;
  /** How far a timestamp may be ahead of our clock (default 60 s). */
  maxClockSkewMs?: number;
  now?: () => number;
  /** Fills a nonce with random bytes (default node:crypto's randomFillSync; tests fix it to compare envelopes). */
  random?: (nonce: Uint8Array) => void;
  /**
   * Called with a peer's key announced in a verified key_update, after it was added, to persist it: the message's
   * commit() waits for the promise returned, so the key_update is acked only once the key is kept.
   */
  onKeyLearned?: (peer: Peer, update: KeyUpdate) => unknown;
}

/** The payload of a key_update: a new X25519 key of the sender, in force from notBefore. */
export interface KeyUpdate {
  x25519: Uint8Array;
  notBefore: number;
  notAfter: number | undefined;
}

export type Destination = { peer: string } | { group: string } | { topic: string };

export interface Opened {
  readonly sender: Peer;
  readonly mode: Mode;
  readonly type: string;
  /** The topic of a GROUP or SIGNED message. */
  readonly topic: string | undefined;
  readonly timestamp: number;
  readonly sequence: bigint;
  /** The verified plaintext (the eBADGE JSON); the bus decodes it and checks that its `msg` is `type`. */
  readonly payload: Uint8Array;
  /** A key_update's key (its id) and whether it was new to us: learned as the envelope opened. */
  readonly keyUpdate: { readonly kid: string; readonly learned: boolean } | undefined;
  /** Records the sequence as seen and persists it: call after the message was handled, before the ack. */
  commit(): Promise<void>;
  /** Forgets the in-flight mark without recording it: the message was not handled and will come again. */
  release(): void;
}

export class Sealer {
  readonly #o: SealerOptions;
  readonly #keys = new Map<string, Uint8Array>();
  readonly #inFlight = new Set<string>();
  readonly #now: () => number;
  readonly #random: (nonce: Uint8Array) => void;
  readonly #maxBytes: number;
  readonly #topicsById = new Map<string, string>();
  /** Per peer (of the keyring: bounded), how far ahead of our clock its last message from the future was, and when. */
  readonly #ahead = new Map<string, [number, number]>();
  /** Key ids learned whose onKeyLearned failed (see #learn). */
  readonly #unkept = new Set<string>();

  constructor(options: SealerOptions) {
    if (options.keyring.signing.backend !== options.backend.name) {
      throwTypeError(
        `the keyring was loaded with the ${options.keyring.signing.backend} backend, not ${options.backend.name}`,
      );
    }
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? ((nonce) => randomFillSync(nonce));
    this.#maxBytes = options.maxBytes ?? (1 << 20) + OVERHEAD.pair;
    for (const peer of options.keyring.peers.values()) for (const t of peer.topics) this.#topicsById.set(topicId(t), t);
    for (const t of options.keyring.groups.keys()) this.#topicsById.set(topicId(t), t);
  }

  get keyring(): Keyring {
    return this.#o.keyring;
  }

  /** Seals `payload` (the encoded eBADGE message of `type`) for a peer (PAIR), a group (GROUP) or a topic (SIGNED). */
  async seal(to: Destination, type: string, payload: Uint8Array): Promise<Buffer> {
    const body = await this.envelope(to, type, payload);
    // Room before the envelope for a SIGNED signature's domain prefix, so that the payload is signed where it is.
    const buf = Buffer.allocUnsafe(SIGNED_PREFIX + body.maxBytes);
    return buf.subarray(SIGNED_PREFIX, body.writeTo(buf, SIGNED_PREFIX, buf.length));
  }

  /**
   * The envelope of `payload` as a BodyWriter, written where it is sent from (the AMQP frame): the keys, the header
   * and the sequence number are settled here; writeTo then writes the payload (once: a BodyWriter encodes the message
   * in place, bytes are copied in), signs it where it lies and encrypts it in place. writeTo writes the same bytes
   * every time (the nonce is drawn here, Ed25519 is deterministic): a publish sent again after a reconnection is the
   * same envelope, which the receiver's replay window drops if the first one arrived.
   */
  async envelope(to: Destination, type: string, payload: Uint8Array | BodyWriter): Promise<SealedBody> {
    const now = this.#now();
    const { keyring, backend } = this.#o;
    // The oldest of our keys in force, which every peer knows: a newer one is announced (key_update) while the older
    // runs out its grace, and sealed with only once the older has ended, so nothing sealed with a key reaches a peer
    // before the key does (an answer to a request that waited in the queue and is handled ahead of the registration,
    // say), and a peer that was away for part of the grace learns it from a later announcement.
    const own = keyring.oldestOwn(now);
    // A Pi without a real-time clock may run on 1970, or on a time before its keys were made, until NTP steps it.
    if (own === undefined)
      refuse('NO_KEY_FOR_PEER', `none of our X25519 keys is in force at ${new Date(now).toISOString()} (our clock)`);
    const code = typeCode(type);
    let mode: Mode;
    let recipient: string;
    let key: Uint8Array | undefined;
    if ('peer' in to) {
      const peer = keyring.peers.get(to.peer);
      if (peer === undefined) refuse('NO_KEY_FOR_PEER', `no keys for peer "${to.peer}" in the keyring`);
      if (type !== KEY_UPDATE && !peer.mayReceive.has(type))
        refuse('TYPE_NOT_ALLOWED', `${peer.id} does not receive ${type} (its mayReceive)`);
      const theirs = keyring.currentPeer(peer, now);
      if (theirs === undefined) refuse('NO_KEY_FOR_PEER', `no X25519 key of ${peer.id} is in force now`);
      mode = 'pair';
      recipient = theirs.kid;
      key = this.#pairKey(own, peer, theirs, 'send');
    } else if ('group' in to) {
      const group = keyring.currentGroup(to.group, now);
      if (group === undefined) refuse('NO_KEY_FOR_PEER', `no key of group "${to.group}" is in force now`);
      mode = 'group';
      recipient = group.kid;
      key = group.key;
    } else {
      mode = 'signed';
      recipient = topicId(to.topic);
    }
    const seq = await this.#o.sequence.take();
    const header = Buffer.allocUnsafe(HEADER_BYTES);
    header[0] = VERSION;
    header[1] = MODE_CODE[mode];
    header.writeUInt16BE(code, 2);
    header.write(own.kid, 4, 8, 'hex');
    header.write(recipient, 12, 8, 'hex');
    header.writeBigUInt64BE(BigInt(now), 20);
    header.writeBigUInt64BE(seq, 28);
    if (key === undefined) header.fill(0, 36);
    else this.#random(header.subarray(36, 60));
    return new SealedBody(header, key, backend, keyring.signing, payload);
  }

  /** Checks and opens an envelope; every refusal is a CryptoError whose code says which check failed. */
  open(body: Uint8Array): Opened {
    const { keyring, backend } = this.#o;
    if (body.length > this.#maxBytes)
      refuse('TOO_LARGE', `an envelope of ${body.length} bytes exceeds the limit of ${this.#maxBytes}`);
    if (body.length < OVERHEAD.signed)
      refuse('TOO_SHORT', `an envelope of ${body.length} bytes is shorter than its header and signature`);
    const b = Buffer.from(body.buffer, body.byteOffset, body.length);
    if (b[0] !== VERSION) refuse('BAD_VERSION', `envelope version ${b[0] as number} (this is version ${VERSION})`);
    const mode = MODES[(b[1] as number) - 1];
    if (mode === undefined) refuse('BAD_MODE', `unknown envelope mode ${b[1] as number}`);
    if (body.length < OVERHEAD[mode])
      refuse('TOO_SHORT', `a ${mode} envelope of ${body.length} bytes is shorter than its overhead`);
    const senderKid = b.toString('hex', 4, 12);
    const recipientKid = b.toString('hex', 12, 20);
    const from = keyring.peerByKid(senderKid);
    if (from === undefined) refuse('UNKNOWN_SENDER', `no peer has the key id ${senderKid}`);
    const { peer } = from;
    const header = b.subarray(0, HEADER_BYTES);
    let topic: string | undefined;
    let payload: Uint8Array;
    let sig: Uint8Array;
    /** PAIR: our key the envelope was sealed to (a key_update's proof is checked against it). */
    let sealedTo: OwnEpoch | undefined;
    if (mode === 'signed') {
      topic = this.#topicsById.get(recipientKid);
      if (topic === undefined || !peer.topics.has(topic))
        refuse('NOT_FOR_US', `${peer.id} has no topic with the id ${recipientKid}`);
      payload = b.subarray(HEADER_BYTES, b.length - SIGNATURE_BYTES);
      sig = b.subarray(b.length - SIGNATURE_BYTES);
    } else {
      let key: Uint8Array;
      if (mode === 'pair') {
        const own = keyring.ownByKid(recipientKid);
        if (own === undefined) refuse('NOT_FOR_US', `the recipient key id ${recipientKid} is not one of ours`);
        sealedTo = own;
        key = this.#pairKey(own, peer, from.epoch, 'receive');
      } else {
        const group: GroupKey | undefined = keyring.groupByKid(recipientKid);
        if (group === undefined) refuse('NOT_FOR_US', `the group key id ${recipientKid} is not one of ours`);
        if (!peer.topics.has(group.topic)) refuse('TYPE_NOT_ALLOWED', `${peer.id} may not send on ${group.topic}`);
        topic = group.topic;
        key = group.key;
      }
      const plain = backend.open(key, header.subarray(36, 60), header, b.subarray(HEADER_BYTES));
      if (plain === null)
        refuse('DECRYPT_FAILED', `an envelope from ${peer.id} did not decrypt (tampered, or sealed for another key)`);
      sig = plain.subarray(0, SIGNATURE_BYTES);
      payload = plain.subarray(SIGNATURE_BYTES);
    }
    if (!backend.verify(peer.ed25519, signedBytes(header, payload), sig)) {
      refuse('BAD_SIGNATURE', `the signature of an envelope from ${peer.id} does not verify`);
    }
    const code = b.readUInt16BE(2);
    const type = typeName(code);
    if (type === undefined) refuse('TYPE_NOT_ALLOWED', `${peer.id} sent an unknown type code ${code}`);
    if (type !== KEY_UPDATE && !peer.maySend.has(type))
      refuse('TYPE_NOT_ALLOWED', `${peer.id} may not send ${type} (its maySend)`);

    const sequence = b.readBigUInt64BE(28);
    const timestamp = Number(b.readBigUInt64BE(20));
    const mark = `${peer.identity}:${sequence}`;
    const verdict = this.#o.replay.check(peer.identity, sequence, timestamp);
    if (verdict === 'duplicate' || this.#inFlight.has(mark))
      refuse('DUPLICATE', `${type} #${sequence} from ${peer.id} was seen already`);
    if (verdict === 'too-old')
      refuse(
        'REPLAYED',
        sequence === 0n
          ? `${type} from ${peer.id} has sequence 0, which is never sent (sequences start at 1)`
          : `${type} #${sequence} from ${peer.id} is older than the replay window`,
      );
    const now = this.#now();
    const ahead = timestamp - now;
    if (ahead > (this.#o.maxClockSkewMs ?? 60_000)) {
      // Authenticated, so the sender's clock said so: its clock is ahead or ours behind. Two peers ahead by about as
      // much within an hour point at ours (a Pi without a real-time clock, booted on a stale time).
      let also: string | undefined;
      for (const [id, [ms, at]] of this.#ahead)
        if (id !== peer.id && now - at < 3_600_000 && Math.abs(ms - ahead) < 60_000 + ahead / 10) {
          also = id;
          break;
        }
      this.#ahead.set(peer.id, [ahead, now]);
      refuse(
        'FROM_THE_FUTURE',
        `${type} from ${peer.id} is timestamped ${ahead} ms ahead of our clock (${new Date(now).toISOString()}): ${
          also === undefined
            ? 'its clock is ahead, or ours is behind'
            : `so was ${also}'s, by about as much: our clock looks behind (NTP?)`
        }`,
      );
    }
    const window = this.#o.freshness?.[type] ?? (LONG_LIVED.includes(type) ? LONG_FRESHNESS_MS : DEFAULT_FRESHNESS_MS);
    if (now - timestamp > window)
      refuse('STALE', `${type} from ${peer.id} is ${now - timestamp} ms old (window ${window} ms)`);

    const learnt = type === KEY_UPDATE ? this.#learn(peer, payload, sealedTo) : undefined;
    this.#inFlight.add(mark);
    const replay = this.#o.replay;
    const inFlight = this.#inFlight;
    return {
      sender: peer,
      mode,
      type,
      topic,
      timestamp,
      sequence,
      payload,
      keyUpdate: learnt === undefined ? undefined : { kid: learnt.kid, learned: learnt.learned },
      async commit() {
        await learnt?.kept;
        replay.accept(peer.identity, sequence, timestamp);
        inFlight.delete(mark);
        await replay.persist();
      },
      release() {
        inFlight.delete(mark);
      },
    };
  }

  /**
   * The key_update announcing our key `epoch` to `peer`, to be sealed PAIR to it (Connector.announceKeys). Its
   * `proof` shows that we hold the key's secret: keyProof() of X25519(that secret, the peer's key we seal to), which
   * the peer alone can compute as well. Without it a peer could announce another party's new public key (public once
   * announced, or printed by `keyring rotate`) as its own, and, a key id belonging to the first peer that announces
   * it, lock the owner out.
   */
  keyUpdatePayload(peer: string, epoch: OwnEpoch): Buffer {
    const { keyring, backend } = this.#o;
    const p = keyring.peers.get(peer);
    const theirs = p === undefined ? undefined : keyring.currentPeer(p, this.#now());
    if (theirs === undefined) refuse('NO_KEY_FOR_PEER', `no X25519 key of "${peer}" is in force now`);
    const pub = epoch.secret.publicKey;
    const proof = keyProof(backend, backend.dh(epoch.secret, theirs.key), keyring.signing.publicKey, pub);
    return Buffer.from(
      JSON.stringify({
        msg: KEY_UPDATE,
        x25519: Buffer.from(pub).toString('base64url'),
        notBefore: new Date(epoch.notBefore).toISOString(),
        ...(epoch.notAfter === undefined ? {} : { notAfter: new Date(epoch.notAfter).toISOString() }),
        proof: Buffer.from(proof).toString('base64url'),
      }),
    );
  }

  #learn(
    peer: Peer,
    payload: Uint8Array,
    sealedTo: OwnEpoch | undefined,
  ): { kid: string; learned: boolean; kept: Promise<void> | undefined } {
    let update: KeyUpdate;
    let proof: Buffer | undefined;
    try {
      const v = JSON.parse(Buffer.from(payload).toString('utf8')) as Record<string, unknown>;
      const pub =
        typeof v['x25519'] === 'string' && /^[A-Za-z0-9_-]{43}$/.test(v['x25519'])
          ? Buffer.from(v['x25519'], 'base64url')
          : undefined;
      // The keyring file's times: Date.parse took years like +099999, a key never in force that held a slot for ever.
      const time = (t: unknown): number | undefined => (typeof t === 'string' ? parseIsoTime(t) : undefined);
      const notBefore = time(v['notBefore']);
      const notAfter = v['notAfter'] === undefined || v['notAfter'] === null ? undefined : (time(v['notAfter']) ?? NaN);
      if (v['msg'] !== KEY_UPDATE || pub === undefined || notBefore === undefined || Number.isNaN(notAfter))
        throw new Error('fields');
      update = { x25519: new Uint8Array(pub), notBefore, notAfter };
      if (typeof v['proof'] === 'string' && /^[A-Za-z0-9_-]{43}$/.test(v['proof']))
        proof = Buffer.from(v['proof'], 'base64url');
    } catch {
      refuse('BAD_KEY', `a key_update from ${peer.id} is malformed`);
    }
    if (sealedTo === undefined)
      refuse('BAD_KEY', `a key_update from ${peer.id} not sealed to us (PAIR): its key cannot be proven`);
    if (proof === undefined || !this.#proves(proof, sealedTo, peer, update.x25519))
      refuse('BAD_KEY', `a key_update from ${peer.id} does not prove it holds the key it announces`);
    const learned = this.#o.keyring.learn(peer, update.x25519, update.notBefore, update.notAfter, this.#now());
    const kid = keyId(update.x25519);
    // A key whose keeping failed is known in memory but not kept: the copy given back for it is kept again.
    const r = learned || this.#unkept.has(kid) ? this.#o.onKeyLearned?.(peer, update) : undefined;
    const kept = r instanceof Promise ? (r as Promise<void>) : undefined;
    // Awaited by commit(); the outcome is noted before commit() resumes, and a failure is never unhandled.
    kept?.then(
      () => this.#unkept.delete(kid),
      () => this.#unkept.add(kid),
    );
    return { kid, learned, kept };
  }

  /** Whether `proof` is keyProof() of the announced key with our key the envelope was sealed to. */
  #proves(proof: Buffer, sealedTo: OwnEpoch, peer: Peer, announced: Uint8Array): boolean {
    const { backend } = this.#o;
    try {
      const expected = keyProof(
        backend,
        backend.dh(sealedTo.secret, backend.dhPublic(announced)),
        peer.ed25519.publicKey,
        announced,
      );
      return timingSafeEqual(proof, expected);
    } catch {
      return false; // a key the DH refuses (low-order): nothing proven
    }
  }

  /** k(A→B) = HKDF-SHA256(X25519(xA, XB), "HEH-E2E/v1", "pair\0" ‖ edA ‖ XA ‖ XB), cached per key pair and direction. */
  #pairKey(own: OwnEpoch, peer: Peer, theirs: PeerEpoch, direction: 'send' | 'receive'): Uint8Array {
    const id = `${direction === 'send' ? '>' : '<'}${own.kid}${theirs.kid}`;
    let key = this.#keys.get(id);
    if (key === undefined) {
      const { backend, keyring } = this.#o;
      const shared = backend.dh(own.secret, theirs.key);
      const [edA, xA, xB] =
        direction === 'send'
          ? [keyring.signing.publicKey, own.secret.publicKey, theirs.key.publicKey]
          : [peer.ed25519.publicKey, theirs.key.publicKey, own.secret.publicKey];
      key = backend.hkdf(shared, PAIR_SALT, Buffer.concat([PAIR_INFO, edA, xA, xB]), 32);
      this.#keys.set(id, key);
    }
    return key;
  }
}

const KEY_INFO = Buffer.from('key\0');

/** proof = HKDF-SHA256(X25519(new key, recipient's key), "HEH-E2E/v1", "key\0" ‖ sender's Ed25519 ‖ new key). */
function keyProof(backend: CryptoBackend, shared: Uint8Array, ed25519: Uint8Array, announced: Uint8Array): Buffer {
  return Buffer.from(backend.hkdf(shared, PAIR_SALT, Buffer.concat([KEY_INFO, ed25519, announced]), 32));
}

function signedBytes(header: Uint8Array, payload: Uint8Array): Buffer {
  return Buffer.concat([SIG_DOMAIN, header, payload]);
}

/** The bytes a SIGNED envelope borrows before itself while it is signed (restored after). */
const SIGNED_PREFIX = SIG_DOMAIN.length;

/**
 * An envelope ready to be written (Sealer.envelope). PAIR and GROUP: header ‖ E(sig ‖ payload) ‖ tag; the payload
 * goes straight to its place, and the signed bytes DOMAIN ‖ header ‖ payload are made contiguous by writing DOMAIN ‖
 * header over the signature's slot just before the payload, so the payload is never copied to be signed; then the
 * real header and the signature go to their places and sig ‖ payload is encrypted in place. SIGNED: header ‖ payload
 * ‖ sig; DOMAIN goes in the 15 bytes before the header (put back after signing), or, when the envelope starts
 * less than 15 bytes into its buffer, the signed bytes are copied once.
 */
export class SealedBody implements BodyWriter {
  readonly maxBytes: number;
  readonly sizeHint?: number;
  readonly #header: Buffer;
  readonly #key: Uint8Array | undefined;
  readonly #backend: CryptoBackend;
  readonly #signing: SigningKey;
  readonly #payload: Uint8Array | BodyWriter;

  constructor(
    header: Buffer,
    key: Uint8Array | undefined,
    backend: CryptoBackend,
    signing: SigningKey,
    payload: Uint8Array | BodyWriter,
  ) {
    this.#header = header;
    this.#key = key;
    this.#backend = backend;
    this.#signing = signing;
    this.#payload = payload;
    const overhead = SIGNATURE_BYTES + HEADER_BYTES + (key === undefined ? 0 : TAG_BYTES);
    if (payload instanceof Uint8Array) {
      this.maxBytes = overhead + payload.length;
    } else {
      this.maxBytes = overhead + payload.maxBytes;
      if (payload.sizeHint !== undefined) this.sizeHint = overhead + payload.sizeHint;
    }
  }

  writeTo(target: Buffer, offset: number, end: number): number {
    const header = this.#header;
    const sealed = this.#key !== undefined;
    const at = offset + HEADER_BYTES + (sealed ? SIGNATURE_BYTES : 0);
    const limit = end - (sealed ? TAG_BYTES : SIGNATURE_BYTES);
    const payload = this.#payload;
    let stop: number;
    if (payload instanceof Uint8Array) {
      if (at + payload.length > limit) throwRangeError(`${end - offset} bytes is no room for the envelope`);
      target.set(payload, at); // the copy into where it is sent from: bytes given are never written anywhere else
      stop = at + payload.length;
    } else {
      stop = payload.writeTo(target, at, Math.max(at, limit));
      if (stop === MORE_ROOM) return MORE_ROOM;
      checkedEnd(payload, stop, at, limit);
    }
    const backend = this.#backend;
    if (this.#key !== undefined) {
      const from = at - SIG_DOMAIN.length - HEADER_BYTES;
      target.set(SIG_DOMAIN, from);
      target.set(header, from + SIG_DOMAIN.length);
      const sig = backend.sign(this.#signing, target.subarray(from, stop));
      target.set(header, offset);
      target.set(sig, offset + HEADER_BYTES);
      const plain = target.subarray(offset + HEADER_BYTES, stop);
      const out = target.subarray(offset + HEADER_BYTES, stop + TAG_BYTES);
      backend.sealInto(this.#key, header.subarray(36, 60), target.subarray(offset, offset + HEADER_BYTES), plain, out);
      return stop + TAG_BYTES;
    }
    target.set(header, offset);
    let sig: Uint8Array;
    if (offset >= SIGNED_PREFIX) {
      const from = offset - SIGNED_PREFIX;
      const kept = Buffer.from(target.subarray(from, offset));
      target.set(SIG_DOMAIN, from);
      try {
        sig = backend.sign(this.#signing, target.subarray(from, stop));
      } finally {
        target.set(kept, from);
      }
    } else {
      sig = backend.sign(this.#signing, signedBytes(header, target.subarray(at, stop)));
    }
    target.set(sig, stop);
    return stop + SIGNATURE_BYTES;
  }
}
