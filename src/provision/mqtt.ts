/**
 * Parties on MQTT, through RabbitMQ's MQTT plugin (issue 16, the mixed deployment; docs/bus.md, "MQTT"). A party
 * marked `"transport": "mqtt"` in the parties file connects to the plugin (`mqttUrl`, e.g. `mqtt://broker:1883`)
 * and logs in as `<vhost>:<name>` (the plugin's way of naming the vhost), with the same password. The plugin publishes
 * its messages to `amq.topic` with the topic's `/` turned into `.` (`<msg>.<me>.<peer>[.<heh_id>]`, src/mqtt/topics.ts)
 * and makes its subscription `+/+/<me>/#` a binding of its queue `mqtt-subscription-<me>qos1` to `amq.topic`.
 *
 * What an AMQP party sees stays D3.2.3's: messages from the MQTT party `m` reach it through the exchange `m-to-a`,
 * and it sends to `m` on `a-to-m`. Exchange-to-exchange bindings carry them across:
 *
 *   amq.topic  --[*.m.a.#]-->  m-to-a  --[#]-->  private-a-in          (m to a)
 *   a-to-m     --[*.a.m.#]-->  amq.topic  --[*.*.m.#]-->  m's session   (a to m: a publishes <msg>.a.m[.<heh_id>])
 *
 * RabbitMQ names, in a delivery, the exchange a message was published to (`amq.topic`), not the ones it went
 * through; the AMQP side (src/bus/mqtt-peers.ts) reads the sender from the key's second word, which the binding into
 * `m-to-a` fixed. The permissions keep their meaning:
 *  - an MQTT party may configure, write and read only its own session queue, write and read `amq.topic`, and nothing
 *    of D3.2.3's; its topic permission on `amq.topic` lets it publish `<type>.<me>.<peer>[.<heh_id>]` only for the
 *    types it may send that peer (and `dead-letter.<me>`), and bind `*.*.<me>.#` only: the broker refuses any other
 *    key (it closes the MQTT connection), so the sender level of its messages is its own name;
 *  - an AMQP party's topic permission on `a-to-m` admits `<type>.a.m[.<heh_id>]` only, and the binding out of it
 *    passes only keys naming `a` and `m`: no AMQP party writes `amq.topic` at all;
 *  - the MQTT party has no inbox, dead-letter exchange or `<me>-to-<mqtt peer>` exchange: its dead letters
 *    (`dead-letter/<me>`) are kept in `private-<me>-dead`, bound from `amq.topic` with `dead-letter.<me>`.
 * Two MQTT parties meet in `amq.topic` directly: nothing else is needed between them.
 *
 * The plugin's session queue has `x-expires` (`mqtt.subscription_ttl`, a day by default): RabbitMQ deletes it, with
 * what waited in it, when the party stays away longer (docs/bus.md).
 */
import {
  type Binding,
  type Definitions,
  literal,
  type Permission,
  privateNames,
  type TopicPermission,
} from './definitions.js';
import type { Party, Plan } from './parties.js';
import type { PartySettings } from './settings.js';

/** The plugin's exchange (`mqtt.exchange`, RabbitMQ's default). */
export const MQTT_EXCHANGE = 'amq.topic';
export type PartyTransport = 'amqp' | 'mqtt';
/** One MQTT topic level and one AMQP word (src/mqtt/topics.ts): what an MQTT party and its peers must be named. */
const LEVEL = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

/** A binding whose destination is an exchange (RabbitMQ's exchange-to-exchange bindings). */
export interface ExchangeBinding extends Omit<Binding, 'destination_type'> {
  destination_type: 'exchange';
}

/** Definitions with exchange-to-exchange bindings among the bindings. */
export interface MixedDefinitions extends Omit<Definitions, 'bindings'> {
  bindings: (Binding | ExchangeBinding)[];
}

export function isMqtt(p: Pick<Party, 'transport'>): boolean {
  return p.transport === 'mqtt';
}

/** The queue the plugin keeps an MQTT party's QoS 1 subscriptions in (its client id is the party's name). */
export function sessionQueue(name: string): string {
  return `mqtt-subscription-${name}qos1`;
}

/** The name an MQTT party logs in with: the plugin takes the vhost from before the colon. */
export function mqttUsername(plan: Pick<Plan, 'vhost'>, name: string): string {
  return `${plan.vhost}:${name}`;
}

/**
 * What a parties file must say for its MQTT parties, checked after the rest: `fail(path, sentence)` throws with the
 * JSON path. An MQTT party logs in with a password (the hub's MQTT configuration has no certificate login yet), and
 * its name and its peers' names become topic levels.
 */
