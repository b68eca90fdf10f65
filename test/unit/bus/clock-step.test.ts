/**
 * The Connector's windows measure elapsed time, not the wall clock: NTP stepping a Pi's clock (no real-time clock,
 * booted on a stale time) must neither forget the ids handled nor refill a sender's budget.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Message } from '../../../src/codec/index.js';
import { ManualClock } from '../../../src/core/clock.js';
import { deliver, pair, responses, uuid } from '../../helpers/memory-bus.js';

const s = suite('the bus and a stepped clock');

s('ManualClock: a step moves now() and not elapsed(); advance moves both', async () => {
  const c = new ManualClock(1_000_000);
  const e0 = c.elapsed();
  await c.step(3_600_000);
  assert.is(c.now(), 4_600_000);
  assert.is(c.elapsed(), e0);
  await c.advance(500);
  assert.is(c.elapsed(), e0 + 500);
  await c.step(-7_200_000);
  assert.is(c.elapsed(), e0 + 500);
});

s('a copy that comes after the clock was stepped forward an hour is still known as a duplicate', async () => {
  const { hub, clock } = pair();
  let calls = 0;
  hub.onSetClock(() => {
    calls++;
  });
  await hub.start();
  const m: Message<'set_clock'> = { msg: 'set_clock', offset: 1, msg_id: uuid(1) };
  await deliver(hub.transport, m, { messageId: 'same' });
  await clock.step(60 * 60_000); // the broker's copy is seconds old; only the wall clock moved
  await deliver(hub.transport, m, { messageId: 'same' });
  assert.is(calls, 1, 'handled twice: the dedupe window followed the wall clock');
  assert.equal(responses(hub.transport), [[200, uuid(1)]]);
  // Time that really passes still ends the window (15 minutes by default, two generations).
  await clock.advance(31 * 60_000);
  await deliver(hub.transport, m, { messageId: 'same' });
  assert.is(calls, 2);
});

s("a step forward does not refill a sender's budget", async () => {
  const { hub, clock } = pair({ hub: { budget: { messages: { rate: 1, burst: 2 } } } });
  let calls = 0;
  hub.onSetClock(() => {
    calls++;
  });
  await hub.start();
  const send = (n: number) => deliver(hub.transport, { msg: 'set_clock', offset: 1, msg_id: uuid(n) });
  await send(1);
  await send(2);
  await send(3); // over the burst: 503
  await clock.step(3_600_000);
  await send(4); // still over: no time has passed
  assert.is(calls, 2);
  assert.equal(
    responses(hub.transport).map(([code]) => code),
    [200, 200, 503, 503],
  );
});

s.run();
