/**
 * Network faults between the client and RabbitMQ (127.0.0.1:5672), injected by the FaultProxy helper:
 * re-sliced byte streams, a blackhole (dead NAT), connections cut mid-stream, hostile bytes from the "broker",
 * and connect failures. Each test proves the client ends every operation with a typed error, quickly, without
 * a hang, a crash or an unhandled rejection.
 *
 * Every await that touches the network is bounded by withDeadline (uvu has no timeouts). Queues are named per test
 * and process, carry x-expires as a safety net, and are deleted over a direct (unproxied) connection.
 * Hooks are only used for cleanup: uvu 0.5 swallows errors thrown by hooks.
 */
import { type AddressInfo, createServer, Socket } from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import {
  AuthenticationError,
  type Channel,
  type Connection,
  ConnectionError,
  type ConnectOptions,
  connect,
  type Message,
  type MessageProperties,
  PublishError,
} from '../../src/amqp/index.js';
import { BROKER } from '../helpers/amqp.js';
import { until } from '../helpers/bus.js';
import { sleep, withDeadline } from '../helpers/deadline.js';
import { FaultProxy, mulberry32, type ProxiedConnection, randomBytes, randomInt, slicers } from '../helpers/proxy.js';

const RUN = `${process.pid}-${Date.now().toString(36)}`;
/** Leaked queues (a failed cleanup) disappear on their own after this long unused. */
const QUEUE_ARGS = { 'x-expires': 120_000 };

// ---- shared helpers ---------------------------------------------------------------------------------------------

const proxies = new Set<FaultProxy>();
const connections = new Set<Connection>();

async function startProxy(): Promise<FaultProxy> {
  const p = await withDeadline(FaultProxy.start(), 2000, 'proxy start');
  proxies.add(p);
  return p;
}

function viaProxy(proxy: FaultProxy, options: ConnectOptions = {}): Promise<Connection> {
  const c = connect({ ...BROKER, port: proxy.port, connectTimeout: 5000, ...options });
  c.then(
    (conn) => connections.add(conn),
    () => {},
  );
  return c;
}

function direct(name: string): Promise<Connection> {
  const c = connect({ ...BROKER, connectionName: name, connectTimeout: 5000, heartbeat: 10 });
  c.then(
    (conn) => connections.add(conn),
    () => {},
  );
  return withDeadline(c, 6000, `${name}: direct connect`);
}

/** Closes every connection and proxy a test left behind (bounded; never throws). */
async function cleanup(): Promise<void> {
  // Proxies first: a connection behind a blackholed proxy would otherwise wait its closeTimeout for a close-ok.
  const ps = [...proxies];
  proxies.clear();
  await Promise.allSettled(ps.map((p) => withDeadline(p.close(), 2000, 'close a proxy')));
  const conns = [...connections];
  connections.clear();
  await Promise.allSettled(conns.map((c) => withDeadline(c.close(), 3000, 'close a leftover connection')));
}

/** Samples process memory every few ms until stopped: the peak growth over the starting point. */
function memoryPeak(): { stop(): { rss: number; arrayBuffers: number } } {
  const start = process.memoryUsage();
  let rss = 0;
  let arrayBuffers = 0;
  const sample = (): void => {
    const m = process.memoryUsage();
    rss = Math.max(rss, m.rss - start.rss);
    arrayBuffers = Math.max(arrayBuffers, m.arrayBuffers - start.arrayBuffers);
  };
  const timer = setInterval(sample, 5);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return { rss, arrayBuffers };
    },
  };
}

/** Deletes queues over a direct connection (bounded; never throws). */
async function deleteQueues(...queues: string[]): Promise<void> {
  let conn: Connection | undefined;
  try {
    conn = await direct('faults-cleanup');
    const ch = await withDeadline(conn.createChannel(), 3000, 'cleanup channel');
    for (const q of queues) await withDeadline(ch.queueDelete(q), 3000, `delete ${q}`);
  } catch (err) {
    console.error(`cleanup of ${queues.join(', ')} failed:`, err);
  } finally {
    if (conn !== undefined) {
      connections.delete(conn);
      await withDeadline(conn.close(), 3000, 'close cleanup connection').catch(() => {});
    }
  }
}

/**
 * Records unhandled rejections, uncaught exceptions and the client's handler warnings while a test runs.
 * Installed per test (not per file) so it never hides failures of other test files run in the same process.
 */
function watchProcess(): { incidents: string[]; stop(): Promise<string[]> } {
  const incidents: string[] = [];
  const fmt = (x: unknown): string => (x instanceof Error ? `${x.name}: ${x.message}` : String(x));
  const onRejection = (r: unknown): void => {
    incidents.push(`unhandledRejection ${fmt(r)}`);
  };
  const onException = (e: unknown): void => {
    incidents.push(`uncaughtException ${fmt(e)}`);
  };
  const onWarning = (w: Error): void => {
    if (w.name === 'AmqpHandlerWarning') incidents.push(`warning ${fmt(w)}`);
  };
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  process.on('warning', onWarning);
  return {
    incidents,
    async stop() {
      // Unhandled rejections are reported after the microtask queue drains: give them a few turns to show up.
      await sleep(50);
      process.off('unhandledRejection', onRejection);
      process.off('uncaughtException', onException);
      process.off('warning', onWarning);
      return incidents;
    },
  };
}

