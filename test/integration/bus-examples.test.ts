/**
 * The example programs run as they read: the first version's pair (examples/heh.ts answers get_load_report on the
 * `<name>-up/-down` queues; examples/vpp.ts asks and prints) and the 2016 pair (examples/vpp-2016.ts sends
 * get_report on a period; examples/heh-2016.ts answers with a report), each as its own process; and the README's
 * examples/aggregator.ts against the real hub (dist's source, src/bin/hub.ts) configured by examples/hub.json.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { connect } from '../../src/amqp/index.js';
import { AMQP_URL, timed } from '../helpers/amqp.js';
import { hubBroker } from '../helpers/hub-process.js';
import { repoRoot } from '../helpers/oracle.js';

const example = (name: string): string => fileURLToPath(new URL(`../../examples/${name}.js`, import.meta.url));
const hubJs = fileURLToPath(new URL('../../src/bin/hub.js', import.meta.url));
const run = `${process.pid}-${Date.now().toString(36)}`;

/** Starts a program and resolves with it once it printed `ready`; its output is collected. */
function start(file: string, args: string[], ready: RegExp): Promise<{ child: ChildProcess; out: string[] }> {
  const child = spawn(process.execPath, [file, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out: string[] = [];
  return new Promise((resolve, reject) => {
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      out.push(...d.split('\n').filter((l) => l !== ''));
      if (out.some((l) => ready.test(l))) resolve({ child, out });
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => out.push(`stderr: ${d}`));
    child.once('exit', (code) =>
      reject(new Error(`${file} exited with ${String(code)} before it was ready:\n${out.join('\n')}`)),
    );
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });
}

async function removeAll(queues: string[], exchanges: string[]): Promise<void> {
  const conn = await connect(AMQP_URL);
  const ch = await conn.createChannel();
  for (const q of queues) await ch.queueDelete(q);
  for (const x of exchanges) await ch.exchangeDelete(x);
  await conn.close();
}

const s = suite('example programs');

s(
  'D3.2.1: examples/heh.js answers examples/vpp.js with the hard-coded load_report',
  timed(async () => {
    const hub = `heh-ex-${run}`;
    const heh = await start(example('heh'), [AMQP_URL, hub], /answering/);
    try {
      const vpp = await start(example('vpp'), [AMQP_URL, hub], /load_report/);
      assert.is(await exited(vpp.child), 0);
      const report = JSON.parse(vpp.out.find((l) => l.includes('load_report')) as string) as {
        values: number[];
        device: string;
      };
      assert.equal(report.values, [0.12, 0.17, 0.33, 0]);
      assert.is(report.device, 'WaterHeater01');
    } finally {
      heh.child.kill('SIGTERM');
      await exited(heh.child);
      await removeAll(
        [`${hub}-up`, `${hub}-down`, `private-${hub}-dead`, 'private-vpp-example-dead'],
        [`private-${hub}-dlx`, 'private-vpp-example-dlx'],
      );
    }
  }, 30_000),
);

s(
  '2016: examples/vpp-2016.js asks on a period, examples/heh-2016.js answers with reports',
  timed(async () => {
    const hub = `heh-ex16-${run}`;
    const vppName = `vpp-ex16-${run}`;
    const heh = await start(example('heh-2016'), [AMQP_URL, hub, vppName], /answering/);
    try {
      const vpp = await start(
        example('vpp-2016'),
        [AMQP_URL, hub, vppName, '--count', '2', '--every', '200'],
        /"msg":"report"/,
      );
      assert.is(await exited(vpp.child), 0);
      const reports = vpp.out
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { msg: string; values: Record<string, unknown[]> });
      assert.ok(reports.length >= 2, vpp.out.join('\n'));
      assert.equal(Object.keys(reports[0]?.values ?? {}), ['total.p', 'WaterHeater01.p']);
      assert.is(reports[0]?.values['total.p']?.length, 4);
    } finally {
      heh.child.kill('SIGTERM');
      await exited(heh.child);
      await removeAll(
        [
          `private-${hub}-in`,
          `private-${hub}-in:${vppName}`,
          `private-${hub}-dead`,
          `private-${vppName}-in`,
          `private-${vppName}-dead`,
        ],
        [`private-${hub}-dlx`, `private-${vppName}-dlx`, `${hub}-to-${vppName}`, `${vppName}-to-${hub}`],
      );
    }
  }, 30_000),
);

s(
  'README: examples/aggregator.js gets a report and an activation decision from the hub of examples/hub.json',
  timed(async () => {
    const hub = `heh-exr-${run}`;
    const vppName = `vpp-exr-${run}`;
    const dir = mkdtempSync(path.join(tmpdir(), 'ebadge-example-'));
    const config = JSON.parse(readFileSync(path.join(repoRoot(), 'examples', 'hub.json'), 'utf8')) as {
      name: string;
      peers: { name: string }[];
      stateDir: string;
      broker: unknown;
    };
    config.name = hub;
    config.peers = config.peers.map((p) => ({ ...p, name: vppName }));
    config.stateDir = path.join(dir, 'state');
    config.broker = hubBroker(dir);
    writeFileSync(path.join(dir, 'hub.json'), JSON.stringify(config));
    const heh = await start(hubJs, ['--config', path.join(dir, 'hub.json')], /"hub running"/);
    try {
      const vpp = await start(example('aggregator'), [hub, vppName, AMQP_URL], /_activation/);
      assert.is(await exited(vpp.child), 0, vpp.out.join('\n'));
      const last = vpp.out.find((l) => l.includes('_activation')) as string;
      const report = JSON.parse(last.slice(0, last.lastIndexOf(' '))) as {
        msg: string;
        values: Record<string, unknown[]>;
      };
      assert.is(report.msg, 'report');
      assert.equal(Object.keys(report.values), ['meter.p']);
      assert.match(last, / (accept|reject|modify)_activation$/);
      // It says whom it logs in as: guest here, because the test broker's URL names it (never by default).
      assert.ok(
        vpp.out.some((l) => l.startsWith(`stderr: logging in as ${new URL(AMQP_URL).username}`)),
        vpp.out.join('\n'),
      );
    } finally {
      heh.child.kill('SIGTERM');
      await exited(heh.child);
      rmSync(dir, { recursive: true, force: true });
      await removeAll(
        [
          `private-${hub}-in`,
          `private-${hub}-in:${vppName}`,
          `private-${hub}-dead`,
          `private-${vppName}-in`,
          `private-${vppName}-dead`,
        ],
        [`private-${hub}-dlx`, `private-${vppName}-dlx`, `${hub}-to-${vppName}`, `${vppName}-to-${hub}`],
      );
    }
  }, 60_000),
);

s.run();
