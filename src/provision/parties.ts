/**
 * The parties file: who is on the bus (hubs, aggregators, DSOs, a TSO, a market, operators), who talks to whom, what
 * each may send, and how each logs in. Checked here, whole, before anything is written: a name that could not be an
 * AMQP name, or that would make two exchanges or permissions mean the same thing, is refused with a sentence naming
 * its JSON path.
 *
 * {
 *   "format": "ebadge-parties/1",
 *   "url": "amqps://broker.example:5671",        the broker, as the parties reach it (no user, no vhost)
 *   "vhost": "ebadge",                            default "ebadge"
 *   "ca": "ca.pem",                               optional: the CA file each party's config names (amqps)
 *   "deliveryLimit": 10,                          optional: deliveries of one message before it is dead-lettered
 *   "mqttUrl": "mqtt://broker.example:1883",      with MQTT parties: RabbitMQ's MQTT plugin, as they reach it
 *   "parties": [
 *     { "name": "vpp-acme", "role": "aggregator", "peers": ["heh-b827ebea02c1", "tso-north"] },
 *     { "name": "heh-b827ebea02c1", "role": "hub", "auth": "external" },
 *     { "name": "heh-b827ebea02c3", "role": "hub", "transport": "mqtt" },        through the MQTT plugin (mqtt.ts)
 *     { "name": "dso-north", "role": "dso", "peers": ["heh-b827ebea02c1"], "sends": ["load_price"] },
 *     { "name": "ops", "role": "operator", "peers": ["heh-b827ebea02c1"], "passwordFile": "secrets/ops.pw" }
 *   ]
 * }
 *
 * A link exists when either side names the other in `peers`. `sends` (a list for every peer, or an object by peer
 * name) replaces the role table (roles.ts) for that party; `response` and `key_update` are always allowed.
 */
import { SCHEMAS } from '../codec/index.js';
import { ProvisionError } from './errors.js';
import { checkMqtt, mqttOrigin, type PartyTransport } from './mqtt.js';
import { ALWAYS, ROLES, type Role, SENDS } from './roles.js';

export const PARTIES_FORMAT = 'ebadge-parties/1';
export type Auth = 'password' | 'external';

export interface Party {
  readonly name: string;
  readonly role: Role;
  /** `external`: a TLS client certificate whose CN is the name, and no password at all. */
  readonly auth: Auth;
  /** A password the operator keeps, as written in the parties file (relative to it). */
  readonly passwordFile?: string;
  /** `mqtt`: it connects to RabbitMQ's MQTT plugin (mqtt.ts); absent or `amqp`: D3.2.3 over AMQP. */
  readonly transport?: PartyTransport;
  /**
   * Its inbox spread over this many shards `private-<me>-shard:<k>` (docs/bus.md, "Fairness"), for a party with many
   * peers: one peer's flood delays only its shard, and several instances of the party share them.
   */
  readonly shards?: number;
  /** Everyone it exchanges messages with, sorted. */
  readonly peers: readonly string[];
  /** Per peer, the message types it may send there (sorted, `response` and `key_update` included). */
  readonly sends: ReadonlyMap<string, readonly string[]>;
}

export interface Plan {
  /** `amqp://host:port` or `amqps://host:port`, without user, vhost or query. */
  readonly url: string;
  /** The MQTT plugin's URL, when a party is on MQTT (mqtt.ts). */
  readonly mqttUrl?: string;
  readonly vhost: string;
  readonly ca?: string;
  readonly deliveryLimit: number;
  /** In the file's order. */
  readonly parties: readonly Party[];
}

/** Letters, digits, `.`, `_`, `-`, starting with a letter or digit: what the bus accepts as an entity name. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
/** `<a>-to-<b>` and `private-<a>-dead` must stay within AMQP's 255-byte names. */
const NAME_MAX = 100;
const TYPE = /^[A-Za-z][A-Za-z0-9_]*$/;
const KNOWN_TYPES: ReadonlySet<string> = new Set([...Object.keys(SCHEMAS), ...ALWAYS]);
const TOP_KEYS = ['format', 'url', 'mqttUrl', 'vhost', 'ca', 'deliveryLimit', 'parties'];
const PARTY_KEYS = ['name', 'role', 'peers', 'sends', 'auth', 'passwordFile', 'transport', 'shards'];
/** The roles a hub's own configuration (src/device/config) accepts for its peers. */
const HUB_PEER_ROLES: readonly Role[] = ['aggregator', 'dso', 'tso', 'operator'];