function queueName(what: string): string {
  return `faults-${what}-${RUN}`;
}

/** Resolves with how each promise settled, without ever rejecting. */
function outcome(p: Promise<void>): Promise<{ ok: true } | { ok: false; error: unknown }> {
  return p.then(
    () => ({ ok: true as const }),
    (error: unknown) => ({ ok: false as const, error }),
  );
}

function assertConnectionError(err: unknown, codes: readonly string[], what: string): asserts err is ConnectionError {
  assert.ok(err instanceof ConnectionError, `${what}: expected a ConnectionError, got ${String(err)}`);
  assert.ok(codes.includes(err.code), `${what}: expected code ${codes.join(' or ')}, got ${err.code} (${err.message})`);
}

/** Drains a queue over a direct connection: the message ids it holds. */
async function messageIdsIn(queue: string): Promise<Set<string>> {
  const conn = await direct('faults-inspect');
  try {
    const ch = await withDeadline(conn.createChannel(), 3000, 'inspect channel');
    const { messageCount } = await withDeadline(ch.queueDeclare(queue, { passive: true }), 3000, 'passive declare');
    const ids = new Set<string>();
    if (messageCount === 0) return ids;
    let done!: () => void;
    const all = new Promise<void>((resolve) => {
      done = resolve;
    });
    let seen = 0;
    await withDeadline(
      ch.basicConsume(
        queue,
        (m) => {
          ids.add(m.properties.messageId ?? '');
          if (++seen === messageCount) done();
        },
        { noAck: true },
      ),
      3000,
      'inspect consume',
    );
    await withDeadline(all, 10_000, `read back ${messageCount} messages`);
    return ids;
  } finally {
    connections.delete(conn);
    await withDeadline(conn.close(), 3000, 'close inspect connection').catch(() => {});
  }
}

// ---- 0. the proxy itself ----------------------------------------------------------------------------------------

test('proxy self-check: 1-byte re-slicing reaches a reader as 1-byte reads, delay, blackhole, exact cut point', async () => {
  const watch = watchProcess();
  const echo = createServer((s) => {
    s.on('error', () => {});
    s.on('data', (d) => s.write(d));
  });
  try {
    await withDeadline(new Promise<void>((r) => echo.listen(0, '127.0.0.1', r)), 2000, 'echo listen');
    const p2 = await withDeadline(
      FaultProxy.start({ target: { port: (echo.address() as AddressInfo).port } }),
      2000,
      'proxy',
    );
    proxies.add(p2);
    const client = new Socket();
    client.on('error', () => {});
    const reads: number[] = [];
    const got: Buffer[] = [];
    client.on('data', (d: Buffer) => {
      reads.push(d.length);
      got.push(d);
    });
    await withDeadline(new Promise<void>((r) => client.connect(p2.port, '127.0.0.1', r)), 2000, 'client connect');
    const waitFor = (n: number, what: string): Promise<void> =>
      until(() => got.reduce((a, b) => a + b.length, 0) >= n, what, 3000);

    // Re-slicing into 1-byte writes, paced: the reader sees 1-byte chunks, bytes intact.
    p2.reslice(slicers.fixed(1), 's2c');
    const payload = randomBytes(mulberry32(1), 300);
    client.write(payload);
    await waitFor(300, 'resliced echo');
    assert.ok(Buffer.concat(got).equals(payload), 'resliced bytes intact');
    assert.ok(
      reads.every((n) => n === 1),
      `1-byte reads, got sizes ${[...new Set(reads)].join(',')}`,
    );
    p2.reslice(null);

    // Delay: a 150 ms one-way delay.
    got.length = 0;
    p2.delay(150, 'c2s');
    const t0 = Date.now();
    client.write('x');
    await waitFor(1, 'delayed echo');
    const rtt = Date.now() - t0;
    assert.ok(rtt >= 140 && rtt < 1000, `delayed round trip ${rtt} ms`);
    p2.delay(0);

    // Blackhole: nothing comes back, the socket stays open; resume: traffic flows again.
    got.length = 0;
    p2.blackhole();
    const dropped = p2.stats.c2s.dropped;
    client.write('lost');
    // Once the proxy has dropped them, the bytes never reached the echo server: nothing can come back.
    await until(() => p2.stats.c2s.dropped >= dropped + 4, 'the proxy to drop the blackholed bytes', 2000);
    assert.is(got.length, 0, 'blackholed bytes vanish');
    assert.is(client.destroyed, false, 'blackhole keeps the socket open');
    p2.resume();
    client.write('back');
    await waitFor(4, 'after resume');
    assert.is(Buffer.concat(got).toString(), 'back');

    // An exact cut point in the middle of a chunk.
    got.length = 0;
    const closed = new Promise<void>((r) => client.once('close', () => r()));
    p2.cutAfterBytes(37, { direction: 's2c' });
    client.write(Buffer.alloc(100, 7));
    await withDeadline(closed, 2000, 'cut closes the client');
    assert.is(Buffer.concat(got).length, 37, 'exactly the bytes before the cut point arrive');
    assert.is(p2.stats.cut, 1);
    assert.is(p2.hookErrors.length, 0);
    await withDeadline(p2.close(), 2000, 'close');
    await withDeadline(p2.close(), 2000, 'close twice (idempotent)');
    assert.is(p2.connections.length, 0, 'nothing left open');
  } finally {
    echo.close();
    await cleanup();
    const incidents = await watch.stop();
    assert.equal(incidents, []);
  }
});

