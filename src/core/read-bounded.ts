/**
 * Reading a whole input that a person names (a config, a keyring, a message file, standard input), but never more
 * than a limit: `--config /dev/zero`, `cat /dev/zero | ebadge validate -` or a log named by mistake would otherwise
 * be read until the allocation fails, and V8 then aborts the process with no message of ours. Past the limit the
 * read stops and fails with the system's own code for it, EFBIG, which every caller already reports as it reports
 * ENOENT or EACCES.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';

/** Far above any input of this project (a keyring of thousands of peers is a few MiB), far below a Pi's memory. */
export const MAX_INPUT_BYTES = 16 << 20;

export function tooLarge(what: string, limit: number): NodeJS.ErrnoException {
  const size = limit >= 1 << 20 ? `${limit / (1 << 20)} MiB` : `${limit} bytes`;
  return Object.assign(new Error(`${what}: more than ${size}, not read`), { code: 'EFBIG' });
}

/**
 * The file's bytes; fs errors as node:fs throws them, EFBIG past `limit`, EFTYPE for a FIFO or a socket: opened
 * without O_NONBLOCK, a FIFO nobody writes to held the process in open(2) for ever, deaf to SIGTERM (the hub's
 * `--config` named one by mistake), and what it would give is no file anyway.
 */
export function readFileBounded(file: string, limit = MAX_INPUT_BYTES): Buffer {
  const chunks: Buffer[] = [];
  let total = 0;
  const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const stat = fstatSync(fd);
    if (stat.isFIFO() || stat.isSocket())
      throw Object.assign(new Error(`${file}: a ${stat.isFIFO() ? 'FIFO' : 'socket'}, not a file`), { code: 'EFTYPE' });
    for (;;) {
      // One byte past the limit tells a file of exactly the limit from a larger one.
      const chunk = Buffer.allocUnsafe(Math.min(64 << 10, limit + 1 - total));
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      chunks.push(chunk.subarray(0, n));
      total += n;
      if (total > limit) throw tooLarge(file, limit);
    }
  } finally {
    closeSync(fd);
  }
  return Buffer.concat(chunks, total);
}

/** A stream's bytes as UTF-8 text, EFBIG once past `limit`. */
export async function readStreamBounded(
  stream: AsyncIterable<Buffer | string>,
  what: string,
  limit = MAX_INPUT_BYTES,
): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const c of stream) {
    const b = typeof c === 'string' ? Buffer.from(c) : c;
    total += b.length;
    if (total > limit) throw tooLarge(what, limit);
    chunks.push(b);
  }
  return Buffer.concat(chunks, total).toString('utf8');
}
