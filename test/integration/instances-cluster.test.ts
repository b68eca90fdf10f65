/**
 * Issue 17, item 3: one aggregator as several instances on a 3-node RabbitMQ cluster (test/helpers/cluster.ts),
 * 5,000 simulated hubs (EBADGE_CLUSTER_HUBS) sending steady reports and answering activations, through the pair
 * exchanges of D3.2.3 as a hub would. The instances are processes of their own (test/helpers/instance-child.ts), so
 * that one can be killed with SIGKILL. In one run: instances A and B; A killed; one broker node killed; C started.
 *
 * The hubs are multiplexed: a few connections publish every hub's reports to `<hub>-to-<vpp>` (each hub's next
 * report only once its last is confirmed, the same message id again when it was not: a hub's outbox), and a few
 * quorum queues bound to every `<vpp>-to-<hub>` take the activations, which are answered once per activation id
 * (a hub's dedupe) with accept_activation, correlation id = the activation's message id.
 *
 * What must hold: every report a hub got confirmed is handled, each hub's in the order sent; a report is handled
 * twice only if the killed instance handled it first (its handler ran, SIGKILL came before its record and ack: see
 * docs/bus.md, "Dedupe across instances"); every activation a hub answered is answered once to the application
 * (its request settled, or, when the asker was killed, the answer handled by another instance), none twice; C
 * takes its share.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { RecoveringConnection } from '../../src/amqp/index.js';
import { timed } from '../helpers/amqp.js';
import { type Cluster, startCluster } from '../helpers/cluster.js';
import { sleep, withDeadline } from '../helpers/deadline.js';
import { Hubs } from '../helpers/hubs-sim.js';
import type { InstanceSpec } from '../helpers/instance-child.js';

const HUBS = Number(process.env['EBADGE_CLUSTER_HUBS'] ?? 5000);
const SHARDS = 8;
const GATEWAYS = 4;
const REPORTS_PER_S = 250;
const ACTIVATIONS_PER_S = 40;
const CHILD = fileURLToPath(new URL('../helpers/instance-child.js', import.meta.url));

let cluster: Cluster | undefined;
const children = new Set<ChildProcess>();
const connections = new Set<RecoveringConnection>();

function log(line: string): void {
  console.log(`  instances-cluster: ${line}`);
}

interface Outcomes {
  /** `hub seq` -> instances that handled it, in order */
  reports: Map<string, string[]>;
  /** hub -> seqs in the order handled (all instances together) */
  order: Map<string, number[]>;
  /** activation id -> what the application saw: `a <instance>` (its request settled) or `o <instance>` (orphan) */
  answers: Map<string, string[]>;
  failed: Map<string, string>;
  duplicates: Map<string, number>;
  /** instance -> the node (host:port) it is connected to */
  at: Map<string, string>;
}

