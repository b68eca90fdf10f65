/**
 * Connector.close(drainMs): one deadline for taking no more messages and for the handlers at work. A broker that
 * blocks our connection (a resource alarm) answers no consumer cancel until the alarm ends: a stop waited that long.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { pair, soon, until } from '../../helpers/memory-bus.js';

const s = suite('Connector.close');

s('a cancel the broker never answers, and a handler that never ends: close() returns at drainMs', async () => {
  const { hub, clock } = pair();
  let started = 0;
  hub.onSetClock(() => {
    started++;
    return new Promise<void>(() => undefined); // never ends
  });
  await hub.start();
  const t = hub.transport;
  void t.inject({
    body: JSON.stringify({ msg: 'set_clock', offset: 1 }),
    routingKey: 'set_clock',
    properties: { type: 'set_clock', contentType: 'application/json' },
  });
  await until(() => started === 1);
  let cancelled = false;
  t.stopConsuming = () => {
    cancelled = true;
    return new Promise<void>(() => undefined); // a blocked connection: no cancel-ok
  };
  let closed = false;
  const closing = hub.close(1_000).then(() => {
    closed = true;
  });
  await clock.advance(999);
  assert.ok(cancelled);
  assert.not.ok(closed, 'still within drainMs');
  await clock.advance(1);
  await soon(closing);
  assert.ok(closed, 'closed at drainMs, for both waits together');
});

s.run();