// ---- 1. re-slicing ----------------------------------------------------------------------------------------------

const FRAME_BODY_MAX = 131072 - 8; // default frame_max negotiated with RabbitMQ, minus the frame overhead

function bodySize(i: number, rng: () => number): number {
  switch (i % 25) {
    case 0:
      return 0;
    case 1:
      return 1;
    case 2:
      return 200;
    case 3:
      return 200 * 1024; // two body frames
    case 8:
      return FRAME_BODY_MAX; // exactly one full body frame
    case 13:
      return FRAME_BODY_MAX + 1; // one byte into a second frame
    case 18:
      return 3 * FRAME_BODY_MAX + 17; // four frames
    default:
      return randomInt(rng, 0, 3000);
  }
}

function propertiesFor(i: number): MessageProperties {
  return {
    contentType: 'application/octet-stream',
    deliveryMode: 2,
    messageId: `id-${i}`,
    correlationId: `corr-${i}`,
    timestamp: new Date(1_700_000_000_000 + i * 1000),
    headers: {
      index: i,
      text: `héllo ✓ ${i}`,
      even: i % 2 === 0,
      ratio: i + 0.25,
      large: 2 ** 40 + i,
      bytes: Buffer.from([0, 1, i & 0xff, 0xce]),
      nothing: null,
      nested: { depth: 1, list: [1, 'two', null, { three: 3 }] },
    },
  };
}

test('re-slicing: 500 confirmed messages (0 B to 3 frames) through 1-byte then random server->client slices', async () => {
  const watch = watchProcess();
  const queue = queueName('reslice');
  const N = 500;
  const ONE_BYTE_PHASE = 48 * 1024;
  try {
    const proxy = await startProxy();
    proxy.reslice(slicers.switchAfter(ONE_BYTE_PHASE, slicers.fixed(1), slicers.random(0x5eed, 1, 3000)), 's2c');
    const t0 = Date.now();
    const conn = await withDeadline(viaProxy(proxy, { connectionName: 'faults-reslice' }), 6000, 'connect');
    const ch = await withDeadline(conn.createConfirmChannel(), 3000, 'confirm channel');
    await withDeadline(ch.queueDeclare(queue, { arguments: QUEUE_ARGS }), 3000, 'declare');

    const rng = mulberry32(42);
    const bodies: Buffer[] = [];
    for (let i = 0; i < N; i++) bodies.push(randomBytes(rng, bodySize(i, rng)));
    const totalBytes = bodies.reduce((a, b) => a + b.length, 0);

    // A window of publishes in flight (the client bounds its wait queue; this stays far below it).
    let acked = 0;
    const failures: unknown[] = [];
    const inFlight = new Set<Promise<void>>();
    for (let i = 0; i < N; i++) {
      const p = ch.basicPublish('', queue, bodies[i] as Buffer, propertiesFor(i)).then(
        () => {
          acked++;
        },
        (e: unknown) => {
          failures.push(e);
        },
      );
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
      if (inFlight.size >= 64) await withDeadline(Promise.race(inFlight), 10_000, `publish window at ${i}`);
    }
    await withDeadline(Promise.all(inFlight), 15_000, 'last confirms');
    assert.equal(failures, [], 'no publish failed');
    assert.is(acked, N, 'every confirm resolved');
    assert.is(ch.unconfirmed, 0);
    const tPublished = Date.now();
    // The 1-byte phase covers the handshake, the confirms and the start of the deliveries (inside a 200 KiB body).
    assert.ok(
      proxy.stats.s2c.read < ONE_BYTE_PHASE,
      `1-byte phase ends after the confirms (${proxy.stats.s2c.read} B so far)`,
    );

    const received: Message[] = [];
    let allIn!: () => void;
    const all = new Promise<void>((r) => {
      allIn = r;
    });
    await withDeadline(
      ch.basicConsume(
        queue,
        (m) => {
          received.push(m);
          m.ack();
          if (received.length === N) allIn();
        },
        { prefetch: 50 },
      ),
      3000,
      'consume',
    );
    await withDeadline(all, 20_000, `receive ${N} messages`);
    const tConsumed = Date.now();

    for (let k = 0; k < N; k++) {
      const m = received[k] as Message;
      const i = Number(m.properties.messageId?.slice(3));
      assert.is(i, k, 'messages arrive in publish order');
      assert.ok(m.body.equals(bodies[i] as Buffer), `body ${i} (${(bodies[i] as Buffer).length} B) intact`);
      assert.equal(m.properties, propertiesFor(i), `properties of message ${i}`);
    }
    const s = proxy.stats;
    assert.ok(s.s2c.writes > ONE_BYTE_PHASE, `server->client bytes went out in ${s.s2c.writes} writes`);
    console.log(
      `    re-slicing: ${N} messages, ${(totalBytes / 2 ** 20).toFixed(1)} MiB, s2c ${s.s2c.written} B in ${s.s2c.writes} writes; ` +
        `publish+confirm ${tPublished - t0} ms, consume ${tConsumed - tPublished} ms`,
    );
    await withDeadline(conn.close(), 3000, 'close');
  } finally {
    await cleanup();
    await deleteQueues(queue);
    const incidents = await watch.stop();
    assert.equal(incidents, []);
  }
});

