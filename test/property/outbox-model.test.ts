/**
 * The outbox (src/device/outbox.ts) against a model, over seeded random runs: appends of bodies from 0 to 300 bytes,
 * acks in any order (repeated and unknown ids among them), flushes, clean restarts and crashes (the instance dropped
 * without close, after its last append resolved: what write() took is in the page cache and survives the process),
 * with segments small enough to roll over and be deleted every few records. After every reopen:
 *  - every message appended and not acked is pending, with its peer, body and meta (nothing lost);
 *  - a pending message was appended and is either unacked or its ack came after the last flush or close (a tombstone
 *    lost in a crash costs a duplicate, never a message); after a clean close, exactly the unacked ones;
 *  - pending() is in id order and new ids go on above every id seen.
 * Sequences with a small `maxBytes` check drop-oldest: what is dropped is the oldest unacked, and counted.
 * FUZZ_ITERATIONS=n runs n sequences (default 10), FUZZ_SEED=s replays one.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Outbox, type OutboxError, type OutboxRecord } from '../../src/device/outbox.js';
import { Random } from '../helpers/random.js';

const sequences = Number(process.env['FUZZ_ITERATIONS'] ?? 10);
const firstSeed = Number(process.env['FUZZ_SEED'] ?? 20_261_204);

interface Sent {
  id: number;
  peer: string;
  body: Buffer;
  messageId: string;
}

/** Timers that never fire: sync rounds happen only when the test flushes, appends or closes. */
const stillClock = { setTimeout: () => ({ cancel: () => undefined }) };

function view(records: OutboxRecord[]): string[] {
  return records.map((r) => `${r.id} ${r.peer} ${r.messageId} ${r.body.toString('hex')}`);
}

async function sequence(seed: number, steps: number, dir: string): Promise<void> {
  const rnd = new Random(seed);
  const capped = rnd.int(4) === 0;
  const options = {
    segmentBytes: rnd.range(64, 600),
    fsyncIntervalMs: rnd.bool() ? 0 : 60_000,
    clock: stillClock,
    onWarning: (w: OutboxError) => {
      throw new Error(`seed ${seed}: unexpected warning ${w.code} ${w.message}`);
    },
    ...(capped ? { maxBytes: 2_048 } : {}),
  };
  if (capped && options.segmentBytes > 1_024) options.segmentBytes = 1_024;
  let box = await Outbox.open(dir, options);
  /** Appended and not acked, by id; and the acks made since the last flush or close, which a crash may undo. */
  const unacked = new Map<number, Sent>();
  const ackedSinceDurable = new Map<number, Sent>();
  let maxId = 0;
  let dropped = 0;
  const crashed: Outbox[] = [];
  for (let step = 0; step < steps; step++) {
    const where = `seed ${seed}, step ${step}`;
    const op = rnd.int(20);
    if (op < 9) {
      const peer = ['vpp-a', 'dso-b'][rnd.int(2)] as string;
      const body = rnd.bytes(rnd.int(8) === 0 ? 0 : rnd.range(1, 300));
      const messageId = `m-${seed}-${step}`;
      const id = await box.append(peer, body, { messageId, type: 'report', routingKey: 'report' });
      assert.ok(id > maxId, `${where}: id ${id} above every id seen (${maxId})`);
      maxId = id;
      unacked.set(id, { id, peer, body: Buffer.from(body), messageId });
      if (capped) {
        // drop-oldest: what the cap gave up is the oldest unacked, and counted.
        const gone = [...unacked.keys()].filter((k) => box.get(k) === undefined);
        const oldest = [...unacked.keys()].slice(0, gone.length);
        assert.equal(gone, oldest, `${where}: dropped the oldest`);
        for (const k of gone) unacked.delete(k);
        dropped += gone.length;
        assert.is(box.dropped, dropped, `${where}: dropped counted`);
      }
    } else if (op < 14) {
      const ids = [...unacked.keys()];
      const id = rnd.int(6) === 0 || ids.length === 0 ? rnd.range(1, maxId + 3) : (ids[rnd.int(ids.length)] as number);
      box.ack(id);
      const sent = unacked.get(id);
      if (sent !== undefined) {
        unacked.delete(id);
        ackedSinceDurable.set(id, sent);
      }
    } else if (op < 16) {
      await box.flush();
      ackedSinceDurable.clear();
    } else if (op < 18) {
      await box.close();
      ackedSinceDurable.clear();
      box = await Outbox.open(dir, options);
      dropped = 0; // counted per instance
      assert.equal(view(box.pending()), view([...unacked.values()].map(record)), `${where}: after a clean restart`);
    } else {
      // A crash: the process gone after its last append resolved; tombstones not written yet are lost.
      crashed.push(box);
      box = await Outbox.open(dir, options);
      dropped = 0;
      const pending = box.pending();
      for (const s of unacked.values())
        assert.ok(
          pending.some((p) => p.id === s.id),
          `${where}: message ${s.id}, appended and not acked, survives the crash`,
        );
      for (const p of pending) {
        const s = unacked.get(p.id) ?? ackedSinceDurable.get(p.id);
        assert.ok(s !== undefined, `${where}: pending ${p.id} was appended, and not acked before the last flush`);
        assert.equal(view([p]), view([record(s)]), `${where}: message ${p.id} as it was appended`);
        if (!unacked.has(p.id)) unacked.set(p.id, s); // its ack was lost: it will be sent again
      }
      unacked.clear();
      for (const p of pending) unacked.set(p.id, record(p));
      ackedSinceDurable.clear();
    }
    assert.equal(
      pending(box),
      [...pending(box)].sort((a, b) => a - b),
      `${where}: pending in id order`,
    );
  }
  await box.close();
  // The crashed instances' descriptors, closed only now (the directory is removed next): no write of theirs lands.
  for (const c of crashed) await c.close().catch(() => undefined);
}

function record(s: Sent): OutboxRecord {
  return { id: s.id, peer: s.peer, body: s.body, messageId: s.messageId, type: 'report', routingKey: 'report' };
}

function pending(box: Outbox): number[] {
  return box.pending().map((r) => r.id);
}

test(`the outbox keeps every unacked message across clean restarts and crashes (${sequences} sequences of 150 steps)`, async () => {
  for (let i = 0; i < sequences; i++) {
    const dir = mkdtempSync(path.join(tmpdir(), 'outbox-prop-'));
    try {
      await sequence(firstSeed + i, 150, dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

test.run();
