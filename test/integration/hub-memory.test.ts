/**
 * The hub under a flood of bodies it must refuse (issue 15, item 1), as systemd runs it: `node hub.js` in a memory
 * cgroup of 150 MB (the unit's MemoryMax, when this runs as root and cgroup v1 or v2 lets us make one), against the
 * local RabbitMQ. Bodies of 60 MB and of 2 MB are published to its inbox one at a time with confirms; the hub refuses
 * each at its content header (over 1 MiB plus the envelope), unread, and logs it with its size and sender; the
 * broker dead-letters them (the dead-letter queue is purged as the test goes, or the broker would hold gigabytes).
 * Then a get_report is answered. Peak RSS (VmHWM, reset once the hub idles) stays within 30 MB of the idle RSS.
 *
 * HUB_MEMORY_BIG and HUB_MEMORY_SMALL set the counts (default 8 and 40; the issue's figure is 100 and 100: about
 * 6 GB through the broker, about a minute here); docs/amqp.md, "Bodies over the limit", records a full run.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { connect } from '../../src/amqp/index.js';
import { EbTime, type Message } from '../../src/codec/index.js';
import { AMQP_URL, timed } from '../helpers/amqp.js';
import { entity, until, withBus } from '../helpers/bus.js';
import { HubProcess, hubConfig } from '../helpers/hub-process.js';

const BIG = Number(process.env['HUB_MEMORY_BIG'] ?? 8);
const SMALL = Number(process.env['HUB_MEMORY_SMALL'] ?? 40);
const LIMIT_BYTES = 150 * 1024 * 1024;
const MB = 1024 * 1024;

const s = suite('hub memory');

/** A memory cgroup of `bytes` for one process, when this process may make one (root, cgroup v1 or v2). */
class MemoryCgroup {
  readonly dir: string;
  readonly v2: boolean;
  private constructor(dir: string, v2: boolean) {
    this.dir = dir;
    this.v2 = v2;
  }

  static make(bytes: number): MemoryCgroup | string {
    if (process.getuid?.() !== 0) return 'not root';
    const v2 = existsSync('/sys/fs/cgroup/cgroup.controllers');
    const base = v2 ? '/sys/fs/cgroup' : '/sys/fs/cgroup/memory';
    if (!existsSync(base)) return `no ${base}`;
    const dir = path.join(base, `ebadge-hub-memory-${process.pid}`);
    try {
      mkdirSync(dir);
      writeFileSync(path.join(dir, v2 ? 'memory.max' : 'memory.limit_in_bytes'), String(bytes));
      if (!v2) writeFileSync(path.join(dir, 'memory.swappiness'), '0');
    } catch (err) {
      try {
        rmdirSync(dir);
      } catch {
        // it was not made
      }
      return `cannot make a memory cgroup under ${base}: ${(err as Error).message}`;
    }
    return new MemoryCgroup(dir, v2);
  }

  add(pid: number): void {
    writeFileSync(path.join(this.dir, 'cgroup.procs'), String(pid));
  }

  /** OOM kills in the group (v2: memory.events oom_kill; v1: memory.oom_control oom_kill, kernels 4.13+). */
  oomKills(): number {
    const file = path.join(this.dir, this.v2 ? 'memory.events' : 'memory.oom_control');
    const m = /oom_kill (\d+)/.exec(readFileSync(file, 'utf8'));
    return m === null ? 0 : Number(m[1]);
  }

  remove(): void {
    try {
      rmdirSync(this.dir);
    } catch {
      // a process is still in it: it goes with the process
    }
  }
}

