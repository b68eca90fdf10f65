/**
 * What dist/hub.js and dist/hub-mqtt.js get instead of amqp-instances.ts (build/bundle.ts): a hub is one process with
 * a few peers, and hub.json cannot ask for sharded inboxes, so the code that shares shards among the instances of a
 * party (amqp-instances.ts, amqp-shards.ts, amqp-ledger.ts: 7.3 KiB minified) would be dead weight on the Pi.
 * Reaching it anyway says why.
 */
import { fail } from './errors.js';

function absent(): never {
  fail(
    'CONFIG',
    'several instances of one party (inboxes: { shards }) are for aggregators: the hub bundle leaves them out (a hub uses per-peer inboxes)',
  );
}

export function openLedger(): never {
  return absent();
}

export function shardSetOf(): never {
  return absent();
}
