/**
 * The receiver's replay window (src/crypto/replay.ts) against a model, over seeded random runs: a few senders whose
 * sequence numbers move forward in steps and jumps, with old, repeated and out-of-range numbers mixed in. The model
 * keeps every number accepted and the highest per sender and instance (a number's top 16 bits); its verdict: below 1
 * or past 2^64-1 too-old, above the highest new, more than 63 behind it too-old, accepted before duplicate, else new.
 * No timestamps are given, so no window starts again (test/unit/crypto/replay.test.ts covers that). Now and then several persist() calls are made
 * with accepts between them, without waiting, and the window is opened again from its file once one of them resolves:
 * the file knows at least every number accepted before that call (persist, then ack). After all of them, and one
 * more persist(), the window opened again carries on in step with the model.
 *
 * FUZZ_ITERATIONS=n runs n sequences (default 20), FUZZ_SEED=s replays one.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ReplayWindow } from '../../src/crypto/replay.js';
import { Random } from '../helpers/random.js';

const U64_END = 1n << 64n;
const sequences = Number(process.env['FUZZ_ITERATIONS'] ?? 20);
const firstSeed = Number(process.env['FUZZ_SEED'] ?? 20_261_204);

/** The window a number falls in: the sender's, per instance. */
const windowOf = (kid: string, seq: bigint): string => `${kid}/${seq >> 48n}`;

class Model {
  readonly seen = new Map<string, { max: bigint; accepted: Set<bigint> }>();

  verdict(kid: string, seq: bigint): 'new' | 'duplicate' | 'too-old' {
    if (seq < 1n || seq >= U64_END) return 'too-old';
    const s = this.seen.get(windowOf(kid, seq));
    if (s === undefined || seq > s.max) return 'new';
    if (s.max - seq > 63n) return 'too-old';
    return s.accepted.has(seq) ? 'duplicate' : 'new';
  }

  accept(kid: string, seq: bigint): void {
    if (this.verdict(kid, seq) !== 'new') return;
    const s = this.seen.get(windowOf(kid, seq)) ?? { max: seq, accepted: new Set<bigint>() };
    s.accepted.add(seq);
    if (seq > s.max) s.max = seq;
    this.seen.set(windowOf(kid, seq), s);
  }

  clone(): Model {
    const m = new Model();
    for (const [kid, s] of this.seen) m.seen.set(kid, { max: s.max, accepted: new Set(s.accepted) });
    return m;
  }
}

const KIDS = ['00000000000000a1', '00000000000000b2', 'ffffffffffffffff'];

function pick(rnd: Random, model: Model, kid: string): bigint {
  const max = model.seen.get(windowOf(kid, 1n))?.max ?? 0n;
  switch (rnd.int(9)) {
    case 0:
      return max - BigInt(rnd.int(70)); // at, inside and just past the window's edge
    case 1:
      return max + BigInt(rnd.range(1, 3));
    case 2:
      return max + BigInt(rnd.range(60, 70)); // a jump around the window's width
    case 3:
      return max + 1_000_000n;
    case 4:
      return [0n, -1n, U64_END - 1n, U64_END, U64_END - 64n][rnd.int(5)] as bigint;
    case 5: {
      const accepted = [...model.seen.entries()]
        .filter(([w]) => w.startsWith(`${kid}/`))
        .flatMap(([, s]) => [...s.accepted]);
      return accepted.length === 0 ? 1n : (accepted[rnd.int(accepted.length)] as bigint); // a replay
    }
    default:
      return max + 1n;
  }
}

async function sequence(seed: number, steps: number, dir: string): Promise<void> {
  const rnd = new Random(seed);
  const file = path.join(dir, `w-${seed}.json`);
  let w = await ReplayWindow.open(file);
  const model = new Model();
  for (let step = 0; step < steps; step++) {
    const where = `seed ${seed}, step ${step}`;
    if (rnd.int(12) === 0) {
      // Persist calls piling up with accepts between them; the file must hold what came before the one awaited.
      const calls: { done: Promise<void>; before: Model }[] = [];
      for (let k = rnd.range(1, 4); k > 0; k--) {
        const kid = KIDS[rnd.int(KIDS.length)] as string;
        const seq = pick(rnd, model, kid);
        assert.is(w.accept(kid, seq), model.verdict(kid, seq), `${where}: accept ${kid} ${seq}`);
        model.accept(kid, seq);
        calls.push({ done: w.persist(), before: model.clone() });
      }
      const chosen = calls[rnd.int(calls.length)] as (typeof calls)[number];
      await chosen.done;
      const reopened = await ReplayWindow.open(file);
      for (const [w, s] of chosen.before.seen)
        for (const seq of s.accepted) {
          const kid = w.slice(0, 16);
          assert.is.not(
            reopened.check(kid, seq),
            'new',
            `${where}: ${kid} ${seq}, accepted before persist(), is in the file`,
          );
        }
      await Promise.all(calls.map((c) => c.done));
      await w.persist();
      w = await ReplayWindow.open(file);
      continue;
    }
    const kid = KIDS[rnd.int(KIDS.length)] as string;
    const seq = pick(rnd, model, kid);
    const expected = model.verdict(kid, seq);
    assert.is(w.check(kid, seq), expected, `${where}: check ${kid} ${seq}`);
    assert.is(w.accept(kid, seq), expected, `${where}: accept ${kid} ${seq}`);
    model.accept(kid, seq);
    assert.is(
      w.check(kid, seq),
      seq >= 1n && seq < U64_END ? (expected === 'too-old' ? 'too-old' : 'duplicate') : 'too-old',
      `${where}: again`,
    );
  }
}

test(`the replay window agrees with a model of every number accepted, across persist and reopen (${sequences} sequences of 200 steps)`, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'replay-prop-'));
  try {
    for (let i = 0; i < sequences; i++) await sequence(firstSeed + i, 200, dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
