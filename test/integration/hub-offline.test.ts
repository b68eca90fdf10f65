/**
 * The hub process and a broker that is not there, or not ready for it (issue 14, items 1 and 2), against the local
 * RabbitMQ:
 *  - offline boot: the hub starts while the fault proxy in front of the broker refuses every connection (about 20 s),
 *    then lets them through. Meanwhile it samples (the history of the offline period is complete), ends a saved
 *    activation on time, and keeps the periodic reports it owes, which reach the VPP once the broker is reachable;
 *  - a broker user without the permissions the hub needs (403), created with rabbitmqctl for the test and deleted
 *    after: an error naming the rabbitmqctl command that fixes it, retried; running the command lets the hub in;
 *  - exchanges its peer has not declared yet (declareExchanges false: 404): an error, retried until the peer starts;
 *  - a virtual host that does not exist: an error with the fix, retried until it is created;
 *  - a connection limit reached (of the vhost, of the user; a throw-away node): not told as a missing vhost.
 * None of them ends the hub; SIGTERM still stops it with 0. test/unit/device/hub-offline.test.ts covers the long span
 * (two minutes) on a manual clock.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { EbTime, type Message } from '../../src/codec/index.js';
import { timed } from '../helpers/amqp.js';
import { startBrokerNode } from '../helpers/broker-node.js';
import { ALL_TYPES, type BusFixture, entity, NET_MS, until, withBus } from '../helpers/bus.js';
import { sleep } from '../helpers/deadline.js';
import { HubProcess, hubConfig } from '../helpers/hub-process.js';
import { FaultProxy } from '../helpers/proxy.js';

const run = promisify(execFile);
const ts = (ms: number): EbTime => EbTime.fromEpochMs(ms);
const second = (ms: number): number => Math.floor(ms / 1000) * 1000;

interface Rig {
  f: BusFixture;
  dir: string;
  hub: string;
  vpp: string;
  got: Message[];
  /** Writes the hub's config (hubConfig, then `patch`) and returns its path. */
  config(patch?: (c: Record<string, unknown>) => void): string;
  spawn(configFile: string): HubProcess;
}

