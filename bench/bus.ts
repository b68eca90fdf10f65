/**
 * The bus at VPP scale, against the RabbitMQ on 127.0.0.1:5672 (guest/guest), in one run:
 *
 *  1. Aggregator ingest. An aggregator Connector `vpp-bench-<suffix>` with 1,000 simulated hubs as peers consumes
 *     200,000 `report`s (6 signals x 3 values, heh_id = the hub) that the hubs published onto their
 *     `<hub>-to-<vpp>` exchanges. The inbox (a quorum queue, as the Connector declares it) is pre-loaded first,
 *     with pre-encoded bodies published straight to the exchanges on src/amqp confirm channels with the properties
 *     the Connector would set. A second quorum queue bound to the same exchanges receives the same messages for
 *     the baseline: amqplib, JSON.parse and ack, the same prefetch. The two consume in interleaved chunks (a gate
 *     in each handler holds the next deliveries while the other one runs); time and process CPU per chunk.
 *  2. Activation round trip (D3.2.3 §2.1 requirement 3). 5,000 hubs, each its own Connector with its own pair
 *     exchanges and inbox queue, sharing 10 AMQP connections in a child process, answer `activate` from an
 *     onActivate handler with ctx.reply(accept_activation). The VPP (this process) sends 5,000 `activate`s with
 *     request() and waits for every reply: end to end from the first send to the last reply, in 2 bursts (the first
 *     is the first message into each hub queue). Topology setup is timed separately. The hubs' queues are classic by
 *     default: see HUB_QUEUE_TYPE for why.
 *
 * Every queue and exchange the bench declares is deleted at the end, whatever happened (on a connection opened at
 * the start, since a broker out of file handles accepts no new connection).
 *
 *   npx tsc -p tsconfig.json && node .out/bench/bus.js        (writes the "Bus" section of bench/RESULTS.md; ~6 min)
 *
 * Knobs: BUS_BENCH_REPORTS (200000), BUS_BENCH_INGEST_HUBS (1000), BUS_BENCH_PREFETCH (100), BUS_BENCH_CHUNKS (5),
 * BUS_BENCH_HUBS (5000), BUS_BENCH_CONNECTIONS (10), BUS_BENCH_HUB_QUEUE_TYPE (classic | quorum),
 * BUS_BENCH_SETUP_CONCURRENCY (2), BUS_BENCH_BURSTS (2), BUS_BENCH_WARMUP (50 activations before the timed bursts),
 * BUS_BENCH_REQUEST_TIMEOUT_MS (60000), BUS_BENCH_SETUP_TIMEOUT_S (1800), BUS_BENCH_ONLY (ingest,activate),
 * BUS_BENCH_RESULTS (bench/RESULTS.md; `-` for nowhere), BUS_BENCH_PORT (5672), BUS_BENCH_PROFILE (a path prefix: CPU
 * profiles of our consumer's chunks and of the VPP's bursts, via node:inspector; the figures then include its cost).
 */
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { ConsumeMessage } from 'amqplib';
import amqplib from 'amqplib';
import {
  type Channel,
  type Connection,
  connect,
  type MessageProperties,
  RecoveringConnection,
} from '../src/amqp/index.js';
import { AmqpTransport, amqpBus, CONTENT_TYPE_JSON, Connector, DM_VERSION } from '../src/bus/index.js';
import { EbTime, encode, type Message } from '../src/codec/index.js';
import { envInt } from './knobs.js';
import { replaceSection, resultsPath } from './results-file.js';
import { fmt as formatNumber, median, percentile } from './stats.js';

const env = (k: string, d: number): number => envInt(k, d, 0);
const PORT = env('BUS_BENCH_PORT', 5672);
const URL_ = `amqp://guest:guest@127.0.0.1:${PORT}`;
const REPORTS = env('BUS_BENCH_REPORTS', 200_000);
const INGEST_HUBS = env('BUS_BENCH_INGEST_HUBS', 1000);
const PREFETCH = env('BUS_BENCH_PREFETCH', 100);
const CHUNKS = Math.max(1, env('BUS_BENCH_CHUNKS', 5));
const HUBS = env('BUS_BENCH_HUBS', 5000);
const CONNECTIONS = Math.max(1, env('BUS_BENCH_CONNECTIONS', 10));
const WARMUP = env('BUS_BENCH_WARMUP', 50);
const REQUEST_TIMEOUT_MS = env('BUS_BENCH_REQUEST_TIMEOUT_MS', 60_000);
const SETUP_TIMEOUT_S = env('BUS_BENCH_SETUP_TIMEOUT_S', 1800);
/** Hub start()s in flight at once: quorum queue declarations do not go faster in parallel, and time out when piled up. */
const SETUP_CONCURRENCY = Math.max(1, env('BUS_BENCH_SETUP_CONCURRENCY', 2));
const BURSTS = Math.max(1, env('BUS_BENCH_BURSTS', 2));
/** A path prefix: profile our Connector's chunks (only those) with the inspector, one .cpuprofile per chunk. */
const PROFILE = process.env['BUS_BENCH_PROFILE'];
/**
 * The hubs' queues in benchmark 2. `classic` by default: every quorum queue holds 3 handles of RabbitMQ's file handle
 * cache, whose limit comes from the broker's open-files limit (927 with the default ulimit of 1024; this machine's broker now has 20,000 via /etc/rabbitmq/rabbitmq-env.conf); past it the
 * broker accepts no new connection, and 10,000 quorum queues would need 30,000. `quorum` is refused when
 * `rabbitmqctl` says the handles are not there (BUS_BENCH_FORCE=1 to try anyway).
 */
const HUB_QUEUE_TYPE = (process.env['BUS_BENCH_HUB_QUEUE_TYPE'] ?? 'classic') as 'classic' | 'quorum';
if (HUB_QUEUE_TYPE !== 'classic' && HUB_QUEUE_TYPE !== 'quorum')
  throw new Error('BUS_BENCH_HUB_QUEUE_TYPE is classic or quorum');
