/**
 * A sharded aggregator as 1, 2 and 3 instances (issue 17, item 4), in one run, on a throw-away RabbitMQ node started
 * here (test/helpers/broker-node.ts; nothing to clean up on the shared broker). Each instance is a process of its own
 * (test/helpers/instance-child.ts), the hubs are simulated (test/helpers/hubs-sim.ts: 5,000 hubs over 4 connections).
 * For each instance count N:
 *
 *  1. Ingest. The instances start, share the 8 shards out (warm-up reports to every shard until each instance
 *     handles some), then hold their handlers; the bench publishes REPORTS reports spread over the hubs, lets the
 *     instances go and times until every one is handled: messages per second, and the instances' CPU (process
 *     cpuUsage, user + system, summed) per message. The report handler spends WORK_US of CPU (default 200 µs: a
 *     decode-and-store an application would do).
 *  2. Activation round trip (D3.2.3: 5,000 activations answered within 5 s). The instances send ACTIVATIONS
 *     activations at once, split evenly, one per hub, with request(); the simulated hubs answer each. The answer
 *     reaches the shard of its hub, whose owner is the asker only 1/N of the time: the others relay it
 *     (docs/bus.md, "Instances"). From the first send to the last answer, and each request's own time.
 *
 *   npx tsc -p tsconfig.json && node .out/bench/instances.js     (writes "Instances" in bench/RESULTS.md; ~4 min)
 *
 * Knobs: INST_BENCH_HUBS (5000), INST_BENCH_REPORTS (30000), INST_BENCH_ACTIVATIONS (5000), INST_BENCH_WORK_US (200),
 * INST_BENCH_COUNTS (1,2,3), INST_BENCH_RESULTS (bench/RESULTS.md; `-` for nowhere).
 */
