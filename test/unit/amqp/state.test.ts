/**
 * State machines without a socket: the channel fed with frames directly (channel.flow, which RabbitMQ no longer
 * sends, confirms in any order), the confirm tracker, and the heartbeat with an injected clock.
 */
import { spawnSync } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Channel, type ChannelHost } from '../../../src/amqp/channel.js';
import { ConfirmTracker } from '../../../src/amqp/confirms.js';
import type { PublishError } from '../../../src/amqp/errors.js';
import { type Clock, frameDeadlineMs, Heartbeat } from '../../../src/amqp/heartbeat.js';
import { decodeMethod, encodeMethodFrame } from '../../../src/amqp/methods.js';
import { resolveOptions } from '../../../src/amqp/options.js';
import { Output } from '../../../src/amqp/output.js';
import type { MethodName } from '../../../src/amqp/spec.js';

/** A channel on a host that records what the channel writes. */
function harness(options = {}): { ch: Channel; sent: () => string[]; host: ChannelHost & { blocked: boolean } } {
  const written: Buffer[] = [];
  const out = new Output((chunks) => {
    written.push(...chunks);
  });
  const host = {
    out,
    frameMax: 131072,
    options: resolveOptions(options),
    heartbeat: 0, // no heartbeats negotiated: no floor under publish deadlines
    blocked: false,
    backlog: () => out.queued,
    channelClosed: () => undefined,
    handlerError: (e: unknown) => {
      throw e;
    },
  };
  const ch = new Channel(1, host);
  const sent = (): string[] => {
    out.flush();
    const all = Buffer.concat(written.splice(0));
    const names: string[] = [];
    for (let o = 0; o < all.length; ) {
      const type = all[o] as number;
      const size = all.readUInt32BE(o + 3);
      names.push(type === 1 ? decodeMethod(all.subarray(o + 7, o + 7 + size)).name : type === 2 ? 'header' : 'body');
      o += size + 8;
    }
    return names;
  };
  return { ch, sent, host };
}

function feed(ch: Channel, name: MethodName, args: Record<string, unknown> = {}): void {
  const f = encodeMethodFrame(ch.id, name, args);
  ch._frame(1, f.subarray(7, f.length - 1));
}

async function open(ch: Channel, confirm: boolean): Promise<void> {
  const opening = ch._open();
  feed(ch, 'channel.open-ok');
  await opening;
  if (confirm) {
    const selecting = ch.confirmSelect();
    feed(ch, 'confirm.select-ok');
    await selecting;
  }
}

const channel = suite('channel state machine');

channel('channel.flow(false) from the broker: flow-ok answered, publishes held until flow(true)', async () => {
  const { ch, sent } = harness();
  await open(ch, false);
  assert.equal(sent(), ['channel.open']);
  const flows: boolean[] = [];
  ch.on('flow', (active) => flows.push(active));
  feed(ch, 'channel.flow', { active: false });
  assert.equal(sent(), ['channel.flow-ok']);
  const p = ch.basicPublish('', 'q', 'held');
  assert.equal(sent(), [], 'nothing written while the broker paused the channel');
  const refused = await ch.basicPublish('', 'q', 'x', {}, { wait: false }).catch((e: PublishError) => e);
  assert.is((refused as PublishError).failure, 'buffer-full');
  feed(ch, 'channel.flow', { active: true });
  assert.equal(sent(), ['channel.flow-ok', 'basic.publish', 'header', 'body']);
  await p;
  assert.equal(flows, [false, true]);
});

channel('PUB-1: confirms in any order, multiple, nack: each publish settles once with its own outcome', async () => {
  const { ch, sent } = harness();
  await open(ch, true);
  sent();
  const ps = [1, 2, 3, 4, 5].map((i) =>
    ch.basicPublish('', 'q', `m${i}`).then(
      () => 'ack',
      (e: PublishError) => e.failure,
    ),
  );
  feed(ch, 'basic.ack', { deliveryTag: 4, multiple: false });
  feed(ch, 'basic.nack', { deliveryTag: 2, multiple: false, requeue: false });
  feed(ch, 'basic.ack', { deliveryTag: 3, multiple: true }); // settles 1 and 3 (2 is already settled)
  feed(ch, 'basic.ack', { deliveryTag: 3, multiple: true }); // a duplicate settles nothing twice
  assert.is(ch.unconfirmed, 1);
  feed(ch, 'basic.ack', { deliveryTag: 5, multiple: false });
  assert.equal(await Promise.all(ps), ['ack', 'nacked', 'ack', 'ack', 'ack']);
});

