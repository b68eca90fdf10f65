/**
 * What the instances of a sharded party handled, kept in the broker (docs/bus.md, "Instances"): a stream
 * `private-<me>-handled` to which each instance appends the dedupe keys (`<sender>:<message id>`) of the messages it
 * handled, shard by shard, before it acks them. An instance that takes a shard over (a failover, a hand-off, a
 * restart) reads the stream back before it handles that shard's first delivery, so that a copy of a message another
 * instance handled (redelivered because that one died before its ack arrived, or published twice by a hub that
 * never got its confirm) is recognised as a duplicate there too.
 *
 * The read begins `windowMs` back (by the stream's timestamps) and ends at a marker the reader appends first: every
 * record the previous owner's broker confirmed before we were given the shard is before the marker. Records are
 * batched (one stream message per tick and shard), and an ack waits for its record's confirm. The stream keeps
 * twice the window (`x-max-age`) in small segments, so what is read at a takeover stays about one window of
 * traffic. If the ledger cannot be written or read (a permission, a broker that has no streams) messages are
 * handled and acked as without it, and `warn` says so once.
 */
import { randomUUID } from 'node:crypto';
import type { Message, RecoveringChannel, RecoveringConnection } from '../amqp/index.js';
import { ledgerArguments } from '../core/shard.js';

export interface LedgerOptions {
  stream: string;
  /** Where records are published, bound to the stream with the routing key `handled`: the party's relay exchange (a
   * provisioned party may not publish to the default exchange). */
  exchange: string;
  connection: RecoveringConnection;
  /** A confirm channel of the ledger's own: a refused append closes no other publisher's channel. */
  channel: RecoveringChannel;
  /** How far back a takeover reads (default 5 minutes). */
  windowMs?: number;
  warn(what: string, fix: string): void;
  now?: () => number;
}

interface Batch {
  keys: string[];
  done: Promise<void>;
}

/** How long a takeover waits for its read before it goes on without. */
const READ_TIMEOUT_MS = 10_000;

export class Ledger {
  readonly #o: LedgerOptions;
  readonly #now: () => number;
  readonly #windowMs: number;
  /** Keys waiting to be appended, by shard; flushed at the next tick. */
  readonly #pending = new Map<number, Batch>();
  /** A read asked for in this tick, not started yet: the shards taken over together share it. */
  #next: Promise<Map<number, string[]>> | undefined;
  #warned = false;

  get stream(): string {
    return this.#o.stream;
  }

  async close(): Promise<void> {
    await this.#o.channel.close();
  }

  constructor(o: LedgerOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.#windowMs = o.windowMs ?? 300_000;
  }

  get arguments(): Record<string, string | number> {
    return ledgerArguments(this.#windowMs);
  }

  /** Appends `key` (handled on `shard`); resolves once the broker has it (or the ledger failed, said once). */
  remember(shard: number, key: string): Promise<void> {
    let batch = this.#pending.get(shard);
    if (batch === undefined) {
      let flush!: () => void;
      const keys: string[] = [];
      const done = new Promise<void>((resolve) => {
        flush = () => {
          this.#pending.delete(shard);
          this.#append({ s: shard, k: keys }).then(resolve, (err: unknown) => {
            this.#failed(`appending to ${this.#o.stream}`, err);
            resolve();
          });
        };
      });
      batch = { keys, done };
      this.#pending.set(shard, batch);
      setImmediate(flush);
    }
    batch.keys.push(key);
    return batch.done;
  }

  /**
   * The keys handled on `shard` within the window, as the stream holds them once we have been given the shard. The
   * read starts at the next tick, after every shard given to us in this one (an instance's start, a failover) has
   * asked: one read for all of them, begun after each one's first delivery, so it has what their previous owners had
   * recorded.
   */
  async recall(shard: number): Promise<string[]> {
    if (this.#next === undefined) {
      this.#next = new Promise((resolve, reject) =>
        setImmediate(() => {
          this.#next = undefined;
          this.#readAll(this.#now()).then(resolve, reject);
        }),
      );
    }
    try {
      return (await this.#next).get(shard) ?? [];
    } catch (err) {
      this.#failed(`reading ${this.#o.stream}`, err);
      return [];
    }
  }

  async #append(record: object): Promise<void> {
    await this.#o.channel.basicPublish(this.#o.exchange, 'handled', Buffer.from(JSON.stringify(record)), {
      contentType: 'application/json',
      deliveryMode: 2,
      timestamp: new Date(this.#now()),
    });
  }

  async #readAll(startedAt: number): Promise<Map<number, string[]>> {
    const marker = randomUUID();
    await this.#append({ m: marker });
    const keys = new Map<number, string[]>();
    const ch = await this.#o.connection.createChannel({ confirm: false });
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        timer = setTimeout(
          () => reject(new Error(`the marker was not read back within ${READ_TIMEOUT_MS} ms`)),
          READ_TIMEOUT_MS,
        );
        const consumed = ch.basicConsume(
          this.#o.stream,
          (m: Message) => {
            m.ack();
            const r = parse(m.body);
            if (r?.m === marker) resolve();
            else if (r !== undefined && typeof r.s === 'number' && Array.isArray(r.k)) {
              const list = keys.get(r.s) ?? [];
              for (const k of r.k) if (typeof k === 'string') list.push(k);
              keys.set(r.s, list);
            }
          },
          { prefetch: 1000, arguments: { 'x-stream-offset': new Date(startedAt - this.#windowMs) } },
        );
        consumed.catch(reject);
      });
    } finally {
      clearTimeout(timer);
      await ch.close().catch(() => undefined);
    }
    return keys;
  }

  #failed(what: string, err: unknown): void {
    // A lost connection is not the ledger's failure: the transport says so itself, and recovers.
    if (this.#warned || !this.#o.connection.isOpen) return;
    this.#warned = true;
    this.#o.warn(
      `${what} failed (${err instanceof Error ? err.message : String(err)}): a copy of a message another instance handled may be handled again`,
      `check that the party may configure, write and read ${this.#o.stream} (ebadge provision gives it) and that the broker has streams (RabbitMQ 3.9 or later)`,
    );
  }
}

function parse(body: Buffer): { m?: unknown; s?: unknown; k?: unknown } | undefined {
  try {
    const v: unknown = JSON.parse(body.toString('utf8'));
    return typeof v === 'object' && v !== null ? (v as { m?: unknown; s?: unknown; k?: unknown }) : undefined;
  } catch {
    return undefined;
  }
}