// ---- 2. blackhole -----------------------------------------------------------------------------------------------

test('blackhole: HEARTBEAT_TIMEOUT within ~2 heartbeat intervals; pending publishes fail as closed; the iterator throws', async () => {
  const watch = watchProcess();
  const queue = queueName('blackhole');
  try {
    const proxy = await startProxy();
    const conn = await withDeadline(
      viaProxy(proxy, { connectionName: 'faults-blackhole', heartbeat: 5, publishTimeout: 20_000 }),
      6000,
      'connect',
    );
    assert.is(conn.heartbeat, 5, 'negotiated heartbeat');
    const closeEvents: (Error | undefined)[] = [];
    conn.on('close', (e) => closeEvents.push(e));
    const ch = await withDeadline(conn.createConfirmChannel(), 3000, 'channel');
    await withDeadline(ch.queueDeclare(queue, { arguments: QUEUE_ARGS }), 3000, 'declare');
    const consumer = await withDeadline(ch.basicConsume(queue, null, { prefetch: 10 }), 3000, 'consume');
    const seen: string[] = [];
    let firstSeen!: () => void;
    const first = new Promise<void>((r) => {
      firstSeen = r;
    });
    const loop = outcome(
      (async () => {
        for await (const m of consumer) {
          seen.push(m.text());
          m.ack();
          firstSeen();
        }
      })(),
    );
    // The path works before the fault.
    await withDeadline(ch.basicPublish('', queue, 'before', { messageId: 'before' }), 3000, 'publish before');
    await withDeadline(first, 3000, 'first delivery');
    assert.equal(seen, ['before']);

    proxy.blackhole();
    const t0 = Date.now();
    const publishes = Array.from({ length: 20 }, (_, i) =>
      outcome(ch.basicPublish('', queue, `lost ${i}`, { messageId: `lost-${i}` })),
    );

    const err = await withDeadline(conn.closed, 14_000, 'heartbeat timeout');
    const elapsed = Date.now() - t0;
    assertConnectionError(err, ['HEARTBEAT_TIMEOUT'], 'closed');
    console.log(`    blackhole: HEARTBEAT_TIMEOUT after ${elapsed} ms (heartbeat 5 s)`);
    assert.ok(elapsed >= 5000, `detected after ${elapsed} ms: not before 5 s`);
    assert.ok(elapsed <= 2 * 5000 + 1500, `detected after ${elapsed} ms: within 2 heartbeat intervals + 1.5 s`);

    const results = await withDeadline(Promise.all(publishes), 1000, 'pending publishes settle');
    for (const [i, r] of results.entries()) {
      assert.ok(!r.ok, `publish ${i} must not resolve`);
      assert.ok(
        r.error instanceof PublishError && r.error.failure === 'closed',
        `publish ${i}: PublishError closed, got ${String(r.error)}`,
      );
    }
    const l = await withDeadline(loop, 1000, 'the for-await loop ends');
    assert.ok(!l.ok, 'the for-await loop over the consumer throws (not a silent end)');
    assertConnectionError(l.error, ['HEARTBEAT_TIMEOUT'], 'iterator');
    const again = await withDeadline(
      outcome(
        consumer[Symbol.asyncIterator]()
          .next()
          .then(() => undefined),
      ),
      1000,
      'next after close',
    );
    assert.ok(!again.ok, 'a later next() rejects too');
    assert.equal(seen, ['before'], 'nothing else was delivered');
    const late = await withDeadline(outcome(ch.basicPublish('', queue, 'late')), 1000, 'publish after close');
    assert.ok(
      !late.ok && late.error instanceof PublishError && late.error.failure === 'closed',
      'publish after close fails as closed',
    );
    assert.is(closeEvents.length, 1, "one 'close' event");
    assert.is(closeEvents[0], err);
  } finally {
    await cleanup();
    await deleteQueues(queue);
    const incidents = await watch.stop();
    assert.equal(incidents, []);
  }
});

// ---- 3. cut mid-stream ------------------------------------------------------------------------------------------

interface CutRun {
  acked: number;
  closed: number;
  ackedIds: string[];
  error: Error | undefined;
}

/**
 * Publishes up to `total` confirmed messages with a window in flight, calls `arm` once `armAfterAcks` were acked,
 * and keeps publishing until the connection is gone. Checks that every publish settled once, as acked or closed.
 */
