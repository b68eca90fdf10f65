/**
 * Whole-file replacement that survives a power cut: tmp + fsync + rename + directory fsync, so the file holds either
 * the old or the new content, never a mix. Used for the replay state, the sequence reservations, the private key file
 * and the hub's state, which are small and rarely written (an SD card wears with every write); the append-only
 * segment files (segment-log.ts) use syncDirectory alone.
 */
import * as path from 'node:path';
import { storeFs } from './fs.js';

let tmpCounter = 0;

export async function writeFileDurably(file: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${tmpCounter++}.tmp`);
  try {
    // A crashed earlier process with the same pid (pid 1 in a container) may have left this name behind.
    await storeFs.rm(tmp);
    const fh = await storeFs.open(tmp, 'wx', mode);
    try {
      await fh.chmod(mode); // the umask may have changed it
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await storeFs.rename(tmp, file);
    // Without this the rename itself may not survive a power cut.
    await syncDirectory(dir);
  } catch (err) {
    await storeFs.rm(tmp).catch(() => undefined);
    throw err;
  }
}

/**
 * fsyncs a directory, so that a file created or renamed in it survives a power cut. Returns false where
 * directories cannot be synced (Windows), true after the sync.
 */
export async function syncDirectory(dir: string): Promise<boolean> {
  if (process.platform === 'win32') return false;
  const dh = await storeFs.open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close().catch(() => undefined);
  }
  return true;
}
