/**
 * One hub per state directory (src/device/state-lock.ts): a lock held by a live process of this boot refuses a second
 * hub with a configuration error naming it; a lock left by a dead process, or by another boot, is taken over; a disk
 * that refuses the lock file does not stop the hub.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError } from '../../../src/device/config/index.js';
import type { Logger } from '../../../src/device/log.js';
import { lockStateDir } from '../../../src/device/state-lock.js';

const s = suite('state directory lock');

const warnings: string[] = [];
const log = {
  debug: () => undefined,
  info: () => undefined,
  warn: (msg: string) => warnings.push(msg),
  error: () => undefined,
} as Logger;

const boot = (): string => {
  try {
    return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return '';
  }
};

function withDir(fn: (dir: string) => Promise<void> | void): () => Promise<void> {
  return async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'heh-lock-'));
    try {
      await fn(dir);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };
}

s(
  'a live process of this boot holds it: refused, naming the process and the fix; released, it is free',
  withDir(async (dir) => {
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)'], { stdio: 'ignore' });
    try {
      fs.writeFileSync(path.join(dir, 'hub.lock'), JSON.stringify({ pid: other.pid, boot: boot() }));
      assert.throws(
        () => lockStateDir(dir, log),
        (e: Error) =>
          e instanceof ConfigError &&
          e.message.includes(`one in use by the hub with process id ${other.pid}`) &&
          e.message.includes('give this hub a stateDir of its own'),
      );
    } finally {
      other.kill('SIGKILL');
      await new Promise((resolve) => other.once('exit', resolve));
    }
    // The same process id, now dead: stale, taken over.
    const lock = lockStateDir(dir, log);
    const written = JSON.parse(fs.readFileSync(path.join(dir, 'hub.lock'), 'utf8')) as Record<string, unknown>;
    assert.equal([written['pid'], written['boot']], [process.pid, boot()]);
    assert.match(String(written['start']), /^\d+$/, 'when this process started, in ticks since boot');
    lock.release();
    assert.not.ok(fs.existsSync(path.join(dir, 'hub.lock')));
  }),
);

s(
  'a process id taken again by another process (another start): stale, taken over; the same start: held',
  withDir(async (dir) => {
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)'], { stdio: 'ignore' });
    try {
      const stat = fs.readFileSync(`/proc/${other.pid}/stat`, 'utf8');
      const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] as string;
      const file = path.join(dir, 'hub.lock');
      fs.writeFileSync(file, JSON.stringify({ pid: other.pid, boot: boot(), start }));
      assert.throws(
        () => lockStateDir(dir, log),
        (e: Error) => e instanceof ConfigError,
        'its own start: the writer',
      );
      // The hub that wrote it died (an OOM kill); its process id now belongs to this other process.
      fs.writeFileSync(file, JSON.stringify({ pid: other.pid, boot: boot(), start: String(Number(start) - 1) }));
      lockStateDir(dir, log).release();
    } finally {
      other.kill('SIGKILL');
      await new Promise((resolve) => other.once('exit', resolve));
    }
  }),
);

s(
  'a hub killed and not yet reaped (a zombie) holds no lock: its successor starts',
  withDir(async (dir) => {
    // sh forks a child that exits at once, then becomes a sleep that never waits for it: the child stays a zombie.
    const parent = spawn('sh', ['-c', 'sleep 0 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const pid = Number(await new Promise<string>((resolve) => parent.stdout.once('data', (b) => resolve(String(b)))));
      const state = (): string | undefined => {
        const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
        return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
      };
      for (let i = 0; i < 200 && state() !== 'Z'; i++) await new Promise((r) => setTimeout(r, 10));
      assert.is(state(), 'Z', 'the child is a zombie');
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] as string;
      fs.writeFileSync(path.join(dir, 'hub.lock'), JSON.stringify({ pid, boot: boot(), start }));
      lockStateDir(dir, log).release();
    } finally {
      parent.kill('SIGKILL');
      await new Promise((resolve) => parent.once('exit', resolve));
    }
  }),
);

s(
  "a lock of another boot is stale whatever its process id; an unreadable one too; release leaves another hub's lock alone",
  withDir((dir) => {
    const file = path.join(dir, 'hub.lock');
    fs.writeFileSync(file, JSON.stringify({ pid: 1, boot: 'another-boot' }));
    const lock = lockStateDir(dir, log);
    fs.writeFileSync(file, 'garbage');
    lockStateDir(dir, log).release();
    // A lock another hub took meanwhile is not ours to remove.
    fs.writeFileSync(file, JSON.stringify({ pid: 1, boot: boot() }));
    lock.release();
    assert.ok(fs.existsSync(file));
  }),
);

s(
  'a directory the lock cannot be written to: told, and the hub goes on without it',
  withDir((dir) => {
    // A directory that could not be created (a read-only disk at boot): the hub runs from memory meanwhile.
    warnings.length = 0;
    lockStateDir(path.join(dir, 'not-created'), log).release();
    assert.equal(warnings, ['cannot write the state directory lock; running without it']);
  }),
);

s.run();
