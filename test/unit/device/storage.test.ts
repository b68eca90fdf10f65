/**
 * The hub's storage as main.ts opens it: what the operator reads in the JSON log of a disk fault (one line when it
 * starts, one when it is over, however many writes fail) and what the peers see (storage_fault with end_time null
 * while it lasts, storage_ok, storage_lost and state_damaged with their counts kept in the state). A Hub over the
 * in-memory transport; the disk is the injected one of src/store/fs.ts.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Connector, MemoryTransport } from '../../../src/bus/index.js';
import { EbTime, type Message } from '../../../src/codec/index.js';
import { parseConfig } from '../../../src/device/config/index.js';
import { Hub } from '../../../src/device/hub.js';
import { createLogger } from '../../../src/device/log.js';
import { openStorage } from '../../../src/device/storage.js';
import { type Disk, injectedDisk } from '../../helpers/disk.js';

function setup(disk: Disk) {
  const config = parseConfig({
    name: 'heh-storage',
    broker: { url: 'amqp://127.0.0.1:5672' },
    peers: [{ name: 'vpp' }],
    stateDir: path.join(disk.root, 'state'),
    resolutionS: 60,
    devices: [{ name: 'meter', meter: { kind: 'simulated' } }],
  });
  const lines: Record<string, unknown>[] = [];
  const log = createLogger('debug', (l) => lines.push(JSON.parse(l) as Record<string, unknown>));
  const start = async () => {
    const storage = await openStorage(config, log, { settleMs: 30 });
    const [mine, theirs] = MemoryTransport.pair('heh-storage', 'vpp');
    const bus = new Connector({ transport: mine });
    // The VPP side, for a test that asks the hub (started by it: the others do not need the bus).
    const vpp = new Connector({ transport: theirs });
    const { store, history, outbox } = storage;
    const hub = new Hub({ config, bus, history, meters: new Map(), actuators: new Map(), store, log, outbox });
    storage.attach(hub);
    return { storage, hub, bus, vpp };
  };
  const storageLines = () => lines.filter((l) => /storage|data lost|state file/.test(String(l['msg'])));
  return { config, lines, start, storageLines };
}

const until = async (what: () => boolean, label: () => string, ms = 5000): Promise<void> => {
  const end = Date.now() + ms;
  while (!what()) {
    if (Date.now() > end) assert.unreachable(`timed out waiting for ${label()}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
};

const meta = (i: number) => ({ messageId: `m-${i}`, type: 'report', routingKey: 'k' });

const s = suite('hub storage');
let disk: Disk;
s.before.each(() => {
  disk = injectedDisk();
});
s.after.each(async () => {
  await disk.dispose();
});

s(
  'a full disk: one error line naming the file and the reason, however many writes fail, then one when it is over',
  async () => {
    const { start, storageLines } = setup(disk);
    const { storage, hub } = await start();
    await disk.full();
    for (let i = 0; i < 50; i++) await storage.outbox.append('vpp', Buffer.from(`report ${i}`), meta(i));
    for (let i = 0; i < 10; i++) await hub.event('meter_fault');
    storage.history.record(hub.now() - 60_000, { 'meter.p': 1 });
    await storage.history.flush().catch(() => undefined);
    const during = storageLines();
    assert.is(during.length, 1, JSON.stringify(during));
    assert.is(during[0]!['level'], 'error');
    assert.match(
      String(during[0]!['msg']),
      /^storage fault: cannot write the outbox in .*: the disk is full \(ENOSPC\)/,
    );
    assert.is(during[0]!['code'], 'ENOSPC');
    const open = storage.store.state.events.filter((e) => e.type === 'storage_fault');
    assert.is(open.length, 1);
    assert.is(open[0]!.end, null, 'still going on');

    await disk.room();
    await storage.history.flush();
    await until(
      () => storageLines().length === 2,
      () => JSON.stringify(storageLines()),
    );
    const over = storageLines()[1]!;
    assert.is(over['level'], 'info');
    assert.match(String(over['msg']), /^storage writable again after \d+ s and \d+ failed write\(s\); written late: /);
    assert.match(String(over['msg']), /50 outbox message\(s\) kept in memory/);
    assert.match(String(over['msg']), /1 measurement slot\(s\) of the history/);
    await until(
      () => storage.store.state.events.some((e) => e.type === 'storage_ok'),
      () => 'storage_ok',
    );
    assert.ok(storage.store.state.events.find((e) => e.type === 'storage_fault')!.end! > 0, 'ended');
    await hub.stop();
    await storage.close();
    const onDisk = JSON.parse(fs.readFileSync(storage.store.file, 'utf8')) as { events: { type: string }[] };
    assert.ok(
      onDisk.events.some((e) => e.type === 'storage_ok'),
      'the events themselves reached the disk',
    );
  },
);

s(
  'a damaged state file at start: one error line with the file, the copy and the problems; a state_damaged event',
  async () => {
    const { config, start, storageLines } = setup(disk);
    fs.mkdirSync(config.stateDir, { recursive: true });
    fs.writeFileSync(
      path.join(config.stateDir, 'hub-state.json'),
      JSON.stringify({
        format: 'heh-hub-state/1',
        subscriptions: [{ requester: 'vpp', interval: 'abc', resolution: 60, signals: ['meter.p'], next: 0 }],
      }),
    );
    const { storage, hub } = await start();
    const [line] = storageLines();
    assert.is(line?.['level'], 'error');
    assert.match(String(line?.['msg']), /^the hub state file was damaged: the entries named were dropped/);
    assert.equal(line?.['problems'], [
      '$.subscriptions[0].interval: expected whole seconds > 0, found "abc"; the entry is dropped',
    ]);
    assert.match(String(line?.['copy']), /hub-state\.json\.corrupt-\d{8}T\d{6}Z$/);
    await until(
      () => storage.store.state.events.some((e) => e.type === 'state_damaged' && e.count === 1),
      () => JSON.stringify(storage.store.state.events),
    );
    await hub.stop();
    await storage.close();
  },
);

s('recovery warnings go to the JSON log, not to stderr', async () => {
  const { config, lines, start } = setup(disk);
  const first = await start();
  for (let i = 0; i < 3; i++) await first.storage.outbox.append('vpp', Buffer.from(`report ${i}`), meta(i));
  await first.hub.stop();
  await first.storage.close();
  const outbox = path.join(config.stateDir, 'outbox');
  const file = path.join(outbox, fs.readdirSync(outbox)[0]!);
  const bytes = fs.readFileSync(file);
  bytes[bytes.length - 20]! ^= 0xff;
  fs.writeFileSync(file, bytes);
  const stderr: unknown[] = [];
  const onWarning = (w: unknown): void => {
    stderr.push(w);
  };
  process.on('warning', onWarning);
  try {
    const again = await start();
    await again.hub.stop();
    await again.storage.close();
  } finally {
    process.off('warning', onWarning);
  }
  const warned = lines.filter((l) => l['level'] === 'warn' && l['code'] === 'CORRUPT');
  assert.is(warned.length, 1, JSON.stringify(lines));
  assert.match(String(warned[0]!['msg']), /^0000000001\.obx: 1 bad record\(s\)/);
  assert.equal(stderr, []);
});

s(
  'what is not a file or a directory where the stores expect one is moved aside, and the hub starts (a FIFO held it for ever)',
  async () => {
    const { config, lines, start } = setup(disk);
    const first = await start();
    for (let i = 0; i < 2; i++) await first.storage.outbox.append('vpp', Buffer.from(`report ${i}`), meta(i));
    await first.hub.stop();
    await first.storage.close();
    const outbox = path.join(config.stateDir, 'outbox');
    // Under segment names: a directory and a FIFO beside the real segment.
    fs.mkdirSync(path.join(outbox, '0000000007.obx'));
    const fifo = path.join(outbox, '0000000008.obx');
    const canFifo = (() => {
      try {
        execFileSync('mkfifo', [fifo]);
        return true;
      } catch {
        return false;
      }
    })();
    // And the history as a plain file.
    const history = path.join(config.stateDir, 'history');
    fs.rmSync(history, { recursive: true, force: true });
    fs.writeFileSync(history, 'not a directory');
    const again = await start();
    assert.is(again.storage.outbox.pending().length, 2, 'the real segment is read');
    await again.hub.stop();
    await again.storage.close();
    const names = fs.readdirSync(outbox).sort();
    assert.ok(names.includes('0000000007.obx.not-a-file'), names.join(' '));
    if (canFifo) assert.ok(names.includes('0000000008.obx.not-a-file'), names.join(' '));
    assert.ok(fs.statSync(history).isDirectory(), 'the history starts afresh');
    const moved = fs.readdirSync(config.stateDir).filter((n) => n.startsWith('history.not-a-directory-'));
    assert.is(moved.length, 1);
    assert.is(fs.readFileSync(path.join(config.stateDir, moved[0] as string), 'utf8'), 'not a directory');
    assert.ok(lines.some((l) => l['level'] === 'error' && l['found'] === 'a file' && l['path'] === history));
  },
);

s('status_report: degraded while the disk refuses writes, ok once the episode is over', async () => {
  const { start } = setup(disk);
  const { storage, hub, bus, vpp } = await start();
  await bus.start();
  await vpp.start();
  const status = async (): Promise<string> => {
    const m = await vpp.request('heh-storage', {
      msg: 'get_status_report',
      from: EbTime.fromEpochMs(Date.now() - 60_000),
      to: EbTime.fromEpochMs(Date.now() + 60_000),
      severity_threshold: 2,
    });
    return (m as Message<'status_report'>).status;
  };
  try {
    assert.is(await status(), 'ok');
    await disk.full();
    await storage.outbox.append('vpp', Buffer.from('report'), meta(1));
    assert.ok(storage.health.faulty);
    assert.is(await status(), 'degraded', 'the hub runs from memory: not ok');
    await disk.room();
    await storage.outbox.append('vpp', Buffer.from('report'), meta(2));
    await until(
      () => !storage.health.faulty,
      () => 'the episode over',
    );
    assert.is(await status(), 'ok');
  } finally {
    await vpp.close();
    await bus.close();
    await hub.stop();
    await storage.close();
  }
});

s('a stop while the disk is full: what only memory held is told lost, the stop goes on', async () => {
  const { start, storageLines } = setup(disk);
  const { storage, hub } = await start();
  await disk.full();
  for (let i = 0; i < 3; i++) await storage.outbox.append('vpp', Buffer.from(`report ${i}`), meta(i));
  await hub.stop().catch((err: unknown) => assert.match((err as Error).message, /cannot write the hub state/));
  await storage.close();
  const lost = storageLines().filter((l) => String(l['msg']).startsWith('data lost'));
  assert.is(lost.length, 1, JSON.stringify(storageLines()));
  assert.match(String(lost[0]!['msg']), /^data lost: 3 unconfirmed outbox message\(s\) neither on disk nor delivered/);
  assert.equal([lost[0]!['level'], lost[0]!['count']], ['error', 3]);
});

s.run();
