/**
 * Least privilege over MQTT (issue 15's rules for MQTT parties, issue 16): a throw-away Mosquitto (own port and
 * folder, stopped at the end) loaded with the ACL and password file `ebadge provision` makes of a parties file
 * (src/provision/mosquitto.ts). The hub and its aggregator work end to end with their own passwords; then each
 * attack, made with the attacker's own valid credentials, reaches nobody: a DSO sending a type it may not send, a
 * party that is not the hub's peer writing to it, the same party writing as the aggregator, and reading the hub's
 * messages (Mosquitto grants the wildcard subscription and delivers nothing its read ACL forbids). The aggregator's own
 * message, sent while the attacker listens, shows what the attacker would have read. The broker runs the listener
 * provision writes (`ebadge.conf`, `use_username_as_clientid true`): a party connecting with the hub's client id
 * gets its own name instead, so it neither kicks the hub nor takes over its session, and what is sent to the hub
 * meanwhile is handled; the CLI's send, request and listen still work, and send leaves the operator's session whole.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import mqtt from 'mqtt';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Connector } from '../../src/bus/index.js';
import { useMqtt } from '../../src/cli/bus.js';
import { main } from '../../src/cli.js';
import { EbTime, type Message } from '../../src/codec/index.js';
import { mqttBus } from '../../src/mqtt/index.js';
import { parseParties } from '../../src/provision/index.js';
import { mosquittoAcl, mosquittoConf, mosquittoPasswords } from '../../src/provision/mosquitto.js';
import { until, withDeadline } from '../helpers/deadline.js';
import { HUB_MQTT_JS, HubProcess } from '../helpers/hub-process.js';
import { freePort, Mosquitto } from '../helpers/mosquitto.js';

const MS = 10_000;
const id = randomUUID().slice(0, 8);
const HUB = `heh-acl${id}`;
const VPP = `vpp-acl${id}`;
const DSO = `dso-acl${id}`;
const EVIL = `heh-evil${id}`;
const OPS = `ops-acl${id}`;
const PLAN = parseParties({
  format: 'ebadge-parties/1',
  url: 'amqp://127.0.0.1:5672',
  parties: [
    { name: VPP, role: 'aggregator', peers: [HUB] },
    { name: HUB, role: 'hub' },
    { name: DSO, role: 'dso', peers: [HUB], sends: ['load_price'] },
    { name: EVIL, role: 'hub', peers: [VPP] },
    { name: OPS, role: 'operator', peers: [HUB] },
  ],
});
const PASSWORDS = new Map(PLAN.parties.map((p) => [p.name, `pw-${p.name}`]));

const s = suite('mqtt acl');
let broker: Mosquitto | undefined;
const buses: Connector[] = [];

/**
 * ebadge.conf as an operator installs it: the files where this broker reads them (`from` becomes `dir`), and, on a
 * shared test machine, the listener bound to 127.0.0.1.
 */
const installed = (conf: string, from: string, dir: string): string[] =>
  conf
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => l.replace(/^listener (\d+)$/, 'listener $1 127.0.0.1').replaceAll(`${from}/`, `${dir}/`));

s.before(async () => {
  const port = await freePort();
  const conf = mosquittoConf(PLAN, `mqtt://127.0.0.1:${port}`, '/provisioned');
  broker = await Mosquitto.start({
    port,
    files: { acl: mosquittoAcl(PLAN), passwords: mosquittoPasswords(PLAN, PASSWORDS) },
    config: (dir) => installed(conf, '/provisioned', dir),
  });
});

s.after(async () => {
  await Promise.allSettled(buses.map((b) => b.close()));
  await broker?.close();
});

const url = (): string => (broker as Mosquitto).url;
const as = (name: string, peers: string[]): Connector => {
  const b = mqttBus({ name, peers, url: url(), username: name, password: PASSWORDS.get(name) ?? '' });
  buses.push(b);
  return b;
};
/** A raw MQTT.js client with a party's own credentials: what an attacker holds. */
const raw = (name: string, clientId = `${name}-raw`) =>
  mqtt.connectAsync(url(), {
    clientId,
    username: name,
    password: PASSWORDS.get(name) ?? '',
    protocolVersion: 5,
    reconnectPeriod: 0,
  });

const got: string[] = [];
let hub: Connector;