/** A hub and a VPP entity with their queues and exchanges deleted afterwards, the hubs killed, the temp dir removed. */
function withRig(fn: (r: Rig) => Promise<void>): Promise<void> {
  return withBus(async (f) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'heh-offline-'));
    const hub = entity('heh');
    const vpp = entity('vpp');
    f.hubTopology(hub, [vpp]);
    const procs: HubProcess[] = [];
    try {
      await fn({
        f,
        dir,
        hub,
        vpp,
        got: [],
        config(patch) {
          const c = hubConfig(dir, hub, vpp);
          c['broker'] = { ...(c['broker'] as object), reconnectDelayS: 2, maxReconnectDelayS: 2 };
          patch?.(c);
          const file = path.join(dir, `hub-${procs.length}.json`);
          writeFileSync(file, JSON.stringify(c, null, 2));
          return file;
        },
        spawn(configFile) {
          const p = new HubProcess(['--config', configFile]);
          procs.push(p);
          return p;
        },
      });
    } finally {
      await Promise.all(procs.map((p) => p.kill()));
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

/** The VPP on the broker itself (not through the proxy), recording what the hub sends it. */
async function startVpp(r: Rig): Promise<ReturnType<BusFixture['create']>> {
  const v = r.f.create({ name: r.vpp, peers: [r.hub], role: 'controller' });
  for (const type of ALL_TYPES)
    v.handle(type, (m) => {
      r.got.push(m as Message);
    });
  await r.f.start();
  return v;
}

const reportsOf = (got: readonly Message[], rid: string): Message<'report'>[] =>
  got.filter((m): m is Message<'report'> => m.msg === 'report' && m.request_id === rid);

const s = suite('hub without a broker');

let proxyPort = 0;
s(
  'offline boot: about 20 s with the broker refused, then reachable: history complete, a saved activation ended on time, the reports owed delivered',
  timed(async () => {
    const proxy = await FaultProxy.start();
    proxyPort = proxy.port;
    try {
      await withRig(async (r) => {
        const file = r.config((c) => {
          (c['broker'] as Record<string, unknown>)['url'] = `amqp://127.0.0.1:${proxyPort}`;
        });
        const v = await startVpp(r);
        const first = r.spawn(file);
        await first.waitFor('hub running');
        const rid = randomUUID();
        const ack = (await v.request(r.hub, {
          msg: 'get_periodic_report',
          interval: 1,
          first_from: null,
          resolution: 1,
          signals: ['meter.p', 'boiler.p'],
          request_id: rid,
          msg_id: randomUUID(),
        })) as Message<'response'>;
        assert.is(ack.response_code, 200);
        const id = randomUUID();
        const from = second(Date.now()) + 8_000;
        const to = from + 6_000;
        const decision = await v.request(r.hub, {
          msg: 'activate',
          id,
          modification_count: 0,
          from: ts(from),
          to: ts(to),
          quantity: 1,
          device: 'boiler',
        });
        assert.is(decision.msg, 'accept_activation');
        assert.is(await first.stop(), 0, first.transcript());

        // The broker is unreachable: every connection to the proxy is reset.
        proxy.setAcceptMode('reset');
        const hub = r.spawn(file);
        await hub.waitFor('hub started');
        const offlineFrom = Date.now();
        await until(
          () => hub.logs.some((l) => l.msg === 'event' && l['type'] === 'activation_end'),
          () => `the activation ended while offline:\n${hub.transcript()}`,
          20_000,
        );
        await sleep(Math.max(0, offlineFrom + 20_000 - Date.now()));
        assert.is(hub.code, undefined, 'still running');
        assert.not.ok(hub.has('hub running'), 'not connected yet');
        assert.ok(hub.logs.filter((l) => l.msg === 'cannot reach the broker').length >= 3, hub.transcript());
        const at = (type: string): number =>
          Date.parse(String(hub.logs.find((l) => l.msg === 'event' && l['type'] === type)?.['time']));
        assert.ok(at('activation_start') >= from && at('activation_start') < from + 1000, 'started at from');
        assert.ok(at('activation_end') >= to && at('activation_end') < to + 1000, 'ended at to, offline');
        assert.equal(
          reportsOf(r.got, rid).filter((m) => m.from.epochMs >= second(offlineFrom)),
          [],
        );

        // The broker is back: the reports owed for the offline period arrive, each with every slot measured.
        proxy.setAcceptMode('forward');
        await hub.waitFor('hub running', 15_000);
        const onlineAt = Date.now();
        const owed = Array.from(
          { length: Math.floor((onlineAt - offlineFrom) / 1000) - 3 },
          (_, i) => second(offlineFrom) + (i + 1) * 1000,
        );
        assert.ok(owed.length >= 15, `${owed.length} periods offline`);
        await until(
          () => owed.every((t) => reportsOf(r.got, rid).some((m) => m.from.epochMs === t)),
          () =>
            `every period of the offline time: missing ${owed.filter((t) => !reportsOf(r.got, rid).some((m) => m.from.epochMs === t)).length}\n${hub.transcript()}`,
          NET_MS,
        );
        for (const t of owed) {
          const m = reportsOf(r.got, rid).find((x) => x.from.epochMs === t) as Message<'report'>;
          assert.ok(
            m.values['meter.p']?.[0] != null && m.values['boiler.p']?.[0] != null,
            `slot ${new Date(t).toISOString()} measured offline: ${JSON.stringify(m.values)}\n${hub.transcript()}`,
          );
        }
        const history = (await v.request(r.hub, {
          msg: 'get_report',
          from: ts(owed[0] as number),
          to: ts((owed.at(-1) as number) + 1000),
          resolution: 1,
          signals: ['meter.p'],
        })) as Message<'report'>;
        assert.equal(
          history.values['meter.p']?.filter((x) => x === null),
          [],
          'the history has no gap for the offline period',
        );
        assert.is(await hub.stop(), 0, hub.transcript());
      });
    } finally {
      await proxy.close();
    }
  }, 90_000),
);

/** rabbitmqctl as root on the local broker; the broker tests that need it are skipped without. */
async function ctl(...args: string[]): Promise<string> {
  return (await run('rabbitmqctl', args, { timeout: 30_000 })).stdout;
}
const canCtl =
  process.getuid?.() === 0 &&
  (await ctl('status').then(
    () => true,
    () => false,
  ));

s(
  '403: a broker user without the permissions the hub needs: an error with the rabbitmqctl command that fixes it, retried; running it lets the hub in',
  timed(async () => {
    if (!canCtl) return console.log('  (skipped: needs root and rabbitmqctl)');
    await withRig(async (r) => {
      const password = randomUUID();
      await ctl('add_user', r.hub, password);
      try {
        // Write and read, but no configure: the hub cannot declare its queues.
        await ctl('set_permissions', '-p', '/', r.hub, '^$', '.*', '.*');
        writeFileSync(path.join(r.dir, 'hub.pw'), `${password}\n`, { mode: 0o600 });
        const file = r.config((c) => {
          c['broker'] = {
            ...(c['broker'] as object),
            username: r.hub,
            passwordFile: path.join(r.dir, 'hub.pw'),
          };
        });
        const hub = r.spawn(file);
        await until(
          () => hub.logs.filter((l) => l.level === 'error').length >= 2,
          () => `two refusals:\n${hub.transcript()}`,
          20_000,
        );
        const refused = hub.logs.filter((l) => l.level === 'error');
        assert.ok(
          refused.every((l) => l.msg === 'the broker refused a declaration (403 ACCESS_REFUSED); retrying'),
          hub.transcript(),
        );
        assert.match(String((refused[0]?.['error'] as { message?: string })?.message), 'ACCESS_REFUSED');
        assert.is(hub.code, undefined, 'not an exit');
        const fix = String(refused[0]?.['fix']);
        const command = /rabbitmqctl (set_permissions .*)$/.exec(fix)?.[1];
        assert.ok(command !== undefined, fix);
        // The command as the log gives it (single-quoted arguments).
        const args = [...command.matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? '');
        await ctl(...args);
        await hub.waitFor('hub running', 15_000);
        assert.is(await hub.stop(), 0, hub.transcript());
      } finally {
        await ctl('delete_user', r.hub).catch(() => undefined);
      }
    });
  }, 60_000),
);

s(
  '404: exchanges the peer has not declared yet (declareExchanges false): an error, retried until the peer has run',
  timed(
    () =>
      withRig(async (r) => {
        const file = r.config((c) => {
          c['declareExchanges'] = false;
        });
        const hub = r.spawn(file);
        await until(
          () => hub.logs.filter((l) => l.level === 'error').length >= 2,
          () => `two refusals:\n${hub.transcript()}`,
          20_000,
        );
        const refused = hub.logs.filter((l) => l.level === 'error');
        assert.ok(
          refused.every((l) => l.msg === 'an exchange the hub only checks does not exist (404 NOT_FOUND); retrying'),
          hub.transcript(),
        );
        assert.match(String(refused[0]?.['fix']), 'the peer that owns it has not declared it yet');
        assert.ok((refused[0]?.['retryInS'] as number) >= 2);
        assert.is(hub.code, undefined, 'not an exit');
        await startVpp(r); // declares the pair exchanges
        await hub.waitFor('hub running', 15_000);
        await until(() => r.got.some((m) => m.msg === 'capabilities'), 'the registration once running', NET_MS);
        assert.is(await hub.stop(), 0, hub.transcript());
      }),
    60_000,
  ),
);

s(
  'a virtual host that does not exist: an error with the fix, retried until it is created',
  timed(async () => {
    if (!canCtl) return console.log('  (skipped: needs root and rabbitmqctl)');
    const vhost = `heh-test-${process.pid}-${Date.now().toString(36)}`;
    const dir = mkdtempSync(path.join(tmpdir(), 'heh-offline-'));
    let hub: HubProcess | undefined;
    try {
      const c = hubConfig(dir, entity('heh'), 'vpp-none');
      c['broker'] = { url: `amqp://127.0.0.1:5672/${vhost}`, reconnectDelayS: 2, maxReconnectDelayS: 2 };
      writeFileSync(path.join(dir, 'hub.json'), JSON.stringify(c));
      hub = new HubProcess(['--config', path.join(dir, 'hub.json')]);
      const h = hub;
      await until(
        () => h.logs.filter((l) => l.msg === 'the broker refused our virtual host; retrying').length >= 2,
        () => `two refusals:\n${h.transcript()}`,
        20_000,
      );
      const line = h.logs.find((l) => l.msg === 'the broker refused our virtual host; retrying');
      assert.equal([line?.level, line?.['vhost']], ['error', vhost]);
      assert.match(String(line?.['fix']), `rabbitmqctl add_vhost ${vhost}`);
      await ctl('add_vhost', vhost);
      await ctl('set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*');
      await h.waitFor('hub running', 15_000);
      assert.is(await h.stop(), 0, h.transcript());
    } finally {
      await hub?.kill();
      await ctl('delete_vhost', vhost).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000),
);

s(
  'a connection limit of the vhost, then of the user (530 too): each named with its fix, not as a missing vhost',
  timed(async () => {
    if (!canCtl) return console.log('  (skipped: needs root and rabbitmqctl)');
    // A throw-away node: a limit on the shared broker's guest would refuse every other test's connections.
    const node = await startBrokerNode({ name: 'limits' });
    const dir = mkdtempSync(path.join(tmpdir(), 'heh-offline-'));
    const hubs: HubProcess[] = [];
    try {
      const c = hubConfig(dir, entity('heh'), 'vpp-none');
      c['broker'] = { url: `amqp://127.0.0.1:${node.amqpPort}`, reconnectDelayS: 2, maxReconnectDelayS: 2 };
      writeFileSync(path.join(dir, 'hub.json'), JSON.stringify(c));
      const refusal = async (msg: string, fix: string): Promise<HubProcess> => {
        const h = new HubProcess(['--config', path.join(dir, 'hub.json')]);
        hubs.push(h);
        await until(
          () => h.logs.some((l) => l.msg === msg),
          () => `${msg}:\n${h.transcript()}`,
          20_000,
        );
        const line = h.logs.find((l) => l.msg === msg);
        assert.is(line?.level, 'error');
        assert.match(String(line?.['fix']), fix);
        assert.not.ok(
          h.logs.some((l) => l.msg === 'the broker refused our virtual host; retrying'),
          h.transcript(),
        );
        return h;
      };
      await node.ctl(['set_vhost_limits', '-p', '/', '{"max-connections": 0}']);
      const h = await refusal(
        "the broker's connection limit for the virtual host is reached; retrying",
        'clear_vhost_limits -p /',
      );
      await node.ctl(['clear_vhost_limits', '-p', '/']);
      await h.waitFor('hub running', 15_000);
      assert.is(await h.stop(), 0, h.transcript());
      await node.ctl(['set_user_limits', 'guest', '{"max-connections": 0}']);
      await refusal(
        "the broker's connection limit for the user is reached; retrying",
        'clear_user_limits guest max-connections',
      );
    } finally {
      for (const h of hubs) await h.kill();
      await node.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000),
);

s.run();
