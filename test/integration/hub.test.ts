import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BusError, CONTENT_TYPE_JSON, type Connector, DM_VERSION } from '../../src/bus/index.js';
import { EbTime, type Message, type MessageType } from '../../src/codec/index.js';
import { timed, unique } from '../helpers/amqp.js';
import {
  ALL_TYPES,
  type BusFixture,
  barrierMessage,
  entity,
  isBarrier,
  NET_MS,
  UUID,
  until,
  withBus,
} from '../helpers/bus.js';
import { sleep, withDeadline } from '../helpers/deadline.js';
import { HubProcess, hubConfig, runToEnd } from '../helpers/hub-process.js';
import { FaultProxy } from '../helpers/proxy.js';

/**
 * The TCP ports process `pid` listens on (Linux: its socket inodes in /proc/<pid>/fd, matched against the LISTEN
 * entries of /proc/net/tcp and tcp6).
 */
function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m?.[1] !== undefined) inodes.add(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  const ports: number[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local address, state (0A: LISTEN), inode
      if (f[3] === '0A' && f[9] !== undefined && inodes.has(f[9]))
        ports.push(Number.parseInt(f[1]?.split(':')[1] ?? '', 16));
    }
  }
  return ports;
}

const s = suite('hub process');

// ---- the VPP on the bus --------------------------------------------------------------------------------------------

interface Got {
  m: Message;
  at: number;
}

interface HubTest {
  f: BusFixture;
  dir: string;
  hub: string;
  vpp: string;
  configFile: string;
  v: Connector;
  /** Everything the VPP received that no request took, in order. */
  got: Got[];
  /** Dead letters and handler errors at the VPP: must stay empty. */
  problems: string[];
  /** Spawns the hub and resolves when it runs. */
  start(): Promise<HubProcess>;
}

/**
 * A fresh temp dir and config, the VPP connector (started before any hub), and cleanup: hubs killed, the hub's
 * queues and exchanges deleted with the VPP's (BusFixture), the temp dir removed.
 */