export function checkMqtt(plan: Plan, mqttUrl: unknown, fail: (path: string, sentence: string) => never): void {
  const index = new Map(plan.parties.map((p, i) => [p.name, i]));
  const mqtt = plan.parties.filter(isMqtt);
  if (mqtt.length === 0) {
    if (mqttUrl !== undefined) fail('$.mqttUrl', 'no party has "transport": "mqtt"; remove mqttUrl or mark one');
    return;
  }
  if (mqttUrl === undefined)
    fail('$.mqttUrl', `expected the MQTT plugin's URL (mqtt://host:1883), since ${mqtt[0]?.name} is on MQTT`);
  checkMqttUrl(mqttUrl, fail);
  for (const p of mqtt) {
    const at = `$.parties[${index.get(p.name)}]`;
    if (p.auth === 'external')
      fail(`${at}.auth`, '"external" is not offered over MQTT yet: an MQTT party logs in with its password');
    const amqpHub = plan.parties.find((q) => q.role === 'hub' && !isMqtt(q) && q.peers.includes(p.name));
    if (amqpHub !== undefined)
      fail(
        `$.parties[${index.get(amqpHub.name)}]`,
        `the AMQP hub ${amqpHub.name} cannot have the MQTT peer ${p.name}: dist/hub.js does not reach MQTT parties; ` +
          'put the hub on MQTT too ("transport": "mqtt")',
      );
    for (const name of [p.name, ...p.peers]) {
      if (LEVEL.test(name)) continue;
      const where = `$.parties[${index.get(name)}].name`;
      fail(
        where,
        `"${name}" cannot be an MQTT topic level${name === p.name ? '' : ` (it is a peer of the MQTT party ${p.name})`}: ` +
          `RabbitMQ's MQTT plugin turns "." into "/", so names on MQTT are 1 to 64 letters, digits, "_" and "-"`,
      );
    }
  }
}

function checkMqttUrl(v: unknown, fail: (path: string, sentence: string) => never): asserts v is string {
  if (typeof v !== 'string') return fail('$.mqttUrl', 'expected an mqtt:// or mqtts:// URL');
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return fail('$.mqttUrl', 'expected an mqtt:// or mqtts:// URL');
  }
  if (u.protocol !== 'mqtt:' && u.protocol !== 'mqtts:') fail('$.mqttUrl', 'expected an mqtt:// or mqtts:// URL');
  if (u.username !== '' || u.password !== '')
    fail('$.mqttUrl', 'expected no user or password in the URL: each party logs in as itself');
  if ((u.pathname !== '' && u.pathname !== '/') || u.search !== '' || u.hash !== '' || u.hostname === '')
    fail('$.mqttUrl', 'expected mqtt://host:port, without a path, a query or a fragment');
}

/** `mqtt://host:port` of a checked mqttUrl. */
export function mqttOrigin(mqttUrl: string): string {
  const u = new URL(mqttUrl);
  return `${u.protocol}//${u.host}`;
}

/**
 * `^((a|b)\.me\.p|(c)\.me\.q)(\..+)?$`: the keys `<type>.<from>.<to>[.<heh_id>]` of each peer's types, and `extra`
 * (a literal key) beside them.
 */
function pairKeys(
  from: string,
  sends: ReadonlyMap<string, readonly string[]>,
  to: readonly string[],
  extra?: string,
): string {
  const parts = to
    .filter((q) => (sends.get(q) ?? []).length > 0)
    .map((q) => `(${(sends.get(q) ?? []).map(literal).join('|')})\\.${literal(from)}\\.${literal(q)}`);
  const keys = parts.length === 0 ? undefined : `(${parts.join('|')})(\\..+)?`;
  const all = [keys, extra === undefined ? undefined : literal(extra)].filter((x) => x !== undefined);
  return all.length === 0 ? '^(?!)' : `^(${all.join('|')})$`;
}

/**
 * The definitions for a plan with MQTT parties, from those definitions.ts made for every party as if on AMQP: each
 * MQTT party's permissions and topic permissions replaced, its inbox, dead-letter exchange and the bindings into
 * them removed, its exchanges to MQTT peers removed, and the exchange-to-exchange bindings added (see the header).
 * A plan without MQTT parties comes back unchanged.
 */
