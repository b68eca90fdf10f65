/**
 * The message `ebadge send` and `ebadge request` build from `--json FILE`, refused before any connection is made:
 * every mistake is a usage error (exit 2) that says what is wrong, never a TypeError or a stack overflow (a JSON
 * value that is not an object, and 200,000 levels of nesting, were both).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../../src/cli.js';

const s = suite('ebadge send --json');

async function send(json: string, ...extra: string[]): Promise<{ code: number; err: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'heh-cli-json-'));
  try {
    const file = path.join(dir, 'm.json');
    fs.writeFileSync(file, json);
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
    // Port 1 on loopback: nothing is ever sent, whatever gets past the message.
    const code = await main(
      ['send', '--as', 'a', '--to', 'b', ...extra, '--json', file, '--url', 'amqp://127.0.0.1:1'],
      io,
    );
    return { code, err: lines.join('\n') };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

s('a JSON value that is not an object: a usage error naming what it is', async () => {
  for (const [json, found] of [
    ['null', 'null'],
    ['[1]', 'an array'],
    ['5', 'number'],
    ['"activate"', 'string'],
  ]) {
    const r = await send(json as string, 'get_all_prices');
    assert.is(r.code, 2, json);
    assert.match(r.err, `--json: expected a JSON object (a message), found ${found}`);
  }
});

s("deep nesting: the codec's limit, whether the file names its type or the command line does", async () => {
  const deep = `${'['.repeat(200_000)}${']'.repeat(200_000)}`;
  const named = await send(`{"msg":"get_all_prices","x":${deep}}`);
  assert.is(named.code, 2);
  assert.match(named.err, 'nested deeper than 32');
  const typed = await send(`{"x":${deep}}`, 'get_all_prices');
  assert.is(typed.code, 2);
  assert.match(typed.err, 'invalid message: nested too deeply (a message nests 32 levels at most)');
});

s('an invalid message: the field and what is wrong, then where to read the fields, not the usage', async () => {
  const r = await send('{"quantity":"abc"}', 'activate');
  assert.is(r.code, 2);
  assert.match(r.err, 'error: invalid message: activate.');
  assert.match(r.err, '`ebadge fields TYPE` lists the fields of a message type');
  assert.not.match(r.err, 'usage: ebadge');
});

s('a valid message passes the check: what stops it comes after (here, no password for the connection)', async () => {
  const r = await send('{}', 'get_all_prices');
  assert.not.match(r.err, 'invalid message');
  assert.not.match(r.err, '--json:');
  assert.match(r.err, 'no password for the user a');
});

s.run();