import { type ChildProcess, execSync, fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { RecoveringConnection } from '../src/amqp/index.js';
import { type BrokerNode, startBrokerNode } from '../test/helpers/broker-node.js';
import { Hubs } from '../test/helpers/hubs-sim.js';
import type { InstanceSpec } from '../test/helpers/instance-child.js';
import { envInt } from './knobs.js';
import { replaceSection, resultsPath } from './results-file.js';
import { fmt, median, percentile } from './stats.js';

const env = (k: string, d: number): number => envInt(k, d, 0);
const HUBS = env('INST_BENCH_HUBS', 5000);
const REPORTS = env('INST_BENCH_REPORTS', 30_000);
const ACTIVATIONS = env('INST_BENCH_ACTIVATIONS', 5000);
const WORK_US = env('INST_BENCH_WORK_US', 200);
const COUNTS = (process.env['INST_BENCH_COUNTS'] ?? '1,2,3').split(',').map(Number);
const SHARDS = 8;
const CHILD = fileURLToPath(new URL('../test/helpers/instance-child.js', import.meta.url));

const log = (s: string): void => console.error(`[instances] ${s}`);

interface Child {
  name: string;
  proc: ChildProcess;
  handled: number;
  answers: number[];
  cpu: { user: number; system: number } | undefined;
  failed: number;
}

function start(spec: InstanceSpec): Promise<Child> {
  const proc = fork(CHILD, [JSON.stringify(spec)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const c: Child = { name: spec.instance, proc, handled: 0, answers: [], cpu: undefined, failed: 0 };
  return new Promise((resolve, reject) => {
    proc.once('exit', (code, signal) => reject(new Error(`${spec.instance} exited (${code ?? signal})`)));
    proc.on(
      'message',
      (m: {
        ready?: true;
        r?: unknown[];
        a?: [string, string, number];
        o?: unknown;
        f?: unknown;
        cpu?: { user: number; system: number };
      }) => {
        if (m.ready === true) resolve(c);
        if (m.r !== undefined) c.handled += m.r.length;
        if (m.a !== undefined) c.answers.push(m.a[2]);
        // An answer relayed to an asker that is gone, or a failure: counted as not answered.
        if (m.o !== undefined || m.f !== undefined) c.failed++;
        if (m.cpu !== undefined) c.cpu = m.cpu;
      },
    );
  });
}

/** CPU seconds (user + system) of a process, from /proc; NaN where there is none. */
function procCpuS(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime + stime in ticks of 1/100 s (CLK_TCK)
  } catch {
    return Number.NaN;
  }
}

async function cpuOf(children: Child[]): Promise<number> {
  for (const c of children) {
    c.cpu = undefined;
    c.proc.send({ cpu: true });
  }
  while (children.some((c) => c.cpu === undefined)) await new Promise((r) => setTimeout(r, 10));
  return children.reduce((us, c) => us + (c.cpu?.user ?? 0) + (c.cpu?.system ?? 0), 0);
}

async function until(cond: () => boolean, what: string, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface Row {
  n: number;
  ingestS: number;
  perS: number;
  cpuUsPerMsg: number;
  brokerUsPerMsg: number;
  shares: number[];
  roundTripMs: number;
  answered: number;
  p50: number;
  p99: number;
  within5s: number;
}

async function round(
  n: number,
  node: BrokerNode,
  brokerPid: number | undefined,
  vpp: string,
  hubNames: string[],
  hubs: Hubs,
): Promise<Row> {
  const endpoints = [`127.0.0.1:${node.amqpPort}`];
  const children: Child[] = [];
  for (let i = 0; i < n; i++) {
    children.push(
      await start({
        name: vpp,
        peers: hubNames,
        shards: SHARDS,
        instance: `vpp-${n}-${i}`,
        endpoints,
        presenceMs: 500,
        prefetch: 100,
        workUs: WORK_US,
      }),
    );
  }
  // Warm-up: reports to every shard until each instance handles some (a shard moves at its next delivery).
  for (let w = 0; w < 20; w++) {
    const before = children.map((c) => c.handled);
    for (let j = 0; j < 10; j++) hubs.tick(50, (w * 10 + j) * 50);
    await new Promise((r) => setTimeout(r, 1_500));
    if (w >= 3 && children.every((c, i) => c.handled > (before[i] as number))) break;
  }
  await until(() => hubs.quiet, 'warm-up confirmed', 30_000);
  const warm = children.reduce((s, c) => s + c.handled, 0);
  await until(() => children.reduce((s, c) => s + c.handled, 0) >= warm, 'warm-up handled', 30_000);

  // 1. Ingest: held, loaded, let go.
  for (const c of children) c.proc.send({ pause: true });
  await new Promise((r) => setTimeout(r, 500));
  const base = children.map((c) => c.handled);
  const sent = REPORTS;
  for (let k = 0; k < sent; k += 500) {
    hubs.tick(500, (k + 7) % HUBS);
    await until(() => hubs.quiet, 'reports confirmed', 60_000);
  }
  const cpu0 = await cpuOf(children);
  const broker0 = procCpuS(brokerPid);
  const t0 = performance.now();
  for (const c of children) c.proc.send({ resume: true });
  const handled = (): number => children.reduce((s, c, i) => s + c.handled - (base[i] as number), 0);
  await until(() => handled() >= sent, 'every report handled', 600_000);
  const ingestS = (performance.now() - t0) / 1000;
  const broker1 = procCpuS(brokerPid);
  const cpu1 = await cpuOf(children);
  const shares = children.map((c, i) => (c.handled - (base[i] as number)) / handled());
  log(`${n} instance(s): ${sent} reports in ${fmt(ingestS, 2)} s`);

  // 2. Activations: all at once, split evenly, one per hub.
  const asked = Math.min(ACTIVATIONS, HUBS);
  for (const c of children) c.answers = [];
  const t1 = performance.now();
  for (let i = 0; i < asked; i++) {
    (children[i % n] as Child).proc.send({ activate: [hubNames[i] as string, randomUUID()] });
  }
  const answered = (): number => children.reduce((s, c) => s + c.answers.length + c.failed, 0);
  await until(() => answered() >= asked, 'every activation answered', 120_000);
  const roundTripMs = performance.now() - t1;
  const times = children.flatMap((c) => c.answers).sort((a, b) => a - b);
  log(`${n} instance(s): ${asked} activations answered in ${fmt(roundTripMs, 0)} ms`);

  for (const c of children) c.proc.send({ stop: true });
  await Promise.all(children.map((c) => new Promise((r) => c.proc.once('exit', r))));
  return {
    n,
    ingestS,
    perS: sent / ingestS,
    cpuUsPerMsg: (cpu1 - cpu0) / sent,
    brokerUsPerMsg: ((broker1 - broker0) * 1e6) / sent,
    shares,
    roundTripMs,
    answered: times.length,
    p50: median(times),
    p99: percentile(times, 99),
    within5s: times.filter((t) => t <= 5000).length,
  };
}

async function main(): Promise<void> {
  const load0 = loadavg()[0] ?? 0;
  log('starting a throw-away RabbitMQ node');
  const node = await startBrokerNode({ name: 'instbench' });
  const conns: RecoveringConnection[] = [];
  const rows: Row[] = [];
  let version = '';
  try {
    version = (await node.ctl(['version'])).trim();
    const vpp = `vpp-instbench-${process.pid}`;
    const hubNames = Array.from({ length: HUBS }, (_, i) => `heh-ib-${String(i).padStart(5, '0')}`);
    // The first instance declares the topology for every hub; the simulated hubs need it.
    const endpoints = [`127.0.0.1:${node.amqpPort}`];
    const t0 = performance.now();
    const first = await start({ name: vpp, peers: hubNames, shards: SHARDS, instance: 'setup', endpoints });
    log(`topology for ${HUBS} hubs declared in ${fmt((performance.now() - t0) / 1000, 1)} s`);
    first.proc.send({ stop: true });
    await new Promise((r) => first.proc.once('exit', r));
    for (let g = 0; g < 4; g++) {
      conns.push(
        new RecoveringConnection({ endpoints, username: 'guest', password: 'guest', connectionName: `hubs-${g}` }),
      );
    }
    const hubs = new Hubs(vpp, hubNames);
    await hubs.start(conns);
    const pid = Number(/\d+/.exec(await node.ctl(['eval', 'os:getpid().']))?.[0]);
    const brokerPid = Number.isInteger(pid) && pid > 0 ? pid : undefined;
    for (const n of COUNTS) rows.push(await round(n, node, brokerPid, vpp, hubNames, hubs));
  } finally {
    await Promise.allSettled(conns.map((c) => c.close()));
    await node.stop();
  }
  const load1 = loadavg()[0] ?? 0;
  const one = rows[0];
  const lines = [
    '## Instances (bench/instances.ts)',
    '',
    `\`bench/instances.ts\` (issue 17, item 4), commit ${commit()}, ${new Date().toISOString().slice(0, 16)}Z, ` +
      `${cpus().length} cores, load ${fmt(load0, 1)} before and ${fmt(load1, 1)} after, ${version || 'RabbitMQ'} ` +
      `(a throw-away node on the same cores). One aggregator with ${SHARDS} shards and ${fmt(HUBS)} simulated hubs ` +
      `(test/helpers/hubs-sim.ts); each instance is a process; the report handler spends ${WORK_US} µs of CPU. ` +
      `Ingest: ${fmt(REPORTS)} reports loaded while the instances hold their handlers, then let go. Activations: ` +
      `${fmt(Math.min(ACTIVATIONS, HUBS))} at once, one per hub, split evenly over the instances. Command: ` +
      '`npx tsc -p tsconfig.json && node .out/bench/instances.js`.',
    '',
    "| instances | ingest | reports/s | vs 1 | instances' CPU per report | broker's | shares | activations answered in | p50 | p99 | within 5 s |",
    '| --: | --: | --: | --: | --: | --: | :-- | --: | --: | --: | --: |',
    ...rows.map(
      (r) =>
        `| ${r.n} | ${fmt(r.ingestS, 2)} s | ${fmt(r.perS, 0)} | ${one === undefined ? '' : fmt(r.perS / one.perS, 2)}x | ` +
        `${fmt(r.cpuUsPerMsg, 0)} µs | ${fmt(r.brokerUsPerMsg, 0)} µs | ${r.shares.map((s) => `${fmt(100 * s, 0)}%`).join(' / ')} | ` +
        `${fmt(r.roundTripMs, 0)} ms | ${fmt(r.p50, 0)} ms | ${fmt(r.p99, 0)} ms | ${fmt(r.within5s)} of ${fmt(r.answered)} |`,
    ),
    '',
    'The instances, the throw-away broker node and this process share the 2 cores: each instance costs about the ' +
      "handler's CPU plus the bus's own per report, so past 2 instances they compete for the same cores as the " +
      'broker, and the figure for 3 says more about this machine than about the design. Each shard is handled by ' +
      'one instance at a time, so the design scales with instances up to the number of shards (8 here), on machines ' +
      "of their own, until the broker's cores are the limit (a quorum queue's leader is on one node: spread the " +
      'shard leaders over the cluster). The activation round trip grows with instances because the answer to an ' +
      'activation reaches the shard of its hub, whose owner is the asker only 1 time in N; the others relay it ' +
      '(one more publish and delivery each).',
    '',
  ];
  console.log(lines.join('\n'));
  replaceSection('## Instances (bench/instances.ts)', lines.join('\n'), resultsPath('INST_BENCH_RESULTS'));
}

function commit(): string {
  try {
    return execSync('git rev-parse --short HEAD', { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

await main();
