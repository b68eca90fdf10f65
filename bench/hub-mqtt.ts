/**
 * What MQTT.js adds to the hub (issue 16, item 5): dist/hub.js (AMQP) against dist/hub-mqtt.js, in one run.
 *
 *  - Size: both bundled with build/bundle.ts's options into a temporary folder, with esbuild's metafile: minified
 *    bytes, the npm packages in each, and that hub.js holds no input of hub-mqtt.js's own (no src/mqtt file, no file
 *    of a package only hub-mqtt.js has): exit code 2 otherwise.
 *  - Start-up: `--version` (interleaved with `node -e 0`; medians), and the time from spawn to the hub's `hub running`
 *    log line: hub.js against the RabbitMQ on 127.0.0.1:5672, hub-mqtt.js against the Mosquitto on 127.0.0.1:1883,
 *    the same config otherwise (test/helpers/hub-process.ts's hubConfig: a meter and a boiler, simulated).
 *  - Idle RSS: of the running hub, 3 s after `hub running`, the median of 10 samples over 5 s (/proc VmRSS).
 *  - Each natively, and on emulated ARMv6 (`ARM_ARCH=armel ../shared/tools/arm-node`: Debian's Node 18 for ARMv6K
 *    under qemu-arm -cpu arm1176; RSS is then the qemu process's, emulator included), unless HUB_MQTT_BENCH_ARM=0.
 *
 *   npx tsc -p tsconfig.json && node .out/bench/hub-mqtt.js        (writes the "MQTT.js in the hub" section)
 *
 * Knobs: HUB_MQTT_BENCH_RUNS (15 native `--version` runs; 5 on ARM), HUB_MQTT_BENCH_STARTS (3; 2 on ARM),
 * HUB_MQTT_BENCH_ARM (1), HUB_MQTT_BENCH_RESULTS (bench/RESULTS.md; `-` for nowhere). The hubs' AMQP queues and
 * exchanges and MQTT sessions are removed at the end.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { BUNDLES, bundleCode } from '../build/bundle.js';
import { connect } from '../src/amqp/index.js';
import { hubConfig } from '../test/helpers/hub-process.js';
import { replaceSection, resultsPath } from './results-file.js';
import { fmt, median } from './stats.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const ARM_NODE = path.join(root, '../shared/tools/arm-node');
const num = (k: string, d: number): number => Number(process.env[k] ?? d);
const RUNS = num('HUB_MQTT_BENCH_RUNS', 15);
const STARTS = num('HUB_MQTT_BENCH_STARTS', 3);
const ARM = process.env['HUB_MQTT_BENCH_ARM'] !== '0';
const SECTION = '## MQTT.js in the hub (bench/hub-mqtt.ts)';
const FILES = ['dist/hub.js', 'dist/hub-mqtt.js'] as const;
type File = (typeof FILES)[number];

const log = (msg: string): void => {
  process.stderr.write(`[hub-mqtt-bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const load = (): string =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');

interface Built {
  bytes: number;
  /** Minified bytes per npm package (and per source folder), largest first. */
  groups: Map<string, number>;
  inputs: string[];
}

function group(file: string): string {
  return /node_modules\/(@[^/]+\/[^/]+|[^/]+)/.exec(file)?.[1] ?? file.split('/').slice(0, 2).join('/');
}

async function bundleInto(dir: string, file: File): Promise<Built> {
  const entry = BUNDLES[file];
  if (entry === undefined) throw new Error(`build/bundle.ts has no ${file}`);
  const out = path.join(dir, path.basename(file));
  const { code, metafile } = await bundleCode(entry, out);
  writeFileSync(out, code);
  const output = Object.values(metafile.outputs)[0];
  if (output === undefined) throw new Error(`${file}: esbuild wrote no output`);
  const groups = new Map<string, number>();
  for (const [input, { bytesInOutput }] of Object.entries(output.inputs))
    groups.set(group(input), (groups.get(group(input)) ?? 0) + bytesInOutput);
  return {
    bytes: readFileSync(out).length,
    groups: new Map([...groups].sort((a, b) => b[1] - a[1])),
    inputs: Object.keys(output.inputs),
  };
}

