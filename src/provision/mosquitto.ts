/**
 * Least privilege on a Mosquitto broker (the MQTT-only deployment, docs/bus.md "MQTT"): the same plan as the RabbitMQ
 * definitions, written as Mosquitto's `acl_file` and `password_file`. MQTT carries no sender: the transport
 * credits a message to the `<from>` level of its topic `<msg>/<from>/<to>[/<heh_id>]` (src/mqtt/topics.ts), so it is
 * the ACL that makes that level true. Each party may
 *
 *  - write `<type>/<me>/<peer>` and below, for each peer and each type it may send there (the same lists as the
 *    RabbitMQ topic permissions): never as another party, never to a non-peer, never a type it may not send;
 *  - write its dead letters, `dead-letter/<me>`;
 *  - read what is addressed to it, `+/+/<me>/#` (the transport's one subscription).
 *
 * Mosquitto denies what no line allows. A publish it denies is acknowledged and dropped under MQTT 3.1.1, refused
 * in the PUBACK (0x87) under MQTT 5; a subscription it denies is granted nothing. Parties with a certificate
 * (`auth: external`) log in with the certificate's name (`use_identity_as_username true`) and have no password
 * line. An aggregator with 5,000 hubs has about 20 lines per hub; Mosquitto reads the file at start and on SIGHUP.
 *
 * The ACL binds topics to users, not client ids, and the bus uses the entity's name as its persistent session's
 * client id: with Mosquitto's defaults any party, logged in with its own password, could connect under the hub's
 * client id and take its session over (the hub kicked again and again, what waits for it delivered to the impostor,
 * whose read ACL drops it). The listener `mosquittoConf` writes has `use_username_as_clientid true`, so a party's
 * client id is always its own name (docs/SECURITY.md).
 */
import { pbkdf2Sync, randomBytes } from 'node:crypto';
import { ProvisionError } from './errors.js';
import type { Party, Plan } from './parties.js';
import type { PartySettings } from './settings.js';

