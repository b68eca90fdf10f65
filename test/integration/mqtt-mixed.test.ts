/**
 * The mixed deployment of issue 16 on a throw-away RabbitMQ node with `rabbitmq_mqtt` (own node name, ports and
 * data folder; stopped at the end): `ebadge provision --apply` loads the definitions of a parties file with MQTT
 * hubs and an AMQP aggregator, and then, with nothing but the generated credentials,
 *  - the real MQTT hub (hub-mqtt.js, its generated hub.json) answers amqplib, which sees D3.2.3's view of it (the
 *    delivery from `amq.topic`, whose key names the type, the hub and the aggregator), and our AMQP aggregator
 *    (src/bus/mqtt-peers.ts), which gets a report and an activation decision credited to the hub;
 *  - an MQTT hub on our MQTT bus is asked by the AMQP aggregator and answers, and sends it a message, each credited
 *    to the right party;
 *  - the broker keeps the sender levels true: an MQTT hub that writes another's name as its sender, or subscribes to
 *    another's messages, is cut off and its message never arrives; an AMQP party may not write a key naming another.
 * Sealed across: a HEH-E2E request from the AMQP aggregator to an MQTT hub and its sealed report back.
 * Before provisioning, on `/` as guest: what a PUBACK from the plugin promises (a publisher confirm: sent for a
 * message that no queue took, never for one a queue refused, and then the connection is closed).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import amqplib from 'amqplib';
import mqtt, { type MqttClient } from 'mqtt';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseUrl } from '../../src/amqp/index.js';
import { type BusError, CONTENT_TYPE_JSON, type Connector } from '../../src/bus/index.js';
import { type AmqpMqttPeersTransport, amqpMqttPeersBus } from '../../src/bus/mqtt-peers.js';
import { type Io, main } from '../../src/cli.js';
import { EbTime, type Message } from '../../src/codec/index.js';
import {
  generateIdentity,
  Keyring,
  nodeBackend,
  type PrivateKeyFile,
  type PublicEntry,
  ReplayWindow,
  Sealer,
  SequenceReserver,
} from '../../src/crypto/index.js';
import { mqttBus } from '../../src/mqtt/index.js';
import { timed } from '../helpers/amqp.js';
import { type BrokerNode, freePort, startBrokerNode, writeCtlScript } from '../helpers/broker-node.js';
import { sleep, until, withDeadline } from '../helpers/deadline.js';

const HUB_MQTT_JS = fileURLToPath(new URL('../../src/bin/hub-mqtt.js', import.meta.url));
const HUB = 'heh-mixed1'; // the real MQTT hub
const HUB2 = 'heh-mixed2'; // an MQTT hub on our MQTT bus
const VPP = 'vpp-mixed'; // the AMQP aggregator
const MS = 15_000;

const s = suite('mixed deployment: MQTT hubs and an AMQP aggregator through rabbitmq_mqtt');
const dir = mkdtempSync(path.join(tmpdir(), 'ebadge-mqtt-mixed-'));
const out = path.join(dir, 'out');
let node: BrokerNode | undefined;
let mqttPort = 0;
let hub: { child: ChildProcess; out: string[]; err: string[]; exit: Promise<number | null> } | undefined;
const closers: (() => Promise<unknown>)[] = [];

s.after(async () => {
  await Promise.allSettled(closers.map((c) => c()));
  if (hub !== undefined && hub.child.exitCode === null) {
    hub.child.kill('SIGTERM');
    await Promise.race([hub.exit, sleep(10_000)]);
    hub.child.kill('SIGKILL');
  }
  await node?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function theNode(): BrokerNode {
  if (node === undefined) throw new Error('the node did not start');
  return node;
}

const password = (name: string): string => readFileSync(path.join(out, name, 'broker.pw'), 'utf8').trim();
const mqttUrl = (): string => `mqtt://127.0.0.1:${mqttPort}`;

/** A plain MQTT.js client logged in as an MQTT party (3.1.1, as the plugin speaks). */
async function rawMqtt(name: string, clientId = `${name}-raw-${randomUUID().slice(0, 6)}`): Promise<MqttClient> {
  const c = await withDeadline(
    mqtt.connectAsync(mqttUrl(), {
      clientId,
      protocolVersion: 4,
      username: `ebadge:${name}`,
      password: password(name),
      reconnectPeriod: 0,
    }),
    MS,
    `MQTT connect as ${name}`,
  );
  c.on('error', () => undefined);
  closers.push(() => c.endAsync(true));
  return c;
}

