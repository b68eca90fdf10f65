/**
 * The RabbitMQ definitions (the JSON of `rabbitmqctl export_definitions`, RabbitMQ 3.10) that give every party of a
 * plan exactly what D3.2.3 gives it and nothing more:
 *
 *  - a user per party: a SHA-256 password hash, or no password at all when it logs in with its certificate (EXTERNAL
 *    takes the user from the certificate's CN, so the user's name is the party's);
 *  - permissions as exact lists: configure only its own `private-<me>-in|dlx|dead` (and a hub's `private-<me>-in:<peer>`,
 *    one inbox per peer), write those and `<me>-to-<peer>`
 *    for its peers, read those and `<peer>-to-<me>`. D3.2.3's own patterns (`private-<me>-.*`, `<me>-to-.*`) give the
 *    party `vpp` the inbox `private-vpp-2-in` of the party `vpp-2`, and every exchange `vpp-to-X` anybody declares;
 *    the lists do not, and they make "who talks to whom" the broker's business, not each party's configuration;
 *  - topic permissions on each `<me>-to-<peer>`: the routing keys `<type>` and `<type>.<heh_id>` of the types it may
 *    send there (the broker refuses the others with 403), and no binding key at all;
 *  - the exchanges, the inboxes (quorum, 15-minute TTL, dead letters through `private-<me>-dlx` into
 *    `private-<me>-dead`, `x-delivery-limit`), their bindings, with the arguments the bus declares them with
 *    (src/bus/amqp-transport.ts; RabbitMQ refuses a declaration whose arguments differ, 406, and the bus reports an
 *    inbox whose limit is not the one it asks for, 10 by default);
 *  - a policy with the same delivery limit: an import leaves a queue that exists as it is, and an inbox declared
 *    before the bus asked for a limit (none) cannot take the argument; a policy applies to it all the same, and can
 *    be changed later (where both are set, the lower applies);
 *  - the user `guest` with no password and no tags: importing definitions cannot delete a user, so this is what takes
 *    the broker's default account away (`ebadge provision --apply` deletes it as well).
 * The default exchange is nobody's: no permission names it (RabbitMQ checks it as `amq.default`).
 */
import { createHash, randomBytes } from 'node:crypto';
import { ledgerArguments, ledgerStream, relayExchange, shardOf, shardQueue } from '../core/shard.js';
import type { Plan } from './parties.js';

const HASHING = 'rabbit_password_hashing_sha256';
/** The bus's own values (src/bus/amqp-transport.ts): its inbox TTL and the length of its dead-letter queue. */
export const INBOX_TTL_MS = 900_000;
export const DEAD_LETTER_MAX = 100_000;
/** The bytes a party's dead letters may hold on the broker (the policy ebadge-dead-letters-cap): 64 MiB. */
export const DEAD_LETTER_BYTES = 64 << 20;

export interface User {
  name: string;
  password_hash: string;
  hashing_algorithm: string;
  tags: string[];
  limits: Record<string, never>;
}
export interface Permission {
  user: string;
  vhost: string;
  configure: string;
  write: string;
  read: string;
}
export interface TopicPermission {
  user: string;
  vhost: string;
  exchange: string;
  write: string;
  read: string;
}
export interface Queue {
  name: string;
  vhost: string;
  durable: true;
  auto_delete: false;
  arguments: Record<string, string | number | boolean>;
}
export interface Exchange {
  name: string;
  vhost: string;
  type: 'topic' | 'fanout' | 'direct';
  durable: true;
  auto_delete: false;
  internal: false;
  arguments: Record<string, never>;
}
export interface Binding {
  source: string;
  vhost: string;
  destination: string;
  destination_type: 'queue';
  routing_key: string;
  arguments: Record<string, never>;
}
export interface Policy {
  vhost: string;
  name: string;
  pattern: string;
  'apply-to': 'queues';
  definition: Record<string, number>;
  priority: number;
}

