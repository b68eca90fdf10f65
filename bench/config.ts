/**
 * What the bench runs: the scenarios of the issue with their sizes, and the environment knobs.
 *
 *   BENCH_REPS=3         repetitions per scenario and contender (interleaved: A B C A B C ...); QUICK default 1
 *   BENCH_QUICK=1        small N everywhere: a smoke check that finishes in well under 30 s
 *   BENCH_PEERS=...      comma list of contenders (ours,amqplib,amqp-client); default all three
 *   BENCH_ONLY=...       comma list of scenario ids (and/or "size"); default all
 *   BENCH_N_<ID>=n       override N of one scenario, e.g. BENCH_N_PUBLISH_CONFIRM=50000
 *   BENCH_LATENCY_BUDGET_MS=30000  time budget of one timed latency run (QUICK: 2000); it reports how many it measured
 *   BENCH_ISOLATE=0      run every scenario in this process (RSS then mixes contenders); default 1: one child each
 *   BENCH_WARMUP=0       skip the untimed warm-up pass inside each run
 *   BENCH_RESULTS=path   where to write the Markdown report (default bench/RESULTS.md; "-" writes none)
 *   BENCH_NOTES=text     free text added to the machine notes of the report
 *   BENCH_PORT=5672      the broker's port on 127.0.0.1 (the only host the bench ever talks to)
 */
import { envInt } from './knobs.js';
import { CONTENDER_NAMES, type ContenderName } from './peers/types.js';
import { resultsPath } from './results-file.js';

export type ScenarioKind = 'publish' | 'consume' | 'latency' | 'wire';

export interface Scenario {
  id: string;
  title: string;
  kind: ScenarioKind;
  n: number;
  /** Body size in bytes. */
  size: number;
  /** Publish on a confirm channel and await every confirm. */
  confirm: boolean;
  /** deliveryMode 2. */
  persistent: boolean;
  prefetch: number;
  /** Latency: publisher and consumer on one connection. */
  shared: boolean;
  /** Force TCP_NODELAY on for the peers. */
  noDelay: boolean;
  /** Untimed messages first (warm-up), as a count. */
  warmup: number;
  /** Deterministic: run in the first repetition only. */
  once: boolean;
  /** Latency: stop the timed part after this long even if fewer than n round trips were measured. */
  budgetMs: number;
}

export interface Config {
  quick: boolean;
  reps: number;
  isolate: boolean;
  warmup: boolean;
  port: number;
  contenders: ContenderName[];
  scenarios: Scenario[];
  size: boolean;
  /** Where the report goes (BENCH_RESULTS, default bench/RESULTS.md); null for nowhere. */
  resultsPath: string | null;
  notes: string;
}

