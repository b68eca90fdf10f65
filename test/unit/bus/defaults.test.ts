/**
 * The Connector's defaults docs/bus.md states, with no option given: a failing handler's message is dead-lettered
 * after 5 deliveries, request() times out after 5 s, close() waits 10 s for a handler at work, a type nobody
 * handles is acked, answered 453 only when it has a msg_id, and each sender's budget is a burst of 1,000 requests.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { BusError } from '../../../src/bus/index.js';
import { deliver, HUB, pair, responses, soon, until, uuid } from '../../helpers/memory-bus.js';

const test = suite('Connector defaults');

test('deliveryLimit 5: a handler that always throws runs 5 times, then its message is dead-lettered', async () => {
  const { hub } = pair();
  let calls = 0;
  hub.onSetClock(() => {
    calls++;
    throw new Error('the relay is stuck');
  });
  await hub.start();
  await deliver(hub.transport, { msg: 'set_clock', offset: 1, msg_id: uuid(1) }, { messageId: 'm' });
  await hub.transport.network.idle();
  assert.is(calls, 5);
  assert.equal(
    hub.transport.deadLetters.map((d) => d.code),
    ['HANDLER_FAILED'],
  );
  await hub.close();
});

test('request() without a timeout: TIMEOUT at 5,000 ms, not before', async () => {
  const { hub, vpp, clock } = pair();
  let asked = 0;
  hub.onGetCapabilities(() => {
    asked++; // acked, never answered
  });
  await Promise.all([hub.start(), vpp.start()]);
  let outcome: unknown;
  const p = vpp.request(HUB, { msg: 'get_capabilities', device: null }).catch((e: unknown) => {
    outcome = e;
  });
  await until(() => asked === 1);
  await clock.advance(4_999);
  assert.is(outcome, undefined);
  await clock.advance(1);
  await soon(p);
  assert.is((outcome as BusError).code, 'TIMEOUT');
  await Promise.all([hub.close(), vpp.close()]);
});

test('close() without drainMs waits 10 s for a handler at work', async () => {
  const { hub, clock } = pair();
  let started = 0;
  hub.onSetClock(() => {
    started++;
    return new Promise<void>(() => undefined); // never ends
  });
  await hub.start();
  void deliver(hub.transport, { msg: 'set_clock', offset: 1 }, { messageId: 'c' });
  await until(() => started === 1);
  let closed = false;
  const closing = hub.close().then(() => {
    closed = true;
  });
  await clock.advance(9_999);
  assert.not.ok(closed, 'still within 10 s');
  await clock.advance(1);
  await soon(closing);
});

test('a type nobody handles is acked, and answered 453 only when it has a msg_id', async () => {
  const { hub } = pair();
  await hub.start();
  const t = hub.transport;
  const a = await deliver(t, { msg: 'set_clock', offset: 1, msg_id: uuid(1) }, { messageId: 'a' });
  const b = await deliver(t, { msg: 'get_capabilities', device: null, request_id: uuid(2) }, { messageId: 'b' });
  assert.equal([a.outcome, b.outcome], ['ack', 'ack']);
  assert.equal(responses(t), [[453, uuid(1)]]);
  assert.is(t.sent.length, 1, 'nothing to the request without a msg_id');
  await hub.close();
});

test('budget: a burst of 1,000 requests from one sender is handled, the 1,001st answered 503', async () => {
  const { hub } = pair();
  let handled = 0;
  hub.onSetClock(() => {
    handled++;
  });
  await hub.start();
  for (let i = 1; i <= 1001; i++)
    await deliver(hub.transport, { msg: 'set_clock', offset: 1, msg_id: uuid(i) }, { messageId: `b${i}` });
  await hub.transport.network.idle();
  assert.is(handled, 1000);
  assert.equal(
    responses(hub.transport).filter(([code]) => code === 503),
    [[503, uuid(1001)]],
  );
  await hub.close();
});

test.run();
