/**
 * Reproduction: a publish that has to wait in the channel's publish queue (the write buffer is over
 * writeBufferBytes, or maxUnconfirmed is reached) costs several times the CPU and memory of one that goes straight
 * out. 20,000 x 200 B persistent publishes, all at once, are run twice in fresh processes: with the defaults (most of
 * them wait) and with writeBufferBytes / maxUnconfirmed large enough that none waits.
 *
 *   npx tsc -p tsconfig.json && node .out/bench/repro/publish-wait-cost.js
 *
 * History (shared 2-core dev VM, 2026-11-26): with Channel.enqueue copying the job (`{ ...job, resolve, reject,
 * cost }`) and _resume chaining `send(w).then(w.resolve, w.reject)`, the defaults cost 37 vs 20 µs CPU/msg with
 * confirms and 33 vs 10 without, RSS +64 vs +32 MiB; the profile showed that executor and the GC on top. Commit
 * 1489002 (one object per publish as job, waiter and pending confirm) brought it to about 18-23 vs 16-18 and 14-16
 * vs 10 µs/msg, RSS +31-38 vs +30-37 (confirms) and +21 vs +13 MiB (none) at c568147: waiting still costs ~50 %
 * more CPU without confirms, mostly garbage collection. Kept as a regression check.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type ConnectOptions, connect } from '../../src/amqp/index.js';

async function run(options: ConnectOptions, confirm: boolean): Promise<string> {
  const n = 20_000;
  const conn = await connect({ hostname: '127.0.0.1', ...options });
  const ch = confirm ? await conn.createConfirmChannel() : await conn.createChannel();
  const queue = `repro-wait-cost-${process.pid}`;
  await ch.queueDeclare(queue, { durable: true });
  const slab = Buffer.alloc(n * 200, 0x61);
  const rss0 = process.memoryUsage.rss();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const all: Promise<void>[] = [];
  for (let i = 0; i < n; i++)
    all.push(ch.basicPublish('', queue, slab.subarray(i * 200, (i + 1) * 200), { deliveryMode: 2 }));
  await Promise.all(all);
  while ((await ch.queueDeclare(queue, { passive: true })).messageCount < n) {
    /* until the broker holds all */
  }
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const peak = process.resourceUsage().maxRSS * 1024;
  await ch.queueDelete(queue);
  await conn.close();
  return (
    `${confirm ? 'confirms   ' : 'no confirms'} ${JSON.stringify(options).padEnd(55)} ${Math.round((n / ms) * 1000)} msg/s, ` +
    `${((cpu.user + cpu.system) / n).toFixed(1)} µs CPU/msg, RSS +${((peak - rss0) / 2 ** 20).toFixed(0)} MiB`
  );
}

async function main(): Promise<void> {
  const arg = process.argv[2];
  if (arg !== undefined) {
    const { options, confirm } = JSON.parse(arg) as { options: ConnectOptions; confirm: boolean };
    console.log(await run(options, confirm));
    return;
  }
  const self = fileURLToPath(import.meta.url);
  const big = { writeBufferBytes: 64 << 20, maxUnconfirmed: 100_000 };
  for (const confirm of [true, false]) {
    for (const options of [{}, big]) {
      process.stdout.write(execFileSync(process.execPath, [self, JSON.stringify({ options, confirm })]));
    }
  }
}

void main();
