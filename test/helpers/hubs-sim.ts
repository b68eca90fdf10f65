/**
 * Thousands of simulated hubs for a sharded aggregator (test/integration/instances-cluster.test.ts, bench/instances.ts),
 * multiplexed over a few connections, through the pair exchanges of D3.2.3 as a hub would use them:
 *
 * - reports: `tick()` publishes the next report of some hubs to `<hub>-to-<vpp>` (routing key `report.<hub>`), each
 *   hub's next one only once its last is confirmed, and the same message id again when it was not (a hub's outbox).
 *   A report's values carry the hub's sequence number in the signal `seq`.
 * - activations: one quorum queue per connection, bound to the `<vpp>-to-<hub>` exchanges of its share of the hubs,
 *   takes the activations; each is answered once per activation id (a hub's dedupe) with accept_activation whose
 *   correlation id is the activation's message id.
 *
 * The aggregator declares the pair exchanges (its first start); start() needs them.
 */
import { randomUUID } from 'node:crypto';
import type { Message, RecoveringChannel, RecoveringConnection } from '../../src/amqp/index.js';
import { CONTENT_TYPE_JSON, DM_VERSION } from '../../src/bus/index.js';
import { decode, type Message as EbMessage, EbTime, encode } from '../../src/codec/index.js';
import { sleep } from './deadline.js';

export function report(hub: string, seq: number): EbMessage<'report'> {
  const from = EbTime.fromEpochMs(Date.parse('2026-12-04T00:00:00Z') + seq * 900_000);
  return { msg: 'report', from, to: from.plusSeconds(900), resolution: 900, values: { seq: [seq] }, heh_id: hub };
}

const props = (hub: string, type: string, messageId: string, correlationId?: string) => ({
  messageId,
  ...(correlationId === undefined ? {} : { correlationId }),
  type,
  contentType: CONTENT_TYPE_JSON,
  timestamp: new Date(),
  appId: hub,
  headers: { 'x-ebadge-dm': DM_VERSION },
  deliveryMode: 2 as const,
});

/** The hubs: their reports (each hub's outbox, one in flight), and their answers to activations (deduped by id). */
export class Hubs {
  readonly names: string[];
  /** hub -> last seq confirmed */
  readonly confirmed = new Map<string, number>();
  /** activation id -> deliveries of it to its hub */
  readonly activations = new Map<string, number>();
  readonly answered = new Set<string>();
  resends = 0;
  /** Called with each activation's id as it reaches its hub. */
  onActivation: ((id: string) => void) | undefined;
  #inFlight = new Set<string>();
  #pending = new Map<string, { seq: number; id: string }>();
  #stopped = false;
  #pubs: RecoveringChannel[] = [];
  readonly #vpp: string;

  constructor(vpp: string, names: string[]) {
    this.#vpp = vpp;
    this.names = names;
  }

  async start(conns: RecoveringConnection[]): Promise<void> {
    await Promise.all(conns.map((c) => c.whenOpen()));
    this.#pubs = await Promise.all(conns.map((c) => c.createChannel({ confirm: true })));
    await Promise.all(
      conns.map(async (c, g) => {
        const ch = await c.createChannel({ confirm: false, prefetch: 200 });
        const q = `sim-${this.#vpp}-gw-${g}`;
        await ch.queueDeclare(q, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
        for (let i = g; i < this.names.length; i += conns.length) {
          await ch.queueBind(q, `${this.#vpp}-to-${this.names[i]}`, '#');
        }
        await ch.basicConsume(q, (m) => this.#activation(m, g), { prefetch: 200 });
      }),
    );
  }

  async #activation(m: Message, g: number): Promise<void> {
    const hub = m.exchange.slice(`${this.#vpp}-to-`.length);
    const a = decode(m.body).message as EbMessage<'activate'>;
    this.activations.set(a.id, (this.activations.get(a.id) ?? 0) + 1);
    this.onActivation?.(a.id);
    if (!this.answered.has(a.id)) {
      // Marked before the answer is awaited: a copy delivered meanwhile (the asker sent it again after a node died)
      // must find it answered, as a hub's dedupe would.
      this.answered.add(a.id);
      const answer: EbMessage<'accept_activation'> = {
        msg: 'accept_activation',
        id: a.id,
        modification_count: 0,
        heh_id: hub,
      };
      const pub = this.#pubs[g] as RecoveringChannel;
      // Sent again with the same id when unconfirmed, as a hub's outbox does: a copy is then a duplicate, not a
      // second answer.
      const answerId = randomUUID();
      for (;;) {
        try {
          await pub.basicPublish(
            `${hub}-to-${this.#vpp}`,
            `accept_activation.${hub}`,
            encode(answer),
            props(hub, 'accept_activation', answerId, m.properties.messageId),
            { mandatory: true },
          );
          break;
        } catch {
          await sleep(300);
        }
      }
    }
    m.ack();
  }

  /** Sends the next report of `count` hubs, round robin (a hub whose last report is unconfirmed sends it again). */
  tick(count: number, from: number): void {
    for (let j = 0; j < count; j++) {
      const hub = this.names[(from + j) % this.names.length] as string;
      if (this.#stopped || this.#inFlight.has(hub)) continue;
      let p = this.#pending.get(hub);
      if (p === undefined) {
        p = { seq: (this.confirmed.get(hub) ?? 0) + 1, id: randomUUID() };
        this.#pending.set(hub, p);
      } else {
        this.resends++;
      }
      const { seq, id } = p;
      this.#inFlight.add(hub);
      const pub = this.#pubs[(from + j) % this.#pubs.length] as RecoveringChannel;
      pub
        .basicPublish(`${hub}-to-${this.#vpp}`, `report.${hub}`, encode(report(hub, seq)), props(hub, 'report', id), {
          mandatory: true,
        })
        .then(
          () => {
            this.confirmed.set(hub, seq);
            this.#pending.delete(hub);
          },
          () => undefined,
        )
        .finally(() => this.#inFlight.delete(hub));
    }
  }

  stop(): void {
    this.#stopped = true;
  }

  get quiet(): boolean {
    return this.#inFlight.size === 0;
  }

  get unconfirmed(): number {
    return this.#pending.size;
  }
}