class Reader {
  constructor(readonly file: string) {}

  fail(path: string, sentence: string): never {
    throw new ProvisionError('PARTIES', `${this.file}: ${path}: ${sentence}`, path);
  }

  object(v: unknown, path: string, keys: readonly string[]): Record<string, unknown> {
    if (v === null || typeof v !== 'object' || Array.isArray(v))
      this.fail(path, `expected an object, found ${kind(v)}`);
    for (const k of Object.keys(v)) {
      if (!keys.includes(k)) this.fail(`${path}.${k}`, `unknown key ${JSON.stringify(k)} (known: ${keys.join(', ')})`);
    }
    return v as Record<string, unknown>;
  }

  string(v: unknown, path: string, what = 'a string'): string {
    if (typeof v !== 'string' || v === '') this.fail(path, `expected ${what}, found ${kind(v)}`);
    // A control character in a name or path is a copy-paste accident, and prints as something else.
    if (/\p{Cc}/u.test(v)) this.fail(path, `expected ${what} without control characters`);
    return v;
  }

  array(v: unknown, path: string, what: string): unknown[] {
    if (!Array.isArray(v)) this.fail(path, `expected ${what}, found ${kind(v)}`);
    return v;
  }
}

function kind(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return v === '' ? 'an empty string' : JSON.stringify(v.slice(0, 60));
  return typeof v === 'object' ? 'an object' : `${typeof v} ${String(v)}`;
}

