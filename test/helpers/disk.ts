/**
 * Disks that fail on demand, for the storage fault tests: a small tmpfs of our own (real ENOSPC and EROFS from the
 * kernel; needs root, so not in CI) or the store's injected fault (src/store/fs.ts: the same errors, thrown before
 * the call, for every writing call under the directory). A vanished directory is the real thing on both.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type FsOp, injectFsFault } from '../../src/store/fs.js';

export interface Disk {
  readonly kind: 'tmpfs' | 'injected';
  /** A fresh, empty directory on the disk. */
  readonly root: string;
  /** No room left: writes fail with ENOSPC (on tmpfs, a page a file already holds still takes bytes). */
  full(): Promise<void>;
  room(): Promise<void>;
  /** The file system turns read-only (on tmpfs only while no file is open for writing: EBUSY otherwise). */
  readOnly(): Promise<void>;
  writable(): Promise<void>;
  dispose(): Promise<void>;
}

const errno = (code: string, op: string, file: string): NodeJS.ErrnoException =>
  Object.assign(new Error(`${code}: injected, ${op} '${file}'`), { code, syscall: op, path: file });

const inside = (root: string, file: string): boolean => file === root || file.startsWith(root + path.sep);

/** The store's fault seam: `full` fails data writes (and directories it would have to create), `readOnly` any write. */
export function injectedDisk(): Disk {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'heh-disk-'));
  let mode: 'ok' | 'full' | 'ro' = 'ok';
  const fault = (op: FsOp, file: string, writes: boolean): NodeJS.ErrnoException | undefined => {
    if (mode === 'ok' || !writes || !inside(root, file)) return undefined;
    // mkdir -p of a directory that exists succeeds on any disk (the kernel answers EEXIST first).
    if (op === 'mkdir' && fs.existsSync(file)) return undefined;
    if (mode === 'ro') return errno('EROFS', op, file);
    return op === 'write' || op === 'mkdir' ? errno('ENOSPC', op, file) : undefined;
  };
  injectFsFault(fault);
  return {
    kind: 'injected',
    root,
    full: async () => {
      mode = 'full';
    },
    room: async () => {
      mode = 'ok';
    },
    readOnly: async () => {
      mode = 'ro';
    },
    writable: async () => {
      mode = 'ok';
    },
    dispose: async () => {
      injectFsFault(undefined);
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}

/** A tmpfs of `sizeKiB`, or why there is none (not root, no mount). */
export function tmpfsDisk(sizeKiB = 1024): Disk | string {
  const mount = fs.mkdtempSync(path.join(os.tmpdir(), 'heh-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKiB}k,mode=0700`, 'tmpfs', mount], { stdio: 'pipe' });
  } catch (err) {
    fs.rmdirSync(mount);
    return `no tmpfs (${
      String((err as { stderr?: Buffer }).stderr ?? err)
        .trim()
        .split('\n')[0]
    })`;
  }
  const root = path.join(mount, 'd');
  fs.mkdirSync(root);
  const filler = path.join(mount, 'filler');
  const remount = (how: 'ro' | 'rw'): void => {
    execFileSync('mount', ['-o', `remount,${how}`, mount], { stdio: 'pipe' });
  };
  return {
    kind: 'tmpfs',
    root,
    full: async () => {
      const fd = fs.openSync(filler, 'a');
      const chunk = Buffer.alloc(4096, 1);
      try {
        for (;;) fs.writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      } finally {
        fs.closeSync(fd);
      }
    },
    room: async () => {
      fs.rmSync(filler, { force: true });
    },
    readOnly: async () => remount('ro'),
    writable: async () => remount('rw'),
    dispose: async () => {
      try {
        execFileSync('umount', [mount], { stdio: 'pipe' });
      } catch {
        execFileSync('umount', ['-l', mount], { stdio: 'pipe' });
      }
      fs.rmdirSync(mount);
    },
  };
}
