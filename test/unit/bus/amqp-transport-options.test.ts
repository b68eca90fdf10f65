/**
 * What AmqpTransport decides from its options alone, before it connects (docs/bus.md): `inboxes: { shards: K }` takes
 * K from 1 to 1,024, and a hub over the first version's `queues` topology has no sender the broker vouches for.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { AmqpTransport, type AmqpTransportOptions, BusError } from '../../../src/bus/index.js';

const test = suite('AmqpTransport options');
const make = (o: Partial<AmqpTransportOptions>): AmqpTransport => new AmqpTransport({ name: 'v', peers: ['h'], ...o });

test('inboxes.shards: 1 to 1,024', () => {
  for (const shards of [1, 1024]) make({ inboxes: { shards } });
  for (const shards of [0, 1025, 2.5]) {
    let e: unknown;
    try {
      make({ inboxes: { shards } });
    } catch (err) {
      e = err;
    }
    assert.instance(e, BusError, String(shards));
    assert.is((e as BusError).code, 'CONFIG');
    assert.match((e as BusError).message, /inboxes\.shards must be an integer from 1 to 1024/);
  }
});

test('authenticatedSender: false only for a hub over the queues topology (app_id names the sender)', () => {
  assert.ok(make({}).capabilities.authenticatedSender);
  assert.ok(make({ topology: 'queues', role: 'controller' }).capabilities.authenticatedSender);
  assert.not.ok(make({ topology: 'queues' }).capabilities.authenticatedSender);
});

test.run();