const ONLY = new Set((process.env['BUS_BENCH_ONLY'] ?? 'ingest,activate').split(',').map((s) => s.trim()));
const RESULTS = resultsPath('BUS_BENCH_RESULTS');
const SECTION = '## Bus (bench/bus.ts)';
const QUEUE_TTL_MS = 900_000; // the Connector's default x-message-ttl
const INGEST_TARGET = 20_000; // msgs/s
const ACTIVATE_TARGET_MS = 5000;

// ---- small helpers ------------------------------------------------------------------------------------------------

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Whole numbers: the bus figures are counts, rates, milliseconds and percentages. */
const fmt = (n: number): string => formatNumber(n, 0);
const s = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
const load = (): string =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
const cpuUs = (): number => {
  const c = process.cpuUsage();
  return c.user + c.system;
};
const log = (msg: string): void => {
  process.stderr.write(`[bus-bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
};

/** The broker's own CPU seconds (it runs on this machine: /proc/<beam.smp>/stat), or undefined when unreadable. */
const BROKER_PID = ((): number | undefined => {
  try {
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        if (readFileSync(`/proc/${d}/comm`, 'utf8').trim() !== 'beam.smp') continue;
        if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes('rabbit\0boot')) return Number(d); // not a rabbitmqctl
      } catch {
        /* gone */
      }
    }
  } catch {
    /* no /proc */
  }
  return undefined;
})();
function brokerCpuS(): number {
  if (BROKER_PID === undefined) return NaN;
  try {
    const stat = readFileSync(`/proc/${BROKER_PID}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in clock ticks of 1/100 s (CLK_TCK)
  } catch {
    return NaN;
  }
}

/** The inspector's CPU profiler around `fn` (BUS_BENCH_PROFILE), written to `path`. */
async function profiled<T>(path: string | undefined, fn: () => Promise<T>): Promise<T> {
  if (path === undefined) return fn();
  const session = new Session();
  session.connect();
  const post = (method: string, params: object = {}): Promise<unknown> =>
    new Promise((resolve, reject) =>
      session.post(method, params, (err, r) => (err !== null ? reject(err) : resolve(r))),
    );
  await post('Profiler.enable');
  await post('Profiler.setSamplingInterval', { interval: 100 });
  await post('Profiler.start');
  try {
    return await fn();
  } finally {
    const { profile } = (await post('Profiler.stop')) as { profile: unknown };
    writeFileSync(path, JSON.stringify(profile));
    session.disconnect();
    log(`profile written to ${path}`);
  }
}

/** RabbitMQ's file handle cache, through rabbitmqctl on this machine: [used, limit], or undefined when unavailable. */
function fileHandles(): [number, number] | undefined {
  try {
    const out = execFileSync('rabbitmqctl', ['eval', 'file_handle_cache:info([total_used, total_limit]).'], {
      encoding: 'utf8',
      timeout: 30_000,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const used = /total_used,(\d+)/.exec(out)?.[1];
    const limit = /total_limit,(\d+)/.exec(out)?.[1];
    return used === undefined || limit === undefined ? undefined : [Number(used), Number(limit)];
  } catch {
    return undefined;
  }
}

/** Lets a number of messages through a handler, holds the rest until the next run. */
class Quota {
  remaining = 0;
  #done: (() => void) | undefined;
  #waiters: (() => void)[] = [];
  #progress = 0;

  /** Opens the gate for `count` messages; resolves when they have been handled; fails after `stallMs` without progress. */
  run(count: number, stallMs = 60_000): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let last = -1;
      const watchdog = setInterval(() => {
        if (this.#progress === last) {
          clearInterval(watchdog);
          reject(new Error(`no progress for ${stallMs} ms with ${this.remaining} messages still expected`));
        }
        last = this.#progress;
      }, stallMs);
      this.remaining = count;
      this.#done = () => {
        clearInterval(watchdog);
        resolve();
      };
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const w of waiters) w();
      if (count === 0) this.#done();
    });
  }

  wait(): Promise<void> {
    return new Promise((r) => this.#waiters.push(r));
  }

  handled(): void {
    this.#progress++;
    if (--this.remaining === 0) this.#done?.();
  }
}

/** Everything the bench declares, registered before it is declared: deleted at the end whatever happened. */
class Registry {
  readonly queues = new Set<string>();
  readonly exchanges = new Set<string>();
  failures: string[] = [];
  #conn: Connection | undefined;

