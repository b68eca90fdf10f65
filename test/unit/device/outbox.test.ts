/**
 * The durable outbox: what survives a reopen (acks, torn and corrupt records), the size cap policies, segment
 * deletion, and the SD-card wear figures quoted in the top comment of src/device/outbox.ts.
 */

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Outbox, OutboxError, type OutboxMeta, type OutboxOptions, scanOutbox } from '../../../src/device/outbox.js';

const PEER = 'vpp-operator';
/** A realistic report: UUID message id, 300-byte body; 388 B on disk, as the top comment says. */
const meta = (i: number): OutboxMeta => ({
  messageId: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
  type: 'report',
  routingKey: 'hub.0001.report',
});
const REPORT = 388;
const TOMBSTONE = 15;
const HEADER = 8;
const body = (i: number, n = 300): Buffer => Buffer.alloc(n, i % 251);

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'heh-outbox-'));
  try {
    await fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const warnings: OutboxError[] = [];
const open = (dir: string, o: OutboxOptions = {}): Promise<Outbox> =>
  Outbox.open(dir, { onWarning: (w) => warnings.push(w), ...o });
const segments = (dir: string): string[] =>
  fs
    .readdirSync(dir)
    .filter((n) => n.endsWith('.obx'))
    .sort();
const newest = (dir: string): string => path.join(dir, segments(dir).at(-1)!);
const ids = (box: Outbox): number[] => box.pending().map((r) => r.id);

async function fill(box: Outbox, n: number, from = 0, size = 300): Promise<number[]> {
  const out: number[] = [];
  for (let i = from; i < from + n; i++) out.push(await box.append(PEER, body(i, size), meta(i)));
  return out;
}

const s = suite('outbox');

s.before.each(() => {
  warnings.length = 0;
});

s('append, pending and ack round trip', () =>
  inTempDir(async (dir) => {
    const box = await open(dir);
    const [a, b, c] = (await fill(box, 3)) as [number, number, number];
    assert.ok(a < b && b < c);
    const p = box.pending();
    assert.equal(
      p.map((r) => r.id),
      [a, b, c],
    );
    assert.equal(p[1], { id: b, peer: PEER, body: body(1), ...meta(1) });
    box.ack(b);
    box.ack(b);
    box.ack(999);
    assert.equal(ids(box), [a, c]);
    assert.is(box.bytes, HEADER + 3 * REPORT);
    await box.close();
    await assert.not.throws(() => box.ack(a));
    try {
      await box.append(PEER, body(0), meta(0));
      assert.unreachable('append after close');
    } catch (err) {
      assert.instance(err, OutboxError);
    }
  }),
);

s('a reopen keeps the unacked records and forgets the acked ones', () =>
  inTempDir(async (dir) => {
    let box = await open(dir);
    const written = await fill(box, 5);
    box.ack(written[0]!);
    box.ack(written[3]!);
    await box.close();
    box = await open(dir);
    assert.equal(ids(box), [written[1], written[2], written[4]]);
    assert.equal(box.pending()[2], { id: written[4]!, peer: PEER, body: body(4), ...meta(4) });
    const next = await box.append(PEER, body(9), meta(9));
    assert.ok(next > written[4]!, 'ids continue above those on disk');
    await box.close();
    assert.is(warnings.length, 0);
  }),
);

s('a torn last record is dropped alone and later appends line up', () =>
  inTempDir(async (dir) => {
    let box = await open(dir);
    const written = await fill(box, 3);
    await box.close();
    const file = newest(dir);
    fs.truncateSync(file, fs.statSync(file).size - 3);
    box = await open(dir);
    assert.equal(ids(box), written.slice(0, 2));
    assert.is(box.corrupt, 1);
    assert.is(fs.statSync(file).size, HEADER + 2 * REPORT, 'cut back to the last good record');
    const next = await box.append(PEER, body(7), meta(7));
    await box.close();
    box = await open(dir);
    assert.equal(ids(box), [...written.slice(0, 2), next]);
    assert.is(box.corrupt, 0);
    await box.close();
  }),
);

s('scanOutbox reads messages and tombstones as they are on disk, torn tail included, and changes nothing', () =>
  inTempDir(async (dir) => {
    const box = await open(dir);
    const [a, b, c] = (await fill(box, 3)) as [number, number, number];
    box.ack(b);
    await box.flush();
    await box.close();
    const file = newest(dir);
    fs.truncateSync(file, fs.statSync(file).size - 3); // the tombstone of b, torn
    const before = fs.readFileSync(file);
    const [seg, ...others] = await scanOutbox(dir);
    assert.is(others.length, 0);
    assert.ok(seg?.header);
    assert.equal(
      seg.entries.map((e) => `${e.kind} ${e.id}`),
      [`message ${a}`, `message ${b}`, `message ${c}`],
    );
    assert.is(seg.entries[1]?.kind === 'message' && seg.entries[1].messageId, meta(1).messageId);
    assert.is(seg.bad, 0);
    assert.is(seg.rest, 'a short record');
    assert.is(seg.goodEnd, HEADER + 3 * REPORT);
    assert.is(seg.size, before.length);
    assert.equal(fs.readFileSync(file), before, 'nothing cut off');
    // What open replays is what the scan saw: b's tombstone was torn, so b is still pending.
    const again = await open(dir);
    assert.equal(ids(again), [a, b, c]);
    await again.close();

    fs.writeFileSync(path.join(dir, '0000000099.obx'), Buffer.from('junk'));
    const scans = await scanOutbox(dir);
    assert.equal(
      scans.map((x) => [x.name, x.header, x.entries.length]),
      [
        [path.basename(file), true, 3],
        ['0000000099.obx', false, 0],
      ],
    );
  }),
);

s('a flipped byte in the middle record skips only it; after a corrupt length the reader finds the next record', () =>
  inTempDir(async (dir) => {
    let box = await open(dir);
    const written = await fill(box, 3);
    await box.close();
    const file = newest(dir);
    const original = fs.readFileSync(file);

    const flipped = Buffer.from(original);
    flipped[HEADER + REPORT + 200]! ^= 0x40; // inside the second record's body
    fs.writeFileSync(file, flipped);
    box = await open(dir);
    assert.equal(ids(box), [written[0], written[2]]);
    assert.is(box.corrupt, 1);
    assert.is(fs.statSync(file).size, original.length, 'good records follow it: nothing is cut off');
    assert.is(warnings.at(-1)?.code, 'CORRUPT');
    await box.close();

    const badLength = Buffer.from(original);
    badLength[HEADER + REPORT + 3] = 0xff; // the second record's length, now far beyond 16 MiB
    fs.writeFileSync(file, badLength);
    box = await open(dir);
    assert.equal(ids(box), [written[0], written[2]]);
    assert.is(box.corrupt, 1);
    assert.match(warnings.at(-1)!.message, /1 bad record\(s\) \(1 after a damaged length/);
    assert.is(fs.statSync(file).size, original.length, 'the good record after it is kept');
    await box.close();

    const plausible = Buffer.from(original);
    plausible.writeUInt32LE(REPORT - 8 + 100, HEADER + REPORT); // a length that is wrong but possible
    fs.writeFileSync(file, plausible);
    box = await open(dir);
    assert.equal(ids(box), [written[0], written[2]]);
    await box.close();
  }),
);

s('issue 14: a damaged length in the newest of 10 records costs that record alone, not the 7 after it', () =>
  inTempDir(async (dir) => {
    let box = await open(dir);
    const written = await fill(box, 10);
    await box.close();
    const file = newest(dir);
    const bytes = fs.readFileSync(file);
    bytes.writeUInt32LE(0x00abcdef, HEADER + 2 * REPORT); // the third record's length
    fs.writeFileSync(file, bytes);
    box = await open(dir);
    assert.equal(ids(box), [...written.slice(0, 2), ...written.slice(3)]);
    const next = await box.append(PEER, body(10), meta(10));
    await box.close();
    box = await open(dir);
    assert.equal(ids(box), [...written.slice(0, 2), ...written.slice(3), next], 'appends after it line up');
    await box.close();
  }),
);

s('issue 14: a bad header: its 10 records are read all the same, the unacked copied, the file kept as .bad', () =>
  inTempDir(async (dir) => {
    let box = await open(dir);
    const written = await fill(box, 10);
    box.ack(written[4]!);
    await box.close();
    const file = newest(dir);
    const bytes = fs.readFileSync(file);
    bytes.write('JUNK', 0); // the magic
    fs.writeFileSync(file, bytes);
    box = await open(dir);
    const kept = written.filter((id) => id !== written[4]);
    assert.equal(ids(box), kept);
    assert.match(warnings.at(-1)!.message, /bad segment header; 11 record\(s\) recovered by their own CRC/);
    assert.equal(segments(dir), ['0000000002.obx']);
    assert.ok(fs.existsSync(`${file}.bad`), 'kept for inspection');
    await box.close();
    warnings.length = 0;
    box = await open(dir);
    assert.equal(ids(box), kept, 'the copies are on disk');
    assert.equal(box.pending()[0], { id: written[0]!, peer: PEER, body: body(0), ...meta(0) });
    await box.close();
    assert.equal(warnings, []);
  }),
);

s('fsync batching: 600 reports at 10 a minute with fsyncIntervalMs 60_000 take <= 60 fsyncs; the wear figures', () =>
  inTempDir(async (dir) => {
    const perHour = async (fsyncIntervalMs: number): Promise<{ fsyncs: number; bytes: number }> => {
      const clock = { t: 0 };
      const sub = path.join(dir, String(fsyncIntervalMs));
      // Timers that never fire: the rounds come from the appends on the test's clock, whatever the real time taken
      // (a real 1 s timer fired on a loaded machine and took a round early: 599 or 600 syncs).
      const box = await open(sub, {
        fsyncIntervalMs,
        now: () => clock.t,
        clock: { setTimeout: () => ({ cancel() {} }) },
      });
      for (let i = 0; i < 600; i++, clock.t += 6_000) {
        const id = await box.append(PEER, body(i), meta(i));
        await Promise.resolve();
        box.ack(id);
      }
      await box.flush(); // at t = 60 min: the round the next append would have started
      const result = { fsyncs: box.fsyncs, bytes: box.bytes };
      await box.close();
      return result;
    };
    const slow = await perHour(60_000);
    // Rounds at 1, 2, ..., 60 min, one fdatasync each, and the directory fsync after creating the segment.
    assert.is(slow.fsyncs, 60 + 1);
    assert.is(slow.bytes, HEADER + 600 * (REPORT + TOMBSTONE));
    assert.is(600 * (REPORT + TOMBSTONE), 241_800);
    const fast = await perHour(1000);
    assert.is(fast.fsyncs, 600 + 1, 'the default gives every message its own fdatasync');

    const box = await open(path.join(dir, 'durable'), { fsyncIntervalMs: 3_600_000 });
    await box.append(PEER, body(0), meta(0));
    assert.is(box.fsyncs, 0, 'append does not wait for a sync');
    await box.appendDurable(PEER, body(1), meta(1));
    assert.is(box.fsyncs, 2, 'appendDurable does: the segment and the directory it was created in');
    await box.close();
  }),
);

s('size cap, drop-oldest: the oldest unacked go, counted, and stay gone after a reopen', () =>
  inTempDir(async (dir) => {
    const o: OutboxOptions = { segmentBytes: 1024, maxBytes: 4096 };
    let box = await open(dir, o);
    const written = await fill(box, 30, 0, 100); // 188 B records: 5 to a segment
    assert.ok(box.dropped > 0);
    assert.ok(box.size <= 4096, `${box.size} B on disk`);
    const kept = ids(box);
    assert.is(kept.length + box.dropped, 30);
    assert.equal(kept, written.slice(box.dropped), 'the newest survive, in order');
    const onDisk = segments(dir).reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
    assert.is(onDisk, box.size);
    await box.close();
    box = await open(dir, o);
    assert.equal(ids(box), kept);
    await box.close();
  }),
);

s('size cap, reject-new: FULL, nothing dropped, room again after acks', () =>
  inTempDir(async (dir) => {
    const box = await open(dir, { segmentBytes: 1024, maxBytes: 4096, overflow: 'reject-new' });
    let accepted = 0;
    let full: unknown;
    for (let i = 0; i < 30 && !full; i++) {
      try {
        await box.append(PEER, body(i, 100), meta(i));
        accepted++;
      } catch (err) {
        full = err;
      }
    }
    assert.instance(full, OutboxError);
    assert.is((full as OutboxError).code, 'FULL');
    assert.ok(accepted >= 15 && accepted < 30, `${accepted} accepted`);
    assert.is(box.pending().length, accepted);
    assert.is(box.dropped, 0);
    for (const r of box.pending()) box.ack(r.id);
    await box.flush();
    assert.ok(box.size <= 2048, `${box.size} B left after the acks`);
    await box.append(PEER, body(99, 100), meta(99));
    assert.is(box.pending().length, 1);
    await box.close();
  }),
);

s('a segment is deleted once all its records are acked, and not before', () =>
  inTempDir(async (dir) => {
    let box = await open(dir, { segmentBytes: 1024 });
    const written = await fill(box, 20, 0, 100); // 4 segments of 5
    const [first, second, third, fourth] = segments(dir) as [string, string, string, string];
    assert.is(segments(dir).length, 4);
    for (const id of written.slice(0, 4)) box.ack(id);
    await box.flush();
    assert.is(segments(dir).length, 4, 'one record of the first segment is still unacked');
    box.ack(written[4]!);
    await box.flush();
    assert.equal(segments(dir), [second, third, fourth]);
    for (const id of written.slice(5, 15)) box.ack(id);
    await box.flush();
    // The tombstones filled the fourth segment (which still holds unacked records) and rolled over into a fifth.
    const left = segments(dir);
    assert.is(left.length, 2);
    assert.is(left[0], fourth);
    assert.not.ok(left.includes(first) || left.includes(second) || left.includes(third));
    await box.close();
    box = await open(dir, { segmentBytes: 1024 });
    assert.equal(ids(box), written.slice(15));
    await box.close();
  }),
);

s('10,000 records survive a reopen in order', () =>
  inTempDir(async (dir) => {
    let box = await open(dir, { segmentBytes: 64 * 1024 });
    const written: number[] = [];
    for (let i = 0; i < 10_000; i++) {
      const id = await box.append(`peer-${i % 7}`, Buffer.from(`report ${i}`), meta(i));
      written.push(id);
      if (i % 3 === 0) box.ack(id);
    }
    await box.close();
    box = await open(dir, { segmentBytes: 64 * 1024 });
    const p = box.pending();
    const expected = written.filter((_, i) => i % 3 !== 0);
    assert.is(p.length, expected.length);
    assert.equal(
      p.map((r) => r.id),
      expected,
    );
    assert.ok(p.every((r) => r.body.toString() === `report ${r.id - 1}` && r.peer === `peer-${(r.id - 1) % 7}`));
    assert.is(box.corrupt, 0);
    await box.close();
  }),
);

s.run();
