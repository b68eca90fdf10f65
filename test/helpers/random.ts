/**
 * A tiny seeded PRNG (mulberry32) for the property and fuzz tests: every run is reproducible from its seed, and a
 * failure message names the seed and iteration that produced it.
 */
export class Random {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  /** 32 random bits as an unsigned integer. */
  u32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.u32() / 0x100000000;
  }

  /** Integer in [0, n), n <= 2^32. */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Integer in [lo, hi], both inclusive, for spans up to 2^32. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** Integer in [0, 2^53 - 1], uniform over the bits (so large values are as likely as small ones per bit width). */
  safeInt(): number {
    const bits = this.int(54);
    const hi = this.u32() & (2 ** Math.max(0, bits - 32) - 1);
    const lo = bits >= 32 ? this.u32() : this.u32() % 2 ** bits;
    return hi * 0x100000000 + lo;
  }

  bool(p = 0.5): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[this.int(items.length)] as T;
  }

  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

/** Iterations of the fuzz loops: `FUZZ_ITERATIONS` (as `npm run fuzz` sets it), else the default. */
export function fuzzIterations(fallback = 10_000): number {
  const raw = process.env['FUZZ_ITERATIONS'];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 1)
    throw new Error(`FUZZ_ITERATIONS must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

/** The seed of a property run: `FUZZ_SEED` to replay a reported failure, else the fixed default. */
export function fuzzSeed(fallback: number): number {
  const raw = process.env['FUZZ_SEED'];
  return raw === undefined || raw === '' ? fallback : Number(raw) >>> 0;
}
