/**
 * Mosquitto's ACL and password file from a plan (src/provision/mosquitto.ts), without a broker: the hash is what
 * mosquitto_passwd writes (PBKDF2-SHA512, checked against a hash it made), each party writes only as itself, to its
 * peers, the types it may send; reads only what is addressed to it; names that cannot be a topic level are refused;
 * the listener (ebadge.conf) makes each client id its login name. test/integration/mqtt-acl.test.ts loads the same
 * files into a real Mosquitto.
 */
import { pbkdf2Sync } from 'node:crypto';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ProvisionError, parseParties } from '../../../src/provision/index.js';
import {
  mosquittoAcl,
  mosquittoConf,
  mosquittoPasswordHash,
  mosquittoPasswords,
} from '../../../src/provision/mosquitto.js';

const test = suite('mosquitto provisioning');

const PLAN = parseParties({
  format: 'ebadge-parties/1',
  url: 'amqps://broker.example:5671',
  parties: [
    { name: 'vpp', role: 'aggregator', peers: ['heh-1'] },
    { name: 'heh-1', role: 'hub' },
    { name: 'dso', role: 'dso', peers: ['heh-1'], sends: ['load_price'] },
    { name: 'heh-x', role: 'hub', auth: 'external', peers: ['vpp'] },
  ],
});
const ACL = mosquittoAcl(PLAN);
/** The lines of one user's block. */
const block = (user: string): string[] => {
  const lines = ACL.split('\n');
  const start = lines.indexOf(`user ${user}`);
  assert.ok(start >= 0, `user ${user}`);
  const end = lines.indexOf('', start);
  return lines.slice(start + 1, end);
};

test("the hash is mosquitto_passwd's: $7$, 101 iterations, PBKDF2-SHA512 of the password with the salt", () => {
  // Written by `mosquitto_passwd -c -b pwf alice secret` (Mosquitto 2.0.11).
  const made =
    '$7$101$vOTFBp7NdJ2sXgXm$Th9372uW93Dwf0byDy3G9RVZiW0j1Dbsm76TEbvGRY880afENr4NneP9FWvPvqNmcE86vLQfZaKbcmmUp+Nz3Q==';
  const salt = Buffer.from(made.split('$')[3] as string, 'base64');
  assert.is(mosquittoPasswordHash('secret', salt), made);
  assert.is.not(mosquittoPasswordHash('secret'), mosquittoPasswordHash('secret'), 'a fresh salt each time');
  const [, , iterations, s, h] = mosquittoPasswordHash('pw').split('$');
  assert.is(iterations, '101');
  assert.ok(
    pbkdf2Sync('pw', Buffer.from(s as string, 'base64'), 101, 64, 'sha512').equals(Buffer.from(h as string, 'base64')),
  );
});

test('a password line per password party, none for a certificate party, no password in clear', () => {
  const file = mosquittoPasswords(
    PLAN,
    new Map([
      ['vpp', 'pw-vpp'],
      ['heh-1', 'pw-heh'],
      ['dso', 'pw-dso'],
    ]),
  );
  assert.equal(
    file
      .trim()
      .split('\n')
      .map((l) => l.split(':')[0]),
    ['vpp', 'heh-1', 'dso'],
  );
  assert.not.ok(file.includes('pw-'), 'hashed only');
  assert.throws(() => mosquittoPasswords(PLAN, new Map([['vpp', 'x']])), /no password for heh-1/);
});

