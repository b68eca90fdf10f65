/**
 * The file-system calls of the stores (durable.ts, segment-log.ts and their owners), in one place so that a test can
 * make them fail as a full, read-only or vanished disk does (injectFsFault) where it cannot mount a small file system
 * of its own: mounting needs root, CI runs without. Without an injected fault each call is node:fs's, unchanged.
 */
import { constants as fsc, promises as fsp, type Mode, type OpenMode, type Stats } from 'node:fs';

export type FsOp =
  | 'open'
  | 'read'
  | 'readdir'
  | 'stat'
  | 'mkdir'
  | 'rename'
  | 'unlink'
  | 'rm'
  | 'truncate'
  | 'write'
  | 'sync'
  | 'chmod';

/** Decides the fate of one call: an error to fail it with, or undefined to let it run. `writes`: it changes the disk. */
export type FsFault = (op: FsOp, file: string, writes: boolean) => NodeJS.ErrnoException | undefined;

let fault: FsFault | undefined;

/** Tests only: every later call of the stores asks `f` first (undefined removes it). */
export function injectFsFault(f: FsFault | undefined): void {
  fault = f;
}

function check(op: FsOp, file: string, writes: boolean): void {
  const err = fault?.(op, file, writes);
  if (err !== undefined) throw err;
}

const WRITE_FLAGS = fsc.O_WRONLY | fsc.O_RDWR | fsc.O_CREAT | fsc.O_TRUNC | fsc.O_APPEND;
const writes = (flags: OpenMode): boolean =>
  typeof flags === 'number' ? (flags & WRITE_FLAGS) !== 0 : !/^r$|^rs$|^sr$/.test(flags);

/** The FileHandle methods the stores use, each going through the injected fault first. */
export class StoreHandle {
  declare readonly path: string;
  readonly #fh: fsp.FileHandle;

  constructor(fh: fsp.FileHandle, file: string) {
    this.#fh = fh;
    this.path = file;
  }

  async write(buf: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }> {
    check('write', this.path, true);
    return this.#fh.write(buf, offset, length, position);
  }

  async writeFile(data: string | Uint8Array): Promise<void> {
    check('write', this.path, true);
    await this.#fh.writeFile(data);
  }

  async datasync(): Promise<void> {
    check('sync', this.path, true);
    await this.#fh.datasync();
  }

  async sync(): Promise<void> {
    check('sync', this.path, true);
    await this.#fh.sync();
  }

  async truncate(length: number): Promise<void> {
    check('truncate', this.path, true);
    await this.#fh.truncate(length);
  }

  async chmod(mode: Mode): Promise<void> {
    check('chmod', this.path, true);
    await this.#fh.chmod(mode);
  }

  async stat(): Promise<Stats> {
    check('stat', this.path, false);
    return this.#fh.stat();
  }

  /** Never faulted: a descriptor must always be given back. */
  close(): Promise<void> {
    return this.#fh.close();
  }
}

export const storeFs = {
  async open(file: string, flags: OpenMode, mode?: Mode): Promise<StoreHandle> {
    check('open', file, writes(flags));
    return new StoreHandle(await fsp.open(file, flags, mode), file);
  },
  async readFile(file: string): Promise<Buffer> {
    check('read', file, false);
    return fsp.readFile(file);
  },
  async readdir(dir: string): Promise<string[]> {
    check('readdir', dir, false);
    return fsp.readdir(dir);
  },
  async stat(file: string): Promise<Stats> {
    check('stat', file, false);
    return fsp.stat(file);
  },
  async lstat(file: string): Promise<Stats> {
    check('stat', file, false);
    return fsp.lstat(file);
  },
  async mkdir(dir: string, mode = 0o700): Promise<void> {
    check('mkdir', dir, true);
    await fsp.mkdir(dir, { recursive: true, mode });
  },
  async rename(from: string, to: string): Promise<void> {
    check('rename', from, true);
    await fsp.rename(from, to);
  },
  async unlink(file: string): Promise<void> {
    check('unlink', file, true);
    await fsp.unlink(file);
  },
  async rm(file: string): Promise<void> {
    check('rm', file, true);
    await fsp.rm(file, { force: true });
  },
  async truncate(file: string, length: number): Promise<void> {
    check('truncate', file, true);
    await fsp.truncate(file, length);
  },
};
