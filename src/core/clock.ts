/**
 * Time as the bus and the hub see it: the wall clock and its timers behind one small interface, so that a test (ours,
 * or an aggregator's own over the in-memory transport) moves time by hand instead of waiting for it: request
 * timeouts, activations that start in an hour, periodic reports every 15 minutes.
 */

export interface Timer {
  cancel(): void;
}

export interface Clock {
  now(): number;
  /**
   * Runs `fn` once after `ms`. `unref`: the timer does not keep the process alive (the hub's background work);
   * a pending request's timeout does, or a script awaiting its reply would exit under it.
   */
  setTimeout(fn: () => void, ms: number, options?: { unref?: boolean }): Timer;
}

/** The longest delay Node's setTimeout takes: a longer one fires after 1 ms (TimeoutOverflowWarning). */
export const MAX_TIMEOUT_MS = 0x7fffffff;

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms, options) {
    // An activation a month ahead, a periodic report of 30 days, a long request timeout: past 24.8 days the timer
    // is armed again for the rest, or it would run at once.
    let t: ReturnType<typeof setTimeout>;
    const arm = (left: number): void => {
      t = setTimeout(left > MAX_TIMEOUT_MS ? () => arm(left - MAX_TIMEOUT_MS) : fn, Math.min(left, MAX_TIMEOUT_MS));
      if (options?.unref === true) t.unref();
    };
    arm(ms);
    return { cancel: () => clearTimeout(t) };
  },
};

/**
 * Lets the promise work already started run on: `turns` turns of the event loop (setImmediate), which is enough for
 * chains of promises that do no I/O. Work that waits for files or sockets must be waited for by what it produces.
 */
export async function settle(turns = 10): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

interface Pending {
  at: number;
  seq: number;
  fn: () => void;
}

/**
 * A clock that moves only when told. `advance(ms)` runs the timers that fall due on the way one at a time, in the
 * order of their due time (then of their creation), with the clock set to each one's due time, and lets the promise
 * work each one starts settle before the next: a timer set by a timer fires within the same advance if it falls due.
 */
export class ManualClock implements Clock {
  #now: number;
  #seq = 0;
  readonly #timers = new Map<number, Pending>();

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    const seq = ++this.#seq;
    this.#timers.set(seq, { at: this.#now + Math.max(0, Number.isFinite(ms) ? ms : 0), seq, fn });
    return { cancel: () => this.#timers.delete(seq) };
  }

  /** Timers not fired nor cancelled yet. */
  get pending(): number {
    return this.#timers.size;
  }

  /** When the next timer falls due, if there is one. */
  next(): number | undefined {
    return this.#first(Infinity)?.at;
  }

  /** Moves time forward by `ms` (see the class). */
  async advance(ms: number): Promise<void> {
    await this.advanceTo(this.#now + ms);
  }

  /** Moves time forward to `t` (never back). */
  async advanceTo(t: number): Promise<void> {
    await settle();
    for (let due = this.#first(t); due !== undefined; due = this.#first(t)) {
      this.#timers.delete(due.seq);
      this.#now = Math.max(this.#now, due.at);
      due.fn();
      await settle();
    }
    this.#now = Math.max(this.#now, t);
    await settle();
  }

  #first(until: number): Pending | undefined {
    let first: Pending | undefined;
    for (const p of this.#timers.values())
      if (p.at <= until && (first === undefined || p.at < first.at || (p.at === first.at && p.seq < first.seq)))
        first = p;
    return first;
  }
}