function withHub(
  fn: (t: HubTest) => Promise<void>,
  configure?: (config: Record<string, unknown>, dir: string) => void,
): Promise<void> {
  return withBus(async (f) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'heh-hub-test-'));
    const hub = entity('heh');
    const vpp = entity('vpp');
    f.hubTopology(hub, [vpp]);
    const hubs: HubProcess[] = [];
    try {
      const config = hubConfig(dir, hub, vpp);
      configure?.(config, dir);
      const configFile = path.join(dir, 'hub.json');
      writeFileSync(configFile, JSON.stringify(config, null, 2));
      const v = f.create({ name: vpp, peers: [hub], role: 'controller' });
      const got: Got[] = [];
      for (const type of ALL_TYPES)
        v.handle(type, (m) => {
          got.push({ m: m as Message, at: Date.now() });
        });
      await f.start();
      const problems: string[] = [];
      v.on('dead-letter', (reason, code) => problems.push(`dead-letter ${code}: ${reason}`));
      v.on('handler-error', (err, type) => problems.push(`handler-error in ${type}: ${String(err)}`));
      const start = async (): Promise<HubProcess> => {
        const p = new HubProcess(['--config', configFile]);
        hubs.push(p);
        await p.waitFor('hub running');
        return p;
      };
      await fn({ f, dir, hub, vpp, configFile, v, got, problems, start });
    } finally {
      await Promise.all(hubs.map((p) => p.kill()));
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

/**
 * A barrier on the hub's path to the VPP once the hub has stopped: a barrier message published (amqplib) on
 * `<hub>-to-<vpp>` reaches the VPP after everything the hub had published, its publishes being confirmed. It is taken
 * out of `t.got` again.
 */
async function hubBarrier(t: HubTest): Promise<void> {
  const id = randomUUID();
  const ch = await t.f.channel();
  try {
    ch.publish(`${t.hub}-to-${t.vpp}`, 'response', Buffer.from(JSON.stringify(barrierMessage(id))), {
      contentType: CONTENT_TYPE_JSON,
      messageId: randomUUID(),
      appId: t.hub,
      type: 'response',
      headers: { 'x-ebadge-dm': DM_VERSION },
    });
    const at = (): number => t.got.findIndex((g) => isBarrier(g.m, id));
    await until(() => at() >= 0, 'the barrier at the VPP', NET_MS);
    t.got.splice(at(), 1);
  } finally {
    await ch.close().catch(() => undefined);
  }
}

const ts = (ms: number): EbTime => EbTime.fromEpochMs(ms);
const wholeSecond = (ms: number): number => Math.floor(ms / 1000) * 1000;

/** The error `response` a request was refused with (BusError REJECTED); fails if it was answered otherwise. */
async function refused(p: Promise<Message>): Promise<Message<'response'>> {
  let reply: Message;
  try {
    reply = await p;
  } catch (err) {
    if (err instanceof BusError && err.code === 'REJECTED' && err.reply?.msg === 'response')
      return err.reply as Message<'response'>;
    throw err;
  }
  throw new Error(`expected an error response, got ${JSON.stringify(reply)}`);
}

function ofType<T extends MessageType>(got: readonly Got[], type: T): (Got & { m: Message<T> })[] {
  return got.filter((g): g is Got & { m: Message<T> } => g.m.msg === type);
}

const reportsOf = (got: readonly Got[], requestId: string): (Got & { m: Message<'report'> })[] =>
  ofType(got, 'report').filter((g) => g.m.request_id === requestId);

const nonNull = (xs: readonly (number | null)[] | undefined): number[] =>
  (xs ?? []).filter((x): x is number => x !== null);

/** The hub's state file: prices are kept there, and no message of the catalogue gives them back to a VPP. */
function stateFile(dir: string): { prices: { kind: string; price: number }[] } {
  return JSON.parse(readFileSync(path.join(dir, 'state', 'hub-state.json'), 'utf8')) as {
    prices: { kind: string; price: number }[];
  };
}

// ---- 1. registration -----------------------------------------------------------------------------------------------

s(
  'registration: capabilities, then device_capabilities per device, then get_all_prices',
  timed(
    () =>
      withHub(async (t) => {
        const h = await t.start();
        await until(
          () => ofType(t.got, 'get_all_prices').length > 0,
          () => `get_all_prices (got ${t.got.map((g) => g.m.msg).join(', ')})`,
        );
        assert.equal(
          t.got.map((g) => g.m.msg),
          ['capabilities', 'device_capabilities', 'device_capabilities', 'get_all_prices'],
        );
        const caps = t.got[0]?.m as Message<'capabilities'>;
        assert.equal(caps.devices, ['meter', 'boiler']);
        assert.is(caps.dm_version, DM_VERSION);
        for (const m of ['get_report', 'activate', 'get_periodic_report', 'set_smart_mode'])
          assert.ok(caps.supported_msgs?.includes(m), m);
        assert.equal(
          t.got.slice(1, 3).map((g) => (g.m as Message<'device_capabilities'>).device),
          ['meter', 'boiler'],
        );
        const boiler = t.got[2]?.m as Message<'device_capabilities'>;
        assert.equal(boiler.signals, [{ name: 'p', desc: 'active power', unit: 'kW' }]);
        assert.is(boiler.type, 'boiler');
        assert.ok(
          h.logs.some((l) => l.msg === 'registered' && l['peer'] === t.vpp),
          h.transcript(),
        );
        assert.is(await h.stop(), 0);
        assert.equal(t.problems, []);
      }),
    20_000,
  ),
);

// ---- 2. every HEH-level type ---------------------------------------------------------------------------------------

s(
  'every HEH-level request is answered as the data model documents it (§3.3, §3.5, §3.6)',
  timed(
    () =>
      withHub(async (t) => {
        const { v, hub, got } = t;
        const h = await t.start();
        const t0 = Date.now();

        // The periodic subscription first: its reports take an interval and a sample to come.
        const r1 = randomUUID();
        const periodic = (interval: number, requestId: string): Promise<Message> =>
          v.request(hub, {
            msg: 'get_periodic_report',
            interval,
            first_from: null,
            resolution: 1,
            signals: ['boiler.p'],
            request_id: requestId,
            msg_id: randomUUID(),
          });
        const ack1 = (await periodic(2, r1)) as Message<'response'>;
        assert.is(ack1.response_code, 200, 'get_periodic_report with msg_id: 200');
        assert.is(ack1.ref_msg, 'get_periodic_report');

        // get_capabilities: device null, a device, an unknown device.
        const rq = randomUUID();
        const caps = (await v.request(hub, {
          msg: 'get_capabilities',
          device: null,
          request_id: rq,
        })) as Message<'capabilities'>;
        assert.is(caps.msg, 'capabilities');
        assert.is(caps.request_id, rq, 'capabilities echoes request_id');
        assert.equal(caps.devices, ['meter', 'boiler']);
        const dcap = (await v.request(hub, {
          msg: 'get_capabilities',
          device: 'boiler',
        })) as Message<'device_capabilities'>;
        assert.is(dcap.msg, 'device_capabilities');
        assert.is(dcap.device, 'boiler');
        assert.match(dcap.request_id ?? '', UUID);
        const rq462 = randomUUID();
        const e462 = await refused(v.request(hub, { msg: 'get_capabilities', device: 'toaster', request_id: rq462 }));
        assert.equal(
          [e462.response_code, e462.msg_id, e462.ref_msg, e462.request_id],
          [462, null, 'get_capabilities', rq462],
        );

        // get_activation_capacity: the boiler's 2 kW, nothing running.
        const cap = (await v.request(hub, {
          msg: 'get_activation_capacity',
          device: null,
        })) as Message<'activation_capacity'>;
        assert.equal([cap.msg, cap.pos_capacity, cap.neg_capacity, cap.device], ['activation_capacity', 2, 2, null]);
        assert.match(cap.request_id ?? '', UUID);

        // get_energy_events_realtime, then an event: energy_events pushed.
        const rt = (await v.request(hub, {
          msg: 'get_energy_events_realtime',
          severity: 1,
          msg_id: randomUUID(),
        })) as Message<'response'>;
        assert.is(rt.response_code, 200);
        const normal = (await v.request(hub, {
          msg: 'set_smart_mode',
          mode: 'normal',
          reset: false,
          msg_id: randomUUID(),
        })) as Message<'response'>;
        assert.is(normal.response_code, 200);
        await until(
          () => ofType(got, 'energy_events').some((g) => g.m.events.some((e) => e.type === 'mode_changed')),
          'energy_events with mode_changed pushed',
        );

        // Activations (§3.5 rules 4 and 5), in the future so that none starts during the test.
        const now = Date.now();
        const from = ts(now + 60_000);
        const to = ts(now + 120_000);
        const A = randomUUID();
        const activate = (id: string, count: number, quantity: number, f = from, t_ = to): Promise<Message> =>
          v.request(hub, { msg: 'activate', id, modification_count: count, from: f, to: t_, quantity, device: null });
        const d0 = await activate(A, 0, 1);
        assert.equal(d0, { msg: 'accept_activation', id: A, modification_count: 0 });
        assert.equal(await activate(A, 0, 1), d0, 'the same (id, count) again: the same decision');
        assert.equal(await activate(A, 1, 1.5), { msg: 'accept_activation', id: A, modification_count: 1 });
        const stale = await refused(activate(A, 0, 1));
        assert.equal(
          [stale.response_code, stale.msg_id, stale.ref_msg, stale.id],
          [450, null, 'activate', A],
          'a lower count: 450',
        );
        const B = randomUUID();
        const mod = (await activate(B, 0, 5)) as Message<'modify_activation'>;
        assert.equal(
          [mod.msg, mod.id, mod.modification_count, mod.quantity, mod.device],
          ['modify_activation', B, 0, 0.5, null],
          'above capacity: modified to what A (1.5 kW, the same window) leaves of the 2 kW',
        );
        assert.equal([mod.from.epochMs, mod.to.epochMs], [from.epochMs, to.epochMs]);
        const expired = (await activate(
          randomUUID(),
          0,
          1,
          ts(now - 7_200_000),
          ts(now - 3_600_000),
        )) as Message<'reject_activation'>;
        assert.equal([expired.msg, expired.code], ['reject_activation', 454], 'expired: rejected with 454');
        const passive = (await v.request(hub, {
          msg: 'set_smart_mode',
          mode: 'passive',
          reset: false,
          msg_id: randomUUID(),
        })) as Message<'response'>;
        assert.is(passive.response_code, 200);
        const inPassive = (await activate(randomUUID(), 0, 1)) as Message<'reject_activation'>;
        assert.equal([inPassive.msg, inPassive.code], ['reject_activation', 451], 'passive mode: rejected with 451');
        assert.is(
          (
            (await v.request(hub, {
              msg: 'set_smart_mode',
              mode: 'normal',
              reset: false,
              msg_id: randomUUID(),
            })) as Message<'response'>
          ).response_code,
          200,
        );
        assert.equal(
          await activate(A, 2, 0),
          { msg: 'accept_activation', id: A, modification_count: 2 },
          'cancel (count + 1, quantity 0): accepted',
        );

        // set_clock is refused (allowClockChange false); prices are acked.
        const clockId = randomUUID();
        const clock = await refused(v.request(hub, { msg: 'set_clock', offset: 5, msg_id: clockId }));
        assert.equal([clock.response_code, clock.msg_id, clock.ref_msg], [451, clockId, 'set_clock']);
        const load = (await v.request(hub, {
          msg: 'load_price',
          from: ts(now),
          to: ts(now + 3_600_000),
          price: 0.21,
          msg_id: randomUUID(),
        })) as Message<'response'>;
        assert.equal([load.msg, load.response_code, load.ref_msg], ['response', 200, 'load_price']);
        const gen = (await v.request(hub, {
          msg: 'generation_price',
          from: ts(now),
          to: ts(now + 3_600_000),
          price: 0.07,
          device: 'boiler',
          msg_id: randomUUID(),
        })) as Message<'response'>;
        assert.equal([gen.msg, gen.response_code, gen.ref_msg], ['response', 200, 'generation_price']);

        // Contingency: no reply, the events are recorded.
        const C = randomUUID();
        await v.publish(hub, {
          msg: 'contingency_activate',
          id: C,
          from: ts(now),
          to: ts(now + 600_000),
          max_quantity: 1,
        });
        // The contingency has started once its event is pushed (the realtime subscription above): then end it.
        await until(
          () => ofType(got, 'energy_events').some((g) => g.m.events.some((e) => e.type === 'contingency_start')),
          'energy_events with contingency_start pushed',
        );
        const contingencyEnd = Date.now();
        await v.publish(hub, { msg: 'contingency_end', id: C, end: ts(contingencyEnd) });

        // get_report from the history, once a few samples are in: asked again until both signals have a value.
        const rFrom = wholeSecond(t0) - 1000;
        let rTo = 0;
        const rr = randomUUID();
        const askReport = async (): Promise<Message<'report'>> => {
          rTo = wholeSecond(Date.now());
          return (await v.request(hub, {
            msg: 'get_report',
            from: ts(rFrom),
            to: ts(rTo),
            resolution: 1,
            signals: ['meter.p', 'boiler.p'],
            request_id: rr,
          })) as Message<'report'>;
        };
        const filled = (r: Message<'report'>): boolean =>
          ['meter.p', 'boiler.p'].every((sig) => nonNull(r.values[sig]).length >= 1);
        let report = await askReport();
        await until(
          async () => {
            if (!filled(report)) report = await askReport();
            return filled(report);
          },
          () => `values of meter.p and boiler.p in the history: ${JSON.stringify(report.values)}`,
          5_000,
          100,
        );
        assert.is(report.msg, 'report');
        assert.is(report.request_id, rr);
        assert.equal([report.from.epochMs, report.to.epochMs, report.resolution], [rFrom, rTo, 1]);
        for (const sig of ['meter.p', 'boiler.p']) {
          assert.is(report.values[sig]?.length, (rTo - rFrom) / 1000, sig);
          assert.ok(
            nonNull(report.values[sig]).length >= 1,
            `${sig}: values from the history: ${JSON.stringify(report.values[sig])}`,
          );
        }
        const rr460 = randomUUID();
        const e460 = await refused(
          v.request(hub, {
            msg: 'get_report',
            from: ts(rFrom),
            to: ts(rTo),
            resolution: 1,
            signals: ['meter.p', 'toaster.p'],
            request_id: rr460,
          }),
        );
        assert.equal(
          [e460.response_code, e460.msg_id, e460.ref_msg, e460.request_id],
          [460, null, 'get_report', rr460],
          'unknown signal: 460',
        );
        // With resolutionS 1 every resolution is a multiple of it; 461 for "not a multiple" is checked in the meter test
        // (resolutionS 2). Here: a resolution finer than the hub can provide for the period (over its cap of values).
        const e461 = await refused(
          v.request(hub, {
            msg: 'get_report',
            from: ts(rTo - 1_500_000_000),
            to: ts(rTo),
            resolution: 1,
            signals: ['meter.p'],
          }),
        );
        assert.equal(
          [e461.response_code, e461.ref_msg],
          [461, 'get_report'],
          'a resolution too fine for the period: 461',
        );
        // from >= to: the codec refuses to encode it, so it goes raw, through amqplib, as a 2015 peer could send it.
        const rawId = randomUUID();
        const ch = await t.f.channel();
        ch.publish(
          `${t.vpp}-to-${hub}`,
          'get_report',
          Buffer.from(
            JSON.stringify({
              msg: 'get_report',
              from: ts(rTo).toString(),
              to: ts(rTo).toString(),
              resolution: 1,
              signals: ['meter.p'],
              msg_id: rawId,
            }),
          ),
          {
            contentType: CONTENT_TYPE_JSON,
            messageId: rawId,
            appId: t.vpp,
            type: 'get_report',
            persistent: true,
            headers: { 'x-ebadge-dm': DM_VERSION },
          },
        );
        await until(
          () => ofType(got, 'response').some((g) => g.m.msg_id === rawId),
          'the response to the raw get_report with from = to',
        );
        // An activate under another type's routing key (issue 15, item 4): broker permissions restrict routing keys,
        // so the hub refuses it, answers 400 by its id (it has no msg_id, §3.5 rule 3) and logs it; never executed.
        const misrouted = randomUUID();
        ch.publish(
          `${t.vpp}-to-${hub}`,
          'load_price',
          Buffer.from(
            JSON.stringify({
              msg: 'activate',
              id: misrouted,
              modification_count: 0,
              from: ts(Date.now()).toString(),
              to: ts(Date.now() + 600_000).toString(),
              quantity: 1,
              device: 'boiler',
            }),
          ),
          { contentType: CONTENT_TYPE_JSON, appId: t.vpp, type: 'activate', persistent: true },
        );
        await until(
          () => ofType(got, 'response').some((g) => g.m.id === misrouted),
          'the response to the activate sent as load_price',
        );
        await ch.close();
        const e454 = ofType(got, 'response').filter((g) => g.m.msg_id === rawId);
        assert.is(e454.length, 1);
        assert.is(e454[0]?.m.response_code, 454, 'from >= to: 454');
        const e400 = ofType(got, 'response').filter((g) => g.m.id === misrouted);
        assert.equal(
          e400.map((g) => [g.m.response_code, g.m.msg_id, g.m.ref_msg]),
          [[400, null, 'activate']],
        );
        assert.not.ok(
          got.some((g) => (g.m as { id?: string }).id === misrouted && g.m.msg !== 'response'),
          'no activation decision: it was never executed',
        );

        // get_load_report (the first version): the sum of both devices' power.
        const lr = (await v.request(hub, {
          msg: 'get_load_report',
          from: ts(rFrom),
          to: ts(rTo),
          resolution: 1,
          device: null,
        })) as Message<'load_report'>;
        assert.equal(
          [lr.msg, lr.from.epochMs, lr.to.epochMs, lr.resolution, lr.device],
          ['load_report', rFrom, rTo, 1, null],
        );
        assert.is(lr.values.length, (rTo - rFrom) / 1000);
        assert.ok(nonNull(lr.values).length >= 1, JSON.stringify(lr.values));

        // get_status_report and get_energy_events see the events, contingency included.
        const window = { from: ts(t0 - 60_000), to: ts(Date.now() + 60_000) };
        const sr = randomUUID();
        const status = (await v.request(hub, {
          msg: 'get_status_report',
          ...window,
          severity_threshold: 0,
          request_id: sr,
        })) as Message<'status_report'>;
        assert.equal(
          [status.msg, status.status, status.mode, status.request_id],
          ['status_report', 'ok', 'normal', sr],
        );
        assert.ok(Math.abs(status.clock.epochMs - Date.now()) < 5_000, 'clock is the hub time');
        const types = status.events.map((e) => e.type);
        for (const e of ['started', 'mode_changed', 'contingency_start', 'contingency_end'])
          assert.ok(types.includes(e), `${e} in ${types.join(', ')}`);
        const er = randomUUID();
        const events = (await v.request(hub, {
          msg: 'get_energy_events',
          ...window,
          severity: 2,
          request_id: er,
        })) as Message<'energy_events'>;
        assert.is(events.request_id, er);
        assert.ok(
          events.events.every((e) => e.severity >= 2),
          'severity filter',
        );
        const cs = events.events.find((e) => e.type === 'contingency_start');
        assert.ok(cs !== undefined, JSON.stringify(events.events));
        assert.is(
          cs.end_time?.epochMs,
          contingencyEnd,
          'the contingency ended: its event has the end_time of contingency_end (null = still going on)',
        );
        // Nothing answered the contingency messages (no msg_id; the spec wants no ack).
        assert.ok(
          !ofType(got, 'response').some((g) => g.m.ref_msg?.startsWith('contingency') === true),
          'no response to contingency_*',
        );

        // The periodic reports: r1's, then r2's replacing them, then none after interval -1.
        await until(() => reportsOf(got, r1).length >= 1, `a periodic report with request_id ${r1}`, 5_000);
        const p1 = reportsOf(got, r1)[0]?.m as Message<'report'>;
        assert.equal([p1.to.epochMs - p1.from.epochMs, p1.resolution, p1.values['boiler.p']?.length], [2000, 1, 2]);
        const r2 = randomUUID();
        assert.is(((await periodic(2, r2)) as Message<'response'>).response_code, 200);
        const replaced = Date.now();
        await until(() => reportsOf(got, r2).length >= 1, `a periodic report with request_id ${r2}`, 5_000);
        assert.ok(!reportsOf(got, r1).some((g) => g.at > replaced + 500), 'no report for the replaced subscription');
        const stop = (await v.request(hub, {
          msg: 'get_periodic_report',
          interval: -1,
          first_from: null,
          resolution: 1,
          signals: ['boiler.p'],
          msg_id: randomUUID(),
        })) as Message<'response'>;
        assert.is(stop.response_code, 200);
        const stopped = Date.now();
        const lastR2 = Math.max(...reportsOf(got, r2).map((g) => g.at));
        // Proving that a timer no longer fires: one interval (2 s) past the last report, with a margin, no report came.
        await sleep(Math.max(stopped + 500, lastR2 + 2_600) - Date.now());
        const late = ofType(got, 'report').filter((g) => g.at > stopped + 300);
        assert.is(late.length, 0, `interval -1 stops the reports: ${late.length} came after it`);

        assert.equal(t.problems, []);
        assert.is(await h.stop(), 0);
        assert.equal(
          h.logs.filter((l) => l.level === 'error').map((l) => l.msg),
          [],
          h.transcript(),
        );
        const refusals = h.logs.filter((l) => l.msg === 'message refused');
        assert.equal(
          refusals.map((l) => l['code']),
          ['DECODE_454', 'ROUTING_KEY_MISMATCH'],
          'only the raw from = to get_report and the misrouted activate were refused',
        );
        assert.match(String(refusals[1]?.['reason']), /the routing key 'load_price' does not name activate/);
        assert.equal([refusals[1]?.['routing_key'], refusals[1]?.['type']], ['load_price', 'activate']);
      }),
    30_000,
  ),
);

// ---- 3. restart --------------------------------------------------------------------------------------------------

s(
  'restart keeps the history, the subscription, prices and activations',
  timed(
    () =>
      withHub(async (t) => {
        const { v, hub, got } = t;
        const a = await t.start();
        const startA = Date.now();
        const rid = randomUUID();
        const ack = (await v.request(hub, {
          msg: 'get_periodic_report',
          interval: 2,
          first_from: null,
          resolution: 1,
          signals: ['boiler.p'],
          request_id: rid,
          msg_id: randomUUID(),
        })) as Message<'response'>;
        assert.is(ack.response_code, 200);
        const load = (await v.request(hub, {
          msg: 'load_price',
          from: ts(startA),
          to: ts(startA + 3_600_000),
          price: 0.25,
          msg_id: randomUUID(),
        })) as Message<'response'>;
        assert.is(load.response_code, 200);
        // Starts at once on the boiler: 1 of its 2 kW is then taken.
        const X = randomUUID();
        const activateX = (): Promise<Message> =>
          v.request(hub, {
            msg: 'activate',
            id: X,
            modification_count: 0,
            from: ts(Date.now()),
            to: ts(startA + 600_000),
            quantity: 1,
            device: 'boiler',
          });
        const decision = await activateX();
        assert.equal(decision, { msg: 'accept_activation', id: X, modification_count: 0 });
        const capacity = async (): Promise<number> =>
          (
            (await v.request(hub, {
              msg: 'get_activation_capacity',
              device: 'boiler',
            })) as Message<'activation_capacity'>
          ).pos_capacity;
        await until(async () => (await capacity()) === 1, 'the activation to run (boiler capacity 1 kW)', 3_000);
        await until(
          () => reportsOf(got, rid).length >= 1 && Date.now() >= startA + 2_500,
          'a periodic report and 2.5 s of history',
          6_000,
        );

        assert.is(await a.stop(), 0, a.transcript());
        const stopA = Date.now();
        assert.ok(a.has('stopped'), a.transcript());
        assert.equal(
          stateFile(t.dir).prices.map((p) => [p.kind, p.price]),
          [['load', 0.25]],
          'the price is in the state file',
        );

        const b = await t.start();
        const startB = Date.now();
        await until(() => ofType(got, 'get_all_prices').length === 2, 'the registration again after the restart');
        assert.is(ofType(got, 'capabilities').length, 2, 'capabilities are sent on every start');
        const rr = randomUUID();
        const from = wholeSecond(startA);
        const to = wholeSecond(stopA);
        const report = (await v.request(hub, {
          msg: 'get_report',
          from: ts(from),
          to: ts(to),
          resolution: 1,
          signals: ['boiler.p', 'meter.p'],
          request_id: rr,
        })) as Message<'report'>;
        for (const sig of ['boiler.p', 'meter.p']) {
          assert.ok(
            nonNull(report.values[sig]).length >= 2,
            `${sig} before the restart: ${JSON.stringify(report.values[sig])}`,
          );
        }
        assert.equal(await activateX(), decision, 'the decision for the same (id, count) is re-sent identically');
        assert.is(await capacity(), 1, 'the activation still runs after the restart');
        await until(() => reportsOf(got, rid).some((g) => g.at > startB), 'the periodic subscription to resume', 5_000);
        assert.equal(
          stateFile(t.dir).prices.map((p) => [p.kind, p.price]),
          [['load', 0.25]],
          'the price survived the restart',
        );
        assert.is(await b.stop(), 0, b.transcript());
        assert.equal(t.problems, []);
      }),
    30_000,
  ),
);

// ---- 4. configuration and CLI --------------------------------------------------------------------------------------

s(
  'bad configs: the documented message and exit 78; check-config, --version, usage errors',
  timed(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'heh-hub-test-'));
    try {
      const good = hubConfig(dir, 'heh-config-test', 'vpp-config-test');
      const write = (name: string, text: string): string => {
        const file = path.join(dir, name);
        writeFileSync(file, text);
        return file;
      };
      const goodFile = write('good.json', JSON.stringify(good));
      const devices = good['devices'] as Record<string, unknown>[];
      const cases: [what: string, file: string, message: string][] = [
        [
          'missing file',
          path.join(dir, 'missing.json'),
          `${path.join(dir, 'missing.json')}: $: expected a readable JSON file, found no file (ENOENT)`,
        ],
        [
          'invalid JSON',
          write('invalid.json', '{"name": "heh-x",\n  "peers": ['),
          `${path.join(dir, 'invalid.json')}: $: expected valid JSON, found invalid JSON at line 2 column 13 (the text ends too early)`,
        ],
        [
          'unknown key',
          write('unknown.json', JSON.stringify({ ...good, peer: good['peers'] })),
          `${path.join(dir, 'unknown.json')}: $.peer: expected one of the keys name, broker, peers, topology, declareExchanges, stateDir, resolutionS, historyHours, fsyncIntervalS, devices, crypto, budget, allowClockChange, log, found unknown key "peer" (did you mean "peers"?)`,
        ],
        [
          'bad meter kind',
          write(
            'kind.json',
            JSON.stringify({ ...good, devices: [devices[0], { ...devices[1], meter: { kind: 'modbus' } }] }),
          ),
          `${path.join(dir, 'kind.json')}: $.devices[1].meter.kind: expected one of "simulated", "csv", "command", "file", found "modbus"`,
        ],
        [
          'bad resolution',
          write('resolution.json', JSON.stringify({ ...good, resolutionS: 7 })),
          `${path.join(dir, 'resolution.json')}: $.resolutionS: expected an integer from 1 to 3600 that divides 3600, found 7`,
        ],
        [
          'password in the URL',
          write('password.json', JSON.stringify({ ...good, broker: { url: 'amqp://guest:hunter2@127.0.0.1:5672' } })),
          `${path.join(dir, 'password.json')}: $.broker.url: expected an amqp:// or amqps:// URL without a password (put the password in the file named by broker.passwordFile), found a password in the URL`,
        ],
      ];
      const [runs, check, version, unknown, badOption] = await Promise.all([
        Promise.all(cases.map(([, file]) => runToEnd(['--config', file]))),
        runToEnd(['check-config', '--config', goodFile]),
        runToEnd(['--version']),
        runToEnd(['frobnicate']),
        runToEnd(['run', '--confg', goodFile]),
      ]);
      cases.forEach(([what, , message], i) => {
        const p = runs[i] as HubProcess;
        assert.is(p.code, 78, `${what}: exit 78\n${p.transcript()}`);
        assert.equal(p.err, [`configuration error: ${message}`], what);
        assert.equal(p.out, [], `${what}: nothing on stdout`);
        assert.not.match(p.err.join('\n'), 'hunter2', `${what}: the password is never quoted`);
      });
      assert.is(check.code, 0, check.transcript());
      assert.equal(check.out, [`${goodFile}: OK (heh-config-test, 2 device(s), peers vpp-config-test)`]);
      assert.is(version.code, 0);
      assert.equal(version.out, [`ebadge-hub 0.2.0 (node ${process.version}, ${process.arch})`]);
      assert.is(unknown.code, 64, unknown.transcript());
      assert.is(unknown.err[0], 'error: unknown command "frobnicate"');
      assert.ok(
        unknown.err.some((l) => l.startsWith('usage: hub.js')),
        'the usage follows',
      );
      assert.is(badOption.code, 64, badOption.transcript());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 20_000),
);

