/**
 * The hub's outbox: periodic reports the broker could not route (the VPP's queue was gone) are kept on disk, with
 * the hub stopped and started again, and delivered once the VPP is back; none is sent twice.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { connect } from '../../src/amqp/index.js';
import { type AmqpTransport, amqpBus, type Connector } from '../../src/bus/index.js';
import type { Message } from '../../src/codec/index.js';
import { Outbox } from '../../src/device/outbox.js';
import { AMQP_URL, timed } from '../helpers/amqp.js';
import { until } from '../helpers/bus.js';
import { hubBroker } from '../helpers/hub-process.js';

const HUB_JS = fileURLToPath(new URL('../../src/bin/hub.js', import.meta.url));

interface Hub {
  child: ChildProcess;
  exited: Promise<number | null>;
  /** What it wrote so far, stdout and stderr. */
  output(): string;
}

function startHub(config: string): Promise<Hub> {
  const child = spawn(process.execPath, [HUB_JS, '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the hub did not start:\n${out}`)), 15_000);
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('"hub running"')) {
        clearTimeout(timer);
        resolve({ child, exited, output: () => out });
      }
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    void exited.then((code) => reject(new Error(`the hub exited with ${String(code)}:\n${out}`)));
  });
}

const s = suite('hub outbox');

s(
  'reports that could not be routed wait in the outbox across a restart and arrive once the VPP is back',
  timed(async () => {
    const id = `${process.pid}-${Date.now().toString(36)}`;
    const hubName = `heh-obx-${id}`;
    const vppName = `vpp-obx-${id}`;
    const dir = mkdtempSync(path.join(tmpdir(), 'hub-outbox-'));
    const config = path.join(dir, 'hub.json');
    writeFileSync(
      config,
      JSON.stringify({
        name: hubName,
        broker: hubBroker(dir),
        peers: [{ name: vppName }],
        stateDir: path.join(dir, 'state'),
        resolutionS: 1,
        fsyncIntervalS: 1,
        devices: [{ name: 'meter', meter: { kind: 'simulated' } }],
      }),
    );
    const reports: Message<'report'>[] = [];
    const vpp = (): Connector<AmqpTransport> => {
      const c = amqpBus({ name: vppName, peers: [hubName], url: AMQP_URL });
      c.onReport((m) => {
        reports.push(m);
      });
      return c;
    };
    let bus = vpp();
    let hub: Awaited<ReturnType<typeof startHub>> | undefined;
    const conn = await connect(AMQP_URL);
    const ch = await conn.createChannel();
    try {
      await bus.start();
      hub = await startHub(config);
      await bus.publish(hubName, {
        msg: 'get_periodic_report',
        interval: 1,
        first_from: null,
        resolution: 1,
        signals: ['meter.p'],
      });
      await until(
        () => reports.length >= 2,
        () => `periodic reports to arrive (${reports.length})`,
        10_000,
      );
      // The VPP goes away with its queue: the broker returns the hub's reports as unroutable.
      await bus.close();
      await ch.queueDelete(`private-${vppName}-in`);
      // Each report the broker returns is a failed send (a warning naming the peer and the type), kept in the outbox:
      // wait for two of them.
      const h = hub;
      const unsent = (): number =>
        h
          .output()
          .split('\n')
          .filter((l) => l.includes('"level":"warn"') && l.includes(`"${vppName}"`) && l.includes('"report"')).length;
      await until(
        () => unsent() >= 2,
        () => `two reports not delivered:\n${h.output().slice(-2000)}`,
        10_000,
        50,
      );
      hub.child.kill('SIGTERM');
      assert.is(await hub.exited, 0);
      hub = undefined;
      const box = await Outbox.open(path.join(dir, 'state', 'outbox'));
      const kept = box.pending();
      await box.close();
      assert.ok(kept.length >= 2, `reports kept in the outbox: ${kept.length}`);
      assert.ok(kept.every((r) => r.peer === vppName && r.type === 'report'));

      // The VPP is back (its queue too), then the hub: what was kept is delivered first.
      reports.length = 0;
      bus = vpp();
      await bus.start();
      hub = await startHub(config);
      // Known by their periods, which the outbox kept (not by the time the queue went: a report due just before may
      // have been published just after, and kept all the same).
      const keptIds = [...new Set(kept.map((r) => (JSON.parse(r.body.toString()) as { from: string }).from))];
      const count = (id: string): number => reports.filter((r) => r.from.toString() === id).length;
      await until(
        () => keptIds.every((id) => count(id) >= 1),
        () => `the ${keptIds.length} kept reports (${keptIds.map(count).join(', ')} of each so far)`,
        10_000,
      );
      assert.equal(
        keptIds.map(count),
        keptIds.map(() => 1),
        'every kept report arrived once',
      );
      hub.child.kill('SIGTERM');
      assert.is(await hub.exited, 0);
      hub = undefined;
      const after = await Outbox.open(path.join(dir, 'state', 'outbox'));
      assert.is(
        after.pending().filter((r) => keptIds.includes((JSON.parse(r.body.toString()) as { from: string }).from))
          .length,
        0,
        'acked after delivery',
      );
      await after.close();
    } finally {
      hub?.child.kill('SIGKILL');
      await bus.close().catch(() => undefined);
      for (const q of [
        `private-${hubName}-in`,
        `private-${hubName}-in:${vppName}`,
        `private-${hubName}-dead`,
        `private-${vppName}-in`,
        `private-${vppName}-dead`,
      ])
        await ch.queueDelete(q);
      for (const x of [
        `private-${hubName}-dlx`,
        `private-${vppName}-dlx`,
        `${hubName}-to-${vppName}`,
        `${vppName}-to-${hubName}`,
      ])
        await ch.exchangeDelete(x);
      await conn.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 45_000),
);

s.run();
