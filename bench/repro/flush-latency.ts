/**
 * Open question, not a confirmed defect: Output defers every urgent socket write to setImmediate
 * (src/amqp/output.ts, #schedule()), so a write waits for the rest of the event loop's poll phase. Flushing on
 * process.nextTick would still coalesce everything written in one synchronous run (a publish loop, all acks of one
 * 'data' chunk) into one write. On the shared 2-core dev VM (2026-11-26) nextTick lowered the round-trip p50 by
 * 10-35 µs in some sessions (most with two connections and a loaded machine) and made no difference in others
 * (commit c568147: 95 vs 102 µs on one connection, 108 vs 108 µs on two). Rerun on a quiet machine before acting.
 *
 *   npx tsc -p tsconfig.json && node .out/bench/repro/flush-latency.js [rounds]
 *
 * Each round runs 2,000 timed round trips (after 200 untimed) per variant, alternating, on one connection and on two,
 * and the medians over rounds are printed. The nextTick variant wraps methods of the connection's Output instance at
 * run time; nothing in src/ is changed.
 */
import { type Connection, connect } from '../../src/amqp/index.js';
import { median, percentile } from '../stats.js';

type Variant = 'setImmediate' | 'nextTick';

/**
 * Flushes on process.nextTick as well: wraps the instance's commit() and writeRef() (schedule() is a #private
 * method). The nextTick flush empties the queue first; the setImmediate one that Output still schedules then finds
 * nothing to write. Lazy commits (acks) are left alone.
 */
function useNextTick(conn: Connection): void {
  const out = conn.out;
  let pending = false;
  const soon = (): void => {
    if (pending) return;
    pending = true;
    process.nextTick(() => {
      pending = false;
      out.flush();
    });
  };
  const commit = out.commit.bind(out);
  const writeRef = out.writeRef.bind(out);
  out.commit = (end: number): void => {
    commit(end);
    soon();
  };
  out.writeRef = (bytes: Buffer): void => {
    writeRef(bytes);
    soon();
  };
}

async function round(variant: Variant, shared: boolean): Promise<{ p50: number; p90: number }> {
  const n = 2000;
  const warm = 200;
  const a = await connect('amqp://guest:guest@127.0.0.1:5672');
  const b = shared ? a : await connect('amqp://guest:guest@127.0.0.1:5672');
  if (variant === 'nextTick') {
    useNextTick(a);
    if (!shared) useNextTick(b);
  }
  const pub = await a.createChannel();
  const sub = await b.createChannel();
  const queue = `repro-flush-${process.pid}`;
  await pub.queueDeclare(queue, { durable: true });
  let arrived: ((t: number) => void) | null = null;
  await sub.basicConsume(
    queue,
    (m) => {
      const t = performance.now();
      m.ack();
      const r = arrived;
      arrived = null;
      r?.(t);
    },
    { prefetch: 100 },
  );
  const body = Buffer.alloc(200, 1);
  const xs: number[] = [];
  for (let i = 0; i < n + warm; i++) {
    const got = new Promise<number>((r) => {
      arrived = r;
    });
    const t0 = performance.now();
    void pub.basicPublish('', queue, body);
    const t = await got;
    if (i >= warm) xs.push((t - t0) * 1000);
  }
  await pub.queueDelete(queue);
  if (!shared) await b.close();
  await a.close();
  xs.sort((x, y) => x - y);
  return { p50: percentile(xs, 50), p90: percentile(xs, 90) };
}

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 8);
  const res = new Map<string, { p50: number[]; p90: number[] }>();
  for (let i = 0; i < rounds; i++) {
    for (const shared of [false, true]) {
      for (const v of ['setImmediate', 'nextTick'] as const) {
        const r = await round(v, shared);
        const k = `${v.padEnd(12)} ${shared ? 'one connection ' : 'two connections'}`;
        const e = res.get(k) ?? { p50: [], p90: [] };
        e.p50.push(r.p50);
        e.p90.push(r.p90);
        res.set(k, e);
      }
    }
  }
  for (const [k, e] of [...res].sort())
    console.log(
      `${k}  p50 ${median(e.p50).toFixed(0)} µs  p90 ${median(e.p90).toFixed(0)} µs  (median of ${rounds} rounds)`,
    );
}

void main();