function lastMinutes(n: number): { from: EbTime; to: EbTime } {
  const to = EbTime.fromEpochMs(Math.floor(Date.now() / 1000) * 1000);
  return { from: to.plusSeconds(-60 * n), to };
}

const status = (text = 'ok'): Message<'status_report'> => ({
  msg: 'status_report',
  status: text,
  clock: EbTime.fromEpochMs(Math.floor(Date.now() / 1000) * 1000),
  events: [],
});

const closed = (c: MqttClient): Promise<void> => new Promise((resolve) => c.once('close', () => resolve()));

// Started inside a test, not in a before hook: uvu 0.5 swallows errors thrown by hooks.
s(
  'what a PUBACK from the MQTT plugin promises: a publisher confirm, also for a message no queue took',
  timed(async () => {
    mqttPort = await freePort();
    node = await startBrokerNode({
      name: 'mqtt-mixed',
      plugins: ['rabbitmq_mqtt'],
      extraConfig: [`mqtt.listeners.tcp.default = 127.0.0.1:${mqttPort}`, 'mqtt.allow_anonymous = false'].join('\n'),
    });
    const conn = await amqplib.connect(`amqp://guest:guest@127.0.0.1:${theNode().amqpPort}`);
    closers.push(() => conn.close());
    const ch = await conn.createChannel();
    // A queue that takes one message and refuses the next (basic.nack to the plugin's confirm channel).
    await ch.assertQueue('puback-probe', {
      durable: true,
      arguments: { 'x-max-length': 1, 'x-overflow': 'reject-publish' },
    });
    await ch.bindQueue('puback-probe', 'amq.topic', 'probe.#');
    // Our MQTT transport, so that what it does with a refusal is seen too.
    const t = mqttBus({
      name: 'puback-probe',
      peers: ['x'],
      url: mqttUrl(),
      username: 'guest',
      password: 'guest',
      reconnectDelay: 100,
      maxReconnectDelay: 200,
    }).transport;
    closers.push(() => t.close());
    const downs: unknown[] = [];
    t.on('down', (e) => downs.push(e));
    await withDeadline(
      t.start(async () => undefined),
      MS,
      'transport start',
    );
    assert.is(t.protocolVersion, 4, 'RabbitMQ 3.10 speaks 3.1.1: the transport fell back');
    const send = (routingKey: string, body: string): Promise<void> =>
      t.send({
        to: 'x',
        routingKey,
        body: Buffer.from(body),
        properties: {
          messageId: randomUUID(),
          contentType: CONTENT_TYPE_JSON,
          type: 'probe',
          appId: 'puback-probe',
          timestamp: new Date(),
          headers: {},
        },
      });
    // No queue is bound to nobody.#: the message is dropped, and the PUBACK comes all the same.
    await withDeadline(send('nobody', 'lost'), MS, 'PUBACK of an unroutable message');
    await withDeadline(send('probe', 'one'), MS, 'PUBACK of the first');
    let second = false;
    const pending = send('probe', 'two').then(() => {
      second = true;
    });
    // The queue refuses it: no PUBACK, and the plugin closes the connection (it has no answer for a nack).
    await until(() => downs.length > 0, 'the connection closed after the refusal', MS);
    assert.not.ok(second, 'no PUBACK for a refused message');
    // Room again: our transport reconnects and sends the same PUBLISH again, which is taken and acknowledged now.
    await ch.purgeQueue('puback-probe');
    await withDeadline(pending, MS, 'the PUBACK after the send again');
    const got = await ch.get('puback-probe', { noAck: true });
    assert.ok(got !== false);
    assert.is(got.content.toString(), 'two');
    assert.is(got.fields.routingKey, 'probe.puback-probe.x');
    await ch.deleteQueue('puback-probe');
  }, 120_000),
);

