/**
 * The topology a RecoveringConnection declares again after every reconnect: the exchanges, queues and bindings
 * (queue and exchange-to-exchange) its channels declared, recorded once the broker accepted them and forgotten when
 * deleted (a deleted exchange or queue takes its bindings along). Passive declarations, the default exchange and the
 * amq.* exchanges are not recorded: they are the broker's.
 *
 * Replayed in RabbitMQ's order, on a channel of its own: exchanges, queues, then bindings (consumers follow, on their
 * channels). A declaration the broker refuses is reported and skipped; the rest goes on, on a fresh channel. A
 * server-named queue comes back with a new name: its record, its bindings and the consumers on it take the new one.
 */
import type { Channel, ExchangeOptions, QueueDeclareOk, QueueOptions } from './channel.js';
import type { Connection } from './connection.js';
import type { FieldTable } from './table.js';

export interface BindingRecord {
  exchangeToExchange: boolean;
  destination: string;
  source: string;
  routingKey: string;
  args: FieldTable;
}

interface QueueRecord {
  name: string;
  serverNamed: boolean;
  options: QueueOptions;
}

/** Hears of a declaration the broker refused, and what it was. */
type Failed = (err: Error, what: string) => void;

export class Topology {
  readonly #exchanges = new Map<string, { type: string; options: ExchangeOptions }>();
  readonly #queues = new Map<string, QueueRecord>();
  /** By bindingKey(): an aggregator records thousands, one lookup each. */
  #bindings = new Map<string, BindingRecord>();
  readonly #renamed: (from: string, to: string) => void;

  /** `renamed` learns of every server-named queue that came back with a new name. */
  constructor(renamed: (from: string, to: string) => void) {
    this.#renamed = renamed;
  }

  get empty(): boolean {
    return this.#exchanges.size + this.#queues.size + this.#bindings.size === 0;
  }

  recordExchange(name: string, type: string, options: ExchangeOptions): void {
    if (options.passive !== true && name !== '' && !name.startsWith('amq.'))
      this.#exchanges.set(name, { type, options });
  }

  recordQueue(requested: string, options: QueueOptions, ok: QueueDeclareOk): void {
    if (options.passive === true) return;
    this.#queues.set(ok.queue, { name: ok.queue, serverNamed: requested === '', options });
  }

  /** A binding made (`bind`) or removed: recorded from its parts, each caller's the same record. */
  recordBinding(
    exchangeToExchange: boolean,
    destination: string,
    source: string,
    routingKey: string,
    args: FieldTable,
    bind: boolean,
  ): void {
    const b: BindingRecord = { exchangeToExchange, destination, source, routingKey, args };
    if (bind) this.#bindings.set(bindingKey(b), b);
    else this.#bindings.delete(bindingKey(b));
  }

