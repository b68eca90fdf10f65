/**
 * Fairness between peers (issue 15, item 5; docs/bus.md, "Fairness"): each sender has its own budget of messages
 * and bytes, two token buckets that refill at a steady rate up to a burst. A request over its sender's budget is
 * answered 503 (busy, data model §3.6: retry later with the same msg_id) instead of reaching its handler, so one
 * peer's flood costs the others no handler time. Per sender, so an aggregator's thousands of hubs each have their
 * own: one hub's flood spends nothing of another's.
 */
import { fail } from './errors.js';
import { READ_REQUESTS } from './protocol.js';

/** A steady `rate` per second, with up to `burst` at once. */
export interface Bucket {
  readonly rate: number;
  readonly burst: number;
}

export interface BudgetOptions {
  /** Messages per second and per sender (default 100 a second, bursts of 1,000). */
  readonly messages?: Bucket;
  /** Body bytes per second and per sender (default 8 MiB a second, bursts of 32 MiB). */
  readonly bytes?: Bucket;
}

export const DEFAULT_BUDGET: Required<BudgetOptions> = {
  messages: { rate: 100, burst: 1000 },
  bytes: { rate: 8 << 20, burst: 32 << 20 },
};

interface State {
  messages: number;
  bytes: number;
  at: number;
}

export class SenderBudget {
  declare readonly messages: Bucket;
  declare readonly bytes: Bucket;
  readonly #now: () => number;
  readonly #senders = new Map<string, State>();

  /**
   * `minBurstBytes`: the largest body the connector accepts; a smaller byte burst could never let such a body
   * through, so it is refused as a configuration error.
   */
  constructor(options: BudgetOptions, now: () => number, minBurstBytes = 0) {
    this.messages = check('messages', options.messages ?? DEFAULT_BUDGET.messages, 1);
    this.bytes = check('bytes', options.bytes ?? DEFAULT_BUDGET.bytes, minBurstBytes);
    this.#now = now;
  }

  /**
   * Takes one message of `size` bytes from `sender`'s budget if both buckets hold enough, and says whether it did.
   * With `force` it is taken whatever is left, never below empty: a message that cannot be refused (see docs/bus.md)
   * still spends the sender's budget for its requests, but leaves no debt.
   */
  take(sender: string, size: number, force = false): boolean {
    const s = this.#refill(sender);
    if (s.messages >= 1 && s.bytes >= size) {
      s.messages -= 1;
      s.bytes -= size;
      return true;
    }
    if (force) {
      s.messages = Math.max(0, s.messages - 1);
      s.bytes = Math.max(0, s.bytes - size);
    }
    return false;
  }

  /** Seconds until `sender` could send one message of `size` bytes (0: now). */
  waitSeconds(sender: string, size: number): number {
    const s = this.#refill(sender);
    const m = s.messages >= 1 ? 0 : (1 - s.messages) / this.messages.rate;
    const b = s.bytes >= size ? 0 : (size - s.bytes) / this.bytes.rate;
    return Math.max(m, b);
  }

  #refill(sender: string): State {
    const now = this.#now();
    let s = this.#senders.get(sender);
    if (s === undefined) {
      // The senders are the configured peers (an unknown one is refused before this), so the map stays bounded.
      s = { messages: this.messages.burst, bytes: this.bytes.burst, at: now };
      this.#senders.set(sender, s);
      return s;
    }
    // A clock that goes back (the wall clock set back) refills nothing rather than taking away.
    const seconds = Math.max(0, now - s.at) / 1000;
    s.messages = Math.min(this.messages.burst, s.messages + seconds * this.messages.rate);
    s.bytes = Math.min(this.bytes.burst, s.bytes + seconds * this.bytes.rate);
    s.at = now;
    return s;
  }
}

function check(name: string, b: Bucket, minBurst: number): Bucket {
  const ok = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v) && v > 0;
  if (!ok(b.rate)) fail('CONFIG', `budget.${name}.rate must be a number above 0, not ${String(b.rate)}`);
  if (!ok(b.burst) || b.burst < Math.max(1, minBurst))
    fail(
      'CONFIG',
      `budget.${name}.burst must be at least ${Math.max(1, minBurst)}` +
        `${minBurst > 1 ? ' (the largest body accepted, or such a body could never pass)' : ''}, not ${String(b.burst)}`,
    );
  return { rate: b.rate, burst: b.burst };
}

/** Requests a sender may retry unchanged (reads, and activations, idempotent on their id and count, §3.5 rule 4). */
const REQUESTS = new Set([...READ_REQUESTS, 'activate', 'modify_activation']);

/**
 * Whether a message over budget may be refused with 503: only a request its sender can retry and tell was refused.
 * A message with a msg_id (the data model's "retry later with the same msg_id"; the receiver's dedupe makes the
 * retry safe), or a request of the list above, which its sender matches by request_id or id. Never a `response`,
 * and never a report, an event or a reply without a msg_id: nobody would retry those, so refusing one would lose it.
 */
export function refusable(message: { msg: string; msg_id?: unknown }): boolean {
  if (message.msg === 'response') return false;
  return typeof message.msg_id === 'string' || REQUESTS.has(message.msg);
}
