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

/**
 * The stream in which the instances of a sharded party record what they handled (src/bus/amqp-ledger.ts), and its
 * arguments: kept for two read windows, in segments small enough to be dropped at that pace.
 */
export function ledgerStream(party: string): string {
  return `private-${party}-handled`;
}

export function ledgerArguments(windowMs = 300_000): Record<string, string | number> {
  return {
    'x-queue-type': 'stream',
    'x-max-age': `${Math.ceil((2 * windowMs) / 1000)}s`,
    'x-stream-max-segment-size-bytes': 4_000_000,
  };
}

/**
 * The tag of an instance of a party (docs/bus.md, "Instances"): 4 hex digits of FNV-1a of its name, written into the
 * ids of its requests and naming its queue.
 */
export function instanceTag(instance: string): string {
  return (shardOf(instance, 0x10000) + 0x10000).toString(16).slice(1);
}

/** The exchange through which the instances of `party` hand each other answers and announce themselves. */
export function relayExchange(party: string): string {
  return `private-${party}-relay`;
}

/** The exclusive queue of `party`'s instance tagged `tag`, bound to its relay exchange. */
export function instanceQueue(party: string, tag: string): string {
  return `private-${party}-instance:${tag}`;
}

/** Whether `queue` is one of `party`'s shards. */
export function isShardQueue(party: string, queue: string): boolean {
  return queue.startsWith(`private-${party}-shard:`);
}

/**
 * Which instance (by tag) should consume each of `shards` shards. Every (shard, instance) pair has a rank (FNV-1a of
 * `<tag>:<k>`, rendezvous hashing); pairs are taken from the highest rank down, a shard going to the first instance
 * that still has room: ⌊shards / instances⌋, or one more for the first (shards mod instances) to reach it. So no
 * instance has more than one shard above another, and an instance coming or going moves few shards besides its own.
 * Fixed by the set of tags alone (not their order), so that instances that hear the same set agree without talking.
 */
export function assignShards(shards: number, tags: readonly string[]): string[] {
  const sorted = [...new Set(tags)].sort();
  const floor = Math.floor(shards / sorted.length);
  let bigger = shards % sorted.length;
  const pairs: { k: number; tag: string; rank: number }[] = [];
  for (let k = 0; k < shards; k++) {
    for (const tag of sorted) pairs.push({ k, tag, rank: shardOf(`${tag}:${k}`, 0x100000000) });
  }
  pairs.sort((a, b) => b.rank - a.rank || a.k - b.k || (a.tag < b.tag ? -1 : 1));
  const load = new Map<string, number>();
  const owners: string[] = new Array(shards);
  let left = shards;
  for (const { k, tag } of pairs) {
    if (left === 0) break;
    if (owners[k] !== undefined) continue;
    const n = load.get(tag) ?? 0;
    if (n < floor || (n === floor && bigger > 0)) {
      if (n === floor) bigger--;
      load.set(tag, n + 1);
      owners[k] = tag;
      left--;
    }
  }
  return owners;
}
