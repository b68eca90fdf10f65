/**
 * Fairness (issue 15, item 5), against the RabbitMQ on 127.0.0.1:5672 (guest/guest): while one peer floods a hub
 * with get_report requests, another peer's get_report round trips are timed, in one run, for four hubs: D3.2.3's
 * shared inbox or one inbox per peer (`inboxes: 'per-peer'`, hub.json's default), each with the per-sender budget off
 * and with the Connector's default budget (100 messages a second, bursts of 1,000).
 *
 * Three processes per round, so that each has its own event loop as in production: the hub (a Connector over
 * amqpBus, its get_report handler building a 96-value report after FAIR_BENCH_HANDLER_US of CPU, standing for the
 * read of its history), the flooding peer (a Connector that publishes FAIR_BENCH_FLOOD get_reports, up to
 * FAIR_BENCH_WINDOW unconfirmed at once, and counts the answers: reports, 503s) and this process, the quiet peer,
 * which sends one get_report every FAIR_BENCH_GAP_MS (the next after the answer) from the flood's first publish until
 * the hub has answered the whole flood. Each round has its own entity names, so its own inbox. Every queue and
 * exchange is deleted at the end.
 *
 *   npx tsc -p tsconfig.json && node .out/bench/fairness.js      (writes the "Fairness" section of bench/RESULTS.md)
 *
 * Knobs: FAIR_BENCH_FLOOD (50000), FAIR_BENCH_WINDOW (1000), FAIR_BENCH_HANDLER_US (500), FAIR_BENCH_GAP_MS (10),
 * FAIR_BENCH_PREFETCH (10), FAIR_BENCH_MODES (off,on,per-peer-off,per-peer), FAIR_BENCH_RESULTS (bench/RESULTS.md;
 * `-` for nowhere), FAIR_BENCH_PORT (5672).
 */
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { connect } from '../src/amqp/index.js';
import { amqpBus, BusError, type Connector } from '../src/bus/index.js';
import { identify } from '../src/bus/protocol.js';
import { decode, EbTime, encode, type Message } from '../src/codec/index.js';
import { envInt } from './knobs.js';
import { replaceSection, resultsPath } from './results-file.js';
import { fmt, percentile } from './stats.js';

const env = (k: string, d: number): number => envInt(k, d, 0);
const PORT = env('FAIR_BENCH_PORT', 5672);
const URL_ = `amqp://guest:guest@127.0.0.1:${PORT}`;
const FLOOD = env('FAIR_BENCH_FLOOD', 50_000);
const WINDOW = Math.max(1, env('FAIR_BENCH_WINDOW', 1000));
const HANDLER_US = env('FAIR_BENCH_HANDLER_US', 500);
const GAP_MS = env('FAIR_BENCH_GAP_MS', 10);
/** The hub's deliveries in flight per inbox: 10, hub.json's default (broker.prefetch), as the data model suggests. */
const PREFETCH = Math.max(1, env('FAIR_BENCH_PREFETCH', 10));
/** The hub of each round: its inboxes (D3.2.3's one shared inbox, or one per peer) and its budget (off or default). */
const ROUNDS = {
  off: { label: 'shared inbox, no budget', inboxes: 'shared', budget: false },
  on: { label: 'shared inbox, default budget', inboxes: 'shared', budget: true },
  'per-peer-off': { label: 'per-peer inboxes, no budget', inboxes: 'per-peer', budget: false },
  'per-peer': { label: 'per-peer inboxes, default budget', inboxes: 'per-peer', budget: true },
} as const;
type Mode = keyof typeof ROUNDS;
const MODES = (process.env['FAIR_BENCH_MODES'] ?? 'off,on,per-peer-off,per-peer').split(',') as Mode[];
for (const m of MODES)
  if (!(m in ROUNDS)) throw new Error(`FAIR_BENCH_MODES: ${m} is not one of ${Object.keys(ROUNDS)}`);
const T0 = EbTime.parse('2026-11-26T00:00:00Z');

const getReport = (): Message<'get_report'> => ({
  msg: 'get_report',
  from: T0,
  to: T0.plusSeconds(86_400),
  resolution: 900,
  signals: ['total.p'],
});

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

type ToParent =
  | { kind: 'ready' }
  | { kind: 'flood-sent'; ms: number }
  | { kind: 'flood-done'; ms: number; reports: number; busy: number; other: number }
  | { kind: 'hub-stats'; handled: number; overBudget: number };

// ---- children ----

async function hubChild(name: string, peers: string[], mode: Mode): Promise<void> {
  const { inboxes, budget } = ROUNDS[mode];
  const hub = amqpBus({ name, peers, url: URL_, inboxes, prefetch: PREFETCH, ...(budget ? {} : { budget: false }) });
  let handled = 0;
  let overBudget = 0;
  const values = Array.from({ length: 96 }, (_, i) => Math.round(1000 * Math.sin(i)) / 1000);
  hub.onGetReport(async (q, ctx) => {
    handled++;
    const until = performance.now() + HANDLER_US / 1000;
    while (performance.now() < until) {
      // the CPU a real hub spends reading its history
    }
    await ctx.reply({ msg: 'report', from: q.from, to: q.to, resolution: q.resolution, values: { 'total.p': values } });
  });
  hub.on('over-budget', () => overBudget++);
  await hub.start();
  process.on('message', async (m: { kind: string }) => {
    if (m.kind !== 'stop') return;
    send({ kind: 'hub-stats', handled, overBudget });
    await hub.close(1000);
    process.exit(0);
  });
  send({ kind: 'ready' });
}

