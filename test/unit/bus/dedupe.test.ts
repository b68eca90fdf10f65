/** SeenIds: duplicates are remembered within the TTL and the capacity, forgotten after, in constant time. */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { SeenIds } from '../../../src/bus/dedupe.js';

const s = suite('SeenIds');

s('an id is seen within the TTL and forgotten after two TTLs', () => {
  let t = 0;
  const seen = new SeenIds(100, 1000, () => t);
  seen.add('a');
  assert.ok(seen.has('a'));
  t = 999;
  assert.ok(seen.has('a'));
  t = 1500; // the generation holding 'a' closed at 1000: still remembered for its own TTL
  assert.ok(seen.has('a'));
  t = 2600;
  assert.not.ok(seen.has('a'));
  assert.not.ok(seen.has('never'));
});

s('capacity: the newest half is always kept, the total never exceeds the capacity', () => {
  const seen = new SeenIds(1000, 1e12);
  for (let i = 0; i < 10_000; i++) {
    seen.add(`id-${i}`);
    assert.ok(seen.size <= 1000);
  }
  for (let i = 9500; i < 10_000; i++) assert.ok(seen.has(`id-${i}`), `id-${i}`);
  assert.not.ok(seen.has('id-0'));
});

s('1,000,000 adds with a capacity of 100,000: bounded, the newest remembered', () => {
  const seen = new SeenIds(100_000, 1e12);
  for (let i = 0; i < 1_000_000; i++) seen.add(`m${i}`);
  assert.ok(seen.has('m999999'));
  assert.ok(seen.size <= 100_000);
});

s("per sender: one peer's thousands of distinct ids never push another's out; all together stay bounded", () => {
  const seen = new SeenIds(1000, 1e12);
  seen.add('heh1:retry-me:abc');
  // heh2 floods distinct ids (reports without a msg_id, which its budget does not refuse).
  for (let i = 0; i < 12_000; i++) seen.add(`heh2:${i}:x`);
  assert.ok(seen.has('heh1:retry-me:abc'), "heh1's id is still known: its retry is a duplicate");
  assert.ok(seen.has('heh2:11999:x'));
  assert.not.ok(seen.has('heh2:0:x'), "heh2's oldest are its own to lose");
  // Many senders, each within its own capacity: the total is held to 8 x the capacity.
  for (let p = 0; p < 30; p++) for (let i = 0; i < 900; i++) seen.add(`peer${p}:${i}:x`);
  assert.ok(seen.size <= 8 * 1000, `${seen.size} ids held`);
  assert.ok(seen.has('peer29:899:x'), 'the newest are kept');
});

s.run();
