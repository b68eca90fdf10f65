/**
 * Shared bits of the bus integration tests (test/integration/bus-*.test.ts): connectors started against the local
 * RabbitMQ with every queue and exchange they may create remembered and deleted afterwards, an amqplib connection
 * as the independent client, handlers that record what they get, polling with a deadline, and barriers.
 */
import { randomUUID } from 'node:crypto';
import amqplib, { type Channel as AmqplibChannel, type ChannelModel, type GetMessage } from 'amqplib';
import type { Message as AmqpMessage } from '../../src/amqp/index.js';
import {
  type AmqpBusOptions,
  type AmqpTransport,
  amqpBus,
  type Connector,
  type HandlerContext,
} from '../../src/bus/index.js';
import { type Message, type MessageType, SCHEMAS } from '../../src/codec/index.js';
import { AMQP_URL, unique } from './amqp.js';
import { until, withDeadline } from './deadline.js';

/** The market-level types (data model §3.4); everything else in SCHEMAS is HEH level. */
export const MARKET_TYPES: readonly MessageType[] = [
  'balancing_reserve_bid',
  'bid_accepted',
  'market_cleared',
  'balancing_energy_bid',
  'activate_bid',
  'request_balancing',
  'balancing_activated',
  'balancing_unachievable',
];
export const ALL_TYPES = Object.keys(SCHEMAS) as MessageType[];
export const HEH_TYPES = ALL_TYPES.filter((t) => !MARKET_TYPES.includes(t));

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A unique entity name: `heh-test-...`, valid as an AMQP name and a bus entity name. */
export function entity(role: string): string {
  return `${role}-${unique('bus')}`;
}

/** Deadline of one broker round trip or start-up. */
export const NET_MS = 10_000;

export { until } from './deadline.js';

export interface Received<T extends MessageType = MessageType> {
  message: Message<T>;
  ctx: HandlerContext;
}

/** Registers, before start(), a handler for each of `types` that records the message and its context. */
export function record(c: Connector, types: readonly MessageType[] = ALL_TYPES): Received[] {
  const got: Received[] = [];
  for (const t of types)
    c.handle(t, (message, ctx) => {
      got.push({ message: message as Message, ctx });
    });
  return got;
}

/**
 * A barrier message: a `response` to a msg_id nobody sent. Nobody answers a `response` and no request waits for
 * this msg_id, so it reaches the receiver's `response` handler (or its 'unhandled' event) and causes nothing else.
 */
export function barrierMessage(id: string = randomUUID()): Message<'response'> {
  return { msg: 'response', msg_id: id, response_code: 200, response_desc: 'barrier' };
}

/** Whether `m` (a decoded message, or a JSON body as a 2015 peer reads it) is the barrier message `id`. */
export function isBarrier(m: unknown, id: string): boolean {
  const r = m as { msg?: unknown; msg_id?: unknown; response_desc?: unknown };
  return r.msg === 'response' && r.msg_id === id && r.response_desc === 'barrier';
}

/**
 * Instead of a sleep to prove that nothing more arrives: `from` publishes a barrier message to `to` on the path of
 * everything it published before (one channel, one exchange, one queue: in order), and this waits until `got` (what
 * `to` records; it must record `response`) has it, then takes it out of `got` again. Whatever `from` had published
 * before has then reached `to`'s handlers too.
 */
export async function barrier(from: Connector, to: Connector, got: Received[], ms = NET_MS): Promise<void> {
  const id = randomUUID();
  await withDeadline(from.publish(to.name, barrierMessage(id)), NET_MS, `a barrier from ${from.name} to ${to.name}`);
  const at = (): number => got.findIndex((g) => isBarrier(g.message, id));
  await until(() => at() >= 0, `the barrier from ${from.name} to reach ${to.name}`, ms);
  got.splice(at(), 1);
}

/** The AMQP message under a delivery. */
export function rawOf(ctx: HandlerContext): AmqpMessage {
  return ctx.delivery.raw as AmqpMessage;
}

type ConnectorSpec = Omit<AmqpBusOptions, 'url' | 'connectOptions' | 'connection'>;

/**
 * Connectors and the amqplib connection of one test, and everything they may declare. `dispose()` closes the
 * connectors and deletes the queues and exchanges through an amqplib channel; call it in `finally`.
 */
export class BusFixture {
  readonly connectors: Connector<AmqpTransport>[] = [];
  readonly queues = new Set<string>();
  readonly exchanges = new Set<string>();
  #amqp: ChannelModel | undefined;

  /**
   * Remembers for deletion what a hub process declares: its inboxes (D3.2.3's and, by hub.json's default, one per
   * peer), its dead letters and the pair exchanges with its peers.
   */
  hubTopology(hub: string, peers: readonly string[]): void {
    this.queues.add(`private-${hub}-in`).add(`private-${hub}-dead`);
    for (const p of peers) this.queues.add(`private-${hub}-in:${p}`);
    this.exchanges.add(`private-${hub}-dlx`);
    for (const p of peers) this.exchanges.add(`${hub}-to-${p}`).add(`${p}-to-${hub}`);
  }

  /** Creates and starts a connector (one that needs no handler); see create() for one that does. */
  async connector(spec: ConnectorSpec): Promise<Connector<AmqpTransport>> {
    const c = this.create(spec);
    await withDeadline(c.start(), NET_MS, `starting connector ${spec.name}`);
    return c;
  }

