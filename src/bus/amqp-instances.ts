/**
 * The part of the AMQP transport that only a party running as several instances uses (docs/bus.md, "Instances"):
 * opening its ledger (amqp-ledger.ts) and its shards' subscriptions (amqp-shards.ts), with deliveries that tell the
 * shard set when they are settled and record what the Connector remembers of them. A module of its own so that the
 * hub bundles, whose hub is always one process, leave it out (build/bundle.ts, amqp-instances-absent.ts).
 */
import {
  type Channel,
  ChannelError,
  type Message,
  type RecoveringChannel,
  type RecoveringConnection,
} from '../amqp/index.js';
import { instanceQueue, ledgerStream } from '../core/shard.js';
import { Ledger } from './amqp-ledger.js';
import { ShardSet } from './amqp-shards.js';
import type { Incoming } from './transport.js';

/** What the transport gives the instances' machinery. */
export interface InstancesHost {
  party: string;
  shards: number;
  tag: string | undefined;
  instance: string | undefined;
  standby: boolean;
  presenceMs: number | undefined;
  ledgerWindowMs: number | undefined;
  relayExchange: string;
  connection: RecoveringConnection;
  /** The transport's confirm channel (presence is announced on it). */
  publisher(): RecoveringChannel;
  /** A throw-away channel of the connection of the moment (a failed declaration closes it). */
  probe(): Promise<Channel>;
  incoming(m: Message): Incoming<Message>;
  refused(m: Message, size: number): Incoming<Message>;
  holding(): boolean;
  warn(what: string, fix: string): void;
}

/**
 * The ledger's stream, declared and bound to the relay exchange on a throw-away channel: one we cannot have is a
 * warning, not a failed start.
 */
export async function openLedger(host: InstancesHost): Promise<Ledger | undefined> {
  const ledger = new Ledger({
    stream: ledgerStream(host.party),
    exchange: host.relayExchange,
    connection: host.connection,
    channel: await host.connection.createChannel({ confirm: true }),
    ...(host.ledgerWindowMs === undefined ? {} : { windowMs: host.ledgerWindowMs }),
    warn: host.warn,
  });
  const declare = async (passive: boolean): Promise<void> => {
    const probe = await host.probe();
    try {
      await probe.queueDeclare(ledger.stream, passive ? { passive } : { durable: true, arguments: ledger.arguments });
      await probe.queueBind(ledger.stream, host.relayExchange, 'handled');
    } finally {
      if (probe.isOpen) await probe.close();
    }
  };
  try {
    // One that exists with other arguments (an operator's retention) is used as it is.
    await declare(false).catch((err: unknown) =>
      err instanceof ChannelError && err.replyCode === 406 ? declare(true) : Promise.reject(err),
    );
    return ledger;
  } catch (err) {
    await ledger.close().catch(() => undefined);
    host.warn(
      `declaring ${ledger.stream} failed (${err instanceof Error ? err.message : String(err)}): a copy of a message another instance handled may be handled again`,
      'ebadge provision gives a sharded party its ledger stream; streams need RabbitMQ 3.9 or later',
    );
    return undefined;
  }
}

/** The shards' subscriptions, each on a channel of its own, shared out among the instances (amqp-shards.ts). */
export function shardSetOf(
  host: InstancesHost,
  ledger: Ledger | undefined,
  onMessage: (message: Incoming<Message>) => Promise<void>,
  consume: { prefetch: number; maxMessageBytes?: number },
): ShardSet {
  return new ShardSet({
    party: host.party,
    shards: host.shards,
    tag: host.tag,
    instance: host.instance,
    standby: host.standby,
    ...(host.presenceMs === undefined ? {} : { presenceMs: host.presenceMs }),
    connection: host.connection,
    consume,
    deliver: (m, settled, k, remembered) => {
      const d = settling(host.incoming(m), settled, ledger, k);
      return onMessage(remembered === undefined ? d : { ...d, remembered });
    },
    ledger,
    oversized: (m, size) => void onMessage(host.refused(m, size)),
    holding: host.holding,
    announce: async (body, ttlMs) => {
      await host.publisher().basicPublish(host.relayExchange, 'presence', body, {
        contentType: 'application/json',
        expiration: String(ttlMs),
        deliveryMode: 1,
      });
    },
    warn: host.warn,
    alive: async (tag) => {
      // Another connection's exclusive queue: 405 RESOURCE_LOCKED while it is there, 404 once it went with its owner.
      let probe: Channel | undefined;
      try {
        probe = await host.probe();
        await probe.queueDeclare(instanceQueue(host.party, tag), { passive: true });
        return true;
      } catch (err) {
        return !(err instanceof ChannelError && err.replyCode === 404);
      } finally {
        if (probe?.isOpen === true) await probe.close().catch(() => undefined);
      }
    },
  });
}

/**
 * `d` with `settled` called once it is settled, whichever way; with a ledger, what the Connector remembers of it is
 * appended there (shard `k`) and its ack waits for that.
 */
function settling(d: Incoming<Message>, settled: () => void, ledger: Ledger | undefined, k: number): Incoming<Message> {
  let recorded: Promise<void> | undefined;
  return {
    ...d,
    ...(ledger === undefined
      ? {}
      : {
          remember: (key: string) => {
            recorded = ledger.remember(k, key);
          },
        }),
    ack: () => {
      if (recorded === undefined) {
        d.ack();
        settled();
        return;
      }
      void recorded.then(() => {
        d.ack();
        settled();
      });
    },
    retry: () => {
      d.retry();
      settled();
    },
    deadLetter: async (reason, code) => {
      try {
        return await d.deadLetter(reason, code);
      } finally {
        settled();
      }
    },
  };
}
