/**
 * What the hub must remember across restarts besides its measurements: periodic report subscriptions, prices,
 * activations and their decisions, the smart mode, realtime event subscriptions, the recent events and the keys
 * peers announced (key_update). Small and
 * rarely changed, so it is one JSON file rewritten durably (tmp + fsync + rename) on every change.
 *
 * The hub runs from memory; the file follows. A write the disk refuses (full, read-only, the directory gone) never
 * reaches the caller: it goes to the reporter, and the whole state is written again with backoff until it lands (a
 * vanished directory is re-created). Only a restart before then loses the changes, which flush() reports.
 * Loading checks every field: an unreadable file or one of a later format stops the hub with a ConfigError (the
 * operator must act); damaged content is kept as hub-state.json.corrupt-<time>, the entries that fail their
 * check are dropped (all of them when the text is not JSON), and `damage` says what (docs/hub.md, "Storage faults").
 */
import * as path from 'node:path';
import { EbadgeError } from '../core/errors.js';
import { isObject } from '../core/is-object.js';
import { shown as quoted } from '../core/shown.js';
import { writeFileDurably } from '../store/durable.js';
import { storeFs } from '../store/fs.js';
import type { StorageReporter } from '../store/health.js';
import { JsonFileError, readJsonFile } from '../store/json-file.js';
import { ConfigError } from './config/index.js';

export interface Subscription {
  requester: string;
  interval: number;
  resolution: number;
  signals: string[];
  /** The start of the next period to report (epoch ms). */
  next: number;
  /** The first_from the peer asked, when `next` is still it: a time of the peer's clock, not of ours (reports.ts). */
  asked?: number;
  requestId?: string;
  hehId?: string | null;
}

export interface Price {
  kind: 'load' | 'generation';
  from: number;
  to: number;
  price: number;
  device?: string;
  sender: string;
}

export interface Activation {
  id: string;
  requester: string;
  modificationCount: number;
  from: number;
  to: number;
  quantity: number;
  device: string | null;
  /** The decision sent for this modification count, re-sent when the same count comes again. */
  decision: 'accepted' | 'rejected' | 'modified';
  decisionMessage: Record<string, unknown>;
  /** Where the actuator is: nothing yet, running, ended. */
  phase: 'scheduled' | 'running' | 'ended';
  /** The last modification refused while this version stayed in force: its count and the rejection sent. */
  refused?: { modificationCount: number; decisionMessage: Record<string, unknown> };
  /** A whole-hub activation once started: the kW each device was given (activations.ts #split). */
  shares?: Record<string, number>;
}

export interface HubEvent {
  time: number;
  severity: number;
  type: string;
  end?: number | null;
  /** How many units the event is about (storage_lost, state_damaged): kept here, an energy event has no field. */
  count?: number;
}

/** A peer's X25519 key learned from its sealed key_update (docs/crypto.md, "Rotation"), given back to the keyring at start. */
export interface PeerKey {
  peer: string;
  /** The public key, base64url. */
  x25519: string;
  notBefore: number;
  notAfter?: number;
}

export interface HubState {
  format: 'heh-hub-state/1';
  mode: 'normal' | 'passive' | 'off';
  subscriptions: Subscription[];
  realtime: { requester: string; severity: number; hehId?: string | null }[];
  prices: Price[];
  activations: Activation[];
  events: HubEvent[];
  clockOffsetS: number;
  peerKeys: PeerKey[];
}

const MAX_EVENTS = 1000;
const FORMAT = 'heh-hub-state/1';
const MAX_RETRY_MS = 30_000;

export class StateError extends EbadgeError<'UNSAVED'> {
  override name = 'StateError';
}

export interface StateOptions {
  /** Told of failed writes and of the write that catches up. */
  reporter?: StorageReporter;
  /** The first retry after a failed write; doubled up to 30 s (default 1 s). */
  retryMs?: number;
  /** For the name of the copy of a damaged file. */
  now?: () => number;
}

/** What load found wrong with the file, and what it did about it. */
export interface StateDamage {
  /** Where the damaged file is kept: `hub-state.json.corrupt-<time>` (renamed before the first write). */
  copy: string;
  /** What was wrong, each named by its JSON path; the entries named are dropped. */
  problems: string[];
  /** The text was not a readable state: the hub starts from an empty one. */
  reset: boolean;
}

