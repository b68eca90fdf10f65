/**
 * Replay protection for HEH-E2E v1 (docs/crypto.md §6): the sender's persisted u64 sequence and the receiver's
 * per-sender 64-wide sliding window. Both state files fail closed: a corrupt file is an error, never a fresh start,
 * because a reset sender repeats numbers its peers will drop and a reset receiver accepts replays.
 */
import { promises as fsp } from 'node:fs';
import { EbadgeError, throwRangeError, throwTypeError } from '../core/errors.js';
import { isObject } from '../core/is-object.js';
import { shardOf } from '../core/shard.js';
import { writeFileDurably } from '../store/durable.js';

export type ReplayErrorCode = 'CORRUPT_STATE' | 'TOO_MANY_SENDERS' | 'IO';

export class ReplayStateError extends EbadgeError<ReplayErrorCode> {
  override name = 'ReplayStateError';
  declare readonly file: string | undefined;
  constructor(code: ReplayErrorCode, message: string, file?: string, options?: { cause: unknown }) {
    super(code, file === undefined ? message : `${file}: ${message}`, options);
    this.file = file;
  }
}

const U64_END = 1n << 64n; // one past the largest u64
/** A sender running as several instances numbers its messages `instance << 48 | counter` (the design notes, §6). */
const INSTANCE_SHIFT = 48n;
/** Windows one sender kid may have, one per instance number: a peer's key must not fill the receiver's state. */
export const MAX_INSTANCES = 64;
const MASK64 = U64_END - 1n;
const DECIMAL = /^[1-9][0-9]{0,19}$/;
const HEX16 = /^[0-9a-f]{16}$/;
/** A window's key in the state file: the sender kid, then `:` and the instance number in 4 hex digits unless 0. */
const WINDOW_KEY = /^[0-9a-f]{16}(:[0-9a-f]{4})?$/;

async function writeDurably(file: string, text: string): Promise<void> {
  try {
    await writeFileDurably(file, text, 0o600);
  } catch (err) {
    throw new ReplayStateError('IO', `cannot write state: ${(err as Error).message}`, file, { cause: err });
  }
}

/** The parsed top-level object, or undefined when the file does not exist. */
async function readState(file: string, format: string): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ReplayStateError('IO', `cannot read state: ${(err as Error).message}`, file, { cause: err });
  }
  const corrupt = (what: string) => corruptState(file, what);
  if (text.trim() === '') throw corrupt('empty file');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw corrupt('not JSON, perhaps truncated');
  }
  if (!isObject(value)) throw corrupt('not a JSON object');
  const obj = value as Record<string, unknown>;
  if (obj['format'] !== format) throw corrupt(`format is not "${format}"`);
  return obj;
}

function corruptState(file: string, what: string): ReplayStateError {
  return new ReplayStateError(
    'CORRUPT_STATE',
    `corrupt replay state (${what}); refusing to reset it, repair or remove it by hand`,
    file,
  );
}

function corruptIf(bad: boolean, file: string, what: string): void {
  if (bad) throw corruptState(file, what);
}

const isMs = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;

/**
 * The sender's sequence numbers. The file holds `reservedUpTo`, the first number not yet reserved; every number
 * below it may have been handed out, so after a restart we continue from it: a crash skips numbers, never repeats
 * one. One durable write per block keeps SD-card wear at one write per `block` messages.
 *
 * A party running as several instances under one identity (docs/bus.md, "Instances") opens it with `instance`, the
 * instance's name: its numbers then carry the instance's 16-bit tag in their top bits, and receivers keep a window
 * per instance, so that the instances' counters do not refuse each other's messages as replays.
 */
export class SequenceReserver {
  #next: bigint;
  #reservedUpTo: bigint;
  #reserving: Promise<void> | undefined;
  #writes = 0;

  declare readonly file: string;
  declare readonly block: bigint;
  /** One past the last number this sender may use: 2^64, or the end of its instance's numbers. */
  declare readonly end: bigint;
  private constructor(file: string, block: bigint, next: bigint, end: bigint) {
    this.file = file;
    this.block = block;
    this.end = end;
    this.#next = next;
    this.#reservedUpTo = next;
  }

