/**
 * One hub per state directory: `hub.lock` holds the running hub's process id and the boot it runs in. Two hubs on one
 * directory (a copied unit, a second config naming the same stateDir) appended to the same outbox and history and,
 * over MQTT, took each other's session every few seconds. A lock left by a hub that died (SIGKILL, a power cut) is
 * stale and taken over: its process is gone, or the machine booted since, or its process id is another process's now
 * (it started at another time). The lock sees the hubs of its own PID namespace only: two containers on one state
 * volume are not told apart (docs/operations.md). A disk that refuses the lock file (full,
 * read-only) does not stop the hub, which must run on such a disk: it is told, and the hub goes on without a lock.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { ConfigError } from './config/index.js';
import type { Logger } from './log.js';

export interface StateLock {
  release(): void;
}

const bootId = (): string => {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return ''; // not Linux: the process id alone
  }
};

/** The fields of /proc/PID/stat from the third (the state) on; none when not known (not Linux, no such process). */
function statOf(pid: number): string[] {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces or parentheses: fields count from its end.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return [];
  }
}

/**
 * When process `pid` started, in clock ticks since boot (field 22): a process id taken again by another process after
 * the hub died (an OOM kill, a crash) has another start. Undefined when not known.
 */
const startOf = (pid: number): string | undefined => statOf(pid)[19];

function alive(pid: number): boolean {
  // A hub killed and not yet reaped by its parent (a zombie, Z) holds its process id but nothing else.
  if (statOf(pid)[0] === 'Z') return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // someone else's process: alive all the same
  }
}

export function lockStateDir(dir: string, log: Logger): StateLock {
  const file = path.join(dir, 'hub.lock');
  const boot = bootId();
  let held: { pid?: unknown; boot?: unknown; start?: unknown } | undefined;
  try {
    held = JSON.parse(readFileSync(file, 'utf8')) as { pid?: unknown; boot?: unknown; start?: unknown };
  } catch {
    held = undefined; // none, or unreadable: taken over
  }
  const pid = typeof held?.pid === 'number' ? held.pid : undefined;
  // A lock without a start (an older hub's) is held while its process id is alive, as before.
  const same = (p: number): boolean => typeof held?.start !== 'string' || startOf(p) === held.start;
  if (pid !== undefined && pid !== process.pid && held?.boot === boot && alive(pid) && same(pid)) {
    throw new ConfigError(
      dir,
      '$.stateDir',
      'a state directory no other hub uses',
      `one in use by the hub with process id ${pid} (${file}): stop it, or give this hub a stateDir of its own; if process ${pid} is no hub, delete ${file}`,
    );
  }
  try {
    const start = startOf(process.pid);
    writeFileSync(file, `${JSON.stringify({ pid: process.pid, boot, ...(start === undefined ? {} : { start }) })}\n`, {
      mode: 0o600,
    });
  } catch (err) {
    log.warn('cannot write the state directory lock; running without it', {
      file,
      code: (err as NodeJS.ErrnoException).code,
    });
    return { release: () => undefined };
  }
  return {
    release() {
      try {
        const now = JSON.parse(readFileSync(file, 'utf8')) as { pid?: unknown };
        if (now.pid === process.pid) rmSync(file, { force: true });
      } catch {
        // gone or unreadable: nothing of ours to remove
      }
    },
  };
}
