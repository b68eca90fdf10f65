/**
 * The MQTT transport's reconnection delays (src/mqtt/backoff.ts) with a seeded source: exponential, capped, and
 * jittered after the cap so that a fleet that lost its broker together does not come back in step.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { backoffDelay } from '../../../src/mqtt/index.js';
import { Random } from '../../helpers/random.js';

const s = suite('mqtt backoff');

s('doubles from reconnectDelay up to the cap, then adds 0 to 50% jitter', () => {
  const r = new Random(7);
  const o = { reconnectDelay: 1000, maxReconnectDelay: 30_000, random: () => r.next() };
  for (let attempt = 1; attempt <= 12; attempt++) {
    const base = Math.min(30_000, 1000 * 2 ** (attempt - 1));
    const d = backoffDelay(attempt, o);
    assert.ok(d >= base && d <= base * 1.5, `attempt ${attempt}: ${d} ms outside [${base}, ${base * 1.5}]`);
  }
  assert.is(backoffDelay(1, { random: () => 0 }), 2000, 'default first delay');
  assert.is(backoffDelay(40, { random: () => 0 }), 60_000, 'default cap');
  assert.is(backoffDelay(40, { random: () => 0.999999 }), 90_000, 'the jitter applies after the cap');
});

s('the same seed gives the same delays; 5,000 hubs at the cap are spread over the jitter', () => {
  const run = (seed: number): number[] => {
    const r = new Random(seed);
    return Array.from({ length: 8 }, (_, i) => backoffDelay(i + 1, { random: () => r.next() }));
  };
  assert.equal(run(42), run(42));
  assert.not.equal(run(42), run(43));
  const r = new Random(1);
  const fleet = Array.from({ length: 5000 }, () => backoffDelay(20, { random: () => r.next() }));
  const seconds = new Set(fleet.map((d) => Math.floor(d / 1000)));
  assert.ok(Math.min(...fleet) >= 60_000 && Math.max(...fleet) <= 90_000);
  assert.ok(seconds.size >= 30, `5,000 delays over every second from 60 to 90 s (${seconds.size})`);
  const perSecond = Math.max(...[...seconds].map((sec) => fleet.filter((d) => Math.floor(d / 1000) === sec).length));
  assert.ok(perSecond < 250, `at most ${perSecond} hubs in the same second (even spread: 167)`);
});

s.run();