export function mqttDefinitions(plan: Plan, d: Definitions): MixedDefinitions {
  const mqtt = new Set(plan.parties.filter(isMqtt).map((p) => p.name));
  if (mqtt.size === 0) return d;
  const vhost = plan.vhost;
  const dropQueues = new Set<string>();
  const dropExchanges = new Set<string>();
  const permissions: Permission[] = [];
  const topic: TopicPermission[] = [];
  const bindings: ExchangeBinding[] = [];
  const e2e = (source: string, destination: string, key: string): ExchangeBinding => ({
    source,
    vhost,
    destination,
    destination_type: 'exchange',
    routing_key: key,
    arguments: {},
  });
  for (const p of plan.parties) {
    if (!mqtt.has(p.name)) {
      // An AMQP party: to its MQTT peers, the keys that name it and the peer, and nothing else.
      for (const q of p.peers.filter((x) => mqtt.has(x)))
        topic.push({
          user: p.name,
          vhost,
          exchange: `${p.name}-to-${q}`,
          write: pairKeys(p.name, p.sends, [q]),
          read: '^$',
        });
      continue;
    }
    const own = privateNames(p.name);
    dropQueues.add(own.inbox);
    dropExchanges.add(own.dlx);
    const session = literal(sessionQueue(p.name)).replace(/qos1$/, 'qos[01]');
    const x = literal(MQTT_EXCHANGE);
    permissions.push({
      user: p.name,
      vhost,
      configure: `^${session}$`,
      write: `^(${x}|${session})$`,
      read: `^(${x}|${session})$`,
    });
    topic.push({
      user: p.name,
      vhost,
      exchange: MQTT_EXCHANGE,
      write: pairKeys(p.name, p.sends, p.peers, `dead-letter.${p.name}`),
      read: `^\\*\\.\\*\\.${literal(p.name)}\\.#$`,
    });
    for (const q of p.peers) {
      if (mqtt.has(q)) {
        dropExchanges.add(`${p.name}-to-${q}`);
        continue;
      }
      bindings.push(
        e2e(MQTT_EXCHANGE, `${p.name}-to-${q}`, `*.${p.name}.${q}.#`),
        e2e(`${q}-to-${p.name}`, MQTT_EXCHANGE, `*.${q}.${p.name}.#`),
      );
    }
  }
  const deadBindings: Binding[] = [...mqtt].map((m) => ({
    source: MQTT_EXCHANGE,
    vhost,
    destination: privateNames(m).dead,
    destination_type: 'queue',
    routing_key: `dead-letter.${m}`,
    arguments: {},
  }));
  const replaced = (user: string): boolean => mqtt.has(user);
  // The inbox, and a per-peer inbox `private-<me>-in:<peer>` where definitions.ts makes them.
  const dropped = (queue: string): boolean => dropQueues.has(queue) || dropQueues.has(queue.replace(/:[^:]*$/, ''));
  const peerTopic = new Set(topic.filter((t) => t.exchange !== MQTT_EXCHANGE).map((t) => `${t.user}\n${t.exchange}`));
  return {
    ...d,
    permissions: [...d.permissions.filter((x) => !replaced(x.user)), ...permissions],
    topic_permissions: [
      ...d.topic_permissions.filter((t) => !replaced(t.user) && !peerTopic.has(`${t.user}\n${t.exchange}`)),
      ...topic,
    ],
    queues: d.queues.filter((q) => !dropped(q.name)),
    exchanges: d.exchanges.filter((e) => !dropExchanges.has(e.name)),
    bindings: [
      ...d.bindings.filter(
        (b) => !dropped(b.destination) && !dropExchanges.has(b.source) && !dropExchanges.has(b.destination),
      ),
      ...deadBindings,
      ...bindings,
    ],
  };
}

/**
 * An MQTT party's connection settings, from those settings.ts made for it: the plugin's URL and no exchanges to
 * check (it has none of its own); a hub's also the login `<vhost>:<name>` and no TLS settings (the MQTT hub takes
 * none yet). Others' come back unchanged: an AMQP party's program builds its bus with its MQTT peers
 * (src/bus/mqtt-peers.ts), which `ebadge`'s bus.json has no setting for yet.
 */
export function mqttSettings(plan: Plan, party: Party, s: PartySettings): PartySettings {
  if (!isMqtt(party)) return s;
  const url = mqttOrigin(plan.mqttUrl as string);
  const { declareExchanges: _declared, ...config } = s.config;
  if (s.file === 'hub.json') {
    const { tls: _tls, ...broker } = config['broker'] as Record<string, unknown>;
    return { ...s, config: { ...config, broker: { ...broker, url, username: mqttUsername(plan, party.name) } } };
  }
  const { tls: _tls, ...rest } = config;
  return { ...s, config: { ...rest, url } };
}
