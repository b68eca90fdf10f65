/**
 * The deployable hub (dist/hub.js) against bare Node, in the same run:
 *  - start-up: `node dist/hub.js --version` against `node -e 0` (wall time, interleaved runs, medians);
 *  - idle memory: RSS of a running hub, connected and sampling, against a bare node process holding one socket;
 *  - CPU: the hub sending 10 `report`s a second (10 periodic subscriptions of 1 s) for BENCH_HUB_SECONDS (60).
 * Writes the "Hub" section of bench/RESULTS.md (BENCH_HUB_RESULTS: another file, or "-" for none).
 *
 *   npm run build && node .out/bench/hub.js
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliDecompressSync } from 'node:zlib';
import { connect } from '../src/amqp/index.js';
import { amqpBus } from '../src/bus/index.js';
import { replaceSection, resultsPath } from './results-file.js';
import { median } from './stats.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const HUB = path.join(root, 'dist/hub.js');
const SECONDS = Number(process.env['BENCH_HUB_SECONDS'] ?? 60);
const RUNS = Number(process.env['BENCH_HUB_RUNS'] ?? 15);
const URL_ = 'amqp://guest:guest@127.0.0.1:5672';

function wall(args: string[]): number {
  const t = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
  return Number(process.hrtime.bigint() - t) / 1e6;
}

/** The median RSS (kB) of 10 samples over 5 s: one sample lands anywhere between two garbage collections. */
async function rssMedian(pid: number): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < 10; i++) {
    xs.push(proc(pid).rssKb);
    await new Promise((r) => setTimeout(r, 500));
  }
  return median(xs);
}

/** RSS (kB) and CPU ticks (user + system) of a process, from /proc. */
function proc(pid: number): { rssKb: number; ticks: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { rssKb, ticks: Number(fields[11]) + Number(fields[12]) };
}

export function waitFor(child: ChildProcess, text: string, ms: number): Promise<void> {
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${text}" within ${ms} ms:\n${out.slice(-2000)}`)), ms);
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes(text)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`exited with ${String(code)}:\n${out.slice(-2000)}`)));
  });
}