/** Checks a parsed parties file and works out every party's peers and message types; `file` names it in errors. */
export function parseParties(value: unknown, file = 'parties.json'): Plan {
  const r = new Reader(file);
  const o = r.object(value, '$', TOP_KEYS);
  if (o['format'] !== PARTIES_FORMAT) r.fail('$.format', `expected "${PARTIES_FORMAT}", found ${kind(o['format'])}`);
  const url = parseUrl(r, o['url']);
  const vhost = o['vhost'] === undefined ? 'ebadge' : r.string(o['vhost'], '$.vhost', 'a vhost name');
  if (vhost.length > 255) r.fail('$.vhost', 'expected a vhost name of at most 255 characters');
  const ca = o['ca'] === undefined ? undefined : r.string(o['ca'], '$.ca', 'the CA file name for the configs');
  // The bus asks for 10 when it declares an inbox (src/bus/amqp-transport.ts) and reports one with another limit.
  const limit = o['deliveryLimit'] ?? 10;
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > 1000)
    r.fail('$.deliveryLimit', `expected an integer from 1 to 1000, found ${kind(limit)}`);
  const specs = r.array(o['parties'], '$.parties', 'an array of parties');
  if (specs.length === 0) r.fail('$.parties', 'expected at least one party');

  const secure = url.startsWith('amqps:');
  const parsed = specs.map((s, i) => parseParty(r, s, `$.parties[${i}]`, secure));
  const byName = new Map<string, { index: number; role: Role }>();
  const folded = new Map<string, number>();
  parsed.forEach((p, i) => {
    // RabbitMQ's names are case-sensitive, people's reading of them is not.
    const other = folded.get(p.name.toLowerCase());
    if (other !== undefined)
      r.fail(
        `$.parties[${i}].name`,
        `"${p.name}" is already the name of $.parties[${other}] (or differs only in case)`,
      );
    folded.set(p.name.toLowerCase(), i);
    byName.set(p.name, { index: i, role: p.role });
  });

  // Links are undirected: where each was first named, for the error about it.
  const links = new Map<string, string>();
  const peersOf = new Map<string, Set<string>>(parsed.map((p) => [p.name, new Set<string>()]));
  parsed.forEach((p, i) => {
    p.peers.forEach((q, j) => {
      const at = `$.parties[${i}].peers[${j}]`;
      if (!byName.has(q)) r.fail(at, `"${q}" is not the name of a party in this file`);
      if (q === p.name) r.fail(at, `"${q}" is the party itself`);
      if (p.peers.indexOf(q) !== j) r.fail(at, `"${q}" is named twice`);
      peersOf.get(p.name)?.add(q);
      peersOf.get(q)?.add(p.name);
      const key = [p.name, q].sort().join('\n');
      if (!links.has(key)) links.set(key, at);
    });
    for (const [q, [, path]] of p.sendsTo) {
      if (!p.peers.includes(q) && !parsed.some((x) => x.name === q && x.peers.includes(p.name)))
        r.fail(path, `"${q}" is not a peer of "${p.name}" (name it in peers)`);
    }
  });

  const parties: Party[] = parsed.map((p) => {
    const peers = [...(peersOf.get(p.name) ?? [])].sort();
    const sends = new Map<string, readonly string[]>();
    for (const q of peers) {
      const role = (byName.get(q) as { role: Role }).role;
      const own = p.sendsTo.get(q)?.[0] ?? p.sendsAll ?? SENDS[p.role][role] ?? [];
      sends.set(q, [...new Set([...own, ...ALWAYS])].sort());
    }
    return {
      name: p.name,
      role: p.role,
      auth: p.auth,
      ...(p.passwordFile === undefined ? {} : { passwordFile: p.passwordFile }),
      ...(p.transport === 'mqtt' ? { transport: p.transport } : {}),
      ...(p.shards === undefined ? {} : { shards: p.shards }),
      peers,
      sends,
    };
  });

  const party = new Map(parties.map((p) => [p.name, p]));
  for (const [key, at] of links) {
    const [a, b] = key.split('\n') as [string, string];
    const pa = party.get(a) as Party;
    const pb = party.get(b) as Party;
    const says = (x: Party, y: Party): boolean =>
      (x.sends.get(y.name) ?? []).some((t) => !(ALWAYS as readonly string[]).includes(t));
    if (!says(pa, pb) && !says(pb, pa)) {
      r.fail(
        at,
        `${pa.role} "${a}" and ${pb.role} "${b}" have no message type to send each other (the data model has none ` +
          `from a ${pa.role} to a ${pb.role} or back): give "sends" to one of them, or remove the link`,
      );
    }
    for (const [hub, other] of [
      [pa, pb],
      [pb, pa],
    ] as const) {
      if (hub.role === 'hub' && !HUB_PEER_ROLES.includes(other.role))
        r.fail(
          at,
          `hub "${hub.name}" cannot have the ${other.role} "${other.name}" as a peer: a hub's configuration knows ` +
            `peers of the roles ${HUB_PEER_ROLES.join(', ')}`,
        );
    }
  }
  const plan: Plan = { url, vhost, ...(ca === undefined ? {} : { ca }), deliveryLimit: limit as number, parties };
  checkMqtt(plan, o['mqttUrl'], (at, sentence) => r.fail(at, sentence));
  return o['mqttUrl'] === undefined ? plan : { ...plan, mqttUrl: mqttOrigin(o['mqttUrl'] as string) };
}

interface ParsedParty {
  name: string;
  role: Role;
  auth: Auth;
  passwordFile?: string;
  transport: PartyTransport;
  shards?: number;
  peers: string[];
  sendsAll?: string[];
  /** Peer → [types, the JSON path of the entry]. */
  sendsTo: Map<string, [string[], string]>;
}