  static async open(
    file: string,
    opts: { block?: number; instance?: string | undefined } = {},
  ): Promise<SequenceReserver> {
    const block = opts.block ?? 1024;
    if (!Number.isSafeInteger(block) || block < 1) throwRangeError(`block must be a positive integer, got ${block}`);
    if (opts.instance !== undefined && (typeof opts.instance !== 'string' || opts.instance === ''))
      throwRangeError(`instance must be the instance's name, got ${JSON.stringify(opts.instance)}`);
    const base = opts.instance === undefined ? 0n : BigInt(shardOf(opts.instance, 0x10000)) << INSTANCE_SHIFT;
    const state = await readState(file, 'heh-seq/1');
    let start = base + 1n;
    if (state !== undefined) {
      const r = state['reservedUpTo'];
      corruptIf(
        typeof r !== 'string' || !DECIMAL.test(r) || BigInt(r) > U64_END,
        file,
        'reservedUpTo is not a decimal in 1..2^64',
      );
      const stored = BigInt(r as string);
      // A file of another instance number (the instance renamed): this one's numbers start afresh.
      if (opts.instance === undefined || stored >> INSTANCE_SHIFT === base >> INSTANCE_SHIFT) start = stored;
    }
    const s = new SequenceReserver(
      file,
      BigInt(block),
      start,
      opts.instance === undefined ? U64_END : base + (1n << INSTANCE_SHIFT),
    );
    await s.#reserve();
    return s;
  }

  /** Numbers below this are on disk as used; a reopen continues here. */
  get reservedUpTo(): bigint {
    return this.#reservedUpTo;
  }
  /** Durable writes done by this instance, including the one in open(). */
  get writeCount(): number {
    return this.#writes;
  }

  /** The next number if the reserved block has one left, else undefined (then use take()). */
  tryTake(): bigint | undefined {
    return this.#next < this.#reservedUpTo ? this.#next++ : undefined;
  }

  /** Like tryTake(), but an exhausted block is a programming error here: the caller should have used take(). */
  next(): bigint {
    const n = this.tryTake();
    if (n === undefined) throwRangeError(`${this.file}: reserved sequence block exhausted; use take()`);
    return n;
  }

  async take(): Promise<bigint> {
    for (;;) {
      const n = this.tryTake();
      if (n !== undefined) return n;
      // Waiters resume in the order they arrived, so numbers follow call order; all share one write.
      this.#reserving ??= this.#reserve().finally(() => {
        this.#reserving = undefined;
      });
      await this.#reserving;
    }
  }

  async #reserve(): Promise<void> {
    let upTo = this.#reservedUpTo + this.block;
    if (upTo > this.end) upTo = this.end;
    if (upTo <= this.#reservedUpTo) throwRangeError(`${this.file}: sequence space exhausted`);
    this.#writes++;
    await writeDurably(this.file, `${JSON.stringify({ format: 'heh-seq/1', reservedUpTo: upTo.toString() })}\n`);
    this.#reservedUpTo = upTo; // only now may these numbers leave the process
  }
}

export type Verdict = 'new' | 'duplicate' | 'too-old';
interface SenderWindow {
  max: bigint;
  bitmap: bigint; // bit i set = seq (max - i) seen
  /**
   * The newest timestamp (ms) accepted from this sender: no message accepted so far is newer. null: unknown (a file
   * written before timestamps were kept), and no restart until the window has taken a message (see accept()).
   */
  newest: number | null;
  /** Messages timestamped at or before this (ms) are refused: the newest of a window that was started again. */
  floor: number;
}

/**
 * A window of a file written before timestamps were kept: its newest is taken as the first message it takes plus a
 * day, not as the time the file is loaded (a Pi without a clock may load it days behind), so that no message it
 * took before could start it again.
 */
const UNKNOWN_NEWEST_MS = 86_400_000;

/**
 * The receiver's anti-replay state per sender kid (16 lower-case hex digits) and instance (a seq's top 16 bits, 0 for
 * a sender that is one process; at most MAX_INSTANCES a kid): the highest seq seen and a 64-bit
 * bitmap of the 64 numbers ending at it, as in IPsec/DTLS, because requeues and several channels reorder messages.
 *
 * A seq behind the window is refused, unless the message is timestamped after every message accepted from that
 * sender so far: then it cannot be a replay, and the window starts again at its seq, refusing from then on anything
 * timestamped at or before the old window's newest. Without this, one authentic message numbered 2^64-1 (a foreign
 * sender's bug, a key held for a moment) or a sender whose sequence file was lost locked that sender out for good;
 * now for as long as its clock is behind the newest timestamp accepted, at most maxClockSkewMs (60 s) after the
 * message that did it. Callers that pass no timestamp get the strict window.
 *
 * maxSenders bounds memory and file size. A new sender beyond it is refused rather than an old one evicted: an
 * evicted window forgets its maxSeq, and every message that sender ever sent would then be accepted again.
 * Kids come from the keyring, so hitting the bound means a misconfiguration, and failing closed is the safe answer.
 */
