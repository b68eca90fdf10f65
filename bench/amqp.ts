/**
 * The AMQP client benchmark: ours against amqplib and @cloudamqp/amqp-client, in one run, on 127.0.0.1.
 *
 *   npx tsc -p tsconfig.json && node .out/bench/amqp.js                 (full: BENCH_REPS=3)
 *   npx tsc -p tsconfig.json && BENCH_QUICK=1 node .out/bench/amqp.js   (smoke check, small N)
 *
 * Order: every contender is validated first (preflight.ts); then for each repetition, each scenario, each contender
 * (A B C A B C ...) one job runs in a fresh child process (worker.ts) on a fresh queue, and is validated against the
 * broker before its numbers count (runner.ts). Then code size (size.ts), then the table (report.ts), printed and
 * written to bench/RESULTS.md: its title block and the "Per repetition" section, leaving the sections that other
 * benchmarks write as they are. Environment knobs: see config.ts and bench/README.md.
 */
import { execFileSync } from 'node:child_process';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '../src/amqp/index.js';
import { loadConfig } from './config.js';
import { type Contender, describeError, loadContender, loadContenders } from './peers/index.js';
import { ours } from './peers/ours.js';
import { preflight } from './preflight.js';
import {
  buildRows,
  markdownTable,
  PER_REPETITION,
  perRepMarkdown,
  RESULTS_TITLE,
  resultsMarkdown,
  textTable,
} from './report.js';
import { replaceSection } from './results-file.js';
import { canFork, execute, Harness, type Outcome } from './runner.js';
import { measureSizes, type SizeRow } from './size.js';
import { fmt, MB } from './stats.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

const log = (s: string): void => {
  process.stderr.write(`${s}\n`);
};

async function brokerVersion(port: number): Promise<string> {
  const conn = await connect({ hostname: '127.0.0.1', port, connectionName: 'bench-probe' });
  try {
    const p = conn.serverProperties;
    return `${String(p['product'] ?? '?')} ${String(p['version'] ?? '?')} (${String(p['platform'] ?? '?')})`;
  } finally {
    await conn.close();
  }
}

/** Which client was measured: the commit, and whether src/ had uncommitted changes (others edit it meanwhile). */
function sourceState(): string {
  try {
    const git = (...args: string[]): string =>
      execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = git('status', '--porcelain', '--', 'src')
      .split('\n')
      .filter((l) => l !== '');
    return `commit ${git('rev-parse', '--short', 'HEAD')}${dirty.length > 0 ? ` plus uncommitted changes in ${dirty.length} file(s) under src/` : ', src/ clean'}`;
  } catch {
    return 'unknown (no git)';
  }
}

function command(): string {
  const env = Object.keys(process.env)
    .filter((k) => k.startsWith('BENCH_'))
    .sort()
    .map((k) => `${k}=${JSON.stringify(process.env[k])}`);
  const script = relative(ROOT, process.argv[1] ?? '.out/bench/amqp.js');
  return `npx tsc -p tsconfig.json && ${[...env, 'node', script].join(' ')}`;
}

function summary(o: Outcome): string {
  const r = o.result;
  if (!o.valid || r === null) return `INVALID: ${o.problems.slice(0, 3).join('; ')}`;
  const rss = `${fmt((r.maxRss > 0 ? r.maxRss : r.rssPeakSampled) / MB)} MiB`;
  if (r.latencyUs !== undefined)
    return `p50 ${fmt(r.latencyUs.p50)} µs  p99 ${fmt(r.latencyUs.p99)} µs  ${fmt(r.cpuUs / r.n)} µs CPU  ${rss}`;
  if (r.wire !== undefined) return `${fmt(r.wire.outPerMsg)} B/publish out  ${fmt(r.wire.inPerMsg)} B in`;
  return `${fmt(r.n / (r.ms / 1000))} msg/s  ${fmt(r.cpuUs / r.n)} µs CPU/msg  ${rss}`;
}

