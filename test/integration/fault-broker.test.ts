/**
 * Issue 7's broker faults, with the recovery layer (src/amqp/recovery.ts) on throw-away RabbitMQ nodes started here
 * (test/helpers/broker-node.ts, cluster.ts, broker-faults.ts; the default node is never touched):
 *
 *   2. rabbitmqctl stop_app / start_app in the middle of a confirmed stream: nothing lost, the consumer comes back;
 *   3. kill -9 of the cluster node the client is connected to: the client moves to another endpoint, nothing lost;
 *   5. a memory alarm (connection.blocked) for 30 s: publishes wait, then complete; memory stays bounded;
 *   6. the broker closes a channel for an ack timeout: the channel recovers, the message is redelivered and handled once.
 *
 * Each prints one line of figures (docs/RELIABILITY.md keeps those of the last run). Fault 1 (cuts through a proxy)
 * is in amqp-recovery.test.ts, fault 4 (the hub killed) in fault-hub-kill.test.ts.
 */

import { randomUUID } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  type Message,
  type RecoveringChannel,
  RecoveringConnection,
  type RecoveryOptions,
} from '../../src/amqp/index.js';
import { amqpBus } from '../../src/bus/index.js';
import type { Message as BusMessage } from '../../src/codec/index.js';
import { unique } from '../helpers/amqp.js';
import {
  clearMemoryAlarm,
  consumerTimeoutOptions,
  raiseMemoryAlarm,
  startApp,
  stopApp,
} from '../helpers/broker-faults.js';
import { type BrokerNode, startBrokerNode } from '../helpers/broker-node.js';
import { barrier, type Received, until } from '../helpers/bus.js';
import { type Cluster, startCluster } from '../helpers/cluster.js';
import { sleep, withDeadline } from '../helpers/deadline.js';

let node: BrokerNode | undefined;
let cluster: Cluster | undefined;
const clients = new Set<RecoveringConnection>();

function client(ports: number[], options: RecoveryOptions = {}): RecoveringConnection {
  const rc = new RecoveringConnection({
    username: 'guest',
    password: 'guest',
    endpoints: ports.map((p) => `127.0.0.1:${p}`),
    reconnectDelay: 2000,
    maxReconnectDelay: 4000,
    heartbeat: 5,
    connectTimeout: 5000,
    connectionName: 'uvu-fault',
    ...options,
  });
  rc.on('handler-error', () => {
    /* a stale ack or a failed re-consume while the node is away: expected here */
  });
  clients.add(rc);
  return rc;
}

async function closeClients(): Promise<void> {
  await Promise.allSettled([...clients].map((c) => withDeadline(c.close(), 10_000, 'close a client')));
  clients.clear();
}

async function theNode(): Promise<BrokerNode> {
  // One node for faults 2, 5 and 6; its 5 s consumer timeout only bites a consumer that holds a delivery. Its 2 s
  // heartbeat is what a badly configured broker proposes (HB-1: we raise it to 5).
  const ct = consumerTimeoutOptions({ timeoutMs: 5_000, tickMs: 1_000 });
  node ??= await startBrokerNode({
    name: 'fault',
    extraConfig: `${ct.extraConfig}\nheartbeat = 2`,
    advancedConfig: ct.advancedConfig,
  });
  return node;
}

/** Counts every delivery of a queue by message_id, acking each. */
async function countingConsumer(ch: RecoveringChannel, queue: string): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  await ch.basicConsume(
    queue,
    (m) => {
      const id = m.properties.messageId ?? '';
      seen.set(id, (seen.get(id) ?? 0) + 1);
      m.ack();
    },
    { prefetch: 200 },
  );
  return seen;
}

function tally(seen: Map<string, number>, ids: string[]): { lost: number; duplicates: number; received: number } {
  const duplicates = [...seen.values()].reduce((a, c) => a + c - 1, 0);
  return {
    lost: ids.filter((id) => !seen.has(id)).length,
    duplicates,
    received: [...seen.values()].reduce((a, c) => a + c, 0),
  };
}

interface Pair {
  pub: RecoveringConnection;
  pch: RecoveringChannel;
  /** The consumer's channel, on its own connection. */
  sch: RecoveringChannel;
  queue: string;
  /** Deliveries by message_id, counted by a consumer on its own connection. */
  seen: Map<string, number>;
  /** The endpoint the publisher connected to first. */
  publisherAt: string;
}