// ---- 5. SIGTERM drains -------------------------------------------------------------------------------------------

s(
  'SIGTERM drains: every get_report sent just before it is answered exactly once, before or after a restart',
  timed(
    () =>
      withHub(async (t) => {
        const { v, hub, got } = t;
        const a = await t.start();
        const now = wholeSecond(Date.now());
        const ids = Array.from({ length: 30 }, () => randomUUID());
        await withDeadline(
          Promise.all(
            ids.map((request_id) =>
              v.publish(hub, {
                msg: 'get_report',
                from: ts(now - 10_000),
                to: ts(now),
                resolution: 1,
                signals: ['meter.p', 'boiler.p'],
                request_id,
              }),
            ),
          ),
          NET_MS,
          'publishing',
        );
        a.child.kill('SIGTERM');
        assert.is(await a.stop(), 0, a.transcript());
        assert.ok(a.has('stopping: draining in-flight work') && a.has('stopped'), a.transcript());
        const before = ids.filter((id) => reportsOf(got, id).length > 0).length;
        const b = await t.start();
        await until(
          () => ids.every((id) => reportsOf(got, id).length > 0),
          () =>
            `a report for each of the ${ids.length} requests (${ids.filter((id) => reportsOf(got, id).length > 0).length} so far, ${before} before the restart)`,
          8_000,
        );
        // No second report: the hub stops (draining), then a barrier comes after all it ever sent.
        assert.is(await b.stop(), 0, b.transcript());
        await hubBarrier(t);
        const counts = ids.map((id) => reportsOf(got, id).length);
        assert.equal(
          counts,
          ids.map(() => 1),
          `exactly one report per request (${before} answered before the restart): ${counts.join(',')}`,
        );
        assert.equal(t.problems, []);
      }),
    30_000,
  ),
);

