/**
 * The measurement history: what get_report is answered from (queries, averaging, the 460/461 cases), what survives
 * a reboot or a power cut (flush, torn and corrupt records, headers), retention, and the SD-card wear budget.
 */

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { History, HistoryError, type HistoryOptions } from '../../../src/device/history.js';
import { crc32 } from '../../../src/store/crc32.js';

const MIN = 60_000;
const HOUR = 3_600_000;
/** Hour-aligned, so slot and segment boundaries fall on whole hours. */
const T0 = Date.UTC(2024, 0, 1);
const SIGNALS = ['meter01.p', 'meter01.q', 'pv01.p', 'boiler01.t'];
const [P, Q, PV, BT] = SIGNALS as [string, string, string, string];
/** What a header takes for SIGNALS: 22 fixed bytes, the names with their length bytes, the CRC. */
const HEADER = 22 + SIGNALS.reduce((a, s) => a + 1 + s.length, 0) + 4;
const RECORD = 8 + 8 * SIGNALS.length;

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'heh-history-'));
  try {
    await fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A fake clock and the warnings of every History opened with its options. */
function setup(start = T0 + 10 * MIN) {
  const clock = { t: start };
  const warnings: HistoryError[] = [];
  const options = (extra: Partial<HistoryOptions> = {}): HistoryOptions => ({
    resolutionS: 60,
    signals: SIGNALS,
    retentionHours: 24,
    now: () => clock.t,
    onWarning: (w) => warnings.push(w),
    ...extra,
  });
  return { clock, warnings, options };
}

const segments = (dir: string): string[] =>
  fs
    .readdirSync(dir)
    .filter((n) => n.endsWith('.seg'))
    .sort();
const onlySegment = (dir: string): string => {
  const s = segments(dir);
  assert.is(s.length, 1, s.join());
  return path.join(dir, s[0]!);
};
/** meter01.p per minute from T0 for n minutes. */
const series = (h: History, n: number, from = T0): (number | null)[] =>
  h.query(from, from + n * MIN, 60, [P]).values[P]!;

function throwsCode(fn: () => unknown, code: HistoryError['code']): void {
  try {
    fn();
  } catch (err) {
    assert.instance(err, HistoryError);
    assert.is((err as HistoryError).code, code, (err as Error).message);
    return;
  }
  assert.unreachable(`expected a HistoryError ${code}`);
}

const crc = suite('history: crc32');

crc('matches the IEEE check value', () => {
  assert.is(crc32(Buffer.from('123456789')), 0xcbf43926);
  assert.is(crc32(Buffer.alloc(0)), 0);
  assert.is(crc32(Buffer.from('xx123456789yy'), 2, 11), 0xcbf43926);
});

crc.run();

const q = suite('history: record and query');

q('a round trip: one value per slot, the later one replacing, absent signals kept, non-finite as null', () =>
  inTempDir(async (dir) => {
    const { options, clock } = setup();
    const h = await History.open(dir, options());
    h.record(T0, { [P]: 1.5, [Q]: 7, [PV]: NaN, [BT]: Infinity });
    h.record(T0 + 30_000, { [P]: 2, 'nope.x': 1, 'nope.y': 2 }); // same slot
    h.record(T0 + MIN, { [P]: -3.25, [Q]: null });
    h.record(T0 + 3 * MIN + 59_999, { [BT]: 55.5 });
    const r = h.query(T0, T0 + 4 * MIN, 60, SIGNALS);
    assert.equal(r.values, {
      [P]: [2, -3.25, null, null],
      [Q]: [7, null, null, null],
      [PV]: [null, null, null, null],
      [BT]: [null, null, null, 55.5],
    });
    assert.equal(r.missing, []);
    assert.is(r.from, T0);
    assert.is(r.to, T0 + 4 * MIN);
    assert.is(h.dropped, 2);
    assert.is(h.oldest(), T0);
    assert.is(h.newest(), T0 + 3 * MIN);
    // Beyond retention and far in the future: refused, not stored over a ring slot.
    h.record(clock.t - 25 * HOUR, { [P]: 1 });
    h.record(clock.t + HOUR, { [P]: 1 });
    assert.is(h.rejected, 2);
    assert.is(h.newest(), T0 + 3 * MIN);
    await h.close();
  }),
);

q('a multiple of the stored resolution averages its slots, nulls left out, all null -> null', () =>
  inTempDir(async (dir) => {
    const { options } = setup(T0 + HOUR);
    const h = await History.open(dir, options());
    const p = [1, 2, 3, 4, 5, 6, null, 8, null, null, null, null, null, null, null];
    p.forEach((v, i) => {
      h.record(T0 + i * MIN, { [P]: v, [Q]: i });
    });
    assert.equal(h.query(T0, T0 + 15 * MIN, 300, [P, Q]).values, { [P]: [3, 7, null], [Q]: [2, 7, 12] });
    assert.equal(h.query(T0, T0 + 10 * MIN, 120, [P]).values[P], [1.5, 3.5, 5.5, 8, null]);
    // A step holds the slots starting in it, whatever the alignment of from.
    assert.equal(h.query(T0 + 30_000, T0 + 30_000 + 4 * MIN, 120, [P]).values[P], [2.5, 4.5]);
    await h.close();
  }),
);

q('a finer resolution or one that is not a multiple is a RESOLUTION error (461)', () =>
  inTempDir(async (dir) => {
    const { options } = setup();
    const h = await History.open(dir, options());
    for (const res of [30, 1, 90, 61, 0, -60, 60.5, NaN, Infinity])
      throwsCode(() => h.query(T0, T0 + HOUR, res, [P]), 'RESOLUTION');
    assert.is(h.query(T0, T0 + HOUR, 60, [P]).values[P]!.length, 60);
    assert.is(h.query(T0, T0 + HOUR, 3600, [P]).values[P]!.length, 1);
    // An answer too large for the hub to build is refused the same way: ask coarser.
    throwsCode(() => h.query(T0, T0 + 10 * 365 * 24 * HOUR, 60, SIGNALS), 'RESOLUTION');
    await h.close();
  }),
);

q('signals not recorded are listed in missing (460) and left out of values', () =>
  inTempDir(async (dir) => {
    const { options } = setup();
    const h = await History.open(dir, options());
    h.record(T0, { [P]: 1 });
    const r = h.query(T0, T0 + MIN, 60, [P, 'ghost.p', P, 'meter01']);
    assert.equal(r.missing, ['ghost.p', 'meter01']);
    assert.equal(Object.keys(r.values), [P]);
    assert.equal(r.values[P], [1]);
    await h.close();
  }),
);

q('a period that is not a multiple is extended to whole steps; past retention and the future are null', () =>
  inTempDir(async (dir) => {
    const { options, clock } = setup();
    const h = await History.open(dir, options());
    for (let i = 0; i < 10; i++) h.record(T0 + i * MIN, { [P]: i });
    const r = h.query(T0, T0 + 150_000, 60, [P]);
    assert.is(r.to, T0 + 180_000);
    assert.equal(r.values[P], [0, 1, 2]);
    const c = h.query(T0, T0 + 7 * MIN, 300, [P]);
    assert.is(c.to, T0 + 10 * MIN);
    assert.equal(c.values[P], [2, 7]);
    const future = h.query(clock.t + HOUR, clock.t + 2 * HOUR, 60, [P]);
    assert.is(future.values[P]!.length, 60);
    assert.ok(future.values[P]!.every((v) => v === null));
    assert.ok(h.query(T0 - 48 * HOUR, T0 - 47 * HOUR, 600, [P]).values[P]!.every((v) => v === null));
    const empty = h.query(T0, T0, 60, [P]);
    assert.equal([empty.to, empty.values[P]], [T0, []]);
    await h.close();
  }),
);

q.run();

const disk = suite('history: on disk');

disk('reopen after flush (without close) keeps everything', () =>
  inTempDir(async (dir) => {
    const { options } = setup();
    const a = await History.open(dir, options());
    a.record(T0, { [P]: 1, [Q]: 2, [PV]: 3, [BT]: 4 });
    a.record(T0 + MIN, { [P]: 5.000000000000001, [Q]: null, [PV]: -0.125, [BT]: 1e300 });
    a.record(T0 + 2 * MIN, { [P]: 123456789.123 }); // a Wh counter float32 would round
    await a.flush();
    const b = await History.open(dir, options());
    assert.equal(b.query(T0, T0 + 3 * MIN, 60, SIGNALS), a.query(T0, T0 + 3 * MIN, 60, SIGNALS));
    assert.equal(series(b, 3), [1, 5.000000000000001, 123456789.123]);
    assert.is(b.skipped, 0);
    await a.close();
    await b.close();
  }),
);

disk('reopen after close keeps everything, close flushing what was pending', () =>
  inTempDir(async (dir) => {
    const { options, warnings } = setup();
    const a = await History.open(dir, options());
    for (let i = 0; i < 10; i++) a.record(T0 + i * MIN, { [P]: i * 10 });
    assert.equal(segments(dir), []);
    await a.close();
    assert.is(a.writes, 1);
    assert.throws(() => a.record(T0, { [P]: 1 }), /closed/);
    await a.close(); // idempotent
    const b = await History.open(dir, options());
    assert.equal(series(b, 10), [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
    assert.is(fs.statSync(onlySegment(dir)).size, HEADER + 10 * RECORD);
    assert.equal(warnings, []);
    await b.close();
  }),
);

disk('a crash after a flush: what was flushed is back, nothing unflushed, nothing corrupt', () =>
  inTempDir(async (dir) => {
    const { options, warnings } = setup();
    // A long interval keeps the abandoned instance from ever writing again.
    const a = await History.open(dir, options({ fsyncIntervalMs: 24 * HOUR }));
    for (let i = 0; i < 5; i++) a.record(T0 + i * MIN, { [P]: i });
    await a.flush();
    a.record(T0 + 2 * MIN, { [P]: 99 });
    for (let i = 5; i < 8; i++) a.record(T0 + i * MIN, { [P]: i });
    // The crash: a is abandoned with its buffer.
    const b = await History.open(dir, options());
    assert.equal(series(b, 8), [0, 1, 2, 3, 4, null, null, null]);
    assert.is(b.skipped, 0);
    assert.equal(warnings, []);
    b.record(T0 + 5 * MIN, { [P]: 50 });
    await b.close();
    const c = await History.open(dir, options());
    assert.equal(series(c, 8), [0, 1, 2, 3, 4, 50, null, null]);
    await c.close();
  }),
);

disk('a torn last record and a flipped byte in the middle: open succeeds, only those two records are lost', () =>
  inTempDir(async (dir) => {
    const { options, warnings } = setup();
    const a = await History.open(dir, options());
    for (let i = 0; i < 10; i++) a.record(T0 + i * MIN, { [P]: i, [BT]: -i });
    await a.close();
    const file = onlySegment(dir);
    assert.is(fs.statSync(file).size, HEADER + 10 * RECORD);
    fs.truncateSync(file, HEADER + 10 * RECORD - 3);
    const bytes = fs.readFileSync(file);
    bytes[HEADER + 4 * RECORD + 13]! ^= 0x10; // inside record 4's values
    fs.writeFileSync(file, bytes);

    const b = await History.open(dir, options());
    assert.equal(series(b, 10), [0, 1, 2, 3, null, 5, 6, 7, 8, null]);
    assert.is(b.skipped, 2);
    assert.is(warnings.length, 1);
    assert.is(warnings[0]!.code, 'CORRUPT');
    assert.match(warnings[0]!.message, /1 corrupt record.*torn record of 37 B/);
    // The torn tail is cut so appends stay on record boundaries.
    assert.is(fs.statSync(file).size, HEADER + 9 * RECORD);
    b.record(T0 + 9 * MIN, { [P]: 9 });
    b.record(T0 + 10 * MIN, { [P]: 10 });
    await b.close();

    const c = await History.open(dir, options());
    assert.equal(series(c, 11), [0, 1, 2, 3, null, 5, 6, 7, 8, 9, 10]);
    assert.equal(c.query(T0, T0 + 6 * MIN, 60, [BT]).values[BT], [0, -1, -2, -3, null, -5]);
    assert.is(c.skipped, 1); // the flipped record stays, skipped alone
    assert.is(fs.statSync(file).size, HEADER + 11 * RECORD);
    await c.close();
  }),
);

disk('a corrupt header: its records are read with the layout of its name, written again, the file kept as .bad', () =>
  inTempDir(async (dir) => {
    const { options, warnings } = setup();
    const a = await History.open(dir, options());
    a.record(T0, { [P]: 1 });
    a.record(T0 + 2 * MIN, { [P]: 3, [BT]: 7 });
    await a.close();
    const file = onlySegment(dir);
    const bytes = fs.readFileSync(file);
    bytes[HEADER - 6]! ^= 0x01; // a signal name
    fs.writeFileSync(file, bytes);
    const b = await History.open(dir, options());
    assert.equal(
      warnings.map((w) => w.code),
      ['CORRUPT'],
    );
    assert.match(warnings[0]!.message, /header CRC mismatch; 2 record\(s\) recovered/);
    assert.equal(fs.readFileSync(`${file}.bad`), bytes, 'kept as it was, for inspection');
    assert.not.ok(fs.existsSync(file));
    assert.equal(series(b, 3), [1, null, 3]);
    b.record(T0 + MIN, { [P]: 2 });
    await b.close();
    const c = await History.open(dir, options());
    assert.equal(series(c, 3), [1, 2, 3]);
    assert.equal(c.query(T0, T0 + 3 * MIN, 60, [BT]).values[BT], [null, null, 7]);
    assert.is(warnings.length, 1, 'the rewritten segment is a good one');
    await c.close();
  }),
);

disk(
  'a corrupt header of another signal set: recovered when a segment of that set tells its layout, else set aside',
  () =>
    inTempDir(async (dir) => {
      const { options, warnings, clock } = setup(T0 + 2 * HOUR);
      const old = options({ signals: ['a.p', 'b.p'] });
      const a = await History.open(dir, old);
      a.record(T0 + 30 * MIN, { 'a.p': 1, 'b.p': 2 });
      a.record(T0 + HOUR + 30 * MIN, { 'a.p': 3, 'b.p': 4 });
      await a.close();
      const [first] = segments(dir).map((n) => path.join(dir, n)) as [string];
      const damaged = fs.readFileSync(first);
      damaged[0]! ^= 0xff; // the magic
      fs.writeFileSync(first, damaged);
      const b = await History.open(dir, options({ signals: ['b.p', 'c.p'] }));
      assert.match(warnings[0]!.message, /bad magic; 1 record\(s\) recovered/);
      assert.equal(b.query(T0, T0 + 2 * HOUR, 3600, ['b.p']).values['b.p'], [2, 4]);
      await b.close();
      assert.ok(fs.existsSync(`${first}.bad`));

      // Alone, nothing tells the layout of a set that is not the current one: its records stay in the .bad file.
      fs.rmSync(dir, { recursive: true });
      fs.mkdirSync(dir);
      const c = await History.open(dir, old);
      c.record(T0 + 30 * MIN, { 'a.p': 1, 'b.p': 2 });
      await c.close();
      const only = onlySegment(dir);
      const d = fs.readFileSync(only);
      d[0]! ^= 0xff;
      fs.writeFileSync(only, d);
      warnings.length = 0;
      clock.t += MIN;
      const e = await History.open(dir, options({ signals: ['b.p', 'c.p'] }));
      assert.match(warnings[0]!.message, /layout is unknown, its records are lost/);
      assert.equal(e.query(T0, T0 + HOUR, 3600, ['b.p']).values['b.p'], [null]);
      await e.close();
      assert.ok(fs.existsSync(`${only}.bad`));
    }),
);

disk('a valid record in the wrong segment is skipped alone', () =>
  inTempDir(async (dir) => {
    const { options } = setup(T0 + 3 * HOUR);
    const a = await History.open(dir, options());
    a.record(T0, { [P]: 1 });
    await a.close();
    const record = (slot: number, v: number): Buffer => {
      const b = Buffer.alloc(RECORD);
      b.writeUInt32LE(slot, 0);
      SIGNALS.forEach((_, j) => {
        b.writeDoubleLE(j === 0 ? v : NaN, 4 + 8 * j);
      });
      b.writeUInt32LE(crc32(b, 0, RECORD - 4), RECORD - 4);
      return b;
    };
    fs.appendFileSync(onlySegment(dir), Buffer.concat([record(T0 / MIN + 120, 42), record(T0 / MIN + 1, 2)]));
    const b = await History.open(dir, options());
    assert.equal(series(b, 2), [1, 2]);
    assert.equal(series(b, 1, T0 + 2 * HOUR), [null]);
    assert.is(b.skipped, 1);
    await b.close();
  }),
);

disk('a failed flush rejects with IO and keeps its samples for the next; a failed background flush is reported', () =>
  inTempDir(async (dir) => {
    const { options, clock, warnings } = setup();
    const a = await History.open(dir, options());
    a.record(T0, { [P]: 0 });
    await a.flush();
    const file = onlySegment(dir);
    fs.renameSync(file, `${file}.keep`);
    fs.mkdirSync(file); // opening it for writing now fails
    a.record(T0 + MIN, { [P]: 1 });
    try {
      await a.flush();
      assert.unreachable('the flush should have failed');
    } catch (err) {
      assert.instance(err, HistoryError);
      assert.is((err as HistoryError).code, 'IO');
    }
    clock.t += 2 * MIN;
    a.record(T0 + 2 * MIN, { [P]: 2 }); // due: a background flush, which fails too
    await a.idle();
    assert.is(a.lastError?.code, 'IO');
    assert.equal(
      warnings.map((w) => w.code),
      ['IO'],
    );
    fs.rmdirSync(file);
    fs.renameSync(`${file}.keep`, file);
    await a.close();
    const b = await History.open(dir, options());
    assert.equal(series(b, 3), [0, 1, 2]);
    await b.close();
  }),
);

disk('a ring slot reused a day later starts empty', () =>
  inTempDir(async (dir) => {
    const { options, clock } = setup(T0);
    const h = await History.open(dir, options({ fsyncIntervalMs: 24 * HOUR }));
    for (let i = 0; i <= 26 * 60; i++) {
      clock.t = T0 + i * MIN;
      h.record(clock.t, i < 60 ? { [P]: i, [Q]: i } : { [P]: i });
    }
    const r = h.query(clock.t - 24 * HOUR + MIN, clock.t + MIN, 60, [P, Q]);
    assert.ok(r.values[Q]!.every((v) => v === null));
    assert.equal(
      r.values[P],
      Array.from({ length: 1440 }, (_, k) => 2 * 60 + 1 + k),
    );
    assert.is(h.oldest(), T0 + 2 * HOUR + MIN);
    await h.close();
  }),
);

disk('a new signal list starts a new set; the old one stays readable by name; another resolution is ignored', () =>
  inTempDir(async (dir) => {
    const { options, warnings } = setup();
    const a = await History.open(dir, options({ signals: ['a.p', 'b.p'] }));
    a.record(T0, { 'a.p': 1, 'b.p': 2 });
    a.record(T0 + MIN, { 'a.p': 3, 'b.p': 4 });
    await a.close();
    const b = await History.open(dir, options({ signals: ['b.p', 'c.p'] }));
    b.record(T0 + MIN, { 'c.p': 5 });
    const r = b.query(T0, T0 + 2 * MIN, 60, ['a.p', 'b.p', 'c.p']);
    assert.equal(r.missing, ['a.p']);
    assert.equal(r.values, { 'b.p': [2, 4], 'c.p': [null, 5] });
    await b.close();
    assert.is(segments(dir).length, 2);
    const c = await History.open(dir, options({ signals: ['b.p', 'c.p'] }));
    assert.equal(c.query(T0, T0 + 2 * MIN, 60, ['b.p', 'c.p']).values, { 'b.p': [2, 4], 'c.p': [null, 5] });
    await c.close();
    assert.equal(warnings, []);
    const d = await History.open(dir, options({ signals: ['b.p', 'c.p'], resolutionS: 300 }));
    assert.equal(d.query(T0, T0 + 10 * MIN, 300, ['b.p']).values['b.p'], [null, null]);
    assert.is(warnings.length, 2);
    assert.ok(warnings.every((w) => w.code === 'CORRUPT' && /written at 60 s/.test(w.message)));
    await d.close();
    assert.is(segments(dir).length, 2);
  }),
);

disk(
  'retention: older records are gone after a reopen with a later now, their segments deleted, and as time passes',
  () =>
    inTempDir(async (dir) => {
      const { options, clock } = setup(T0 + 3 * HOUR);
      const a = await History.open(dir, options());
      for (const h of [0, 1, 2]) a.record(T0 + h * HOUR + 30 * MIN, { [P]: h });
      await a.close();
      assert.is(segments(dir).length, 3);
      // 24 h back from here ends at T0 + 1:31: hour 0 is gone entirely, hour 1 keeps its file but not its 1:30 sample.
      clock.t = T0 + 25 * HOUR + 30 * MIN;
      const b = await History.open(dir, options());
      assert.is(segments(dir).length, 2);
      assert.ok(!segments(dir).some((n) => n.startsWith(String(T0 / MIN).padStart(10, '0'))));
      assert.equal(b.query(T0, T0 + 3 * HOUR, 3600, [P]).values[P], [null, null, 2]);
      assert.is(b.oldest(), T0 + 2 * HOUR + 30 * MIN);
      b.record(T0 + 30 * MIN, { [P]: 7 });
      assert.is(b.rejected, 1);
      clock.t = T0 + 26 * HOUR + 31 * MIN;
      assert.is(b.oldest(), undefined);
      await b.flush(); // nothing pending: only the deletion
      assert.is(segments(dir).length, 1);
      assert.is(b.writes, 0);
      await b.close();
    }),
);

disk.run();

const wear = suite('history: wear');

wear('120 samples at 60 s, the clock-driven flush and manual flushes every minute: one write a minute', () =>
  inTempDir(async (dir) => {
    const { options, clock, warnings } = setup(T0);
    const h = await History.open(dir, options());
    let before = 0;
    for (let m = 1; m <= 120; m++) {
      clock.t = T0 + m * MIN;
      h.record(clock.t, { [P]: m, [Q]: -m }); // due: starts a write
      await Promise.all([h.flush(), h.flush()]); // nothing new: they share it
      assert.is(h.writes - before, 1, `minute ${m}`);
      before = h.writes;
    }
    assert.is(h.writes, 120);
    // One fdatasync per write, plus one directory fsync per new segment (minutes 1-120 span three hours).
    assert.is(segments(dir).length, 3);
    assert.ok(h.syncs <= h.writes + 3, `${h.syncs} syncs for ${h.writes} writes`);
    await h.close();
    assert.is(
      fs.readdirSync(dir).reduce((a, n) => a + fs.statSync(path.join(dir, n)).size, 0),
      3 * HEADER + 120 * RECORD,
    );
    const b = await History.open(dir, options());
    assert.equal(b.query(T0 + MIN, T0 + 121 * MIN, 60, [P, Q]).values, {
      [P]: Array.from({ length: 120 }, (_, i) => i + 1),
      [Q]: Array.from({ length: 120 }, (_, i) => -i - 1),
    });
    await b.close();
    assert.equal(warnings, []);
  }),
);

wear('the flush policy runs on the fake clock alone: a sample every 15 s for 30 minutes, one write a minute', () =>
  inTempDir(async (dir) => {
    const { options, clock } = setup(T0);
    const h = await History.open(dir, options());
    for (let i = 1; i <= 4 * 30 + 1; i++) {
      clock.t = T0 + i * 15_000;
      h.record(clock.t, { [P]: i });
      await h.idle();
    }
    // Writes at 1:00, 2:00 ... 30:00, each with every update since the last; the 30:15 one waits.
    assert.is(h.writes, 30);
    await h.close();
    assert.is(h.writes, 31);
    const b = await History.open(dir, options());
    assert.equal(series(b, 31), [...Array.from({ length: 30 }, (_, k) => 4 * k + 3), 121]);
    await b.close();
  }),
);

wear('concurrent flush() calls share one write', () =>
  inTempDir(async (dir) => {
    const { options } = setup();
    const h = await History.open(dir, options({ fsyncIntervalMs: 24 * HOUR }));
    for (let i = 0; i < 3; i++) h.record(T0 + i * MIN, { [P]: i });
    await Promise.all([h.flush(), h.flush(), h.flush(), h.flush()]);
    assert.is(h.writes, 1);
    assert.is(h.syncs, 2); // the segment's fdatasync and, being new, its directory's fsync
    await h.flush();
    assert.is(h.writes, 1); // nothing pending, nothing written
    h.record(T0 + 3 * MIN, { [P]: 3 });
    const first = h.flush();
    h.record(T0 + 4 * MIN, { [P]: 4 });
    const later = [h.flush(), h.flush(), h.flush()];
    await Promise.all([first, ...later]);
    assert.is(h.writes, 3);
    assert.is(h.syncs, 4);
    await h.close();
    const b = await History.open(dir, options());
    assert.equal(series(b, 5), [0, 1, 2, 3, 4]);
    await b.close();
  }),
);

wear('24 h at 60 s of 4 signals: the size on disk is below 1 MB', () =>
  inTempDir(async (dir) => {
    const { options, clock } = setup(T0);
    const h = await History.open(dir, options({ fsyncIntervalMs: 24 * HOUR }));
    for (let i = 0; i < 1440; i++) {
      clock.t = T0 + i * MIN;
      h.record(clock.t, { [P]: 1000 + i, [Q]: i / 3, [PV]: null, [BT]: 60 + (i % 7) });
      if (i % 60 === 59) await h.flush();
    }
    await h.close();
    const files = segments(dir);
    const bytes = files.reduce((a, n) => a + fs.statSync(path.join(dir, n)).size, 0);
    const allocated = files.reduce((a, n) => a + fs.statSync(path.join(dir, n)).blocks * 512, 0);
    console.log(
      `  24 h, 60 s, 4 signals: ${files.length} segments, ${bytes} B of data, ${allocated} B allocated, ${h.syncs} syncs`,
    );
    assert.is(files.length, 24);
    assert.is(bytes, 24 * HEADER + 1440 * RECORD);
    assert.ok(bytes < 1_000_000 && allocated < 1_000_000);
    assert.is(h.writes, 24);
    const b = await History.open(dir, options());
    assert.is(b.oldest(), T0);
    assert.is(b.newest(), T0 + 1439 * MIN);
    assert.equal(b.query(T0, T0 + 24 * HOUR, 3600, [P]).values[P]![23], 1000 + 23 * 60 + 29.5);
    await b.close();
  }),
);

wear.run();
