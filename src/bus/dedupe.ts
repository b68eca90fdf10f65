/**
 * The message ids handled recently, for dropping duplicates (RabbitMQ delivers at least once; a peer retries a
 * `msg_id` it got no response for). Bounded in count and in time: an id is remembered for the queue TTL (a copy
 * older than that has expired in the queue anyway), and beyond `capacity` the oldest is forgotten first.
 */
export class SeenIds {
  readonly #expiry = new Map<string, number>(); // insertion order = age order
  constructor(readonly capacity = 10_000, readonly ttlMs = 900_000, readonly now: () => number = Date.now) {}

  has(id: string): boolean {
    const until = this.#expiry.get(id);
    if (until === undefined) return false;
    if (until > this.now()) return true;
    this.#expiry.delete(id);
    return false;
  }

  add(id: string): void {
    this.#expiry.delete(id);
    this.#expiry.set(id, this.now() + this.ttlMs);
    while (this.#expiry.size > this.capacity) {
      const oldest = this.#expiry.keys().next().value as string;
      this.#expiry.delete(oldest);
    }
  }

  get size(): number {
    return this.#expiry.size;
  }
}