async function publishUntilCut(
  proxy: FaultProxy,
  queue: string,
  name: string,
  total: number,
  armAfterAcks: number,
  arm: () => void,
): Promise<CutRun> {
  const conn = await withDeadline(viaProxy(proxy, { connectionName: name, heartbeat: 5 }), 6000, 'connect');
  const closeEvents: (Error | undefined)[] = [];
  conn.on('close', (e) => closeEvents.push(e));
  const ch = await withDeadline(conn.createConfirmChannel(), 3000, 'channel');
  await withDeadline(ch.queueDeclare(queue, { arguments: QUEUE_ARGS }), 3000, 'declare');
  const settled = new Array<number>(total).fill(0);
  /** 'ack', a PublishError failure kind, or 'unexpected ...'. */
  const how: string[] = new Array<string>(total).fill('');
  const body = randomBytes(mulberry32(7), 2048);
  let acked = 0;
  let armed = false;
  const inFlight = new Set<Promise<void>>();
  let sent = 0;
  for (; sent < total && conn.isOpen; sent++) {
    const i = sent;
    const p = ch.basicPublish('', queue, body, { messageId: `m-${i}`, deliveryMode: 2 }).then(
      () => {
        settled[i] = (settled[i] ?? 0) + 1;
        how[i] = 'ack';
        if (++acked === armAfterAcks && !armed) {
          armed = true;
          arm();
        }
      },
      (e: unknown) => {
        settled[i] = (settled[i] ?? 0) + 1;
        how[i] = e instanceof PublishError ? e.failure : `unexpected ${String(e)}`;
      },
    );
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
    if (inFlight.size >= 200) await withDeadline(Promise.race(inFlight), 10_000, `publish window at ${i}`);
  }
  const error = await withDeadline(conn.closed, 10_000, 'the cut ends the connection');
  // Every publish has settled now, and a promise settles once: the counts below are final.
  await withDeadline(Promise.all(inFlight), 2000, 'every publish settles after the cut');
  for (let i = 0; i < sent; i++) {
    assert.is(settled[i], 1, `publish ${i} settled exactly once (${how[i]})`);
    assert.ok(how[i] === 'ack' || how[i] === 'closed', `publish ${i}: acked or closed, got ${how[i]}`);
  }
  assert.ok(armed, 'the cut was armed');
  assert.ok(sent < total, `the cut stopped the stream (${sent} of ${total} published)`);
  assert.is(closeEvents.length, 1, "one 'close' event");
  assert.is(ch.isOpen, false);
  assert.is(ch.unconfirmed, 0, 'nothing left unconfirmed');
  const ackedIds = how.flatMap((h, i) => (h === 'ack' ? [`m-${i}`] : []));
  return { acked, closed: how.filter((h) => h === 'closed').length, ackedIds, error };
}

test('cut (FIN, all connections at once) in the middle of a confirmed stream: every publish settles once, acked ones are in the queue', async () => {
  const watch = watchProcess();
  const queue = queueName('cut-fin');
  try {
    const proxy = await startProxy();
    const t0 = Date.now();
    const r = await publishUntilCut(proxy, queue, 'faults-cut-fin', 20_000, 1500, () => proxy.cutAll());
    assertConnectionError(r.error, ['SOCKET_CLOSED', 'SOCKET_ERROR'], 'closed');
    assert.ok(r.closed > 0, 'some publishes were in flight at the cut');
    const ids = await messageIdsIn(queue);
    const missing = r.ackedIds.filter((id) => !ids.has(id));
    assert.equal(missing.slice(0, 5), [], `${missing.length} acked messages missing from the queue`);
    console.log(
      `    cut (FIN): ${r.error?.message}; ${r.acked} acked, ${r.closed} closed; queue holds ${ids.size}; ${Date.now() - t0} ms`,
    );
  } finally {
    await cleanup();
    await deleteQueues(queue);
    const incidents = await watch.stop();
    assert.equal(incidents, []);
  }
});

test('cut (RST, mid-frame at a seeded random byte of the client->server stream): every publish settles once, acked ones are in the queue', async () => {
  const watch = watchProcess();
  const queue = queueName('cut-rst');
  try {
    const proxy = await startProxy();
    const t0 = Date.now();
    // Armed after 300 acks: the cut falls 0.2 to 2 MB further into the publish stream, almost surely mid-frame.
    const at = randomInt(mulberry32(99), 200_000, 2_000_000);
    const r = await publishUntilCut(proxy, queue, 'faults-cut-rst', 20_000, 300, () =>
      proxy.cutAfterBytes(at, { direction: 'c2s', reset: true }),
    );
    assertConnectionError(r.error, ['SOCKET_ERROR', 'SOCKET_CLOSED'], 'closed');
    const ids = await messageIdsIn(queue);
    const missing = r.ackedIds.filter((id) => !ids.has(id));
    assert.equal(missing.slice(0, 5), [], `${missing.length} acked messages missing from the queue`);
    console.log(
      `    cut (RST after ${at} more c2s bytes): ${r.error?.message}; ${r.acked} acked, ${r.closed} closed; queue holds ${ids.size}; ${Date.now() - t0} ms`,
    );
  } finally {
    await cleanup();
    await deleteQueues(queue);
    const incidents = await watch.stop();
    assert.equal(incidents, []);
  }
});

// ---- 4. hostile bytes -------------------------------------------------------------------------------------------

function frame(type: number, channel: number, payload: Buffer, end = 0xce): Buffer {
  const b = Buffer.alloc(8 + payload.length);
  b[0] = type;
  b.writeUInt16BE(channel, 1);
  b.writeUInt32BE(payload.length, 3);
  payload.copy(b, 7);
  b[7 + payload.length] = end;
  return b;
}