export class StateStore {
  #state: HubState;
  readonly file: string;
  readonly damage: StateDamage | undefined;
  readonly #reporter: StorageReporter | undefined;
  readonly #retryMs: number;
  #writing: Promise<void> = Promise.resolve();
  /** Memory holds changes the file does not. */
  #dirty = false;
  /** The last write failed: later changes wait for the retry. */
  #failing = false;
  #retryTimer: NodeJS.Timeout | undefined;
  #retryDelay: number;
  /** The damaged file still has to be moved to damage.copy before anything replaces it. */
  #keepDamaged: boolean;
  #lazyTimer: NodeJS.Timeout | undefined;

  /** How long a lazy change may wait for its write (default one minute). */
  lazyMs = 60_000;
  /** Writes attempted so far (for the wear figures). */
  writes = 0;
  /** Writes the disk refused. */
  failedWrites = 0;

  private constructor(file: string, state: HubState, damage: StateDamage | undefined, options: StateOptions) {
    this.file = file;
    this.#state = state;
    this.damage = damage;
    this.#reporter = options.reporter;
    this.#retryMs = options.retryMs ?? 1000;
    this.#retryDelay = this.#retryMs;
    this.#keepDamaged = damage !== undefined;
    // The repaired state goes to disk at once, the damaged file moved aside first: a restart before then finds the
    // damaged file again, never an empty state next to a copy.
    if (damage !== undefined) {
      this.#dirty = true;
      void this.#write();
    }
  }

  /**
   * Loads the state file; a missing one is a fresh hub. One that cannot be read, or of a later format, is a
   * ConfigError; damaged content is set aside and repaired as the top comment says, never silently.
   */
  static open(dir: string, options: StateOptions = {}): StateStore {
    const file = path.join(dir, 'hub-state.json');
    const copy = `${file}.corrupt-${new Date((options.now ?? Date.now)()).toISOString().replace(/[-:]|\.\d+/g, '')}`;
    let raw: unknown;
    try {
      raw = readJsonFile(file);
    } catch (err) {
      if (!(err instanceof JsonFileError)) throw err;
      if (err.fault.code === 'UNREADABLE') {
        if (err.fault.errno === 'ENOENT') return new StateStore(file, empty(), undefined, options);
        throw new ConfigError(
          file,
          '$',
          'a readable hub state file (it holds the subscriptions and activations)',
          `${err.fault.errno}: fix its permissions or the disk, or move it away to start afresh`,
        );
      }
      return new StateStore(file, empty(), { copy, problems: [`$: ${err.detail}`], reset: true }, options);
    }
    const format = isObject(raw) ? raw['format'] : undefined;
    if (typeof format === 'string' && format.startsWith('heh-hub-state/') && format !== FORMAT) {
      throw new ConfigError(file, '$.format', `"${FORMAT}"`, `"${format}" (written by a later version of the hub)`);
    }
    const { state, problems } = checkState(raw);
    const reset = problems.length > 0 && !isObject(raw);
    return new StateStore(file, state, problems.length > 0 ? { copy, problems, reset } : undefined, options);
  }

  get state(): Readonly<HubState> {
    return this.#state;
  }