/** Mosquitto 2's own password hashing: `$7$<iterations>$<salt>$<PBKDF2-SHA512>`, base64, as mosquitto_passwd writes. */
export function mosquittoPasswordHash(password: string, salt: Buffer = randomBytes(12), iterations = 101): string {
  const hash = pbkdf2Sync(password, salt, iterations, 64, 'sha512');
  return `$7$${iterations}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

/**
 * The `acl_file`. Topic levels cannot hold `+`, `#` or `/`, and Mosquitto reads a line's topic up to its end, so
 * every name must be one topic level: src/mqtt/topics.ts's party names (letters, digits, `_`, `-`) are, and any
 * other is refused here.
 */
export function mosquittoAcl(plan: Plan): string {
  const lines = ['# ebadge provision: who may send what to whom over MQTT (src/provision/mosquitto.ts)', ''];
  for (const [i, p] of plan.parties.entries()) {
    checkLevel(p.name, `$.parties[${i}].name`);
    lines.push(`user ${p.name}`);
    for (const peer of p.peers) {
      for (const type of p.sends.get(peer) ?? []) lines.push(`topic write ${type}/${p.name}/${peer}/#`);
    }
    lines.push(`topic write dead-letter/${p.name}`, `topic read +/+/${p.name}/#`, '');
  }
  return lines.join('\n');
}

/** The `password_file`: a line per password party (`name:hash`); certificate parties have none. */
export function mosquittoPasswords(plan: Plan, passwords: ReadonlyMap<string, string>): string {
  const lines: string[] = [];
  for (const p of plan.parties) {
    if (p.auth !== 'password') continue;
    const password = passwords.get(p.name);
    if (password === undefined || password === '') throw new Error(`no password for ${p.name}`);
    lines.push(`${p.name}:${mosquittoPasswordHash(password)}`);
  }
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

const LEVEL = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

/** Every peer is a party of the plan too, so checking each party's own name covers them all. */
function checkLevel(name: string, path: string): void {
  if (!LEVEL.test(name))
    throw new ProvisionError(
      'PARTIES',
      `"${name}" cannot be an MQTT topic level in Mosquitto's ACL: a name over MQTT is 1 to 64 letters, digits, "_" ` +
        'and "-", beginning with a letter or a digit (src/mqtt/topics.ts)',
      path,
    );
}

/**
 * The Mosquitto URL the parties reach (`mqtt://host[:port]` or `mqtts://...`), checked: no user, path or query. A
 * party that logs in with its certificate needs mqtts://.
 */
export function mosquittoUrl(plan: Plan, url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ProvisionError('PARTIES', `--mosquitto ${url}: not a URL (mqtt://host:1883 or mqtts://host:8883)`);
  }
  if (!/^mqtts?:$/.test(u.protocol) || u.hostname === '' || u.username !== '' || u.password !== '')
    throw new ProvisionError('PARTIES', `--mosquitto ${url}: expected mqtt://host[:port] or mqtts://host[:port]`);
  if (!/^\/?$/.test(u.pathname) || u.search !== '' || u.hash !== '')
    throw new ProvisionError('PARTIES', `--mosquitto ${url}: no path, query or fragment (Mosquitto has no vhosts)`);
  const external = plan.parties.find((p) => p.auth === 'external');
  if (u.protocol === 'mqtt:' && external !== undefined)
    throw new ProvisionError(
      'PARTIES',
      `--mosquitto ${url}: ${external.name} logs in with its certificate ("auth": "external"), which needs mqtts://`,
    );
  const mqttParty = plan.parties.find((p) => p.transport === 'mqtt');
  if (mqttParty !== undefined)
    throw new ProvisionError(
      'PARTIES',
      `--mosquitto: ${mqttParty.name} is marked "transport": "mqtt", which is for RabbitMQ's MQTT plugin; with ` +
        'Mosquitto every party is on MQTT: remove the marks',
    );
  return `${u.protocol}//${u.host}`;
}

/**
 * `ebadge.conf`, the listener for the parties at `url` (checked by mosquittoUrl), to put in Mosquitto's `include_dir`
 * (`/etc/mosquitto/conf.d` on Debian) or append to its mosquitto.conf: the listener on the URL's port; the password
 * and ACL files at `dir` (where provision wrote them: change the paths if the broker reads copies elsewhere);
 * `allow_anonymous false`; `use_username_as_clientid true`, so that no party can take another's session by using its
 * client id; and with mqtts:, the broker's certificate, key and CA files in `dir`, put there by the operator, plus
 * for certificate parties `require_certificate true` and `use_identity_as_username true` (the client id is then the
 * certificate's name). Written after the listener line, so that it also holds with `per_listener_settings true`.
 */
export function mosquittoConf(plan: Plan, url: string, dir: string): string {
  const u = new URL(url);
  const tls = u.protocol === 'mqtts:';
  const port = u.port === '' ? (tls ? 8883 : 1883) : Number(u.port);
  const file = (name: string): string => `${dir.replace(/\/+$/, '')}/${name}`;
  const external = plan.parties.some((p) => p.auth === 'external');
  const lines = [
    `# ebadge provision: the listener of the parties at ${url} (src/provision/mosquitto.ts, docs/provisioning.md).`,
    '# Any other listener the parties can reach needs use_username_as_clientid true as well.',
    '# The files below are named where provision wrote them (a folder only its owner may read): copy them where the',
    "# broker's user can read them, and change the paths; bind the listener to an address if it must not take all.",
    `listener ${port}`,
    'allow_anonymous false',
    `password_file ${file('passwords')}`,
    `acl_file ${file('acl')}`,
    '# A client id is the login name: no party can connect under another',
    "# party's client id and take its persistent session over.",
    'use_username_as_clientid true',
  ];
  if (tls) {
    lines.push(
      "# The broker's certificate and key, and the CA of the parties' certificates: put them there.",
      `cafile ${file('ca.pem')}`,
      `certfile ${file('server.pem')}`,
      `keyfile ${file('server.key')}`,
    );
    if (external) {
      lines.push(
        "# Certificate parties: the login name is the certificate's CN.",
        'require_certificate true',
        'use_identity_as_username true',
      );
      if (plan.parties.some((p) => p.auth === 'password'))
        lines.push(
          '# Password parties cannot log in on this listener (it requires a certificate): give them a listener',
          '# of their own, with these lines but the last two, and their configs its URL.',
        );
    }
  }
  return `${lines.join('\n')}\n`;
}

/**
 * A party's settings for Mosquitto, from those settings.ts made for it: the Mosquitto URL, the same login (the
 * password file, or the certificate with `external`), no exchanges to check; over plain mqtt:// no TLS settings.
 */
export function mosquittoSettings(url: string, party: Party, s: PartySettings): PartySettings {
  const { declareExchanges: _declared, ...config } = s.config;
  const plain = url.startsWith('mqtt:');
  if (s.file === 'hub.json') {
    const { tls, ...broker } = config['broker'] as Record<string, unknown>;
    const keep = plain || tls === undefined ? {} : { tls };
    return { ...s, config: { ...config, broker: { ...broker, ...keep, url } } };
  }
  const { tls, ...rest } = config;
  return { ...s, config: { ...rest, ...(plain || tls === undefined ? {} : { tls }), url, name: party.name } };
}
