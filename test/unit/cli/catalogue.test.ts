/** `ebadge types`, `ebadge fields TYPE` and `ebadge --version`: what they print comes from the codec's tables. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../../src/cli.js';
import { SCHEMAS } from '../../../src/codec/index.js';
import { VERSION } from '../../../src/core/version.js';

const CLI = fileURLToPath(new URL('../../../src/cli.js', import.meta.url));

async function cli(...argv: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err };
}

const test = suite('ebadge types / fields / --version');

test('types lists every message type once, with its fields, the optional ones in brackets', async () => {
  const r = await cli('types');
  assert.is(r.code, 0);
  assert.equal(
    r.out.map((l) => l.split(/\s+/)[0]),
    Object.keys(SCHEMAS),
  );
  const activate = r.out
    .find((l) => l.startsWith('activate '))
    ?.split(/\s+/)
    .slice(1);
  assert.equal(activate, ['id', 'modification_count', 'from', 'to', 'quantity', 'device', '[heh_id]', '[msg_id]']);
});

test('fields TYPE gives each field its value type, required or optional, and whether null is allowed', async () => {
  const r = await cli('fields', 'activate');
  assert.is(r.code, 0);
  const row = (name: string): string => r.out.find((l) => l.startsWith(`${name} `)) ?? '';
  assert.match(row('modification_count'), /integer\s+required, >= 0$/);
  assert.match(row('quantity'), /number\s+required, a power in kW$/);
  assert.match(row('device'), /string\s+required, null allowed$/);
  assert.match(row('msg_id'), /uuid\s+optional$/);
  for (const type of Object.keys(SCHEMAS)) assert.is((await cli('fields', type)).code, 0, type);
});

test('fields with no type, an unknown type or two types is a usage error (exit 2)', async () => {
  for (const argv of [['fields'], ['fields', 'activte'], ['fields', 'activate', 'report'], ['types', 'x']]) {
    const r = await cli(...argv);
    assert.is(r.code, 2, argv.join(' '));
    assert.match(r.err[0] ?? '', /^error: /);
  }
});

test('--version prints the release of package.json', async () => {
  const r = await cli('--version');
  assert.is(r.code, 0);
  assert.is(r.out[0], `ebadge ${VERSION} (node ${process.version}, ${process.arch})`);
});

test('a reader that goes away (ebadge types | head -1) ends the command quietly, exit 0', async () => {
  const child = spawn(process.execPath, [CLI, 'types'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  child.stdout.once('data', () => child.stdout.destroy());
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  assert.is(code, 0, err);
  assert.is(err, '');
});

test.run();
