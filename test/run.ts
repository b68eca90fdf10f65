/**
 * The test runner: uvu's suites, run by a loop stricter than uvu's own CLI and `uvu/run`, which exit 0 in cases that
 * must fail a CI run:
 *  - a test file that throws while it is imported (uvu/run rejects, and the run stops having run nothing);
 *  - a suite whose `before` hook throws (uvu's runner returns from a `finally`, so the error vanishes and the suite
 *    counts as passed with 0 of N tests run): here every suite must run all its tests. An `after` hook that throws
 *    once every test passed is lost the same way and cannot be seen from here: hooks that clean up must not throw;
 *  - a test file that registers no test (a suite without `.run()`), and a run in which no test ran at all;
 *  - an unhandled rejection or uncaught exception anywhere, at any time (the library promises never to cause one).
 * It also exits when the suites are done (a leaked socket cannot hang CI), has a deadline for the whole run, and
 * prints the Node version seen inside the test process with the totals, so a CI log shows what really ran.
 *
 *   node .out/test/run.js [dir] [pattern]      (defaults: .out/test and \.test\.js$; only *.test.js files run)
 *   TEST_EXCLUDE=regex                         leaves out the files whose path matches
 *   TEST_DEADLINE_MS=ms                        the whole run's deadline (default 20 minutes)
 *
 * A compiled test under .out/test whose TypeScript source is gone (renamed or deleted) is stale and is not run.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse } from 'uvu/parse';

const [dir = '.out/test', pattern = '\\.test\\.js$'] = process.argv.slice(2);
const deadlineMs = Number(process.env['TEST_DEADLINE_MS'] ?? 20 * 60_000);
const exclude = process.env['TEST_EXCLUDE'] ? new RegExp(process.env['TEST_EXCLUDE']) : null;

/** What uvu's `suite().run()` queues: a runner resolving to [errors or true, passed, skipped, total]. */
type Runner = () => Promise<[string | true, number, number, number]>;
declare global {
  var UVU_QUEUE: [string | null, ...Runner[]][];
  var UVU_DEFER: number;
  var UVU_INDEX: number;
}

const problems: string[] = [];
const fail = (what: string): void => {
  problems.push(what);
  process.stderr.write(`\nFAIL: ${what}\n`);
};
process.on('unhandledRejection', (reason) => {
  fail(`unhandled rejection: ${reason instanceof Error ? (reason.stack ?? reason.message) : String(reason)}`);
});
process.on('uncaughtException', (err) => {
  fail(`uncaught exception: ${err.stack ?? String(err)}`);
});
// Node ends a run whose top-level await can never settle with 13 and a bare warning: a test awaits what nothing left
// can bring about (a ManualClock that is not advanced, a handler never released). Said, or the log just stops.
process.on('exit', (code) => {
  if (code === 13 || process.exitCode === 13)
    process.stderr.write(
      '\nFAIL: a test in the file above awaits something nothing left can bring about (no timer, no socket): ' +
        'the run stopped there (exit 13)\n',
    );
});
setTimeout(() => {
  process.stderr.write(`\nthe test run exceeded its deadline of ${deadlineMs} ms\n`);
  process.exit(1);
}, deadlineMs).unref();

const started = Date.now();
const root = process.cwd();
const compiled = path.join(root, '.out', 'test') + path.sep;
const { suites } = await parse(dir, new RegExp(pattern));
const files = suites.filter((s) => {
  // Only compiled test files ever run, whatever the pattern also matches (.d.ts, .map, helpers).
  if (!s.name.endsWith('.test.js') || exclude?.test(s.name)) return false;
  if (s.file.startsWith(compiled)) {
    const source = path.join(root, 'test', path.relative(compiled, s.file)).replace(/\.js$/, '.ts');
    if (!existsSync(source)) {
      process.stdout.write(`skipping ${s.name}: stale, its source ${path.relative(root, source)} is gone\n`);
      return false;
    }
  }
  return true;
});

// uvu queues the runners of each file's suites in UVU_QUEUE[UVU_INDEX] as the file is imported (UVU_DEFER stops it
// from running them itself); this loop then runs them, file by file.
globalThis.UVU_DEFER = 1;
globalThis.UVU_QUEUE = [];
await import('uvu');
let total = 0;
let passed = 0;
let skipped = 0;
for (const [index, file] of files.entries()) {
  globalThis.UVU_INDEX = index;
  globalThis.UVU_QUEUE.push([file.name]);
  try {
    await import(pathToFileURL(file.file).href);
  } catch (err) {
    fail(
      `${file.name} threw while it was imported: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
    );
  }
}
for (const group of globalThis.UVU_QUEUE) {
  const [name, ...runners] = group;
  process.stdout.write(`\n${name}\n`);
  if (runners.length === 0) fail(`${name} registered no test (a suite without .run()?)`);
  for (const runner of runners) {
    const [errors, ran, skips, max] = await runner();
    total += max;
    passed += ran;
    skipped += skips;
    if (errors !== true) process.stdout.write(`\n${errors}\n`);
    if (ran < max) {
      fail(
        errors === true
          ? `${name}: only ${ran} of ${max} tests ran: its before hook threw (uvu does not report hook errors)`
          : `${name}: ${max - ran} of ${max} tests failed`,
      );
    }
  }
}
if (total === 0) fail('no test ran');
// A rejection left behind by the last test is reported on a later turn of the event loop: give it one.
await new Promise((resolve) => setTimeout(resolve, 50));

const seconds = ((Date.now() - started) / 1000).toFixed(1);
process.stdout.write(
  `\n  Total:     ${total}\n  Passed:    ${passed}\n  Skipped:   ${skipped}\n  Duration:  ${seconds} s\n`,
);
process.stdout.write(
  `test run: node ${process.version} (${process.platform} ${process.arch}), ${files.length} files: ` +
    `${passed} of ${total} tests passed, ${skipped} skipped, ${problems.length} problem(s)\n`,
);
if (problems.length > 0) {
  process.stderr.write(`\nthe run FAILED:\n${problems.map((p) => `- ${p.split('\n')[0]}`).join('\n')}\n`);
}
process.exit(problems.length > 0 ? 1 : 0);