// ---- 6. a meter that cannot run ------------------------------------------------------------------------------------

s(
  "hub.json's budget reaches the bus: a peer's request over it is answered 503 by its request_id, not handled",
  timed(
    () =>
      withHub(
        async (t) => {
          const { v, hub } = t;
          const h = await t.start();
          const ask = (): Promise<Message> =>
            v.request(hub, {
              msg: 'get_status_report',
              from: ts(Date.now() - 60_000),
              to: ts(Date.now() + 60_000),
              severity_threshold: 2,
              request_id: randomUUID(),
            });
          assert.is((await ask()).msg, 'status_report');
          assert.is((await ask()).msg, 'status_report');
          const busy = await refused(ask());
          assert.equal([busy.response_code, busy.msg_id, busy.ref_msg], [503, null, 'get_status_report']);
          assert.match(busy.response_desc, /^busy: .* is over its budget of 0\.01 messages/);
          // A second refusal within the minute is counted, not logged: one line per peer a minute.
          await refused(ask());
          assert.is(await h.stop(), 0, h.transcript());
          const handled = h.logs.filter((l) => l.msg === 'request' && l['type'] === 'get_status_report');
          assert.is(handled.length, 2, 'the refused ones never reached the handler');
          const lines = h.logs.filter((l) => l.msg === 'requests over budget');
          assert.is(lines.length, 1, h.transcript());
          assert.equal(
            [lines[0]?.['from'], lines[0]?.['type'], lines[0]?.['refused_before']],
            [t.vpp, 'get_status_report', 0],
          );
        },
        (config) => {
          config['budget'] = { messagesPerS: 0.01, messagesBurst: 2 };
        },
      ),
    20_000,
  ),
);

