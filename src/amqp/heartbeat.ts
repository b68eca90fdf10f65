/**
 * Heartbeats (spec §4.2.7, https://www.rabbitmq.com/docs/heartbeats). With a negotiated timeout of T seconds we
 * send a heartbeat frame every T/2 unless other frames went out, and count any received byte as liveness. The peer
 * is declared dead after three silent ticks, i.e. between 1.5T and 2T after the last byte, without a graceful close
 * (a dead peer cannot answer one); and when bytes still come but no whole frame for frameDeadlineMs (a frame
 * trickling in a byte at a time would otherwise hold a dead connection open for ever).
 *
 * The timer is a plain interval, independent of user handlers: a slow async handler cannot delay it. A long
 * synchronous handler can (nothing runs while it does), and then bytes may be waiting unread in the socket; so a
 * tick that fires much later than scheduled does not count as silence, and is reported as event-loop lag.
 */
export interface Clock {
  now(): number;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setInterval: (fn, ms) => {
    const t = setInterval(fn, ms);
    t.unref();
    return t;
  },
  clearInterval: (h) => clearInterval(h as ReturnType<typeof setInterval>),
};

export interface HeartbeatHooks {
  send(): void;
  /** `partial`: bytes came, but no whole frame (a frame trickling in a byte at a time holds no connection alive). */
  dead(silentMs: number, partial: boolean): void;
  lag(lateMs: number): void;
}

/** Ticks without received bytes before the peer is declared dead: each tick is T/2, so 1.5T to 2T after the last byte. */
const SILENT_TICKS = 3;

/**
 * Most time without a whole frame while bytes still come: 4T, at least 60 s. A live broker sends a heartbeat every
 * T/2 when idle, and a frame of frame_max (128 KiB) takes 60 s only below 2.2 KB/s.
 */
export function frameDeadlineMs(timeoutSec: number): number {
  return Math.max(4 * timeoutSec * 1000, 60_000);
}

export class Heartbeat {
  /** Set by the connection whenever bytes arrive / leave, and whenever a whole frame arrived; cleared on each tick. */
  received = false;
  sent = false;
  framed = false;
  #silent = 0;
  #frameless = 0;
  #lastTick: number;
  #handle: unknown;

  readonly #hooks: HeartbeatHooks;
  readonly #clock: Clock = systemClock;
  constructor(
    readonly timeoutSec: number,
    hooks: HeartbeatHooks,
    clock: Clock = systemClock,
  ) {
    this.#hooks = hooks;
    this.#clock = clock;
    const interval = (timeoutSec * 1000) / 2;
    this.#lastTick = clock.now();
    this.#handle = clock.setInterval(() => this.#tick(interval), interval);
  }

  stop(): void {
    this.#clock.clearInterval(this.#handle);
  }

  #tick(interval: number): void {
    const now = this.#clock.now();
    const late = now - this.#lastTick - interval;
    this.#lastTick = now;
    if (!this.sent) this.#hooks.send();
    this.sent = false;
    if (late > interval / 2) {
      // The event loop was stalled: unread bytes may be queued, so this tick proves nothing either way.
      this.received = false;
      this.framed = false;
      this.#silent = 0;
      this.#frameless = 0;
      this.#hooks.lag(late);
      return;
    }
    this.#frameless = this.framed ? 0 : this.#frameless + 1;
    this.framed = false;
    if (this.#frameless * interval >= frameDeadlineMs(this.timeoutSec)) {
      this.stop();
      this.#hooks.dead(this.#frameless * interval, true);
      return;
    }
    if (this.received) {
      this.received = false;
      this.#silent = 0;
      return;
    }
    if (++this.#silent >= SILENT_TICKS) {
      this.stop();
      this.#hooks.dead(this.#silent * interval, false);
    }
  }
}
