/**
 * Time as the bus and the hub see it: the wall clock and its timers behind one small interface, so that a test (ours,
 * or an aggregator's own over the in-memory transport) moves time by hand instead of waiting for it: request
 * timeouts, activations that start in an hour, periodic reports every 15 minutes.
 */

export interface Timer {
  cancel(): void;
}

export interface TimerOptions {
  /**
   * The timer does not keep the process alive (the hub's background work); a pending request's timeout does, or a
   * script awaiting its reply would exit under it.
   */
  unref?: boolean;
  /**
   * The deadline is a time of the wall clock, now() + ms (an activation's start and end, a period's end): when the
   * system clock is stepped (NTP on a Pi without a real-time clock, which booted on a stale time), the timer follows
   * the step, within WALL_CHECK_MS. Otherwise `ms` is time elapsed whatever the wall clock does (a backoff, a timeout).
   */
  wall?: boolean;
}

export interface Clock {
  now(): number;
  /**
   * Milliseconds from an arbitrary origin that a step of the wall clock does not move (for how long ids are
   * remembered, and budgets refill); without it, now() is used.
   */
  elapsed?(): number;
  /** Runs `fn` once after `ms` (see TimerOptions). */
  setTimeout(fn: () => void, ms: number, options?: TimerOptions): Timer;
}

/** The longest delay Node's setTimeout takes: a longer one fires after 1 ms (TimeoutOverflowWarning). */
export const MAX_TIMEOUT_MS = 0x7fffffff;

/** How often a wall-clock timer compares its deadline with the clock: the most it lags a step of the clock. */
export const WALL_CHECK_MS = 10_000;

export const systemClock: Clock = {
  now: () => Date.now(),
  elapsed: () => performance.now(),
  setTimeout(fn, ms, options) {
    if (options?.wall === true) return wallTimer(fn, ms, options.unref === true);
    // A long request timeout, a backoff: past 24.8 days the timer is armed again for the rest, or it would run at once.
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
 * A timer due at the wall-clock time now() + ms. Node's timers measure elapsed time, so it looks at the clock every
 * `checkMs` (and past 24.8 days as well) and runs `fn` once the clock says the deadline has come: a step forward
 * makes it run within `checkMs`, a step back makes it wait for the clock to reach the deadline again.
 */
export function wallTimer(
  fn: () => void,
  ms: number,
  unref: boolean,
  now: () => number = Date.now,
  checkMs = WALL_CHECK_MS,
): Timer {
  const due = now() + (Number.isFinite(ms) ? Math.max(0, ms) : 0);
  let t: ReturnType<typeof setTimeout>;
  // Armed even when already due: fn runs from the event loop, never inside the caller's setTimeout().
  const arm = (): void => {
    t = setTimeout(check, Math.max(0, Math.min(due - now(), checkMs)));
    if (unref) t.unref();
  };
  const check = (): void => (due - now() <= 0 ? fn() : arm());
  arm();
  return { cancel: () => clearTimeout(t) };
}

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
  wall: boolean;
}

/**
 * A clock that moves only when told. `advance(ms)` runs the timers that fall due on the way one at a time, in the
 * order of their due time (then of their creation), with the clock set to each one's due time, and lets the promise
 * work each one starts settle before the next: a timer set by a timer fires within the same advance if it falls due.
 */
export class ManualClock implements Clock {
  #now: number;
  /** The sum of the steps: elapsed time is now() without them. */
  #stepped = 0;
  #seq = 0;
  readonly #timers = new Map<number, Pending>();

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  elapsed(): number {
    return this.#now - this.#stepped;
  }

  setTimeout(fn: () => void, ms: number, options?: TimerOptions): Timer {
    const seq = ++this.#seq;
    const at = this.#now + Math.max(0, Number.isFinite(ms) ? ms : 0);
    this.#timers.set(seq, { at, seq, fn, wall: options?.wall === true });
    return { cancel: () => this.#timers.delete(seq) };
  }

  /**
   * The wall clock is stepped by `ms` (either way), as NTP steps it: a wall timer keeps its deadline (a step
   * forward past it runs it now), any other timer keeps the time it had left. Then what is due runs, as advance does.
   */
  async step(ms: number): Promise<void> {
    await settle();
    this.#now += ms;
    this.#stepped += ms;
    for (const p of this.#timers.values()) if (!p.wall) p.at += ms;
    await this.advanceTo(this.#now);
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