function methodPayload(classId: number, methodId: number, args: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt16BE(classId, 0);
  b.writeUInt16BE(methodId, 2);
  return Buffer.concat([b, args]);
}

/** channel.open-ok: class 20 method 11, a longstr "reserved-1" (empty). */
const OPEN_OK_ARGS = Buffer.from([0, 0, 0, 0]);

interface HostileCase {
  name: string;
  bytes: Buffer;
  codes: readonly string[];
  /** Open a channel first and trigger with a call on it (channel-level bytes) instead of opening a channel. */
  onChannel?: boolean;
}

function hostileCases(): HostileCase[] {
  const cases: HostileCase[] = [];
  for (let seed = 1; seed <= 6; seed++) {
    cases.push({
      name: `(a) random bytes, seed ${seed}`,
      bytes: randomBytes(mulberry32(seed), 4096),
      codes: ['FRAME_ERROR', 'SYNTAX_ERROR', 'COMMAND_INVALID', 'CHANNEL_ERROR', 'UNEXPECTED_FRAME', 'NOT_IMPLEMENTED'],
    });
  }
  cases.push(
    {
      name: '(b) wrong frame-end octet',
      bytes: frame(1, 1, methodPayload(20, 11, OPEN_OK_ARGS), 0xcd),
      codes: ['FRAME_ERROR'],
    },
    {
      name: '(c) frame declaring 0xFFFFFFF0 bytes',
      bytes: Buffer.concat([Buffer.from([1, 0, 1, 0xff, 0xff, 0xff, 0xf0]), Buffer.alloc(64)]),
      codes: ['FRAME_ERROR'],
    },
    {
      name: '(c2) header of 0xFFFFFFF0 bytes alone',
      bytes: Buffer.from([3, 0, 1, 0xff, 0xff, 0xff, 0xf0]),
      codes: ['FRAME_ERROR'],
      onChannel: true,
    },
    {
      name: '(d) unknown class id on channel 0',
      bytes: frame(1, 0, methodPayload(999, 10)),
      codes: ['NOT_IMPLEMENTED', 'COMMAND_INVALID'],
    },
    {
      name: '(d2) unknown class id on an open channel',
      bytes: frame(1, 1, methodPayload(999, 10)),
      codes: ['NOT_IMPLEMENTED', 'COMMAND_INVALID'],
      onChannel: true,
    },
    {
      name: '(e) frame for a channel that is not open',
      bytes: frame(1, 7, methodPayload(20, 11, OPEN_OK_ARGS)),
      codes: ['CHANNEL_ERROR'],
    },
    {
      name: '(f) content body frame without a delivery',
      bytes: frame(3, 1, Buffer.from('stray body')),
      codes: ['UNEXPECTED_FRAME'],
      onChannel: true,
    },
    {
      name: '(g) content header frame on channel 0',
      bytes: frame(2, 0, Buffer.alloc(14)),
      codes: ['UNEXPECTED_FRAME'],
    },
    {
      name: '(h) truncated method arguments',
      bytes: frame(1, 0, methodPayload(10, 50, Buffer.from([0x01]))),
      codes: ['FRAME_ERROR', 'SYNTAX_ERROR'],
    },
  );
  return cases;
}

/** Finds connection.close (class 10, method 50) frames on channel 0 in a client->server byte stream: their reply codes. */
function closeCodesIn(stream: Buffer): number[] {
  const codes: number[] = [];
  for (let off = 0; off + 7 <= stream.length; ) {
    const size = stream.readUInt32BE(off + 3);
    if (off + 8 + size > stream.length) break;
    if (
      stream[off] === 1 &&
      stream.readUInt16BE(off + 1) === 0 &&
      size >= 6 &&
      stream.readUInt32BE(off + 7) === 0x000a0032
    ) {
      codes.push(stream.readUInt16BE(off + 11));
    }
    off += 8 + size;
  }
  return codes;
}

