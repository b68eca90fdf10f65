/**
 * The broker section: the URL and the other nodes of the cluster, how we authenticate (PLAIN with a password file,
 * or EXTERNAL with a TLS client certificate), heartbeats and reconnection delays. A password never appears in the
 * configuration itself, nor in a message about it.
 */
import { keysOf, type Reader, shown } from './reader.js';
import type { BrokerConfig, TlsConfig } from './types.js';

const BROKER_KEYS = [
  'url',
  'username',
  'passwordFile',
  'tls',
  'external',
  'heartbeatS',
  'prefetch',
  'endpoints',
  'reconnectDelayS',
  'maxReconnectDelayS',
  'inboxes',
] as const;
const TLS_KEYS = ['ca', 'cert', 'key', 'servername'] as const;
export const GUEST = 'guest';
/** MQTT brokers are for dist/hub-mqtt.js (src/bin/hub-mqtt.ts); dist/hub.js refuses them when it starts. */
const URL_WHAT = 'an amqp://, amqps://, mqtt:// or mqtts:// URL';

export function parseBroker(r: Reader, v: unknown): BrokerConfig {
  const b = r.object(v ?? {}, '$.broker', BROKER_KEYS);
  const at = keysOf(b, '$.broker');
  const url = r.string(...at('url', 'amqp://127.0.0.1:5672'), URL_WHAT);
  const urlUser = checkUrl(r, url);
  const secure = url.startsWith('amqps://') || url.startsWith('mqtts://');
  const secureUrl = `an ${url.startsWith('mqtt') ? 'mqtts' : 'amqps'}:// URL`;
  const broker: { -readonly [K in keyof BrokerConfig]: BrokerConfig[K] } = {
    url,
    external: r.boolean(...at('external', false)),
    // Below 5 s heartbeats raise false alarms on a busy Pi (the client refuses them); 0 takes the broker's value.
    heartbeatS: r.number(
      b['heartbeatS'] ?? 20,
      '$.broker.heartbeatS',
      "an integer from 5 to 600, or 0 (the broker's value)",
      (n) => Number.isInteger(n) && (n === 0 || (n >= 5 && n <= 600)),
    ),
    prefetch: r.integer(...at('prefetch', 10), 1, 1000),
    // One inbox per peer by default: a peer that floods the hub then waits behind its own messages only.
    inboxes: r.oneOf(...at('inboxes', 'per-peer'), ['per-peer', 'shared'] as const),
    endpoints: r.array(...at('endpoints', []), 'an array of "host:port" strings').map((e, i) => {
      const at = `$.broker.endpoints[${i}]`;
      const x = r.string(e, at, 'a "host:port" string');
      const m = /^\[?([^\]\s]+?)\]?:(\d{1,5})$/.exec(x);
      if (m === null || Number(m[2]) < 1 || Number(m[2]) > 65535)
        r.fail(at, 'a "host:port" string (port 1 to 65535)', shown(x));
      return x;
    }),
    reconnectDelayS: r.number(
      b['reconnectDelayS'] ?? 5,
      '$.broker.reconnectDelayS',
      'a number from 2 to 600 (seconds)',
      (n) => n >= 2 && n <= 600,
    ),
    maxReconnectDelayS: 60,
  };
  broker.maxReconnectDelayS = r.number(
    b['maxReconnectDelayS'] ?? Math.max(60, broker.reconnectDelayS),
    '$.broker.maxReconnectDelayS',
    `a number from reconnectDelayS (${broker.reconnectDelayS}) to 3600 (seconds)`,
    (n) => n >= broker.reconnectDelayS && n <= 3600,
  );
  if (b['username'] !== undefined) {
    broker.username = r.string(...at('username'));
    if (urlUser !== undefined && urlUser !== broker.username) {
      r.fail(
        '$.broker.username',
        `the user named in $.broker.url (${shown(urlUser)}), or no username`,
        shown(broker.username),
      );
    }
  }
  if (b['passwordFile'] !== undefined) broker.passwordFile = r.path(...at('passwordFile'));
  if (b['tls'] !== undefined) {
    const t = r.object(...at('tls'), TLS_KEYS);
    const tls: { -readonly [K in keyof TlsConfig]: TlsConfig[K] } = {};
    // ca, cert and key are files; servername is a name.
    for (const k of TLS_KEYS) {
      if (t[k] !== undefined) tls[k] = r[k === 'servername' ? 'string' : 'path'](t[k], `$.broker.tls.${k}`);
    }
    // Over amqp:// these files would be silently unused: the operator believes the link is encrypted when it is not.
    if (!secure) r.fail('$.broker.url', `${secureUrl} (broker.tls is given)`, shown(url));
    broker.tls = tls;
  }
  if (broker.external) {
    const why = '(broker.external authenticates with the TLS client certificate)';
    if (!secure) r.fail('$.broker.url', `${secureUrl} ${why}`, shown(url));
    if (broker.tls === undefined) r.fail('$.broker.tls', `an object with cert and key ${why}`, 'nothing');
    if (broker.tls.cert === undefined) r.fail('$.broker.tls.cert', `the client certificate file ${why}`, 'nothing');
    if (broker.tls.key === undefined) r.fail('$.broker.tls.key', `the client certificate's key file ${why}`, 'nothing');
  } else {
    // PLAIN authentication. Without a password file the password is "guest", and only for the user "guest" (the
    // local broker's default account, as in the example config): any other user would log in with a password
    // that is not theirs and be refused by the broker, after the hub had already started.
    const user = broker.username ?? urlUser ?? GUEST;
    if (user !== GUEST && broker.passwordFile === undefined) {
      r.fail(
        '$.broker.passwordFile',
        `a password file for the user ${shown(user)} (only the user "guest" has a default password), or broker.external`,
        'nothing',
      );
    }
  }
  return broker;
}

/** Checks the broker URL; returns the user it names, if any. A password in it is refused without being quoted. */
function checkUrl(r: Reader, url: string): string | undefined {
  const bad = (expected: string, found = shown(url)): never => r.fail('$.broker.url', expected, found);
  if (!/^(amqps?|mqtts?):\/\//.test(url)) bad(URL_WHAT);
  const what = url.startsWith('mqtt') ? 'an mqtt:// or mqtts:// URL' : 'an amqp:// or amqps:// URL';
  const authority = url.slice(url.indexOf('//') + 2).split(/[/?#]/, 1)[0] ?? '';
  const at = authority.lastIndexOf('@');
  const userinfo = at < 0 ? '' : authority.slice(0, at);
  // Checked before anything else looks at the URL, so that no later message can quote the password.
  if (userinfo.includes(':')) {
    bad(
      `${what} without a password (put the password in the file named by broker.passwordFile)`,
      'a password in the URL',
    );
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return bad(what);
  }
  // The connection's own settings (heartbeat, TLS files, mechanism) have their keys here; a second place to set them
  // in the query would let the two disagree.
  if (u.search !== '' || u.hash !== '' || url.includes('?') || url.includes('#')) {
    bad(`${what} without a query or fragment (use broker.heartbeatS, broker.tls, broker.external)`);
  }
  if (u.hostname === '') bad(`${what} with a host`);
  if (u.port === '0') bad(`${what} with a port from 1 to 65535`);
  try {
    decodeURIComponent(u.pathname);
  } catch {
    bad(`${what} with a vhost in valid percent-encoding`);
  }
  if (userinfo === '') return undefined;
  try {
    return decodeURIComponent(u.username);
  } catch {
    return bad(`${what} with a user name in valid percent-encoding`);
  }
}
