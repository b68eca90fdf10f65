/**
 * What the hub's log says of the transport's recovery events (issue 15, item 1: `channel-recovered` went unlogged,
 * so a channel closed and reopened in a loop left no trace), on the in-memory transport as main.ts wires the link.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { hubRig } from '../../helpers/memory-hub.js';

const s = suite('hub log: recovery events');

s('a reopened channel, a cancelled consumer and a missing inbox protection are each one warning', async () => {
  const r = await hubRig();
  try {
    const t = r.bus.transport;
    const before = r.logs.length;
    const closed = new Error('channel 2 closed: 406 PRECONDITION_FAILED');
    t.simulate('resumed', closed);
    const deleted = new Error('queue deleted');
    t.simulate('source-cancelled', 'private-heh-example-in', deleted);
    t.simulate('degraded', 'private-heh-example-in exists without x-delivery-limit', 'rabbitmqctl set_policy ...');
    const lines = r.logs.slice(before).map((l) => [l.level, l.msg, l.fields]);
    assert.ok((lines[0]?.[2] as { error?: unknown } | undefined)?.error === closed);
    assert.equal(lines, [
      ['warn', 'a channel the broker closed was reopened', { error: closed }],
      [
        'warn',
        'the broker cancelled our consumer; consuming again',
        { queue: 'private-heh-example-in', error: deleted },
      ],
      ['warn', 'private-heh-example-in exists without x-delivery-limit', { fix: 'rabbitmqctl set_policy ...' }],
    ]);
  } finally {
    await r.close();
  }
});

s.run();
