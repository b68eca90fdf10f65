/**
 * Connector.close(drainMs): one deadline for taking no more messages and for the handlers at work. A broker that
 * blocks our connection (a resource alarm) answers no consumer cancel until the alarm ends: a stop waited that long.
 */
import * as net from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { amqpBus, BusError } from '../../../src/bus/index.js';
import { until as within } from '../../helpers/deadline.js';
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

s(
  'close() while start() waits for a broker that is away: start() rejects BusError CLOSED, as after close()',
  async () => {
    // A port nothing listens on: start() waits, retrying, until close() (a SIGTERM handler's) stops it.
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const bus = amqpBus({ name: 'vpp-unit', peers: ['heh-unit'], url: `amqp://127.0.0.1:${port}` });
    let failed = 0;
    bus.transport.on('failed', () => failed++);
    const started = bus.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    await within(() => failed > 0, 'a first attempt refused', 5_000);
    await bus.close();
    const err = await started;
    assert.instance(err, BusError);
    assert.is((err as BusError).code, 'CLOSED');
    assert.is((err as BusError).message, 'the connector was closed while it started');
  },
);

s.run();
