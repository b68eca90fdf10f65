/**
 * Fault test 4 over MQTT (issue 16, item 4): the MQTT hub (src/bin/hub-mqtt.ts, as dist/hub-mqtt.js runs it)
 * SIGKILLed at random moments while producing, against a throw-away Mosquitto (test/helpers/mosquitto.ts); after
 * each restart its outbox sends again, with the same message ids, what the broker had not acknowledged. As in
 * fault-hub-kill.test.ts (the AMQP one): a message is accepted once its record is in an outbox segment file, read
 * after each kill with the outbox's own parser (scanOutbox); every accepted message must in the end reach the VPP,
 * whose bus drops the copies by message id (counted).
 *
 * Production: the VPP subscribes to a periodic report every second; a hub killed every second or so rarely saves
 * its subscription's progress, so each restart catches up on the same periods with the same ids, paced, each
 * appended to the outbox and published. Kills land three in four 0-1000 ms after "hub running", one in four while
 * the hub starts. KILL_SEED replays the kill schedule; MQTT_KILL_CYCLES changes the count (default 20).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { EbTime, type Message } from '../../src/codec/index.js';
import { scanOutbox } from '../../src/device/outbox.js';
import { mqttBus } from '../../src/mqtt/index.js';
import { sleep, until, withDeadline } from '../helpers/deadline.js';
import { Mosquitto } from '../helpers/mosquitto.js';
import { Random } from '../helpers/random.js';

const HUB_MQTT_JS = fileURLToPath(new URL('../../src/bin/hub-mqtt.js', import.meta.url));
const CYCLES = Number(process.env['MQTT_KILL_CYCLES'] ?? 20);
const SEED = process.env['KILL_SEED'] === undefined ? Date.now() >>> 0 : Number(process.env['KILL_SEED']) >>> 0;
const MS = 15_000;

/** The hub as systemd runs it; `running` resolves true on "hub running", false if the process ends first. */
class HubProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly running: Promise<boolean>;
  readonly spawnedAt = Date.now();
  #tail = '';

  constructor(config: string) {
    this.child = spawn(process.execPath, [HUB_MQTT_JS, '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
    let up!: (v: boolean) => void;
    this.running = new Promise((resolve) => {
      up = resolve;
    });
    void this.exited.then(() => up(false));
    const keep = (d: string): void => {
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

/** The message ids in the outbox's files (all, and those without a tombstone), read without changing them. */
async function look(dir: string, when: string): Promise<{ messages: Set<string>; unacked: Set<string> }> {
  const messages = new Set<string>();
  const unacked = new Set<string>();
  if (!existsSync(dir)) return { messages, unacked };
  const scans = await scanOutbox(dir);
  const pending = new Map<number, string>();
  for (const [i, seg] of scans.entries()) {
    if (!seg.header) continue; // a segment created and never written (the AMQP test checks the files in depth)
    assert.is(seg.bad, 0, `${when}: ${seg.name} has ${seg.bad} records with a bad CRC`);
    assert.ok(seg.rest === '' || (i === scans.length - 1 && seg.rest === 'a short record'), `${when}: ${seg.rest}`);
    for (const e of seg.entries) {
      if (e.kind === 'message') {
        messages.add(e.messageId);
        if (!pending.has(e.id)) pending.set(e.id, e.messageId);
      } else {
        pending.delete(e.id);
      }
    }
  }
  for (const id of pending.values()) unacked.add(id);
  return { messages, unacked };
}

const s = suite('mqtt fault: hub killed');

s(
  `the MQTT hub SIGKILLed at random moments while producing, ${CYCLES} times: all it accepted is delivered`,
  async () => {
    const started = Date.now();
    const rng = new Random(SEED);
    console.log(`\n  mqtt-hub-kill: seed ${SEED} (KILL_SEED=${SEED} replays the kill schedule), ${CYCLES} cycles`);
    const broker = await Mosquitto.start({ config: () => ['max_queued_messages 1000000'] });
    const id = `${process.pid}-${Date.now().toString(36)}`;
    const hubName = `heh-mqkill-${id}`;
    const vppName = `vpp-mqkill-${id}`;
    const work = mkdtempSync(path.join(tmpdir(), 'mqtt-hub-kill-'));
    const stateDir = path.join(work, 'state');
    const outboxDir = path.join(stateDir, 'outbox');
    const config = path.join(work, 'hub.json');
    writeFileSync(
      config,
      JSON.stringify({
        name: hubName,
        broker: { url: broker.url, username: 'guest' },
        peers: [{ name: vppName }],
        stateDir,
        resolutionS: 1,
        fsyncIntervalS: 1,
        devices: [{ name: 'meter', meter: { kind: 'simulated' } }],
      }),
    );
    // The VPP: every delivery counted by its message id (MQTT 5 user property); its bus's dedupe drops the copies.
    const vpp = mqttBus({
      name: vppName,
      peers: [hubName],
      url: broker.url,
      reconnectDelay: 100,
      maxReconnectDelay: 400,
      budget: false,
    });
    const deliveries = new Map<string, number>();
    let reports = 0;
    let lastReportAt = 0;
    const dropped: string[] = [];
    vpp.onReport(() => {
      reports++;
      lastReportAt = Date.now();
    });
    vpp.on('duplicate', (mid) => dropped.push(mid));
    let hub: HubProcess | undefined;
    const killHub = async (): Promise<void> => {
      const h = hub;
      hub = undefined;
      if (h === undefined) return;
      if (h.alive) h.child.kill('SIGKILL');
      await h.exited;
    };
    try {
      await withDeadline(vpp.start(), MS, 'vpp start');
      vpp.transport.client?.on('message', (_t, _p, packet) => {
        const v = packet.properties?.userProperties?.['message_id'];
        const mid = Array.isArray(v) ? (v[0] ?? '') : (v ?? '');
        deliveries.set(mid, (deliveries.get(mid) ?? 0) + 1);
      });
      const accepted = new Map<string, number>();
      const startup = { total: 0, n: 0 };
      const waitRunning = async (h: HubProcess, when: string): Promise<void> => {
        const ok = await withDeadline(h.running, 20_000, `${when}: hub start`);
        assert.ok(ok, `${when}: the hub ended before running:\n${h.output}`);
        startup.total += Date.now() - h.spawnedAt;
        startup.n++;
      };
      const subscribe = (interval: number): Promise<void> =>
        vpp.publish(hubName, {
          msg: 'get_periodic_report',
          interval,
          first_from: null,
          resolution: 1,
          signals: ['meter.p'],
        } as Message<'get_periodic_report'>);

      hub = new HubProcess(config);
      await waitRunning(hub, 'first start');
      await subscribe(1);
      await until(() => reports >= 1, 'the first report', MS);

      let whileStarting = 0;
      let inFlightAtKill = 0;
      let killsWithInFlight = 0;
      for (let cycle = 1; cycle <= CYCLES; cycle++) {
        const when = `cycle ${cycle} (seed ${SEED})`;
        if (hub === undefined) {
          hub = new HubProcess(config);
          if (rng.bool(0.25)) {
            whileStarting++;
            await sleep(rng.int(Math.max(300, startup.total / startup.n)));
          } else {
            await waitRunning(hub, when);
            await sleep(rng.int(1000));
          }
        } else {
          await sleep(rng.int(1000));
        }
        const h = hub;
        await killHub();
        const exit = await h.exited;
        assert.is(exit.signal, 'SIGKILL', `${when}: the hub ended by itself with ${String(exit.code)}:\n${h.output}`);
        const seen = await look(outboxDir, when);
        for (const mid of seen.messages) if (!accepted.has(mid)) accepted.set(mid, cycle);
        if (seen.unacked.size > 0) killsWithInFlight++;
        inFlightAtKill += seen.unacked.size;
      }

      // The last start sends what the last kill left; the VPP unsubscribes; once reports stopped, a clean stop.
      hub = new HubProcess(config);
      await waitRunning(hub, 'the last start');
      await subscribe(-1);
      await until(() => Date.now() - lastReportAt >= 1500, 'the reports to stop', 30_000, 100);
      const last = hub;
      hub = undefined;
      last.child.kill('SIGTERM');
      const exit = await withDeadline(last.exited, MS, 'the SIGTERM stop');
      assert.is(exit.code, 0, `the hub's clean stop:\n${last.output}`);
      const final = await look(outboxDir, 'after the clean stop');
      assert.is(final.unacked.size, 0, 'the outbox is empty after the hub ran to the end: every message acknowledged');
      for (const mid of final.messages) if (!accepted.has(mid)) accepted.set(mid, CYCLES + 1);

      // Mosquitto delivers a session's messages in the order it took them: a barrier sent as the hub now comes last.
      const barrier = mqttBus({ name: hubName, peers: [vppName], url: broker.url, consume: false });
      await withDeadline(barrier.start(), MS, 'barrier sender');
      await barrier.publish(
        vppName,
        {
          msg: 'report',
          from: EbTime.fromEpochMs(0),
          to: EbTime.fromEpochMs(1000),
          resolution: 1,
          values: { 'meter.p': [0] },
        } as Message<'report'>,
        { messageId: 'barrier' },
      );
      await barrier.close();
      await until(() => deliveries.has('barrier'), 'the barrier', MS);

      const lost = [...accepted.keys()].filter((mid) => !deliveries.has(mid));
      const copies = [...accepted.keys()].reduce((a, mid) => a + Math.max(0, (deliveries.get(mid) ?? 0) - 1), 0);
      console.log(
        `  mqtt-hub-kill: cycles ${CYCLES} (${whileStarting} while starting), accepted ${accepted.size}, ` +
          `delivered ${accepted.size - lost.length}, copies ${copies} (dropped by the VPP's dedupe ${dropped.length}), ` +
          `lost ${lost.length}; reports handled ${reports}, in flight at a kill ${inFlightAtKill} ` +
          `(${killsWithInFlight} kills), ${((Date.now() - started) / 1000).toFixed(1)} s`,
      );
      assert.equal(
        lost.map((mid) => `${mid} (on disk at cycle ${accepted.get(mid)})`).slice(0, 10),
        [],
        `lost ${lost.length} accepted messages`,
      );
      // Every copy that reached the VPP's handler stage was dropped by id, none handled twice.
      assert.ok(
        dropped.every((mid) => accepted.has(mid) || mid === ''),
        'dropped copies are of accepted messages',
      );
      assert.ok(killsWithInFlight >= CYCLES / 4, `kills with messages in flight: ${killsWithInFlight}`);
    } finally {
      await killHub();
      await vpp.close().catch(() => undefined);
      await broker.close();
      rmSync(work, { recursive: true, force: true });
    }
  },
);

s.run();
