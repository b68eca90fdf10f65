/**
 * What the recovery layer costs on the happy path: confirmed publishes through a RecoveringChannel against the same
 * publishes through a plain Channel, in the same process, against the same broker, alternating rounds.
 *
 *   npm run build:ts && node .out/bench/recovery.js        (BENCH_QUICK=1 for a short run)
 *
 * Writes the "Recovery layer overhead" section of bench/RESULTS.md, except in a quick run (RECOVERY_BENCH_RESULTS:
 * another file, or "-" for none).
 *
 * Each round publishes N messages of 256 B into a fresh classic queue, in windows of 1,000 unconfirmed (streamed
 * confirms, as the bus does), and records wall time and the process's CPU time per message. Medians of the rounds;
 * the ratio is recovering / plain (1.0 = free).
 */
import { randomUUID } from 'node:crypto';
import { type Channel, connect, type RecoveringChannel, RecoveringConnection } from '../src/amqp/index.js';
import { replaceSection, resultsPath } from './results-file.js';
import { fmt, median } from './stats.js';

const URL_ = process.env['AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672';
const QUICK = process.env['BENCH_QUICK'] === '1';
const N = QUICK ? 5_000 : 20_000;
const ROUNDS = QUICK ? 3 : 7;
const BODY = Buffer.alloc(256, 'x');

type Publisher = Pick<Channel | RecoveringChannel, 'basicPublish' | 'queueDeclare' | 'queueDelete'>;

async function round(ch: Publisher, withIds: boolean): Promise<{ wallUs: number; cpuUs: number }> {
  const { queue } = await ch.queueDeclare('', { exclusive: true });
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  let window: Promise<void>[] = [];
  for (let i = 0; i < N; i++) {
    // The plain channel gets the message ids the recovering one would add, so both send the same bytes.
    window.push(ch.basicPublish('', queue, BODY, withIds ? { messageId: randomUUID() } : {}));
    if (window.length === 1000) {
      await Promise.all(window);
      window = [];
    }
  }
  await Promise.all(window);
  const wallUs = Number(process.hrtime.bigint() - t0) / 1000 / N;
  const cpu = process.cpuUsage(cpu0);
  await ch.queueDelete(queue);
  return { wallUs, cpuUs: (cpu.user + cpu.system) / N };
}

async function main(): Promise<void> {
  const plainConn = await connect(URL_, { connectionName: 'bench-recovery-plain' });
  const plain = await plainConn.createConfirmChannel();
  const rc = new RecoveringConnection(URL_, { connectionName: 'bench-recovery' });
  const rch = await rc.createChannel({ confirm: true });
  const r: { plain: { wallUs: number; cpuUs: number }[]; recovering: { wallUs: number; cpuUs: number }[] } = {
    plain: [],
    recovering: [],
  };
  await round(plain, true); // warm-up
  await round(rch, false);
  for (let i = 0; i < ROUNDS; i++) {
    r.plain.push(await round(plain, true));
    r.recovering.push(await round(rch, false));
    process.stderr.write(`round ${i + 1}/${ROUNDS}\r`);
  }
  await plainConn.close();
  await rc.close();
  const row = (k: 'plain' | 'recovering'): [number, number] => [
    median(r[k].map((x) => x.wallUs)),
    median(r[k].map((x) => x.cpuUs)),
  ];
  const [pw, pc] = row('plain');
  const [rw, rcpu] = row('recovering');
  const section = `## Recovery layer overhead (bench/recovery.ts)

Command: \`npm run build:ts && node .out/bench/recovery.js\`, ${new Date().toISOString()}, Node ${process.version} (${process.platform}/${process.arch});
${N} confirmed publishes of 256 B per round, windows of 1,000, medians of ${ROUNDS} alternating rounds, same process and broker.

| channel | wall µs/msg | CPU µs/msg | msgs/s |
| :-- | --: | --: | --: |
| plain \`Channel\` (message ids added by the caller) | ${pw.toFixed(1)} | ${pc.toFixed(1)} | ${fmt(1e6 / pw, 0)} |
| \`RecoveringChannel\` (ids added by it) | ${rw.toFixed(1)} | ${rcpu.toFixed(1)} | ${fmt(1e6 / rw, 0)} |
| ratio recovering / plain | ${(rw / pw).toFixed(2)}x | ${(rcpu / pc).toFixed(2)}x | |
`;
  console.log(section);
  if (!QUICK)
    replaceSection('## Recovery layer overhead (bench/recovery.ts)', section, resultsPath('RECOVERY_BENCH_RESULTS'));
}

await main();