s(
  'ebadge provision --apply: MQTT parties get their session queue, amq.topic and the exchange-to-exchange bindings',
  timed(async () => {
    const n = theNode();
    const parties = path.join(dir, 'parties.json');
    writeFileSync(
      parties,
      JSON.stringify({
        format: 'ebadge-parties/1',
        url: `amqp://127.0.0.1:${n.amqpPort}`,
        mqttUrl: mqttUrl(),
        parties: [
          { name: VPP, role: 'aggregator', peers: [HUB, HUB2] },
          { name: HUB, role: 'hub', transport: 'mqtt' },
          { name: HUB2, role: 'hub', transport: 'mqtt' },
        ],
      }),
    );
    const ctl = path.join(dir, 'rabbitmqctl');
    await writeCtlScript(n, ctl);
    const lines: string[] = [];
    const errors: string[] = [];
    const io: Io = { out: (l) => lines.push(l), err: (l) => errors.push(l) };
    const code = await main(['provision', parties, '--out', out, '--apply', '--rabbitmqctl', ctl], io);
    assert.is(code, 0, errors.join('\n'));
    const bindings = await n.ctl([
      'list_bindings',
      '-p',
      'ebadge',
      '-q',
      'source_name',
      'destination_name',
      'routing_key',
    ]);
    assert.match(bindings, `amq.topic\t${HUB}-to-${VPP}\t*.${HUB}.${VPP}.#`);
    assert.match(bindings, `${VPP}-to-${HUB}\tamq.topic\t*.${VPP}.${HUB}.#`);
    const queues = await n.ctl(['list_queues', '-p', 'ebadge', '-q', 'name']);
    assert.not.match(queues, `private-${HUB}-in`, 'an MQTT hub has no AMQP inbox');
    const hubJson = JSON.parse(readFileSync(path.join(out, HUB, 'hub.json'), 'utf8')) as {
      broker: { url: string; username: string };
    };
    assert.is(hubJson.broker.url, mqttUrl());
    assert.is(hubJson.broker.username, `ebadge:${HUB}`);
  }, 120_000),
);