function list(name: string): string[] | null {
  const v = process.env[name];
  if (v === undefined || v.trim() === '') return null;
  return v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

export function scenarios(quick: boolean, warmup: boolean): Scenario[] {
  const q = (full: number, small: number): number => (quick ? small : full);
  const budgetMs = envInt('BENCH_LATENCY_BUDGET_MS', quick ? 2_000 : 30_000);
  const base = {
    size: 200,
    confirm: true,
    persistent: true,
    prefetch: 100,
    shared: false,
    noDelay: false,
    warmup: 0,
    once: false,
    budgetMs,
  };
  const all: Scenario[] = [
    {
      ...base,
      id: 'publish-confirm',
      title: 'publish, confirms, 200 B persistent',
      kind: 'publish',
      n: q(20_000, 2_000),
    },
    {
      ...base,
      id: 'publish-noconfirm',
      title: 'publish, no confirms, 200 B persistent (until the queue holds N)',
      kind: 'publish',
      n: q(20_000, 2_000),
      confirm: false,
    },
    {
      ...base,
      id: 'consume',
      title: 'consume, manual ack, prefetch 100, 200 B',
      kind: 'consume',
      n: q(20_000, 2_000),
      confirm: false,
    },
    {
      ...base,
      id: 'latency-shared',
      title: 'round trip, one connection, peers default',
      kind: 'latency',
      n: q(2_000, 200),
      confirm: false,
      persistent: false,
      shared: true,
    },
    {
      ...base,
      id: 'latency-separate',
      title: 'round trip, two connections, peers default',
      kind: 'latency',
      n: q(2_000, 200),
      confirm: false,
      persistent: false,
    },
    {
      ...base,
      id: 'latency-shared-nodelay',
      title: 'round trip, one connection, TCP_NODELAY forced',
      kind: 'latency',
      n: q(2_000, 200),
      confirm: false,
      persistent: false,
      shared: true,
      noDelay: true,
    },
    {
      ...base,
      id: 'latency-separate-nodelay',
      title: 'round trip, two connections, TCP_NODELAY forced',
      kind: 'latency',
      n: q(2_000, 200),
      confirm: false,
      persistent: false,
      noDelay: true,
    },
    {
      ...base,
      id: 'publish-64k',
      title: 'publish, confirms, 64 KiB persistent',
      kind: 'publish',
      n: q(1_000, 50),
      size: 64 * 1024,
    },
    {
      ...base,
      id: 'publish-1m',
      title: 'publish, confirms, 1 MiB persistent',
      kind: 'publish',
      n: q(100, 10),
      size: 1024 * 1024,
    },
    {
      ...base,
      id: 'wire-bytes',
      title: 'wire bytes per 200 B persistent publish (routing key of 10 chars)',
      kind: 'wire',
      n: q(1_000, 200),
      once: true,
    },
  ];
  for (const s of all) {
    s.n = envInt(`BENCH_N_${s.id.toUpperCase().replace(/-/g, '_')}`, s.n);
    if (!warmup) s.warmup = 0;
    else if (s.kind === 'latency') s.warmup = Math.max(10, Math.round(s.n / 20));
    else if (s.kind === 'wire') s.warmup = 10;
    else s.warmup = Math.max(2, Math.min(2_000, Math.round(s.n / 10)));
  }
  return all;
}

export function loadConfig(): Config {
  const quick = process.env['BENCH_QUICK'] === '1';
  const warmup = process.env['BENCH_WARMUP'] !== '0';
  const only = list('BENCH_ONLY');
  const all = scenarios(quick, warmup);
  if (only !== null) {
    const known = new Set([...all.map((s) => s.id), 'size']);
    for (const id of only)
      if (!known.has(id))
        throw new Error(`BENCH_ONLY: unknown scenario ${JSON.stringify(id)} (known: ${[...known].join(', ')})`);
  }
  const peers = list('BENCH_PEERS') ?? [...CONTENDER_NAMES];
  for (const p of peers) {
    if (!(CONTENDER_NAMES as readonly string[]).includes(p))
      throw new Error(`BENCH_PEERS: unknown contender ${JSON.stringify(p)} (known: ${CONTENDER_NAMES.join(', ')})`);
  }
  return {
    quick,
    reps: envInt('BENCH_REPS', quick ? 1 : 3),
    isolate: process.env['BENCH_ISOLATE'] !== '0',
    warmup,
    port: envInt('BENCH_PORT', 5672),
    contenders: peers as ContenderName[],
    scenarios: only === null ? all : all.filter((s) => only.includes(s.id)),
    size: only === null || only.includes('size'),
    resultsPath: resultsPath('BENCH_RESULTS'),
    notes: process.env['BENCH_NOTES'] ?? '',
  };
}

/**
 * The fewest bytes AMQP 0-9-1 allows for one basic.publish (spec §4.2.3 frames, §4.2.6 content header): a method
 * frame (class, method, ticket, exchange and routing-key shortstrs, one bits octet), a content header carrying only
 * the property flags and delivery-mode, and the body in frames of at most frameMax - 8 bytes. Every frame adds 7
 * header bytes and a frame-end octet.
 */
export function minimumPublishBytes(
  exchangeLen: number,
  routingKeyLen: number,
  bodyLen: number,
  frameMax: number,
): number {
  const method = 8 + 4 + 2 + (1 + exchangeLen) + (1 + routingKeyLen) + 1;
  const header = 8 + 12 + 2 + 1;
  const bodyFrames = bodyLen === 0 ? 0 : Math.ceil(bodyLen / (frameMax - 8));
  return method + header + bodyLen + 8 * bodyFrames;
}
