/**
 * deploy/ebadge-hub.service: what systemd would ignore or loop on. `systemd-analyze verify` where it is installed
 * (skipped with a line saying so where not), and the settings whose place or value the restart policy depends on,
 * checked everywhere. The deployment itself (docs/operations.md run step by step, the hub started as this unit says)
 * is test/integration/deploy.test.ts.
 */
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readUnit, systemdAnalyze, UNIT_FILE, value, values, verifyUnit, words } from '../helpers/systemd-unit.js';

const test = suite('systemd unit');

test('the start limit is in [Unit], where systemd reads it, so a crash loop ends', () => {
  const unit = readUnit();
  assert.is(value(unit, 'Unit', 'StartLimitIntervalSec'), '600');
  assert.is(value(unit, 'Unit', 'StartLimitBurst'), '20');
  for (const key of ['StartLimitIntervalSec', 'StartLimitBurst', 'StartLimitInterval'])
    assert.equal(values(unit, 'Service', key), [], `${key} in [Service] is ignored by systemd`);
});

test('a configuration error (78) or a usage error (64) stops the unit: the main process makes the checks', () => {
  const unit = readUnit();
  const prevent = (value(unit, 'Service', 'RestartPreventExitStatus') ?? '').split(/\s+/);
  // Exactly those: the broker's state is never an exit of the run (src/device/link.ts retries it), so no code of its
  // (77 credentials, 69 unreachable: `bench` only) may keep the hub down.
  assert.equal(prevent.sort(), ['64', '78']);
  // RestartPreventExitStatus looks at the main process only: a check-config in ExecStartPre exiting 78 would be
  // restarted up to the start limit. The run refuses what check-config refuses (test/unit/device/config-files.test.ts).
  assert.equal(values(unit, 'Service', 'ExecStartPre'), []);
  const start = words(value(unit, 'Service', 'ExecStart') ?? '');
  assert.equal(start.slice(1), ['/opt/ebadge/hub.js', '--config', '/etc/ebadge/hub.json']);
  assert.is(value(unit, 'Service', 'User'), 'ebadge');
  assert.is(value(unit, 'Service', 'StateDirectory'), 'ebadge');
});

const AGGREGATOR_UNIT = path.join(path.dirname(UNIT_FILE), 'ebadge-aggregator@.service');

test('the aggregator template: each instance named after its host and number, stopped by SIGTERM, restarted', () => {
  const unit = readUnit(AGGREGATOR_UNIT);
  // Two machines running @1 must not give one party two instances of one name: their relay tag would be the same.
  assert.equal(values(unit, 'Service', 'Environment'), ['EBADGE_INSTANCE=%H-%i']);
  assert.is(value(unit, 'Service', 'KillSignal'), 'SIGTERM');
  assert.is(value(unit, 'Service', 'Restart'), 'always');
  assert.is(value(unit, 'Unit', 'StartLimitBurst'), '20');
  assert.is(value(unit, 'Service', 'StateDirectory'), 'ebadge-vpp/%i', 'a state directory per instance');
});

const analyze = systemdAnalyze();
if (analyze === undefined) {
  // No test registered rather than a skipped one: the check needs systemd, which CI's machine has (.ci/run).
  process.stdout.write('not run: systemd-analyze verify (systemd-analyze is not installed here)\n');
} else {
  for (const file of [UNIT_FILE, AGGREGATOR_UNIT]) {
    test(`systemd-analyze verify passes on ${path.basename(file)} (${analyze})`, () => {
      // Verified as a copy, so that ExecStart's node can be this one where /usr/bin/node is missing (verify checks
      // that the program exists; it does not look at /opt/ebadge/hub.js, an argument, nor at the user).
      const dir = mkdtempSync(path.join(tmpdir(), 'unit-verify-'));
      try {
        const copy = path.join(dir, path.basename(file));
        copyFileSync(file, copy);
        if (!existsSync('/usr/bin/node')) {
          process.stdout.write(`verifying with ExecStart's /usr/bin/node replaced by ${process.execPath}\n`);
          writeFileSync(copy, readFileSync(copy, 'utf8').replaceAll('/usr/bin/node', process.execPath));
        }
        const r = verifyUnit(copy);
        if (r.other.length > 0) process.stdout.write(`systemd-analyze, about other units:\n${r.other.join('\n')}\n`);
        assert.equal(r.about, [], 'systemd-analyze verify has nothing to say about the unit');
        assert.is(r.status, 0, r.other.join('\n'));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
}

test.run();
