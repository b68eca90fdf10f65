/**
 * The hub's three stores on a disk that fills up, turns read-only or loses its directory: nothing is thrown at the
 * caller, nothing is left unhandled (the runner fails on any unhandled rejection), the files stay bounded, each
 * failure reaches the reporter, and when the disk is back what was kept in memory is written and survives a reopen.
 * Each scenario runs on a real tmpfs when this process may mount one (root) and always on the injected fault of
 * src/store/fs.ts, which throws the same errors.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { History } from '../../../src/device/history.js';
import { Outbox, type OutboxMeta } from '../../../src/device/outbox.js';
import { StateError, StateStore } from '../../../src/device/state.js';
import type { StorageReporter } from '../../../src/store/health.js';
import { type Disk, injectedDisk, tmpfsDisk } from '../../helpers/disk.js';

const MIN = 60_000;
const T0 = Date.UTC(2024, 0, 1);

function recorder() {
  const events: string[] = [];
  const reporter: StorageReporter = {
    failed: (area, _what, err) => events.push(`failed ${area} ${(err as NodeJS.ErrnoException).code}`),
    ok: (area, caughtUp) => events.push(`ok ${area}${caughtUp === undefined ? '' : `: ${caughtUp}`}`),
    lost: (area, n, what) => events.push(`lost ${area} ${n} ${what}`),
  };
  const count = (prefix: string): number => events.filter((e) => e.startsWith(prefix)).length;
  return { events, reporter, count };
}

async function until(what: () => boolean, label: () => string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!what()) {
    if (Date.now() > end) assert.unreachable(`timed out waiting for ${label()}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const meta = (i: number): OutboxMeta => ({
  messageId: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
  type: 'report',
  routingKey: 'hub.1.report',
});
const body = (i: number): Buffer => Buffer.from(JSON.stringify({ msg: 'report', i, pad: 'x'.repeat(300) }));
const listing = (dir: string): string[] => (fs.existsSync(dir) ? fs.readdirSync(dir).sort() : []);

type Make = () => Disk | string;
const disks: [string, Make][] = [
  ['tmpfs', () => tmpfsDisk()],
  ['injected', () => injectedDisk()],
];

for (const [label, make] of disks) {
  const first = make();
  if (typeof first === 'string') {
    console.log(`  disk faults on ${label}: skipped, ${first}; the injected disk runs the same scenarios`);
    continue;
  }
  await first.dispose();
  const s = suite(`disk faults (${label})`);
  let disk: Disk;
  s.before.each(() => {
    const d = make();
    if (typeof d === 'string') throw new Error(d);
    disk = d;
  });
  s.after.each(async () => {
    await disk.writable().catch(() => undefined);
    await disk.dispose();
  });

  // ---- the hub state ---------------------------------------------------------------------------------------------

  for (const fault of ['full', 'read-only'] as const) {
    s(
      `state, ${fault}: updates resolve, memory runs ahead, retried with backoff, written when the disk is back`,
      async () => {
        const dir = path.join(disk.root, 'state');
        fs.mkdirSync(dir);
        const { events, reporter, count } = recorder();
        const store = StateStore.open(dir, { reporter, retryMs: 20 });
        await store.update((st) => {
          st.mode = 'passive';
        });
        await (fault === 'full' ? disk.full() : disk.readOnly());
        for (let i = 0; i < 20; i++) {
          await store.update((st) => {
            st.prices.push({ kind: 'load', from: i, to: i + 1, price: i, sender: 'vpp' });
          });
        }
        await store.update((st) => {
          st.clockOffsetS = 5;
        });
        await until(
          () => count('failed state') >= 2,
          () => events.join(),
        );
        await new Promise((resolve) => setTimeout(resolve, 100));
        // 21 updates, yet only the retries try: 20, 40, 80 ms...
        assert.ok(count('failed state') <= 6, events.join());
        assert.ok(events[0] === `failed state ${fault === 'full' ? 'ENOSPC' : 'EROFS'}`, events.join());
        assert.is(store.state.prices.length, 20, 'memory holds every change');
        const onDisk = JSON.parse(fs.readFileSync(store.file, 'utf8'));
        assert.equal([onDisk.mode, onDisk.prices.length], ['passive', 0], 'the file is the last good one');
        try {
          await store.flush();
          assert.unreachable('flush must say the state is not on disk');
        } catch (err) {
          assert.instance(err, StateError);
          assert.match((err as Error).message, new RegExp(`cannot write the hub state ${store.file}`));
        }
        await (fault === 'full' ? disk.room() : disk.writable());
        await until(
          () => events.includes('ok state: the hub state'),
          () => events.join(),
        );
        const after = JSON.parse(fs.readFileSync(store.file, 'utf8'));
        assert.equal([after.prices.length, after.clockOffsetS], [20, 5]);
        assert.equal(listing(dir), ['hub-state.json'], 'no temporary file left behind');
        await store.flush();
      },
    );
  }

  s('state, vanished directory: re-created and written anew at the next change', async () => {
    const dir = path.join(disk.root, 'state');
    fs.mkdirSync(dir);
    const { events, reporter } = recorder();
    const store = StateStore.open(dir, { reporter, retryMs: 20 });
    await store.update((st) => {
      st.mode = 'off';
    });
    fs.rmSync(dir, { recursive: true });
    await store.update((st) => {
      st.clockOffsetS = 3;
    });
    assert.equal(events, ['failed state ENOENT', 'ok state: the hub state, in its re-created directory']);
    const after = JSON.parse(fs.readFileSync(store.file, 'utf8'));
    assert.equal([after.mode, after.clockOffsetS], ['off', 3]);
  });

  // ---- the history -----------------------------------------------------------------------------------------------

  const historyOptions = (clock: { t: number }, reporter: StorageReporter) => ({
    resolutionS: 60,
    signals: ['m.p'],
    retentionHours: 24,
    now: () => clock.t,
    reporter,
    onWarning: (w: Error) => assert.unreachable(`no warning expected: ${w.message}`),
  });
  const minutes = (h: History, from: number, n: number): (number | null)[] =>
    h.query(T0 + from * MIN, T0 + (from + n) * MIN, 60, ['m.p']).values['m.p']!;

  for (const fault of ['full', 'read-only'] as const) {
    s(
      `history, ${fault}: flushes fail, the samples wait in memory, the next flush after the fault writes them`,
      async () => {
        const dir = path.join(disk.root, 'history');
        const clock = { t: T0 + 10 * MIN };
        const { events, reporter, count } = recorder();
        const h = await History.open(dir, historyOptions(clock, reporter));
        for (let m = 0; m < 5; m++) h.record(T0 + m * MIN, { 'm.p': m });
        await h.flush();
        await (fault === 'full' ? disk.full() : disk.readOnly());
        // The next hour: a new segment, which even a tmpfs page already held cannot take.
        clock.t = T0 + 70 * MIN;
        for (let m = 60; m < 65; m++) {
          h.record(T0 + m * MIN, { 'm.p': m });
          await h.flush().catch(() => undefined);
        }
        assert.ok(count('failed history') >= 1, events.join());
        assert.ok(listing(dir).length <= 2, `files: ${listing(dir).join()}`);
        assert.equal(minutes(h, 60, 5), [60, 61, 62, 63, 64], 'queries answer from memory meanwhile');
        await (fault === 'full' ? disk.room() : disk.writable());
        await h.flush();
        assert.equal(events.at(-1), 'ok history: 5 measurement slot(s) of the history');
        await h.close();
        const again = await History.open(dir, historyOptions(clock, reporter));
        assert.equal(minutes(again, 0, 5), [0, 1, 2, 3, 4]);
        assert.equal(minutes(again, 60, 5), [60, 61, 62, 63, 64]);
        await again.close();
      },
    );
  }

  s('history, vanished directory: re-created, and everything the ring holds of it written anew', async () => {
    const dir = path.join(disk.root, 'history');
    const clock = { t: T0 + 70 * MIN };
    const { events, reporter } = recorder();
    const h = await History.open(dir, historyOptions(clock, reporter));
    for (const m of [0, 1, 2, 61, 62]) h.record(T0 + m * MIN, { 'm.p': m });
    await h.flush();
    fs.rmSync(dir, { recursive: true });
    h.record(T0 + 63 * MIN, { 'm.p': 63 });
    await h.flush();
    assert.equal(events, [
      'failed history ENOENT',
      'ok history: 5 measurement slot(s) of vanished history segments, from memory',
    ]);
    await h.close();
    const again = await History.open(dir, historyOptions(clock, reporter));
    assert.equal(minutes(again, 0, 3), [0, 1, 2]);
    assert.equal(minutes(again, 61, 3), [61, 62, 63]);
    await again.close();
  });

  s('history: a stop while the disk is full resolves and reports the samples it could not write', async () => {
    const dir = path.join(disk.root, 'history');
    const clock = { t: T0 + 70 * MIN };
    const { events, reporter } = recorder();
    const h = await History.open(dir, historyOptions(clock, reporter));
    await disk.full();
    for (const m of [61, 62, 63]) h.record(T0 + m * MIN, { 'm.p': m });
    await h.close();
    assert.equal(events.at(-1), 'lost history 3 measurement slot(s) not written before the stop');
  });

  // ---- the outbox ------------------------------------------------------------------------------------------------

  const outboxOptions = (reporter: StorageReporter) => ({
    reporter,
    retryMs: 20,
    fsyncIntervalMs: 0,
    onWarning: (w: Error) => assert.unreachable(`no warning expected: ${w.message}`),
  });

  s('outbox, full: appends resolve and stay pending, no file per failure, all written when there is room', async () => {
    const dir = path.join(disk.root, 'outbox');
    const { events, reporter, count } = recorder();
    let box = await Outbox.open(dir, outboxOptions(reporter));
    const ids: number[] = [];
    for (let i = 0; i < 3; i++) ids.push(await box.append('vpp', body(i), meta(i)));
    await disk.full();
    for (let i = 3; i < 60; i++) ids.push(await box.append('vpp', body(i), meta(i)));
    await until(
      () => count('failed outbox') > 0,
      () => events.join(),
    );
    assert.ok(box.unwritten > 0);
    assert.equal(
      box.pending().map((r) => r.id),
      ids,
    );
    assert.equal(listing(dir), ['0000000001.obx'], 'one segment, whatever the failures');
    // Confirms while the disk is full: one of a message on disk (its tombstone waits), one of a message in memory.
    box.ack(ids[1]!);
    box.ack(ids[50]!);
    await disk.room();
    await until(
      () => events.some((e) => e.startsWith('ok outbox')),
      () => events.join(),
    );
    assert.is(box.unwritten, 0);
    assert.match(events.find((e) => e.startsWith('ok outbox'))!, /outbox message\(s\) kept in memory/);
    await box.close();
    box = await Outbox.open(dir, outboxOptions(reporter));
    const expected = ids.filter((id) => id !== ids[1] && id !== ids[50]);
    assert.equal(
      box.pending().map((r) => r.id),
      expected,
    );
    assert.equal(box.pending().at(-1)?.body, body(59));
    await box.close();
    assert.equal(listing(dir), ['0000000001.obx']);
  });

  s(
    'outbox, read-only: opened on it, or turned read-only under it; the messages wait in memory, then land',
    async () => {
      const dir = path.join(disk.root, 'outbox');
      const { events, reporter } = recorder();
      let box = await Outbox.open(dir, outboxOptions(reporter));
      const ids = [await box.append('vpp', body(0), meta(0))];
      if (disk.kind === 'tmpfs') {
        // A tmpfs cannot turn read-only under an open writer (EBUSY), as a failing card does: open on it instead. The
        // outbox then holds no writable descriptor, and the disk turns writable again under it.
        await box.close();
        await disk.readOnly();
        box = await Outbox.open(dir, outboxOptions(reporter));
      } else {
        await disk.readOnly();
      }
      for (let i = 1; i < 20; i++) ids.push(await box.append('vpp', body(i), meta(i)));
      assert.equal(events[0], 'failed outbox EROFS');
      assert.is(box.unwritten, 19);
      assert.equal(
        box.pending().map((r) => r.id),
        ids,
      );
      await disk.writable();
      await until(
        () => box.unwritten === 0,
        () => events.join(),
      );
      await box.close();
      box = await Outbox.open(dir, outboxOptions(reporter));
      assert.equal(
        box.pending().map((r) => r.id),
        ids,
      );
      await box.close();
    },
  );

  s(
    'outbox, vanished directory: the sync round sees the unlinked segment and writes every unacked message anew',
    async () => {
      const dir = path.join(disk.root, 'outbox');
      const { events, reporter } = recorder();
      let box = await Outbox.open(dir, { ...outboxOptions(reporter), fsyncIntervalMs: 60_000 });
      const ids: number[] = [];
      for (let i = 0; i < 5; i++) ids.push(await box.append('vpp', body(i), meta(i)));
      box.ack(ids[0]!);
      await box.flush();
      fs.rmSync(dir, { recursive: true });
      // Written to the open descriptor of a file no longer in any directory: it succeeds, and would be lost.
      for (let i = 5; i < 8; i++) ids.push(await box.append('vpp', body(i), meta(i)));
      await box.flush();
      assert.equal(events, ['failed outbox ENOENT', 'ok outbox: 7 outbox message(s) kept in memory']);
      await box.close();
      box = await Outbox.open(dir, outboxOptions(reporter));
      assert.equal(
        box.pending().map((r) => r.id),
        ids.slice(1),
      );
      await box.close();
    },
  );

  s('outbox: a stop while the disk is full resolves and reports the messages only memory held', async () => {
    const dir = path.join(disk.root, 'outbox');
    const { events, reporter } = recorder();
    const box = await Outbox.open(dir, outboxOptions(reporter));
    await box.append('vpp', body(0), meta(0));
    await disk.full();
    for (let i = 1; i < 40; i++) await box.append('vpp', body(i), meta(i));
    const n = box.unwritten;
    assert.ok(n > 0);
    await box.close();
    assert.equal(
      events.at(-1),
      `lost outbox ${n} unconfirmed outbox message(s) neither on disk nor delivered at the stop`,
    );
  });

  s.run();
}

const restart = suite('disk faults: after a restart');

restart('the empty segment files an older hub left per failed append are removed, not renamed .bad', async () => {
  const disk = injectedDisk();
  try {
    const dir = path.join(disk.root, 'outbox');
    const { reporter } = recorder();
    let box = await Outbox.open(dir, { reporter });
    const id = await box.append('vpp', body(0), meta(0));
    await box.close();
    for (let i = 2; i < 220; i++) fs.writeFileSync(path.join(dir, `${String(i).padStart(10, '0')}.obx`), '');
    for (let i = 220; i < 228; i++) fs.writeFileSync(path.join(dir, `${String(i).padStart(10, '0')}.obx.bad`), '');
    box = await Outbox.open(dir, { reporter, onWarning: (w) => assert.unreachable(w.message) });
    assert.equal(
      box.pending().map((r) => r.id),
      [id],
    );
    await box.close();
    assert.equal(listing(dir), ['0000000001.obx', '0000000225.obx.bad', '0000000226.obx.bad', '0000000227.obx.bad']);
  } finally {
    await disk.dispose();
  }
});

restart.run();
