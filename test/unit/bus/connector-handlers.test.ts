/**
 * Connector handlers are fixed before start() (issue 12): registering one after start() has been called throws, so
 * no message can reach a connector before its handler and be answered 453 and acked for it. A type this connector
 * does not handle at all is still answered 453 and acked (data model §3.6). Over an in-memory transport.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BusError, Connector, type Incoming, type Outgoing, type Transport } from '../../../src/bus/index.js';
import { encode, type Message } from '../../../src/codec/index.js';

const ME = 'heh-unit';
const PEER = 'vpp-unit';

/** Delivers what the test pushes; start() can be held open to look at a connector while it is starting. */
class MemoryTransport implements Transport {
  readonly name = 'memory';
  readonly sent: Outgoing[] = [];
  #deliver: ((m: Incoming) => Promise<void>) | undefined;
  #gate: Promise<void> = Promise.resolve();
  #open: () => void = () => undefined;

  holdStart(): void {
    this.#gate = new Promise((resolve) => {
      this.#open = resolve;
    });
  }

  releaseStart(): void {
    this.#open();
  }

  async start(onMessage: (m: Incoming) => Promise<void>): Promise<void> {
    await this.#gate;
    this.#deliver = onMessage;
  }

  async send(m: Outgoing): Promise<void> {
    this.sent.push(m);
  }

  async stopConsuming(): Promise<void> {}

  async close(): Promise<void> {}

  /** Delivers `message` from the peer; resolves with how it was settled once the connector is done with it. */
  async push(message: Message, messageId: string): Promise<string[]> {
    if (this.#deliver === undefined) throw new Error('not started');
    const settled: string[] = [];
    await this.#deliver({
      from: PEER,
      body: Buffer.from(encode(message)),
      routingKey: message.msg,
      messageId,
      correlationId: undefined,
      contentType: 'application/json',
      type: message.msg,
      appId: PEER,
      headers: {},
      redelivered: false,
      deliveryCount: 0,
      raw: null,
      ack: () => settled.push('ack'),
      retry: () => settled.push('retry'),
      deadLetter: async (reason) => {
        settled.push(`dead: ${reason}`);
      },
    });
    return settled;
  }
}

const responses = (t: MemoryTransport): unknown[] =>
  t.sent.map((o) => {
    const r = JSON.parse(Buffer.from(o.body as Uint8Array).toString('utf8')) as Record<string, unknown>;
    return [r['response_code'], r['msg_id']];
  });

const s = suite('Connector: handlers before start()');

s('handle() after start() throws BusError CONFIG saying why, and leaves the handlers as they were', async () => {
  const transport = new MemoryTransport();
  const bus = new Connector({ name: ME, peers: [PEER], transport });
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
  assert.equal(await transport.push({ msg: 'set_clock', offset: 1, msg_id: id }, 'm1'), ['ack']);
  assert.equal(calls, ['first'], 'the refused registration replaced nothing');
  assert.equal(responses(transport), [[200, id]]);
  await bus.close();
});

s('handle() while start() is under way throws too: the transport may already be delivering', async () => {
  const transport = new MemoryTransport();
  transport.holdStart();
  const bus = new Connector({ name: ME, peers: [PEER], transport });
  const starting = bus.start();
  assert.throws(
    () => bus.onSetClock(() => undefined),
    (e: unknown) => e instanceof BusError && e.code === 'CONFIG',
  );
  transport.releaseStart();
  await starting;
  await bus.close();
});

s(
  'registered before start(), a handler gets the messages that were waiting; a type handled by nobody is answered 453 and acked',
  async () => {
    const transport = new MemoryTransport();
    const bus = new Connector({ name: ME, peers: [PEER], transport });
    const got: Message[] = [];
    bus.onSetClock((m) => {
      got.push(m);
    });
    const unhandled: string[] = [];
    bus.on('unhandled', (m, sender) => unhandled.push(`${m.msg} from ${sender}`));
    await bus.start();
    const a = '6f1c2e9a-1111-4222-8333-000000000001';
    const b = '6f1c2e9a-1111-4222-8333-000000000002';
    assert.equal(await transport.push({ msg: 'set_clock', offset: 2, msg_id: a }, 'm1'), ['ack']);
    assert.equal(got, [{ msg: 'set_clock', offset: 2, msg_id: a }]);
    // Legitimate protocol behaviour, kept: this connector does not handle set_smart_mode at all (§3.6).
    assert.equal(await transport.push({ msg: 'set_smart_mode', mode: 'passive', reset: false, msg_id: b }, 'm2'), [
      'ack',
    ]);
    assert.equal(unhandled, [`set_smart_mode from ${PEER}`]);
    assert.equal(responses(transport), [
      [200, a],
      [453, b],
    ]);
    await bus.close();
  },
);

s.run();
