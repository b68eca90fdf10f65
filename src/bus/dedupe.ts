/**
 * The message ids handled recently, for dropping duplicates (RabbitMQ delivers at least once; a peer retries a
 * `msg_id` it got no response for). Bounded in count and in time, in O(1) per message: ids go into the current
 * generation; when it is full or older than the TTL, it becomes the previous one and the older generation is
 * dropped whole. An id is remembered for between half and all of `capacity`, and for at least the TTL unless the
 * capacity runs out first. (Evicting one Map entry at a time from the front was 22% of an aggregator's CPU: a
 * Map iterator walks over every deleted slot.)
 */
export class SeenIds {
  #current = new Set<string>();
  #previous = new Set<string>();
  #currentSince: number;

  constructor(
    readonly capacity = 10_000,
    readonly ttlMs = 900_000,
    readonly now: () => number = Date.now,
  ) {
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
