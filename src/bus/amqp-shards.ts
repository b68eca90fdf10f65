/**
 * The inbox shards of a party that runs as several instances (docs/bus.md, "Instances"), over RabbitMQ's single
 * active consumer: every instance subscribes to every shard, each on a channel of its own, and the broker delivers a
 * shard to one subscriber at a time. On RabbitMQ before 3.13 the active one is simply the first to subscribe, so the
 * first instance would keep every shard; the instances therefore agree on who should have which shard and move
 * shards to their owners, with nothing but the broker between them:
 *
 * - Presence: each instance announces itself every `presenceMs` on the party's relay exchange (routing key
 *   `presence`, which every instance queue is bound with), and says goodbye when it stops. The live set is what was
 *   heard within three intervals.
 * - Ownership: assignShards over the live tags, the same table in every instance that hears the same set.
 * - Hand-off: an instance that gets a delivery from a shard it does not own stops handing that shard's deliveries over, waits until the ones already handed over are settled, and closes
 *   the shard's channel. The broker puts what was held back at the head of the queue and activates the next
 *   subscriber, so the shard's order survives. The instance subscribes again, at the back of the line. Cancelling
 *   instead would activate the next subscriber before the held deliveries are back: order broken
 *   (bus-inboxes.test). If the next subscriber does not own it either, it hands it on; each instance hands a shard
 *   off at most once per `5 × presenceMs`, so disagreement while the live sets differ settles by itself, and a
 *   shard whose owner is heard but not subscribed (RabbitMQ's declare-ok counts only the active consumer of such a
 *   queue, so this cannot be asked) comes back and is handled in between.
 */
import type { ConsumeOptions, Message, RecoveringChannel, RecoveringConnection } from '../amqp/index.js';
import { assignShards, shardQueue } from '../core/shard.js';
import type { Ledger } from './amqp-ledger.js';

export interface ShardSetOptions {
  party: string;
  shards: number;
  /** This instance: its tag (Transport.instanceTag) and name; without them there is no balancing. */
  tag?: string | undefined;
  instance?: string | undefined;
  /** Takes no share: announces nothing, hands every shard to the instances it hears (AmqpTransportOptions.standby). */
  standby?: boolean;
  /** How often an instance announces itself (default 2,000 ms); 0: no sharing out (the first to subscribe keeps all). */
  presenceMs?: number;
  connection: RecoveringConnection;
  consume: ConsumeOptions;
  /**
   * Hands a delivery of shard `k` to the Connector; `settled` is called once, when the Connector has settled it.
   * `remembered`: on the first delivery of a subscription, what the ledger holds for the shard.
   */
  deliver(m: Message, settled: () => void, k: number, remembered?: readonly string[]): Promise<void>;
  /** What the instances handled, read back before the first delivery of each subscription (amqp-ledger.ts). */
  ledger?: Ledger | undefined;
  oversized(m: Message, size: number): void;
  /** Whether the transport stopped consuming: deliveries are then left unsettled (Transport.stopConsuming). */
  holding(): boolean;
  /** Publishes a presence message on the relay exchange (routing key `presence`), expiring after `ttlMs`. */
  announce(body: Buffer, ttlMs: number): Promise<void>;
  warn(what: string, fix: string): void;
  /**
   * Whether the instance tagged `tag` is still connected (its exclusive instance queue exists). Its presence lasts
   * three intervals after it died: a shard is not handed to it meanwhile.
   */
  alive?(tag: string): Promise<boolean>;
  now?: () => number;
}

interface Shard {
  readonly k: number;
  readonly queue: string;
  channel: RecoveringChannel | undefined;
  /** Handed to the Connector, not settled yet. */
  unsettled: number;
  drained: (() => void) | undefined;
  /** While handing off: what the broker delivers, kept back (left unsettled) for it to take back on close. */
  held: Message[] | undefined;
  /** While the ledger is read at the start of a subscription: what the broker delivers, to be handed over after. */
  waiting: Message[] | undefined;
  /** Deliveries on the current subscription: we are, or were, the shard's active consumer. */
  delivered: number;
  /** The ledger was read for the current subscription (before its first delivery was handed over). */
  recalled: boolean;
  handedOffAt: number;
  handoffs: number;
}

/** A shard's state as an instance sees it (AmqpTransport.shardStatus). */
export interface ShardStatus {
  queue: string;
  /** The live instance (tag) that should have it. */
  owner: string | undefined;
  /** Deliveries on our current subscription: more than 0 means the broker made us its active consumer. */
  delivered: number;
  handoffs: number;
}

const PRESENCE = 'presence';