/**
 * A publisher and a consumer, each on its own recovering connection, around a new durable quorum queue; the
 * consumer starts consuming unless `consume` is false (then `seen` fills once the test calls countingConsumer).
 */
async function pair(ports: number[], what: string, consume = true): Promise<Pair> {
  const pub = client(ports);
  const sub = client(ports);
  let publisherAt = '';
  pub.once('connected', (e) => {
    publisherAt = e;
  });
  await Promise.all([pub.whenOpen(), sub.whenOpen()]);
  const pch = await pub.createChannel();
  const sch = await sub.createChannel({ confirm: false });
  const queue = unique(what);
  await pch.queueDeclare(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  return { pub, pch, sch, queue, seen: consume ? await countingConsumer(sch, queue) : new Map(), publisherAt };
}

/**
 * Publishes `total` confirmed messages, 100 every 150 ms, while `fault` runs; then checks that every publish was
 * confirmed and waits until every message was consumed.
 */
async function streamThrough(
  p: Pair,
  prefix: string,
  total: number,
  fault: () => Promise<void>,
): Promise<ReturnType<typeof tally>> {
  const ids: string[] = [];
  const pubs: Promise<void>[] = [];
  const during = fault();
  for (let i = 0; i < total; i++) {
    const id = `${prefix}-${i}`;
    ids.push(id);
    pubs.push(p.pch.basicPublish('', p.queue, `m${i}`, { messageId: id, deliveryMode: 2 }, { timeout: 120_000 }));
    if (i % 100 === 99) await sleep(150); // the publisher's pace: the stream lasts a few seconds
  }
  await during;
  const failed = (await Promise.allSettled(pubs)).filter((o) => o.status === 'rejected');
  assert.is(
    failed.length,
    0,
    `every publish was confirmed (${failed
      .slice(0, 2)
      .map((f) => String((f as PromiseRejectedResult).reason))
      .join('; ')})`,
  );
  await until(() => ids.every((id) => p.seen.has(id)), 'every message consumed', 60_000);
  return tally(p.seen, ids);
}

function run(title: string, fn: () => Promise<void>, ms: number): void {
  test(title, async () => {
    try {
      await withDeadline(fn(), ms, title);
    } finally {
      await closeClients();
    }
  });
}

run(
  'HB-1: a broker that proposes a 2 s heartbeat gets 5 s, never less',
  async () => {
    const n = await theNode();
    const rc = client([n.amqpPort], { heartbeat: 0 });
    await rc.whenOpen();
    assert.is(rc.connection?.heartbeat, 5);
  },
  60_000,
);

run(
  'Fault 2: stop_app / start_app in the middle of a confirmed stream: nothing lost, the consumer comes back',
  async () => {
    const n = await theNode();
    const p = await pair([n.amqpPort], 'fault2');
    const recovered: number[] = [];
    p.pub.on('recovered', (i) => recovered.push(i.downtimeMs));
    const t = await streamThrough(p, 'f2', 3000, async () => {
      await until(() => p.seen.size >= 1000, 'the stream under way (1000 messages consumed)', 20_000);
      await stopApp(n);
      await sleep(3000); // the outage
      await startApp(n);
    });
    console.log(
      `  fault 2: sent 3000, received ${t.received}, duplicates ${t.duplicates}, lost ${t.lost}, publisher recovery ${recovered.join('/')} ms`,
    );
    assert.is(t.lost, 0);
    assert.ok(recovered.length >= 1, 'the publisher recovered');
    await p.pch.queueDelete(p.queue);
  },
  120_000,
);

run(
  'Fault 5, FC-2, FC-3: a memory alarm for 30 s: publishes wait, then complete; a consumer on its own connection is not blocked; memory stays bounded',
  async () => {
    const n = await theNode();
    const { pub, pch, sch, queue } = await pair([n.amqpPort], 'fault5', false);
    // A backlog for the consumer, published before the alarm: it must keep flowing while publishers are blocked.
    await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        pch.basicPublish('', queue, `pre${i}`, { messageId: `pre-${i}`, deliveryMode: 2 }),
      ),
    );
    let blockedAt = 0;
    let unblockedAt = 0;
    pub.on('blocked', () => {
      blockedAt = Date.now();
    });
    pub.on('unblocked', () => {
      unblockedAt = Date.now();
    });
    await raiseMemoryAlarm(n);
    const alarmAt = Date.now();
    try {
      // RabbitMQ blocks a connection when it next publishes.
      const ids: string[] = [];
      const settledAt: number[] = [];
      const heap0 = process.memoryUsage().heapUsed;
      const pubs: Promise<void>[] = [];
      for (let i = 0; i < 2000; i++) {
        const id = `f5-${i}`;
        ids.push(id);
        pubs.push(
          pch
            .basicPublish(
              '',
              queue,
              Buffer.alloc(512, i % 256),
              { messageId: id, deliveryMode: 2 },
              { timeout: 120_000 },
            )
            .then(() => {
              settledAt.push(Date.now());
            }),
        );
        if (i % 200 === 199) await sleep(50); // the publisher's pace
      }
      await until(() => blockedAt > 0, 'connection.blocked', 10_000);
      const seen = await countingConsumer(sch, queue);
      await until(() => seen.size >= 200, 'the backlog consumed during the alarm', 10_000);
      await sleep(Math.max(0, 30_000 - (Date.now() - alarmAt))); // the alarm lasts 30 s
      const heapGrowth = process.memoryUsage().heapUsed - heap0;
      const early = settledAt.filter((t) => t < alarmAt + 29_000).length;
      await clearMemoryAlarm(n);
      const outcome = await withDeadline(Promise.allSettled(pubs), 30_000, 'publishes complete after the alarm');
      assert.is(outcome.filter((o) => o.status === 'rejected').length, 0, 'every publish completed after the alarm');
      await until(() => ids.every((id) => seen.has(id)), 'every message consumed', 30_000);
      const t = tally(seen, ids);
      console.log(
        `  fault 5: blocked ${unblockedAt - blockedAt} ms, 2000 publishes waited (${early} confirmed while blocked), heap ${heapGrowth >= 0 ? '+' : ''}${(heapGrowth / 1e6).toFixed(1)} MB, received ${t.received}, lost ${t.lost}`,
      );
      assert.ok(
        early <= 50,
        `publishes waited while blocked (${early} confirmed before the alarm cleared: at most those in flight before the block)`,
      );
      assert.ok(unblockedAt > blockedAt, 'connection.unblocked followed');
      assert.ok(heapGrowth < 64e6, `memory bounded: heap grew ${heapGrowth} bytes for ~1 MB of waiting bodies`);
      assert.is(t.lost, 0);
    } finally {
      await clearMemoryAlarm(n).catch(() => undefined);
    }
    await pch.queueDelete(queue);
  },
  120_000,
);

