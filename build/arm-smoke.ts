/**
 * CI: the bundled hub on an emulated Pi Zero CPU (../shared/tools/arm-node, ARM_ARCH=armel: Debian's ARMv6 Node 18
 * under qemu -cpu arm1176). `dist/hub.js --version`, then the emulated hub connects to the local RabbitMQ and
 * answers one `get_report` from a VPP running natively on the bus. Bounded: the whole run must fit in 2 minutes.
 *
 *   npm run build && node .out/build/arm-smoke.js
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '../src/amqp/index.js';
import { amqpBus } from '../src/bus/index.js';
import { EbTime, type Message } from '../src/codec/index.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const armNode = path.resolve(root, '../shared/tools/arm-node');
const hubJs = path.join(root, 'dist/hub.js');
const env = { ...process.env, ARM_ARCH: 'armel' };
const started = Date.now();
const elapsed = (): string => `${((Date.now() - started) / 1000).toFixed(1)} s`;
const tail = (lines: string[]): string => lines.join('').slice(-3000);

async function main(): Promise<void> {
  if (!existsSync(hubJs)) throw new Error(`${hubJs} is missing: run npm run build first`);
  const version = spawnSync(armNode, [hubJs, '--version'], { env, encoding: 'utf8', timeout: 90_000 });
  if (version.status !== 0 || !version.stdout.includes('ebadge-hub')) {
    throw new Error(
      `hub.js --version under arm-node: status ${String(version.status)}\n${version.stdout}\n${version.stderr.slice(-2000)}`,
    );
  }
  if (!version.stdout.includes('arm')) throw new Error(`not an ARM Node: ${version.stdout}`);
  console.log(`arm smoke: ${version.stdout.trim()} (${elapsed()})`);

  const id = `${process.pid}-${Date.now().toString(36)}`;
  const hub = `heh-arm-${id}`;
  const vpp = `vpp-arm-${id}`;
  const dir = mkdtempSync(path.join(tmpdir(), 'arm-smoke-'));
  const config = path.join(dir, 'hub.json');
  writeFileSync(
    config,
    JSON.stringify({
      name: hub,
      broker: { url: 'amqp://127.0.0.1:5672', username: 'guest' },
      peers: [{ name: vpp }],
      stateDir: path.join(dir, 'state'),
      resolutionS: 1,
      devices: [{ name: 'meter', meter: { kind: 'simulated', seed: 7 } }],
    }),
  );
  const bus = amqpBus({
    name: vpp,
    peers: [hub],
    url: 'amqp://guest:guest@127.0.0.1:5672',
    requestTimeoutMs: 30_000,
  });
  await bus.start(); // first, so that the hub's registration has a queue to go to
  const child = spawn(armNode, [hubJs, '--config', config], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`the emulated hub did not start within 90 s:\n${tail(out)}`)),
        90_000,
      );
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        out.push(d);
        if (out.join('').includes('"hub running"')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.stderr.setEncoding('utf8').on('data', (d: string) => out.push(d));
      void exited.then((code) => reject(new Error(`the emulated hub exited with ${String(code)}:\n${tail(out)}`)));
    });
    console.log(`arm smoke: the emulated hub is running (${elapsed()})`);
    await new Promise((r) => setTimeout(r, 4000)); // a few samples at 1 s
    const to = EbTime.fromEpochMs(Math.floor(Date.now() / 1000) * 1000 - 1000);
    const t0 = Date.now();
    const report = (await bus.request(hub, {
      msg: 'get_report',
      from: to.plusSeconds(-3),
      to,
      resolution: 1,
      signals: ['meter.p'],
    })) as Message<'report'>;
    const values = report.values['meter.p'] ?? [];
    if (report.msg !== 'report' || values.length !== 3) throw new Error(`unexpected reply ${JSON.stringify(report)}`);
    console.log(
      `arm smoke: get_report answered in ${Date.now() - t0} ms with ${JSON.stringify(values)} (${elapsed()})`,
    );
    child.kill('SIGTERM');
    const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 30_000))]);
    if (code !== 0) throw new Error(`the emulated hub ended with ${String(code)} after SIGTERM:\n${tail(out)}`);
    console.log(`arm smoke: ok, SIGTERM drained with exit 0 (${elapsed()})`);
  } finally {
    child.kill('SIGKILL');
    await bus.close();
    const conn = await connect('amqp://guest:guest@127.0.0.1:5672');
    const ch = await conn.createChannel();
    const queues = [`private-${hub}-in`, `private-${hub}-in:${vpp}`, `private-${hub}-dead`];
    for (const q of [...queues, `private-${vpp}-in`, `private-${vpp}-dead`]) await ch.queueDelete(q);
    for (const x of [`private-${hub}-dlx`, `private-${vpp}-dlx`, `${hub}-to-${vpp}`, `${vpp}-to-${hub}`])
      await ch.exchangeDelete(x);
    await conn.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`arm smoke: FAILED: ${(err as Error).message}`);
    process.exit(1);
  },
);