export class ShardSet {
  readonly #o: ShardSetOptions;
  readonly #shards: Shard[] = [];
  readonly #presenceMs: number;
  readonly #now: () => number;
  /** tag -> when last heard, and the instance name it came with. */
  readonly #live = new Map<string, { at: number; name: string }>();
  #owners: string[] = [];
  #ownersKey = '';
  #timer: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  constructor(o: ShardSetOptions) {
    this.#o = o;
    this.#presenceMs = o.presenceMs ?? 2_000;
    this.#now = o.now ?? Date.now;
    for (let k = 0; k < o.shards; k++) {
      this.#shards.push({
        k,
        queue: shardQueue(o.party, k),
        channel: undefined,
        unsettled: 0,
        drained: undefined,
        held: undefined,
        waiting: undefined,
        delivered: 0,
        recalled: false,
        handedOffAt: Number.NEGATIVE_INFINITY,
        handoffs: 0,
      });
    }
  }

  get balancing(): boolean {
    return this.#o.tag !== undefined && this.#presenceMs > 0;
  }

  /** Subscribes to every shard and starts announcing this instance. */
  async start(): Promise<void> {
    // After a reconnection (or a channel the broker closed and we reopened) the broker may give us shards anew, and
    // another instance may have handled them meanwhile: each subscription counts as new, so the ledger is read again.
    this.#o.connection.on('recovered', this.#renew);
    this.#o.connection.on('channel-recovered', this.#renew);
    // Subscribed before we announce ourselves: a shard handed to us must find us in its line.
    for (const s of this.#shards) await this.#subscribe(s);
    if (this.balancing && this.#o.standby !== true) {
      this.#heard(this.#o.tag as string, this.#o.instance ?? '');
      await this.#announce(false);
      this.#timer = setInterval(() => void this.#announce(false), this.#presenceMs);
      this.#timer.unref();
    }
  }

  /** A presence message from the relay exchange (ours too). */
  presence(m: Message): boolean {
    if (m.routingKey !== PRESENCE) return false;
    m.ack();
    let p: unknown;
    try {
      p = JSON.parse(m.body.toString('utf8'));
    } catch {
      return true;
    }
    if (typeof p !== 'object' || p === null) return true;
    const { tag, instance, leaving } = p as { tag?: unknown; instance?: unknown; leaving?: unknown };
    if (typeof tag !== 'string' || !/^[0-9a-f]{4}$/.test(tag) || typeof instance !== 'string') return true;
    if (leaving === true) {
      if (tag !== this.#o.tag) this.#live.delete(tag);
      return true;
    }
    if (tag === this.#o.tag && instance !== this.#o.instance) {
      this.#o.warn(
        `instances "${instance}" and "${this.#o.instance}" of ${this.#o.party} have the same tag ${tag}: answers to their requests can reach the wrong one`,
        'give one of them another instance name',
      );
    }
    this.#heard(tag, instance);
    return true;
  }

  /** Stops announcing; the others drop us at once (what we still hold goes back to the broker on close). */
  async stop(): Promise<void> {
    if (this.#timer === undefined) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#announce(true).catch(() => undefined);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#o.connection.off('recovered', this.#renew);
    this.#o.connection.off('channel-recovered', this.#renew);
    await this.stop();
    await Promise.allSettled(this.#shards.map((s) => s.channel?.close()));
  }

  status(): ShardStatus[] {
    const owners = this.#ownerTable();
    return this.#shards.map((s) => ({
      queue: s.queue,
      owner: owners[s.k],
      delivered: s.delivered,
      handoffs: s.handoffs,
    }));
  }

  readonly #renew = (): void => {
    for (const s of this.#shards) {
      s.delivered = 0;
      s.recalled = false;
    }
  };

  #heard(tag: string, name: string): void {
    this.#live.set(tag, { at: this.#now(), name });
  }

  #ownerTable(): string[] {
    const fresh = this.#now() - 3 * this.#presenceMs;
    const tags: string[] = [];
    for (const [tag, seen] of this.#live) {
      if (seen.at >= fresh || tag === this.#o.tag) tags.push(tag);
      else this.#live.delete(tag);
    }
    tags.sort();
    const key = tags.join(',');
    if (key !== this.#ownersKey) {
      this.#owners = tags.length === 0 ? [] : assignShards(this.#o.shards, tags);
      this.#ownersKey = key;
    }
    return this.#owners;
  }

  async #announce(leaving: boolean): Promise<void> {
    const body = Buffer.from(JSON.stringify({ tag: this.#o.tag, instance: this.#o.instance, leaving }));
    try {
      await this.#o.announce(body, 3 * this.#presenceMs);
    } catch {
      // Not connected right now: the next interval tries again, and the others keep us for three.
    }
  }

  async #subscribe(s: Shard): Promise<void> {
    const ch = await this.#o.connection.createChannel({ confirm: false });
    ch.on('oversized', (m, size) => this.#o.oversized(m, size));
    s.channel = ch;
    s.delivered = 0;
    s.recalled = false;
    try {
      await ch.basicConsume(s.queue, (m) => this.#delivered(s, ch, m), this.#o.consume);
    } catch (err) {
      s.channel = undefined;
      await ch.close().catch(() => undefined);
      throw err;
    }
  }

  #delivered(s: Shard, ch: RecoveringChannel, m: Message): Promise<void> {
    if (this.#o.holding() || s.channel !== ch) return Promise.resolve();
    if (s.held !== undefined) {
      s.held.push(m);
      return Promise.resolve();
    }
    if (s.waiting !== undefined) {
      s.waiting.push(m);
      return Promise.resolve();
    }
    s.delivered++;
    if (this.#shouldHandOff(s)) {
      s.held = [m];
      void this.#handOff(s, ch);
      return Promise.resolve();
    }
    return this.#handOver(s, ch, [m]);
  }

  /**
   * Hands `ms` to the Connector, in order. The first time on a subscription (we were just given the shard), what
   * the instance before us handled is read from the ledger first, and what the broker delivers meanwhile waits.
   */
  #handOver(s: Shard, ch: RecoveringChannel, ms: Message[]): Promise<void> {
    if (!s.recalled && this.#o.ledger !== undefined) {
      s.recalled = true;
      s.waiting = ms;
      void this.#recall(s, ch, this.#o.ledger);
      return Promise.resolve();
    }
    s.recalled = true;
    if (ms.length === 1) return this.#deliver(s, ms[0] as Message);
    for (const m of ms) void this.#deliver(s, m);
    return Promise.resolve();
  }

  async #recall(s: Shard, ch: RecoveringChannel, ledger: Ledger): Promise<void> {
    const keys = await ledger.recall(s.k);
    const waiting = s.waiting ?? [];
    s.waiting = undefined;
    if (s.channel !== ch || this.#o.holding()) return;
    waiting.forEach((m, i) => void this.#deliver(s, m, i === 0 ? keys : undefined));
  }

  #deliver(s: Shard, m: Message, remembered?: readonly string[]): Promise<void> {
    s.unsettled++;
    let done = false;
    const settled = (): void => {
      if (done) return;
      done = true;
      if (--s.unsettled === 0) s.drained?.();
    };
    return this.#o.deliver(m, settled, s.k, remembered);
  }

  #shouldHandOff(s: Shard): boolean {
    if (!this.balancing || this.#closed) return false;
    if (this.#now() - s.handedOffAt < 5 * this.#presenceMs) return false;
    const owner = this.#ownerTable()[s.k];
    return owner !== undefined && owner !== this.#o.tag;
  }

  async #handOff(s: Shard, ch: RecoveringChannel): Promise<void> {
    s.handedOffAt = this.#now();
    let closing = false;
    try {
      const owner = this.#ownerTable()[s.k];
      if (owner !== undefined && this.#o.alive !== undefined && !(await this.#o.alive(owner))) {
        this.#live.delete(owner);
        throw new Error(`instance ${owner} is gone`);
      }
      if (s.unsettled > 0) {
        const drained = new Promise<void>((resolve) => {
          s.drained = resolve;
        });
        let timer: ReturnType<typeof setTimeout> | undefined;
        const timeout = new Promise<never>((_r, reject) => {
          timer = setTimeout(() => reject(new Error('deliveries still unsettled')), 10 * this.#presenceMs);
        });
        await Promise.race([drained, timeout]).finally(() => clearTimeout(timer));
      }
      closing = true;
      await ch.close();
    } catch {
      s.drained = undefined;
      if (!closing) {
        // We keep the shard (its owner is gone, say: a kill -9): what was held back is handed over, in the order it
        // came, after the ledger if this subscription has not read it yet.
        const held = s.held ?? [];
        s.held = undefined;
        if (s.channel === ch) void this.#handOver(s, ch, held);
        return;
      }
    }
    s.drained = undefined;
    s.held = undefined;
    s.handoffs++;
    await this.#resubscribe(s);
  }

  /** Back in the line of the shard's subscribers; tried again until it works or we close. */
  async #resubscribe(s: Shard): Promise<void> {
    for (let attempt = 0; !this.#closed; attempt++) {
      try {
        await this.#subscribe(s);
        return;
      } catch {
        await new Promise((r) => setTimeout(r, Math.min(30_000, this.#presenceMs * 2 ** attempt)).unref());
      }
    }
  }
}
