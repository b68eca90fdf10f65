/**
 * src/core/read-bounded.ts, and the inputs a person names to the CLI through it: a file or a stream is read up to
 * its limit exactly, refused with EFBIG one byte past it, and a file without an end (/dev/zero) is refused rather
 * than read until V8's allocation fails and aborts the process (which it did, for `ebadge validate /dev/zero`).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../../src/cli.js';
import { MAX_INPUT_BYTES, readFileBounded, readStreamBounded } from '../../../src/core/read-bounded.js';
import { ConfigError, loadConfig } from '../../../src/device/config/index.js';

const CLI = fileURLToPath(new URL('../../../src/bin/ebadge.js', import.meta.url));
const zero = fs.existsSync('/dev/zero');

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as NodeJS.ErrnoException).code;
  }
  return undefined;
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code;
  }
  return undefined;
}

const s = suite('read-bounded');

s('a file: read whole up to the limit, EFBIG one byte past it; fs errors as node:fs gives them', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'heh-bounded-'));
  try {
    const f = path.join(dir, 'a');
    // Past one 64 KiB read, so that the limit falls inside a later chunk.
    fs.writeFileSync(f, Buffer.alloc(100_000, 7));
    assert.is(readFileBounded(f, 100_000).length, 100_000);
    assert.ok(readFileBounded(f, 100_000).every((b) => b === 7));
    assert.is(
      code(() => readFileBounded(f, 99_999)),
      'EFBIG',
    );
    assert.throws(
      () => readFileBounded(f, 99_999),
      (e: Error) => e.message === `${f}: more than 99999 bytes, not read`,
    );
    fs.writeFileSync(f, '');
    assert.is(readFileBounded(f, 0).length, 0);
    assert.is(
      code(() => readFileBounded(path.join(dir, 'none'))),
      'ENOENT',
    );
    assert.is(
      code(() => readFileBounded(dir)),
      'EISDIR',
    );
    if (zero)
      assert.is(
        code(() => readFileBounded('/dev/zero')),
        'EFBIG',
      );
    assert.is(MAX_INPUT_BYTES, 16 << 20);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

s('a stream: its text up to the limit, EFBIG past it (chunks of bytes or of text)', async () => {
  assert.is(await readStreamBounded(Readable.from([Buffer.from('ab'), 'cé']), 'in', 5), 'abcé');
  assert.is(await codeOf(readStreamBounded(Readable.from([Buffer.from('ab'), 'cé']), 'in', 4)), 'EFBIG');
  const endless = Readable.from(
    (function* () {
      for (;;) yield Buffer.alloc(1 << 16);
    })(),
  );
  assert.is(await codeOf(readStreamBounded(endless, 'standard input', 1 << 20)), 'EFBIG');
});

s('the CLI: validate, send --json and provision refuse a file without an end; so does standard input', async () => {
  const lines: string[] = [];
  const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
  if (zero) {
    assert.is(await main(['validate', '/dev/zero'], io), 2);
    assert.match(lines.join('\n'), 'error: /dev/zero: EFBIG');
    lines.length = 0;
    assert.is(await main(['send', '--as', 'a', '--to', 'b', 'get_report', '--json', '/dev/zero'], io), 2);
    assert.match(lines.join('\n'), 'error: --json /dev/zero: cannot be read (EFBIG)');
    lines.length = 0;
    // A directory is named too (EISDIR alone said nothing of which file).
    assert.is(await main(['send', '--as', 'a', '--to', 'b', 'get_report', '--json', os.tmpdir()], io), 2);
    assert.match(lines.join('\n'), `error: --json ${os.tmpdir()}: cannot be read (EISDIR)`);
    lines.length = 0;
    assert.is(await main(['provision', '/dev/zero', '--out', os.tmpdir()], io), 1);
    assert.match(lines.join('\n'), '/dev/zero: cannot read it (EFBIG)');
  }
  // Standard input is the program's own: a child process fed 16 MiB and one byte more.
  const r = spawnSync(process.execPath, [CLI, 'validate', '-'], {
    input: Buffer.alloc(MAX_INPUT_BYTES + 1, 0x20),
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.is(r.status, 1, r.stderr);
  assert.match(r.stderr, 'standard input: more than 16 MiB, not read');
});

s("a FIFO nobody writes to is refused at once (EFTYPE), not waited on for ever; so is it as the hub's config", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'heh-bounded-'));
  try {
    const fifo = path.join(dir, 'hub.json');
    if (spawnSync('mkfifo', [fifo]).status !== 0) return console.log('  (skipped: no mkfifo)');
    assert.is(
      code(() => readFileBounded(fifo)),
      'EFTYPE',
    );
    assert.throws(
      () => loadConfig(fifo),
      (e: Error) =>
        e instanceof ConfigError &&
        e.message.includes('a FIFO or a socket, not a file (EFTYPE)') &&
        e.message.includes(fifo),
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

s.run();
