/**
 * The measurement history (src/device/history.ts) against a model, over seeded random runs: samples recorded for
 * any slot of the window (late ones from a day back, early ones up to the tolerance ahead, refused beyond), several
 * samples per slot (a signal present replaces, an absent one keeps, null and NaN store null), time moving by minutes
 * to hours, flushes, clean restarts and crashes (the instance dropped: what the last flush wrote is what is left).
 * After every step, queries at every resolution it takes (60 to 3,600 s, periods cut anywhere) answer what the model
 * says: per step, the average of the slots stored in it within the window (retention back from now), nulls left out,
 * null for a step without a value; a sample outside the window is counted in `rejected`, not stored.
 * FUZZ_ITERATIONS=n runs n sequences (default 10), FUZZ_SEED=s replays one.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { History, type HistoryError } from '../../src/device/history.js';
import { Random } from '../helpers/random.js';

const sequences = Number(process.env['FUZZ_ITERATIONS'] ?? 10);
const firstSeed = Number(process.env['FUZZ_SEED'] ?? 20_261_204);
const RES_MS = 60_000;
const SIGNALS = ['meter.p', 'boiler.p', 'boiler.t'];
const RETENTION_H = 24;
const RET_SLOTS = (RETENTION_H * 3_600_000) / RES_MS;
const AHEAD_SLOTS = 5; // the ring's tolerance ahead: 300 s at 60 s
const T0 = Date.UTC(2026, 0, 1, 12);
const DAY = 86_400_000;

type Row = Map<string, number | null>;

/** The slots a query may use at `now`, as the ring's window. */
function windowOf(now: number): [number, number] {
  const slot = Math.floor(now / RES_MS);
  return [Math.max(0, slot - RET_SLOTS + 1), slot + AHEAD_SLOTS];
}

function expected(model: Map<number, Row>, now: number, from: number, to: number, res: number, signal: string) {
  const q = res / 60;
  const first = Math.ceil(from / RES_MS);
  const steps = to > from ? Math.ceil((to - from) / (res * 1000)) : 0;
  const [lo, hi] = windowOf(now);
  const out: (number | null)[] = [];
  for (let k = 0; k < steps; k++) {
    let sum = 0;
    let count = 0;
    for (let s = Math.max(first + k * q, lo); s <= Math.min(first + (k + 1) * q - 1, hi); s++) {
      const v = model.get(s)?.get(signal);
      if (typeof v === 'number') {
        sum += v;
        count++;
      }
    }
    out.push(count === 0 ? null : sum / count);
  }
  return out;
}

function copy(model: Map<number, Row>): Map<number, Row> {
  return new Map([...model].map(([slot, row]) => [slot, new Map(row)]));
}

async function sequence(seed: number, steps: number, dir: string): Promise<void> {
  const rnd = new Random(seed);
  let now = T0 + rnd.range(0, 59) * 1000;
  const options = {
    resolutionS: 60,
    signals: SIGNALS,
    retentionHours: RETENTION_H,
    fsyncIntervalMs: DAY, // a record a day after the last flush starts one (the test then waits for it)
    now: () => now,
    onWarning: (w: HistoryError) => {
      throw new Error(`seed ${seed}: unexpected warning ${w.code} ${w.message}`);
    },
  };
  let h = await History.open(dir, options);
  const crashed: History[] = [];
  let model = new Map<number, Row>();
  let durable = new Map<number, Row>();
  let rejected = 0;
  let flushedAt = now;
  try {
    for (let step = 0; step < steps; step++) {
      const where = `seed ${seed}, step ${step}`;
      const op = rnd.int(20);
      if (op < 11) {
        // Mostly now, sometimes late (a backlog of a device), now and then outside the window.
        const offset = [0, 0, -rnd.range(1, 120), -rnd.range(1, RET_SLOTS + 60), rnd.range(1, AHEAD_SLOTS + 3)][
          rnd.int(5)
        ] as number;
        const t = now + offset * RES_MS + rnd.range(0, 59_999);
        const values: Record<string, number | null> = {};
        for (const s of SIGNALS) {
          if (rnd.int(3) === 0) continue;
          values[s] = [null, Number.NaN, rnd.range(-5000, 5000) / 8, rnd.next() * 1e6][rnd.int(4)] as number | null;
        }
        if (rnd.int(10) === 0) values['gone.p'] = 1; // not configured: dropped
        const slot = Math.floor(t / RES_MS);
        const [lo, hi] = windowOf(now);
        h.record(t, values);
        if (slot < lo || slot > hi) rejected++;
        else {
          const known = Object.keys(values).filter((s) => SIGNALS.includes(s));
          if (known.length > 0) {
            const row = model.get(slot) ?? new Map<string, number | null>();
            for (const s of known) {
              const v = values[s];
              row.set(s, typeof v === 'number' && Number.isFinite(v) ? v : null);
            }
            model.set(slot, row);
          }
        }
        assert.is(h.rejected, rejected, `${where}: samples outside the window rejected`);
        if (now - flushedAt >= DAY) {
          // Due: the record started a flush in the background; waited for, it makes everything so far durable.
          await h.flush();
          durable = copy(model);
          flushedAt = now;
        }
      } else if (op < 14) {
        now += [rnd.range(1, 59) * 1000, rnd.range(1, 90) * 60_000, rnd.range(1, 8) * 3_600_000][rnd.int(3)] as number;
      } else if (op < 16) {
        await h.flush();
        durable = copy(model);
        flushedAt = now;
      } else if (op < 18) {
        await h.close();
        durable = copy(model);
        h = await History.open(dir, options);
        flushedAt = now;
        rejected = 0;
      } else {
        // A crash: what was recorded since the last flush is gone.
        crashed.push(h);
        h = await History.open(dir, options);
        flushedAt = now;
        model = copy(durable);
        rejected = 0;
      }
      for (let i = 0; i < 3; i++) {
        const res = [60, 120, 300, 900, 3600][rnd.int(5)] as number;
        const from = now - rnd.range(-10, RET_SLOTS + 120) * RES_MS - rnd.range(0, 59_999);
        const to = from + rnd.range(0, 6 * 60) * RES_MS + rnd.range(0, 59_999);
        const q = h.query(from, to, res, SIGNALS);
        for (const s of SIGNALS)
          assert.equal(
            q.values[s],
            expected(model, now, from, to, res, s),
            `${where}: ${s} from ${(from - T0) / 1000} s to ${(to - T0) / 1000} s at ${res} s (now ${(now - T0) / 1000} s)`,
          );
      }
    }
  } finally {
    await h.close();
    for (const c of crashed) await c.close().catch(() => undefined);
  }
}

test(`the history answers what was recorded, across flushes, restarts and crashes (${sequences} sequences of 120 steps)`, async () => {
  for (let i = 0; i < sequences; i++) {
    const dir = mkdtempSync(path.join(tmpdir(), 'history-prop-'));
    try {
      await sequence(firstSeed + i, 120, dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

test.run();