  /**
   * Changes the state and writes it; writes are serialized, the last one always lands. `lazy` changes (the
   * progress of periodic reports, routine events) are written with the next write or within `lazyMs`: an SD
   * card must not take an fsync per report, and losing a minute of that progress only repeats a few reports.
   * Resolves once the change is on disk or the disk refused it (then it is retried, see the top comment).
   */
  update(change: (s: HubState) => void, options: { lazy?: boolean } = {}): Promise<void> {
    change(this.#state);
    if (this.#state.events.length > MAX_EVENTS) this.#state.events = trimmed(this.#state.events);
    this.#dirty = true;
    if (this.#failing) return Promise.resolve();
    if (options.lazy === true) {
      this.#lazyTimer ??= setTimeout(() => {
        void this.#write();
      }, this.lazyMs);
      this.#lazyTimer.unref();
      return Promise.resolve();
    }
    return this.#write();
  }

  /** Writes any change not on disk now, and waits; rejects with StateError when the disk still refuses it. */
  async flush(): Promise<void> {
    // A change made while the write ran (a report's progress at a stop) is written by another round, not reported
    // as a disk fault: only a disk that refuses (#failing) ends the rounds early.
    for (let round = 0; round < 3; round++) {
      await (this.#dirty ? this.#write() : this.#writing);
      if (!this.#dirty || this.#failing) break;
    }
    if (this.#dirty) {
      throw new StateError(
        'UNSAVED',
        `cannot write the hub state ${this.file}: ${describe(this.#lastError)}; the changes since the last write are lost at exit`,
        { cause: this.#lastError },
      );
    }
  }

  #lastError: unknown;

  /** Never rejects: a failure is reported and retried. Queued writes share one attempt with the latest state. */
  #write(): Promise<void> {
    if (this.#lazyTimer !== undefined) clearTimeout(this.#lazyTimer);
    this.#lazyTimer = undefined;
    this.#writing = this.#writing.then(() => this.#attempt()).catch(() => undefined);
    return this.#writing;
  }

  #tell(fn: (r: StorageReporter) => void): void {
    if (this.#reporter === undefined) return;
    try {
      fn(this.#reporter);
    } catch {
      /* a throwing reporter must not stop the writes */
    }
  }

  async #attempt(): Promise<void> {
    if (!this.#dirty) return;
    this.#dirty = false;
    const snapshot = JSON.stringify(this.#state);
    this.writes++;
    let recreated = false;
    let told = false;
    try {
      if (this.#keepDamaged) {
        await storeFs.rename(this.file, this.damage!.copy).catch((err: unknown) => {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        });
        this.#keepDamaged = false;
      }
      try {
        await writeFileDurably(this.file, snapshot, 0o600);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        // The directory vanished (removed, or its disk not mounted): the state is in memory, so write it anew.
        this.#tell((r) => r.failed('state', `write the hub state ${this.file}`, err));
        told = true;
        await storeFs.mkdir(path.dirname(this.file), 0o700);
        await writeFileDurably(this.file, snapshot, 0o600);
        recreated = true;
      }
    } catch (err) {
      this.#dirty = true;
      this.failedWrites++;
      this.#lastError = err;
      if (!told) this.#tell((r) => r.failed('state', `write the hub state ${this.file}`, err));
      this.#failing = true;
      this.#retryTimer ??= setTimeout(() => {
        this.#retryTimer = undefined;
        void this.#write();
      }, this.#retryDelay);
      this.#retryTimer.unref();
      this.#retryDelay = Math.min(MAX_RETRY_MS, this.#retryDelay * 2);
      return;
    }
    if (this.#failing || recreated) {
      this.#tell((r) => r.ok('state', recreated ? 'the hub state, in its re-created directory' : 'the hub state'));
    }
    this.#failing = false;
    this.#retryDelay = this.#retryMs;
  }
}

/**
 * The events within MAX_EVENTS: the oldest of the lowest severity go first, so that routine events in any number
 * never push out a fault (state_damaged, storage_lost, actuator_fault) the operator has yet to see.
 */
function trimmed(events: HubEvent[]): HubEvent[] {
  let excess = events.length - MAX_EVENTS;
  const drop = new Set<HubEvent>();
  for (let severity = 0; severity <= 3 && excess > 0; severity++) {
    for (const e of events) {
      if (excess === 0) break;
      if (e.severity === severity) {
        drop.add(e);
        excess--;
      }
    }
  }
  return events.filter((e) => !drop.has(e));
}

const describe = (err: unknown): string => {
  const e = err as NodeJS.ErrnoException | undefined;
  return e?.code ?? e?.message ?? 'not written';
};

function empty(): HubState {
  return {
    format: FORMAT,
    mode: 'normal',
    subscriptions: [],
    realtime: [],
    prices: [],
    activations: [],
    events: [],
    clockOffsetS: 0,
    peerKeys: [],
  };
}

// ---- load-time checks: a wrong-typed field is found once, here, and never reaches a timer ----------------------

type Test = (v: unknown) => boolean;
/** [field, what it must be, its test, optional] */
type Rule = readonly [string, string, Test, boolean?];

const finite: Test = (v) => typeof v === 'number' && Number.isFinite(v);
const whole =
  (min: number): Test =>
  (v) =>
    Number.isInteger(v) && (v as number) >= min;
const text: Test = (v) => typeof v === 'string';
const name: Test = (v) => typeof v === 'string' && v.length > 0;
const textOrNull: Test = (v) => v === null || typeof v === 'string';
const oneOf =
  (...xs: unknown[]): Test =>
  (v) =>
    xs.includes(v);
const TIME = 'a time (epoch ms)';
// Rules several records share.
const REQUESTER: Rule = ['requester', 'a name', name];
const SEVERITY: Rule = ['severity', 'a severity 0..3', oneOf(0, 1, 2, 3)];
const HEH_ID: Rule = ['hehId', 'a string or null', textOrNull, true];
const FROM_TO: readonly Rule[] = [
  ['from', TIME, finite],
  ['to', TIME, finite],
];

const SUBSCRIPTION: readonly Rule[] = [
  REQUESTER,
  ['interval', 'whole seconds > 0', whole(1)],
  ['resolution', 'whole seconds > 0', whole(1)],
  ['signals', 'a list of signal names', (v) => Array.isArray(v) && v.every(name)],
  ['next', TIME, finite],
  ['asked', TIME, finite, true],
  ['requestId', 'a string', text, true],
  HEH_ID,
];
// A threshold, not an event's severity: "set very high to disable" (data model §1.4).
const REALTIME: readonly Rule[] = [
  REQUESTER,
  ['severity', 'a severity threshold (a whole number >= 0)', whole(0)],
  HEH_ID,
];
const PRICE: readonly Rule[] = [
  ['kind', '"load" or "generation"', oneOf('load', 'generation')],
  ...FROM_TO,
  ['price', 'a number', finite],
  ['device', 'a device name', name, true],
  ['sender', 'a name', name],
];
const ACTIVATION: readonly Rule[] = [
  ['id', 'an id', name],
  REQUESTER,
  ['modificationCount', 'a whole number >= 0', whole(0)],
  ...FROM_TO,
  ['quantity', 'a power in kW', finite],
  ['device', 'a device name or null', (v) => v === null || name(v)],
  ['decision', '"accepted", "rejected" or "modified"', oneOf('accepted', 'rejected', 'modified')],
  ['decisionMessage', 'an object', isObject],
  ['phase', '"scheduled", "running" or "ended"', oneOf('scheduled', 'running', 'ended')],
  [
    'refused',
    'a refused modification ({ modificationCount, decisionMessage })',
    (v) => isObject(v) && whole(0)(v['modificationCount']) && isObject(v['decisionMessage']),
    true,
  ],
  ['shares', 'the kW per device', (v) => isObject(v) && Object.values(v).every(finite), true],
];
const PEER_KEY: readonly Rule[] = [
  ['peer', 'a name', name],
  ['x25519', 'a base64url X25519 public key', (v) => typeof v === 'string' && /^[A-Za-z0-9_-]{43}$/.test(v)],
  ['notBefore', TIME, finite],
  ['notAfter', TIME, finite, true],
];
const EVENT: readonly Rule[] = [
  ['time', TIME, finite],
  SEVERITY,
  ['type', 'an event type', name],
  ['end', `${TIME} or null`, (v) => v === null || finite(v), true],
  ['count', 'a whole number >= 0', whole(0), true],
];

function shown(v: unknown): string {
  if (typeof v === 'string') return quoted(v);
  if (Array.isArray(v)) return 'a list';
  if (v === null || v === undefined) return String(v);
  return typeof v === 'object' ? 'an object' : String(v);
}

/** The state in `raw` with every entry that fails its rules left out, and a sentence per problem. */
function checkState(raw: unknown): { state: HubState; problems: string[] } {
  const state = empty();
  const problems: string[] = [];
  if (!isObject(raw)) return { state, problems: [`$: expected a hub state object, found ${shown(raw)}`] };
  if (raw['format'] !== FORMAT) problems.push(`$.format: expected "${FORMAT}", found ${shown(raw['format'])}`);
  const list = <T>(key: string, rules: readonly Rule[]): T[] => {
    const v = raw[key];
    if (v === undefined) return [];
    if (!Array.isArray(v)) {
      problems.push(`$.${key}: expected a list, found ${shown(v)}; dropped`);
      return [];
    }
    return v.filter((entry, i) => {
      const where = `$.${key}[${i}]`;
      if (!isObject(entry)) {
        problems.push(`${where}: expected an object, found ${shown(entry)}; dropped`);
        return false;
      }
      for (const [field, what, test, optional] of rules) {
        const x = entry[field];
        if ((x === undefined && optional === true) || test(x)) continue;
        problems.push(`${where}.${field}: expected ${what}, found ${shown(x)}; the entry is dropped`);
        return false;
      }
      return true;
    }) as T[];
  };
  const mode = raw['mode'];
  if (mode === 'normal' || mode === 'passive' || mode === 'off') state.mode = mode;
  else if (mode !== undefined)
    problems.push(`$.mode: expected "normal", "passive" or "off", found ${shown(mode)}; normal used`);
  const offset = raw['clockOffsetS'];
  if (finite(offset)) state.clockOffsetS = offset as number;
  else if (offset !== undefined) problems.push(`$.clockOffsetS: expected seconds, found ${shown(offset)}; 0 used`);
  state.subscriptions = list('subscriptions', SUBSCRIPTION);
  state.realtime = list('realtime', REALTIME);
  state.prices = list('prices', PRICE);
  state.activations = list('activations', ACTIVATION);
  state.events = list('events', EVENT);
  state.peerKeys = list('peerKeys', PEER_KEY);
  return { state, problems };
}