function instance(spec: InstanceSpec, out: Outcomes): { child: ChildProcess; ready: Promise<void> } {
  const child = fork(CHILD, [JSON.stringify(spec)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.add(child);
  const name = spec.instance;
  const ready = new Promise<void>((resolve, reject) => {
    child.once('exit', (code, signal) => reject(new Error(`instance ${name} exited (${code ?? signal})`)));
    child.on(
      'message',
      (m: {
        ready?: boolean;
        r?: [string, number][];
        a?: [string, string];
        o?: [string, string];
        f?: [string, string];
        dup?: number;
        status?: unknown;
        at?: string;
      }) => {
        if (m.at !== undefined) out.at.set(name, m.at);
        if (m.status !== undefined) log(`${name}: ${JSON.stringify(m.status)}`);
        if (m.ready === true) resolve();
        for (const [hub, seq] of m.r ?? []) {
          const key = `${hub} ${seq}`;
          const by = out.reports.get(key);
          if (by === undefined) out.reports.set(key, [name]);
          else by.push(name);
          const o = out.order.get(hub);
          if (o === undefined) out.order.set(hub, [seq]);
          else o.push(seq);
        }
        for (const [kind, v] of [
          ['a', m.a],
          ['o', m.o],
        ] as const) {
          if (v === undefined) continue;
          const list = out.answers.get(v[0]);
          if (list === undefined) out.answers.set(v[0], [`${kind} ${name}`]);
          else list.push(`${kind} ${name}`);
        }
        if (m.f !== undefined) out.failed.set(m.f[0], `${name}: ${m.f[1]}`);
        if (m.dup !== undefined) out.duplicates.set(name, m.dup);
      },
    );
  });
  return { child, ready };
}

function connection(endpoints: string[], name: string): RecoveringConnection {
  const rc = new RecoveringConnection({
    endpoints,
    username: 'guest',
    password: 'guest',
    reconnectDelay: 2000,
    maxReconnectDelay: 4000,
    heartbeat: 5,
    connectTimeout: 5000,
    connectionName: name,
  });
  rc.on('handler-error', () => {
    /* a stale ack while a node is away: expected here */
  });
  connections.add(rc);
  return rc;
}

test(
  `3 instances of one aggregator on a 3-node cluster, ${HUBS} hubs: kill -9 of an instance, then of a node, then a third instance`,
  timed(async () => {
    const c = await startCluster({ name: 'inst' });
    cluster = c;
    const endpoints = c.endpoints.map((e) => `${e.hostname}:${e.port}`);
    const vpp = `vpp-inst-${process.pid}`;
    const hubNames = Array.from({ length: HUBS }, (_, i) => `heh-inst-${String(i).padStart(4, '0')}`);
    const out: Outcomes = {
      reports: new Map(),
      order: new Map(),
      answers: new Map(),
      failed: new Map(),
      duplicates: new Map(),
      at: new Map(),
    };
    const spec = (name: string): InstanceSpec => ({
      name: vpp,
      peers: hubNames,
      shards: SHARDS,
      instance: name,
      endpoints,
      presenceMs: 500,
      // Deliveries in flight when an instance is killed.
      workUs: 500,
    });
    const t0 = Date.now();
    const a = instance(spec('vpp-a'), out);
    await withDeadline(a.ready, 180_000, 'instance A declaring the topology');
    log(`A started (the topology for ${HUBS} hubs) in ${Date.now() - t0} ms`);
    const b = instance(spec('vpp-b'), out);
    await withDeadline(b.ready, 120_000, 'instance B');
    const hubs = new Hubs(vpp, hubNames);
    const conns = Array.from({ length: GATEWAYS }, (_, g) => connection(endpoints, `hubs-${g}`));
    const t1 = Date.now();
    await withDeadline(hubs.start(conns), 180_000, 'the hubs simulator');
    log(`instance B and the hubs simulator started in ${Date.now() - t1} ms`);

    // Traffic: reports round robin over the hubs; activations round robin over the live instances.
    const live = new Map<string, ChildProcess>([
      ['vpp-a', a.child],
      ['vpp-b', b.child],
    ]);
    const askedBy = new Map<string, string>();
    let cursor = 0;
    let asks = 0;
    const traffic = setInterval(() => {
      hubs.tick(REPORTS_PER_S / 10, cursor);
      cursor += REPORTS_PER_S / 10;
      const names = [...live.keys()];
      for (let j = 0; j < ACTIVATIONS_PER_S / 10; j++) {
        const who = names[asks % names.length] as string;
        const id = randomUUID();
        askedBy.set(id, who);
        live.get(who)?.send({ activate: [hubNames[(asks * 7919) % HUBS] as string, id] });
        asks++;
      }
    }, 100);
    const handledBy = (who: string) => [...out.reports.values()].filter((by) => by.includes(who)).length;
    try {
      await sleep(6_000);
      log(`steady: ${out.reports.size} reports handled (A ${handledBy('vpp-a')}, B ${handledBy('vpp-b')})`);
      live.delete('vpp-a');
      a.child.kill('SIGKILL');
      await sleep(8_000);
      // The node B is connected to: B moves, its shards' consumers with it.
      const victim = c.nodes[endpoints.indexOf(out.at.get('vpp-b') ?? '')] ?? c.nodes[1];
      if (victim === undefined) throw new Error('no node to kill');
      await c.kill9(victim);
      log(`killed A, then node ${victim.nodeName} (B's); ${out.reports.size} reports handled`);
      await sleep(8_000);
      const cc = instance(spec('vpp-c'), out);
      // Its start declares the topology of 5,000 hubs again (seconds under load): its share counts from its ready.
      await withDeadline(cc.ready, 120_000, 'instance C');
      live.set('vpp-c', cc.child);
      const beforeC = out.reports.size;
      await sleep(10_000);
      clearInterval(traffic);
      hubs.stop();
      const handledByC = handledBy('vpp-c');
      const sinceC = out.reports.size - beforeC;
      log(`C handled ${handledByC} of the ${sinceC} reports handled in the 10 s since it was ready`);

      // Everything confirmed to a hub is handled; every activation a hub answered reaches the application.
      const expected = [...hubs.confirmed.values()].reduce((n, x) => n + x, 0);
      await withDeadline(
        (async () => {
          while (
            !hubs.quiet ||
            out.reports.size < expected ||
            [...hubs.answered].some((id) => !out.answers.has(id) && askedBy.get(id) !== 'vpp-a')
          ) {
            await sleep(200);
          }
        })(),
        90_000,
        'everything handled',
      );
      await sleep(1_000); // late copies, if any
      const twice = [...out.reports.entries()].filter(([, by]) => by.length > 1);
      const answeredTwice = [...out.answers.entries()].filter(([, x]) => x.length > 1);
      const lostAnswers = [...hubs.answered].filter((id) => !out.answers.has(id));
      const dupAtHubs = [...hubs.activations.values()].filter((n) => n > 1).length;
      log(
        `${expected} reports confirmed to hubs (${hubs.resends} sent again), ${out.reports.size} handled, ` +
          `${twice.length} twice; ${asks} activations asked, ${hubs.answered.size} answered by hubs ` +
          `(${dupAtHubs} delivered twice to a hub), ${answeredTwice.length} answered twice to the application, ` +
          `${lostAnswers.length} answers not seen (all A's), ${out.failed.size} requests failed; ` +
          `duplicates dropped: ${[...out.duplicates].map(([k, v]) => `${k} ${v}`).join(', ')}; ${Date.now() - t0} ms in all`,
      );

      for (const [hub, last] of hubs.confirmed) {
        for (let seq = 1; seq <= last; seq++) assert.ok(out.reports.has(`${hub} ${seq}`), `${hub} ${seq} handled`);
      }
      for (const [key, by] of twice) {
        assert.is(by[0], 'vpp-a', `${key} handled twice (${by.join(', ')}): only a copy the killed instance handled`);
      }
      assert.ok(twice.length <= 10, `${twice.length} reports handled twice`);
      for (const [hub, seqs] of out.order) {
        const first = seqs.filter((s, i) => seqs.indexOf(s) === i);
        assert.equal(
          first,
          first.map((_s, i) => i + 1),
          `${hub}: reports in the order sent`,
        );
      }
      // As for reports: an answer the killed instance took in the instant before its kill -9, before its record
      // reached the ledger, comes again to the shard's next owner, where its request is gone: an ordinary message.
      for (const [id, x] of answeredTwice) {
        assert.equal(x.slice(0, 1), ['a vpp-a'], `${id} answered twice (${x.join(', ')}): only one A had taken`);
      }
      assert.ok(answeredTwice.length <= 2, `${answeredTwice.length} activations answered twice to the application`);
      for (const id of lostAnswers) assert.is(askedBy.get(id), 'vpp-a', `the answer to ${id} was seen`);
      for (const [id, why] of out.failed) assert.is(askedBy.get(id), 'vpp-a', `request ${id} failed: ${why}`);
      if (handledByC < sinceC / 5) {
        for (const child of live.values()) child.send({ status: true });
        await sleep(1_000);
      }
      assert.ok(handledByC >= sinceC / 5, `C took its share: ${handledByC} of ${sinceC}`);
    } finally {
      clearInterval(traffic);
    }
  }, 600_000),
);

test.after(async () => {
  for (const child of children) child.kill('SIGKILL');
  await Promise.allSettled([...connections].map((c) => c.close()));
  await cluster?.stop();
});

test.run();