function status(pid: number): { rss: number; hwm: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(text)?.[1] ?? Number.NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

s(
  `${BIG} bodies of 60 MB and ${SMALL} of 2 MB, each refused unread; then a get_report is answered; peak RSS within 30 MB of idle`,
  timed(
    () =>
      withBus(async (f) => {
        const dir = mkdtempSync(path.join(tmpdir(), 'heh-memory-test-'));
        const hub = entity('heh');
        const vpp = entity('vpp');
        f.hubTopology(hub, [vpp]);
        const cgroup = MemoryCgroup.make(LIMIT_BYTES);
        let h: HubProcess | undefined;
        const conn = await connect(AMQP_URL, { connectionName: 'hub-memory-publisher' });
        let purging: ReturnType<typeof setInterval> | undefined;
        try {
          const configFile = path.join(dir, 'hub.json');
          writeFileSync(configFile, JSON.stringify(hubConfig(dir, hub, vpp), null, 2));
          const v = f.create({ name: vpp, peers: [hub], role: 'controller' });
          v.onCapabilities(() => undefined);
          v.onDeviceCapabilities(() => undefined);
          v.onGetAllPrices(() => undefined);
          await f.start();
          h = new HubProcess(['--config', configFile]);
          const pid = h.child.pid as number;
          if (typeof cgroup !== 'string') cgroup.add(pid);
          else console.log(`hub-memory: no memory cgroup (${cgroup}); RSS is measured all the same`);
          await h.waitFor('hub running', 20_000);
          // Idle: registered, sampling at 1 s. The peak is counted from here (clear_refs 5 resets VmHWM).
          await new Promise((r) => setTimeout(r, 3000));
          writeFileSync(`/proc/${pid}/clear_refs`, '5');
          const idle = status(pid).rss;

          const ch = await conn.createConfirmChannel();
          purging = setInterval(() => {
            void ch.queuePurge(`private-${hub}-dead`).catch(() => undefined);
          }, 500);
          const body = (bytes: number): Buffer => {
            const b = Buffer.alloc(bytes, 0x20);
            b.write(`{"msg":"set_clock","offset":1,"msg_id":"${randomUUID()}","ext_x":"`);
            b.write('"}', bytes - 2);
            return b;
          };
          const big = body(60_000_000);
          const small = body(2 * MB);
          const started = Date.now();
          // Interleaved, so that neither kind comes only after the other was done with.
          for (let i = 0, b = 0, k = 0; i < BIG + SMALL; i++) {
            const takeBig = b < BIG && (k >= SMALL || (i * BIG) / (BIG + SMALL) >= b);
            const payload = takeBig ? big : small;
            if (takeBig) b++;
            else k++;
            await ch.basicPublish(`${vpp}-to-${hub}`, 'set_clock', payload, {
              messageId: `flood-${i}`,
              contentType: 'application/json',
              appId: vpp,
              deliveryMode: 2,
            });
          }
          const refused = (): number =>
            h?.logs.filter((l) => l.msg === 'message refused' && l['code'] === 'TOO_LARGE').length ?? 0;
          await until(
            () => refused() === BIG + SMALL,
            () => `${BIG + SMALL} refusals logged (has ${refused()})`,
            600_000,
            200,
          );
          const floodMs = Date.now() - started;
          const line = h.logs.find(
            (l) => l.msg === 'message refused' && l['bytes'] === (BIG > 0 ? 60_000_000 : 2 * MB),
          );
          if (BIG + SMALL > 0) {
            assert.ok(line !== undefined, h.transcript());
            assert.equal([line['from'], line['code']], [vpp, 'TOO_LARGE']);
            assert.match(String(line['id']), /^flood-\d+$/);
          }

          const now = Math.floor(Date.now() / 1000) * 1000;
          const report = (await v.request(
            hub,
            {
              msg: 'get_report',
              from: EbTime.fromEpochMs(now - 2000),
              to: EbTime.fromEpochMs(now),
              resolution: 1,
              signals: ['meter.p'],
              request_id: randomUUID(),
            },
            { timeout: 10_000 },
          )) as Message<'report'>;
          assert.is(report.msg, 'report');
          const peak = status(pid).hwm;
          const kills = typeof cgroup === 'string' ? 0 : cgroup.oomKills();
          console.log(
            `hub-memory: ${BIG} x 60 MB + ${SMALL} x 2 MB (${((BIG * 60_000_000 + SMALL * 2 * MB) / 1e9).toFixed(2)} GB) in ${(floodMs / 1000).toFixed(1)} s; ` +
              `hub RSS idle ${(idle / MB).toFixed(1)} MB, peak ${(peak / MB).toFixed(1)} MB (+${((peak - idle) / MB).toFixed(1)} MB); ` +
              `${typeof cgroup === 'string' ? 'no cgroup' : `cgroup ${LIMIT_BYTES / MB} MB, ${kills} OOM kills`}`,
          );
          assert.is(kills, 0);
          assert.is(h.code, undefined, 'the hub is still running');
          assert.ok(peak - idle < 30 * MB, `peak ${peak} - idle ${idle} = ${((peak - idle) / MB).toFixed(1)} MB`);
          assert.is(await h.stop(), 0);
        } finally {
          if (purging !== undefined) clearInterval(purging);
          await conn.close().catch(() => undefined);
          await h?.kill();
          if (typeof cgroup !== 'string') cgroup.remove();
          rmSync(dir, { recursive: true, force: true });
        }
      }),
    900_000,
  ),
);

s.run();