s(
  'a command meter whose program does not exist: meter_fault, status degraded, no crash',
  timed(
    () =>
      withHub(
        async (t) => {
          const { v, hub } = t;
          const h = await t.start();
          const t0 = Date.now();
          await h.waitFor('meter read failed', 6_000);
          const status = (await v.request(hub, {
            msg: 'get_status_report',
            from: ts(t0 - 60_000),
            to: ts(Date.now() + 60_000),
            severity_threshold: 2,
          })) as Message<'status_report'>;
          assert.is(status.status, 'degraded');
          assert.equal(
            status.events.map((e) => [e.type, e.severity]),
            [['meter_fault', 2]],
          );
          const now = wholeSecond(Date.now());
          const from = now - 4_000;
          const report = (await v.request(hub, {
            msg: 'get_report',
            from: ts(from),
            to: ts(now),
            resolution: 2,
            signals: ['meter.p'],
          })) as Message<'report'>;
          assert.equal(report.values['meter.p'], [null, null], 'the faulty meter reads null');
          const e461 = await refused(
            v.request(hub, { msg: 'get_report', from: ts(from), to: ts(now), resolution: 3, signals: ['meter.p'] }),
          );
          assert.equal(
            [e461.response_code, e461.ref_msg],
            [461, 'get_report'],
            'a resolution that is not a multiple of resolutionS 2: 461',
          );
          assert.is(h.code, undefined, 'still running');
          assert.is(await h.stop(), 0, h.transcript());
        },
        (config, dir) => {
          config['resolutionS'] = 2;
          const devices = config['devices'] as Record<string, unknown>[];
          devices[0] = {
            name: 'meter',
            meter: { kind: 'command', command: [path.join(dir, 'no-such-meter')], timeoutMs: 1000 },
          };
        },
      ),
    20_000,
  ),
);