test('each party writes as itself, to its peers, the types it may send; reads what is addressed to it', () => {
  const dso = block('dso');
  assert.equal(dso, [
    'topic write key_update/dso/heh-1/#',
    'topic write load_price/dso/heh-1/#',
    'topic write response/dso/heh-1/#',
    'topic write dead-letter/dso',
    'topic read +/+/dso/#',
  ]);
  const vpp = block('vpp');
  assert.ok(vpp.includes('topic write activate/vpp/heh-1/#') && vpp.includes('topic write get_report/vpp/heh-x/#'));
  assert.not.ok(
    vpp.some((l) => l.startsWith('topic write report/')),
    'an aggregator sends no report',
  );
  const hub = block('heh-1');
  assert.ok(hub.includes('topic write report/heh-1/vpp/#') && hub.includes('topic write response/heh-1/dso/#'));
  assert.not.ok(
    hub.some((l) => /^topic write \S+\/heh-1\/heh-x\//.test(l)),
    'heh-x is no peer of heh-1',
  );
  assert.not.ok(
    hub.some((l) => l.includes('activate/')),
    'a hub sends no activate',
  );
  // No line lets anyone write as another or with a wildcard sender, or read another's messages.
  for (const user of ['vpp', 'heh-1', 'dso', 'heh-x']) {
    for (const line of block(user)) {
      const [, access, topic = ''] = line.split(' ');
      const levels = topic.split('/');
      if (access === 'read') assert.is(topic, `+/+/${user}/#`, line);
      else if (levels[0] === 'dead-letter') assert.is(topic, `dead-letter/${user}`, line);
      else assert.ok(levels[1] === user && !/[+#]/.test(levels.slice(0, 3).join('/')) && levels[3] === '#', line);
    }
  }
});

test('a name that cannot be an MQTT topic level is refused with its path', () => {
  const dotted = parseParties({
    format: 'ebadge-parties/1',
    url: 'amqp://127.0.0.1:5672',
    parties: [
      { name: 'vpp', role: 'aggregator', peers: ['heh.1'] },
      { name: 'heh.1', role: 'hub' },
    ],
  });
  const err = (() => {
    try {
      mosquittoAcl(dotted);
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  assert.instance(err, ProvisionError);
  assert.is((err as ProvisionError).path, '$.parties[1].name');
  assert.match((err as Error).message, '"heh.1" cannot be an MQTT topic level');
});

/** The settings of a conf: its lines that are not comments. */
const settings = (conf: string): string[] => conf.split('\n').filter((l) => l !== '' && !l.startsWith('#'));

test('ebadge.conf: the listener on the URL port, no anonymous, the files, client id = login; TLS with mqtts://', () => {
  const passwordsOnly = parseParties({
    format: 'ebadge-parties/1',
    url: 'amqp://127.0.0.1:5672',
    parties: [
      { name: 'vpp', role: 'aggregator', peers: ['heh-1'] },
      { name: 'heh-1', role: 'hub' },
    ],
  });
  const plain = mosquittoConf(passwordsOnly, 'mqtt://mqtt.example', '/etc/mosquitto/ebadge/');
  assert.equal(settings(plain), [
    'listener 1883',
    'allow_anonymous false',
    'password_file /etc/mosquitto/ebadge/passwords',
    'acl_file /etc/mosquitto/ebadge/acl',
    'use_username_as_clientid true',
  ]);
  assert.ok(plain.endsWith('\n'));
  // Over TLS: the broker's files; password parties only, no client certificate required.
  const tls = settings(mosquittoConf(passwordsOnly, 'mqtts://mqtt.example:8884', '/e'));
  assert.equal(tls.slice(0, 1), ['listener 8884']);
  assert.equal(tls.slice(4), [
    'use_username_as_clientid true',
    'cafile /e/ca.pem',
    'certfile /e/server.pem',
    'keyfile /e/server.key',
  ]);
  // A certificate party: the certificate required and its name the login (and so the client id).
  const mixed = mosquittoConf(PLAN, 'mqtts://mqtt.example', '/e');
  assert.equal(settings(mixed).slice(0, 1), ['listener 8883']);
  assert.equal(settings(mixed).slice(-3), [
    'keyfile /e/server.key',
    'require_certificate true',
    'use_identity_as_username true',
  ]);
  assert.match(mixed, 'Password parties cannot log in on this listener');
});

test.run();