s('the hub and its aggregator, each with its own password, work end to end; the DSO sends its one type', async () => {
  hub = as(HUB, [VPP, DSO, EVIL, OPS]);
  hub.onSetClock((_m, ctx) => {
    got.push(`set_clock from ${ctx.sender}`);
  });
  hub.onLoadPrice((_m, ctx) => {
    got.push(`load_price from ${ctx.sender}`);
  });
  hub.onActivate((_m, ctx) => {
    got.push(`activate from ${ctx.sender}`);
  });
  hub.onGetReport(async (q, ctx) => {
    await ctx.reply({ msg: 'report', from: q.from, to: q.to, resolution: q.resolution, values: { 'total.p': [1] } });
  });
  await withDeadline(hub.start(), MS, 'hub start');
  const vpp = as(VPP, [HUB]);
  await withDeadline(vpp.start(), MS, 'vpp start');
  const dso = as(DSO, [HUB]);
  await withDeadline(dso.start(), MS, 'dso start');
  await vpp.publish(HUB, { msg: 'set_clock', offset: 1, msg_id: randomUUID() } as Message<'set_clock'>);
  const from = EbTime.parse('2026-12-03T10:00:00Z');
  await dso.publish(HUB, { msg: 'load_price', msg_id: randomUUID(), from, to: from.plusSeconds(900), price: 0.1 });
  await until(
    () => got.length >= 2,
    () => `set_clock and load_price (${got.join('; ')})`,
    MS,
  );
  assert.equal(got.sort(), [`load_price from ${DSO}`, `set_clock from ${VPP}`]);
  const report = await withDeadline(
    vpp.request(HUB, { msg: 'get_report', from, to: from.plusSeconds(900), resolution: 900, signals: ['total.p'] }),
    MS,
    'get_report',
  );
  assert.is(report.msg, 'report');
});

s('a type the DSO may not send never reaches the hub', async () => {
  const before = got.length;
  const c = await raw(DSO);
  try {
    const body = JSON.stringify({ msg: 'set_clock', offset: 5, msg_id: randomUUID() });
    // Refused in the PUBACK (MQTT 5: 0x87, not authorized), which MQTT.js reports as a failed publish.
    await c.publishAsync(`set_clock/${DSO}/${HUB}`, body, { qos: 1 }).then(
      () => assert.unreachable('acknowledged'),
      (e: unknown) => assert.match(String(e), 'Not authorized'),
    );
  } finally {
    await c.endAsync();
  }
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(got.slice(before), []);
});

s(
  "a party that is not the hub's peer cannot write to it, nor write as the aggregator, nor read its messages",
  async () => {
    const before = got.length;
    const c = await raw(EVIL);
    const read: string[] = [];
    try {
      // Mosquitto grants a wildcard subscription, then delivers only what its read ACL allows: nothing of the hub's.
      await c.subscribeAsync(`+/+/${HUB}/#`, { qos: 1 });
      c.on('message', (topic) => read.push(topic));
      const body = () => JSON.stringify({ msg: 'set_clock', offset: 5, msg_id: randomUUID() });
      for (const topic of [`set_clock/${EVIL}/${HUB}`, `set_clock/${VPP}/${HUB}`]) {
        await c.publishAsync(topic, body(), { qos: 1 }).then(
          () => assert.unreachable(`${topic}: acknowledged`),
          (e: unknown) => assert.match(String(e), 'Not authorized'),
        );
      }
      // What it could have read: the aggregator's next message to the hub.
      const vpp = buses[1] as Connector;
      await vpp.publish(HUB, { msg: 'set_clock', offset: 2, msg_id: randomUUID() } as Message<'set_clock'>);
      await until(() => got.length > before, "the aggregator's set_clock at the hub", MS);
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      await c.endAsync();
    }
    assert.equal(got.slice(before), [`set_clock from ${VPP}`], "only the aggregator's own");
    assert.equal(read, [], 'the attacker read nothing');
  },
);

s(
  "a party with its own password, connecting with the hub's client id, neither kicks the hub nor loses its messages",
  async () => {
    const before = got.length;
    let downs = 0;
    const down = (): void => {
      downs++;
    };
    hub.transport.on('down', down);
    // As the tester's client did, or any client library with auto-reconnect: back 300 ms after each kick. Without
    // use_username_as_clientid the two took the session from each other in turn, and the aggregator's set_clock,
    // acknowledged by the broker, went to the impostor's connection, where the read ACL dropped it.
    const imp = mqtt.connect(url(), {
      clientId: HUB,
      clean: false,
      username: DSO,
      password: PASSWORDS.get(DSO) ?? '',
      protocolVersion: 5,
      properties: { sessionExpiryInterval: 3600 },
      reconnectPeriod: 300,
    });
    imp.on('error', () => undefined);
    let connects = 0;
    const read: string[] = [];
    imp.on('connect', () => connects++);
    imp.on('message', (topic) => read.push(topic));
    try {
      await until(() => connects > 0, 'the impostor connected', MS);
      const vpp = buses[1] as Connector;
      await vpp.publish(HUB, { msg: 'set_clock', offset: 3, msg_id: randomUUID() } as Message<'set_clock'>);
      await until(
        () => got.length > before,
        () => `the set_clock at the hub (the hub's connection lost ${downs} time(s))`,
        MS,
      );
      await new Promise((r) => setTimeout(r, 1000));
    } finally {
      hub.transport.off('down', down);
      await imp.endAsync(true);
    }
    assert.equal(got.slice(before), [`set_clock from ${VPP}`]);
    assert.is(downs, 0, "the hub's connection was never taken over");
    assert.is(connects, 1, 'the impostor, under its own name, was never kicked either');
    assert.equal(read, []);
  },
);