s(
  'a csv meter: opened once, before the run, its values are what the hub reports',
  timed(
    () =>
      withHub(
        async (t) => {
          const { v, hub } = t;
          const h = await t.start();
          let values: (number | null)[] = [];
          await until(
            async () => {
              const now = wholeSecond(Date.now());
              const report = (await v.request(hub, {
                msg: 'get_report',
                from: ts(now - 4_000),
                to: ts(now),
                resolution: 2,
                signals: ['meter.p'],
              })) as Message<'report'>;
              values = report.values['meter.p'] ?? [];
              return values.every((x) => x !== null);
            },
            () => `the csv's values in a report (last: ${JSON.stringify(values)})`,
            15_000,
            500,
          );
          assert.equal(values, [1.5, 1.5]);
          assert.is(await h.stop(), 0, h.transcript());
        },
        (config, dir) => {
          config['resolutionS'] = 2;
          writeFileSync(path.join(dir, 'meter.csv'), 't,p\n0,1.5\n43200,1.5\n');
          const devices = config['devices'] as Record<string, unknown>[];
          devices[0] = { name: 'meter', meter: { kind: 'csv', path: path.join(dir, 'meter.csv') } };
        },
      ),
    30_000,
  ),
);

// ---- 7. the broker -----------------------------------------------------------------------------------------------

