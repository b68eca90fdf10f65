/**
 * The scenarios, as run for one contender (normally in a child process of its own, see worker.ts). Each returns what
 * it measured plus the problems it saw; the parent validates again against the broker and only counts a run that
 * both found correct. Timing covers the measured part only: connecting, declaring, preparing bodies and the warm-up
 * pass come before the clock starts.
 */
import { performance } from 'node:perf_hooks';
import { bodyIndex, makeBodies, sameBody } from './bodies.js';
import type { Scenario } from './config.js';
import { type Chan, type Contender, type ContenderName, loadContender, type Received } from './peers/index.js';
import { startProxy } from './proxy.js';
import { percentile } from './stats.js';

export interface Job {
  scenario: Scenario;
  contender: ContenderName;
  queue: string;
  port: number;
  /**
   * Sample RSS every 10 ms during the timed part. Only needed when runs share a process: a child process reports
   * its exact high-water mark instead, and the sampler's own wake-ups would show up as CPU time (about 2 ms per
   * 44 ms of idle waiting, which dominates the CPU figure of a Nagle-delayed round trip).
   */
  sampleRss: boolean;
}

export interface RunResult {
  problems: string[];
  n: number;
  ms: number;
  /** user + system CPU of the whole process during the timed part, in microseconds. */
  cpuUs: number;
  /** RSS just before the timed part (connected, bodies prepared, warmed up). */
  rssBaseline: number;
  /** Highest RSS sampled every 10 ms during the timed part (when sampled; else the RSS at its end). */
  rssPeakSampled: number;
  /** The process's own high-water mark (getrusage maxrss); 0 when the run shared a process with others. */
  maxRss: number;
  latencyUs?: { p50: number; p99: number; mean: number; max: number; measured: number };
  wire?: { outPerMsg: number; inPerMsg: number; setupOut: number; setupIn: number };
}

/** Samples RSS every 10 ms (the timer is unref'd: it never keeps the process alive). */
class RssSampler {
  peak = 0;
  private timer: ReturnType<typeof setInterval> | null = null;

  constructor(private readonly sample: boolean) {}

  start(): number {
    const now = process.memoryUsage.rss();
    this.peak = now;
    if (!this.sample) return now;
    this.timer = setInterval(() => {
      const r = process.memoryUsage.rss();
      if (r > this.peak) this.peak = r;
    }, 10);
    this.timer.unref();
    return now;
  }

  stop(): number {
    if (this.timer !== null) clearInterval(this.timer);
    const r = process.memoryUsage.rss();
    if (r > this.peak) this.peak = r;
    // Under qemu user-mode emulation (arm-node) the RSS reads as 0; the process's high-water mark still works.
    if (this.peak === 0) this.peak = process.resourceUsage().maxRSS * 1024;
    return this.peak;
  }
}

/** Times `fn`: wall clock, process CPU and RSS. */
async function measure(
  job: Job,
  fn: () => Promise<void>,
): Promise<{ ms: number; cpuUs: number; rssBaseline: number; rssPeakSampled: number }> {
  const sampler = new RssSampler(job.sampleRss);
  const rssBaseline = sampler.start();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { ms, cpuUs: cpu.user + cpu.system, rssBaseline, rssPeakSampled: sampler.stop() };
}