function parseParty(r: Reader, v: unknown, at: string, secure: boolean): ParsedParty {
  const o = r.object(v, at, PARTY_KEYS);
  const name = partyName(r, o['name'], `${at}.name`);
  const role = o['role'];
  if (typeof role !== 'string' || !(ROLES as readonly string[]).includes(role))
    r.fail(`${at}.role`, `expected one of ${ROLES.join(', ')}, found ${kind(role)}`);
  const auth = o['auth'] ?? 'password';
  if (auth !== 'password' && auth !== 'external')
    r.fail(`${at}.auth`, `expected "password" or "external", found ${kind(auth)}`);
  if (auth === 'external' && !secure)
    r.fail(`${at}.auth`, '"external" logs in with a TLS client certificate: the url must be amqps://');
  const transport = o['transport'] ?? 'amqp';
  if (transport !== 'amqp' && transport !== 'mqtt')
    r.fail(`${at}.transport`, `expected "amqp" or "mqtt", found ${kind(transport)}`);
  const p: ParsedParty = { name, role: role as Role, auth, transport, peers: [], sendsTo: new Map() };
  if (o['shards'] !== undefined) {
    const k = o['shards'];
    if (typeof k !== 'number' || !Number.isInteger(k) || k < 1 || k > 1024)
      r.fail(`${at}.shards`, `expected an integer from 1 to 1024, found ${kind(k)}`);
    if (role === 'hub')
      r.fail(`${at}.shards`, 'a hub has one inbox per peer already (its few peers); shards are for a party with many');
    if (transport === 'mqtt') r.fail(`${at}.shards`, 'an MQTT party has no inbox queue of its own to shard');
    p.shards = k as number;
  }
  if (o['passwordFile'] !== undefined) {
    if (auth === 'external') r.fail(`${at}.passwordFile`, 'a party with auth "external" has no password');
    p.passwordFile = r.string(o['passwordFile'], `${at}.passwordFile`, 'a file name');
  }
  if (o['peers'] !== undefined)
    p.peers = r
      .array(o['peers'], `${at}.peers`, 'an array of party names')
      .map((q, j) => r.string(q, `${at}.peers[${j}]`, 'a party name'));
  const sends = o['sends'];
  if (Array.isArray(sends)) p.sendsAll = types(r, sends, `${at}.sends`);
  else if (sends !== undefined) {
    if (sends === null || typeof sends !== 'object')
      r.fail(`${at}.sends`, `expected an array of message types, or an object of them by peer, found ${kind(sends)}`);
    const byPeer = sends as Record<string, unknown>;
    for (const [q, list] of Object.entries(byPeer))
      p.sendsTo.set(q, [types(r, list, `${at}.sends.${q}`), `${at}.sends.${q}`]);
  }
  return p;
}

function partyName(r: Reader, v: unknown, at: string): string {
  const name = r.string(v, at, 'a party name');
  const refuse = (why: string): never => r.fail(at, `"${name}" cannot be a party name: ${why}`);
  if (!NAME.test(name)) refuse('it may hold letters, digits, ".", "_" and "-", and starts with a letter or digit');
  if (name.length > NAME_MAX) refuse(`it is longer than ${NAME_MAX} characters`);
  // `a-to-b` + `c` and `a` + `b-to-c` would share the exchange `a-to-b-to-c`.
  if (name.split('-').some((w) => w.toLowerCase() === 'to'))
    refuse('the word "to" between dashes would make the exchange names <sender>-to-<receiver> ambiguous');
  if (name.toLowerCase().startsWith('amq.')) refuse('RabbitMQ reserves the names starting with "amq."');
  if (name === 'guest') refuse('provisioning disables the broker\'s "guest" account');
  return name;
}

function types(r: Reader, v: unknown, at: string): string[] {
  return r.array(v, at, 'an array of message types').map((t, i) => {
    const type = r.string(t, `${at}[${i}]`, 'a message type');
    if (!TYPE.test(type) || !(KNOWN_TYPES.has(type) || type.startsWith('ext_')))
      r.fail(`${at}[${i}]`, `"${type}" is not a message type of the data model (nor an ext_ extension)`);
    return type;
  });
}

function parseUrl(r: Reader, v: unknown): string {
  const text = r.string(v, '$.url', 'the broker URL (amqps://host:port)');
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return r.fail('$.url', 'expected an amqp:// or amqps:// URL');
  }
  if (u.protocol !== 'amqp:' && u.protocol !== 'amqps:') r.fail('$.url', 'expected an amqp:// or amqps:// URL');
  // Never quoted back: it could hold a password.
  if (u.username !== '' || u.password !== '')
    r.fail('$.url', 'expected no user or password in the URL: each party logs in as itself');
  if (u.pathname !== '' && u.pathname !== '/') r.fail('$.url', 'expected no vhost in the URL: give it as "vhost"');
  if (u.search !== '' || u.hash !== '' || text.includes('?') || text.includes('#'))
    r.fail('$.url', 'expected a URL without a query or fragment');
  if (u.hostname === '') r.fail('$.url', 'expected a URL with a host');
  return `${u.protocol}//${u.host}`;
}