  /**
   * Opens the cleanup connection up front: a broker short of file handles (each quorum queue takes 3 of RabbitMQ's
   * file handle cache, 927 here) stops accepting connections, and the queues must still be deleted then.
   */
  async open(): Promise<void> {
    const c = await connect(URL_, { connectionName: 'bus-bench-cleanup' });
    c.on('close', () => {
      if (this.#conn === c) this.#conn = undefined;
    });
    this.#conn = c;
  }

  async close(): Promise<void> {
    const c = this.#conn;
    this.#conn = undefined;
    await c?.close().catch(() => undefined);
  }

  connector(name: string, peers: readonly string[]): void {
    this.queues.add(`private-${name}-in`);
    this.queues.add(`private-${name}-dead`);
    this.exchanges.add(`private-${name}-dlx`);
    for (const p of peers) {
      this.exchanges.add(`${name}-to-${p}`);
      this.exchanges.add(`${p}-to-${name}`);
    }
  }

  /** Deletes everything registered (queues first: deleting a quorum queue is the slow part), on 8 channels. */
  async clean(): Promise<{ ms: number; queues: number; exchanges: number }> {
    const t0 = performance.now();
    const queues = [...this.queues];
    const exchanges = [...this.exchanges];
    let conn: Connection | undefined = this.#conn;
    try {
      // An overloaded broker (thousands of quorum queues being created) may not accept a connection at once.
      for (let attempt = 1; conn === undefined; attempt++) {
        try {
          conn = await connect(URL_, { connectionName: 'bus-bench-cleanup', connectTimeout: 30_000 });
          this.#conn = conn;
        } catch (err) {
          if (attempt >= 10) throw err;
          log(`cleanup: cannot connect yet (${(err as Error).message}); retrying`);
          await sleep(10_000);
        }
      }
      const c = conn;
      for (const [kind, names] of [
        ['queue', queues],
        ['exchange', exchanges],
      ] as const) {
        let next = 0;
        let done = 0;
        await Promise.all(
          range(8).map(async () => {
            let ch = await c.createChannel();
            while (next < names.length) {
              const name = names[next++] as string;
              try {
                if (kind === 'queue') await ch.queueDelete(name);
                else await ch.exchangeDelete(name);
                if (kind === 'queue') this.queues.delete(name);
                else this.exchanges.delete(name);
              } catch (err) {
                this.failures.push(`${kind} ${name}: ${(err as Error).message}`);
                ch = await c.createChannel();
              }
              if (++done % 2000 === 0) log(`cleanup: ${done}/${names.length} ${kind}s deleted`);
            }
            await ch.close().catch(() => undefined);
          }),
        );
      }
    } catch (err) {
      this.failures.push(`cleanup: ${(err as Error).message}`);
    }
    return { ms: performance.now() - t0, queues: queues.length, exchanges: exchanges.length };
  }
}

// ---- messages -----------------------------------------------------------------------------------------------------

const BASE_MS = Date.parse('2026-11-26T00:00:00Z');
const SIGNALS = ['pv.power', 'pv.energy', 'boiler.power', 'boiler.energy', 'meter.power', 'meter.energy'];

/** The seq-th 45-minute report of a hub: 6 signals x 3 values at a 900 s resolution. */
function report(hub: string, hubIndex: number, seq: number): Message<'report'> {
  const from = BASE_MS + seq * 2_700_000;
  const values: Record<string, (number | null)[]> = {};
  for (let j = 0; j < SIGNALS.length; j++) {
    const b = ((hubIndex * 7 + seq * 3 + j) % 100) / 4;
    values[SIGNALS[j] as string] = [b, b + 0.25, j === 0 && seq % 17 === 0 ? null : b + 0.5];
  }
  return {
    msg: 'report',
    from: EbTime.fromEpochMs(from),
    to: EbTime.fromEpochMs(from + 2_700_000),
    resolution: 900,
    values,
    heh_id: hub,
  };
}

function activate(hub: string): Message<'activate'> {
  const from = Date.now() + 60_000;
  return {
    msg: 'activate',
    id: randomUUID(),
    modification_count: 0,
    from: EbTime.fromEpochMs(from),
    to: EbTime.fromEpochMs(from + 900_000),
    quantity: -1.5,
    device: 'boiler',
    heh_id: hub,
  };
}

// ---- 1. aggregator ingest -----------------------------------------------------------------------------------------

interface ChunkSample {
  n: number;
  ms: number;
  cpuUs: number;
  brokerS: number;
}
interface IngestResult {
  reports: number;
  hubs: number;
  bodyBytes: number;
  setupMs: number;
  preloadMs: number;
  startMs: number;
  ours: ChunkSample[];
  baseline: ChunkSample[];
  checks: string[];
  loadBefore: string;
  loadAfter: string;
}

async function ingest(reg: Registry, suffix: string): Promise<IngestResult> {
  const loadBefore = load();
  const vpp = `vpp-bench-${suffix}`;
  const hubs = range(INGEST_HUBS).map((i) => `heh-bench${suffix}-${String(i).padStart(4, '0')}`);
  const baselineQueue = `private-${vpp}-baseline`;
  reg.connector(vpp, hubs);
  reg.queues.add(baselineQueue);
  const checks: string[] = [];

  // Topology: the Connector's own (started once on the empty inbox, then closed), plus the baseline queue.
  log(`ingest: topology for ${vpp} with ${hubs.length} peers`);
  let t = performance.now();
  const probe = amqpBus({ name: vpp, peers: hubs, url: URL_ });
  await probe.start();
  await probe.close();
  const conn = await connect(URL_, { connectionName: 'bus-bench-ingest-loader' });
  let agg: Connector | undefined;
  let base: amqplib.ChannelModel | undefined;
  try {
    const ch = await conn.createChannel();
    await ch.queueDeclare(baselineQueue, {
      durable: true,
      arguments: { 'x-queue-type': 'quorum', 'x-message-ttl': QUEUE_TTL_MS },
    });
    for (const hub of hubs) await ch.queueBind(baselineQueue, `${hub}-to-${vpp}`, '#');
    const setupMs = performance.now() - t;

    // Pre-load: every report once onto its hub's exchange; the exchange routes it to both queues.
    log(`ingest: publishing ${fmt(REPORTS)} reports (setup took ${s(setupMs)})`);
    t = performance.now();
    const sampleBody = encode(report(hubs[0] as string, 0, 0));
    const chans = await Promise.all(range(4).map(() => conn.createConfirmChannel()));
    let next = 0;
    let logged = 0;
    await Promise.all(
      chans.map(async (pch: Channel) => {
        while (next < REPORTS) {
          const batch: Promise<void>[] = [];
          for (let j = 0; j < 500 && next < REPORTS; j++) {
            const k = next++;
            const h = k % hubs.length;
            const hub = hubs[h] as string;
            const props: MessageProperties = {
              messageId: randomUUID(),
              type: 'report',
              contentType: CONTENT_TYPE_JSON,
              timestamp: new Date(),
              appId: hub,
              headers: { 'x-ebadge-dm': DM_VERSION },
              deliveryMode: 2,
            };
            batch.push(
              pch.basicPublish(
                `${hub}-to-${vpp}`,
                `report.${hub}`,
                encode(report(hub, h, Math.floor(k / hubs.length))),
                props,
                { mandatory: true },
              ),
            );
          }
          await Promise.all(batch);
          if (next - logged >= 20_000) {
            logged = next;
            log(`ingest: ${fmt(next)} published`);
          }
        }
      }),
    );
    const preloadMs = performance.now() - t;
    const inboxCount = (await ch.queueDeclare(`private-${vpp}-in`, { passive: true })).messageCount;
    const baselineCount = (await ch.queueDeclare(baselineQueue, { passive: true })).messageCount;
    if (inboxCount !== REPORTS || baselineCount !== REPORTS)
      throw new Error(`pre-load: inbox ${inboxCount}, baseline ${baselineCount}, expected ${REPORTS}`);
    log(`ingest: pre-loaded in ${s(preloadMs)} (${fmt(REPORTS / (preloadMs / 1000))} msgs/s into 2 quorum queues)`);

    // Ours: the aggregator Connector, whose report handler holds deliveries outside its quota.
    const ours = new Quota();
    let oursBad = 0;
    const events: Record<string, number> = { 'dead-letter': 0, 'handler-error': 0, unhandled: 0, duplicate: 0 };
    let signals = 0;
    const work = (r: Message<'report'>, sender: string): void => {
      if (r.heh_id !== sender) oursBad++;
      signals += Object.keys(r.values).length;
      ours.handled();
    };
    t = performance.now();
    agg = amqpBus({ name: vpp, peers: hubs, url: URL_, prefetch: PREFETCH });
    for (const e of Object.keys(events))
      agg.on(e as 'unhandled', () => {
        events[e] = (events[e] ?? 0) + 1;
      });
    agg.onReport((r, ctx) => {
      if (ours.remaining > 0) return work(r, ctx.sender);
      return (async () => {
        while (ours.remaining === 0) await ours.wait();
        work(r, ctx.sender);
      })();
    });
    await agg.start();
    const startMs = performance.now() - t;

    // Baseline: amqplib on the twin queue, JSON.parse and ack.
    base = await amqplib.connect(URL_);
    const bch = await base.createChannel();
    await bch.prefetch(PREFETCH);
    const theirs = new Quota();
    const held: ConsumeMessage[] = [];
    let baseBad = 0;
    const bwork = (m: ConsumeMessage): void => {
      const v = JSON.parse(m.content.toString('utf8')) as { heh_id?: unknown };
      if (typeof v.heh_id !== 'string') baseBad++;
      bch.ack(m);
      theirs.handled();
    };
    await bch.consume(
      baselineQueue,
      (m) => {
        if (m === null) return;
        if (theirs.remaining > 0) bwork(m);
        else held.push(m);
      },
      { noAck: false },
    );
    await sleep(500); // both prefetch windows fill

    const runOurs = (n: number): Promise<void> => ours.run(n);
    const runTheirs = (n: number): Promise<void> => {
      const p = theirs.run(n);
      while (held.length > 0 && theirs.remaining > 0) bwork(held.shift() as ConsumeMessage);
      return p;
    };
    const samples = { ours: [] as ChunkSample[], baseline: [] as ChunkSample[] };
    for (let c = 0; c < CHUNKS; c++) {
      const n = c < CHUNKS - 1 ? Math.floor(REPORTS / CHUNKS) : REPORTS - Math.floor(REPORTS / CHUNKS) * (CHUNKS - 1);
      const order: ['ours' | 'baseline', (n: number) => Promise<void>][] = [
        ['baseline', runTheirs],
        ['ours', runOurs],
      ];
      if (c % 2 === 1) order.reverse();
      for (const [who, run] of order) {
        const b0 = brokerCpuS();
        const c0 = cpuUs();
        const t0 = performance.now();
        await profiled(
          PROFILE !== undefined && who === 'ours' ? `${PROFILE}-chunk${c + 1}.cpuprofile` : undefined,
          () => run(n),
        );
        const ms = performance.now() - t0;
        samples[who].push({ n, ms, cpuUs: cpuUs() - c0, brokerS: brokerCpuS() - b0 });
        log(
          `ingest: chunk ${c + 1}/${CHUNKS} ${who}: ${fmt(n)} in ${fmt(ms)} ms = ${fmt(n / (ms / 1000))} msgs/s, ${((cpuUs() - c0) / n).toFixed(1)} µs CPU/msg`,
        );
      }
    }
    await sleep(200); // the last acks leave
    await agg.close();
    agg = undefined;
    await base.close();
    base = undefined;
    // Closing returns anything unacked to the queue: empty queues mean every message was acked exactly once.
    const leftIn = (await ch.queueDeclare(`private-${vpp}-in`, { passive: true })).messageCount;
    const leftBase = (await ch.queueDeclare(baselineQueue, { passive: true })).messageCount;
    const dead = (await ch.queueDeclare(`private-${vpp}-dead`, { passive: true })).messageCount;
    checks.push(`after closing: inbox ${leftIn}, baseline queue ${leftBase}, dead letters ${dead} (all should be 0)`);
    checks.push(
      `ours: heh_id differing from the sender ${oursBad}; events ${Object.entries(events)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}; signals seen ${fmt(signals)} (expected ${fmt(REPORTS * 6)})`,
    );
    checks.push(`baseline: bodies without heh_id ${baseBad}`);
    const ok =
      leftIn === 0 &&
      leftBase === 0 &&
      dead === 0 &&
      oursBad === 0 &&
      baseBad === 0 &&
      signals === REPORTS * 6 &&
      Object.values(events).every((v) => v === 0);
    if (!ok) checks.push('CHECK FAILED: see above');
    return {
      reports: REPORTS,
      hubs: hubs.length,
      bodyBytes: sampleBody.length,
      setupMs,
      preloadMs,
      startMs,
      ours: samples.ours,
      baseline: samples.baseline,
      checks,
      loadBefore,
      loadAfter: load(),
    };
  } finally {
    await agg?.close().catch(() => undefined);
    await base?.close().catch(() => undefined);
    await conn.close().catch(() => undefined);
  }
}

// ---- 2. activation round trip -------------------------------------------------------------------------------------

type FromChild =
  | { type: 'progress'; started: number }
  | { type: 'ready'; setupMs: number }
  | { type: 'stats'; handled: number; cpuUs: number; errors: number }
  | { type: 'error'; message: string };
type ToChild = { type: 'mark' } | { type: 'stats' } | { type: 'stop' };

interface Burst {
  issueMs: number;
  e2eMs: number;
  replies: number;
  failures: string[];
  within5s: number;
  latencies: number[];
  vppCpuUs: number;
  hubsCpuUs: number;
  hubsHandled: number;
  brokerS: number;
}
interface ActivateResult {
  hubs: number;
  connections: number;
  queueType: string;
  handles: string;
  hubSetupMs: number;
  vppStartMs: number;
  warmup: number;
  bursts: Burst[];
  brokerIdlePct: number;
  checks: string[];
  loadBefore: string;
  loadAfter: string;
}

const activationVpp = (suffix: string): string => `vpp-bench-${suffix}-act`;
const activationHubs = (suffix: string, n: number): string[] =>
  range(n).map((i) => `heh-bench${suffix}-a${String(i).padStart(5, '0')}`);

/** The child process: HUBS Connectors on CONNECTIONS shared connections, answering every activate. */
async function hubsChild(
  vpp: string,
  hubs: string[],
  connections: number,
  concurrency: number,
  queueType: 'classic' | 'quorum',
): Promise<void> {
  const send = (m: FromChild): void => {
    process.send?.(m);
  };
  process.on('disconnect', () => process.exit(0));
  const fatal = (err: unknown): void => {
    send({ type: 'error', message: (err as Error)?.stack ?? String(err) });
    setTimeout(() => process.exit(1), 100);
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
  const conns: RecoveringConnection[] = [];
  let stopping = false;
  let handled = 0;
  let errors = 0;
  let cpu0 = cpuUs();
  process.on('message', (raw: unknown) => {
    const m = raw as ToChild;
    if (m.type === 'mark') {
      cpu0 = cpuUs();
      handled = 0;
    }
    if (m.type === 'stats') send({ type: 'stats', handled, cpuUs: cpuUs() - cpu0, errors });
    if (m.type === 'stop') {
      stopping = true;
      void Promise.allSettled(conns.map((c) => c.close())).then(() => process.exit(0));
    }
  });
  try {
    const t0 = performance.now();
    for (let g = 0; g < connections; g++) {
      const c = new RecoveringConnection(URL_, { connectionName: `bus-bench-hubs-${g}`, initialAttempts: 1 });
      c.on('disconnected', (err) => {
        if (!stopping) fatal(new Error(`hub connection ${g} lost: ${err?.message ?? 'closed'}`));
      });
      conns.push(c);
      await c.whenOpen();
    }
    let started = 0;
    let next = 0;
    await Promise.all(
      range(concurrency).map(async () => {
        while (next < hubs.length) {
          const i = next++;
          const name = hubs[i] as string;
          const transport = new AmqpTransport({
            name,
            peers: [vpp],
            connection: conns[i % connections] as RecoveringConnection,
            queueType,
          });
          const hub = new Connector({ transport });
          hub.on('handler-error', () => {
            errors++;
          });
          hub.on('dead-letter', () => {
            errors++;
          });
          hub.onActivate(async (m, ctx) => {
            handled++;
            await ctx.reply({ msg: 'accept_activation', id: m.id, modification_count: m.modification_count });
          });
          await hub.start();
          if (++started % 500 === 0) send({ type: 'progress', started });
        }
      }),
    );
    send({ type: 'ready', setupMs: performance.now() - t0 });
  } catch (err) {
    send({ type: 'error', message: (err as Error).stack ?? String(err) });
    await Promise.allSettled(conns.map((c) => c.close()));
    process.exit(1);
  }
}

async function activation(reg: Registry, suffix: string): Promise<ActivateResult> {
  const loadBefore = load();
  const vpp = activationVpp(suffix);
  const hubs = activationHubs(suffix, HUBS);
  if (Math.ceil(HUBS / CONNECTIONS) * 2 > 2000)
    throw new Error(`${HUBS} hubs on ${CONNECTIONS} connections exceed the broker's 2,047 channels per connection`);
  const handles = fileHandles();
  if (
    HUB_QUEUE_TYPE === 'quorum' &&
    handles !== undefined &&
    handles[0] + HUBS * 2 * 3 + 50 > handles[1] &&
    process.env['BUS_BENCH_FORCE'] !== '1'
  ) {
    throw new Error(
      `${fmt(HUBS * 2)} quorum queues need ${fmt(HUBS * 6)} of the broker's file handles; it has ${fmt(handles[1] - handles[0])} free of ${fmt(handles[1])} (BUS_BENCH_FORCE=1 to try anyway)`,
    );
  }
  reg.connector(vpp, hubs);
  for (const h of hubs) reg.connector(h, [vpp]);
  const checks: string[] = [];

  log(`activate: starting ${fmt(HUBS)} hub Connectors on ${CONNECTIONS} connections in a child process`);
  const child: ChildProcess = fork(
    fileURLToPath(import.meta.url),
    ['--hubs', suffix, String(HUBS), String(CONNECTIONS), String(SETUP_CONCURRENCY), HUB_QUEUE_TYPE],
    { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
  );
  const forkedAt = performance.now();
  const inbox: FromChild[] = [];
  let wake: (() => void) | undefined;
  let exited = false;
  child.on('message', (raw: unknown) => {
    const m = raw as FromChild;
    if (m.type === 'progress') {
      log(`activate: ${fmt(m.started)} hubs started (${s(performance.now() - forkedAt)})`);
      return;
    }
    inbox.push(m);
    wake?.();
  });
  child.on('exit', (code) => {
    exited = true;
    inbox.push({ type: 'error', message: `the hubs process exited (${code})` });
    wake?.();
  });
  const next = async (timeoutMs: number): Promise<FromChild> => {
    const deadline = Date.now() + timeoutMs;
    while (inbox.length === 0) {
      if (Date.now() > deadline) throw new Error(`no answer from the hubs process within ${timeoutMs} ms`);
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 1000);
      });
    }
    return inbox.shift() as FromChild;
  };
  const tell = (m: ToChild): void => {
    if (!exited) child.send(m);
  };