async function floodChild(name: string, hub: string): Promise<void> {
  const bus = amqpBus({ name, peers: [hub], url: URL_, budget: false });
  let reports = 0;
  let busy = 0;
  let other = 0;
  let t0 = 0;
  const answered = (): void => {
    if (reports + busy + other === FLOOD)
      send({ kind: 'flood-done', ms: performance.now() - t0, reports, busy, other });
  };
  bus.onReport(() => {
    reports++;
    answered();
  });
  bus.onResponse((r) => {
    if (r.response_code === 503) busy++;
    else other++;
    answered();
  });
  await bus.start();
  process.on('message', async (m: { kind: string }) => {
    if (m.kind === 'stop') {
      await bus.close(1000);
      process.exit(0);
    }
    if (m.kind !== 'go') return;
    t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: WINDOW }, async () => {
        while (next < FLOOD) {
          next++;
          // A fresh request_id each: the flood is FLOOD distinct requests, none a duplicate.
          await bus.publish(hub, { ...getReport(), request_id: randomUuid() });
        }
      }),
    );
    send({ kind: 'flood-sent', ms: performance.now() - t0 });
  });
  send({ kind: 'ready' });
}

const randomUuid = (): string => {
  const h = randomBytes(16).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
};

function send(m: ToParent): void {
  process.send?.(m);
}

// ---- parent ----

interface Round {
  mode: Mode;
  rtts: number[];
  refused: number;
  timeouts: number;
  floodSentMs: number;
  floodDoneMs: number;
  reports: number;
  busy: number;
  other: number;
  handled: number;
  overBudget: number;
}

function child(role: string, args: string[]): { proc: ChildProcess; next(kind: string): Promise<ToParent> } {
  const proc = fork(fileURLToPath(import.meta.url), [role, ...args], { stdio: 'inherit' });
  const waiting: { kind: string; resolve(m: ToParent): void }[] = [];
  const got: ToParent[] = [];
  proc.on('message', (m: ToParent) => {
    const i = waiting.findIndex((w) => w.kind === m.kind);
    if (i >= 0) waiting.splice(i, 1)[0]?.resolve(m);
    else got.push(m);
  });
  return {
    proc,
    next: (kind) =>
      new Promise((resolve, reject) => {
        const i = got.findIndex((m) => m.kind === kind);
        if (i >= 0) return resolve(got.splice(i, 1)[0] as ToParent);
        waiting.push({ kind, resolve });
        proc.once('exit', (code) => reject(new Error(`the ${role} child exited (${code}) before ${kind}`)));
      }),
  };
}

async function round(mode: Mode, suffix: string): Promise<Round> {
  const hubName = `heh-fair-${mode}-${suffix}`;
  const floodName = `vpp-flood-${mode}-${suffix}`;
  const quietName = `vpp-quiet-${mode}-${suffix}`;
  names.push(hubName, floodName, quietName);
  const hub = child('hub', [hubName, floodName, quietName, mode]);
  await hub.next('ready');
  const flood = child('flood', [floodName, hubName]);
  await flood.next('ready');
  const quiet: Connector = amqpBus({ name: quietName, peers: [hubName], url: URL_, requestTimeoutMs: 120_000 });
  await quiet.start();
  for (let i = 0; i < 20; i++) await quiet.request(hubName, getReport()); // warm-up
  const r: Round = {
    mode,
    rtts: [],
    refused: 0,
    timeouts: 0,
    floodSentMs: 0,
    floodDoneMs: 0,
    reports: 0,
    busy: 0,
    other: 0,
    handled: 0,
    overBudget: 0,
  };
  let done = false;
  const sent = flood.next('flood-sent').then((m) => {
    if (m.kind === 'flood-sent') r.floodSentMs = m.ms;
  });
  const finished = flood.next('flood-done').then((m) => {
    if (m.kind === 'flood-done')
      Object.assign(r, { floodDoneMs: m.ms, reports: m.reports, busy: m.busy, other: m.other });
    done = true;
  });
  flood.proc.send({ kind: 'go' });
  while (!done) {
    const t = performance.now();
    try {
      await quiet.request(hubName, getReport());
      r.rtts.push(performance.now() - t);
    } catch (err) {
      if (err instanceof BusError && err.code === 'REJECTED') r.refused++;
      else if (err instanceof BusError && err.code === 'TIMEOUT') r.timeouts++;
      else throw err;
    }
    await sleep(GAP_MS);
  }
  await Promise.all([sent, finished]);
  const stats = hub.next('hub-stats');
  hub.proc.send({ kind: 'stop' });
  const s = await stats;
  if (s.kind === 'hub-stats') Object.assign(r, { handled: s.handled, overBudget: s.overBudget });
  flood.proc.send({ kind: 'stop' });
  await quiet.close(1000);
  return r;
}