/** An npm package's group (`mqtt`, `@noble/curves`), not a source folder's (`src/device`). */
const isPackage = (g: string): boolean => !g.includes('/') || g.startsWith('@');

/** The command line of a node: native, or ARMv6 under qemu. */
interface Runtime {
  name: string;
  cmd: string;
  pre: string[];
  env: NodeJS.ProcessEnv;
}
const NATIVE: Runtime = {
  name: `native (Node ${process.version}, ${process.arch})`,
  cmd: process.execPath,
  pre: [],
  env: process.env,
};
const ARMV6: Runtime = {
  name: 'ARMv6, emulated (ARM_ARCH=armel arm-node: Node 18, qemu-arm -cpu arm1176)',
  cmd: ARM_NODE,
  pre: [],
  env: { ...process.env, ARM_ARCH: 'armel' },
};

function wall(rt: Runtime, args: string[]): number {
  const t = process.hrtime.bigint();
  const r = spawnSync(rt.cmd, [...rt.pre, ...args], { encoding: 'utf8', env: rt.env });
  if (r.status !== 0) throw new Error(`${args.join(' ')}: exit ${String(r.status)} ${r.stderr}`);
  return Number(process.hrtime.bigint() - t) / 1e6;
}

function rssKb(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? Number.NaN);
}

interface Start {
  toRunningMs: number;
  rssKb: number;
}