/** Rejects when `progress()` stops changing for `stallMs` (a lost message must fail the run, not hang it). */
function watchdog<T>(p: Promise<T>, progress: () => number, stallMs: number, what: string): Promise<T> {
  let last = progress();
  let lastAt = Date.now();
  let timer: ReturnType<typeof setInterval> | undefined;
  const stalled = new Promise<never>((_, reject) => {
    timer = setInterval(() => {
      const now = progress();
      if (now !== last) {
        last = now;
        lastAt = Date.now();
        return;
      }
      if (Date.now() - lastAt > stallMs) reject(new Error(`${what}: no progress for ${stallMs} ms (at ${now})`));
    }, 250);
  });
  return Promise.race([p, stalled]).finally(() => clearInterval(timer));
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function bodiesFor(s: Scenario, n: number): (i: number) => Buffer {
  return s.size >= 64 * 1024 ? sameBody(s.size) : makeBodies(n, s.size);
}

/** publish-confirm, publish-noconfirm, publish-64k, publish-1m */
async function publish(c: Contender, job: Job): Promise<RunResult> {
  const s = job.scenario;
  const conn = await c.connect({ port: job.port, noDelay: false });
  const problems: string[] = [];
  try {
    const ch = await conn.channel(s.confirm);
    await ch.declare(job.queue);
    const body = bodiesFor(s, s.n);
    if (s.warmup > 0) {
      const wq = `${job.queue}-w`;
      await ch.declare(wq);
      await ch.publishAll(wq, body, s.warmup, s.persistent);
      await ch.messageCount(wq);
      await ch.deleteQueue(wq);
    }
    let count = -1;
    const m = await measure(job, async () => {
      await ch.publishAll(job.queue, body, s.n, s.persistent);
      if (!s.confirm) {
        // Without confirms the run ends when the broker holds all N: poll a passive queue.declare on the same channel
        // (a client that keeps program order needs one or two; ours lets the declare overtake waiting publishes,
        // see repro/rpc-overtakes-publishes.ts, and needs several).
        const deadline = Date.now() + 60_000;
        for (;;) {
          count = await ch.messageCount(job.queue);
          if (count >= s.n || Date.now() >= deadline) break;
          await sleep(1);
        }
      }
    });
    if (!s.confirm && count !== s.n) problems.push(`queue holds ${count} messages after publishing ${s.n}`);
    problems.push(...ch.errors);
    return { problems, n: s.n, ...m, maxRss: 0 };
  } finally {
    await conn.close();
  }
}

/** consume: the parent filled the queue with N bodies; receive, check and ack every one of them. */
async function consume(c: Contender, job: Job): Promise<RunResult> {
  const s = job.scenario;
  const conn = await c.connect({ port: job.port, noDelay: false });
  const problems: string[] = [];
  const problem = (p: string): void => {
    if (problems.length < 10) problems.push(p);
  };
  try {
    const ch = await conn.channel(false);
    if (s.warmup > 0) {
      const wq = `${job.queue}-w`;
      const filler = await conn.channel(true);
      await filler.declare(wq);
      await filler.publishAll(wq, makeBodies(s.warmup, s.size), s.warmup, true);
      let got = 0;
      let done!: () => void;
      const all = new Promise<void>((r) => {
        done = r;
      });
      const cons = await ch.consume(wq, s.prefetch, () => {
        if (++got === s.warmup) done();
      });
      await watchdog(all, () => got, 10_000, 'warm-up consume');
      await cons.cancel();
      await filler.deleteQueue(wq);
      await filler.close();
    }
    const seen = new Uint8Array(s.n);
    let got = 0;
    let done!: () => void;
    const all = new Promise<void>((r) => {
      done = r;
    });
    const onMessage = (msg: Received): void => {
      const i = bodyIndex(msg.body, s.size);
      if (i < 0 || i >= s.n) problem(`delivery ${got}: body is not one that was published (${msg.body.length} bytes)`);
      else if (seen[i] === 1) problem(`message ${i} delivered twice`);
      else seen[i] = 1;
      if (msg.deliveryMode !== 2) problem(`message ${i}: deliveryMode ${String(msg.deliveryMode)}, expected 2`);
      if (++got === s.n) done();
    };
    let cancel: (() => Promise<void>) | null = null;
    const m = await measure(job, async () => {
      cancel = (await ch.consume(job.queue, s.prefetch, onMessage)).cancel;
      await watchdog(all, () => got, 10_000, 'consume');
    });
    await (cancel as (() => Promise<void>) | null)?.();
    await sleep(20); // anything beyond N would show up here
    if (got !== s.n) problem(`received ${got} messages, expected ${s.n}`);
    problems.push(...ch.errors);
    return { problems, n: s.n, ...m, maxRss: 0 };
  } finally {
    await conn.close();
  }
}

/** latency: publish one, wait until the consumer has it, publish the next. */
async function latency(c: Contender, job: Job): Promise<RunResult> {
  const s = job.scenario;
  const spec = { port: job.port, noDelay: s.noDelay };
  const pubConn = await c.connect(spec);
  const subConn = s.shared ? pubConn : await c.connect(spec);
  const problems: string[] = [];
  const problem = (p: string): void => {
    if (problems.length < 10) problems.push(p);
  };
  try {
    const pub = await pubConn.channel(false);
    const sub = await subConn.channel(false);
    await pub.declare(job.queue);
    const body = makeBodies(s.warmup + s.n, s.size);
    let expected = 0;
    let arrived: ((t: number) => void) | null = null;
    const consumer = await sub.consume(job.queue, s.prefetch, (msg) => {
      const t = performance.now();
      const i = bodyIndex(msg.body, s.size);
      if (i !== expected) problem(`expected message ${expected}, got ${i}`);
      expected++;
      const a = arrived;
      arrived = null;
      a?.(t);
    });
    const samples = new Float64Array(s.n);
    const roundTrip = async (i: number): Promise<number> => {
      const got = new Promise<number>((r) => {
        arrived = r;
      });
      const t0 = performance.now();
      pub.publishOne(job.queue, body(i), s.persistent);
      return (await got) - t0;
    };
    await watchdog(
      (async () => {
        for (let i = 0; i < s.warmup; i++) await roundTrip(i);
      })(),
      () => expected,
      5_000,
      'latency warm-up',
    );
    // A round trip delayed by Nagle's algorithm and delayed ACKs costs ~40 ms: 2,000 of them would take 80 s, so
    // the timed part stops at the scenario's time budget and reports how many it measured.
    let measured = 0;
    const m = await measure(job, async () => {
      const t0 = performance.now();
      await watchdog(
        (async () => {
          while (measured < s.n) {
            samples[measured] = await roundTrip(s.warmup + measured);
            measured++;
            if (performance.now() - t0 > s.budgetMs) break;
          }
        })(),
        () => expected,
        5_000,
        'latency',
      );
    });
    await consumer.cancel();
    if (expected !== s.warmup + measured) problem(`received ${expected} messages, expected ${s.warmup + measured}`);
    problems.push(...pub.errors, ...(s.shared ? [] : sub.errors));
    const sorted = samples.slice(0, measured).sort();
    let sum = 0;
    for (const x of sorted) sum += x;
    return {
      problems,
      n: measured,
      ...m,
      maxRss: 0,
      latencyUs: {
        p50: percentile(sorted, 50) * 1000,
        p99: percentile(sorted, 99) * 1000,
        mean: (sum / measured) * 1000,
        max: (sorted[measured - 1] as number) * 1000,
        measured,
      },
    };
  } finally {
    if (!s.shared) await subConn.close();
    await pubConn.close();
  }
}

/** wire-bytes: the bytes each publish costs on the socket, counted by a proxy between client and broker. */
async function wire(c: Contender, job: Job): Promise<RunResult> {
  const s = job.scenario;
  if (job.queue.length !== 10)
    throw new Error(`wire-bytes needs a 10-character routing key, got ${JSON.stringify(job.queue)}`);
  const proxy = await startProxy(job.port);
  const problems: string[] = [];
  try {
    const conn = await c.connect({ port: proxy.port, noDelay: false });
    let ch: Chan | null = null;
    try {
      ch = await conn.channel(true);
      await ch.declare(job.queue);
      await sleep(20);
      const setupOut = proxy.up;
      const setupIn = proxy.down;
      const body = makeBodies(s.n + s.warmup, s.size);
      if (s.warmup > 0) await ch.publishAll(job.queue, body, s.warmup, true);
      await sleep(20);
      const out0 = proxy.up;
      const in0 = proxy.down;
      const m = await measure(job, () => (ch as Chan).publishAll(job.queue, (i) => body(s.warmup + i), s.n, true));
      await sleep(20);
      problems.push(...ch.errors);
      return {
        problems,
        n: s.n,
        ...m,
        maxRss: 0,
        wire: { outPerMsg: (proxy.up - out0) / s.n, inPerMsg: (proxy.down - in0) / s.n, setupOut, setupIn },
      };
    } finally {
      await conn.close();
    }
  } finally {
    await proxy.close();
  }
}

export async function runJob(job: Job): Promise<RunResult> {
  const c = await loadContender(job.contender);
  switch (job.scenario.kind) {
    case 'publish':
      return publish(c, job);
    case 'consume':
      return consume(c, job);
    case 'latency':
      return latency(c, job);
    case 'wire':
      return wire(c, job);
  }
}