s(
  'the real MQTT hub answers amqplib, which sees it come from amq.topic with <type>.<hub>.<aggregator>',
  timed(async () => {
    const file = path.join(out, HUB, 'hub.json');
    const cfg = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    cfg['stateDir'] = path.join(dir, 'state');
    cfg['resolutionS'] = 1;
    cfg['devices'] = [
      { name: 'meter', meter: { kind: 'simulated' } },
      { name: 'boiler', type: 'boiler', maxPowerKw: 2, meter: { kind: 'simulated' }, actuator: { kind: 'simulated' } },
    ];
    writeFileSync(file, JSON.stringify(cfg));
    const child = spawn(process.execPath, [HUB_MQTT_JS, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    const p = { child, out: [] as string[], err: [] as string[], exit: new Promise<number | null>(() => undefined) };
    p.exit = new Promise((resolve) => child.once('close', (c) => resolve(c)));
    child.stdout?.on('data', (b: Buffer) => p.out.push(...b.toString().split('\n').filter(Boolean)));
    child.stderr?.on('data', (b: Buffer) => p.err.push(b.toString()));
    hub = p;
    await until(
      () => p.out.some((l) => l.includes('"hub running"')),
      () => `hub running (${p.out.join('\n')}${p.err.join('')})`,
      MS,
    );
    const conn = await amqplib.connect(
      `amqp://${VPP}:${encodeURIComponent(password(VPP))}@127.0.0.1:${theNode().amqpPort}/ebadge`,
    );
    try {
      const ch = await conn.createConfirmChannel();
      const id = randomUUID();
      // D3.2.3's exchange, with the key the MQTT hub's subscription needs: <type>.<me>.<hub>.
      ch.publish(
        `${VPP}-to-${HUB}`,
        `get_capabilities.${VPP}.${HUB}`,
        Buffer.from(JSON.stringify({ msg: 'get_capabilities', msg_id: id, device: null })),
        { persistent: true },
      );
      await ch.waitForConfirms();
      const answer = await withDeadline(
        new Promise<amqplib.ConsumeMessage>((resolve) => {
          void ch.consume(`private-${VPP}-in`, (m) => {
            if (m === null) return;
            ch.ack(m);
            resolve(m);
          });
        }),
        MS,
        `the hub's answer (${p.out.slice(-5).join('\n')})`,
      );
      assert.is(answer.fields.exchange, 'amq.topic');
      assert.is(answer.fields.routingKey, `capabilities.${HUB}.${VPP}`);
      const body = JSON.parse(answer.content.toString()) as { msg: string; request_id?: string };
      assert.is(body.msg, 'capabilities');
      // MQTT 3.1.1 carries no properties: the plugin's two headers and persistence only.
      assert.equal(answer.properties.headers, { 'x-mqtt-publish-qos': 1, 'x-mqtt-dup': false });
      await ch.close();
    } finally {
      await conn.close();
    }
  }, 60_000),
);

let vpp: Connector<AmqpMqttPeersTransport> | undefined;
/** Every status_report the aggregator handled: who the bus credited it to, its routing key and type. */
const statuses: { sender: string; key: string; type: string | undefined; status: string }[] = [];

s(
  'our AMQP aggregator gets a report and an activation decision from the real MQTT hub, credited to the hub',
  timed(async () => {
    const cfg = JSON.parse(readFileSync(path.join(out, VPP, 'bus.json'), 'utf8')) as {
      url: string;
      peers: string[];
      declareExchanges: boolean;
    };
    const bus = amqpMqttPeersBus({
      name: VPP,
      peers: cfg.peers,
      mqttPeers: [HUB, HUB2],
      url: parseUrl(cfg.url),
      connectOptions: { username: VPP, password: password(VPP) },
      declareExchanges: cfg.declareExchanges,
    });
    vpp = bus;
    closers.push(() => bus.close());
    // Handlers before start (the next tests' messages).
    bus.onStatusReport((m, ctx) => {
      statuses.push({ sender: ctx.sender, key: ctx.delivery.routingKey, type: ctx.delivery.type, status: m.status });
    });
    await withDeadline(bus.start(), MS, 'aggregator start');
    const report = await bus.request(HUB, {
      msg: 'get_report',
      ...lastMinutes(1),
      resolution: 60,
      signals: ['meter.p'],
    });
    assert.is(report.msg, 'report');
    const to = EbTime.fromEpochMs(Math.floor(Date.now() / 60_000) * 60_000);
    const decision = await bus.request(HUB, {
      msg: 'activate',
      id: '6f1c3e2a-4b5d-4e6f-8a7b-9c0d1e2f3a4b',
      modification_count: 0,
      device: 'boiler',
      from: to.plusSeconds(600),
      to: to.plusSeconds(2400),
      quantity: 1.5,
    });
    assert.match(decision.msg, /^(accept|reject|modify)_activation$/);
  }, 60_000),
);

s(
  'an MQTT hub on our MQTT bus and the AMQP aggregator: a request answered, and a message, each credited right',
  timed(async () => {
    const bus = vpp as Connector<AmqpMqttPeersTransport>;
    const hub2 = mqttBus({
      name: HUB2,
      peers: [VPP],
      url: mqttUrl(),
      username: `ebadge:${HUB2}`,
      password: password(HUB2),
    });
    const clocks: { sender: string; key: string; offset: number | null }[] = [];
    hub2.onSetClock((m, ctx) => {
      clocks.push({ sender: ctx.sender, key: ctx.delivery.routingKey, offset: m.offset });
    });
    closers.push(() => hub2.close());
    try {
      await withDeadline(hub2.start(), MS, 'hub2 start');
      assert.is(hub2.transport.protocolVersion, 4);
      // AMQP to MQTT: a request with a msg_id, answered by the MQTT hub's response 200.
      const answer = (await withDeadline(
        bus.request(HUB2, { msg: 'set_clock', offset: 7 }),
        MS,
        'request',
      )) as Message<'response'>;
      assert.is(answer.msg, 'response');
      assert.is(answer.response_code, 200);
      // The hub saw the aggregator as the sender and the D3.2.3 key.
      assert.equal(clocks, [{ sender: VPP, key: 'set_clock', offset: 7 }]);
      // MQTT to AMQP: a message, credited to the hub, with the D3.2.3 key and its type.
      await hub2.publish(VPP, status('first'));
      await until(() => statuses.length === 1, 'the status report handled', MS);
      assert.equal(statuses, [{ sender: HUB2, key: 'status_report', type: 'status_report', status: 'first' }]);
    } finally {
      await hub2.close();
    }
  }, 60_000),
);

s(
  'the broker keeps the sender levels true: forged senders and foreign subscriptions are cut off',
  timed(async () => {
    // HUB2 writes HUB's name as the sender level: the topic permission refuses it and the plugin closes the
    // connection, so the message is never routed (the binding into HUB's exchange would credit it to HUB).
    const forger = await rawMqtt(HUB2);
    const cut = closed(forger);
    forger.publish(`status_report/${HUB}/${VPP}`, JSON.stringify(status('forged')), { qos: 1 });
    await withDeadline(cut, MS, 'the forger cut off');
    // Nor may it subscribe to what is sent to HUB (its own session queue, so that only the binding is refused).
    const spy = await rawMqtt(HUB2, HUB2);
    const spyCut = closed(spy);
    spy.subscribe(`+/+/${HUB}/#`, { qos: 1 });
    await withDeadline(spyCut, MS, 'the spy cut off');
    // Under its own name it goes through: by then the forged one would have arrived before it.
    const honest = await rawMqtt(HUB2);
    await honest.publishAsync(`status_report/${HUB2}/${VPP}`, JSON.stringify(status('own')), { qos: 1 });
    await until(() => statuses.length === 2, 'the honest message handled', MS);
    assert.equal(
      statuses.map((x) => `${x.sender} ${x.status}`),
      [`${HUB2} first`, `${HUB2} own`],
    );
    // An AMQP party may write only keys naming itself and the MQTT peer on <me>-to-<peer>.
    const conn = await amqplib.connect(
      `amqp://${VPP}:${encodeURIComponent(password(VPP))}@127.0.0.1:${theNode().amqpPort}/ebadge`,
    );
    closers.push(() => conn.close().catch(() => undefined));
    const ch = await conn.createConfirmChannel();
    const refused = new Promise<Error>((resolve) => ch.once('error', resolve));
    ch.publish(`${VPP}-to-${HUB}`, `get_report.${HUB2}.${HUB}`, Buffer.from('{}'));
    const err = await withDeadline(refused, MS, 'the refusal');
    assert.match(err.message, `ACCESS_REFUSED - access to topic 'get_report.${HUB2}.${HUB}'`);
  }, 60_000),
);

interface Identity {
  name: string;
  privateKey: PrivateKeyFile;
  entry: PublicEntry;
}

const identity = (name: string): Identity => {
  const { privateKey, publicEntry } = generateIdentity(name, nodeBackend, Date.now() - 60_000);
  return { name, privateKey, entry: publicEntry };
};

/** A sealer of `me` that has keys for `peer` only (test/integration/bus-sealed.test.ts's). */
async function sealerFor(me: Identity, peer: Identity, maySend: string[], mayReceive: string[]): Promise<Sealer> {
  const entry = {
    ed25519: peer.entry.ed25519,
    x25519: peer.entry.x25519.map(({ pub, notBefore }) => ({ pub, notBefore })),
    maySend,
    mayReceive,
  };
  return new Sealer({
    keyring: new Keyring(nodeBackend, {
      keyring: { format: 'heh-keyring/1', peers: { [peer.name]: entry } },
      privateKey: me.privateKey,
    }),
    backend: nodeBackend,
    sequence: await SequenceReserver.open(path.join(dir, `${me.name}.seq`)),
    replay: await ReplayWindow.open(path.join(dir, `${me.name}.replay`)),
  });
}

s(
  'sealed across: the AMQP aggregator asks the MQTT hub for a report, both HEH-E2E envelopes, both opened',
  timed(async () => {
    await vpp?.close();
    const hubId = identity(HUB2);
    const vppId = identity(VPP);
    const agg = amqpMqttPeersBus({
      name: VPP,
      peers: [HUB, HUB2],
      mqttPeers: [HUB, HUB2],
      url: `amqp://127.0.0.1:${theNode().amqpPort}/ebadge`,
      connectOptions: { username: VPP, password: password(VPP) },
      declareExchanges: false,
      sealer: await sealerFor(vppId, hubId, ['report'], ['get_report']),
    });
    closers.push(() => agg.close());
    const hub2 = mqttBus({
      name: HUB2,
      peers: [VPP],
      url: mqttUrl(),
      username: `ebadge:${HUB2}`,
      password: password(HUB2),
      sealer: await sealerFor(hubId, vppId, ['get_report'], ['report']),
    });
    closers.push(() => hub2.close());
    const seen: { sealed: boolean; first: number | undefined; sender: string }[] = [];
    hub2.onGetReport(async (m, ctx) => {
      seen.push({ sealed: ctx.sealed, first: ctx.delivery.body[0], sender: ctx.sender });
      await ctx.reply({
        msg: 'report',
        from: m.from,
        to: m.to,
        resolution: m.resolution,
        values: { 'total.p': [1, 2] },
      });
    });
    const dead: unknown[] = [];
    agg.on('dead-letter', (...args: unknown[]) => dead.push(args));
    try {
      await withDeadline(Promise.all([agg.start(), hub2.start()]), MS, 'start');
      const from = EbTime.fromEpochMs(Math.floor(Date.now() / 60_000) * 60_000 - 1_800_000);
      const reply = await withDeadline(
        agg.request(HUB2, {
          msg: 'get_report',
          from,
          to: from.plusSeconds(1800),
          resolution: 900,
          signals: ['total.p'],
        }),
        MS,
        'sealed request',
      );
      assert.is(reply.msg, 'report');
      assert.equal((reply as { values: unknown }).values, { 'total.p': [1, 2] });
      // The request reached the MQTT hub as an envelope (0x01), opened, from the aggregator.
      assert.equal(seen, [{ sealed: true, first: 0x01, sender: VPP }]);
      // The report came back sealed too: the aggregator has keys for HUB2, so it refuses clear text from it.
      assert.equal(dead, [], 'nothing dead-lettered on the aggregator');
    } finally {
      await Promise.allSettled([agg.close(), hub2.close()]);
    }
  }, 60_000),
);

s('a peer marked MQTT must be a peer and a topic level', () => {
  const bad = (o: { peers: string[]; mqttPeers: string[]; name?: string }): BusError => {
    try {
      amqpMqttPeersBus({ name: o.name ?? VPP, ...o });
    } catch (e) {
      return e as BusError;
    }
    throw new Error('accepted');
  };
  assert.match(bad({ peers: ['a'], mqttPeers: ['b'] }).message, 'the MQTT peer "b" is not one of the peers');
  assert.match(bad({ peers: ['heh.1'], mqttPeers: ['heh.1'] }).message, 'cannot be an MQTT topic level');
  assert.match(bad({ name: 'vpp.x', peers: ['h'], mqttPeers: ['h'] }).message, 'the entity name "vpp.x"');
});

s.run();
