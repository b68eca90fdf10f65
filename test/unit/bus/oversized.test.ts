/**
 * A body over the Connector's limit (issue 15, item 1), over the in-memory transport, which refuses it as the AMQP
 * transport does: the Connector tells the transport its limit (the codec's maxBytes plus a sealed envelope's
 * overhead), the transport dead-letters a larger body before the Connector reads it, and the Connector reports it
 * as a TOO_LARGE dead letter with its size and sender, and goes on. test/integration/bus-oversized.test.ts shows the
 * same against RabbitMQ.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Incoming } from '../../../src/bus/index.js';
import { OVERHEAD } from '../../../src/crypto/index.js';
import { deliver, pair, responses, uuid, VPP } from '../../helpers/memory-bus.js';

const s = suite('bodies over the limit');

const setClock = (n: number, pad = 0): Record<string, unknown> => ({
  msg: 'set_clock',
  offset: 1,
  msg_id: uuid(n),
  ...(pad > 0 ? { ext_x_pad: 'x'.repeat(pad) } : {}),
});
/** The JSON of setClock(n) padded to exactly `bytes` bytes. */
const sized = (n: number, bytes: number): string => {
  const bare = JSON.stringify(setClock(n, 1)).length - 1;
  return JSON.stringify(setClock(n, bytes - bare));
};

s('the limit is the codec maxBytes plus the envelope overhead', () => {
  assert.is(pair().hub.maxBodyBytes, (1 << 20) + OVERHEAD.pair);
  assert.is(pair({ hub: { limits: { maxBytes: 1000 } } }).hub.maxBodyBytes, 1000 + OVERHEAD.pair);
});

s(
  'over the limit: refused by the transport, reported as TOO_LARGE with size and sender, never handled, no answer',
  async () => {
    const { hub } = pair();
    const handled: number[] = [];
    hub.onSetClock((m) => {
      handled.push(m.offset ?? 0);
    });
    const dead: [string, string, Incoming][] = [];
    hub.on('dead-letter', (reason, code, d) => dead.push([reason, code, d as Incoming]));
    await hub.start();
    const t = hub.transport;
    const limit = hub.maxBodyBytes;
    const over = await deliver(t, setClock(1), { raw: sized(1, limit + 1), messageId: 'big' });
    assert.equal([over.outcome, over.code], ['dead', 'TOO_LARGE']);
    assert.is(dead.length, 1);
    const [reason, code, d] = dead[0] as [string, string, Incoming];
    assert.is(code, 'TOO_LARGE');
    assert.is(reason, `a body of ${limit + 1} bytes exceeds the limit of ${limit} (refused unread)`);
    assert.equal([d.from, d.oversized, d.body.length, d.messageId], [VPP, limit + 1, 0, 'big']);
    assert.equal(
      t.deadLetters.map((x) => x.code),
      ['TOO_LARGE'],
    );
    assert.equal(t.problems, [], 'settled once, by the transport');
    assert.equal(handled, []);
    assert.equal(responses(t), [], 'nothing was read, so nothing is answered');
    // The next one is handled.
    assert.is((await deliver(t, setClock(2), { messageId: 'next' })).outcome, 'ack');
    assert.equal(handled, [1]);
    await hub.close();
  },
);

s('up to the limit the body reaches the codec, which refuses what is over maxBytes and answers it', async () => {
  const { hub } = pair();
  hub.onSetClock(() => undefined);
  const codes: string[] = [];
  hub.on('dead-letter', (_reason, code) => codes.push(code));
  await hub.start();
  const t = hub.transport;
  const at = await deliver(t, setClock(3), { raw: sized(3, hub.maxBodyBytes), messageId: 'edge' });
  assert.equal([at.outcome, at.code], ['dead', 'DECODE_400']);
  assert.equal(codes, ['DECODE_400']);
  assert.equal(responses(t), [[400, uuid(3)]]);
  await hub.close();
});

s('a larger codec limit raises the transport limit with it', async () => {
  const { hub } = pair({ hub: { limits: { maxBytes: 3 << 20 } } });
  const handled: number[] = [];
  hub.onSetClock((m) => {
    handled.push(m.offset ?? 0);
  });
  await hub.start();
  assert.is((await deliver(hub.transport, setClock(4), { raw: sized(4, 2 << 20), messageId: 'm' })).outcome, 'ack');
  assert.equal(handled, [1]);
  await hub.close();
});

s.run();