  let vppBus: Connector | undefined;
  try {
    const ready = await next(SETUP_TIMEOUT_S * 1000);
    if (ready.type !== 'ready') throw new Error(`hubs: ${ready.type === 'error' ? ready.message : ready.type}`);
    const hubSetupMs = ready.setupMs;
    log(`activate: hubs ready in ${s(hubSetupMs)}; starting the VPP with ${fmt(HUBS)} peers`);

    const t = performance.now();
    const events: Record<string, number> = { 'dead-letter': 0, 'handler-error': 0, unhandled: 0, duplicate: 0 };
    vppBus = amqpBus({ name: vpp, peers: hubs, url: URL_, requestTimeoutMs: REQUEST_TIMEOUT_MS });
    for (const e of Object.keys(events))
      vppBus.on(e as 'unhandled', () => {
        events[e] = (events[e] ?? 0) + 1;
      });
    await vppBus.start();
    const vppStartMs = performance.now() - t;
    log(`activate: VPP started in ${s(vppStartMs)}`);
    const bus = vppBus;

    // Warm-up: a few untimed round trips (JIT, channel buffers), then the quiet second before the burst.
    for (const hub of hubs.slice(0, WARMUP)) await bus.request(hub, activate(hub), { timeout: REQUEST_TIMEOUT_MS });
    // The broker's standing CPU with all these queues, consumers and connections idle (quorum queues tick every 5 s).
    const i0 = brokerCpuS();
    await sleep(5000);
    const brokerIdlePct = (100 * (brokerCpuS() - i0)) / 5;

    const bursts: Burst[] = [];
    for (let b = 0; b < BURSTS; b++) {
      if (b > 0) await sleep(2000);
      tell({ type: 'mark' });
      await sleep(200);
      const messages = hubs.map((h) => activate(h));
      const latencies: number[] = [];
      const failures: string[] = [];
      let mismatched = 0;
      let last = 0;
      let t0 = 0;
      let b0 = 0;
      let c0 = 0;
      const issueMs = await profiled(
        PROFILE === undefined ? undefined : `${PROFILE}-burst${b + 1}.cpuprofile`,
        async () => {
          b0 = brokerCpuS();
          c0 = cpuUs();
          t0 = performance.now();
          const all = hubs.map((hub, i) => {
            const m = messages[i] as Message<'activate'>;
            const sent = performance.now();
            return bus.request(hub, m, { timeout: REQUEST_TIMEOUT_MS }).then(
              (r) => {
                const now = performance.now();
                latencies.push(now - sent);
                last = now;
                const x = r as { msg: string; id?: string; modification_count?: number };
                if (x.msg !== 'accept_activation' || x.id !== m.id || x.modification_count !== 0) mismatched++;
              },
              (err: unknown) => {
                failures.push(`${hub}: ${(err as Error).message}`);
              },
            );
          });
          const issued = performance.now() - t0;
          await Promise.all(all);
          return issued;
        },
      );
      const e2eMs = (latencies.length > 0 ? last : performance.now()) - t0;
      const vppCpuUs = cpuUs() - c0;
      const brokerS = brokerCpuS() - b0;
      const within5s = latencies.filter((l) => l <= ACTIVATE_TARGET_MS).length;
      tell({ type: 'stats' });
      const stats = await next(30_000);
      if (stats.type !== 'stats') throw new Error(`hubs: ${stats.type === 'error' ? stats.message : stats.type}`);
      checks.push(
        `burst ${b + 1}: replies ${latencies.length}/${HUBS} (accept_activation with the request's id: ${latencies.length - mismatched}), failures ${failures.length}, hubs handled ${stats.handled} activates`,
      );
      if (latencies.length !== HUBS || mismatched !== 0 || stats.handled !== HUBS || stats.errors !== 0)
        checks.push('CHECK FAILED: see above');
      latencies.sort((x, y) => x - y);
      bursts.push({
        issueMs,
        e2eMs,
        replies: latencies.length,
        failures: failures.slice(0, 3),
        within5s,
        latencies,
        vppCpuUs,
        hubsCpuUs: stats.cpuUs,
        hubsHandled: stats.handled,
        brokerS,
      });
      log(`activate: burst ${b + 1}/${BURSTS}: ${latencies.length} replies, last after ${fmt(e2eMs)} ms`);
      if (stats.errors !== 0) checks.push(`hub errors ${stats.errors}`);
    }
    checks.push(
      `VPP events: ${Object.entries(events)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    );
    return {
      hubs: HUBS,
      connections: CONNECTIONS,
      queueType: HUB_QUEUE_TYPE,
      handles: handles === undefined ? 'unknown' : `${handles[0]} used of ${handles[1]}`,
      hubSetupMs,
      vppStartMs,
      warmup: WARMUP,
      bursts,
      brokerIdlePct,
      checks,
      loadBefore,
      loadAfter: load(),
    };
  } finally {
    await vppBus?.close().catch(() => undefined);
    tell({ type: 'stop' });
    const deadline = Date.now() + 30_000;
    while (!exited && Date.now() < deadline) await sleep(100);
    if (!exited) child.kill('SIGKILL');
  }
}

// ---- report -------------------------------------------------------------------------------------------------------

function commandLine(): string {
  const vars = Object.entries(process.env)
    .filter(([k]) => k.startsWith('BUS_BENCH_'))
    .map(([k, v]) => `${k}=${v ?? ''}`);
  return [...vars, 'node', ...process.execArgv, '.out/bench/bus.js'].join(' ');
}

function gitState(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src/bus', 'src/amqp', 'src/codec'], {
      encoding: 'utf8',
    }).trimEnd();
    return `commit ${head}${dirty === '' ? ', src/ clean' : `, with uncommitted changes in ${[...new Set(dirty.split('\n').map((l) => l.slice(3).trim()))].join(', ')}`}`;
  } catch {
    return 'commit unknown';
  }
}

function ingestLines(r: IngestResult): string[] {
  const agg = (
    xs: ChunkSample[],
  ): { n: number; ms: number; rate: number; cpu: number; med: number; min: number; max: number; broker: number } => {
    const n = xs.reduce((a, x) => a + x.n, 0);
    const ms = xs.reduce((a, x) => a + x.ms, 0);
    const rates = xs.map((x) => x.n / (x.ms / 1000));
    return {
      n,
      ms,
      rate: n / (ms / 1000),
      cpu: xs.reduce((a, x) => a + x.cpuUs, 0) / n,
      med: median(rates),
      min: Math.min(...rates),
      max: Math.max(...rates),
      broker: (100 * xs.reduce((a, x) => a + x.brokerS, 0)) / (ms / 1000),
    };
  };
  const o = agg(r.ours);
  const b = agg(r.baseline);
  const met = o.rate >= INGEST_TARGET;
  const row = (name: string, x: typeof o): string =>
    `| ${name} | ${fmt(x.n)} | ${(x.ms / 1000).toFixed(2)} | ${fmt(x.rate)} | ${fmt(x.med)} (${fmt(x.min)}-${fmt(x.max)}) | ${x.cpu.toFixed(1)} | ${fmt(1e6 / x.cpu)} | ${fmt(x.broker)}% |`;
  return [
    '### 1. Aggregator ingest',
    '',
    `An aggregator Connector with ${fmt(r.hubs)} hubs as peers consumes ${fmt(r.reports)} \`report\`s (6 signals x 3 values, ${r.bodyBytes} B of JSON, heh_id = the`,
    `hub) from its pre-loaded inbox quorum queue: decode + validate, dedupe, a trivial handler (heh_id == sender, count the signals), ack.`,
    `Baseline: amqplib on a twin quorum queue bound to the same ${fmt(r.hubs)} exchanges (so it holds the same messages), JSON.parse + ack.`,
    `Prefetch ${PREFETCH} for both. ${CHUNKS} interleaved chunks per contender (baseline first in odd chunks, ours first in even ones);`,
    'the figures are totals over the chunks, "chunk msgs/s" the median (min-max). "CPU-bound msgs/s" = 1e6 / CPU µs per message, what one',
    'core could take if the broker kept up; "broker CPU" = RabbitMQ\'s own CPU while that contender ran (100% = one core).',
    `Setup: topology ${s(r.setupMs)} (the Connector's own, ${fmt(r.hubs * 2)} exchanges + ${fmt(r.hubs)} bindings, plus the twin queue's bindings);`,
    `pre-load ${s(r.preloadMs)} (${fmt(r.reports / (r.preloadMs / 1000))} msgs/s, each into 2 quorum queues, 4 confirm channels); the aggregator's start() ${s(r.startMs)}.`,
    '',
    '| contender | msgs | s | msgs/s ↑ | chunk msgs/s | CPU µs/msg ↓ | CPU-bound msgs/s | broker CPU |',
    '| :-- | --: | --: | --: | --: | --: | --: | --: |',
    row('ours: Connector (decode, validate, dedupe, handler, ack)', o),
    row('baseline: amqplib, JSON.parse + ack', b),
    `| ours / baseline |  |  | ${(o.rate / b.rate).toFixed(2)}x | ${(o.med / b.med).toFixed(2)}x | ${(o.cpu / b.cpu).toFixed(2)}x | ${(b.cpu / o.cpu).toFixed(2)}x |  |`,
    '',
    `Target >= ${fmt(INGEST_TARGET)} msgs/s on one core: **${met ? 'met' : 'missed'}** (${fmt(o.rate)} msgs/s wall clock; CPU-bound ${fmt(1e6 / o.cpu)} msgs/s).`,
    `Load average before ${r.loadBefore}, after ${r.loadAfter}. Checks: ${r.checks.join('; ')}.`,
    '',
  ];
}

function activateLines(r: ActivateResult): string[] {
  const col = (f: (b: Burst) => string): string => r.bursts.map(f).join(' | ');
  const head = r.bursts.map((_, i) => (i === 0 ? 'burst 1 (cold hub queues)' : `burst ${i + 1}`));
  const met = (b: Burst): boolean => b.replies === r.hubs && b.e2eMs < ACTIVATE_TARGET_MS;
  return [
    '### 2. Activation round trip (D3.2.3 §2.1 requirement 3)',
    '',
    `A VPP Connector sends ${fmt(r.hubs)} \`activate\`s with request(), one to each of ${fmt(r.hubs)} hubs, and waits for every \`accept_activation\`.`,
    `Each hub is its own Connector (its own pair exchanges, inbox and dead-letter ${r.queueType} queues; the VPP's are quorum); the hubs share ${r.connections} AMQP connections in`,
    'a child process and answer from onActivate with ctx.reply(). The VPP, in this process, has every hub as a peer. End to end = from',
    `the first request() to the last reply, after ${r.warmup} untimed warm-up round trips; ${r.bursts.length} bursts, 2 s apart (burst 1 is the first message`,
    'ever into most hub queues). Requests are issued all at once, each with a timeout of ' +
      `${fmt(REQUEST_TIMEOUT_MS)} ms so that late replies are still counted.`,
    `Setup (not in the figure): ${fmt(r.hubs)} hubs started in ${s(r.hubSetupMs)} (${fmt(r.hubs * 2)} ${r.queueType} queues, ${fmt(r.hubs * 3)} exchanges, ${SETUP_CONCURRENCY} start()s at a time); the VPP's start()`,
    `(${fmt(r.hubs * 2)} exchange declarations + ${fmt(r.hubs)} bindings, one channel) ${s(r.vppStartMs)}. Broker CPU when all of it sits idle: ${fmt(r.brokerIdlePct)}% of a core.`,
    '',
    `| metric | ${head.join(' | ')} |`,
    `| :-- |${r.bursts.map(() => ' --: |').join('')}`,
    `| end to end, first send to last reply ↓ | ${col((b) => `${fmt(b.e2eMs)} ms`)} |`,
    `| replies | ${col((b) => `${fmt(b.replies)} / ${fmt(r.hubs)}`)} |`,
    `| replies within 5 s of their request | ${col((b) => fmt(b.within5s))} |`,
    `| issuing the ${fmt(r.hubs)} request() calls (synchronous part) | ${col((b) => `${fmt(b.issueMs)} ms`)} |`,
    `| round trip p50 / p90 / p99 / max, ms | ${col((b) =>
      [50, 90, 99]
        .map((p) => fmt(percentile(b.latencies, p)))
        .concat(fmt(b.latencies[b.latencies.length - 1] ?? NaN))
        .join(' / '),
    )} |`,
    `| throughput, round trips/s | ${col((b) => fmt(b.replies / (b.e2eMs / 1000)))} |`,
    `| VPP process CPU (per round trip) | ${col((b) => `${fmt(b.vppCpuUs / 1000)} ms (${fmt(b.vppCpuUs / r.hubs)} µs)`)} |`,
    `| hubs process CPU (per activate) | ${col((b) => `${fmt(b.hubsCpuUs / 1000)} ms (${fmt(b.hubsCpuUs / Math.max(1, b.hubsHandled))} µs)`)} |`,
    `| broker CPU (per round trip) | ${col((b) => `${fmt(b.brokerS * 1000)} ms (${fmt((b.brokerS * 1e6) / r.hubs)} µs)`)} |`,
    `| target < 5 s | ${col((b) => `**${met(b) ? 'met' : 'missed'}**`)} |`,
    '',
    ...(r.queueType === 'classic'
      ? [
          "Why classic hub queues: each quorum queue holds 3 handles of the broker's file handle cache (measured: +300 for 100 quorum queues, +0 for",
          `200 idle classic ones); this broker's limit is ${r.handles.replace(/.* of /, '')}, so ${fmt(r.hubs * 2)} quorum queues would need ${fmt(r.hubs * 6)}. With quorum`,
          'hubs (an earlier attempt), the broker stopped accepting new connections after about 300 quorum queues, and hub start()s failed',
          'with 541 cluster_not_formed at ~7,300 quorum queues. A real deployment at this scale needs a much higher file limit on the broker.',
        ]
      : []),
    `Load average before ${r.loadBefore}, after ${r.loadAfter}. Checks: ${r.checks.join('; ')}${r.bursts.some((b) => b.failures.length > 0) ? `; first failures: ${r.bursts.flatMap((b) => b.failures).join('; ')}` : ''}.`,
    '',
  ];
}

async function main(): Promise<void> {
  const suffix = randomBytes(3).toString('hex');
  const reg = new Registry();
  await reg.open();
  const started = new Date();
  const loadStart = load();
  let version = 'unknown';
  try {
    const c = await connect(URL_);
    version = String(c.serverProperties['version'] ?? 'unknown');
    await c.close();
  } catch (err) {
    throw new Error(`no broker on 127.0.0.1:${PORT}: ${(err as Error).message}`);
  }
  let ing: IngestResult | undefined;
  let act: ActivateResult | undefined;
  const cleanups: string[] = [];
  const cleanup = async (what: string): Promise<void> => {
    log(`${what}: deleting ${fmt(reg.queues.size)} queues and ${fmt(reg.exchanges.size)} exchanges`);
    const c = await reg.clean();
    cleanups.push(`${what}: ${fmt(c.queues)} queues and ${fmt(c.exchanges)} exchanges deleted in ${s(c.ms)}`);
    log(cleanups[cleanups.length - 1] as string);
  };
  let interrupted = false;
  const onSignal = (): void => {
    if (interrupted) process.exit(130);
    interrupted = true;
    log('interrupted: cleaning up (again to exit at once)');
    void reg.clean().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    if (ONLY.has('ingest')) {
      try {
        ing = await ingest(reg, suffix);
      } finally {
        await cleanup('ingest cleanup');
      }
    }
    if (ONLY.has('activate')) {
      try {
        act = await activation(reg, suffix);
      } finally {
        await cleanup('activate cleanup');
      }
    }
  } finally {
    if (reg.failures.length > 0) log(`cleanup failures: ${reg.failures.slice(0, 10).join('; ')}`);
    await reg.close();
  }
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const lines = [
    SECTION,
    '',
    `Command: \`npx tsc -p tsconfig.json && ${commandLine()}\`, ${started.toISOString()}, Node ${process.version}, RabbitMQ ${version} on 127.0.0.1`,
    `(the same ${cpus().length} shared vCPUs, ${cpu}); ${gitState()}. Load average at the start ${loadStart}, at the end ${load()}`,
    '(other people ran tests on this machine and this broker at the same time). Queue names carry the suffix',
    `\`${suffix}\`; ${cleanups.join('; ')}${reg.failures.length > 0 ? `; cleanup failures: ${reg.failures.length}` : ''}.`,
    '',
    ...(ing !== undefined ? ingestLines(ing) : ['### 1. Aggregator ingest', '', 'Not run (BUS_BENCH_ONLY).', '']),
    ...(act !== undefined
      ? activateLines(act)
      : ['### 2. Activation round trip (D3.2.3 §2.1 requirement 3)', '', 'Not run (BUS_BENCH_ONLY).', '']),
  ];
  const section = lines.join('\n');
  console.log(section);
  replaceSection(SECTION, section, RESULTS);
  if (reg.failures.length > 0) process.exitCode = 2;
}

if (process.argv[2] === '--hubs') {
  const suffix = process.argv[3] as string;
  void hubsChild(
    activationVpp(suffix),
    activationHubs(suffix, Number(process.argv[4])),
    Number(process.argv[5]),
    Number(process.argv[6]),
    process.argv[7] as 'classic' | 'quorum',
  );
} else {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
