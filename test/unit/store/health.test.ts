/**
 * What the operator reads of a disk fault: one line when it starts, one when it is over, at most one in between per
 * repeatMs with the count of failed writes, however many writes fail or however often the disk flaps; losses told
 * at once, then summed per repeatMs.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { describeFault, isDiskFault, StorageHealth, type StorageReport } from '../../../src/store/health.js';

const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), {
  code: 'ENOSPC',
  path: '/var/lib/hub/hub-state.json',
});
const erofs = Object.assign(new Error('EROFS: read-only file system'), { code: 'EROFS' });

function setup(repeatMs = 600_000, settleMs = 60_000) {
  const clock = { t: 1_000_000 };
  const reports: StorageReport[] = [];
  const health = new StorageHealth({ onReport: (r) => reports.push(r), now: () => clock.t, repeatMs, settleMs });
  return { clock, reports, health };
}

const wait = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const s = suite('storage health');

s('a fault: one line naming the file and the reason, however many writes fail; one line when it is over', async () => {
  const { clock, reports, health } = setup(600_000, 20);
  for (let i = 0; i < 1000; i++) {
    health.failed('outbox', 'write the outbox in /var/lib/hub/outbox', enospc);
    clock.t += 50;
  }
  health.failed('state', 'write the hub state /var/lib/hub/hub-state.json', enospc);
  assert.is(reports.length, 1);
  const first = reports[0]!;
  assert.is(first.kind, 'fault');
  assert.match(first.message, /cannot write the outbox in \/var\/lib\/hub\/outbox: the disk is full \(ENOSPC\)/);
  assert.ok(first.kind === 'fault' && first.path === '/var/lib/hub/hub-state.json' && first.code === 'ENOSPC');
  assert.ok(health.faulty);
  health.ok('outbox', '12 outbox message(s) kept in memory');
  await wait(40);
  assert.is(reports.length, 1, 'not over while the state still fails');
  health.ok('state', 'the hub state');
  await wait(40);
  assert.is(reports.length, 2);
  const last = reports[1]!;
  assert.is(last.kind, 'recovered');
  assert.match(
    last.message,
    /1001 failed write\(s\); written late: 12 outbox message\(s\) kept in memory; the hub state/,
  );
  assert.not.ok(health.faulty);
  assert.equal([health.failures, health.episodes], [1001, 1]);
});

s('a long fault: a line per repeatMs at most, with the failures since the last one and the stores failing', () => {
  const { clock, reports, health } = setup(600_000);
  for (let i = 0; i < 3600; i++) {
    health.failed(i % 2 ? 'history' : 'outbox', 'write', erofs);
    clock.t += 1000;
  }
  assert.equal(
    reports.map((r) => r.kind),
    ['fault', 'still', 'still', 'still', 'still', 'still'],
  );
  assert.match(reports[1]!.message, /600 more failed write\(s\) of the history, outbox in 600 s/);
  health.close(); // still failing: close tells nothing more
  assert.is(reports.length, 6);
});

s('a flapping disk is one episode: the end waits for settleMs without a failure', async () => {
  const { reports, health } = setup(600_000, 30);
  for (let i = 0; i < 5; i++) {
    health.failed('outbox', 'write', enospc);
    health.ok('outbox');
    await wait(5);
  }
  assert.equal(
    reports.map((r) => r.kind),
    ['fault'],
  );
  await wait(60);
  assert.equal(
    reports.map((r) => r.kind),
    ['fault', 'recovered'],
  );
  // close() tells an end still waiting for its quiet time.
  health.failed('outbox', 'write', enospc);
  health.ok('outbox');
  health.close();
  assert.equal(
    reports.map((r) => r.kind),
    ['fault', 'recovered', 'fault', 'recovered'],
  );
});

s('losses: the first told at once, the next summed into one line per repeatMs, the rest told by close()', async () => {
  const { clock, reports, health } = setup(30);
  health.lost('outbox', 1, 'messages dropped');
  health.lost('outbox', 1, 'messages dropped');
  health.lost('outbox', 2, 'messages dropped');
  health.lost('history', 0, 'slots');
  assert.equal(
    reports.map((r) => r.message),
    ['data lost: 1 messages dropped (1 since the start)'],
  );
  await wait(60);
  assert.equal(reports.at(-1)!.message, 'data lost: 3 messages dropped (4 since the start)');
  clock.t += 10;
  health.lost('outbox', 5, 'messages dropped');
  health.lost('history', 7, 'slots');
  health.close();
  assert.equal(
    reports.slice(2).map((r) => r.message),
    ['data lost: 7 slots (7 since the start)', 'data lost: 5 messages dropped (9 since the start)'],
  );
  assert.is(health.lostTotal, 16);
});

s('a throwing listener does not reach the store; reasons and disk faults by code', () => {
  const health = new StorageHealth({
    onReport: () => {
      throw new Error('listener');
    },
  });
  health.failed('state', 'write', enospc);
  health.lost('state', 1, 'x');
  health.close();
  assert.equal(describeFault(enospc), { code: 'ENOSPC', reason: 'the disk is full' });
  assert.equal(describeFault(erofs).reason, 'the file system is read-only');
  assert.equal(describeFault({ code: 'ENOENT' }).reason, 'the directory vanished');
  assert.equal(describeFault(new Error('odd')), { code: 'ERROR', reason: 'odd' });
  assert.equal(describeFault(new Error('syncing x', { cause: erofs })).code, 'EROFS', 'the cause is looked at');
  assert.ok(isDiskFault(enospc) && isDiskFault(erofs) && isDiskFault({ code: 'ENOENT' }));
  assert.not.ok(isDiskFault({ code: 'EACCES' }));
});

s.run();
