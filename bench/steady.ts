/**
 * Steady state: the client CPU per message once the JIT has warmed up, as in a hub or an aggregator that runs for
 * months. `amqp.ts` times each run in a fresh process after a short warm-up, which mostly measures a cold client;
 * here each contender runs in its own child process, repeats the same burst ROUNDS times on one connection, and the
 * median of the last rounds is reported. Validated like the main bench: every round must confirm (or receive) all N.
 *
 *   npx tsc -p tsconfig.json && node .out/bench/steady.js        (writes the "Steady state" section of RESULTS.md)
 *
 * Env: STEADY_N (20000), STEADY_ROUNDS (6), STEADY_RESULTS (Markdown file to update, default bench/RESULTS.md; "-"
 * writes none).
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CONTENDER_NAMES, type ContenderName, loadContender } from './peers/index.js';
import { replaceSection, resultsPath } from './results-file.js';
import { median } from './stats.js';

const N = Number(process.env['STEADY_N'] ?? 20_000);
const ROUNDS = Number(process.env['STEADY_ROUNDS'] ?? 6);
const COUNTED = 3; // the last rounds, after the JIT settled
const RESULTS = resultsPath('STEADY_RESULTS');
const SECTION = '## Steady state';

interface Figures {
  publishConfirm: number[];
  consume: number[];
}

function cpuMicros(start: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(start);
  return d.user + d.system;
}

async function child(name: ContenderName): Promise<Figures> {
  const contender = await loadContender(name);
  const conn = await contender.connect({ port: 5672, noDelay: true });
  const pub = await conn.channel(true);
  const queue = `bench-steady-${name}-${process.pid}`;
  await pub.declare(queue);
  const body = Buffer.alloc(200, 0x61);
  const out: Figures = { publishConfirm: [], consume: [] };
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const t = process.cpuUsage();
      await pub.publishAll(queue, () => body, N, true);
      out.publishConfirm.push(cpuMicros(t) / N);
      if ((await pub.messageCount(queue)) !== N) throw new Error(`${name}: the queue does not hold ${N} messages`);
      const sub = await conn.channel(false);
      let got = 0;
      const c0 = process.cpuUsage();
      await new Promise<void>((resolve, reject) => {
        sub
          .consume(queue, 100, (m) => {
            if (m.body.length !== 200) reject(new Error(`${name}: a body of ${m.body.length} bytes`));
            if (++got === N) resolve();
          })
          .catch(reject);
      });
      out.consume.push(cpuMicros(c0) / N);
      await sub.close();
      if (pub.errors.length > 0 || sub.errors.length > 0)
        throw new Error(`${name}: ${[...pub.errors, ...sub.errors].join('; ')}`);
    }
  } finally {
    await pub.deleteQueue(queue).catch(() => undefined);
    await conn.close();
  }
  return out;
}

async function main(): Promise<void> {
  const which = process.argv[2];
  if (which !== undefined) {
    const figures = await child(which as ContenderName);
    process.send?.(figures, () => process.exit(0));
    return;
  }
  const rows: { name: ContenderName; pc: number; co: number; all: Figures }[] = [];
  for (const name of CONTENDER_NAMES) {
    const figures = await new Promise<Figures>((resolve, reject) => {
      const p = fork(fileURLToPath(import.meta.url), [name], { stdio: 'inherit' });
      p.once('message', (m) => resolve(m as Figures));
      p.once('exit', (code) => {
        if (code !== 0) reject(new Error(`${name}: child exited with ${code}`));
      });
    });
    rows.push({
      name,
      pc: median(figures.publishConfirm.slice(-COUNTED)),
      co: median(figures.consume.slice(-COUNTED)),
      all: figures,
    });
    console.log(
      `${name}: publish-confirm ${figures.publishConfirm.map((x) => x.toFixed(1)).join(' ')} µs/msg; consume ${figures.consume.map((x) => x.toFixed(1)).join(' ')} µs/msg`,
    );
  }
  const ours = rows.find((r) => r.name === 'ours');
  const best = (k: 'pc' | 'co'): number => Math.min(...rows.filter((r) => r.name !== 'ours').map((r) => r[k]));
  const lines = [
    SECTION,
    '',
    `Client CPU per message after the JIT warmed up: each contender in its own process repeats the burst ${ROUNDS} times`,
    `(N=${N}, 200 B persistent, confirms; then consume with manual ack, prefetch 100) on one connection; the median of the`,
    `last ${COUNTED} rounds. Command: \`node .out/bench/steady.js\`, ${new Date().toISOString()}, Node ${process.version}.`,
    '',
    '| contender | publish-confirm CPU µs/msg ↓ | consume CPU µs/msg ↓ | every round (publish / consume) |',
    '| :-- | --: | --: | :-- |',
    ...rows.map(
      (r) =>
        `| ${r.name} | ${r.pc.toFixed(1)} | ${r.co.toFixed(1)} | ${r.all.publishConfirm.map((x) => x.toFixed(1)).join(' ')} / ${r.all.consume.map((x) => x.toFixed(1)).join(' ')} |`,
    ),
    '',
    ours === undefined
      ? ''
      : `Ours against the best peer: publish-confirm ${(ours.pc / best('pc')).toFixed(2)}x, consume ${(ours.co / best('co')).toFixed(2)}x.`,
    '',
  ];
  const section = lines.join('\n');
  replaceSection(SECTION, section, RESULTS);
  console.log(section);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