export interface Definitions {
  users: User[];
  vhosts: { name: string; limits: never[]; metadata: { description: string; tags: string[] } }[];
  permissions: Permission[];
  topic_permissions: TopicPermission[];
  parameters: never[];
  global_parameters: never[];
  policies: Policy[];
  queues: Queue[];
  exchanges: Exchange[];
  bindings: Binding[];
}

/** RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt ‖ SHA-256(salt ‖ UTF-8 password)), a 4-byte salt. */
export function passwordHash(password: string, salt: Uint8Array = randomBytes(4)): string {
  const hash = createHash('sha256').update(salt).update(password, 'utf8').digest();
  return Buffer.concat([salt, hash]).toString('base64');
}

/** A name as a literal inside an Erlang (PCRE) regular expression. */
export function literal(name: string): string {
  return name.replace(/[\\^$.|?*+()[\]{}]/g, '\\$&');
}

/** The names of a party's own resources: its inbox, dead-letter exchange and dead-letter queue. */
export function privateNames(name: string): { inbox: string; dlx: string; dead: string } {
  return { inbox: `private-${name}-in`, dlx: `private-${name}-dlx`, dead: `private-${name}-dead` };
}

/**
 * The queue a party's messages from `peer` wait in. A hub has one inbox per peer (hub.json's `broker.inboxes`
 * default, src/bus/amqp-transport.ts), so that one peer's flood never waits in front of another's; a party with
 * thousands of peers (an aggregator, a DSO) keeps D3.2.3's one inbox.
 */
export function inboxOf(party: { name: string; role: string; shards?: number }, peer: string): string {
  const { inbox } = privateNames(party.name);
  if (party.shards !== undefined) return shardQueue(party.name, shardOf(peer, party.shards));
  return party.role === 'hub' ? `${inbox}:${peer}` : inbox;
}

/** `^(a|b)$`, or a pattern nothing matches for an empty list. */
function exactly(alternatives: readonly string[]): string {
  return alternatives.length === 0 ? '^(?!)' : `^(${alternatives.join('|')})$`;
}

/** The routing keys of these types: `<type>` alone or followed by `.<heh_id>` (D3.2.3 §5.3.3). */
export function routingKeys(types: readonly string[]): string {
  return types.length === 0 ? '^(?!)' : `^(${types.map(literal).join('|')})(\\..+)?$`;
}

/**
 * The definitions for a plan. `passwords` holds the password of every party whose `auth` is `password` (hashed
 * here with a fresh salt, never kept).
 */
