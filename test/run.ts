/**
 * Test runner: uvu's own runner plus three guarantees the CLI lacks. The process exits when the suites are done
 * (a leaked socket cannot hang CI); an unhandled rejection or uncaught exception anywhere fails the run (the library
 * promises never to cause one); and the whole run has a deadline.
 *
 *   node .out/test/run.js [dir] [pattern]      (defaults: .out/test, \.test\.js$; only *.test.js files ever run)
 *   TEST_EXCLUDE=regex                         leaves out the files whose path matches (CI's second, Node 18 pass
 *                                              leaves out the broker-fault tests: the broker's side, not Node's)
 */
import { parse } from 'uvu/parse';
import { run } from 'uvu/run';

const [dir = '.out/test', pattern = '\\.test\\.js$'] = process.argv.slice(2);
const deadlineMs = Number(process.env['TEST_DEADLINE_MS'] ?? 20 * 60_000);

let escaped = 0;
process.on('unhandledRejection', (reason) => {
  escaped++;
  process.stderr.write(
    `\nUNHANDLED REJECTION (fails the run): ${reason instanceof Error ? reason.stack : String(reason)}\n`,
  );
});
process.on('uncaughtException', (err) => {
  escaped++;
  process.stderr.write(`\nUNCAUGHT EXCEPTION (fails the run): ${err.stack ?? String(err)}\n`);
});
setTimeout(() => {
  process.stderr.write(`\nthe test run exceeded its deadline of ${deadlineMs} ms\n`);
  process.exit(1);
}, deadlineMs).unref();

const parsed = await parse(dir, new RegExp(pattern));
const exclude = process.env['TEST_EXCLUDE'] === undefined ? null : new RegExp(process.env['TEST_EXCLUDE']);
const suites = parsed.suites.filter((s) => s.name.endsWith('.test.js') && (exclude === null || !exclude.test(s.name)));
await run(suites, { bail: false });
if (escaped > 0) process.exitCode = 1;
process.exit(process.exitCode ?? 0);