/** Spawns the hub, times it to `hub running`, samples its idle RSS, stops it with SIGTERM. */
async function startHub(rt: Runtime, file: string, config: string, timeoutMs: number): Promise<Start> {
  const t0 = process.hrtime.bigint();
  const child: ChildProcess = spawn(rt.cmd, [...rt.pre, file, '--config', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: rt.env,
  });
  let out = '';
  let err = '';
  child.stderr?.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-2000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no "hub running" within ${timeoutMs} ms: ${out.slice(-1000)} ${err}`)),
        timeoutMs,
      );
      child.stdout?.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        if (out.includes('"hub running"')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`exited with ${String(code)}: ${out.slice(-1000)} ${err}`));
      });
    });
    const toRunningMs = Number(process.hrtime.bigint() - t0) / 1e6;
    await sleep(3000);
    const xs: number[] = [];
    for (let i = 0; i < 10; i++) {
      xs.push(rssKb(child.pid as number));
      await sleep(500);
    }
    return { toRunningMs, rssKb: median(xs) };
  } finally {
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(t);
  }
}

interface Measured {
  version: Record<File | 'node -e 0', number>;
  starts: Record<File, Start[]>;
}

async function measure(
  rt: Runtime,
  dir: string,
  runs: number,
  starts: number,
  suffix: string,
  names: string[],
): Promise<Measured> {
  const files: Record<File, string> = {
    'dist/hub.js': path.join(dir, 'hub.js'),
    'dist/hub-mqtt.js': path.join(dir, 'hub-mqtt.js'),
  };
  const v: Record<File | 'node -e 0', number[]> = { 'node -e 0': [], 'dist/hub.js': [], 'dist/hub-mqtt.js': [] };
  wall(rt, ['-e', '0']);
  for (const f of FILES) wall(rt, [files[f], '--version']);
  for (let i = 0; i < runs; i++) {
    v['node -e 0'].push(wall(rt, ['-e', '0']));
    for (const f of FILES) v[f].push(wall(rt, [files[f], '--version']));
  }
  log(
    `${rt.name}: --version ${FILES.map((f) => `${f} ${fmt(median(v[f]), 0)} ms`).join(', ')}, node -e 0 ${fmt(median(v['node -e 0']), 0)} ms`,
  );
  const s: Record<File, Start[]> = { 'dist/hub.js': [], 'dist/hub-mqtt.js': [] };
  const timeoutMs = rt === NATIVE ? 30_000 : 300_000;
  for (let i = 0; i < starts; i++) {
    for (const f of FILES) {
      const mqttHub = f === 'dist/hub-mqtt.js';
      const hub = `heh-hmb${suffix}${names.length}`;
      const vpp = `vpp-hmb${suffix}${names.length}`;
      names.push(hub, vpp);
      const cdir = mkdtempSync(path.join(tmpdir(), 'hub-mqtt-bench-'));
      const c = hubConfig(cdir, hub, vpp);
      if (mqttHub) c['broker'] = { url: 'mqtt://127.0.0.1:1883' };
      c['log'] = { level: 'info' };
      const config = path.join(cdir, 'hub.json');
      writeFileSync(config, JSON.stringify(c));
      try {
        const r = await startHub(rt, files[f], config, timeoutMs);
        s[f].push(r);
        log(`${rt.name}: ${f} hub running after ${fmt(r.toRunningMs, 0)} ms, idle RSS ${fmt(r.rssKb / 1024, 1)} MiB`);
      } finally {
        rmSync(cdir, { recursive: true, force: true });
      }
    }
  }
  return {
    version: {
      'node -e 0': median(v['node -e 0']),
      'dist/hub.js': median(v['dist/hub.js']),
      'dist/hub-mqtt.js': median(v['dist/hub-mqtt.js']),
    },
    starts: s,
  };
}

/** Deletes the AMQP queues and exchanges whose names hold `suffix`, and the MQTT sessions of `names`. */
async function cleanup(suffix: string, names: string[]): Promise<string> {
  const list = (what: string): string[] =>
    execFileSync('rabbitmqctl', [what, '-q', '--no-table-headers', 'name'], { encoding: 'utf8', stdio: 'pipe' })
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.includes(`hmb${suffix}`));
  const queues = list('list_queues');
  const exchanges = list('list_exchanges');
  const conn = await connect('amqp://guest:guest@127.0.0.1:5672');
  try {
    const ch = await conn.createChannel();
    for (const q of queues) await ch.queueDelete(q);
    for (const e of exchanges) await ch.exchangeDelete(e);
  } finally {
    await conn.close();
  }
  for (const clientId of names) {
    const c = await mqtt.connectAsync('mqtt://127.0.0.1:1883', {
      clientId,
      clean: true,
      protocolVersion: 4,
      reconnectPeriod: 0,
    });
    await c.endAsync();
  }
  return `${queues.length} queues, ${exchanges.length} exchanges and ${names.length} MQTT sessions removed`;
}

async function main(): Promise<void> {
  const started = new Date();
  const loadStart = load();
  const suffix = randomBytes(3).toString('hex');
  const dir = mkdtempSync(path.join(tmpdir(), 'hub-mqtt-bench-dist-'));
  writeFileSync(path.join(dir, 'package.json'), '{ "type": "commonjs" }\n');
  const names: string[] = [];
  let problems: string[] = [];
  const results: { rt: Runtime; m: Measured }[] = [];
  let built: Record<File, Built> | undefined;
  let cleaned = '';
  try {
    built = {
      'dist/hub.js': await bundleInto(dir, 'dist/hub.js'),
      'dist/hub-mqtt.js': await bundleInto(dir, 'dist/hub-mqtt.js'),
    };
    const [ha, hb] = [built['dist/hub.js'], built['dist/hub-mqtt.js']];
    const own = [...hb.groups.keys()].filter((g) => !ha.groups.has(g));
    const leaked = ha.inputs.filter((i) => i.includes('src/mqtt/') || own.includes(group(i)));
    problems = leaked.map((i) => `dist/hub.js holds ${i}`);
    for (const rt of ARM ? [NATIVE, ARMV6] : [NATIVE]) {
      const arm = rt !== NATIVE;
      results.push({
        rt,
        m: await measure(rt, dir, arm ? Math.min(RUNS, 5) : RUNS, arm ? Math.min(STARTS, 2) : STARTS, suffix, names),
      });
    }
  } finally {
    cleaned = await cleanup(suffix, names).catch((err: unknown) => `cleanup failed: ${String(err)}`);
    rmSync(dir, { recursive: true, force: true });
  }
  if (built === undefined) throw new Error('not built');
  const a = built['dist/hub.js'];
  const b = built['dist/hub-mqtt.js'];
  const own = [...b.groups].filter(([g]) => !a.groups.has(g));
  const ownPackages = own.filter(([g]) => isPackage(g));
  const ownBytes = own.reduce((n, [, x]) => n + x, 0);
  const kb = (n: number): string => `${fmt(n / 1024, 1)} KiB`;
  const lines = [
    SECTION,
    '',
    `Command: \`npx tsc -p tsconfig.json && node .out/bench/hub-mqtt.js\`, ${started.toISOString()}, esbuild with build/bundle.ts's options`,
    `(node18, cjs, minified) into a temporary folder; ${cpus().length} shared vCPUs; load average at the start ${loadStart}, at the end ${load()}${Number(loadStart.split(' ')[0]) > 1 ? ' (other work ran on this machine: compare the two files of this run, not the absolute times)' : ''}.`,
    `Hubs: test/helpers/hub-process.ts's hubConfig (a meter and a boiler, simulated), hub.js on the RabbitMQ at 127.0.0.1:5672, hub-mqtt.js on`,
    `the Mosquitto at 127.0.0.1:1883; ${cleaned}.`,
    '',
    '| | dist/hub.js | dist/hub-mqtt.js | difference |',
    '| :-- | --: | --: | --: |',
    `| minified bytes | ${fmt(a.bytes, 0)} B | ${fmt(b.bytes, 0)} B | +${fmt(b.bytes - a.bytes, 0)} B (${fmt(b.bytes / a.bytes, 2)}x) |`,
    `| npm packages in the file | ${[...a.groups.keys()].filter(isPackage).length} | ${[...b.groups.keys()].filter(isPackage).length} | +${ownPackages.length} |`,
  ];
  for (const { rt, m } of results) {
    const st = (f: File, k: keyof Start): number => median(m.starts[f].map((x) => x[k]));
    lines.push(
      `| ${rt.name}: \`--version\`, median of ${rt === NATIVE ? RUNS : Math.min(RUNS, 5)} (\`node -e 0\`: ${fmt(m.version['node -e 0'], 0)} ms) | ${fmt(m.version['dist/hub.js'], 0)} ms | ${fmt(m.version['dist/hub-mqtt.js'], 0)} ms | ${fmt(m.version['dist/hub-mqtt.js'] / m.version['dist/hub.js'], 2)}x |`,
      `| ${rt.name}: spawn to \`hub running\`, median of ${m.starts['dist/hub.js'].length} | ${fmt(st('dist/hub.js', 'toRunningMs'), 0)} ms | ${fmt(st('dist/hub-mqtt.js', 'toRunningMs'), 0)} ms | ${fmt(st('dist/hub-mqtt.js', 'toRunningMs') / st('dist/hub.js', 'toRunningMs'), 2)}x |`,
      `| ${rt.name}: idle RSS${rt === NATIVE ? '' : ' (the qemu process)'} | ${fmt(st('dist/hub.js', 'rssKb') / 1024, 1)} MiB | ${fmt(st('dist/hub-mqtt.js', 'rssKb') / 1024, 1)} MiB | +${fmt((st('dist/hub-mqtt.js', 'rssKb') - st('dist/hub.js', 'rssKb')) / 1024, 1)} MiB |`,
    );
  }
  lines.push(
    '',
    `What only hub-mqtt.js holds, ${kb(ownBytes)} of minified code: ${own.map(([g, x]) => `${g} ${kb(x)}`).join(', ')}.`,
    problems.length === 0
      ? `dist/hub.js holds no input of those (no src/mqtt file, no file of those ${ownPackages.length} packages): checked on the metafile.`
      : `**${problems.join('; ')}**`,
    '',
  );
  const section = lines.join('\n');
  console.log(section);
  replaceSection(SECTION, section, resultsPath('HUB_MQTT_BENCH_RESULTS'));
  if (problems.length > 0) process.exitCode = 2;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
