/**
 * Connector handlers are fixed before start() (issue 12): registering one after start() has been called throws, so
 * no message can reach a connector before its handler and be answered 453 and acked for it. A type this connector
 * does not handle at all is still answered 453 and acked (data model §3.6). Over the in-memory transport.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BusError, Connector, MemoryTransport, type Outcome } from '../../../src/bus/index.js';
import { encode, type Message } from '../../../src/codec/index.js';

const ME = 'heh-unit';
const PEER = 'vpp-unit';

/** Delivers `message` from the peer; resolves with how it was settled once the connector is done with it. */
async function push(t: MemoryTransport, message: Message, messageId: string): Promise<Outcome[]> {
  const s = await t.inject({
    body: encode(message),
    properties: { messageId, type: message.msg, contentType: 'application/json', appId: PEER },
  });
  return [s.outcome];
}

const transport = (): MemoryTransport => MemoryTransport.pair(ME, PEER)[0];

const responses = (t: MemoryTransport): unknown[] =>
  t.sent.map((o) => {
    const r = JSON.parse(Buffer.from(o.body).toString('utf8')) as Record<string, unknown>;
    return [r['response_code'], r['msg_id']];
  });

const s = suite('Connector: handlers before start()');

s('handle() after start() throws BusError CONFIG saying why, and leaves the handlers as they were', async () => {
  const t = transport();
  const bus = new Connector({ transport: t });
  const calls: string[] = [];
  bus.onSetClock(() => {
    calls.push('first');
  });
  await bus.start();
  for (const late of [
    () =>
      bus.onSetClock(() => {
        calls.push('late');
      }),
    () => bus.handle('get_report', () => undefined),
  ]) {
    const err = (() => {
      try {
        late();
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    assert.instance(err, BusError);
    assert.is((err as BusError).code, 'CONFIG');
    assert.match((err as BusError).message, /handlers must be registered before start\(\)/);
  }
  const id = '6f1c2e9a-1111-4222-8333-444455556666';
  assert.equal(await push(t, { msg: 'set_clock', offset: 1, msg_id: id }, 'm1'), ['ack']);
  assert.equal(calls, ['first'], 'the refused registration replaced nothing');
  assert.equal(responses(t), [[200, id]]);
  await bus.close();
});

s('handle() while start() is under way throws too: the transport may already be delivering', async () => {
  const t = transport();
  t.holdStart();
  const bus = new Connector({ transport: t });
  const starting = bus.start();
  assert.throws(
    () => bus.onSetClock(() => undefined),
    (e: unknown) => e instanceof BusError && e.code === 'CONFIG',
  );
  t.releaseStart();
  await starting;
  await bus.close();
});

s(
  'registered before start(), a handler gets the messages that were waiting; a type handled by nobody is answered 453 and acked',
  async () => {
    const t = transport();
    const bus = new Connector({ transport: t });
    const got: Message[] = [];
    bus.onSetClock((m) => {
      got.push(m);
    });
    const unhandled: string[] = [];
    bus.on('unhandled', (m, sender) => unhandled.push(`${m.msg} from ${sender}`));
    await bus.start();
    const a = '6f1c2e9a-1111-4222-8333-000000000001';
    const b = '6f1c2e9a-1111-4222-8333-000000000002';
    assert.equal(await push(t, { msg: 'set_clock', offset: 2, msg_id: a }, 'm1'), ['ack']);
    assert.equal(got, [{ msg: 'set_clock', offset: 2, msg_id: a }]);
    // Legitimate protocol behaviour, kept: this connector does not handle set_smart_mode at all (§3.6).
    assert.equal(await push(t, { msg: 'set_smart_mode', mode: 'passive', reset: false, msg_id: b }, 'm2'), ['ack']);
    assert.equal(unhandled, [`set_smart_mode from ${PEER}`]);
    assert.equal(responses(t), [
      [200, a],
      [453, b],
    ]);
    await bus.close();
  },
);

s.run();
