/**
 * Which of a party's inbox shards a peer's messages go to (docs/bus.md, "Fairness"): FNV-1a (32 bits) of the peer's
 * UTF-8 name, mod the number of shards. Fixed by the name alone, so that every instance of the party, `ebadge
 * provision` and any other client agree without talking to each other.
 */
export function shardOf(peer: string, shards: number): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(peer, 'utf8')) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h % shards;
}

/** The name of `party`'s shard `k`: `private-<party>-shard:<k>` (`:` is in no party name, so it is nobody else's). */
export function shardQueue(party: string, k: number): string {
  return `private-${party}-shard:${k}`;
}

/** Whether `queue` is one of `party`'s shards. */
export function isShardQueue(party: string, queue: string): boolean {
  return queue.startsWith(`private-${party}-shard:`);
}
