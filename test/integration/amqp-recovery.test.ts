/**
 * Automatic recovery (src/amqp/recovery.ts) against the real broker, with the FaultProxy between them: the
 * connection is cut, blackholed or refused, and every test checks what the application sees afterwards.
 * Test names start with the obligation of ../shared/docs/peers-and-reliability.md §3 they prove (docs/RELIABILITY.md).
 *
 * Recovery waits at least 2 s before reconnecting (EP-2), so these tests take a few seconds each.
 */
import { execFileSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import {
  type AmqpError,
  AuthenticationError,
  type Connection,
  connect,
  type Message,
  PublishError,
  RecoveringConnection,
  type RecoveryEvents,
  type RecoveryOptions,
} from '../../src/amqp/index.js';
import { BROKER, rejection, withMemoryAlarm } from '../helpers/amqp.js';
import { sleep, until, withDeadline } from '../helpers/deadline.js';
import { FaultProxy, mulberry32, randomInt } from '../helpers/proxy.js';

const RUN = `${process.pid}-${Date.now().toString(36)}`;
const QUEUE_ARGS = { 'x-expires': 120_000 };
let n = 0;
const name = (what: string): string => `test-recovery-${what}-${RUN}-${n++}`;

const proxies = new Set<FaultProxy>();
const clients = new Set<RecoveringConnection>();
const conns = new Set<Connection>();

async function proxy(): Promise<FaultProxy> {
  const p = await FaultProxy.start();
  proxies.add(p);
  return p;
}

function recovering(p: FaultProxy | null, options: RecoveryOptions = {}): RecoveringConnection {
  const rc = new RecoveringConnection({
    ...BROKER,
    port: p?.port ?? BROKER.port,
    reconnectDelay: 2000,
    connectTimeout: 3000,
    heartbeat: 5,
    connectionName: 'uvu-recovery',
    ...options,
  });
  rc.on('handler-error', () => {
    /* counted by the tests that care */
  });
  clients.add(rc);
  return rc;
}

async function direct(): Promise<Connection> {
  const c = await connect({ ...BROKER, connectionName: 'uvu-recovery-direct' });
  conns.add(c);
  return c;
}

/** The next `event` of `rc`, within `ms`. */
function nextEvent<K extends keyof RecoveryEvents & string>(
  rc: RecoveringConnection,
  event: K,
  ms: number,
): Promise<RecoveryEvents[K]> {
  return withDeadline(
    new Promise<RecoveryEvents[K]>((resolve) => rc.once(event, (...args) => resolve(args))),
    ms,
    `event ${event}`,
  );
}

async function cleanup(): Promise<void> {
  for (const p of proxies) await p.close();
  proxies.clear();
  await Promise.allSettled([...clients].map((c) => withDeadline(c.close(), 8000, 'close a recovering connection')));
  clients.clear();
  await Promise.allSettled([...conns].map((c) => c.close()));
  conns.clear();
}

function run(title: string, fn: () => Promise<void>, ms = 30_000): void {
  test(title, async () => {
    try {
      await withDeadline(fn(), ms, title);
    } finally {
      await cleanup();
    }
  });
}

run('before the connection is open, a declaration rejects RECOVERING; after whenOpen() it is taken', async () => {
  const p = await proxy();
  p.blackhole(); // the broker is reached, and says nothing yet
  const rc = recovering(p, { connectTimeout: 20_000 });
  const ch = await rc.createChannel({ confirm: true });
  const early = await rejection(ch.queueDeclare('', { exclusive: true, arguments: QUEUE_ARGS }));
  assert.is((early as AmqpError).code, 'RECOVERING');
  p.resume();
  await withDeadline(rc.whenOpen(), 10_000, 'open once the broker speaks');
  const { queue } = await ch.queueDeclare('', { exclusive: true, arguments: QUEUE_ARGS });
  await withDeadline(ch.basicPublish('', queue, 'x'), 5000, 'a publish confirmed');
});

run('a call the broker never answers (a queue.declare lost on the way): RPC_TIMEOUT, then recovery', async () => {
  const p = await proxy();
  const rc = recovering(p, { rpcTimeout: 1500 });
  await withDeadline(rc.whenOpen(), 5000, 'first open');
  const ch = await rc.createChannel({ confirm: true });
  // The next queue.declare (a method frame of class 50, method 10) never reaches the broker, which goes on
  // answering heartbeats: without a deadline the call, and everything behind it, waited for ever.
  const declare = Buffer.from([0x00, 0x32, 0x00, 0x0a]);
  let dropped = 0;
  p.transform((chunk) => {
    if (dropped > 0 || !chunk.includes(declare)) return chunk;
    dropped++;
    return Buffer.alloc(0);
  }, 'c2s');
  const lost = nextEvent(rc, 'disconnected', 10_000);
  const recovered = nextEvent(rc, 'recovered', 15_000);
  const first = await rejection(ch.queueDeclare('', { exclusive: true, arguments: QUEUE_ARGS }));
  assert.is(dropped, 1);
  assert.is((first as AmqpError).code, 'RPC_TIMEOUT');
  const [err] = await lost;
  assert.is((err as AmqpError | undefined)?.code, 'RPC_TIMEOUT');
  assert.match(String(err?.message), 'the broker did not answer queue.declare on channel');
  await recovered;
  const { queue } = await ch.queueDeclare('', { exclusive: true, arguments: QUEUE_ARGS });
  await withDeadline(ch.basicPublish('', queue, 'after'), 5000, 'a publish confirmed after the recovery');
});

run(
  'a publish to an exchange that does not exist fails at once as refused; the channel comes back, the others are confirmed',
  async () => {
    const rc = recovering(null);
    await withDeadline(rc.whenOpen(), 5000, 'first open');
    const ch = await rc.createChannel({ confirm: true });
    const { queue } = await ch.queueDeclare('', { exclusive: true, arguments: QUEUE_ARGS });
    const missing = name('missing');
    const started = Date.now();
    // Side by side: the good ones before and after the bad one are confirmed (sent again on the new channel).
    const before = ch.basicPublish('', queue, 'before');
    const bad = ch.basicPublish(missing, 'k', 'nowhere');
    const after = ch.basicPublish('', queue, 'after');
    const err = await rejection(bad);
    assert.instance(err, PublishError);
    assert.is((err as PublishError).failure, 'refused');
    assert.match((err as Error).message, `404 NOT_FOUND - no exchange '${missing}'`);
    await withDeadline(Promise.all([before, after]), 10_000, 'the other publishes confirmed');
    assert.ok(Date.now() - started < 10_000, 'long before the publish deadline');
    // The channel works: one more, confirmed.
    await withDeadline(ch.basicPublish('', queue, 'later'), 10_000, 'a publish on the re-created channel');
  },
);

run(
  'a publish with a user_id that is not the login fails at once as refused (406), not sent again on every new channel; the others are confirmed',
  async () => {
    const rc = recovering(null);
    await withDeadline(rc.whenOpen(), 5000, 'first open');
    const ch = await rc.createChannel({ confirm: true });
    const { queue } = await ch.queueDeclare('', { exclusive: true, arguments: QUEUE_ARGS });
    const started = Date.now();
    const before = ch.basicPublish('', queue, 'before');
    const bad = ch.basicPublish('', queue, 'not mine', { userId: 'somebody-else' });
    const after = ch.basicPublish('', queue, 'after');
    const err = await rejection(bad);
    assert.instance(err, PublishError);
    assert.is((err as PublishError).failure, 'refused');
    assert.match((err as Error).message, "406 PRECONDITION_FAILED - user_id property set to 'somebody-else'");
    await withDeadline(Promise.all([before, after]), 10_000, 'the other publishes confirmed');
    assert.ok(Date.now() - started < 10_000, 'long before the publish deadline');
    await withDeadline(ch.basicPublish('', queue, 'later'), 10_000, 'a publish on the re-created channel');
  },
);

run(
  'REC-1, REC-2: after a cut, channels, qos, confirm mode, exchanges, a server-named queue (renamed), bindings (exchange-to-exchange too) and consumers come back in order',
  async () => {
    const p = await proxy();
    const rc = recovering(p);
    await withDeadline(rc.whenOpen(), 5000, 'first open');
    const ch = await rc.createChannel({ confirm: true, prefetch: 5 });
    const front = name('front');
    const back = name('back');
    await ch.exchangeDeclare(front, 'direct', { autoDelete: true });
    await ch.exchangeDeclare(back, 'fanout', { autoDelete: true });
    await ch.exchangeBind(back, front, 'k');
    const { queue } = await ch.queueDeclare('', { exclusive: true, arguments: QUEUE_ARGS });
    await ch.queueBind(queue, back, '');
    const got: string[] = [];
    const consumer = await ch.basicConsume(queue, (m) => {
      got.push(m.text());
      m.ack();
    });
    await ch.basicPublish(front, 'k', 'before');
    await until(() => got.length >= 1, 'first delivery', 3000);

    const renamed = nextEvent(rc, 'queue-renamed', 15_000);
    const recovered = nextEvent(rc, 'recovered', 15_000);
    p.cutAll();
    const [from, to] = await renamed;
    const [info] = await recovered;
    assert.is(from, queue);
    assert.is.not(to, queue, 'the server-named queue has a new name');
    assert.is(consumer.queue, to, 'the consumer follows the new name');
    assert.ok(info.downtimeMs >= 2000, `recovery waited at least 2 s (${info.downtimeMs} ms)`);
    assert.ok(ch.channel?.isOpen, 'the channel is open again');
    await ch.basicPublish(front, 'k', 'after'); // confirm mode restored: this resolves only on the broker's ack
    await until(() => got.length >= 2, 'delivery after recovery', 3000);
    assert.equal(got, ['before', 'after'], 'the exchange-to-exchange binding and the queue binding were re-declared');
  },
);

run(
  'REC-1 at scale: 1,000 recorded bindings (one with an int64 argument) come back after a cut; an unbind is not replayed',
  async () => {
    const p = await proxy();
    const rc = recovering(p);
    await rc.whenOpen();
    const ch = await rc.createChannel();
    const x = name('many');
    await ch.exchangeDeclare(x, 'direct', { autoDelete: true });
    const queue = name('many-q');
    await ch.queueDeclare(queue, { arguments: QUEUE_ARGS });
    const t0 = Date.now();
    for (let i = 0; i < 1000; i++) await ch.queueBind(queue, x, `k${i}`, i === 0 ? { big: 2n ** 60n } : {});
    const recordMs = Date.now() - t0;
    await ch.queueUnbind(queue, x, 'k999');
    // The queue outlives the connection, its bindings too: delete them so that only recovery can bring them back.
    const conn = await direct();
    const dch = await conn.createChannel();
    await dch.queueDelete(queue);
    await dch.exchangeDelete(x);
    const recovered = nextEvent(rc, 'recovered', 20_000);
    p.cutAll();
    await recovered;
    const got: string[] = [];
    await ch.basicConsume(queue, (m) => {
      got.push(m.routingKey);
      m.ack();
    });
    for (const k of ['k0', 'k500', 'k998', 'k999']) await ch.basicPublish(x, k, k);
    // A barrier instead of a sleep: the marker goes into the same queue from the same channel after the four, so
    // once it is here, whatever of the four was routed to the queue is here too.
    await ch.basicPublish('', queue, 'marker'); // the default exchange: routing key = the queue's name
    await until(() => got.includes(queue), 'the marker behind the four publishes', 5000);
    console.log(`  1,000 bindings recorded in ${recordMs} ms`);
    assert.equal(got.sort(), ['k0', 'k500', 'k998', queue].sort(), 'the bindings came back, the removed one did not');
    await ch.queueDelete(queue);
    await ch.exchangeDelete(x);
  },
);

run(
  'PUB-3, PUB-4, PUB-6: publishes unconfirmed at a cut and made while disconnected are sent after recovery with the same message_id; every promise settles once',
  async () => {
    const p = await proxy();
    const rc = recovering(p);
    await rc.whenOpen();
    const ch = await rc.createChannel();
    const queue = name('resend');
    await ch.queueDeclare(queue, { durable: true, arguments: QUEUE_ARGS });
    const conn = await direct();
    const dch = await conn.createChannel();
    p.blackhole('s2c'); // the broker takes the publishes, its confirms never arrive: all unconfirmed at the cut
    const first = Array.from({ length: 50 }, (_, i) =>
      ch.basicPublish('', queue, `m${i}`, { messageId: `id-${i}`, deliveryMode: 2 }),
    );
    // The cut must come after the broker has all 50, or the re-sent ones would not all be duplicates.
    await until(
      async () => (await dch.queueDeclare(queue, { passive: true })).messageCount === 50,
      'the broker to hold the 50 publishes',
      5000,
      50,
    );
    assert.is(ch.inflight, 50, 'all 50 are waiting for their confirms');
    const disconnected = nextEvent(rc, 'disconnected', 5000);
    p.cutAll();
    p.resume();
    await disconnected;
    assert.is(rc.isOpen, false);
    const later = Array.from({ length: 20 }, (_, i) => ch.basicPublish('', queue, `late${i}`, { deliveryMode: 2 }));
    assert.is(ch.buffered, 70, 'the 50 unconfirmed and the 20 new wait in the buffer');
    const settled = await withDeadline(Promise.allSettled([...first, ...later]), 15_000, 'all publishes settle');
    assert.ok(
      settled.every((s) => s.status === 'fulfilled'),
      'every publish was confirmed after recovery',
    );

    const ids = new Map<string, number>();
    for (;;) {
      const m = await dch.basicGet(queue, { noAck: true });
      if (m === null) break;
      const id = m.properties.messageId ?? '';
      ids.set(id, (ids.get(id) ?? 0) + 1);
    }
    await dch.queueDelete(queue);
    for (let i = 0; i < 50; i++) assert.ok(ids.has(`id-${i}`), `id-${i} arrived`);
    assert.is(
      [...ids.keys()].filter((id) => !id.startsWith('id-')).length,
      20,
      'the 20 late ones got message ids of their own',
    );
    const duplicates = [...ids.values()].reduce((a, c) => a + c - 1, 0);
    assert.is(duplicates, 50, 'the 50 re-sent ones are duplicates, recognisable by message_id');
  },
);

run(
  'PUB-6: a full buffer answers by its declared policy: reject-new fails the new publish, drop-oldest the oldest',
  async () => {
    for (const overflow of ['reject-new', 'drop-oldest'] as const) {
      const p = await proxy();
      const rc = recovering(p, { bufferMessages: 3, overflow });
      await rc.whenOpen();
      const ch = await rc.createChannel();
      p.setAcceptMode('close');
      p.cutAll();
      await nextEvent(rc, 'disconnected', 5000);
      const failures: number[] = [];
      const pubs = [1, 2, 3, 4].map((i) =>
        ch.basicPublish('', 'nowhere', `m${i}`).catch((e: PublishError) => {
          if (e.failure === 'buffer-full') failures.push(i);
          return e;
        }),
      );
      // The overflow is decided in basicPublish itself; only the rejection handlers run later.
      await until(() => failures.length > 0, 'the overflow', 1000);
      if (overflow === 'reject-new') assert.equal(failures, [4], 'the fourth, new publish is refused');
      else assert.equal(failures, [1], 'the oldest publish is dropped for the fourth');
      assert.is(ch.buffered, 3);
      await rc.close();
      const after = await Promise.all(pubs);
      assert.ok(
        after.every((e) => e instanceof PublishError),
        'close() fails what is still buffered',
      );
    }
  },
  40_000,
);

run(
  'PUB-2: a nacked publish is sent again (nackRetries, with backoff, within its deadline), then fails as nacked',
  async () => {
    const rc = recovering(null);
    await rc.whenOpen();
    const ch = await rc.createChannel();
    const queue = name('nack');
    // A full queue that refuses publishes: the broker nacks them (a quorum queue electing a leader does the same).
    await ch.queueDeclare(queue, {
      autoDelete: false,
      arguments: { ...QUEUE_ARGS, 'x-max-length': 1, 'x-overflow': 'reject-publish' },
    });
    await ch.basicPublish('', queue, 'first');
    const conn = await direct();
    const dch = await conn.createChannel();
    let settled = false;
    const second = ch.basicPublish('', queue, 'second', { messageId: 'second' });
    second.then(
      () => (settled = true),
      () => (settled = true),
    );
    // Nacked: no longer in flight, not settled either; the retry comes 250 ms after the nack.
    await until(() => ch.inflight === 0, 'the nack of the second publish', 3000);
    assert.is(settled, false, 'a nacked publish is kept for its retry');
    assert.is((await dch.basicGet(queue, { noAck: true }))?.text(), 'first', 'room for the retry');
    await withDeadline(second, 3000, 'the retried publish is confirmed');
    assert.is((await dch.basicGet(queue, { noAck: true }))?.properties.messageId, 'second');

    const strict = await recovering(null, { nackRetries: 0 }).createChannel();
    await strict.basicPublish('', queue, 'fills it');
    const err = await strict.basicPublish('', queue, 'refused').then(
      () => null,
      (e: PublishError) => e,
    );
    assert.is(err?.failure, 'nacked', 'with nackRetries 0 the first nack fails the publish');
    await dch.queueDelete(queue);
  },
);

run('EP-3: no recovery after the application closed the connection; publishes then fail as closed', async () => {
  const p = await proxy();
  const rc = recovering(p);
  await rc.whenOpen();
  const ch = await rc.createChannel();
  let recovering_ = 0;
  rc.on('recovering', () => recovering_++);
  let closed = false;
  rc.on('closed', () => (closed = true));
  // No sleep to see that nothing happens: close() resolves only when the recovery loop has ended, and nothing
  // else ever connects.
  await rc.close();
  assert.ok(closed, 'the recovery loop ended (its last act is the closed event)');
  assert.is(recovering_, 0, 'no reconnect attempt');
  assert.is(p.stats.accepted, 1, 'the proxy saw one connection only');
  const err = await ch.basicPublish('', 'x', 'late').then(
    () => null,
    (e: PublishError) => e,
  );
  assert.ok(err instanceof PublishError && err.failure === 'closed');
  assert.is((await rejection(rc.whenOpen())).code, 'CLOSED', 'whenOpen() after close() is refused');
  assert.is((await rejection(rc.createChannel())).code, 'CLOSED', 'createChannel() after close() is refused');
});

run(
  'EP-3: close() during a handshake the broker never answers ends it at once, not at the connect timeout',
  async () => {
    const p = await proxy();
    p.blackhole();
    const rc = recovering(p, { connectTimeout: 60_000 });
    const failed: Error[] = [];
    rc.on('failed', (e) => failed.push(e));
    const opening = rc.whenOpen().then(
      () => null,
      (e: AmqpError) => e,
    );
    await until(() => p.stats.accepted === 1, 'the client connects to the silent broker', 5000);
    const t0 = Date.now();
    await withDeadline(rc.close(), 5000, 'close() while the handshake waits');
    const ms = Date.now() - t0;
    assert.is((await opening)?.code, 'CLOSED', 'whenOpen() is refused as closed');
    assert.equal(failed, [], 'closing is not reported as a failed attempt');
    await until(() => p.stats.clientSocketsOpen === 0, 'the socket is released', 2000);
    console.log(`    close() during a silent handshake: ${ms} ms (connectTimeout 60,000)`);
  },
);

run(
  'EP-3: refused credentials are an AuthenticationError, retried only after authFailureDelay, never in a hot loop',
  async () => {
    // A busy broker can take seconds to refuse a login.
    const rc = recovering(null, { password: 'wrong', authFailureDelay: 10_000, connectTimeout: 20_000 });
    const failed = nextEvent(rc, 'failed', 25_000);
    const recovering_ = nextEvent(rc, 'recovering', 25_000);
    rc.whenOpen().catch(() => undefined); // starts connecting
    const [err, info] = await failed;
    const [next] = await recovering_;
    assert.ok(err instanceof AuthenticationError, `${err.name}: ${err.message}`);
    assert.is(info.authentication, true);
    assert.is(next.delayMs, 10_000, 'the slow delay, not the reconnect backoff');
  },
);

run(
  'EP-1, EP-2: the initial connect is retried with growing, jittered delays over the shuffled endpoint list; after a cut the client moves on to the next endpoint',
  async () => {
    const a = await proxy();
    const b = await proxy();
    const live = await proxy();
    a.setAcceptMode('reset');
    b.setAcceptMode('close');
    const at = (x: FaultProxy): string => `127.0.0.1:${x.port}`;
    // The client's randomness, scripted. The shuffle (Fisher-Yates from the end: 2 draws for 3 endpoints) turns
    // [live, b, a] into [a, b, live]: 0 swaps the last with the first, 0.99 leaves the middle. Each delay then draws
    // its jitter (+0 to +50%): 0.5 makes the first +25%, 0 leaves the others exact.
    const draws = [0, 0.99, 0.5, 0, 0];
    const rc = recovering(null, {
      endpoints: [at(live), at(b), at(a)],
      random: () => draws.shift() ?? 0,
    });
    const t0 = Date.now();
    const attempts: { endpoint: string; attempt: number; atMs: number }[] = [];
    const delays: { endpoint: string; attempt: number; delayMs: number }[] = [];
    rc.on('failed', (_e, i) => attempts.push({ endpoint: i.endpoint, attempt: i.attempt, atMs: Date.now() - t0 }));
    rc.on('recovering', (i) => delays.push(i));
    const connected = nextEvent(rc, 'connected', 15_000);
    rc.whenOpen().catch(() => undefined); // starts connecting
    const [endpoint] = await connected;
    const openAt = Date.now() - t0;
    assert.equal(
      attempts.map((x) => [x.endpoint, x.attempt]),
      [
        [at(a), 1],
        [at(b), 2],
      ],
      'the list was shuffled with the given randomness; each endpoint was tried once, in turn',
    );
    assert.is(endpoint, at(live), 'the third endpoint opened');
    assert.equal(
      delays,
      [
        { attempt: 2, delayMs: 2500, endpoint: at(b) },
        { attempt: 3, delayMs: 4000, endpoint: at(live) },
      ],
      'the delay doubles from reconnectDelay (2 s) per failed attempt, plus the drawn jitter',
    );
    const [first, second] = attempts as [(typeof attempts)[0], (typeof attempts)[0]];
    // Timers may fire a millisecond early as Date.now() sees it.
    assert.ok(
      second.atMs - first.atMs >= 2500 - 10,
      `waited 2.5 s before the second endpoint (${second.atMs - first.atMs} ms)`,
    );
    assert.ok(openAt - second.atMs >= 4000 - 10, `waited 4 s before the third endpoint (${openAt - second.atMs} ms)`);
    assert.equal([a.stats.accepted, b.stats.accepted, live.stats.accepted], [1, 1, 1]);

    // The live endpoint goes, and the first one comes back: the client goes on round the list, to it.
    a.setAcceptMode('forward');
    live.setAcceptMode('reset');
    const retry = nextEvent(rc, 'recovering', 5000);
    const recovered = nextEvent(rc, 'recovered', 20_000);
    live.cutAll();
    const [next] = await retry;
    assert.equal(next, { attempt: 1, delayMs: 2000, endpoint: at(a) }, 'after a loss, the backoff starts again');
    const [info] = await recovered;
    assert.is(info.endpoint, at(a));
    assert.is(live.stats.accepted, 1, 'the endpoint that was lost is not tried first');
    assert.is(draws.length, 0, 'every scripted draw was used');
  },
);

run(
  'REC-3, ERR-1: a channel error re-creates that channel only; the connection, the other channels and the consumers carry on',
  async () => {
    const rc = recovering(null);
    await rc.whenOpen();
    const conn = rc.connection;
    const ch = await rc.createChannel();
    const other = await rc.createChannel();
    const queue = name('chan');
    // auto-delete: the queue goes with the consumer when the channel closes, and channel recovery re-declares it
    await ch.queueDeclare(queue, { arguments: QUEUE_ARGS, autoDelete: true });
    const got: string[] = [];
    await ch.basicConsume(queue, (m) => {
      got.push(m.text());
      m.ack();
    });
    let connectionEvents = 0;
    rc.on('disconnected', () => connectionEvents++);
    rc.on('recovering', () => connectionEvents++);
    const recovered = nextEvent(rc, 'channel-recovered', 5000);
    const err = await ch.queueDeclare(name('missing'), { passive: true }).then(
      () => null,
      (e: Error & { code?: string }) => e,
    );
    assert.is(err?.code, 'NOT_FOUND', 'the failing call gets the typed channel error');
    const [why] = await recovered;
    assert.is((why as Error & { code?: string }).code, 'NOT_FOUND');
    assert.is(rc.connection, conn, 'the same connection');
    assert.is(connectionEvents, 0, 'no connection recovery');
    assert.ok(other.channel?.isOpen === true, 'the other channel was untouched');
    await other.basicPublish('', queue, 'still consumed');
    await until(() => got.length >= 1, 'delivery to the re-created consumer', 3000);
    await ch.queueDelete(queue);
  },
);

run(
  'REC-3: every transition is an event with its payload: failed, recovering, connected, disconnected, buffer-overflow, topology-failed, queue-renamed, recovered, channel-recovered, consumer-cancelled, ack-deadline, blocked, unblocked, closed',
  async () => {
    const p = await proxy();
    p.setAcceptMode('reset'); // the first attempt fails
    const rc = recovering(p, { bufferMessages: 1, ackWarningAfter: 1000 });
    const where = `127.0.0.1:${p.port}`;
    const names: (keyof RecoveryEvents)[] = [
      'connected',
      'disconnected',
      'recovering',
      'recovered',
      'failed',
      'channel-recovered',
      'topology-failed',
      'queue-renamed',
      'consumer-cancelled',
      'buffer-overflow',
      'ack-deadline',
      'blocked',
      'unblocked',
      'closed',
    ];
    const log: string[] = [];
    for (const e of names) rc.on(e, () => log.push(e));

    // failed, recovering, connected
    const failed = nextEvent(rc, 'failed', 10_000);
    const retry = nextEvent(rc, 'recovering', 10_000);
    const connected = nextEvent(rc, 'connected', 15_000);
    rc.whenOpen().catch(() => undefined); // starts connecting
    const [failure, attempt] = await failed;
    assert.ok(['SOCKET_ERROR', 'SOCKET_CLOSED'].includes((failure as AmqpError).code), (failure as AmqpError).code);
    assert.equal(attempt, { attempt: 1, endpoint: where, authentication: false });
    const [next] = await retry;
    assert.is(next.attempt, 2);
    assert.is(next.endpoint, where);
    assert.ok(next.delayMs >= 2000 && next.delayMs <= 3000, `delay ${next.delayMs}`);
    p.setAcceptMode('forward');
    assert.equal(await connected, [where]);

    // What recovery will find: an exchange that now disagrees with its record, a server-named queue.
    const conn = await direct();
    const dch = await conn.createChannel();
    const ch = await rc.createChannel();
    const x = name('rec3-x');
    await ch.exchangeDeclare(x, 'direct');
    await dch.exchangeDelete(x);
    await dch.exchangeDeclare(x, 'fanout'); // re-declaring it as direct now fails: 406 PRECONDITION_FAILED
    const { queue: serverNamed } = await ch.queueDeclare('', { exclusive: true, arguments: QUEUE_ARGS });
    await ch.basicConsume(serverNamed, (m) => m.ack());

    // disconnected, recovering, buffer-overflow (while disconnected), topology-failed, queue-renamed, recovered
    const disconnected = nextEvent(rc, 'disconnected', 5000);
    const again = nextEvent(rc, 'recovering', 5000);
    const topology = nextEvent(rc, 'topology-failed', 15_000);
    const renamed = nextEvent(rc, 'queue-renamed', 15_000);
    const recovered = nextEvent(rc, 'recovered', 15_000);
    p.cutAll();
    const [lost] = await disconnected;
    assert.ok(['SOCKET_ERROR', 'SOCKET_CLOSED'].includes((lost as AmqpError).code), (lost as AmqpError)?.code);
    const [back] = await again;
    assert.is(back.attempt, 1);
    assert.is(back.endpoint, where);
    const overflow = nextEvent(rc, 'buffer-overflow', 1000);
    const buffered = ch.basicPublish('', 'nowhere', 'waits');
    const refused = await rejection(ch.basicPublish('', 'nowhere', 'refused'));
    assert.is((refused as PublishError).failure, 'buffer-full');
    assert.equal(await overflow, ['reject-new']);
    const [why, what] = await topology;
    assert.is((why as AmqpError).code, 'PRECONDITION_FAILED');
    assert.is(what, `exchange ${x}`);
    const [from, to] = await renamed;
    assert.is(from, serverNamed);
    assert.is.not(to, serverNamed);
    const [info] = await recovered;
    assert.is(info.endpoint, where);
    assert.ok(info.downtimeMs >= 2000, `downtime ${info.downtimeMs} ms`);
    await withDeadline(buffered, 5000, 'the buffered publish, sent after recovery');

    // channel-recovered: a channel error re-creates that channel
    const other = await rc.createChannel();
    const channelRecovered = nextEvent(rc, 'channel-recovered', 5000);
    await rejection(other.queueDeclare(name('missing'), { passive: true }));
    const [channelError] = await channelRecovered;
    assert.is((channelError as AmqpError | undefined)?.code, 'NOT_FOUND');

    // consumer-cancelled: the broker cancels a consumer whose queue is deleted
    const cch = await rc.createChannel();
    const doomed = name('rec3-cancel');
    await cch.queueDeclare(doomed, { arguments: QUEUE_ARGS });
    await cch.basicConsume(doomed, (m) => m.ack());
    const cancelled = nextEvent(rc, 'consumer-cancelled', 5000);
    await dch.queueDelete(doomed);
    const [cancelledQueue, cancelError] = await cancelled;
    assert.is(cancelledQueue, doomed);
    assert.is((cancelError as AmqpError).code, 'CONSUMER_CANCELLED');

    // ack-deadline: a delivery left unsettled past ackWarningAfter
    const slow = await rc.createChannel();
    const held: Message[] = [];
    const slowQueue = name('rec3-slow');
    await slow.queueDeclare(slowQueue, { autoDelete: true, arguments: QUEUE_ARGS });
    await slow.basicConsume(slowQueue, (m) => {
      held.push(m);
    });
    const warned = nextEvent(rc, 'ack-deadline', 5000);
    await slow.basicPublish('', slowQueue, 'held');
    const [age, heldQueue] = await warned;
    assert.ok(age >= 1000, `age ${age} ms`);
    assert.is(heldQueue, slowQueue);
    held[0]?.ack();

    // blocked, unblocked: a memory alarm on the broker, while this connection publishes
    const blocked = nextEvent(rc, 'blocked', 10_000);
    const unblocked = nextEvent(rc, 'unblocked', 30_000);
    let during: Promise<void> | undefined;
    await withMemoryAlarm(async () => {
      during = ch.basicPublish('', 'nowhere', 'during the alarm');
      const [reason] = await blocked;
      assert.match(reason, /memory/i);
    });
    await unblocked;
    await withDeadline(during ?? Promise.resolve(), 5000, 'the publish held by the alarm');

    // closed
    const closed = nextEvent(rc, 'closed', 10_000);
    await rc.close();
    await closed;
    assert.equal(
      log,
      [
        'failed',
        'recovering',
        'connected',
        'disconnected',
        'recovering',
        'buffer-overflow',
        'topology-failed',
        'queue-renamed',
        'recovered',
        'channel-recovered',
        'consumer-cancelled',
        'ack-deadline',
        'blocked',
        'unblocked',
        'closed',
      ],
      'each transition once, in order',
    );
    await dch.exchangeDelete(x);
  },
  60_000,
);

run(
  'CON-2: a delivery from before a reconnect is never acked with its stale tag: the ack is dropped and the broker redelivers',
  async () => {
    const p = await proxy();
    const rc = recovering(p);
    await rc.whenOpen();
    const ch = await rc.createChannel();
    const queue = name('stale');
    await ch.queueDeclare(queue, { durable: true, arguments: QUEUE_ARGS });
    const got: Message[] = [];
    await ch.basicConsume(
      queue,
      (m) => {
        got.push(m);
      },
      { prefetch: 1 },
    );
    await ch.basicPublish('', queue, 'once');
    await until(() => got.length >= 1, 'delivery', 3000);
    const recovered = nextEvent(rc, 'recovered', 15_000);
    p.cutAll();
    await recovered;
    await until(() => got.length >= 2, 'redelivery', 5000);
    const [old, again] = got as [Message, Message];
    assert.not.throws(() => old.ack(), 'acking the stale delivery does not throw');
    assert.is(again.redelivered, true);
    again.ack();
    // A round trip on the same channel, after the acks: had a stale tag gone out, the broker would have closed the
    // channel (406 PRECONDITION_FAILED) before answering, and this would fail.
    await ch.queueDeclare(queue, { passive: true });
    assert.ok(ch.channel?.isOpen === true, 'the new channel was not closed by a stale tag (406 PRECONDITION_FAILED)');
    const conn = await direct();
    const dch = await conn.createChannel();
    assert.is((await dch.queueDeclare(queue, { passive: true })).messageCount, 0, 'the redelivered copy was acked');
    await dch.queueDelete(queue);
  },
);

run(
  'CON-5: a consumer the broker cancels (its queue deleted) is reported, the queue re-declared and consumed again',
  async () => {
    const rc = recovering(null);
    await rc.whenOpen();
    const ch = await rc.createChannel();
    const queue = name('cancel');
    await ch.queueDeclare(queue, { durable: true, arguments: QUEUE_ARGS });
    const got: string[] = [];
    const consumer = await ch.basicConsume(queue, (m) => {
      got.push(m.text());
      m.ack();
    });
    const firstTag = consumer.tag;
    const cancelled = nextEvent(rc, 'consumer-cancelled', 5000);
    const conn = await direct();
    const dch = await conn.createChannel();
    await dch.queueDelete(queue);
    const [q] = await cancelled;
    assert.is(q, queue);
    await until(() => consumer.tag !== undefined && consumer.tag !== firstTag, 're-consume', 8000);
    await dch.basicPublish('', queue, 'back');
    await until(() => got.length >= 1, 'delivery to the re-created consumer', 3000);
    await dch.queueDelete(queue);
  },
);

run(
  'CON-5: a queue replaced by one with other arguments (406 at its re-declaration) is consumed as it is and reported; the channel and its other consumers carry on',
  async () => {
    const rc = recovering(null);
    await rc.whenOpen();
    const ch = await rc.createChannel();
    const [a, b] = [name('conflict-a'), name('conflict-b')];
    const got: string[] = [];
    for (const q of [a, b]) {
      await ch.queueDeclare(q, { durable: true, arguments: { ...QUEUE_ARGS, 'x-message-ttl': 900_000 } });
      await ch.basicConsume(q, (m) => {
        got.push(`${q === a ? 'a' : 'b'}:${m.text()}`);
        m.ack();
      });
    }
    const failed: string[] = [];
    rc.on('topology-failed', (err, what) => failed.push(`${what}: ${(err as AmqpError).code}`));
    let channelRecovered = 0;
    rc.on('channel-recovered', () => channelRecovered++);
    const conn = await direct();
    const dch = await conn.createChannel();
    // Someone else deletes b and declares it again without the TTL: our re-declaration is refused 406.
    await dch.queueDelete(b);
    await dch.queueDeclare(b, { durable: true, arguments: QUEUE_ARGS });
    await until(() => failed.length > 0, 'the refused re-declaration reported', 10_000);
    assert.match(failed[0] ?? '', `queue ${b}: PRECONDITION_FAILED`);
    await dch.basicPublish('', a, '1');
    await dch.basicPublish('', b, '2');
    await until(() => got.length === 2, 'both queues consumed', 8000);
    assert.equal(got.sort(), ['a:1', 'b:2']);
    assert.is(channelRecovered, 0, 'the consuming channel was never closed');
    await dch.queueDelete(a);
    await dch.queueDelete(b);
  },
);

run(
  'a deleted exchange of ours that a publish finds missing (404) is declared again, with its bindings, before the channel comes back',
  async () => {
    const rc = recovering(null);
    await rc.whenOpen();
    const ch = await rc.createChannel({ confirm: true });
    const [x, q] = [name('own-x'), name('own-q')];
    await ch.exchangeDeclare(x, 'direct', { durable: false, autoDelete: false });
    await ch.queueDeclare(q, { durable: true, arguments: QUEUE_ARGS });
    await ch.queueBind(q, x, 'k');
    const conn = await direct();
    const dch = await conn.createChannel();
    await dch.exchangeDelete(x);
    const lost = await rejection(ch.basicPublish(x, 'k', 'into the void'));
    assert.is((lost as PublishError).failure, 'refused', 'the publish that found it missing');
    await withDeadline(ch.basicPublish(x, 'k', 'routed'), 10_000, 'a publish once the channel is back');
    const m = await withDeadline(dch.basicGet(q, { noAck: true }), 5000, 'basic.get');
    assert.is(m?.text(), 'routed', 'the exchange and its binding are back');
    await dch.queueDelete(q);
    await dch.exchangeDelete(x);
  },
);

run(
  "PUB-2: a quorum queue that refused publishes (reject-publish) and has room again takes ours again: the channel nacked in a row is re-created (RabbitMQ 3.10 kept refusing that channel's)",
  async () => {
    const rc = recovering(null, { nackRetries: 0 });
    await rc.whenOpen();
    const ch = await rc.createChannel({ confirm: true });
    const q = name('qq-reject');
    const policy = `pol-${q}`;
    await ch.queueDeclare(q, { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-expires': 120_000 } });
    const ctl = (...args: string[]): void => {
      execFileSync('rabbitmqctl', args, { stdio: 'ignore', timeout: 30_000 });
    };
    const outcome = (body: string): Promise<string> =>
      ch.basicPublish('', q, body).then(
        () => 'ack',
        (e: PublishError) => e.failure,
      );
    try {
      ctl('set_policy', '--apply-to', 'queues', policy, `^${q}$`, '{"max-length":3,"overflow":"reject-publish"}');
      await until(async () => (await outcome('fill')) === 'nacked', 'the queue full, refusing', 15_000);
      ctl('set_policy', '--apply-to', 'queues', policy, `^${q}$`, '{"max-length":3,"overflow":"drop-head"}');
      ctl('clear_policy', policy);
      await ch.queuePurge(q);
      // Room again: within a few publishes (three nacks in a row re-create the channel) they are taken.
      const seen: string[] = [];
      await until(
        async () => {
          seen.push(await outcome('again'));
          return seen.at(-1) === 'ack';
        },
        () => `a publish taken again (${seen.length} tried, the last: ${seen.slice(-3).join(', ')})`,
        20_000,
      );
      assert.ok(seen.length <= 5, `taken after ${seen.join(', ')}`);
    } finally {
      try {
        ctl('clear_policy', policy);
      } catch {
        // cleared above
      }
      const conn = await direct();
      await (await conn.createChannel()).queueDelete(q);
    }
  },
  60_000,
);

run(
  'CON-5: a consumer whose queue stays refused (405) through channel re-creations is consumed once when it comes back, and cancel() ends it',
  async () => {
    const rc = recovering(null, { maxReconnectDelay: 2000 });
    await rc.whenOpen();
    const ch = await rc.createChannel();
    const q = name('locked');
    await ch.queueDeclare(q, { durable: false, arguments: QUEUE_ARGS });
    let got = 0;
    const c = await ch.basicConsume(q, (m) => {
      got++;
      m.ack();
    });
    const other = await direct();
    const och = await other.createChannel();
    await och.queueDelete(q); // our consumer is cancelled by the broker
    await och.queueDeclare(q, { exclusive: true }); // and the name is another connection's now: 405 RESOURCE_LOCKED
    await sleep(1000);
    // The channel alone is lost twice (a publish to a missing exchange) and re-created, the queue still refused.
    for (let i = 0; i < 2; i++) {
      await rejection(ch.basicPublish(name('nowhere'), 'k', 'x'));
      await sleep(2500);
    }
    await other.close(); // the exclusive queue goes: what retries declares it again and consumes
    const looker = await direct();
    // Passive: a queue not declared again yet closes the channel asked (404), so a new one each time.
    const consumers = async (): Promise<number> => {
      const c2 = await looker.createChannel();
      try {
        return (await c2.queueDeclare(q, { passive: true })).consumerCount;
      } catch {
        return -1;
      } finally {
        if (c2.isOpen) await c2.close();
      }
    };
    await until(async () => (await consumers()) > 0, 'consumed again', 10_000);
    await sleep(3000); // every retry there was has had its turn
    assert.is(await consumers(), 1, 'one consumer on the broker, not one per retry');
    await c.cancel();
    const obs = await looker.createChannel();
    await obs.basicPublish('', q, 'after cancel');
    await sleep(500);
    assert.is(await consumers(), 0);
    assert.is(got, 0, 'nothing reaches a cancelled consumer');
    await obs.queueDelete(q);
  },
  45_000,
);

run(
  'CON-5: a queue declared again whose binding from a deleted exchange is refused (404) is consumed all the same, its other bindings back',
  async () => {
    const rc = recovering(null);
    await rc.whenOpen();
    const ch = await rc.createChannel();
    const [q, kept, gone] = [name('bound'), name('kept-x'), name('gone-x')];
    for (const x of [kept, gone]) await ch.exchangeDeclare(x, 'direct', { durable: false });
    await ch.queueDeclare(q, { durable: true, arguments: QUEUE_ARGS });
    await ch.queueBind(q, gone, 'k');
    await ch.queueBind(q, kept, 'k');
    const got: string[] = [];
    await ch.basicConsume(q, (m) => {
      got.push(m.text());
      m.ack();
    });
    const failed: string[] = [];
    rc.on('topology-failed', (err, what) => failed.push(`${what}: ${(err as AmqpError).code}`));
    const conn = await direct();
    const dch = await conn.createChannel();
    await dch.exchangeDelete(gone); // someone else's doing, unknown to our records
    await dch.queueDelete(q); // our consumer is cancelled: the queue and its bindings are declared again
    await until(() => failed.length > 0, 'the refused binding reported', 10_000);
    assert.match(failed[0] ?? '', `binding ${gone} -> ${q} (k): NOT_FOUND`);
    await until(
      async () => {
        await dch.basicPublish(kept, 'k', 'through the kept binding');
        return got.length > 0;
      },
      'consumed again, through the binding that is back',
      10_000,
    );
    assert.is(got[0], 'through the kept binding');
    await dch.queueDelete(q);
    await dch.exchangeDelete(kept);
  },
);

run("CON-6: a delivery left unsettled is reported before the broker's consumer timeout", async () => {
  const rc = recovering(null, { ackWarningAfter: 1000 });
  await rc.whenOpen();
  const ch = await rc.createChannel();
  const queue = name('slow');
  await ch.queueDeclare(queue, { autoDelete: true, arguments: QUEUE_ARGS });
  const held: Message[] = [];
  await ch.basicConsume(queue, (m) => {
    held.push(m);
  });
  const warned = nextEvent(rc, 'ack-deadline', 5000);
  await ch.basicPublish('', queue, 'slow');
  const [age, q] = await warned;
  assert.ok(age >= 1000, `age ${age} ms`);
  assert.is(q, queue);
  held[0]?.ack();
});

run('HB-2: a blackholed connection is declared dead within two heartbeat intervals, then recovered', async () => {
  const p = await proxy();
  const rc = recovering(p, { heartbeat: 5 });
  await rc.whenOpen();
  const disconnected = nextEvent(rc, 'disconnected', 14_000);
  const t0 = Date.now();
  p.blackhole();
  const [err] = await disconnected;
  const detected = Date.now() - t0;
  assert.is((err as AmqpError | undefined)?.code, 'HEARTBEAT_TIMEOUT');
  assert.ok(detected <= 2 * 5000 + 1000, `detected in ${detected} ms`);
  p.resume();
  p.cutAll();
  await nextEvent(rc, 'recovered', 15_000);
});

run(
  'Fault 1: cuts at random points of a 10,000-message confirmed stream lose nothing; duplicates are identified by message_id',
  async () => {
    const seed = Number(process.env['FAULT_SEED'] ?? Date.now() % 100_000);
    const rng = mulberry32(seed);
    const p = await proxy();
    const rc = recovering(p);
    await rc.whenOpen();
    const ch = await rc.createChannel();
    const queue = name('stream');
    await ch.queueDeclare(queue, { durable: true, arguments: QUEUE_ARGS });
    const seen = new Map<string, number>();
    const consumerConn = await direct();
    const cch = await consumerConn.createChannel();
    await cch.basicConsume(
      queue,
      (m) => {
        const id = m.properties.messageId ?? '';
        seen.set(id, (seen.get(id) ?? 0) + 1);
        m.ack();
      },
      { prefetch: 500 },
    );
    const total = 10_000;
    let cuts = 0;
    rc.on('disconnected', () => {
      cuts++;
    });
    const downtimes: number[] = [];
    rc.on('recovered', (i) => downtimes.push(i.downtimeMs));
    const pubs: Promise<void>[] = [];
    // 100 batches of 100, one every 250 ms; a cut is armed at a random batch of each quarter, at a random byte of what
    // flows next, in either direction. Publishing goes on through each outage: those publishes wait in the buffer.
    // A cut is armed only once the previous one has fired and the connection is back (on a loaded machine a recovery
    // can outlast the ~3.5 s between two arming points); until then it waits for a later batch.
    const armAt = [0, 1, 2, 3].map((q) => q * 25 + randomInt(rng, 2, 14));
    let armed = 0;
    for (let batch = 0; batch < total / 100; batch++) {
      for (let i = batch * 100; i < (batch + 1) * 100; i++) {
        pubs.push(ch.basicPublish('', queue, `m${i}`, { messageId: `s-${i}`, deliveryMode: 2 }, { timeout: 120_000 }));
      }
      const due = armed < armAt.length && batch >= (armAt[armed] ?? total);
      if (due && rc.isOpen && cuts >= armed) {
        // Confirms (s2c) of persistent messages are coalesced after each fsync: a batch of 100 publishes (~8 KB c2s)
        // may bring back a single 21-byte basic.ack, so an s2c cut point lies within the next few acks.
        const c2s = rng() < 0.5;
        p.cutAfterBytes(randomInt(rng, 1, c2s ? 20_000 : 64), { direction: c2s ? 'c2s' : 's2c' });
        armed++;
      }
      await sleep(250);
    }
    p.cancelCut();
    const outcome = await Promise.allSettled(pubs);
    const failed = outcome.filter((o) => o.status === 'rejected');
    assert.is(
      failed.length,
      0,
      `no publish failed (${failed
        .map((f) => String((f as PromiseRejectedResult).reason))
        .slice(0, 3)
        .join('; ')})`,
    );
    await until(() => seen.size >= total, 'every message consumed', 20_000);
    const duplicates = [...seen.values()].reduce((a, c) => a + c - 1, 0);
    const lost = total - [...Array(total).keys()].filter((i) => seen.has(`s-${i}`)).length;
    console.log(
      `  fault 1 (seed ${seed}): sent ${total}, cuts ${cuts}, received ${seen.size + duplicates}, duplicates ${duplicates}, lost ${lost}, recovery ${downtimes.join('/')} ms`,
    );
    assert.is(lost, 0);
    assert.ok(cuts >= 3, `at least 3 cuts happened (${cuts})`);
    await cch.queueDelete(queue);
  },
  120_000,
);

test.run();