export class ReplayWindow {
  readonly #senders = new Map<string, SenderWindow>();
  /**
   * Per sender kid, the one window a file written before the instances' windows held, when its highest number was
   * past 2^48: every number it refused stays refused, whatever the instance (checked before the instance's window).
   */
  readonly #legacy = new Map<string, SenderWindow>();
  /** Windows of instances other than 0, per sender kid. */
  readonly #instances = new Map<string, number>();
  #version = 0; // bumped by every state change
  #durableVersion = 0;
  #inFlight: { version: number; done: Promise<void> } | undefined;
  #queued: Promise<void> | undefined;
  #writes = 0;

  declare readonly file: string;
  declare readonly maxSenders: number;
  private constructor(file: string, maxSenders: number) {
    this.file = file;
    this.maxSenders = maxSenders;
  }

  static async open(file: string, opts: { maxSenders?: number } = {}): Promise<ReplayWindow> {
    const maxSenders = opts.maxSenders ?? 10_000;
    if (!Number.isSafeInteger(maxSenders) || maxSenders < 1)
      throwRangeError(`maxSenders must be a positive integer, got ${maxSenders}`);
    const w = new ReplayWindow(file, maxSenders);
    const state = await readState(file, 'heh-replay/1');
    if (state === undefined) return w;
    const senders = state['senders'];
    const legacy = state['legacy'] ?? {};
    corruptIf(!isObject(senders), file, 'senders is not an object');
    corruptIf(!isObject(legacy), file, 'legacy is not an object');
    // More senders than maxSenders (the limit was lowered) are all kept: dropping any would reopen replays.
    for (const [kid, v] of Object.entries(senders as object)) {
      corruptIf(
        !WINDOW_KEY.test(kid) || kid.endsWith(':0000'),
        file,
        `sender ${JSON.stringify(kid.slice(0, 40))} is not a kid of 16 hex digits, with :<4 hex digits> or not`,
      );
      const window = readWindow(file, kid, v);
      // Before windows were kept per instance, one window held every number of a sender: one past 2^48 there
      // refused all the lower ones, of every instance, and still must (they may be replays).
      if (kid.length === 16 && window.max >> INSTANCE_SHIFT !== 0n) {
        corruptIf(window.newest !== null, file, `max of ${kid} is past 2^48, in no instance's window`);
        w.#legacy.set(kid, window);
        continue;
      }
      corruptIf(windowKey(kid.slice(0, 16), window.max) !== kid, file, `max of ${kid} is not a number of it`);
      w.#senders.set(kid, window);
      const sender = kid.slice(0, 16);
      if (kid !== sender) w.#instances.set(sender, (w.#instances.get(sender) ?? 0) + 1);
    }
    for (const [kid, v] of Object.entries(legacy as object)) {
      corruptIf(!HEX16.test(kid), file, `legacy sender ${JSON.stringify(kid.slice(0, 40))} is not 16 hex digits`);
      w.#legacy.set(kid, readWindow(file, kid, v));
    }
    return w;
  }

  get size(): number {
    return this.#senders.size;
  }
  /** Durable writes done by this instance. */
  get writeCount(): number {
    return this.#writes;
  }

  /** `timestamp`: the message's, in ms since the epoch (see the class comment); without it the strict window. */
  check(kid: string, seq: bigint, timestamp?: number): Verdict {
    if (!HEX16.test(kid))
      throwTypeError(`kid must be 16 lower-case hex digits, got ${JSON.stringify(kid.slice(0, 40))}`);
    if (seq < 1n || seq >= U64_END) return 'too-old'; // 0 is never sent, so it can only be forged or a reset sender
    const legacy = this.#legacy.get(kid);
    if (legacy !== undefined && seq <= legacy.max) {
      const behind = legacy.max - seq;
      if (behind > 63n) return 'too-old';
      if ((legacy.bitmap >> behind) & 1n) return 'duplicate';
    }
    const w = this.#senders.get(windowKey(kid, seq));
    if (w === undefined) {
      this.#room(kid, seq);
      return 'new';
    }
    if (timestamp !== undefined && timestamp <= w.floor) return 'too-old';
    if (seq > w.max) return 'new';
    const behind = w.max - seq;
    if (behind > 63n) return timestamp !== undefined && w.newest !== null && timestamp > w.newest ? 'new' : 'too-old';
    return (w.bitmap >> behind) & 1n ? 'duplicate' : 'new';
  }