s(
  "the CLI's request, send and listen as the operator; send leaves the operator's session and what waits in it",
  async () => {
    useMqtt(async () => mqttBus);
    const dir = mkdtempSync(path.join(tmpdir(), 'mqtt-acl-ops-'));
    const pw = path.join(dir, 'ops.pw');
    writeFileSync(pw, `${PASSWORDS.get(OPS)}\n`, { mode: 0o600 });
    const common = ['--as', OPS, '--url', url(), '--password-file', pw];
    const io = () => {
      const lines: string[] = [];
      const errors: string[] = [];
      return { lines, errors, out: (l: string) => lines.push(l), err: (l: string) => errors.push(l) };
    };
    const stop = new AbortController();
    try {
      // request: the operator's persistent session (made now, its subscription too).
      const asked = io();
      const args = ['get_report', 'from=2026-12-03T10:00:00Z', 'to=2026-12-03T10:15:00Z', 'resolution=900'];
      const code = await main(['request', ...common, '--to', HUB, ...args, 'signals=total.p'], asked);
      assert.is(code, 0, asked.errors.join('\n'));
      assert.is((JSON.parse(asked.lines[0] as string) as { msg: string }).msg, 'report');
      // While the operator is away, the hub sends it something: it waits in the operator's session.
      const waiting = randomUUID();
      await hub.publish(OPS, { msg: 'get_all_prices', request_id: waiting } as Message<'get_all_prices'>);
      // send: under use_username_as_clientid a throw-away client id is the operator's own; with a clean session it
      // wiped the session, and what waited there with it.
      const before = got.length;
      const sent = io();
      assert.is(await main(['send', ...common, '--to', HUB, 'set_clock', 'offset=4'], sent), 0, sent.errors.join('\n'));
      assert.equal(sent.lines, [`sent set_clock to ${HUB}`]);
      await until(() => got.length > before, 'the set_clock at the hub', MS);
      assert.equal(got.slice(before), [`set_clock from ${OPS}`]);
      // listen: what waited is still there.
      const heard = io();
      const listened = main(['listen', ...common, '--peer', HUB, '--count', '1'], heard, stop.signal);
      assert.is(await withDeadline(listened, MS, 'listen: what waited in the session'), 0, heard.errors.join('\n'));
      const line = JSON.parse(heard.lines[0] as string) as {
        from: string;
        message: { msg: string; request_id: string };
      };
      assert.equal([line.from, line.message.msg, line.message.request_id], [HUB, 'get_all_prices', waiting]);
    } finally {
      stop.abort();
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

s(
  'ebadge provision --mosquitto: with its files and ebadge.conf, hub-mqtt.js on its hub.json answers the aggregator',
  async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mqtt-acl-cli-'));
    const hubName = `heh-cli${id}`;
    const vppName = `vpp-cli${id}`;
    const partiesFile = path.join(dir, 'parties.json');
    writeFileSync(
      partiesFile,
      JSON.stringify({
        format: 'ebadge-parties/1',
        url: 'amqp://127.0.0.1:5672',
        parties: [
          { name: vppName, role: 'aggregator', peers: [hubName] },
          { name: hubName, role: 'hub' },
        ],
      }),
    );
    const out = path.join(dir, 'out');
    const io = { out: () => undefined, err: (l: string) => assert.unreachable(l) };
    const port = await freePort();
    const ownUrl = `mqtt://127.0.0.1:${port}`;
    assert.is(await main(['provision', partiesFile, '--out', out, '--mosquitto', ownUrl], io), 0);
    const read = (f: string): string => readFileSync(path.join(out, f), 'utf8');
    const conf = read('mosquitto/ebadge.conf');
    assert.match(conf, 'use_username_as_clientid true');
    const own = await Mosquitto.start({
      port,
      files: { acl: read('mosquitto/acl'), passwords: read('mosquitto/passwords') },
      config: (d) => installed(conf, path.resolve(out, 'mosquitto'), d),
    });
    let hub: HubProcess | undefined;
    const vpp = mqttBus({
      name: vppName,
      peers: [hubName],
      url: own.url,
      username: vppName,
      password: read(`${vppName}/broker.pw`).trim(),
    });
    try {
      const file = path.join(out, hubName, 'hub.json');
      const cfg = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
      assert.equal(cfg['broker'], { url: own.url, username: hubName, passwordFile: 'broker.pw' });
      cfg['stateDir'] = path.join(dir, 'state');
      writeFileSync(file, JSON.stringify(cfg));
      hub = new HubProcess(['--config', file], HUB_MQTT_JS);
      await hub.waitFor('hub running', MS);
      await withDeadline(vpp.start(), MS, 'vpp start');
      const caps = await withDeadline(vpp.request(hubName, { msg: 'get_capabilities', device: null }), MS, 'caps');
      assert.is(caps.msg, 'capabilities');
      assert.is(await hub.stop(), 0, hub.transcript());
    } finally {
      await hub?.kill();
      await vpp.close();
      await own.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

s.run();
