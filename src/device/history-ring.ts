/**
 * The history's samples in memory (src/device/history.ts): a ring of slots at the configured resolution covering the
 * retention back from now and a little tolerance ahead, which queries are answered from and flushes write from.
 * Apart from the history's disk handling because it is plain arithmetic on two typed arrays, with no I/O.
 *
 * Memory: the ring holds (retention + 5 min) / resolution slots x (signals + 1) x 8 B (24 h, 60 s, 4 signals: 58 kB).
 */

/** Device clocks run a little ahead of the hub's; samples further ahead than this are refused. */
const FUTURE_TOLERANCE_S = 300;

export class SlotRing {
  readonly #resMs: number;
  readonly #retSlots: number;
  readonly #futureSlots: number;
  readonly #signals: number;
  readonly #cap: number;
  /** Ring: the slot held at index slot % cap, or -1. */
  readonly #tags: Float64Array;
  /** Ring values, cap x signals, NaN = null. */
  declare readonly vals: Float64Array;

  constructor(resolutionS: number, retentionHours: number, signals: number) {
    this.#resMs = resolutionS * 1000;
    this.#retSlots = Math.ceil((retentionHours * 3600) / resolutionS);
    this.#futureSlots = Math.max(1, Math.ceil(FUTURE_TOLERANCE_S / resolutionS));
    this.#signals = signals;
    // The valid window [lo, hi] spans exactly cap slots, so two slots in it never share an index.
    this.#cap = this.#retSlots + this.#futureSlots;
    this.#tags = new Float64Array(this.#cap).fill(-1);
    this.vals = new Float64Array(this.#cap * signals).fill(NaN);
  }

  /** The slots queries and records may use: retention back from now, a little tolerance ahead. */
  window(now: number): [number, number] {
    const nowSlot = Math.floor(now / this.#resMs);
    // Slots are u32 on disk and index the ring by remainder, so they never go below 0.
    return [Math.max(0, nowSlot - this.#retSlots + 1), Math.min(0xffffffff, nowSlot + this.#futureSlots)];
  }

  /** The ring row of `slot`, -1 when it holds no sample (or, with `create`, a fresh all-null row). */
  row(slot: number, create: boolean): number {
    const i = slot % this.#cap;
    if (this.#tags[i] === slot) return i;
    if (!create) return -1;
    this.#tags[i] = slot;
    const n = this.#signals;
    this.vals.fill(NaN, i * n, (i + 1) * n);
    return i;
  }

  /**
   * Per step k of `steps`, the averages of columns `cols` over the stored slots first + k * q .. first + (k + 1) * q
   * - 1 within the window; nulls are left out, a step without a value is null.
   */
  averages(first: number, steps: number, q: number, cols: readonly number[], now: number): (number | null)[][] {
    const n = this.#signals;
    const out = cols.map(() => new Array<number | null>(steps).fill(null));
    const [lo, hi] = this.window(now);
    const sums = new Float64Array(cols.length);
    const counts = new Uint32Array(cols.length);
    for (let k = 0; k < steps; k++) {
      const a = Math.max(first + k * q, lo);
      const b = Math.min(first + (k + 1) * q - 1, hi);
      if (a > b) continue;
      sums.fill(0);
      counts.fill(0);
      for (let s = a; s <= b; s++) {
        const row = this.row(s, false);
        if (row < 0) continue;
        for (let c = 0; c < cols.length; c++) {
          const v = this.vals[row * n + cols[c]!]!;
          if (!Number.isNaN(v)) {
            sums[c] = sums[c]! + v;
            counts[c] = counts[c]! + 1;
          }
        }
      }
      for (let c = 0; c < cols.length; c++) if (counts[c]! > 0) out[c]![k] = sums[c]! / counts[c]!;
    }
    return out;
  }

  /** The oldest slot in the window holding a sample. */
  oldest(now: number): number | undefined {
    const [lo, hi] = this.window(now);
    for (let s = lo; s <= hi; s++) if (this.row(s, false) >= 0) return s;
    return undefined;
  }

  /** The newest slot in the window holding a sample. */
  newest(now: number): number | undefined {
    const [lo, hi] = this.window(now);
    for (let s = hi; s >= lo; s--) if (this.row(s, false) >= 0) return s;
    return undefined;
  }
}