export function definitions(plan: Plan, passwords: ReadonlyMap<string, string>): Definitions {
  const vhost = plan.vhost;
  const d: Definitions = {
    users: [],
    vhosts: [{ name: vhost, limits: [], metadata: { description: 'eBADGE hub bus (ebadge provision)', tags: [] } }],
    permissions: [],
    topic_permissions: [],
    parameters: [],
    global_parameters: [],
    policies: [
      {
        vhost,
        name: 'ebadge-inbox-delivery-limit',
        pattern: '^private-.+-(in|in:.+|shard:[0-9]+)$',
        'apply-to': 'queues',
        definition: { 'delivery-limit': plan.deliveryLimit },
        priority: 0,
      },
      {
        // The dead letters are kept for an operator to read, 100,000 at most (the bus's x-max-length); a party that
        // sends garbage of the largest size would otherwise fill the broker's disk (100,000 x 1 MiB) and its disk
        // alarm block every publisher of the bus. The oldest go first.
        vhost,
        name: 'ebadge-dead-letters-cap',
        pattern: '^private-.+-dead$',
        'apply-to': 'queues',
        definition: { 'max-length-bytes': DEAD_LETTER_BYTES },
        priority: 0,
      },
    ],
    queues: [],
    exchanges: [],
    bindings: [],
  };
  const user = (name: string, hash: string): User => ({
    name,
    password_hash: hash,
    hashing_algorithm: HASHING,
    tags: [],
    limits: {},
  });
  for (const p of plan.parties) {
    let hash = '';
    if (p.auth === 'password') {
      const password = passwords.get(p.name);
      if (password === undefined || password === '') throw new Error(`no password for ${p.name}`);
      hash = passwordHash(password);
    }
    d.users.push(user(p.name, hash));

    const own = privateNames(p.name);
    // A hub's per-peer inboxes, or every shard of a sharded party (as its bus declares them, peers or not).
    const inboxes =
      p.shards === undefined
        ? [...new Set(p.peers.map((q) => inboxOf(p, q)).filter((q) => q !== own.inbox))]
        : Array.from({ length: p.shards }, (_, k) => shardQueue(p.name, k));
    // `private-<me>-` and what follows it in each of its own queues and exchanges.
    const suffixes = ['in', 'dlx', 'dead', ...inboxes.map((q) => q.slice(`private-${p.name}-`.length))];
    // A sharded party may run as several instances: their relay exchange, each one's queue and the stream of what
    // they handled (amqp-transport.ts, amqp-ledger.ts).
    const instances = p.shards === undefined ? [] : ['relay', 'instance:[0-9a-f]{4}', 'handled'];
    const mine = `private-${literal(p.name)}-(${[...suffixes.map(literal), ...instances].join('|')})`;
    const out = p.peers.map((q) => `${p.name}-to-${q}`);
    const inn = p.peers.map((q) => `${q}-to-${p.name}`);
    d.permissions.push({
      user: p.name,
      vhost,
      configure: `^${mine}$`,
      write: exactly([mine, ...out.map(literal)]),
      read: exactly([mine, ...inn.map(literal)]),
    });
    for (const q of p.peers) {
      d.topic_permissions.push({
        user: p.name,
        vhost,
        exchange: `${p.name}-to-${q}`,
        write: routingKeys(p.sends.get(q) ?? []),
        read: '^$',
      });
    }

    d.exchanges.push(...out.map((x) => exchange(x, vhost, 'topic')), exchange(own.dlx, vhost, 'fanout'));
    // A sharded party's instances: their relay exchange, through which the ledger stream is written (amqp-ledger.ts).
    const relay = relayExchange(p.name);
    if (p.shards !== undefined) d.exchanges.push(exchange(relay, vhost, 'direct'));
    const inboxArgs = {
      'x-queue-type': 'quorum',
      'x-message-ttl': INBOX_TTL_MS,
      'x-dead-letter-exchange': own.dlx,
      'x-delivery-limit': plan.deliveryLimit,
    };
    d.queues.push(
      queue(own.inbox, vhost, inboxArgs),
      // A shard has one consumer at a time, whatever the number of the party's instances (src/bus/amqp-transport.ts).
      ...inboxes.map((q) =>
        queue(q, vhost, p.shards === undefined ? inboxArgs : { ...inboxArgs, 'x-single-active-consumer': true }),
      ),
      queue(own.dead, vhost, { 'x-queue-type': 'quorum', 'x-max-length': DEAD_LETTER_MAX }),
      ...(p.shards === undefined ? [] : [queue(ledgerStream(p.name), vhost, ledgerArguments())]),
    );
    d.bindings.push(
      ...p.peers.map((q) => binding(`${q}-to-${p.name}`, inboxOf(p, q), '#', vhost)),
      binding(own.dlx, own.dead, '', vhost),
      ...(p.shards === undefined ? [] : [binding(relay, ledgerStream(p.name), 'handled', vhost)]),
    );
  }
  d.users.push(user('guest', ''));
  return d;
}

function exchange(name: string, vhost: string, type: Exchange['type']): Exchange {
  return { name, vhost, type, durable: true, auto_delete: false, internal: false, arguments: {} };
}

function queue(name: string, vhost: string, args: Record<string, string | number | boolean>): Queue {
  return { name, vhost, durable: true, auto_delete: false, arguments: args };
}

function binding(source: string, destination: string, key: string, vhost: string): Binding {
  return { source, vhost, destination, destination_type: 'queue', routing_key: key, arguments: {} };
}
