/**
 * `ebadge provision --apply` on a throw-away RabbitMQ node with a TLS listener (test/helpers/broker-node.ts), and the
 * bus on it with nothing but the generated credentials: the real hub (node .out/src/bin/hub.js) with a password and
 * with its client certificate (EXTERNAL), an aggregator over the bus, the CLI as an EXTERNAL operator. Then the
 * attacks of issue 15, each made by a party with its own valid credentials and each refused by the broker with 403:
 * reading, purging, deleting another's inbox, tapping its exchange, publishing as another party, publishing a type
 * the party may not send, declaring or deleting exchanges, using the default exchange; guest cannot log in at all.
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type Channel, type Connection, connect, parseUrl } from '../../src/amqp/index.js';
import { type AmqpTransport, amqpBus, type Connector } from '../../src/bus/index.js';
import { type Io, main } from '../../src/cli.js';
import { EbTime } from '../../src/codec/index.js';
import { hubMain } from '../../src/device/main.js';
import { rejection, timed } from '../helpers/amqp.js';
import { type BrokerNode, issueClientCertificate, startBrokerNode, writeCtlScript } from '../helpers/broker-node.js';
import { until } from '../helpers/deadline.js';
import { HubProcess } from '../helpers/hub-process.js';

const HUB = 'heh-b827ebea02c1';
const HUB_X = 'heh-b827ebea02c2'; // logs in with its certificate
const VPP = 'vpp-acme';
const EVIL = 'vpp-acme-2'; // a party of its own, whose name starts with another's
const OPS = 'ops'; // the CLI, with its certificate
// docs/operations.md's aggregator program (examples/aggregator-instance.ts) runs as these, sharded as the doc asks:
const DOC = 'vpp-doc'; // with its password
const DOC_X = 'vpp-doc-cert'; // with its certificate

const s = suite('provisioned broker');
const dir = mkdtempSync(path.join(tmpdir(), 'ebadge-provision-it-'));
const out = path.join(dir, 'out');
let node: BrokerNode | undefined;
const hubs: HubProcess[] = [];
const buses: Connector<AmqpTransport>[] = [];

s.after(async () => {
  await Promise.allSettled(buses.map((b) => b.close()));
  await Promise.allSettled(hubs.map((h) => h.stop()));
  await node?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function theNode(): BrokerNode & { tlsPort: number; tls: NonNullable<BrokerNode['tls']> } {
  if (node?.tlsPort === undefined || node.tls === undefined) throw new Error('the node did not start');
  return node as BrokerNode & { tlsPort: number; tls: NonNullable<BrokerNode['tls']> };
}

function capture(): Io & { lines: string[]; errors: string[] } {
  const lines: string[] = [];
  const errors: string[] = [];
  return { lines, errors, out: (l) => lines.push(l), err: (l) => errors.push(l) };
}

/** A party's own connection, from what provisioning wrote for it: the password file, plain AMQP. */
function asParty(name: string): Promise<Connection> {
  const password = readFileSync(path.join(out, name, 'broker.pw'), 'utf8').trim();
  return connect({
    hostname: '127.0.0.1',
    port: theNode().amqpPort,
    vhost: 'ebadge',
    username: name,
    password,
    connectionName: `attack-${name}`,
  });
}

/** The broker's refusal of `attempt` on a fresh channel: the 403 and its text (the channel is closed by it). */
async function refused(conn: Connection, attempt: (ch: Channel) => Promise<unknown>): Promise<string> {
  const ch = await conn.createConfirmChannel();
  let err: unknown;
  try {
    await attempt(ch);
  } catch (e) {
    err = e;
  }
  await ch.close().catch(() => undefined);
  for (let e = err as { replyCode?: number; message?: string; cause?: unknown } | undefined; e; e = e.cause as never) {
    if (e.replyCode === 403) return e.message ?? '';
  }
  throw new Error(`expected a 403 refusal, got ${err === undefined ? 'success' : String(err)}`);
}