run(
  'Fault 6, CON-6: the broker closes the channel for an ack timeout: it is re-created, the message redelivered and handled once',
  async () => {
    const n = await theNode();
    const rc = client([n.amqpPort], { ackWarningAfter: 3000 });
    await rc.whenOpen();
    const ch = await rc.createChannel({ confirm: true });
    const queue = unique('fault6');
    await ch.queueDeclare(queue, { durable: true });
    const handled = new Set<string>();
    const working = new Map<string, Promise<void>>();
    const deliveries: Message[] = [];
    let warned = 0;
    let channelRecovered: Error | undefined;
    rc.on('ack-deadline', () => {
      warned++;
    });
    rc.on('channel-recovered', (err) => {
      channelRecovered = err;
    });
    let runs = 0;
    await ch.basicConsume(queue, async (m) => {
      deliveries.push(m);
      const id = m.properties.messageId ?? '';
      // The application's own dedupe by message_id (the bus does the same): a redelivered copy of work done, or of
      // work still going on, is acked once that work is done, not done again.
      const going = working.get(id);
      if (handled.has(id) || going !== undefined) {
        await going;
        return m.ack();
      }
      runs++;
      const work = sleep(8000); // longer than the node's 5 s consumer_timeout
      working.set(id, work);
      await work;
      handled.add(id);
      working.delete(id);
      m.ack(); // on a channel that is gone by now: dropped, never sent with a stale tag
    });
    await ch.basicPublish('', queue, 'slow work', { messageId: 'f6-1', deliveryMode: 2 });
    await until(() => deliveries.length >= 2, 'the redelivery on the re-created channel', 25_000);
    await until(() => handled.size === 1 && deliveries.length >= 2, 'the work done', 15_000);
    await until(
      () => channelRecovered !== undefined && ch.channel?.isOpen === true,
      'the channel-recovered event, the channel open',
      5_000,
    );
    const code = (channelRecovered as (Error & { code?: string }) | undefined)?.code;
    console.log(
      `  fault 6: channel closed with ${code}, ${deliveries.length} deliveries, handled ${runs} time(s), ack-deadline warnings ${warned}`,
    );
    assert.is(code, 'PRECONDITION_FAILED', 'the broker closed the channel for the ack timeout');
    assert.is(deliveries[1]?.redelivered, true);
    assert.is(runs, 1, 'handled once');
    assert.ok(warned >= 1, 'the ack deadline was reported before the broker acted');
    assert.ok(ch.channel?.isOpen === true, 'the channel is back');
    await until(() => ch.channel !== null, 'channel', 5000);
    await withDeadline(rc.whenOpen(), 1000, 'still open');
    const left = await ch.queueDelete(queue);
    assert.is(left, 0, 'nothing left unacked in the queue');
  },
  60_000,
);

