/**
 * Parties on MQTT through RabbitMQ's MQTT plugin (src/provision/mqtt.ts), without a broker: what the parties file
 * must say for them (each refusal with its JSON path), and what the definitions give them, the permission and topic
 * permission regexes run as JavaScript regexes (they agree with PCRE on the subset used), the exchange-to-exchange
 * bindings, and the settings (an MQTT hub's pass the hub's own parseConfig). test/integration/mqtt-mixed.test.ts
 * loads them into a node with the plugin.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig } from '../../../src/device/config/index.js';
import { definitions, type Plan, ProvisionError, parseParties, partySettings } from '../../../src/provision/index.js';
import { mqttDefinitions, mqttSettings, sessionQueue } from '../../../src/provision/mqtt.js';

const test = suite('provisioning MQTT parties');

type Spec = Record<string, unknown>;

const PARTIES: Spec[] = [
  { name: 'vpp', role: 'aggregator', peers: ['heh-1', 'heh-2', 'heh-3'] },
  { name: 'heh-1', role: 'hub', transport: 'mqtt' },
  { name: 'heh-2', role: 'hub', transport: 'mqtt' },
  { name: 'heh-3', role: 'hub' },
  { name: 'ops', role: 'operator', peers: ['heh-1'], transport: 'mqtt' },
];

function file(parties: Spec[] = PARTIES, extra: Spec = {}): Spec {
  return {
    format: 'ebadge-parties/1',
    url: 'amqps://broker.example:5671',
    mqttUrl: 'mqtt://broker.example:1883',
    parties,
    ...extra,
  };
}

const PLAN: Plan = parseParties(file());
const PASSWORDS = new Map(PLAN.parties.map((p) => [p.name, `pw-${p.name}`]));
const D = mqttDefinitions(PLAN, definitions(PLAN, PASSWORDS));

function refusal(f: Spec): ProvisionError {
  try {
    parseParties(f);
  } catch (err) {
    assert.instance(err, ProvisionError);
    return err as ProvisionError;
  }
  throw new Error('accepted');
}

const perm = (user: string) => {
  const p = D.permissions.find((x) => x.user === user);
  if (p === undefined) throw new Error(`no permission for ${user}`);
  return { configure: new RegExp(p.configure), write: new RegExp(p.write), read: new RegExp(p.read) };
};
const topic = (user: string, exchange: string) => {
  const t = D.topic_permissions.filter((x) => x.user === user && x.exchange === exchange);
  assert.is(t.length, 1, `one topic permission of ${user} on ${exchange}`);
  return { write: new RegExp(t[0]?.write as string), read: new RegExp(t[0]?.read as string) };
};

test('the parties file: transport and mqttUrl are read; the plan says who is on MQTT', () => {
  assert.equal(
    PLAN.parties.map((p) => `${p.name}:${p.transport ?? 'amqp'}`),
    ['vpp:amqp', 'heh-1:mqtt', 'heh-2:mqtt', 'heh-3:amqp', 'ops:mqtt'],
  );
  assert.is(PLAN.mqttUrl, 'mqtt://broker.example:1883');
  assert.is(parseParties(file(undefined, { mqttUrl: 'mqtts://b:8883/' })).mqttUrl, 'mqtts://b:8883');
});

test('refused, each with its path: a transport, a missing or stray mqttUrl, names that are not topic levels', () => {
  const at = (f: Spec, path: string, text: string | RegExp): void => {
    const err = refusal(f);
    assert.is(err.path, path, err.message);
    assert.match(err.message, text);
  };
  const with1 = (change: Spec, i = 1): Spec[] => PARTIES.map((p, j) => (j === i ? { ...p, ...change } : p));
  at(file(with1({ transport: 'ws' })), '$.parties[1].transport', 'expected "amqp" or "mqtt", found "ws"');
  const { mqttUrl: _u, ...noUrl } = file();
  at(noUrl, '$.mqttUrl', "expected the MQTT plugin's URL (mqtt://host:1883), since heh-1 is on MQTT");
  at(file(PARTIES.map(({ transport: _t, ...p }) => p)), '$.mqttUrl', 'no party has "transport": "mqtt"');
  at(file(undefined, { mqttUrl: 'amqp://b:5672' }), '$.mqttUrl', 'expected an mqtt:// or mqtts:// URL');
  at(file(undefined, { mqttUrl: 'mqtt://u:p@b:1883' }), '$.mqttUrl', 'expected no user or password');
  at(file(undefined, { mqttUrl: 'mqtt://b:1883/x' }), '$.mqttUrl', 'without a path');
  at(
    file(with1({ auth: 'external' })),
    '$.parties[1].auth',
    '"external" is not offered over MQTT yet: an MQTT party logs in with its password',
  );
  // An MQTT party's own name, and a peer's (an AMQP party's names become topic levels too).
  const dotted = PARTIES.map((p) =>
    p['name'] === 'heh-1'
      ? { ...p, name: 'heh.1' }
      : { ...p, peers: (p['peers'] as string[] | undefined)?.map((q) => (q === 'heh-1' ? 'heh.1' : q)) },
  );
  at(
    file(dotted),
    '$.parties[1].name',
    /"heh\.1" cannot be an MQTT topic level: RabbitMQ's MQTT plugin turns "\." into "\/"/,
  );
  const dottedVpp = PARTIES.map((p) => (p['name'] === 'vpp' ? { ...p, name: 'vpp.x' } : p));
  at(
    file(dottedVpp),
    '$.parties[0].name',
    '"vpp.x" cannot be an MQTT topic level (it is a peer of the MQTT party heh-1)',
  );
  // An AMQP hub cannot reach an MQTT party: dist/hub.js has no MQTT peers.
  at(
    file([...PARTIES, { name: 'dso', role: 'dso', peers: ['heh-3'], transport: 'mqtt' }]),
    '$.parties[3]',
    'the AMQP hub heh-3 cannot have the MQTT peer dso',
  );
});

test('an MQTT party: its session queue and amq.topic only, nothing of D3.2.3', () => {
  const p = perm('heh-1');
  assert.ok(p.configure.test(sessionQueue('heh-1')));
  for (const x of ['amq.topic', 'mqtt-subscription-heh-1qos1', 'mqtt-subscription-heh-1qos0']) {
    assert.ok(p.write.test(x), x);
    assert.ok(p.read.test(x), x);
  }
  for (const x of [
    'mqtt-subscription-heh-2qos1',
    'mqtt-subscription-heh-1-xqos1',
    'amq-topic',
    'private-heh-1-in',
    'heh-1-to-vpp',
    'vpp-to-heh-1',
    'amq.default',
  ]) {
    assert.not.ok(p.configure.test(x), x);
    assert.not.ok(p.write.test(x), x);
    assert.not.ok(p.read.test(x), x);
  }
});

test("an MQTT party's topic permission on amq.topic: its own name as the sender, its types, its subscription", () => {
  const t = topic('heh-1', 'amq.topic');
  for (const k of ['report.heh-1.vpp', 'report.heh-1.vpp.heh-7', 'response.heh-1.ops', 'dead-letter.heh-1'])
    assert.ok(t.write.test(k), k);
  for (const k of [
    'report.heh-2.vpp', // another's name
    'activate.heh-1.vpp', // a type a hub may not send
    'report.heh-1.vppx',
    'report.heh-1.heh-2', // not a peer
    'xreport.heh-1.vpp',
    'report.heh-1',
    'dead-letter.heh-2',
    'dead-letter.heh-1.x',
  ])
    assert.not.ok(t.write.test(k), k);
  assert.ok(t.read.test('*.*.heh-1.#'));
  for (const k of ['*.*.heh-2.#', '#', '*.*.*.#', '*.vpp.heh-1.#', 'dead-letter.heh-1'])
    assert.not.ok(t.read.test(k), k);
  // The operator on MQTT has its own types to the hub.
  assert.ok(topic('ops', 'amq.topic').write.test('activate.ops.heh-1'));
});

test("an AMQP party's topic permission towards an MQTT peer names both; towards an AMQP peer it is D3.2.3's", () => {
  const t = topic('vpp', 'vpp-to-heh-1');
  for (const k of ['get_report.vpp.heh-1', 'activate.vpp.heh-1.heh-7']) assert.ok(t.write.test(k), k);
  for (const k of ['get_report', 'get_report.heh-2.heh-1', 'get_report.vpp.heh-2', 'report.vpp.heh-1'])
    assert.not.ok(t.write.test(k), k);
  const amqp = topic('vpp', 'vpp-to-heh-3');
  assert.ok(amqp.write.test('get_report'));
  assert.ok(amqp.write.test('get_report.heh-7'));
});

test('exchange-to-exchange bindings carry each AMQP-MQTT pair both ways; MQTT parties keep no inbox', () => {
  const e2e = D.bindings
    .filter((b) => b.destination_type === 'exchange')
    .map((b) => `${b.source} -> ${b.destination} ${b.routing_key}`)
    .sort();
  assert.equal(e2e, [
    'amq.topic -> heh-1-to-vpp *.heh-1.vpp.#',
    'amq.topic -> heh-2-to-vpp *.heh-2.vpp.#',
    'vpp-to-heh-1 -> amq.topic *.vpp.heh-1.#',
    'vpp-to-heh-2 -> amq.topic *.vpp.heh-2.#',
  ]);
  const queues = D.queues.map((q) => q.name);
  for (const m of ['heh-1', 'heh-2', 'ops']) {
    assert.not.ok(
      queues.some((q) => q.startsWith(`private-${m}-in`)),
      `no inbox of ${m}`,
    );
    assert.not.ok(D.exchanges.some((x) => x.name === `private-${m}-dlx`));
    assert.ok(
      D.bindings.some(
        (b) =>
          b.source === 'amq.topic' && b.destination === `private-${m}-dead` && b.routing_key === `dead-letter.${m}`,
      ),
      `dead letters of ${m}`,
    );
  }
  // Nothing is bound to a queue that is not declared, and nothing from an exchange that is not declared.
  const exchanges = new Set([...D.exchanges.map((x) => x.name), 'amq.topic']);
  for (const b of D.bindings) {
    assert.ok(exchanges.has(b.source), b.source);
    assert.ok(
      b.destination_type === 'exchange' ? exchanges.has(b.destination) : queues.includes(b.destination),
      b.destination,
    );
  }
  // Two MQTT parties meet in amq.topic: no exchange between them.
  assert.not.ok(D.exchanges.some((x) => x.name === 'ops-to-heh-1' || x.name === 'heh-1-to-ops'));
  // The AMQP hub is D3.2.3's as before.
  assert.ok(queues.includes('private-heh-3-in') || queues.some((q) => q.startsWith('private-heh-3-in:')));
});

test('a plan without MQTT parties comes back as it was', () => {
  const plain = parseParties({
    format: 'ebadge-parties/1',
    url: 'amqp://b:5672',
    parties: [
      { name: 'vpp', role: 'aggregator', peers: ['heh'] },
      { name: 'heh', role: 'hub' },
    ],
  });
  const d = definitions(
    plain,
    new Map([
      ['vpp', 'a'],
      ['heh', 'b'],
    ]),
  );
  assert.is(mqttDefinitions(plain, d), d);
});

test("an MQTT hub's settings: the plugin's URL and <vhost>:<name>, passing the hub's own parseConfig", () => {
  const hub = PLAN.parties[1] as Plan['parties'][number];
  const s = mqttSettings(PLAN, hub, partySettings(PLAN, hub));
  assert.is(s.file, 'hub.json');
  const c = parseConfig(s.config, 'hub.json');
  assert.is(c.broker.url, 'mqtt://broker.example:1883');
  assert.is(c.broker.username, 'ebadge:heh-1');
  assert.is(c.broker.passwordFile, 'broker.pw');
  assert.is(c.broker.tls, undefined);
  const vpp = PLAN.parties[0] as Plan['parties'][number];
  assert.equal(mqttSettings(PLAN, vpp, partySettings(PLAN, vpp)), partySettings(PLAN, vpp));
  const ops = PLAN.parties[4] as Plan['parties'][number];
  assert.is(mqttSettings(PLAN, ops, partySettings(PLAN, ops)).config['url'], 'mqtt://broker.example:1883');
});

test.run();