/** An aggregator's bus, from its bus.json and broker.pw, over TLS; `instance`: one of several (a sharded party). */
async function aggregator(
  name: string,
  instance?: { instance: string; degraded: string[] },
): Promise<Connector<AmqpTransport>> {
  const cfg = JSON.parse(readFileSync(path.join(out, name, 'bus.json'), 'utf8')) as {
    url: string;
    peers: string[];
    declareExchanges: boolean;
    inboxes?: { shards: number };
  };
  const bus = amqpBus({
    name,
    peers: cfg.peers,
    ...(instance === undefined ? {} : { instance: instance.instance, inboxes: cfg.inboxes, presenceMs: 300 }),
    url: parseUrl(cfg.url),
    connectOptions: {
      username: name,
      password: readFileSync(path.join(out, name, 'broker.pw'), 'utf8').trim(),
      tls: { ca: readFileSync(theNode().tls.caFile) },
    },
    declareExchanges: cfg.declareExchanges,
  });
  buses.push(bus);
  bus.transport.on('degraded', (what) => instance?.degraded.push(what));
  await bus.start();
  return bus;
}

/** Starts the real hub on its generated hub.json, with a state folder and the example's two devices. */
async function startHub(name: string): Promise<HubProcess> {
  const file = path.join(out, name, 'hub.json');
  const cfg = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  cfg['stateDir'] = path.join(dir, `state-${name}`);
  cfg['resolutionS'] = 1;
  cfg['devices'] = [
    { name: 'meter', meter: { kind: 'simulated' } },
    { name: 'boiler', type: 'boiler', maxPowerKw: 2, meter: { kind: 'simulated' }, actuator: { kind: 'simulated' } },
  ];
  writeFileSync(file, JSON.stringify(cfg));
  const hub = new HubProcess(['--config', file]);
  hubs.push(hub);
  await hub.waitFor('hub running', 20_000);
  // The inbox provisioning declared is the one the bus asks for: no warning about its delivery limit.
  assert.not.ok(
    hub.logs.some((l) => l.msg.includes('x-delivery-limit')),
    hub.transcript(),
  );
  return hub;
}

function lastMinutes(n: number): { from: EbTime; to: EbTime } {
  const to = EbTime.fromEpochMs(Math.floor(Date.now() / 1000) * 1000);
  return { from: to.plusSeconds(-60 * n), to };
}

// Started inside a test, not in a before hook: uvu 0.5 swallows errors thrown by hooks.
s(
  'ebadge provision --apply loads a TLS node: users, permissions, policy, and no guest',
  timed(async () => {
    node = await startBrokerNode({ name: 'provision', tls: true });
    const n = theNode();
    const parties = path.join(dir, 'parties.json');
    writeFileSync(
      parties,
      JSON.stringify({
        format: 'ebadge-parties/1',
        url: `amqps://127.0.0.1:${n.tlsPort}`,
        ca: 'ca.pem',
        parties: [
          { name: VPP, role: 'aggregator', peers: [HUB, HUB_X] },
          // Sharded: it runs as instances (the last test), and its wider namespace must not reach VPP's.
          { name: EVIL, role: 'aggregator', peers: [HUB_X], shards: 2 },
          { name: HUB, role: 'hub' },
          { name: HUB_X, role: 'hub', auth: 'external' },
          { name: OPS, role: 'operator', peers: [HUB], auth: 'external' },
          { name: DOC, role: 'aggregator', peers: [HUB_X], shards: 2 },
          { name: DOC_X, role: 'aggregator', peers: [HUB_X], shards: 2, auth: 'external' },
        ],
      }),
    );
    const ctl = path.join(dir, 'rabbitmqctl');
    await writeCtlScript(n, ctl);
    const io = capture();
    const code = await main(['provision', parties, '--out', out, '--apply', '--rabbitmqctl', ctl], io);
    assert.is(code, 0, io.errors.join('\n'));
    assert.match(io.lines.at(-1) as string, 'vhost "ebadge", guest deleted');
    // What the operator puts beside each config: the broker's CA, and a certificate for the EXTERNAL parties.
    for (const p of [VPP, EVIL, HUB, HUB_X, OPS, DOC, DOC_X]) copyFileSync(n.tls.caFile, path.join(out, p, 'ca.pem'));
    for (const p of [HUB_X, OPS, DOC_X]) {
      const cert = await issueClientCertificate(n, p);
      copyFileSync(cert.certFile, path.join(out, p, 'client.pem'));
      copyFileSync(cert.keyFile, path.join(out, p, 'client.key'));
    }
    const users = (JSON.parse(await n.ctl(['list_users', '-q', '--formatter', 'json'])) as { user: string }[]).map(
      (u) => u.user,
    );
    for (const p of [EVIL, HUB, HUB_X, OPS, VPP]) assert.ok(users.includes(p), p);
    assert.not.ok(users.includes('guest'), 'guest deleted');
    const policies = await n.ctl(['list_queues', '-p', 'ebadge', '-q', 'name', 'policy']);
    assert.match(policies, `private-${HUB}-in\tebadge-inbox-delivery-limit`);
    assert.match(policies, `private-${HUB}-in:${VPP}\tebadge-inbox-delivery-limit`);
    assert.match(policies, `private-${HUB}-dead\tebadge-dead-letters-cap`);
  }, 120_000),
);