s(
  'a log output that fails (its reader gone) costs the logs, not the hub; SIGUSR1/2 are ignored, SIGHUP drains then ends it',
  timed(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'heh-hub-test-'));
    const procs: HubProcess[] = [];
    try {
      for (const name of ['a', 'b'])
        writeFileSync(
          path.join(dir, `${name}.json`),
          JSON.stringify({
            ...hubConfig(dir, unique('heh'), 'vpp-none'),
            stateDir: path.join(dir, name),
            broker: { url: 'amqp://127.0.0.1:1', reconnectDelayS: 2 },
          }),
        );
      const a = new HubProcess(['--config', path.join(dir, 'a.json')]);
      const b = new HubProcess(['--config', path.join(dir, 'b.json')]);
      procs.push(a, b);
      await a.waitFor('cannot reach the broker', 15_000);
      // What operators send to reopen logs: ignored, and Node's inspector (any local user could run code as the
      // hub and read its keys through it) stays closed.
      a.child.kill('SIGUSR1');
      a.child.kill('SIGUSR2');
      await until(
        () => a.err.join('\n').includes('SIGUSR2 ignored'),
        () => a.err.join('\n'),
        5000,
      );
      // The hub's own listening sockets (another process's inspector may hold 127.0.0.1:9229): it has none.
      await sleep(200);
      assert.equal(listeningPorts(a.child.pid as number), [], 'no inspector, nor any other listening socket');
      assert.is(a.code, undefined, 'still running');
      // `hub.js | head -3`: the reader of its stdout goes; the hub logs on (a retry every few seconds), then stops.
      a.child.stdout?.destroy();
      await sleep(5000);
      assert.is(a.code, undefined, `still running:\n${a.err.join('\n')}`);
      a.child.kill('SIGTERM');
      assert.is(await a.exit, 0, a.err.join('\n'));
      assert.match(a.err.join('\n'), 'the log output failed (EPIPE); logs are lost from now on');
      assert.not.match(a.err.join('\n'), 'at ', 'no stack trace');
      await b.waitFor('cannot reach the broker', 15_000);
      // A hang-up twice (the shell forwards one, the kernel sends one): drained all the same, then ended by it.
      b.child.kill('SIGHUP');
      b.child.kill('SIGHUP');
      assert.is(await b.exit, 'SIGHUP', b.transcript());
      assert.ok(
        b.logs.some((l) => l.msg === 'stopped'),
        b.transcript(),
      );
    } finally {
      for (const p of procs) await p.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 40_000),
);

