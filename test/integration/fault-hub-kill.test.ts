/**
 * Fault test 4 (issue 7): the hub process killed with SIGKILL at random moments while producing, at least 50
 * times; after each restart everything it had accepted is delivered, and the outbox is never corrupt.
 *
 * Production: three VPPs each subscribe to a periodic report every second. A hub killed every second or so rarely
 * writes its subscriptions' progress (state.ts writes it lazily, within a minute), so every restart catches up on
 * the periods since the last write, one report per 100 ms per subscription (src/device/reports.ts paces a backlog),
 * each appended to the outbox and published with a confirm: the same periods again, with the same message ids,
 * until a progress write lets it pass them. No test-only knob is needed for the hub to produce. A cycle produced
 * when the outbox has records appended since the last kill.
 *
 * "Accepted" is observable: a message is accepted once its record is in an outbox segment file. After each kill,
 * before the restart, the segment files are read as they are (scanOutbox, the outbox's own parser, which changes
 * nothing); every message record found there, acked or not, must in the end be consumed from the VPP's queue. The
 * same files must also replay (Outbox.open on a copy, so the hub's own recovery still sees the crash) to exactly
 * the unacked messages the scan found. A torn last record in the newest segment is a record never accepted and
 * allowed; a bad record anywhere, or a bad header other than a segment created and never written, is corruption.
 *
 * Kills land in two places, chosen at random: three in four after the hub logs "hub running" (0-1000 ms later:
 * the catch-up burst, confirms in flight, tombstones not yet written), one in four 0 ms to a start-up's time after
 * the spawn (node booting, the outbox recovering, the registration, the resend of what the last kill left).
 * KILL_SEED replays a run's kill schedule (start-up timing still varies); KILL_CYCLES changes the count.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { connect } from '../../src/amqp/index.js';
import { amqpBus } from '../../src/bus/index.js';
import { Outbox, type OutboxError, scanOutbox } from '../../src/device/outbox.js';
import { AMQP_URL, timed } from '../helpers/amqp.js';
import { until } from '../helpers/bus.js';
import { sleep, withDeadline } from '../helpers/deadline.js';
import { hubBroker } from '../helpers/hub-process.js';
import { Random } from '../helpers/random.js';

const HUB_JS = fileURLToPath(new URL('../../src/bin/hub.js', import.meta.url));
const CYCLES = Number(process.env['KILL_CYCLES'] ?? 50);
const SEED = process.env['KILL_SEED'] === undefined ? Date.now() >>> 0 : Number(process.env['KILL_SEED']) >>> 0;
const VPPS = 3;
/** The segment header's size (outbox.ts): a newest segment shorter than it was created and never written. */
const SEGMENT_HEADER = 8;

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** The hub as systemd runs it; `running` resolves true on "hub running", false if the process ends first. */
class HubProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<Exit>;
  readonly running: Promise<boolean>;
  readonly spawnedAt = Date.now();
  #tail = '';

  constructor(config: string) {
    this.child = spawn(process.execPath, [HUB_JS, '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
    let up!: (v: boolean) => void;
    this.running = new Promise((resolve) => {
      up = resolve;
    });
    void this.exited.then(() => up(false));
    const keep = (d: string): void => {
      // Only the tail, for failure messages: a long run logs a lot.
      this.#tail = (this.#tail + d).slice(-4000);
      if (this.#tail.includes('"hub running"')) up(true);
    };
    this.child.stdout?.setEncoding('utf8').on('data', keep);
    this.child.stderr?.setEncoding('utf8').on('data', keep);
  }

  get output(): string {
    return this.#tail;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }
}

/** What one look at the outbox's files found. */
interface Look {
  /** messageId of every message record on disk, acked or not. */
  messages: Set<string>;
  /** messageId of the messages without a tombstone: what a restart must send again. */
  /** The message id of each unacked record, in file order: a message appended again (the same id) is there twice. */
  unacked: string[];
  /** A newest segment ending in a partial record (a write cut by the kill). */
  torn: boolean;
  /** Every message record on disk as `segment:record id`: a record not in the last cycle's scan was appended since. */
  records: Set<string>;
}

/** Reads the outbox's files without changing them and checks they are sound (see the top comment). */
async function look(dir: string, when: string): Promise<Look> {
  const result: Look = { messages: new Set(), unacked: [], torn: false, records: new Set() };
  if (!existsSync(dir)) return result; // killed before the outbox was ever opened
  const scans = await scanOutbox(dir);
  const pending = new Map<number, string>();
  for (const [i, seg] of scans.entries()) {
    const newest = i === scans.length - 1;
    if (!seg.header) {
      assert.ok(newest && seg.size < SEGMENT_HEADER, `${when}: ${seg.name} has a bad header (${seg.size} B)`);
      continue;
    }
    assert.is(seg.bad, 0, `${when}: ${seg.name} has ${seg.bad} records with a bad CRC`);
    if (seg.rest !== '') {
      assert.ok(
        newest && seg.rest === 'a short record',
        `${when}: ${seg.name} is cut at ${seg.rest} (newest: ${newest})`,
      );
      result.torn = true;
    }
    // In file order, as open replays them: a tombstone acks the message with its id written before it.
    for (const e of seg.entries) {
      if (e.kind === 'message') {
        result.messages.add(e.messageId);
        result.records.add(`${seg.name}:${e.id}`);
        if (!pending.has(e.id)) pending.set(e.id, e.messageId);
      } else {
        pending.delete(e.id);
      }
    }
  }
  for (const id of pending.values()) result.unacked.push(id);
  return result;
}

/** Replays a copy of the outbox as the next start will: it must not throw and must keep exactly `unacked`. */
async function replay(dir: string, work: string, unacked: readonly string[], when: string): Promise<void> {
  if (!existsSync(dir)) return;
  const copy = path.join(work, 'replay');
  rmSync(copy, { recursive: true, force: true });
  cpSync(dir, copy, { recursive: true });
  const warnings: OutboxError[] = [];
  try {
    const box = await Outbox.open(copy, { onWarning: (w) => warnings.push(w) });
    const kept = box
      .pending()
      .map((r) => r.messageId)
      .sort();
    await box.close();
    assert.equal(kept, [...unacked].sort(), `${when}: the replay keeps what the files hold unacked`);
    assert.ok(
      warnings.every((w) => w.code === 'CORRUPT' && /after the last good record cut off/.test(w.message)),
      `${when}: replay warnings other than a torn tail: ${warnings.map((w) => w.message).join('; ')}`,
    );
  } finally {
    rmSync(copy, { recursive: true, force: true });
  }
}

const s = suite('fault: hub killed');

s(
  `the hub SIGKILLed at random moments while producing, ${CYCLES} times: all it accepted is delivered, its outbox never corrupt`,
  timed(async () => {
    const started = Date.now();
    const rng = new Random(SEED);
    console.log(`\n  fault-hub-kill: seed ${SEED} (KILL_SEED=${SEED} replays the kill schedule), ${CYCLES} cycles`);
    const id = `${process.pid}-${Date.now().toString(36)}`;
    const hubName = `heh-kill-${id}`;
    const vppNames = Array.from({ length: VPPS }, (_, i) => `vpp-kill-${id}-${i}`);
    const work = mkdtempSync(path.join(tmpdir(), 'hub-kill-'));
    const stateDir = path.join(work, 'state');
    const outboxDir = path.join(stateDir, 'outbox');
    const config = path.join(work, 'hub.json');
    writeFileSync(
      config,
      JSON.stringify({
        name: hubName,
        broker: hubBroker(work),
        peers: vppNames.map((name) => ({ name })),
        stateDir,
        resolutionS: 1,
        fsyncIntervalS: 1,
        devices: [{ name: 'meter', meter: { kind: 'simulated' } }],
      }),
    );

    // Send-only VPPs: their queues and exchanges, and the subscriptions; the consumer below takes every message.
    const vpps = vppNames.map((name) => amqpBus({ name, peers: [hubName], url: AMQP_URL, consume: false }));
    const conn = await connect(AMQP_URL, { connectionName: 'fault-hub-kill' });
    let hub: HubProcess | undefined;
    const killHub = async (): Promise<void> => {
      const h = hub;
      hub = undefined;
      if (h === undefined) return;
      if (h.alive) h.child.kill('SIGKILL');
      await h.exited;
    };
    try {
      const ch = await conn.createChannel();
      /** Deliveries per messageId, of every message the hub sent the VPPs. */
      const deliveries = new Map<string, number>();
      let lastReportAt = 0;
      let reports = 0;
      await Promise.all(vpps.map((v) => v.start()));
      for (const vpp of vppNames) {
        await ch.basicConsume(
          `private-${vpp}-in`,
          (m) => {
            const mid = m.properties.messageId ?? '';
            deliveries.set(mid, (deliveries.get(mid) ?? 0) + 1);
            if (m.properties.type === 'report') {
              reports++;
              lastReportAt = Date.now();
            }
            m.ack(); // after recording: a delivery the test saw is never lost by the test
          },
          { prefetch: 500 },
        );
      }

      const accepted = new Map<string, number>(); // messageId -> the cycle it was first seen on disk
      let startup = { total: 0, n: 0 };
      const waitRunning = async (h: HubProcess, when: string): Promise<void> => {
        const ok = await withDeadline(h.running, 20_000, `${when}: hub start`);
        assert.ok(ok, `${when}: the hub ended before running:\n${h.output}`);
        startup = { total: startup.total + Date.now() - h.spawnedAt, n: startup.n + 1 };
      };

      // The first start: the subscriptions, and the pipeline seen working before any kill.
      hub = new HubProcess(config);
      await waitRunning(hub, 'first start');
      for (const v of vpps)
        await v.publish(hubName, {
          msg: 'get_periodic_report',
          interval: 1,
          first_from: null,
          resolution: 1,
          signals: ['meter.p'],
        });
      await until(
        () => reports >= VPPS,
        () => `the first reports (${reports} of ${VPPS})`,
        10_000,
      );

      let whileStarting = 0;
      let producedCycles = 0;
      let inFlightAtKill = 0;
      let killsWithInFlight = 0;
      let torn = 0;
      let lastRecords = new Set<string>();
      for (let cycle = 1; cycle <= CYCLES; cycle++) {
        const when = `cycle ${cycle} (seed ${SEED})`;
        if (hub === undefined) {
          hub = new HubProcess(config);
          if (rng.bool(0.25)) {
            whileStarting++;
            await sleep(rng.int(Math.max(300, startup.total / startup.n))); // the kill schedule: a random moment
          } else {
            await waitRunning(hub, when);
            await sleep(rng.int(1000)); // the kill schedule: a random moment
          }
        } else {
          await sleep(rng.int(1000)); // the first start, already running
        }
        const h = hub;
        await killHub();
        const exit = await h.exited;
        assert.is(exit.signal, 'SIGKILL', `${when}: the hub ended by itself with ${String(exit.code)}:\n${h.output}`);

        const seen = await look(outboxDir, when);
        await replay(outboxDir, work, seen.unacked, when);
        for (const mid of seen.messages) if (!accepted.has(mid)) accepted.set(mid, cycle);
        // Produced: records appended in this cycle. A restart's catch-up makes again, with the same ids, the periods
        // the last kill left unsaved, and paces them (src/device/reports.ts): new records, rarely new ids.
        if ([...seen.records].some((r) => !lastRecords.has(r))) producedCycles++;
        lastRecords = seen.records;
        if (seen.unacked.length > 0) killsWithInFlight++;
        inFlightAtKill += seen.unacked.length;
        if (seen.torn) torn++;
      }

      // The last start: it resends what the last kill left; then the VPPs unsubscribe, and once reports have
      // stopped the hub is stopped cleanly, which writes the tombstones still in memory.
      hub = new HubProcess(config);
      await waitRunning(hub, 'the last start');
      for (const v of vpps)
        await v.publish(hubName, {
          msg: 'get_periodic_report',
          interval: -1,
          first_from: null,
          resolution: 1,
          signals: ['meter.p'],
        });
      // A quiet second and a half: a periodic report comes every second, and the catch-up burst back to back.
      await until(() => Date.now() - lastReportAt >= 1500, 'the reports to stop', 30_000, 100);
      const last = hub;
      hub = undefined;
      last.child.kill('SIGTERM');
      const exit = await withDeadline(last.exited, 15_000, 'the SIGTERM stop');
      assert.is(exit.code, 0, `the hub's clean stop:\n${last.output}`);
      const final = await look(outboxDir, 'after the clean stop');
      await replay(outboxDir, work, final.unacked, 'after the clean stop');
      assert.is(final.unacked.length, 0, 'the outbox is empty after the hub ran to the end: every message confirmed');
      for (const mid of final.messages) if (!accepted.has(mid)) accepted.set(mid, CYCLES + 1);

      // Deliveries are asynchronous to the confirms the hub saw. The hub has stopped, so a barrier published now into
      // each VPP's queue comes after every message it ever got: once the consumer has the barriers, it has them all.
      const barriers = vppNames.map((vpp) => `barrier-${vpp}`);
      for (const [i, vpp] of vppNames.entries())
        await ch.basicPublish('', `private-${vpp}-in`, '{}', { messageId: barriers[i] as string });
      await until(
        () => barriers.every((b) => deliveries.has(b)),
        () => `the barriers through the VPPs' queues (${barriers.filter((b) => deliveries.has(b)).length} of ${VPPS})`,
        10_000,
      );
      const lost = [...accepted.keys()].filter((mid) => !deliveries.has(mid));
      const consumed = [...accepted.keys()].filter((mid) => deliveries.has(mid)).length;
      const duplicates = [...accepted.keys()].reduce((n, mid) => n + Math.max(0, (deliveries.get(mid) ?? 0) - 1), 0);
      console.log(
        `  fault-hub-kill: cycles ${CYCLES} (${whileStarting} while starting), accepted ${accepted.size}, consumed ${consumed}, ` +
          `duplicates ${duplicates}, lost ${lost.length}; reports delivered ${reports}, in flight at a kill ${inFlightAtKill} ` +
          `(${killsWithInFlight} kills), torn tails ${torn}, cycles that produced ${producedCycles}, ${((Date.now() - started) / 1000).toFixed(1)} s`,
      );

      assert.equal(
        lost.map((mid) => `${mid} (on disk at cycle ${accepted.get(mid)})`).slice(0, 10),
        [],
        `lost ${lost.length} accepted messages`,
      );
      // The run must have exercised what it claims: kills with unconfirmed or untombstoned messages on disk, and
      // production in most of the cycles that let the hub run.
      assert.ok(killsWithInFlight >= CYCLES / 4, `kills with messages in flight: ${killsWithInFlight}`);
      assert.ok(
        producedCycles >= (CYCLES - whileStarting) / 2,
        `cycles that produced: ${producedCycles} of ${CYCLES - whileStarting}`,
      );
    } finally {
      await killHub();
      await Promise.allSettled(vpps.map((v) => v.close()));
      const ch = await conn.createChannel();
      for (const q of [hubName, ...vppNames].flatMap((n) => [`private-${n}-in`, `private-${n}-dead`]))
        await ch.queueDelete(q);
      for (const v of vppNames) await ch.queueDelete(`private-${hubName}-in:${v}`);
      for (const x of [hubName, ...vppNames].map((n) => `private-${n}-dlx`)) await ch.exchangeDelete(x);
      for (const x of vppNames.flatMap((v) => [`${hubName}-to-${v}`, `${v}-to-${hubName}`])) await ch.exchangeDelete(x);
      await conn.close();
      rmSync(work, { recursive: true, force: true });
    }
  }, 150_000),
);

s.run();
