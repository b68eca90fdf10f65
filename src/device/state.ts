/**
 * What the hub must remember across restarts besides its measurements: periodic report subscriptions, prices,
 * activations and their decisions, the smart mode, realtime event subscriptions and the recent events. Small and
 * rarely changed, so it is one JSON file rewritten durably (tmp + fsync + rename) on every change.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { writeFileDurably } from '../store/durable.js';

export interface Subscription {
  requester: string;
  interval: number;
  resolution: number;
  signals: string[];
  /** The start of the next period to report (epoch ms). */
  next: number;
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
}

export interface HubEvent {
  time: number;
  severity: number;
  type: string;
  end?: number | null;
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
}

const MAX_EVENTS = 1000;

export class StateStore {
  #state: HubState;
  #writing: Promise<void> = Promise.resolve();
  readonly file: string;

  private constructor(file: string, state: HubState) {
    this.file = file;
    this.#state = state;
  }

  /** Loads the state file; a missing one is a fresh hub, a corrupt one an error (never a silent reset). */
  static open(dir: string): StateStore {
    const file = path.join(dir, 'hub-state.json');
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new StateStore(file, empty());
      throw err;
    }
    const v = JSON.parse(text) as HubState;
    if (v.format !== 'heh-hub-state/1') throw new Error(`${file}: not a heh-hub-state/1 file`);
    return new StateStore(file, { ...empty(), ...v });
  }

  get state(): Readonly<HubState> {
    return this.#state;
  }

  /**
   * Changes the state and writes it; writes are serialized, the last one always lands. `lazy` changes (the
   * progress of periodic reports, routine events) are written with the next write or within `lazyMs`: an SD
   * card must not take an fsync per report, and losing a minute of that progress only repeats a few reports.
   */
  update(change: (s: HubState) => void, options: { lazy?: boolean } = {}): Promise<void> {
    change(this.#state);
    if (this.#state.events.length > MAX_EVENTS) this.#state.events.splice(0, this.#state.events.length - MAX_EVENTS);
    if (options.lazy === true) {
      this.#lazyTimer ??= setTimeout(() => {
        void this.#write();
      }, this.lazyMs);
      this.#lazyTimer.unref();
      return Promise.resolve();
    }
    return this.#write();
  }

  /** How long a lazy change may wait for its write (default one minute). */
  lazyMs = 60_000;
  #lazyTimer: NodeJS.Timeout | undefined;
  /** Durable writes so far (for the wear figures). */
  writes = 0;

  #write(): Promise<void> {
    if (this.#lazyTimer !== undefined) clearTimeout(this.#lazyTimer);
    this.#lazyTimer = undefined;
    const snapshot = JSON.stringify(this.#state);
    this.writes++;
    // A failed write must not stop the later ones: each write carries the whole state.
    this.#writing = this.#writing.catch(() => undefined).then(() => writeFileDurably(this.file, snapshot, 0o600));
    return this.#writing;
  }

  /** Writes any lazy change now, and waits for the writes in flight. */
  flush(): Promise<void> {
    if (this.#lazyTimer !== undefined) return this.#write();
    return this.#writing;
  }
}

function empty(): HubState {
  return {
    format: 'heh-hub-state/1',
    mode: 'normal',
    subscriptions: [],
    realtime: [],
    prices: [],
    activations: [],
    events: [],
    clockOffsetS: 0,
  };
}