  forgetExchange(name: string): void {
    this.#exchanges.delete(name);
    for (const [k, b] of this.#bindings)
      if (b.source === name || (b.exchangeToExchange && b.destination === name)) this.#bindings.delete(k);
  }

  forgetQueue(name: string): void {
    this.#queues.delete(name);
    for (const [k, b] of this.#bindings) if (!b.exchangeToExchange && b.destination === name) this.#bindings.delete(k);
  }

  /**
   * Re-declares a recorded queue, then its bindings (its consumer was cancelled, or its channel re-created alone), on
   * channels of their own; its name now. A refused queue throws; a refused binding (its source exchange gone) is told
   * to `failed` and the others go on, so that the queue is still consumed.
   */
  async redeclareQueue(conn: Connection, name: string, failed: Failed): Promise<string> {
    const q = this.#queues.get(name);
    if (q === undefined) return name;
    let ch = await conn.createChannel();
    try {
      const to = await this.#declareQueue(ch, q);
      for (const b of [...this.#bindings.values()])
        if (!b.exchangeToExchange && b.destination === to) ch = await this.#bind(conn, ch, b, failed);
      return to;
    } finally {
      if (ch.isOpen) await ch.close().catch(() => undefined);
    }
  }

  /**
   * Re-declares a recorded exchange and the recorded bindings from and to it (a publish to it found it deleted), as
   * redeclareQueue does; false when it is not one of ours to declare.
   */
  async redeclareExchange(conn: Connection, name: string, failed: Failed): Promise<boolean> {
    const x = this.#exchanges.get(name);
    if (x === undefined) return false;
    let ch = await conn.createChannel();
    try {
      await ch.exchangeDeclare(name, x.type, x.options);
      for (const b of [...this.#bindings.values()])
        if (b.source === name || (b.exchangeToExchange && b.destination === name))
          ch = await this.#bind(conn, ch, b, failed);
      return true;
    } finally {
      if (ch.isOpen) await ch.close().catch(() => undefined);
    }
  }

  /** Binds again; a refusal closes `ch`: told to `failed`, and the next binding gets a fresh channel. */
  async #bind(conn: Connection, ch: Channel, b: BindingRecord, failed: Failed): Promise<Channel> {
    try {
      if (b.exchangeToExchange) await ch.exchangeBind(b.destination, b.source, b.routingKey, b.args);
      else await ch.queueBind(b.destination, b.source, b.routingKey, b.args);
      return ch;
    } catch (err) {
      if (!conn.isOpen) throw err;
      failed(err as Error, `binding ${b.source} -> ${b.destination} (${b.routingKey})`);
      return ch.isOpen ? ch : await conn.createChannel();
    }
  }

  /** Declares everything recorded on `conn`; `failed` hears of each declaration the broker refused. */
  async restore(conn: Connection, failed: (err: Error, what: string) => void): Promise<void> {
    let ch = await conn.createChannel();
    // A refused declaration closes the channel: report it, carry on with a fresh one.
    const attempt = async (what: string, fn: (c: Channel) => Promise<unknown>): Promise<void> => {
      try {
        await fn(ch);
      } catch (err) {
        if (!conn.isOpen) throw err;
        failed(err as Error, what);
        if (!ch.isOpen) ch = await conn.createChannel();
      }
    };
    for (const [name, x] of this.#exchanges)
      await attempt(`exchange ${name}`, (c) => c.exchangeDeclare(name, x.type, x.options));
    for (const q of [...this.#queues.values()]) await attempt(`queue ${q.name}`, (c) => this.#declareQueue(c, q));
    for (const b of this.#bindings.values()) {
      await attempt(`binding ${b.source} -> ${b.destination} (${b.routingKey})`, (c) =>
        b.exchangeToExchange
          ? c.exchangeBind(b.destination, b.source, b.routingKey, b.args)
          : c.queueBind(b.destination, b.source, b.routingKey, b.args),
      );
    }
    if (ch.isOpen) await ch.close();
  }

  /** Declares a recorded queue; a server-named one gets a new name, which its records and consumers take. */
  async #declareQueue(ch: Channel, q: QueueRecord): Promise<string> {
    const ok = await ch.queueDeclare(q.serverNamed ? '' : q.name, q.options);
    if (ok.queue !== q.name) {
      const from = q.name;
      this.#queues.delete(from);
      q.name = ok.queue;
      this.#queues.set(ok.queue, q);
      const renamed = new Map<string, BindingRecord>();
      for (const b of this.#bindings.values()) {
        if (!b.exchangeToExchange && b.destination === from) b.destination = ok.queue;
        renamed.set(bindingKey(b), b);
      }
      this.#bindings = renamed;
      this.#renamed(from, ok.queue);
    }
    return ok.queue;
  }
}

function bindingKey(b: BindingRecord): string {
  // Field tables may hold bigints (int64), which JSON.stringify refuses.
  return JSON.stringify([b.exchangeToExchange, b.destination, b.source, b.routingKey, b.args], (_k, v: unknown) =>
    typeof v === 'bigint' ? `${v}n` : v,
  );
}