test('hostile bytes after the handshake: each ends the connection quickly with a typed ConnectionError, no big allocation', async () => {
  const watch = watchProcess();
  const mem = memoryPeak();
  const report: string[] = [];
  try {
    const proxy = await startProxy();
    for (const c of hostileCases()) {
      proxy.corruptServerToClient(null).transform(null, 'c2s');
      let pair: ProxiedConnection | undefined;
      proxy.once('connection', (p) => {
        pair = p;
      });
      const conn = await withDeadline(
        viaProxy(proxy, { connectionName: 'faults-hostile', heartbeat: 30 }),
        6000,
        `${c.name}: connect`,
      );
      const ch: Channel | null =
        c.onChannel === true ? await withDeadline(conn.createChannel(), 3000, `${c.name}: channel`) : null;
      // From now on: the next chunk to the client is replaced by the hostile bytes, later ones are dropped (the broker
      // cannot rescue the client), and what the client sends is recorded.
      let fired = false;
      proxy.corruptServerToClient(() => {
        if (fired) return Buffer.alloc(0);
        fired = true;
        return c.bytes;
      });
      const sent: Buffer[] = [];
      proxy.transform((chunk) => {
        sent.push(Buffer.from(chunk));
        return undefined;
      }, 'c2s');
      const t0 = Date.now();
      const trigger = outcome(ch !== null ? ch.basicQos(5) : conn.createChannel().then(() => undefined));
      const err = await withDeadline(conn.closed, 2000, `${c.name}: connection ends`);
      const elapsed = Date.now() - t0;
      assert.ok(fired, `${c.name}: the hostile bytes were delivered`);
      assertConnectionError(err, c.codes, c.name);
      assert.ok(elapsed < 1000, `${c.name}: ended after ${elapsed} ms`);
      const t = await withDeadline(trigger, 1000, `${c.name}: pending call settles`);
      assert.ok(!t.ok, `${c.name}: the pending call fails`);
      assert.ok(
        t.error instanceof ConnectionError,
        `${c.name}: the pending call fails with a ConnectionError, got ${String(t.error)}`,
      );
      // The client destroys its socket after connection.close: once the proxy read its end, it has read all it sent.
      await until(
        () => pair !== undefined && (pair.client.readableEnded || pair.client.destroyed),
        `${c.name}: the proxy reads the client's end`,
        2000,
      );
      const closeCodes = closeCodesIn(Buffer.concat(sent));
      assert.equal(
        closeCodes,
        [err.replyCode],
        `${c.name}: the client tells the broker (connection.close ${err.replyCode}), sent ${JSON.stringify(closeCodes)}`,
      );
      report.push(`${c.name} -> ${err.code} in ${elapsed} ms`);
      connections.delete(conn);
    }
    const { rss, arrayBuffers: ab } = mem.stop();
    console.log(
      `    hostile bytes:\n      ${report.join('\n      ')}\n      peak rss growth ${(rss / 2 ** 20).toFixed(1)} MiB, peak arrayBuffers growth ${(ab / 2 ** 20).toFixed(1)} MiB`,
    );
    assert.ok(rss < 64 * 2 ** 20, `rss grew by ${rss} bytes`);
    assert.ok(ab < 16 * 2 ** 20, `arrayBuffers grew by ${ab} bytes`);
    assert.is(proxy.hookErrors.length, 0);
  } finally {
    mem.stop();
    await cleanup();
    const incidents = await watch.stop();
    assert.equal(incidents, []);
  }
});

// ---- 5. connect failures ----------------------------------------------------------------------------------------

test('connect failures: closed right after accept, reset after accept, closed port, blackholed handshake (CONNECT_TIMEOUT)', async () => {
  const watch = watchProcess();
  try {
    const proxy = await startProxy();
    const attempt = async (
      what: string,
      options: ConnectOptions,
      deadline: number,
    ): Promise<{ err: unknown; ms: number }> => {
      const t0 = Date.now();
      const r = await withDeadline(
        outcome(
          connect({ ...BROKER, ...options }).then((c) => {
            connections.add(c);
          }),
        ),
        deadline,
        what,
      );
      assert.ok(!r.ok, `${what}: connect must fail`);
      return { err: r.error, ms: Date.now() - t0 };
    };

    proxy.setAcceptMode('close');
    const a = await attempt('closed after accept', { port: proxy.port, connectTimeout: 5000 }, 3000);
    assertConnectionError(a.err, ['SOCKET_CLOSED'], 'closed after accept');
    assert.ok(a.ms < 1000, `closed after accept: failed after ${a.ms} ms, not at the connect timeout`);

    proxy.setAcceptMode('reset');
    const b = await attempt('reset after accept', { port: proxy.port, connectTimeout: 5000 }, 3000);
    assertConnectionError(b.err, ['SOCKET_ERROR', 'SOCKET_CLOSED'], 'reset after accept');
    assert.ok(b.ms < 1000, `reset after accept: failed after ${b.ms} ms`);

    const free = createServer();
    await withDeadline(new Promise<void>((r) => free.listen(0, '127.0.0.1', r)), 2000, 'find a free port');
    const port = (free.address() as AddressInfo).port;
    await withDeadline(new Promise<void>((r) => free.close(() => r())), 2000, 'free the port');
    const c = await attempt('closed port', { port, connectTimeout: 5000 }, 3000);
    assertConnectionError(c.err, ['SOCKET_ERROR'], 'closed port');
    assert.ok(c.ms < 1000, `closed port: failed after ${c.ms} ms`);

    proxy.setAcceptMode('forward').blackhole();
    const d = await attempt('blackholed handshake', { port: proxy.port, connectTimeout: 600 }, 3000);
    assertConnectionError(d.err, ['CONNECT_TIMEOUT'], 'blackholed handshake');
    assert.ok(d.ms >= 550 && d.ms < 1600, `CONNECT_TIMEOUT after ${d.ms} ms (connectTimeout 600)`);
    // The client released its socket.
    await until(() => proxy.stats.clientSocketsOpen === 0, 'the client closes its socket', 1000);
    console.log(
      `    connect failures: close ${a.ms} ms (${(a.err as ConnectionError).code}), reset ${b.ms} ms (${(b.err as ConnectionError).code}), ` +
        `closed port ${c.ms} ms, blackhole ${d.ms} ms (${(d.err as ConnectionError).code})`,
    );
  } finally {
    await cleanup();
    const incidents = await watch.stop();
    assert.equal(incidents, []);
  }
});

// ---- 6. faults during the handshake ------------------------------------------------------------------------------

