/**
 * The segment log under the history and the outbox: framing and CRCs (a bad record skipped alone, a torn or
 * untrusted rest dropped, the torn tail found), the cut, `.bad`, appends that line up after a failure, the syncs
 * counted against the real fdatasync/fsync calls, and deletion.
 */

import * as fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { crc32 } from '../../../src/store/crc32.js';
import { type RecordFraming, SegmentLog, scanRecords, sealRecord } from '../../../src/store/segment-log.js';

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'heh-segment-log-'));
  try {
    await fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A test format: an 8-byte header, then fixed records of a u32 value and the CRC (as the history's). */
const HEADER = Buffer.from('TESTHDR!');
const FIXED = 8;
const fixed: RecordFraming<number> = {
  prefix: FIXED,
  end: (_buf, off) => off + FIXED,
  decode: (buf, start) => buf.readUInt32LE(start),
};
function fixedRecord(v: number): Buffer {
  const b = Buffer.alloc(FIXED);
  b.writeUInt32LE(v, 0);
  sealRecord(b);
  return b;
}

/** Records with a u32 length first (as the outbox's): u32 L | L bytes of text | CRC; L above 100 is untrusted. */
const prefixed: RecordFraming<string> = {
  prefix: 4,
  end(buf, off) {
    const len = buf.readUInt32LE(off);
    return len > 100 ? `an impossible length ${len}` : off + 4 + len + 4;
  },
  decode: (buf, start, end) => buf.toString('utf8', start + 4, end - 4),
};
function prefixedRecord(text: string): Buffer {
  const t = Buffer.from(text);
  const b = Buffer.alloc(4 + t.length + 4);
  b.writeUInt32LE(t.length, 0);
  t.copy(b, 4);
  sealRecord(b);
  return b;
}

const segment = (...records: Buffer[]): Buffer => Buffer.concat([HEADER, ...records]);

/** Counts the real fdatasync and fsync calls of every FileHandle while `fn` runs. */
async function countingSyncs<T>(fn: (calls: () => number) => Promise<T>): Promise<T> {
  const probe = await fsp.open(os.tmpdir(), 'r');
  const proto = Object.getPrototypeOf(probe) as { datasync(): Promise<void>; sync(): Promise<void> };
  await probe.close();
  const { datasync, sync } = proto;
  let n = 0;
  proto.datasync = function (this: unknown) {
    n++;
    return datasync.call(this);
  };
  proto.sync = function (this: unknown) {
    n++;
    return sync.call(this);
  };
  try {
    return await fn(() => n);
  } finally {
    proto.datasync = datasync;
    proto.sync = sync;
  }
}

const scan = suite('segment log: scanning records');

scan('sealRecord writes the CRC of the bytes before it', () => {
  const b = Buffer.concat([Buffer.from('123456789'), Buffer.alloc(4)]);
  sealRecord(b);
  assert.is(b.readUInt32LE(9), 0xcbf43926);
  assert.is(crc32(Buffer.from('xx123456789yy'), 2, 11), 0xcbf43926);
  const inside = Buffer.alloc(20);
  sealRecord(inside, 4, 12);
  assert.is(inside.readUInt32LE(8), crc32(inside, 4, 8));
  assert.is(inside.readUInt32LE(16), 0, 'nothing written outside the record');
});

scan('every record good: all read, nothing lost, goodEnd at the end', () => {
  const buf = segment(fixedRecord(1), fixedRecord(2), fixedRecord(3));
  const r = scanRecords(buf, HEADER.length, fixed);
  assert.equal(r, {
    entries: [1, 2, 3],
    goodEnd: buf.length,
    bad: 0,
    resynced: 0,
    rest: '',
    restAt: buf.length,
    lost: 0,
  });
  assert.equal(scanRecords(HEADER, HEADER.length, fixed), {
    entries: [],
    goodEnd: HEADER.length,
    bad: 0,
    resynced: 0,
    rest: '',
    restAt: HEADER.length,
    lost: 0,
  });
});

scan('a bad CRC in the middle is skipped alone: the records after it are read', () => {
  for (const [framing, records] of [
    [fixed, [fixedRecord(1), fixedRecord(2), fixedRecord(3)]],
    [prefixed, [prefixedRecord('one'), prefixedRecord('two'), prefixedRecord('three')]],
  ] as const) {
    const buf = segment(...records);
    buf[HEADER.length + records[0].length + 5]! ^= 0x01; // inside the second record, past a length field
    const r = scanRecords<unknown>(buf, HEADER.length, framing as RecordFraming<unknown>);
    assert.is(r.entries.length, 2);
    assert.equal(r.entries, framing === fixed ? [1, 3] : ['one', 'three']);
    assert.equal([r.bad, r.rest, r.lost, r.goodEnd, r.restAt], [1, '', 1, buf.length, buf.length]);
  }
});

scan('a record its decoder refuses counts as bad, like a bad CRC', () => {
  const odd: RecordFraming<number> = { ...fixed, decode: (buf, start) => (buf[start]! % 2 ? buf[start]! : undefined) };
  const r = scanRecords(segment(fixedRecord(1), fixedRecord(2), fixedRecord(3)), HEADER.length, odd);
  assert.equal([r.entries, r.bad, r.lost], [[1, 3], 1, 1]);
});

scan('a torn last record: the rest is dropped as a short record, the torn tail starts after the last good one', () => {
  const good = segment(fixedRecord(1), fixedRecord(2));
  const torn = Buffer.concat([good, fixedRecord(3).subarray(0, 5)]);
  const r = scanRecords(torn, HEADER.length, fixed);
  assert.equal(r, {
    entries: [1, 2],
    goodEnd: good.length,
    bad: 0,
    resynced: 0,
    rest: 'a short record',
    restAt: good.length,
    lost: 1,
  });

  // A length field itself cut short, and a length running past the end.
  const p = segment(prefixedRecord('one'));
  for (const tail of [Buffer.from([9, 0]), prefixedRecord('two').subarray(0, 9)]) {
    const t = scanRecords(Buffer.concat([p, tail]), HEADER.length, prefixed);
    assert.equal([t.entries, t.rest, t.restAt, t.goodEnd, t.lost], [['one'], 'a short record', p.length, p.length, 1]);
  }
});

scan('bad records after the last good one belong to the torn tail', () => {
  const good = segment(fixedRecord(1));
  const buf = Buffer.concat([good, fixedRecord(2), fixedRecord(3)]);
  buf[good.length]! ^= 0xff;
  buf[good.length + FIXED]! ^= 0xff;
  const r = scanRecords(buf, HEADER.length, fixed);
  assert.equal([r.entries, r.bad, r.rest, r.goodEnd, r.restAt], [[1], 2, '', good.length, buf.length]);
});

scan('a frame the owner cannot trust drops the rest, reported with its offset (where a resync would start)', () => {
  const first = segment(prefixedRecord('one'));
  const buf = Buffer.concat([first, prefixedRecord('two'), prefixedRecord('three')]);
  buf[first.length + 3] = 0x7f; // the second record's length, now far above 100
  const r = scanRecords(buf, HEADER.length, prefixed);
  assert.equal(r.entries, ['one']);
  assert.match(r.rest, /^an impossible length \d+$/);
  assert.equal([r.restAt, r.goodEnd, r.bad, r.lost], [first.length, first.length, 0, 1]);
});

/** The same records, for a framing that resynchronises after damage (as the outbox's). */
const resyncing: RecordFraming<string> = { ...prefixed, resync: true };

scan('resync: after a length field made impossible, the scan finds the next record by its CRC', () => {
  const first = segment(prefixedRecord('one'));
  const buf = Buffer.concat([first, prefixedRecord('two'), prefixedRecord('three'), prefixedRecord('four')]);
  buf[first.length + 3] = 0x7f;
  const r = scanRecords(buf, HEADER.length, resyncing);
  assert.equal(r.entries, ['one', 'three', 'four']);
  assert.equal([r.bad, r.resynced, r.rest, r.lost, r.goodEnd, r.restAt], [1, 1, '', 1, buf.length, buf.length]);
});

scan('resync: a wrong but possible length (its frame ends inside the next record) loses that record alone', () => {
  const first = segment(prefixedRecord('one'));
  const buf = Buffer.concat([first, prefixedRecord('two'), prefixedRecord('three'), prefixedRecord('four')]);
  buf[first.length]! += 5; // 'two' now claims 5 bytes of 'three'
  const plain = scanRecords(buf, HEADER.length, prefixed);
  assert.equal(plain.entries, ['one'], 'without resync every later frame is wrong');
  const r = scanRecords(buf, HEADER.length, resyncing);
  assert.equal(r.entries, ['one', 'three', 'four']);
  assert.is(r.bad, 1);
});

scan('resync: damage in the last records leaves the torn tail as before; a candidate must be plausible too', () => {
  const good = segment(prefixedRecord('one'), prefixedRecord('two'));
  const torn = Buffer.concat([good, prefixedRecord('three').subarray(0, 7)]);
  const t = scanRecords(torn, HEADER.length, resyncing);
  assert.equal(
    [t.entries, t.rest, t.restAt, t.goodEnd, t.lost],
    [['one', 'two'], 'a short record', good.length, good.length, 1],
  );

  const buf = Buffer.concat([segment(prefixedRecord('one')), Buffer.from([0x7f, 0, 0, 0]), prefixedRecord('two')]);
  const picky: RecordFraming<string> = {
    ...resyncing,
    plausible: (b, start) => b.toString('utf8', start + 4, start + 5) !== 't',
  };
  assert.equal(scanRecords(buf, HEADER.length, resyncing).entries, ['one', 'two']);
  assert.equal(scanRecords(buf, HEADER.length, picky).entries, ['one'], 'a candidate it refuses is passed over');
});

scan('a framing that would not move forward is a bug, not corrupt data', () => {
  const stuck: RecordFraming<number> = { ...fixed, end: (_buf, off) => off };
  assert.throws(() => scanRecords(segment(fixedRecord(1)), HEADER.length, stuck), RangeError);
});

scan.run();

const files = suite('segment log: files');

files('append lines records up after the header; a reopened file continues at its good size', () =>
  inTempDir(async (dir) => {
    const log = new SegmentLog(dir);
    const f = await log.create('0000000001.seg');
    await f.append(Buffer.concat([HEADER, fixedRecord(1)]));
    await f.append(fixedRecord(2));
    assert.is(f.size, HEADER.length + 2 * FIXED);
    await f.close();
    const again = log.file('0000000001.seg', f.size, true);
    await again.append(fixedRecord(3));
    await again.close();
    assert.equal(scanRecords(await log.read('0000000001.seg'), HEADER.length, fixed).entries, [1, 2, 3]);
    try {
      await log.create('0000000001.seg');
      assert.unreachable('create must not reuse an existing name');
    } catch (err) {
      assert.is((err as NodeJS.ErrnoException).code, 'EEXIST');
    }
  }),
);

files('torn tail: cut back to the last good record, the next append lines up, the cut synced only when asked', () =>
  inTempDir(async (dir) => {
    const log = new SegmentLog(dir);
    const name = '0000000001.seg';
    const good = segment(fixedRecord(1), fixedRecord(2));
    fs.writeFileSync(log.path(name), Buffer.concat([good, fixedRecord(3).subarray(0, 6)]));
    const r = scanRecords(await log.read(name), HEADER.length, fixed);
    await log.cutTail(name, r.goodEnd, false);
    assert.is(log.syncs, 0);
    assert.is(fs.statSync(log.path(name)).size, good.length);
    const f = log.file(name, r.goodEnd, true);
    await f.append(fixedRecord(4), true);
    await f.close();
    const after = scanRecords(await log.read(name), HEADER.length, fixed);
    assert.equal([after.entries, after.lost], [[1, 2, 4], 0]);

    fs.appendFileSync(log.path(name), Buffer.from([1, 2, 3]));
    await countingSyncs(async (calls) => {
      await log.cutTail(name, after.goodEnd, true);
      assert.is(calls(), 1);
    });
    assert.is(log.syncs, 2, 'the durable append and the synced cut');
    assert.is(fs.statSync(log.path(name)).size, after.goodEnd);
  }),
);

files('bad header: moved aside as <name>.bad, out of the listing of segments, kept on disk', () =>
  inTempDir(async (dir) => {
    const log = new SegmentLog(dir);
    fs.writeFileSync(log.path('0000000001.seg'), Buffer.from('not a segment'));
    fs.writeFileSync(log.path('0000000002.seg'), segment(fixedRecord(1)));
    assert.is(await log.moveAside('0000000001.seg'), '0000000001.seg.bad');
    assert.equal(await log.list(/^\d{10}\.seg$/), ['0000000002.seg']);
    assert.equal(fs.readFileSync(log.path('0000000001.seg.bad')).toString(), 'not a segment');
  }),
);

files('a durable append whose sync fails does not count: the next append overwrites it', () =>
  inTempDir(async (dir) => {
    const log = new SegmentLog(dir);
    const f = log.file('0000000001.seg', 0, false);
    await f.append(Buffer.concat([HEADER, fixedRecord(1)]), true);
    const probe = await fsp.open(log.path('0000000001.seg'), 'r');
    const proto = Object.getPrototypeOf(probe) as { datasync(): Promise<void> };
    await probe.close();
    const { datasync } = proto;
    proto.datasync = () => Promise.reject(Object.assign(new Error('EIO: i/o error'), { code: 'EIO' }));
    try {
      await f.append(Buffer.concat([fixedRecord(2), fixedRecord(3)]), true);
      assert.unreachable('the append should have failed');
    } catch (err) {
      assert.is((err as NodeJS.ErrnoException).code, 'EIO');
    } finally {
      proto.datasync = datasync;
    }
    assert.is(f.size, HEADER.length + FIXED);
    assert.is(fs.statSync(f.path).size, HEADER.length + 3 * FIXED, 'the failed records are on disk, past size');
    await f.append(fixedRecord(4), true);
    await f.close();
    const r = scanRecords(await log.read('0000000001.seg'), HEADER.length, fixed);
    assert.equal([r.entries, r.lost, fs.statSync(f.path).size], [[1, 4], 0, HEADER.length + 2 * FIXED]);
  }),
);

files('a failed open leaves the file as it was; the append succeeds once it can', () =>
  inTempDir(async (dir) => {
    const log = new SegmentLog(dir);
    const f = log.file('0000000001.seg', 0, false);
    fs.mkdirSync(f.path); // opening it for writing fails
    try {
      await f.append(Buffer.concat([HEADER, fixedRecord(1)]));
      assert.unreachable('the append should have failed');
    } catch (err) {
      assert.ok(['EISDIR', 'EPERM'].includes((err as NodeJS.ErrnoException).code ?? ''), String(err));
    }
    assert.is(f.size, 0);
    fs.rmdirSync(f.path);
    await f.append(Buffer.concat([HEADER, fixedRecord(1)]));
    await f.close();
    assert.equal(scanRecords(await log.read(f.name), HEADER.length, fixed).entries, [1]);
  }),
);

files.run();

const syncs = suite('segment log: fsync batching');

syncs('buffered appends share one fdatasync; a created file adds one directory fsync; the count is the real one', () =>
  inTempDir(async (dir) =>
    countingSyncs(async (calls) => {
      const log = new SegmentLog(dir);
      const f = await log.create('0000000001.seg');
      await f.append(HEADER);
      for (let i = 0; i < 10; i++) await f.append(fixedRecord(i));
      assert.is(log.syncs, 0, 'appends alone do not sync');
      assert.ok(f.unsynced);
      await f.sync();
      await log.syncDirectory();
      assert.is(log.syncs, 2, 'one fdatasync for ten records, one directory fsync for the new file');
      await f.sync();
      await log.syncDirectory();
      assert.is(log.syncs, 2, 'nothing new: no sync');
      await f.append(fixedRecord(10));
      await f.sync();
      await log.syncDirectory();
      assert.is(log.syncs, 3, 'the directory is not synced again for a file it already holds');
      await f.close();
      assert.is(calls(), log.syncs);
      assert.equal(scanRecords(await log.read(f.name), HEADER.length, fixed).entries.length, 11);
    }),
  ),
);

syncs('durable appends: one fdatasync each; a segment first written by its append is a creation too', () =>
  inTempDir(async (dir) =>
    countingSyncs(async (calls) => {
      fs.writeFileSync(path.join(dir, '0000000001.seg'), HEADER);
      const log = new SegmentLog(dir);
      const old = log.file('0000000001.seg', HEADER.length, true);
      await old.append(fixedRecord(1), true);
      await old.close();
      await log.syncDirectory();
      assert.is(log.syncs, 1, 'an existing file: no directory fsync');
      const fresh = log.file('0000000002.seg', 0, false);
      await log.syncDirectory();
      assert.is(log.syncs, 1, 'not created before its first append');
      await fresh.append(Buffer.concat([HEADER, fixedRecord(2)]), true);
      await fresh.append(fixedRecord(3), true);
      assert.not.ok(fresh.unsynced);
      await fresh.sync();
      await log.syncDirectory();
      await log.syncDirectory();
      await fresh.close();
      assert.is(log.syncs, 4, 'three fdatasyncs and one directory fsync');
      assert.is(calls(), log.syncs);
    }),
  ),
);

syncs.run();

const retention = suite('segment log: retention');

retention('list is sorted oldest first; remove deletes, a file already gone is no error, another failure is', () =>
  inTempDir(async (dir) => {
    const log = new SegmentLog(dir);
    for (const n of ['0000000010.seg', '0000000002.seg', '0000000003.seg.bad', 'other.txt', '0000000001.seg'])
      fs.writeFileSync(log.path(n), HEADER);
    assert.equal(await log.list(/^\d{10}\.seg(\.bad)?$/), [
      '0000000001.seg',
      '0000000002.seg',
      '0000000003.seg.bad',
      '0000000010.seg',
    ]);
    await log.remove('0000000001.seg');
    await log.remove('0000000003.seg.bad');
    await log.remove('0000000001.seg'); // gone already
    assert.equal(await log.list(/\.seg/), ['0000000002.seg', '0000000010.seg']);
    fs.mkdirSync(log.path('0000000004.seg'));
    try {
      await log.remove('0000000004.seg');
      assert.unreachable('unlink of a directory should fail');
    } catch (err) {
      assert.ok(['EISDIR', 'EPERM'].includes((err as NodeJS.ErrnoException).code ?? ''), String(err));
    }
    assert.is(log.syncs, 0, 'deletions are not synced');
  }),
);

retention.run();