s(
  'a second SIGTERM or SIGINT while the hub drains does not cut the drain: it still ends with stopped, exit 0',
  timed(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'heh-hub-test-'));
    const procs: HubProcess[] = [];
    try {
      for (const signal of ['SIGTERM', 'SIGINT'] as const) {
        const file = path.join(dir, `${signal}.json`);
        const config = hubConfig(dir, unique('heh'), 'vpp-none');
        // A meter whose process ignores SIGTERM: closing it takes a second, the window for the second signal.
        const meter = ['/bin/sh', '-c', `trap '' TERM; while :; do echo '{"p": 1}'; sleep 1; done`];
        const devices = config['devices'] as Record<string, unknown>[];
        devices[0] = { name: 'meter', meter: { kind: 'command', command: meter, intervalS: 1 } };
        writeFileSync(
          file,
          JSON.stringify({
            ...config,
            stateDir: path.join(dir, signal),
            broker: { url: 'amqp://127.0.0.1:1', reconnectDelayS: 2 },
          }),
        );
        const p = new HubProcess(['--config', file]);
        procs.push(p);
        await p.waitFor('cannot reach the broker', 15_000);
        // `timeout` signals the hub and then its process group; a terminal's ^C reaches every process of the group.
        p.child.kill(signal);
        await p.waitFor('stopping before the broker was reached', 5_000);
        p.child.kill(signal);
        assert.is(await withDeadline(p.exit, 15_000, 'the hub to exit'), 0, p.transcript());
        assert.ok(
          p.logs.some((l) => l.msg === 'stopped'),
          p.transcript(),
        );
      }
    } finally {
      for (const p of procs) await p.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000),
);

s(
  'EP-2, EP-3: the hub never exits because of the broker: unreachable, it retries with backoff; refused credentials are logged as such and retried slowly; SIGTERM still stops it',
  timed(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'heh-hub-test-'));
    const procs: HubProcess[] = [];
    try {
      const unreachable = {
        ...hubConfig(dir, unique('heh'), 'vpp-none'),
        stateDir: path.join(dir, 'a'),
        broker: { url: 'amqp://127.0.0.1:1', reconnectDelayS: 2 },
      };
      writeFileSync(path.join(dir, 'pw'), 'wrong\n', { mode: 0o600 });
      const base = hubConfig(dir, unique('heh'), 'vpp-none');
      const url = (base['broker'] as { url: string }).url;
      const refusedCreds = {
        ...base,
        stateDir: path.join(dir, 'b'),
        broker: { url, username: 'nobody', passwordFile: path.join(dir, 'pw') },
      };
      writeFileSync(path.join(dir, 'a.json'), JSON.stringify(unreachable));
      writeFileSync(path.join(dir, 'b.json'), JSON.stringify(refusedCreds));
      const a = new HubProcess(['--config', path.join(dir, 'a.json')]);
      const b = new HubProcess(['--config', path.join(dir, 'b.json')]);
      procs.push(a, b);
      await until(
        () => a.logs.filter((l) => l.msg === 'reconnecting').length >= 2,
        () => `two failed attempts and their delays:\n${a.transcript()}`,
        15_000,
      );
      assert.ok(a.logs.filter((l) => l.msg === 'cannot reach the broker').length >= 2, a.transcript());
      const delays = a.logs.filter((l) => l.msg === 'reconnecting').map((l) => l['inMs'] as number);
      assert.ok(
        delays.length >= 2 && delays.every((d) => d >= 2000),
        `backoff delays of 2 s or more: ${delays.join(', ')}`,
      );
      assert.ok((delays[1] as number) > (delays[0] as number) * 1.2, `the delay grows: ${delays.join(', ')}`);
      // A busy broker can take seconds to refuse a login.
      await b.waitFor('the broker refused our credentials; retrying slowly', 15_000);
      assert.ok(
        b.logs.some((l) => l.msg === 'the broker refused our credentials; retrying slowly' && l['user'] === 'nobody'),
        b.transcript(),
      );
      assert.ok(
        b.logs.some((l) => l.msg === 'reconnecting' && (l['inMs'] as number) >= 60_000),
        `the slow delay after refused credentials:\n${b.transcript()}`,
      );
      assert.not.match(b.out.join('\n'), 'wrong', 'the password is never logged');
      assert.is(await a.stop(), 0, a.transcript());
      assert.is(await b.stop(), 0, b.transcript());
    } finally {
      for (const p of procs) await p.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 40_000),
);

let proxyPort = 0;
s(
  'REC-1: the hub rides out a lost connection: network_down, recovery, network_up and broker_reconnect events, and its reports go on',
  timed(async () => {
    const proxy = await FaultProxy.start();
    proxyPort = proxy.port;
    try {
      await withHub(
        async ({ hub, v, got, start }) => {
          const h = await start();
          const rid = randomUUID();
          const ack = (await v.request(hub, {
            msg: 'get_periodic_report',
            interval: 1,
            first_from: null,
            resolution: 1,
            signals: ['boiler.p'],
            request_id: rid,
            msg_id: randomUUID(),
          })) as Message<'response'>;
          assert.is(ack.response_code, 200);
          await until(() => reportsOf(got, rid).length >= 1, 'a periodic report before the cut', 6_000);
          proxy.cutAll();
          await h.waitFor('connection to the broker lost; recovering', 5_000);
          await h.waitFor('connection to the broker recovered', 15_000);
          const before = reportsOf(got, rid).length;
          await until(() => reportsOf(got, rid).length >= before + 2, 'periodic reports after the recovery', 8_000);
          const events = h.logs.filter((l) => l.msg === 'event').map((l) => l['type']);
          for (const e of ['network_down', 'network_up', 'broker_reconnect'])
            assert.ok(events.includes(e), `event ${e}: ${events.join(', ')}`);
          assert.is(await h.stop(), 0, h.transcript());
        },
        (config) => {
          const broker = config['broker'] as Record<string, unknown>;
          broker['url'] = `amqp://127.0.0.1:${proxyPort}`;
          broker['reconnectDelayS'] = 2;
          broker['heartbeatS'] = 5;
        },
      );
    } finally {
      await proxy.close();
    }
  }, 45_000),
);

s.run();