  /**
   * Creates a connector without starting it, since handlers can only be registered before start(): register them,
   * then call start(). Its topology is remembered for deletion before it is declared.
   */
  create(spec: ConnectorSpec): Connector<AmqpTransport> {
    const { name, peers } = spec;
    this.queues.add(`private-${name}-in`).add(`private-${name}-dead`);
    this.exchanges.add(`private-${name}-dlx`);
    for (const p of peers) this.exchanges.add(`${name}-to-${p}`).add(`${p}-to-${name}`);
    if (spec.inboxes === 'per-peer') for (const p of peers) this.queues.add(`private-${name}-in:${p}`);
    if (typeof spec.inboxes === 'object') {
      for (let k = 0; k < spec.inboxes.shards; k++) this.queues.add(`private-${name}-shard:${k}`);
      this.queues.add(`private-${name}-handled`);
      this.exchanges.add(`private-${name}-relay`);
    }
    if (spec.topology === 'queues') {
      for (const owner of (spec.role ?? 'hub') === 'hub' ? [name] : peers)
        this.queues.add(`${owner}-up`).add(`${owner}-down`);
    }
    const c = amqpBus({ ...spec, url: AMQP_URL });
    this.connectors.push(c);
    return c;
  }

  /** Starts the connectors not started yet, one after the other in the order they were created. */
  async start(): Promise<void> {
    for (const c of this.connectors) await withDeadline(c.start(), NET_MS, `starting connector ${c.name}`);
  }

  /** The amqplib connection (one per fixture). */
  async amqp(): Promise<ChannelModel> {
    if (this.#amqp === undefined) {
      this.#amqp = await withDeadline(amqplib.connect(AMQP_URL), NET_MS, 'amqplib connect');
      this.#amqp.on('error', () => undefined);
    }
    return this.#amqp;
  }

  /**
   * A confirm channel whose close() first waits for the broker to confirm what was published on it. A quorum queue
   * may drop publishes that were never confirmed when their channel closes at once (seen here on RabbitMQ 3.10: 5 of
   * 1,200, the tail of a batch, and a test then waited for messages that never came).
   */
  async channel(): Promise<AmqplibChannel> {
    const c = await (await this.amqp()).createConfirmChannel();
    c.on('error', () => undefined);
    const close = c.close.bind(c);
    c.close = async () => {
      await c.waitForConfirms().catch(() => undefined);
      return close();
    };
    return c;
  }

  /** Ready messages in a queue (passive declare on a throw-away channel). */
  async depth(queue: string): Promise<number> {
    const ch = await this.channel();
    try {
      return (await withDeadline(ch.checkQueue(queue), NET_MS, `checkQueue ${queue}`)).messageCount;
    } finally {
      await ch.close().catch(() => undefined);
    }
  }

  /** Takes every message out of a queue (basic.get, acked). */
  async drain(queue: string): Promise<GetMessage[]> {
    const ch = await this.channel();
    const out: GetMessage[] = [];
    try {
      for (;;) {
        const m = await withDeadline(ch.get(queue, { noAck: true }), NET_MS, `get from ${queue}`);
        if (m === false) return out;
        out.push(m);
      }
    } finally {
      await ch.close().catch(() => undefined);
    }
  }

  /** Closes the connectors, deletes every queue and exchange, closes amqplib; throws if a deletion failed. */
  async dispose(): Promise<void> {
    await Promise.allSettled(this.connectors.map((c) => withDeadline(c.close(), NET_MS, 'connector close')));
    const failures: string[] = [];
    const conn = await this.amqp();
    let ch = await this.channel();
    const del = async (what: string, fn: (c: AmqplibChannel) => Promise<unknown>): Promise<void> => {
      try {
        await withDeadline(fn(ch), NET_MS, what);
      } catch (err) {
        failures.push(`${what}: ${(err as Error).message}`);
        ch = await conn.createChannel();
        ch.on('error', () => undefined);
      }
    };
    for (const q of this.queues) await del(`delete queue ${q}`, (c) => c.deleteQueue(q));
    for (const x of this.exchanges) await del(`delete exchange ${x}`, (c) => c.deleteExchange(x));
    await ch.close().catch(() => undefined);
    await withDeadline(conn.close(), NET_MS, 'amqplib close').catch(() => undefined);
    this.#amqp = undefined;
    if (failures.length > 0) throw new Error(`cleanup failed: ${failures.join('; ')}`);
  }
}

let reachable: Promise<void> | undefined;
/** Once per file: a broker that does not even complete a handshake fails every test at once, not each after its deadline. */
function brokerReachable(): Promise<void> {
  reachable ??= (async () => {
    const started = Date.now();
    const attempt = amqplib.connect(AMQP_URL);
    try {
      const c = await withDeadline(attempt, 5_000, 'connect');
      c.on('error', () => undefined);
      await c.close();
    } catch (err) {
      attempt
        .then(
          (c) => c.close(),
          () => undefined,
        )
        .catch(() => undefined); // if it connects after all
      throw new Error(
        `RabbitMQ at ${AMQP_URL} did not accept a connection (${(err as Error).message} after ${Date.now() - started} ms)`,
      );
    }
  })();
  return reachable;
}

/** Runs `fn` with a fresh fixture, always disposed; a test failure wins over a cleanup failure. */
export async function withBus(fn: (f: BusFixture) => Promise<void>): Promise<void> {
  await brokerReachable();
  const f = new BusFixture();
  try {
    await fn(f);
  } catch (err) {
    // The test's own failure is the one to report; a cleanup failure after it would only hide it.
    await f.dispose().catch(() => undefined);
    throw err;
  }
  await f.dispose();
}