async function main(): Promise<void> {
  const size = statSync(HUB).size;
  // build/bundle.ts packs the hub: a Brotli stream in one base64 string literal.
  const payload = /Buffer\.from\("([A-Za-z0-9+/=]+)","base64"\)/.exec(readFileSync(HUB, 'latin1'))?.[1];
  const code = payload === undefined ? size : brotliDecompressSync(Buffer.from(payload, 'base64')).length;
  const load0 = loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
  // Start-up, interleaved so that machine noise hits both alike.
  const bare: number[] = [];
  const hub: number[] = [];
  // --version answers before the hub's modules are initialised; check-config loads all of them.
  const whole: number[] = [];
  const check = [HUB, 'check-config', '--config', path.join(root, 'examples/hub.json')];
  wall(['-e', '0']);
  wall([HUB, '--version']);
  wall(check);
  for (let i = 0; i < RUNS; i++) {
    bare.push(wall(['-e', '0']));
    hub.push(wall([HUB, '--version']));
    whole.push(wall(check));
  }

  // Idle RSS: a bare node holding one socket to the broker, then the hub connected and sampling.
  const holder = spawn(process.execPath, ['-e', "require('net').connect(5672,'127.0.0.1');setInterval(()=>{},1000)"], {
    stdio: 'ignore',
  });
  await new Promise((r) => setTimeout(r, 3000));
  const bareRss = await rssMedian(holder.pid as number);
  holder.kill();

  const id = `${process.pid}-${Date.now().toString(36)}`;
  const name = `heh-bench-${id}`;
  const peers = Array.from({ length: 10 }, (_, i) => `vpp-bench-${id}-${i}`);
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-hub-'));
  writeFileSync(
    path.join(dir, 'hub.json'),
    JSON.stringify({
      name,
      broker: { url: 'amqp://127.0.0.1:5672', username: 'guest' },
      peers: peers.map((p) => ({ name: p })),
      stateDir: path.join(dir, 'state'),
      resolutionS: 1,
      devices: [
        {
          name: 'meter',
          signals: [{ name: 'p' }, { name: 'q', unit: 'kvar' }, { name: 'e', unit: 'kWh' }],
          meter: { kind: 'simulated', seed: 3 },
        },
        { name: 'boiler', meter: { kind: 'simulated', seed: 4, profile: 'boiler' } },
      ],
      log: { level: 'warn' },
    }),
  );
  const vpps = peers.map((p) => amqpBus({ name: p, peers: [name], url: URL_, queueType: 'classic' }));
  let reports = 0;
  for (const v of vpps)
    v.onReport(() => {
      reports++;
    });
  for (const v of vpps)
    v.onCapabilities(() => undefined)
      .onDeviceCapabilities(() => undefined)
      .onGetAllPrices(() => undefined);
  const child = spawn(process.execPath, [HUB, '--config', path.join(dir, 'hub.json')], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let idleRss = NaN;
  let cpuPct = NaN;
  let sent = 0;
  try {
    for (const v of vpps) await v.start();
    await new Promise((r) => setTimeout(r, 3000)); // connected, registered, sampling: idle
    idleRss = await rssMedian(child.pid as number);
    for (const v of vpps) {
      await v.publish(name, {
        msg: 'get_periodic_report',
        interval: 1,
        first_from: null,
        resolution: 1,
        signals: ['meter.p', 'meter.q', 'meter.e', 'boiler.p'],
      });
    }
    await new Promise((r) => setTimeout(r, 3000));
    const before = proc(child.pid as number);
    const r0 = reports;
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    const after = proc(child.pid as number);
    sent = reports - r0;
    const ticksPerS = 100; // USER_HZ on Linux
    cpuPct = ((after.ticks - before.ticks) / ticksPerS / ((Date.now() - t0) / 1000)) * 100;
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    for (const v of vpps) await v.close();
    const conn = await connect(URL_);
    const ch = await conn.createChannel();
    for (const e of [name, ...peers]) {
      await ch.queueDelete(`private-${e}-in`);
      await ch.queueDelete(`private-${e}-dead`);
      await ch.exchangeDelete(`private-${e}-dlx`);
    }
    for (const p of peers) {
      await ch.queueDelete(`private-${name}-in:${p}`);
      await ch.exchangeDelete(`${name}-to-${p}`);
      await ch.exchangeDelete(`${p}-to-${name}`);
    }
    await conn.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const rate = sent / SECONDS;
  const lines = [
    '## Hub (bench/hub.ts)',
    '',
    `Command: \`npm run build && node .out/bench/hub.js\`, ${new Date().toISOString()}, Node ${process.version} (${process.platform}/${process.arch});`,
    `load average before ${load0}, after ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}.`,
    '',
    '| measure | hub | baseline | ratio / difference | target |',
    '| :-- | --: | --: | --: | :-- |',
    `| start-up, \`--version\` vs \`node -e 0\` (median of ${RUNS}) | ${median(hub).toFixed(0)} ms | ${median(bare).toFixed(0)} ms | ${(median(hub) / median(bare)).toFixed(2)}x | <= 1.2x: ${median(hub) / median(bare) <= 1.2 ? 'met' : 'missed'} |`,
    `| start-up of the whole hub, \`check-config examples/hub.json\` vs \`node -e 0\` | ${median(whole).toFixed(0)} ms | ${median(bare).toFixed(0)} ms | ${(median(whole) / median(bare)).toFixed(2)}x | |`,
    `| dist/hub.js (${size === code ? 'minified' : `packed (\`--pack\`); minified code inside: ${code.toLocaleString('en-US')} B`}) | ${size.toLocaleString('en-US')} B | | | <= 131,072 B: ${size <= 131_072 ? 'met' : 'missed'} |`,
    `| idle RSS (median of 10 samples over 5 s), connected and sampling, vs bare node holding a socket | ${(idleRss / 1024).toFixed(1)} MB | ${(bareRss / 1024).toFixed(1)} MB | +${((idleRss - bareRss) / 1024).toFixed(1)} MB | <= +15 MB: ${idleRss - bareRss <= 15 * 1024 ? 'met' : 'missed'} |`,
    `| CPU sending ${rate.toFixed(1)} reports/s for ${SECONDS} s (4 signals, 1 s resolution) | ${cpuPct.toFixed(2)}% of a core | | | <= 1%: ${cpuPct <= 1 ? 'met' : 'missed'} |`,
    '',
  ];
  const section = lines.join('\n');
  console.log(section);
  replaceSection('## Hub (bench/hub.ts)', section, resultsPath('BENCH_HUB_RESULTS'));
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