run(
  'Fault 6 on the bus: a handler slower than the consumer timeout; the redelivered copy waits for it, the message is handled and answered once',
  async () => {
    const n = await theNode();
    const url = {
      hostname: '127.0.0.1',
      port: n.amqpPort,
      username: 'guest',
      password: 'guest',
      reconnectDelay: 2000,
      heartbeat: 5,
    };
    const hub = unique('heh-f6');
    const vpp = unique('vpp-f6');
    const h = amqpBus({ name: hub, peers: [vpp], url, queueType: 'classic' });
    const v = amqpBus({ name: vpp, peers: [hub], url, queueType: 'classic' });
    let runs = 0;
    let duplicates = 0;
    h.on('duplicate', () => {
      duplicates++;
    });
    h.onSetClock(async () => {
      runs++;
      await sleep(8000); // the node's consumer_timeout is 5 s
    });
    const responses: Received[] = [];
    v.onResponse((message, ctx) => {
      responses.push({ message, ctx });
    });
    try {
      await h.start();
      await v.start();
      await v.publish(hub, { msg: 'set_clock', offset: 1, msg_id: randomUUID() });
      await until(
        () => responses.length >= 1 && duplicates >= 1,
        `a response and the redelivered copy dropped (runs ${runs}, duplicates ${duplicates})`,
        25_000,
      );
      await barrier(h, v, responses); // no second response is on its way
      const codes = responses.map((r) => (r.message as BusMessage<'response'>).response_code);
      console.log(
        `  fault 6 (bus): handler runs ${runs}, duplicates dropped ${duplicates}, responses ${codes.join(',')}`,
      );
      assert.is(runs, 1, 'handled once');
      assert.equal(codes, [200], 'answered once');
    } finally {
      await v.close();
      await h.close();
    }
  },
  60_000,
);

run(
  'Fault 3, EP-1: kill -9 of the cluster node the client is connected to: the client moves to another endpoint, nothing lost',
  async () => {
    if (node !== undefined) {
      await node.stop();
      node = undefined;
    } // two cores: one extra Erlang VM at a time
    const c = await startCluster({ name: 'fc' });
    cluster = c;
    const ports = c.endpoints.map((e) => e.port);
    const p = await pair(ports, 'fault3');
    const victim = c.nodes[ports.indexOf(Number(p.publisherAt.split(':')[1]))] as BrokerNode;
    let movedTo = '';
    let downtime = 0;
    p.pub.on('recovered', (i) => {
      movedTo = i.endpoint;
      downtime = i.downtimeMs;
    });
    const t = await streamThrough(p, 'f3', 3000, async () => {
      await until(() => p.seen.size >= 1000, 'the stream under way (1000 messages consumed)', 20_000);
      await c.kill9(victim);
    });
    console.log(
      `  fault 3: killed ${p.publisherAt}, publisher moved to ${movedTo} in ${downtime} ms, sent 3000, received ${t.received}, duplicates ${t.duplicates}, lost ${t.lost}`,
    );
    assert.is(t.lost, 0);
    assert.ok(movedTo !== '' && movedTo !== p.publisherAt, `moved to another endpoint (${movedTo})`);
  },
  240_000,
);

test.after(async () => {
  await closeClients();
  await node?.stop();
  await cluster?.stop();
});

test.run();