const names: string[] = [];

async function cleanup(): Promise<void> {
  const conn = await connect(URL_, { connectionName: 'fairness-bench-cleanup' });
  let ch = await conn.createChannel();
  for (const x of names) {
    for (const [kind, name] of [
      ['queue', `private-${x}-in`],
      ...names.filter((y) => y !== x).map((y) => ['queue', `private-${x}-in:${y}`] as const),
      ['queue', `private-${x}-dead`],
      ['exchange', `private-${x}-dlx`],
      ...names.filter((y) => y !== x).map((y) => ['exchange', `${x}-to-${y}`] as const),
    ] as const) {
      try {
        if (kind === 'queue') await ch.queueDelete(name);
        else await ch.exchangeDelete(name);
      } catch {
        ch = await conn.createChannel();
      }
    }
  }
  await conn.close();
}

/**
 * What refusing costs the hub before the answer: decoding one flood message (the codec, as receive.ts does
 * before the budget) and identify()'s byte scan (what a refusal before the codec would read instead); µs each.
 */
function parseCost(): { decodeUs: number; identifyUs: number; bytes: number } {
  const body = encode({ ...getReport(), request_id: randomUuid() });
  const time = (fn: () => void): number => {
    for (let i = 0; i < 2000; i++) fn();
    const n = 50_000;
    const t = performance.now();
    for (let i = 0; i < n; i++) fn();
    return ((performance.now() - t) * 1000) / n;
  };
  return { decodeUs: time(() => decode(body)), identifyUs: time(() => identify(body)), bytes: body.length };
}

function row(r: Round): string {
  const s = [...r.rtts].sort((a, b) => a - b);
  return (
    `| ${ROUNDS[r.mode].label} | ${fmt(r.floodSentMs / 1000, 1)} s ` +
    `(${fmt(FLOOD / (r.floodSentMs / 1000), 0)}/s) | ${fmt(r.floodDoneMs / 1000, 1)} s ` +
    `(${fmt(FLOOD / (r.floodDoneMs / 1000), 0)}/s) | ${fmt(r.handled, 0)} | ${fmt(r.busy, 0)} | ${fmt(s.length, 0)} | ` +
    `${fmt(percentile(s, 50), 0)} | ${fmt(percentile(s, 99), 0)} | ${fmt(s[s.length - 1] ?? Number.NaN, 0)} | ` +
    `${r.refused + r.timeouts} |`
  );
}

async function main(): Promise<void> {
  const [role, ...args] = process.argv.slice(2);
  if (role === 'hub') return hubChild(args[0] as string, [args[1] as string, args[2] as string], args[3] as Mode);
  if (role === 'flood') return floodChild(args[0] as string, args[1] as string);
  const suffix = randomBytes(4).toString('hex');
  const load0 = loadavg()[0] as number;
  const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  const cost = parseCost();
  const rounds: Round[] = [];
  try {
    for (const mode of MODES) {
      console.log(`round: ${ROUNDS[mode].label}`);
      const r = await round(mode, suffix);
      console.log(row(r));
      rounds.push(r);
    }
  } finally {
    await cleanup();
  }
  const load1 = loadavg()[0] as number;
  const text = [
    '## Fairness (bench/fairness.ts)',
    '',
    `\`bench/fairness.ts\` (issue 15, item 5), commit ${commit}, ${new Date().toISOString().slice(0, 16)}Z, ` +
      `${cpus().length} cores, load ${load0.toFixed(1)} before and ${load1.toFixed(1)} after. One peer publishes ` +
      `${fmt(FLOOD)} get_reports to a hub (up to ${fmt(WINDOW)} unconfirmed at once), while another sends one ` +
      `get_report every ${GAP_MS} ms after the previous answer until the hub has answered the whole flood. The hub, ` +
      `the flooder and the quiet peer are three processes on one RabbitMQ (quorum inboxes, prefetch ${PREFETCH} each); ` +
      "the hub's " +
      `handler spends ${HANDLER_US} µs of CPU and answers a 96-value report. Round trips of the quiet peer in ms.`,
    '',
    '| hub | flood published in | flood answered in | handled | 503 | quiet round trips | p50 | p99 | max | refused or timed out |',
    '| :-- | --: | --: | --: | --: | --: | --: | --: | --: | --: |',
    ...rounds.map(row),
    '',
    `"handled" counts the hub's get_report handler runs (the quiet peer's and its 20 warm-up requests included). ` +
      'p99 is a nearest-rank percentile of the quiet round trips, so with fewer than 100 of them it is the largest. ' +
      `Decoding one flood message (${cost.bytes} B) takes ${fmt(cost.decodeUs)} µs, identify()'s ` +
      `byte scan ${fmt(cost.identifyUs)} µs (wall clock, this process, before the rounds).`,
  ].join('\n');
  console.log(text);
  replaceSection('## Fairness (bench/fairness.ts)', `${text}\n`, resultsPath('FAIR_BENCH_RESULTS'));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
