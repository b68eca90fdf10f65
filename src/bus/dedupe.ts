/**
 * The message ids handled recently, for dropping duplicates (RabbitMQ delivers at least once; a peer retries a
 * `msg_id` it got no response for). Bounded in count and in time, in O(1) per message: ids go into the current
 * generation; when it is full or older than the TTL, it becomes the previous one and the older generation is
 * dropped whole. An id is remembered for between half and all of `capacity`, and for at least the TTL unless the
 * capacity runs out first. (Evicting one Map entry at a time from the front was 22% of an aggregator's CPU: a
 * Map iterator walks over every deleted slot.)
 *
 * Per sender: a key is `<sender>:<id>...` (entity names hold no ":"), and each sender has `capacity` of its own, so
 * that one peer sending thousands of distinct messages cannot push another's ids out of memory and have that peer's
 * retry handled twice (12,000 reports from one hub in 5 s did, with one set for all). All senders together hold at
 * most 8 x `capacity`: past it, the sender holding the most loses its older generation.
 */
/** One sender's ids, in two generations (the design above). */
class Generations {
  #current = new Set<string>();
  #previous = new Set<string>();
  #currentSince: number;

  declare readonly capacity: number;
  declare readonly ttlMs: number;
  declare readonly now: () => number;
  constructor(capacity = 10_000, ttlMs = 900_000, now: () => number = Date.now) {
    this.capacity = capacity;
    this.ttlMs = ttlMs;
    this.now = now;
    this.#currentSince = now();
  }

  has(id: string): boolean {
    this.#age();
    return this.#current.has(id) || this.#previous.has(id);
  }

  add(id: string): void {
    this.#age();
    this.#current.add(id);
    if (this.#current.size >= Math.ceil(this.capacity / 2)) this.#rotate();
  }

  get size(): number {
    return this.#current.size + this.#previous.size;
  }

  /** Drops the older generation: what is needed when all senders together hold too much. */
  shed(): void {
    this.#rotate();
    this.#previous = new Set();
  }

  /** The current generation becomes the previous one after the TTL; a generation closed a TTL ago is dropped. */
  #age(): void {
    const t = this.now();
    const since = this.#currentSince;
    if (t - since < this.ttlMs) return;
    this.#rotate();
    // Everything in the generation just closed was added before `since`: all of it is stale after 2 TTLs.
    if (t - since >= 2 * this.ttlMs) this.#previous = new Set();
  }

  #rotate(): void {
    this.#previous = this.#current;
    this.#current = new Set();
    this.#currentSince = this.now();
  }
}

export class SeenIds {
  readonly #by = new Map<string, Generations>();
  #total = 0;

  declare readonly capacity: number;
  declare readonly ttlMs: number;
  declare readonly now: () => number;
  constructor(capacity = 10_000, ttlMs = 900_000, now: () => number = Date.now) {
    this.capacity = capacity;
    this.ttlMs = ttlMs;
    this.now = now;
  }

  has(id: string): boolean {
    return this.#by.get(senderOf(id))?.has(id) ?? false;
  }

  add(id: string): void {
    const sender = senderOf(id);
    let g = this.#by.get(sender);
    if (g === undefined) {
      g = new Generations(this.capacity, this.ttlMs, this.now);
      this.#by.set(sender, g);
    }
    const before = g.size;
    g.add(id);
    this.#total += g.size - before;
    if (this.#total > 8 * this.capacity) this.#shed();
  }

  /** Ids held, all senders together. */
  get size(): number {
    let n = 0;
    for (const g of this.#by.values()) n += g.size;
    return n;
  }

  #shed(): void {
    let most: Generations | undefined;
    let total = 0;
    for (const g of this.#by.values()) {
      total += g.size; // recounted: generations also age on their own
      if (most === undefined || g.size > most.size) most = g;
    }
    this.#total = total;
    if (most === undefined || total <= 8 * this.capacity) return;
    this.#total -= most.size;
    most.shed();
    this.#total += most.size;
  }
}

function senderOf(id: string): string {
  const colon = id.indexOf(':');
  return colon < 0 ? '' : id.slice(0, colon);
}

/**
 * A Map that forgets its oldest entry past `capacity`: for what is kept per message but need not be kept long (the
 * failures of a message a broker does not count, an answer owed to a message's next copy). Rare, so evicting one
 * entry at a time from the front costs nothing here (see SeenIds for where it did).
 */
export class Recent<V> extends Map<string, V> {
  declare readonly capacity: number;
  constructor(capacity: number) {
    super();
    this.capacity = capacity;
  }

  /** Sets `key` as the newest entry. */
  put(key: string, value: V): void {
    this.delete(key);
    this.set(key, value);
    if (this.size > this.capacity) this.delete(this.keys().next().value as string);
  }

  /** The value of `key`, forgotten here. */
  take(key: string): V | undefined {
    const v = this.get(key);
    this.delete(key);
    return v;
  }
}