s(
  'guest cannot log in, on the vhost or on /',
  timed(async () => {
    for (const vhost of ['ebadge', '/']) {
      const err = await rejection(
        connect({ hostname: '127.0.0.1', port: theNode().amqpPort, vhost, username: 'guest', password: 'guest' }),
      );
      assert.match(String(err), /ACCESS_REFUSED|auth/i);
    }
  }),
);

s(
  'the real hub (password over amqps) and an aggregator work end to end with the generated credentials',
  timed(async () => {
    await startHub(HUB);
    const vpp = await aggregator(VPP);
    const report = await vpp.request(HUB, {
      msg: 'get_report',
      ...lastMinutes(1),
      resolution: 60,
      signals: ['meter.p'],
    });
    assert.is(report.msg, 'report');
    const to = EbTime.fromEpochMs(Math.floor(Date.now() / 60_000) * 60_000);
    const decision = await vpp.request(HUB, {
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
  'EXTERNAL: the hub logs in with its certificate as its CN, and answers the aggregator',
  timed(async () => {
    await startHub(HUB_X);
    const conns = await theNode().ctl(['list_connections', 'user', 'auth_mechanism', '-q', '--no-table-headers']);
    assert.match(conns, `${HUB_X}\tEXTERNAL`);
    assert.match(conns, `${HUB}\tPLAIN`);
    const vpp = buses[0] as Connector<AmqpTransport>;
    const report = await vpp.request(HUB_X, {
      msg: 'get_report',
      ...lastMinutes(1),
      resolution: 60,
      signals: ['meter.p'],
    });
    assert.is(report.msg, 'report');
  }, 60_000),
);

s(
  "the CLI with the operator's bus.json (EXTERNAL) gets a report; a hub's message type it may not send is refused",
  timed(async () => {
    const cfg = path.join(out, OPS, 'bus.json');
    const io = capture();
    const { from, to } = lastMinutes(1);
    const args = [`from=${from.toString()}`, `to=${to.toString()}`, 'resolution=60', 'signals=meter.p'];
    const code = await main(['request', '--config', cfg, '--to', HUB, 'get_report', ...args], io);
    assert.is(code, 0, `${io.errors.join('\n')}\nthe hub:\n${hubs[0]?.transcript()}`);
    assert.is((JSON.parse(io.lines[0] as string) as { msg: string }).msg, 'report');
    assert.match(io.errors[0] as string, `as ${OPS} (EXTERNAL: the CN of ${path.join(out, OPS, 'client.pem')})`);
    const bad = capture();
    const sent = await main(['send', '--config', cfg, '--to', HUB, 'get_all_prices'], bad);
    assert.is(sent, 1);
    assert.match(
      bad.errors.join('\n'),
      /ACCESS_REFUSED - access to topic 'get_all_prices\.ops' in exchange 'ops-to-heh/,
    );
  }, 30_000),
);

s(
  "attacks on another party, each with the attacker's own valid credentials, are refused by the broker with 403",
  timed(async () => {
    for (const h of hubs.splice(0)) assert.is(await h.stop(), 0);
    // The aggregator's messages to the hub wait in its inbox for the aggregator (docs/provisioning.md).
    const inbox = `private-${HUB}-in:${VPP}`;
    // One message waits for the stopped hub: nobody else may read it, purge it or delete it. (The broker's count
    // of a quorum queue's messages lags behind it by up to a few seconds.)
    const depth = async (): Promise<number> => {
      const owner = await asParty(HUB);
      try {
        return (await (await owner.createChannel()).queueDeclare(inbox, { passive: true })).messageCount;
      } finally {
        await owner.close();
      }
    };
    await (buses[0] as Connector<AmqpTransport>).publish(HUB, { msg: 'set_clock', offset: null });
    assert.is(await depth(), 1);

    const evil = await asParty(EVIL);
    try {
      const x = (name: string) => new RegExp(`ACCESS_REFUSED - access to ${name} in vhost 'ebadge' refused`);
      assert.match(await refused(evil, (ch) => ch.basicConsume(inbox, () => undefined)), x(`queue '${inbox}'`));
      assert.match(await refused(evil, (ch) => ch.basicGet(inbox)), x(`queue '${inbox}'`));
      assert.match(await refused(evil, (ch) => ch.queuePurge(inbox)), x(`queue '${inbox}'`));
      assert.match(await refused(evil, (ch) => ch.queueDelete(inbox)), x(`queue '${inbox}'`));
      // A tap: its own inbox bound to the exchange that feeds the hub, or a new queue of its own.
      const feed = `${VPP}-to-${HUB}`;
      assert.match(await refused(evil, (ch) => ch.queueBind(`private-${EVIL}-in`, feed, '#')), x(`exchange '${feed}'`));
      assert.match(await refused(evil, (ch) => ch.queueDeclare('tap', { exclusive: true })), x("queue 'tap'"));
      assert.match(await refused(evil, (ch) => ch.queueDeclare('', { exclusive: true })), /queue 'amq\.gen-/);
      // Publishing as the hub, to its aggregator.
      const asHub = `${HUB}-to-${VPP}`;
      assert.match(
        await refused(evil, (ch) => ch.basicPublish(asHub, 'report', '{"msg":"report"}')),
        x(`exchange '${asHub}'`),
      );
      // On its own exchange to a hub: an aggregator's types pass, a hub's type does not.
      const own = `${EVIL}-to-${HUB_X}`;
      const ok = await evil.createConfirmChannel();
      await ok.basicPublish(own, `set_clock.${HUB_X}`, '{"msg":"set_clock","offset":null}');
      await ok.close();
      assert.match(
        await refused(evil, (ch) => ch.basicPublish(own, 'report', '{"msg":"report"}')),
        x(`topic 'report' in exchange '${own}'`),
      );
      assert.match(await refused(evil, (ch) => ch.basicPublish(own, '', '{}')), x(`topic '' in exchange '${own}'`));
      // Exchanges: neither its own (provisioning declares them) nor anybody else's.
      for (const name of [own, asHub, `${EVIL}-to-${HUB}`]) {
        assert.match(
          await refused(evil, (ch) => ch.exchangeDeclare(name, 'topic', { durable: true })),
          x(`exchange '${name}'`),
        );
        assert.match(await refused(evil, (ch) => ch.exchangeDelete(name)), x(`exchange '${name}'`));
      }
      // The default exchange, straight into the hub's inbox.
      assert.match(await refused(evil, (ch) => ch.basicPublish('', inbox, '{}')), x("exchange 'amq.default'"));
    } finally {
      await evil.close();
    }
    // D3.2.3's private-vpp-acme-.* would give vpp-acme the inbox of vpp-acme-2.
    const vpp = await asParty(VPP);
    try {
      const other = `private-${EVIL}-in`;
      assert.match(await refused(vpp, (ch) => ch.basicGet(other)), /ACCESS_REFUSED/);
      assert.match(await refused(vpp, (ch) => ch.queuePurge(other)), /ACCESS_REFUSED/);
    } finally {
      await vpp.close();
    }
    assert.is(await depth(), 1, "the hub's message is still there");
  }, 60_000),
);

s(
  'the delivery limit (10): a message that keeps coming back goes to the dead-letter queue',
  timed(async () => {
    // The aggregator's own bus would take the message first (and dead-letter it itself, as undecodable).
    await Promise.allSettled(buses.splice(0).map((b) => b.close()));
    const hub = await asParty(HUB);
    const vpp = await asParty(VPP);
    try {
      const pub = await hub.createConfirmChannel();
      await pub.basicPublish(`${HUB}-to-${VPP}`, 'report', '{"msg":"poison"}');
      const ch = await vpp.createChannel();
      let deliveries = 0;
      await ch.basicConsume(`private-${VPP}-in`, (m) => {
        if (m.text() !== '{"msg":"poison"}') return m.ack();
        deliveries++;
        m.nack(true);
      });
      const dead = await vpp.createChannel();
      let got: string | undefined;
      const deadline = Date.now() + 10_000;
      while (got === undefined && Date.now() < deadline) {
        got = (await dead.basicGet(`private-${VPP}-dead`, { noAck: true }))?.text();
        if (got === undefined) await new Promise((r) => setTimeout(r, 50));
      }
      assert.is(got, '{"msg":"poison"}');
      assert.is(deliveries, 11, 'the first delivery and one per return allowed (10, the default)');
    } finally {
      await hub.close();
      await vpp.close();
    }
  }, 30_000),
);

s(
  'a sharded aggregator runs as two instances on its generated credentials: shards, presence, relay and ledger permitted',
  timed(async () => {
    await startHub(HUB_X); // stopped before the attacks
    const degraded: string[] = [];
    const a = await aggregator(EVIL, { instance: 'evil-a', degraded });
    const b = await aggregator(EVIL, { instance: 'evil-b', degraded });
    const owners = (c: Connector<AmqpTransport>) => new Set(c.transport.shardStatus().map((x) => x.owner));
    // Each hears the other (presence through the relay exchange): one shard each.
    await until(() => owners(a).size === 2 && owners(b).size === 2, 'the two instances hear each other', 10_000);
    // HUB_X answers both; the answer to one of them reaches the shard the other consumes, and is relayed to it.
    for (const c of [a, b, a, b]) {
      const report = await c.request(HUB_X, {
        msg: 'get_report',
        ...lastMinutes(1),
        resolution: 60,
        signals: ['meter.p'],
      });
      assert.is(report.msg, 'report');
    }
    // The ledger stream was declared and written: no warning of any kind.
    assert.equal(degraded, []);
    const queues = await theNode().ctl(['list_queues', '-p', 'ebadge', '-q', 'name', 'type']);
    assert.match(queues, `private-${EVIL}-handled\tstream`);
  }, 60_000),
);

s(
  "docs/operations.md's aggregator program runs on the generated amqps configs, with a password and with a certificate",
  timed(async () => {
    // It used to read broker.pw alone: over amqps it never connected (the broker's CA not given: start() waited for
    // ever, in silence), and an `external` party's bus.json, which names no password file, made it throw.
    const example = fileURLToPath(new URL('../../examples/aggregator-instance.js', import.meta.url));
    for (const party of [DOC, DOC_X]) {
      const child = spawn(process.execPath, [example, '--config', path.join(out, party, 'bus.json')], {
        env: { ...process.env, EBADGE_INSTANCE: `${party}-1` },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (b: Buffer) => {
        stderr += b.toString();
      });
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      try {
        await until(() => stderr.includes(`${party}/${party}-1 running`) || child.exitCode !== null, 'running', 20_000);
        assert.is(stderr, `${party}/${party}-1 running\n`, `${party}: running, nothing failed on the way`);
      } finally {
        child.kill('SIGTERM');
      }
      assert.is(await exited, 0, `${party}: exit 0 on SIGTERM\n${stderr}`);
    }
  }, 60_000),
);

s(
  'hub.js bench --config on the provisioned hub.json: its user may not have the loopback queue; the figures before it, then that said, exit 77',
  timed(async () => {
    const lines: string[] = [];
    const errs: string[] = [];
    const code = await hubMain(['bench', '--seconds', '0.01', '--config', path.join(out, HUB, 'hub.json')], {
      io: { out: (l) => lines.push(l), err: (l) => errs.push(l) },
      stop: new Promise<void>(() => undefined),
    });
    assert.is(code, 77, errs.join('\n'));
    assert.match(errs.at(-1) ?? '', /^hub\.js bench: the broker refused the loopback queue: .*403 ACCESS_REFUSED/);
    assert.match(lines.at(-1) ?? '', /round trip +not measured/);
  }, 60_000),
);

s(
  "the README's library example runs as the aggregator on its generated password (EBADGE_PASSWORD)",
  timed(async () => {
    // Last: the aggregator of the tests above would take the example's replies from the same inbox.
    await Promise.all(buses.splice(0).map((b) => b.close()));
    await startHub(HUB); // stopped by the attacks' test
    const example = fileURLToPath(new URL('../../examples/aggregator.js', import.meta.url));
    const url = `amqp://127.0.0.1:${theNode().amqpPort}/ebadge`;
    const password = readFileSync(path.join(out, VPP, 'broker.pw'), 'utf8').trim();
    const run = spawnSync(process.execPath, [example, HUB, VPP, url], {
      env: { ...process.env, EBADGE_PASSWORD: password },
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.is(run.status, 0, `${run.stdout}\n${run.stderr}`);
    assert.match(run.stdout, / (accept|reject|modify)_activation\n$/);
    assert.ok(run.stderr.startsWith(`logging in as ${VPP}`), run.stderr);
  }, 60_000),
);

s.run();