test('handshake: a network cut right after start-ok is a ConnectionError, not an AuthenticationError (the broker reports refusals with close 403)', async () => {
  const watch = watchProcess();
  try {
    // What a real refusal looks like: we advertise authentication_failure_close, so RabbitMQ says connection.close 403.
    const refused = await withDeadline(
      outcome(
        connect({ ...BROKER, password: 'wrong-password', connectTimeout: 5000 }).then((c) => {
          connections.add(c);
        }),
      ),
      6000,
      'wrong password',
    );
    assert.ok(
      !refused.ok && refused.error instanceof AuthenticationError && refused.error.replyCode === 403,
      `a refused login is an AuthenticationError with reply code 403, got ${String(!refused.ok && refused.error)}`,
    );

    // A network failure at the same point: the start-ok never reaches the broker and the connection drops (FIN).
    const proxy = await startProxy();
    proxy.transform((_chunk, info) => {
      if (info.offset < 8) return undefined; // the protocol header passes; the next client bytes are start-ok
      setImmediate(() => proxy.cutAll());
      return Buffer.alloc(0);
    }, 'c2s');
    const r = await withDeadline(outcome(viaProxy(proxy).then(() => undefined)), 6000, 'connect through a cut');
    assert.ok(!r.ok, 'connect fails');
    assertConnectionError(r.error, ['SOCKET_CLOSED', 'SOCKET_ERROR'], 'cut after start-ok');
    assert.not.ok(
      r.error instanceof AuthenticationError,
      `a network cut must not be reported as refused credentials (AuthenticationError is never retried): got ${r.error.name} ${r.error.code}: ${r.error.message}`,
    );
  } finally {
    await cleanup();
    const incidents = await watch.stop();
    assert.equal(incidents, []);
  }
});

test('handshake: a frame header declaring 0xFFFFFFF0 bytes instead of connection.start fails fast without allocating, whatever frameMax', async () => {
  // 64 MiB is the largest frameMax the options accept; before tune the reader caps frames at 128 KiB anyway.
  const watch = watchProcess();
  try {
    const proxy = await startProxy();
    const hostileStart = Buffer.from([1, 0, 0, 0xff, 0xff, 0xff, 0xf0, 0x00, 0x0a, 0x00, 0x0a]);
    for (const frameMax of [undefined, 64 << 20]) {
      let fired = false;
      proxy.corruptServerToClient(() => {
        if (fired) return Buffer.alloc(0);
        fired = true;
        return hostileStart;
      });
      const mem = memoryPeak();
      const t0 = Date.now();
      const r = await withDeadline(
        outcome(
          viaProxy(proxy, { connectTimeout: 2000, ...(frameMax !== undefined ? { frameMax } : {}) }).then(
            () => undefined,
          ),
        ),
        4000,
        'connect',
      );
      const ms = Date.now() - t0;
      const peak = mem.stop();
      const what = `frameMax ${frameMax ?? 'default'}`;
      console.log(
        `    pre-tune 0xFFFFFFF0 frame, ${what}: ${r.ok ? 'connected?!' : `${(r.error as Error).name} ${(r.error as { code?: string }).code}`} after ${ms} ms, ` +
          `peak arrayBuffers +${(peak.arrayBuffers / 2 ** 20).toFixed(0)} MiB`,
      );
      assert.ok(fired, `${what}: the hostile bytes were delivered`);
      assert.ok(!r.ok, `${what}: connect fails`);
      // Until tune, a peer may only send frames of frame-min-size (4096) octets (spec §4.2.3): this is a framing error.
      assertConnectionError(r.error, ['FRAME_ERROR'], what);
      assert.ok(ms < 1000, `${what}: failed after ${ms} ms`);
      assert.ok(
        peak.arrayBuffers < 16 * 2 ** 20,
        `${what}: ${peak.arrayBuffers} bytes of buffers allocated for a 7-byte frame header`,
      );
    }
  } finally {
    await cleanup();
    const incidents = await watch.stop();
    assert.equal(incidents, []);
  }
});

test('FR-1: handshake: a connection.tune with frame_max below 4096 is refused with a typed error', async () => {
  const watch = watchProcess();
  try {
    const proxy = await startProxy();
    // Rewrite the frame_max argument of connection.tune (method frame on channel 0, class 10 method 30:
    // channel-max short, frame-max long, heartbeat short) to 1024 on its way to the client.
    proxy.corruptServerToClient((chunk) => {
      const at = chunk.indexOf(Buffer.from([1, 0, 0, 0, 0, 0, 12, 0, 10, 0, 30]));
      if (at < 0) return undefined;
      const copy = Buffer.from(chunk);
      copy.writeUInt32BE(1024, at + 7 + 4 + 2);
      return copy;
    });
    const r = await withDeadline(
      outcome(viaProxy(proxy, { connectTimeout: 3000 }).then(() => undefined)),
      5000,
      'connect',
    );
    assert.ok(!r.ok, 'connect fails');
    assertConnectionError(r.error, ['COMMAND_INVALID'], 'tune frame_max 1024');
    assert.match((r.error as Error).message, 'below the minimum 4096');
  } finally {
    await cleanup();
    assert.equal(await watch.stop(), []);
  }
});

test.after(async () => {
  await cleanup();
});

test.run();