async function main(): Promise<void> {
  const cfg = loadConfig();
  const started = new Date();
  const source = sourceState();
  const load0 = loadavg();
  const loaded = await loadContenders(cfg.contenders);
  for (const s of loaded.skipped) log(`skipping ${s.name}: ${s.reason}`);
  if (loaded.contenders.length === 0) throw new Error('no contender could be loaded');

  const rabbitmq = await brokerVersion(cfg.port);
  // An independent client checks the results when one is installed (even if it is not benchmarked); else ours.
  const harnessClient = await loadContender('amqplib').catch(() => ours);
  const harness = await Harness.open(harnessClient, cfg.port);

  let isolate = cfg.isolate;
  if (isolate && !(await canFork())) {
    log('child processes do not start here (under arm-node set ARM_BINFMT=1); running everything in this process');
    isolate = false;
  }

  const preflightProblems: string[] = [];
  const contenders: Contender[] = [];
  for (const c of loaded.contenders) {
    const problems = await preflight(c, harness, cfg.port);
    if (problems.length === 0) contenders.push(c);
    else preflightProblems.push(`${c.name} failed pre-flight validation and was not timed: ${problems.join('; ')}`);
    log(`preflight ${c.label}: ${problems.length === 0 ? 'ok' : problems.join('; ')}`);
  }
  const names = contenders.map((c) => c.name);

  const outcomes: Outcome[] = [];
  const timeoutMs = cfg.quick ? 60_000 : 300_000;
  for (let rep = 1; rep <= cfg.reps; rep++) {
    for (const s of cfg.scenarios) {
      if (s.once && rep > 1) continue;
      for (const c of contenders) {
        const o = await execute(s, c.name, rep, harness, { isolate, port: cfg.port, timeoutMs });
        outcomes.push(o);
        log(`[${rep}/${cfg.reps}] ${s.id.padEnd(24)} ${c.name.padEnd(11)}  ${summary(o)}`);
      }
    }
  }

  let sizes: SizeRow[] = [];
  if (cfg.size) {
    try {
      sizes = await measureSizes(ROOT, names, harness);
      for (const z of sizes)
        log(
          `size ${z.contender} ${z.what}: ${fmt(z.minBytes / 1024)} KiB min, ${fmt(z.gzipBytes / 1024)} KiB gz, ${z.status}`,
        );
    } catch (err) {
      log(`size: skipped (${describeError(err)})`);
    }
  }
  await harness.close();
  const sourceEnd = sourceState();

  const rows = buildRows(cfg.scenarios, outcomes, sizes, names);
  console.log(`\n${textTable(rows, names)}\n`);
  if (cfg.quick) console.log('BENCH_QUICK=1: small N, a smoke check; do not quote these numbers.');

  const path = cfg.resultsPath;
  if (path !== null) {
    const cpu = cpus();
    const md = resultsMarkdown(
      {
        scenarios: cfg.scenarios,
        command: command(),
        date: started.toISOString(),
        node: `${process.version} (${process.platform}/${process.arch}, ${process.execPath})`,
        rabbitmq,
        source:
          source === sourceEnd
            ? source
            : `${source} at the start, ${sourceEnd} at the end: src/ changed during the run, so the runs (children import .out/src, which a build by someone else replaces) and the size step (it bundles src/ at the end) may measure different versions`,
        machine: [
          `CPU: ${cpu[0]?.model ?? '?'} x ${cpu.length}; RAM ${fmt(totalmem() / 2 ** 30, 1)} GiB; kernel ${release()}`,
          `load average before ${load0.map((x) => x.toFixed(2)).join(' ')}, after ${loadavg()
            .map((x) => x.toFixed(2))
            .join(' ')}`,
          ...(cfg.notes !== '' ? [cfg.notes] : []),
        ],
        mode: [
          `Mode: ${cfg.quick ? 'QUICK (smoke check, small N: not for quoting)' : 'full'}; ${cfg.reps} repetition(s), interleaved per scenario (${names.join(' ')} ...)`,
          `Isolation: ${isolate ? "each run in its own child process (peak RSS = that process's getrusage maxrss)" : 'all runs in one process (peak RSS = 10 ms samples, mixed with earlier runs)'}`,
          `Warm-up: ${cfg.warmup ? 'an untimed pass of about N/10 (latency: N/20) messages before each timed run' : 'none'}`,
          `Results validated by: ${harnessClient.label} (harness) plus each run's own checks`,
        ],
        contenders,
        skipped: loaded.skipped.map((s) => `${s.name}: ${s.reason}`),
        preflight: preflightProblems,
        sizes,
      },
      markdownTable(rows, names),
      perRepMarkdown(cfg.scenarios, outcomes, names),
    );
    replaceSection(RESULTS_TITLE, md.title, path);
    replaceSection(PER_REPETITION, md.perRepetition, path);
    log(`wrote ${relative(process.cwd(), path)}`);
  }
  if (outcomes.some((o) => !o.valid) || preflightProblems.length > 0) process.exitCode = 2;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