channel('blocked host: publishes wait and time out; unblocking resumes the rest in order', async () => {
  const { ch, sent, host } = harness({ publishTimeout: 100 });
  await open(ch, false);
  sent();
  host.blocked = true;
  const late = ch.basicPublish('', 'q', 'expires', {}, { timeout: 60 }).catch((e: PublishError) => e.failure);
  const kept = ch.basicPublish('', 'q', 'kept', {}, { timeout: 5000 });
  assert.is(await late, 'timeout');
  assert.equal(sent(), []);
  host.blocked = false;
  ch._resume();
  await kept;
  assert.equal(sent(), ['basic.publish', 'header', 'body']);
});

channel(
  'a call the broker leaves unanswered past rpcTimeout is told to the host (which closes the connection)',
  async () => {
    const { ch, host } = harness({ rpcTimeout: 30 });
    const owed: string[] = [];
    const h = host as ChannelHost;
    h.unanswered = (channel, what, ms) => owed.push(`${channel} ${what} ${ms}`);
    await open(ch, false);
    // Answered in time: nothing owed.
    const declared = ch.queueDeclare('q');
    feed(ch, 'queue.declare-ok', { queue: 'q', messageCount: 0, consumerCount: 0 });
    await declared;
    const selecting = ch.confirmSelect();
    selecting.catch(() => undefined);
    const until = Date.now() + 2000;
    while (owed.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    assert.equal(owed, ['1 confirm.select 30']);
    // The close-ok owed too.
    const c2 = harness({ rpcTimeout: 30 });
    const owed2: string[] = [];
    (c2.host as ChannelHost).unanswered = (channel, what) => owed2.push(`${channel} ${what}`);
    await open(c2.ch, false);
    void c2.ch.close();
    while (owed2.length === 0 && Date.now() < until + 2000) await new Promise((r) => setTimeout(r, 10));
    assert.equal(owed2, ['1 channel.close']);
    assert.is(owed.length, 1, 'told once');
  },
);

channel(
  'no rpcTimeout while the broker blocks the connection (an alarm may last hours), nor for a basic.get body',
  async () => {
    const { ch, host } = harness({ rpcTimeout: 30 });
    const owed: string[] = [];
    (host as ChannelHost).unanswered = (_channel, what) => owed.push(what);
    await open(ch, false);
    const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
    // connection.blocked: RabbitMQ reads nothing more from a connection that published, its calls included.
    host.blocked = true;
    const declared = ch.queueDeclare('q');
    declared.catch(() => undefined);
    await pause(150);
    assert.equal(owed, [], 'not while blocked');
    host.blocked = false;
    const until = Date.now() + 2000;
    while (owed.length === 0 && Date.now() < until) await pause(10);
    assert.equal(owed, ['queue.declare'], 'once unblocked, the deadline holds again');
    // basic.get: answered by its get-ok; a large body on a slow link is the heartbeat's to watch, not this deadline's.
    const g = harness({ rpcTimeout: 30 });
    const owedGet: string[] = [];
    (g.host as ChannelHost).unanswered = (_channel, what) => owedGet.push(what);
    await open(g.ch, false);
    const got = g.ch.basicGet('q');
    got.catch(() => undefined);
    feed(g.ch, 'basic.get-ok', { deliveryTag: 1, redelivered: false, exchange: '', routingKey: 'q', messageCount: 0 });
    const header = Buffer.alloc(14);
    header.writeUInt16BE(60, 0);
    header.writeUInt32BE(1000, 8);
    g.ch._frame(2, header);
    g.ch._frame(3, Buffer.alloc(500));
    await pause(150);
    assert.equal(owedGet, [], 'its body half there after 5 deadlines: no RPC_TIMEOUT');
    g.ch._frame(3, Buffer.alloc(500));
    assert.is((await got)?.body.length, 1000);
  },
);

channel('a method the channel did not ask for is a protocol error (505)', async () => {
  const { ch } = harness();
  await open(ch, false);
  assert.throws(
    () => feed(ch, 'queue.declare-ok', { queue: 'q', messageCount: 0, consumerCount: 0 }),
    (e: Error & { code?: string }) => e.code === 'UNEXPECTED_FRAME',
  );
  assert.throws(
    () => ch._frame(2, Buffer.alloc(14)),
    (e: Error & { code?: string }) => e.code === 'UNEXPECTED_FRAME',
  );
  assert.throws(
    () => ch._frame(3, Buffer.alloc(1)),
    (e: Error & { code?: string }) => e.code === 'UNEXPECTED_FRAME',
  );
});

channel('while closing: confirms settle, close and close-ok are handled, every other frame is ignored', async () => {
  const { ch, sent } = harness();
  await open(ch, true);
  sent();
  const p = ch.basicPublish('x', 'k', 'a');
  // A delivery begun before the close: its content never comes, and is not waited for once closing.
  feed(ch, 'basic.deliver', { consumerTag: 'c', deliveryTag: 1, redelivered: false, exchange: 'x', routingKey: 'k' });
  const closed = ch.close();
  assert.equal(sent(), ['basic.publish', 'header', 'body', 'channel.close']);
  // Another delivery, content and a reply nobody waits for: dropped, no protocol error (the broker requeues them).
  feed(ch, 'basic.deliver', { consumerTag: 'c', deliveryTag: 2, redelivered: false, exchange: 'x', routingKey: 'k' });
  ch._frame(2, Buffer.alloc(14));
  ch._frame(3, Buffer.alloc(1));
  feed(ch, 'basic.qos-ok');
  feed(ch, 'basic.ack', { deliveryTag: 1, multiple: false });
  await p;
  assert.ok(!ch.isOpen);
  feed(ch, 'channel.close-ok');
  await closed;
  assert.equal(sent(), [], 'nothing written in answer');
  // Once closed, nothing is read at all.
  feed(ch, 'basic.ack', { deliveryTag: 2, multiple: false });
  ch._frame(9, Buffer.alloc(1));
});

channel(
  "closes crossed (ours and the broker's): close-ok answered, the id kept until the close-ok of ours comes",
  async () => {
    // RabbitMQ refuses a publish (404 no exchange) while our close is on its way: it sends its close, then answers
    // ours with a close-ok. Released at the broker's close, the id made that close-ok a frame for a channel not open,
    // and the connection closed with 504.
    const { ch, sent, host } = harness();
    const released: number[] = [];
    host.channelClosed = (c) => released.push(c.id);
    await open(ch, true);
    sent();
    const p = ch.basicPublish('no-such-exchange', 'k', 'a').catch((e: PublishError) => e);
    let closeEvent: unknown = 'none';
    ch.on('close', (e) => {
      closeEvent = e;
    });
    const closed = ch.close();
    assert.equal(sent(), ['basic.publish', 'header', 'body', 'channel.close']);
    feed(ch, 'channel.close', {
      replyCode: 404,
      replyText: "NOT_FOUND - no exchange 'no-such-exchange'",
      classId: 60,
      methodId: 40,
    });
    assert.equal(sent(), ['channel.close-ok'], "the broker's close is answered");
    assert.equal(released, [], 'the id is still taken: the close-ok of ours is owed');
    assert.not.ok(ch.isOpen);
    feed(ch, 'channel.close-ok');
    await closed;
    assert.equal(released, [1], 'released at the close-ok');
    const err = (await p) as PublishError;
    assert.is(err.failure, 'closed');
    assert.is((err.cause as { replyCode?: number }).replyCode, 404, "the publish names the broker's reason");
    assert.is((closeEvent as { replyCode?: number }).replyCode, 404);
    assert.equal(sent(), [], 'nothing more written');
  },
);

channel(
  'basic.consume with a prefetch, the connection lost before qos-ok: one rejection to the caller, no unhandled one',
  () => {
    // In a process of its own, as the hub runs: an unhandled rejection there ends the process (it did, when a link
    // dropped at this step of a reconnection).
    const src = (f: string): string => new URL(`../../../src/amqp/${f}`, import.meta.url).href;
    const script = `
      import { Channel } from '${src('channel.js')}';
      import { encodeMethodFrame } from '${src('methods.js')}';
      import { resolveOptions } from '${src('options.js')}';
      import { Output } from '${src('output.js')}';
      const out = new Output(() => {});
      const host = { out, frameMax: 131072, options: resolveOptions({}), heartbeat: 0, blocked: false,
        backlog: () => out.queued, channelClosed: () => {}, handlerError: (e) => { throw e; } };
      const ch = new Channel(1, host);
      const opening = ch._open();
      const f = encodeMethodFrame(1, 'channel.open-ok', {});
      ch._frame(1, f.subarray(7, f.length - 1));
      await opening;
      const consuming = ch.basicConsume('q', () => {}, { prefetch: 5 });
      ch._lost(new Error('SOCKET_CLOSED'));
      const err = await consuming.then(() => undefined, (e) => e);
      await new Promise((r) => setTimeout(r, 20));
      console.log(err instanceof Error ? 'told' : 'not told');
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    assert.is(r.stdout.trim(), 'told', r.stderr);
    assert.is(r.status, 0, `the process ended on an unhandled rejection: ${r.stderr}`);
  },
);

channel.run();

const tracker = suite('confirm tracker');

tracker('PUB-7: expire rejects only what passed its deadline and reports the next one', async () => {
  const t = new ConfirmTracker();
  const outcome: string[] = [];
  for (const [seq, deadline] of [
    [1, 100],
    [2, 300],
    [3, 200],
  ] as const) {
    t.add(seq, {
      deadline,
      mandatory: false,
      exchange: '',
      routingKey: '',
      messageId: undefined,
      returned: undefined,
      resolve: () => outcome.push(`${seq} ok`),
      reject: (e) => outcome.push(`${seq} ${e.failure}`),
    });
  }
  assert.is(t.expire(150), 200);
  assert.equal(outcome, ['1 timeout']);
  t.ack(3, true);
  assert.equal(outcome, ['1 timeout', '2 ok', '3 ok']);
  assert.is(t.size, 0);
});

/** Publishes a mandatory message to exchange `x` under `rk` on `t` (the next seq); its outcome goes to `outcome`. */
function publishTo(t: ConfirmTracker, outcome: string[], rk: string, deadline = Infinity): void {
  const seq = t.nextSeq++;
  t.add(seq, {
    deadline,
    returned: undefined,
    mandatory: true,
    exchange: 'x',
    routingKey: rk,
    messageId: undefined,
    resolve: () => outcome.push(`${seq} ok`),
    reject: (e) => outcome.push(`${seq} ${e.failure}`),
  });
}

/** A tracker with mandatory publishes under the routing keys given (seq 1, 2 ...), and their outcomes. */
function mandatory(keys: string[], deadline = Infinity): { t: ConfirmTracker; outcome: string[] } {
  const t = new ConfirmTracker();
  const outcome: string[] = [];
  for (const rk of keys) publishTo(t, outcome, rk, deadline);
  return { t, outcome };
}

tracker('a return goes to the publish the next ack settles at its tag, not to an older one that fits as well', () => {
  // RabbitMQ, a headers exchange, no message ids: 1 is routed and waits for its queue; 2 is unroutable. The broker
  // sends return(2), then ack(2) at once, and ack(1) when the queue has it. The oldest publish that fits is 1.
  const { t, outcome } = mandatory(['', '']);
  assert.ok(t.markReturned('x', '', undefined, 312, 'NO_ROUTE'));
  assert.not.ok(t.markReturned('x', 'zzz', undefined, 312, 'NO_ROUTE'), 'no publish fits');
  t.ack(2, false);
  t.ack(1, false);
  assert.equal(outcome, ['2 returned', '1 ok']);
});

tracker(
  'a multiple ack ends at the returned publish; a frame that does not settle it leaves the return waiting',
  () => {
    const one = mandatory(['a', 'b', 'b']);
    one.t.markReturned('x', 'b', undefined, 312, 'NO_ROUTE');
    one.t.ack(3, true);
    assert.equal(one.outcome, ['1 ok', '2 ok', '3 returned']);
    // Another broker's order: an ack for a publish that does not fit comes first; the return waits for its own.
    const two = mandatory(['a', 'b']);
    two.t.markReturned('x', 'b', undefined, 312, 'NO_ROUTE');
    two.t.ack(1, false);
    two.t.ack(2, false);
    assert.equal(two.outcome, ['1 ok', '2 returned']);
    // Several returns before one multiple ack: its tag first, then the oldest that fits among those it settles.
    const three = mandatory(['b', 'a', 'b']);
    three.t.markReturned('x', 'b', undefined, 312, 'NO_ROUTE');
    three.t.markReturned('x', 'b', undefined, 312, 'NO_ROUTE');
    three.t.ack(3, true);
    assert.equal(three.outcome, ['1 returned', '2 ok', '3 returned']);
  },
);

tracker('a return is never given to a publish sent after it, nor kept once nothing fits', () => {
  const { t, outcome } = mandatory(['b'], 100);
  t.markReturned('x', 'b', undefined, 312, 'NO_ROUTE');
  t.expire(200); // 1 timed out before its ack
  publishTo(t, outcome, 'b');
  t.ack(2, false);
  assert.equal(outcome, ['1 timeout', '2 ok']);
  // A broker that sends returns without end: each waiting publish takes one, the rest are dropped.
  const many = mandatory(['b', 'b']);
  for (let i = 0; i < 1000; i++) many.t.markReturned('x', 'b', undefined, 312, 'NO_ROUTE');
  many.t.ack(2, true);
  assert.equal(many.outcome, ['1 returned', '2 returned']);
});

tracker('failAll: every pending publish fails as closed, once', () => {
  const t = new ConfirmTracker();
  let rejected = 0;
  for (let i = 1; i <= 3; i++)
    t.add(i, {
      deadline: Infinity,
      mandatory: false,
      exchange: '',
      routingKey: '',
      messageId: undefined,
      returned: undefined,
      resolve: () => undefined,
      reject: () => rejected++,
    });
  t.failAll(new Error('gone'));
  t.failAll(new Error('again'));
  t.ack(3, true);
  assert.is(rejected, 3);
});

tracker.run();

const heartbeat = suite('heartbeat');

function fakeClock(): Clock & { advance(ms: number): void } {
  let now = 0;
  let fn: (() => void) | null = null;
  let every = 0;
  let next = 0;
  return {
    now: () => now,
    setInterval: (f, ms) => {
      fn = f;
      every = ms;
      next = ms;
      return 1;
    },
    clearInterval: () => {
      fn = null;
    },
    advance(ms) {
      const end = now + ms;
      while (fn !== null && next <= end) {
        now = next;
        next += every;
        fn();
      }
      now = end;
    },
  };
}

heartbeat('HB-2: sends when idle, declares the peer dead between 1.5 and 2 timeouts of silence', () => {
  const clock = fakeClock();
  const events: string[] = [];
  const hb = new Heartbeat(
    10,
    { send: () => events.push('send'), dead: (ms) => events.push(`dead ${ms}`), lag: () => events.push('lag') },
    clock,
  );
  hb.received = true;
  clock.advance(5000); // tick 1: received -> alive; nothing sent -> heartbeat
  assert.equal(events, ['send']);
  hb.sent = true;
  clock.advance(5000); // tick 2: silent 1, we sent something: no heartbeat
  assert.equal(events, ['send']);
  clock.advance(10_000); // ticks 3, 4: silent 2, 3 -> dead at 15 s after the last byte
  assert.equal(events, ['send', 'send', 'send', 'dead 15000']);
  clock.advance(20_000);
  assert.is(events.length, 4, 'stopped after declaring the peer dead');
});

heartbeat('bytes that never make a whole frame (a frame trickling in) end the connection after frameDeadlineMs', () => {
  for (const wholeFrames of [false, true]) {
    const clock = fakeClock();
    const events: string[] = [];
    const hb = new Heartbeat(
      10,
      {
        send: () => undefined,
        dead: (ms, partial) => events.push(`dead ${ms} ${partial}`),
        lag: () => events.push('lag'),
      },
      clock,
    );
    // A byte before every tick, for 10 minutes: with a whole frame now and then (a live broker), or never.
    for (let t = 0; t < 120; t++) {
      hb.received = true;
      if (wholeFrames) hb.framed = true;
      clock.advance(5000);
    }
    assert.equal(events, wholeFrames ? [] : ['dead 60000 true'], `whole frames: ${wholeFrames}`);
  }
  assert.is(frameDeadlineMs(5), 60_000, 'never under a minute');
  assert.is(frameDeadlineMs(60), 240_000, '4 timeouts');
});

heartbeat('HB-3: a tick that fires late (stalled event loop) counts as lag, not silence', () => {
  let now = 0;
  let fn: () => void = () => undefined;
  const clock: Clock = {
    now: () => now,
    setInterval: (f) => {
      fn = f;
      return 1;
    },
    clearInterval: () => undefined,
  };
  const events: string[] = [];
  new Heartbeat(
    10,
    { send: () => undefined, dead: () => events.push('dead'), lag: (ms) => events.push(`lag ${ms}`) },
    clock,
  );
  for (const t of [5000, 10_000, 30_000, 35_000, 40_000]) {
    now = t;
    fn();
  }
  assert.equal(events, ['lag 15000']);
  now = 45_000;
  fn();
  assert.equal(events, ['lag 15000', 'dead']);
});

heartbeat.run();