  /** Records seq and returns what check() said before; recording a duplicate or too-old seq changes nothing. */
  accept(kid: string, seq: bigint, timestamp?: number): Verdict {
    const verdict = this.check(kid, seq, timestamp);
    if (verdict !== 'new') return verdict;
    const key = windowKey(kid, seq);
    const w = this.#senders.get(key);
    const ts = timestamp ?? 0;
    if (w === undefined) {
      this.#senders.set(key, { max: seq, bitmap: 1n, newest: ts, floor: 0 });
      if (key !== kid) this.#instances.set(kid, (this.#instances.get(kid) ?? 0) + 1);
    } else if (seq > w.max) {
      const shift = seq - w.max;
      w.bitmap = shift > 63n ? 1n : ((w.bitmap << shift) | 1n) & MASK64;
      w.max = seq;
    } else if (w.max - seq > 63n) {
      // Newer than anything accepted (check()): the window starts again here, above a floor that refuses them all.
      w.floor = w.newest ?? w.floor;
      w.max = seq;
      w.bitmap = 1n;
    } else {
      w.bitmap |= 1n << (w.max - seq);
    }
    const n = this.#senders.get(key) as SenderWindow;
    if (n.newest === null) n.newest = ts + UNKNOWN_NEWEST_MS;
    else if (ts > n.newest) n.newest = ts;
    this.#version++;
    return verdict;
  }

  /** Throws TOO_MANY_SENDERS when the window `seq` needs cannot be made: refused as it opens, not after handling. */
  #room(kid: string, seq: bigint): void {
    let why: string | undefined;
    if (this.#senders.size >= this.maxSenders) why = `already tracking ${this.maxSenders} senders (maxSenders)`;
    else if (seq >> INSTANCE_SHIFT !== 0n && (this.#instances.get(kid) ?? 0) >= MAX_INSTANCES - 1)
      why = `it numbers its messages for more than ${MAX_INSTANCES} instances`;
    if (why !== undefined) throw new ReplayStateError('TOO_MANY_SENDERS', `refusing sender ${kid}: ${why}`, this.file);
  }

  /**
   * Writes the state durably. Group commit: at most one write in flight plus one queued; a call resolves only after
   * a write that began after the call's accepts, so "persist, then ack" is safe however many callers pile up.
   */
  persist(): Promise<void> {
    const inFlight = this.#inFlight;
    if (inFlight === undefined) {
      if (this.#version === this.#durableVersion) return Promise.resolve();
      const version = this.#version;
      const text = this.#serialize(); // snapshot now: accepts made during the write belong to the next one
      this.#writes++;
      const done = writeDurably(this.file, text)
        .then(() => {
          this.#durableVersion = Math.max(this.#durableVersion, version);
        })
        .finally(() => {
          this.#inFlight = undefined;
        });
      this.#inFlight = { version, done };
      return done;
    }
    if (inFlight.version === this.#version) return inFlight.done;
    // The in-flight snapshot misses our accepts; share one follow-up write, whatever became of the current one.
    this.#queued ??= inFlight.done
      .catch(() => undefined)
      .then(() => {
        this.#queued = undefined;
        return this.persist();
      });
    return this.#queued;
  }

  #serialize(): string {
    const out = (w: SenderWindow): Record<string, unknown> => ({
      max: w.max.toString(),
      bitmap: w.bitmap.toString(16).padStart(16, '0'),
      ...(w.newest === null ? {} : { newest: w.newest, floor: w.floor }),
    });
    const senders = Object.fromEntries([...this.#senders].map(([kid, w]) => [kid, out(w)]));
    const legacy = Object.fromEntries([...this.#legacy].map(([kid, w]) => [kid, out(w)]));
    return `${JSON.stringify({ format: 'heh-replay/1', senders, ...(this.#legacy.size === 0 ? {} : { legacy }) })}\n`;
  }
}

function windowKey(kid: string, seq: bigint): string {
  const instance = seq >> INSTANCE_SHIFT;
  return instance === 0n ? kid : `${kid}:${(instance + 0x10000n).toString(16).slice(1)}`;
}

/** One window of the state file, checked: a corrupt one is refused, never reset. */
function readWindow(file: string, kid: string, v: unknown): SenderWindow {
  const e = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
  const max = e['max'],
    bitmap = e['bitmap'],
    newest = e['newest'] ?? null,
    floor = e['floor'] ?? 0;
  corruptIf(
    typeof max !== 'string' || !DECIMAL.test(max) || BigInt(max) >= U64_END,
    file,
    `max of ${kid} is not a decimal in 1..2^64-1`,
  );
  corruptIf(
    typeof bitmap !== 'string' || !HEX16.test(bitmap) || (BigInt(`0x${bitmap}`) & 1n) === 0n,
    file,
    `bitmap of ${kid} is not 16 hex digits with bit 0 set`,
  );
  corruptIf((newest !== null && !isMs(newest)) || !isMs(floor), file, `newest or floor of ${kid} is not a time in ms`);
  return {
    max: BigInt(max as string),
    bitmap: BigInt(`0x${bitmap as string}`),
    newest: newest as number | null,
    floor: floor as number,
  };
}
