/**
 * The test runner itself (test/run.ts): each way a run can go wrong must exit non-zero, and a clean run exits 0 and
 * says which Node ran it. Each case is a folder of small test files written here and run by a child runner.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

// The runner built beside this file (.out/test/run.js, or a private --outDir's).
const runner = fileURLToPath(new URL('../run.js', import.meta.url));
// Inside the repository's build folder, so that `import 'uvu'` in the case files finds node_modules.
const base = mkdtempSync(path.join(path.dirname(path.dirname(runner)), 'runner-cases-'));

const PASSING = `import { suite } from 'uvu'; import * as assert from 'uvu/assert';
const s = suite('fine'); s('adds', () => assert.is(1 + 1, 2)); s.run();`;

function run(files: Record<string, string>): { status: number | null; out: string } {
  const dir = mkdtempSync(path.join(base, 'case-'));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), text);
  }
  const r = spawnSync(process.execPath, [runner, dir], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, TEST_EXCLUDE: '', TEST_DEADLINE_MS: '20000' },
  });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

const test = suite('test runner');
test.after(() => rmSync(base, { recursive: true, force: true }));

test('a clean run exits 0 and prints the Node version and the totals', () => {
  const r = run({ 'a.test.js': PASSING });
  assert.is(r.status, 0, r.out);
  assert.ok(r.out.includes(`test run: node ${process.version}`), r.out);
  assert.ok(r.out.includes('1 of 1 tests passed'), r.out);
});

test('a test file that throws at import fails the run, and the other files still run', () => {
  const r = run({ 'a.test.js': "throw new Error('boom at import');", 'b.test.js': PASSING });
  assert.is(r.status, 1, r.out);
  assert.match(r.out, /a\.test\.js threw while it was imported: Error: boom at import/);
  assert.ok(r.out.includes('1 of 1 tests passed'), r.out);
});

test('a failing test fails the run', () => {
  const r = run({
    'a.test.js': `import { suite } from 'uvu'; import * as assert from 'uvu/assert';
const s = suite('bad'); s('wrong', () => assert.is(1, 2)); s('right', () => {}); s.run();`,
  });
  assert.is(r.status, 1, r.out);
  assert.match(r.out, /a\.test\.js: 1 of 2 tests failed/);
});

test('a before hook that throws fails the run (uvu itself would count the suite as passed)', () => {
  const r = run({
    'a.test.js': `import { suite } from 'uvu';
const s = suite('hook'); s.before(() => { throw new Error('no broker'); }); s('t', () => {}); s.run();`,
  });
  assert.is(r.status, 1, r.out);
  assert.match(r.out, /only 0 of 1 tests ran: its before hook threw/);
});

test('zero tests fail the run: an empty folder, and a file whose suite never calls run()', () => {
  const empty = run({ 'README.md': 'no tests here' });
  assert.is(empty.status, 1, empty.out);
  assert.match(empty.out, /no test ran/);
  const forgotten = run({
    'a.test.js': `import { suite } from 'uvu'; const s = suite('never run'); s('t', () => {});`,
    'b.test.js': PASSING,
  });
  assert.is(forgotten.status, 1, forgotten.out);
  assert.match(forgotten.out, /a\.test\.js registered no test/);
});

test('an unhandled rejection fails the run, even from a test that passed', () => {
  const r = run({
    'a.test.js': `import { suite } from 'uvu';
const s = suite('leaky'); s('passes but leaks', () => { Promise.reject(new Error('nobody waits for me')); }); s.run();`,
  });
  assert.is(r.status, 1, r.out);
  assert.match(r.out, /unhandled rejection: Error: nobody waits for me/);
});

test('an uncaught exception from a timer fails the run', () => {
  const r = run({
    'a.test.js': `import { suite } from 'uvu';
const s = suite('timer'); s('throws later', async () => { setTimeout(() => { throw new Error('late'); }, 1);
await new Promise((r) => setTimeout(r, 20)); }); s.run();`,
  });
  assert.is(r.status, 1, r.out);
  assert.match(r.out, /uncaught exception: Error: late/);
});

test.run();
