/**
 * The definitions provisioning writes (src/provision/definitions.ts), checked without a broker: RabbitMQ's password
 * hash, the permission regexes (run here as JavaScript regexes, which agree with PCRE on the subset used: anchors,
 * groups, alternation, escaped dots), the topic permissions, queues, bindings, policy and guest; and the configs,
 * of which a hub's passes the hub's own parseConfig.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { shardOf } from '../../../src/core/shard.js';
import { parseConfig } from '../../../src/device/config/index.js';
import {
  type Definitions,
  definitions,
  literal,
  type Plan,
  parseParties,
  partySettings,
  passwordHash,
  routingKeys,
} from '../../../src/provision/index.js';
import { repoRoot } from '../../helpers/oracle.js';

const test = suite('provisioned definitions');

const PLAN: Plan = parseParties({
  format: 'ebadge-parties/1',
  url: 'amqps://broker.example:5671',
  ca: 'ca.pem',
  deliveryLimit: 7,
  parties: [
    { name: 'vpp', role: 'aggregator', peers: ['heh.1', 'heh-2'] },
    { name: 'vpp-2', role: 'aggregator', peers: ['heh-2'] },
    { name: 'heh.1', role: 'hub' },
    { name: 'heh-2', role: 'hub', auth: 'external' },
  ],
});
const PASSWORDS = new Map([
  ['vpp', 'pw-vpp'],
  ['vpp-2', 'pw-vpp-2'],
  ['heh.1', 'pw-heh'],
]);
const D: Definitions = definitions(PLAN, PASSWORDS);

function perms(user: string) {
  const p = D.permissions.find((x) => x.user === user);
  if (p === undefined) throw new Error(`no permissions for ${user}`);
  return { configure: new RegExp(p.configure), write: new RegExp(p.write), read: new RegExp(p.read) };
}

function topic(user: string, exchange: string): RegExp {
  const t = D.topic_permissions.find((x) => x.user === user && x.exchange === exchange);
  if (t === undefined) throw new Error(`no topic permission for ${user} on ${exchange}`);
  return new RegExp(t.write);
}

test("RabbitMQ's SHA-256 password hash: base64 of a 4-byte salt and SHA-256(salt, password)", () => {
  const salt = Buffer.from([1, 2, 3, 4]);
  const h = Buffer.from(passwordHash('pässword', salt), 'base64');
  assert.equal([...h.subarray(0, 4)], [1, 2, 3, 4]);
  const expected = createHash('sha256')
    .update(Buffer.concat([salt, Buffer.from('pässword', 'utf8')]))
    .digest();
  assert.ok(h.subarray(4).equals(expected));
  assert.is.not(passwordHash('x'), passwordHash('x'), 'a fresh salt each time');
  const vpp = D.users.find((u) => u.name === 'vpp');
  assert.is(vpp?.hashing_algorithm, 'rabbit_password_hashing_sha256');
  const raw = Buffer.from(vpp?.password_hash ?? '', 'base64');
  assert.ok(raw.subarray(4).equals(createHash('sha256').update(raw.subarray(0, 4)).update('pw-vpp').digest()));
  assert.not.ok(JSON.stringify(D).includes('pw-vpp'), 'no password in the definitions');
  assert.equal(vpp?.tags, []);
});

test('an EXTERNAL user has no password, guest loses its password and tags, a password party needs one', () => {
  assert.is(D.users.find((u) => u.name === 'heh-2')?.password_hash, '');
  const guest = D.users.find((u) => u.name === 'guest');
  assert.is(guest?.password_hash, '');
  assert.equal(guest?.tags, []);
  assert.not.ok(D.permissions.some((p) => p.user === 'guest'));
  assert.throws(() => definitions(PLAN, new Map()), /no password for vpp/);
});

test('configure: only its own private resources; write and read: those and its pair exchanges', () => {
  const vpp = perms('vpp');
  for (const own of ['private-vpp-in', 'private-vpp-dlx', 'private-vpp-dead']) {
    assert.ok(vpp.configure.test(own), own);
    assert.ok(vpp.write.test(own) && vpp.read.test(own), own);
  }
  // D3.2.3's private-vpp-.* would give vpp the inbox of the party vpp-2.
  for (const other of ['private-vpp-2-in', 'private-vpp-2-dead', 'private-vpp-in2', 'private-vpp-inx'])
    assert.not.ok(vpp.configure.test(other) || vpp.write.test(other) || vpp.read.test(other), other);
  for (const x of ['vpp-to-heh.1', 'vpp-to-heh-2']) {
    assert.ok(vpp.write.test(x), x);
    assert.not.ok(vpp.read.test(x) || vpp.configure.test(x), x);
  }
  for (const x of ['heh.1-to-vpp', 'heh-2-to-vpp']) {
    assert.ok(vpp.read.test(x), x);
    assert.not.ok(vpp.write.test(x) || vpp.configure.test(x), x);
  }
  for (const x of ['vpp-to-vpp-2', 'vpp-2-to-heh-2', 'heh-2-to-vpp-2', 'vpp-to-hehx1', 'amq.default', '', 'x-to-vpp'])
    assert.not.ok(vpp.write.test(x) || vpp.read.test(x) || vpp.configure.test(x), x);
  const hub = perms('heh.1');
  assert.ok(hub.write.test('heh.1-to-vpp') && hub.read.test('vpp-to-heh.1'));
  // A hub's inbox per peer, and only its peers'.
  assert.ok(hub.configure.test('private-heh.1-in:vpp') && hub.write.test('private-heh.1-in:vpp'));
  assert.ok(hub.read.test('private-heh.1-in:vpp'));
  for (const other of ['private-heh.1-in:vpp-2', 'private-heh.1-in:', 'private-heh.1-in:vppx', 'private-heh-1-in:vpp'])
    assert.not.ok(hub.configure.test(other) || hub.write.test(other) || hub.read.test(other), other);
  assert.not.ok(vpp.configure.test('private-vpp-in:heh.1'), 'an aggregator has one inbox');
  assert.not.ok(hub.write.test('hehx1-to-vpp'), 'the dot is literal');
  assert.not.ok(hub.read.test('vpp-2-to-heh.1'), 'vpp-2 is no peer of heh.1');
});

test('topic permissions: the routing keys of the types it may send there, alone or with .<heh_id>; no bindings', () => {
  const down = topic('vpp', 'vpp-to-heh.1');
  for (const ok of ['activate', 'get_report', 'get_report.heh-b827ebea02c1', 'response', 'key_update'])
    assert.ok(down.test(ok), ok);
  for (const bad of ['report', 'report.x', 'activatex', 'xactivate', '', '#', 'activate.', 'balancing_reserve_bid'])
    assert.not.ok(down.test(bad), bad);
  const up = topic('heh.1', 'heh.1-to-vpp');
  assert.ok(up.test('report') && up.test('accept_activation'));
  assert.not.ok(up.test('activate') || up.test('set_smart_mode'));
  assert.ok(D.topic_permissions.every((t) => t.read === '^$'));
  assert.equal(
    D.topic_permissions.map((t) => `${t.user} ${t.exchange}`),
    [
      'vpp vpp-to-heh-2',
      'vpp vpp-to-heh.1',
      'vpp-2 vpp-2-to-heh-2',
      'heh.1 heh.1-to-vpp',
      'heh-2 heh-2-to-vpp',
      'heh-2 heh-2-to-vpp-2',
    ],
  );
  assert.not.ok(new RegExp(routingKeys([])).test(''), 'no type: nothing');
  assert.is(literal('a.b*c'), 'a\\.b\\*c');
});

test('exchanges, inboxes with the bus arguments, dead letters, bindings and the delivery-limit policy', () => {
  assert.equal(
    D.vhosts.map((v) => v.name),
    ['ebadge'],
  );
  assert.equal(
    D.exchanges
      .filter((x) => x.type === 'topic')
      .map((x) => x.name)
      .sort(),
    ['heh-2-to-vpp', 'heh-2-to-vpp-2', 'heh.1-to-vpp', 'vpp-2-to-heh-2', 'vpp-to-heh-2', 'vpp-to-heh.1'],
  );
  assert.ok(D.exchanges.every((x) => x.durable && x.vhost === 'ebadge'));
  assert.equal(D.exchanges.find((x) => x.name === 'private-vpp-dlx')?.type, 'fanout');
  assert.equal(D.queues.find((q) => q.name === 'private-heh.1-in')?.arguments, {
    'x-queue-type': 'quorum',
    'x-message-ttl': 900_000,
    'x-dead-letter-exchange': 'private-heh.1-dlx',
    'x-delivery-limit': 7,
  });
  assert.equal(D.queues.find((q) => q.name === 'private-heh.1-dead')?.arguments, {
    'x-queue-type': 'quorum',
    'x-max-length': 100_000,
  });
  const into = (q: string) =>
    D.bindings
      .filter((b) => b.destination === q)
      .map((b) => `${b.source} ${b.routing_key}`)
      .sort();
  assert.equal(into('private-vpp-in'), ['heh-2-to-vpp #', 'heh.1-to-vpp #']);
  // A hub: each peer's exchange into that peer's own inbox; the shared one (declared, drained by the hub) gets none.
  assert.equal(into('private-heh-2-in'), []);
  assert.equal(into('private-heh-2-in:vpp'), ['vpp-to-heh-2 #']);
  assert.equal(into('private-heh-2-in:vpp-2'), ['vpp-2-to-heh-2 #']);
  assert.equal(
    D.queues.find((q) => q.name === 'private-heh-2-in:vpp-2')?.arguments,
    D.queues.find((q) => q.name === 'private-heh-2-in')?.arguments,
  );
  assert.not.ok(
    D.queues.some((q) => q.name.startsWith('private-vpp-in:')),
    'an aggregator has one inbox',
  );
  assert.equal(into('private-vpp-dead'), ['private-vpp-dlx ']);
  assert.equal(D.policies, [
    {
      vhost: 'ebadge',
      name: 'ebadge-inbox-delivery-limit',
      pattern: '^private-.+-(in|in:.+|shard:[0-9]+)$',
      'apply-to': 'queues',
      definition: { 'delivery-limit': 7 },
      priority: 0,
    },
    {
      vhost: 'ebadge',
      name: 'ebadge-dead-letters-cap',
      pattern: '^private-.+-dead$',
      'apply-to': 'queues',
      definition: { 'max-length-bytes': 64 * 1024 * 1024 },
      priority: 0,
    },
  ]);
  // Each policy matches its own queues: RabbitMQ applies one policy to a queue.
  const dead = new RegExp(D.policies[1]?.pattern ?? '');
  assert.ok(dead.test('private-heh.1-dead') && dead.test('private-vpp-dead'));
  assert.not.ok(D.queues.some((q) => dead.test(q.name) && new RegExp(D.policies[0]?.pattern ?? '').test(q.name)));
  assert.ok(new RegExp(D.policies[0]?.pattern ?? '').test('private-heh.1-in'));
  assert.ok(new RegExp(D.policies[0]?.pattern ?? '').test('private-heh.1-in:vpp'));
  assert.ok(new RegExp(D.policies[0]?.pattern ?? '').test('private-vpp-shard:12'), "an aggregator's shards");
  assert.not.ok(new RegExp(D.policies[0]?.pattern ?? '').test('private-heh.1-dead'));
});

test('a sharded party: every shard declared (single active consumer), each peer bound to its shard, in its permissions', () => {
  const plan = parseParties({
    format: 'ebadge-parties/1',
    url: 'amqp://127.0.0.1:5672',
    parties: [
      { name: 'vpp-s', role: 'aggregator', peers: ['heh-a', 'heh-b', 'heh-c'], shards: 4 },
      { name: 'heh-a', role: 'hub' },
      { name: 'heh-b', role: 'hub' },
      { name: 'heh-c', role: 'hub' },
    ],
  });
  const d = definitions(plan, new Map(plan.parties.map((p) => [p.name, 'pw'])));
  const shards = d.queues.filter((q) => q.name.startsWith('private-vpp-s-shard:'));
  assert.equal(
    shards.map((q) => q.name),
    [0, 1, 2, 3].map((k) => `private-vpp-s-shard:${k}`),
  );
  for (const q of shards) assert.is(q.arguments['x-single-active-consumer'], true, q.name);
  for (const hub of ['heh-a', 'heh-b', 'heh-c']) {
    const into = d.bindings.filter((b) => b.source === `${hub}-to-vpp-s`).map((b) => b.destination);
    assert.equal(into, [`private-vpp-s-shard:${shardOf(hub, 4)}`], hub);
  }
  const p = d.permissions.find((x) => x.user === 'vpp-s');
  for (const k of [0, 3]) assert.ok(new RegExp(p?.read ?? '').test(`private-vpp-s-shard:${k}`), `shard ${k}`);
  assert.not.ok(new RegExp(p?.read ?? '').test('private-vpp-s-shard:4'), 'only its 4');
  // Its instances' relay exchange and queues (configure, write, read), and nobody else's.
  for (const x of ['private-vpp-s-relay', 'private-vpp-s-instance:0a1f', 'private-vpp-s-handled'])
    for (const what of ['configure', 'write', 'read'] as const)
      assert.ok(new RegExp(p?.[what] ?? '').test(x), `${what} ${x}`);
  assert.not.ok(new RegExp(p?.configure ?? '').test('private-vpp-s-instance:zz'), 'a tag is 4 hex digits');
  // The stream of what its instances handled, declared as the bus declares it, written through the relay exchange
  // (a provisioned party may not publish to the default exchange).
  assert.ok(d.exchanges.some((x) => x.name === 'private-vpp-s-relay' && x.type === 'direct'));
  assert.ok(
    d.bindings.some(
      (b) =>
        b.source === 'private-vpp-s-relay' && b.destination === 'private-vpp-s-handled' && b.routing_key === 'handled',
    ),
  );
  assert.equal(d.queues.find((q) => q.name === 'private-vpp-s-handled')?.arguments, {
    'x-queue-type': 'stream',
    'x-max-age': '600s',
    'x-stream-max-segment-size-bytes': 4_000_000,
  });
  const hub = d.permissions.find((x) => x.user === 'heh-a');
  assert.not.ok(new RegExp(hub?.configure ?? '').test('private-heh-a-relay'), 'a hub runs as one');
  assert.equal(partySettings(plan, plan.parties[0] as Plan['parties'][number]).config['inboxes'], { shards: 4 });
  assert.throws(
    () =>
      parseParties({
        format: 'ebadge-parties/1',
        url: 'amqp://h',
        parties: [
          { name: 'v', role: 'aggregator', peers: ['h'] },
          { name: 'h', role: 'hub', shards: 2 },
        ],
      }),
    /\$\.parties\[1\]\.shards: a hub has one inbox per peer already/,
  );
  assert.throws(
    () =>
      parseParties({
        format: 'ebadge-parties/1',
        url: 'amqp://h',
        parties: [{ name: 'v', role: 'aggregator', shards: 0 }],
      }),
    /\$\.parties\[0\]\.shards: expected an integer from 1 to 1024, found number 0/,
  );
});

test("a hub's settings pass the hub's own parseConfig; the others' name their password or certificate", () => {
  const hub = partySettings(PLAN, PLAN.parties[2] as Plan['parties'][number]);
  assert.is(hub.file, 'hub.json');
  const c = parseConfig(hub.config, 'hub.json');
  assert.is(c.name, 'heh.1');
  assert.is(c.broker.url, 'amqps://broker.example:5671/ebadge');
  assert.is(c.broker.username, 'heh.1');
  assert.is(c.broker.passwordFile, 'broker.pw');
  assert.equal(c.broker.tls, { ca: 'ca.pem' });
  assert.is(c.declareExchanges, false);
  assert.equal(c.peers, [{ name: 'vpp', role: 'aggregator' }]);
  const ext = parseConfig(partySettings(PLAN, PLAN.parties[3] as Plan['parties'][number]).config);
  assert.is(ext.broker.external, true);
  assert.equal(ext.broker.tls, { ca: 'ca.pem', cert: 'client.pem', key: 'client.key' });
  assert.is(ext.broker.passwordFile, undefined);
  const vpp = partySettings(PLAN, PLAN.parties[0] as Plan['parties'][number]);
  assert.is(vpp.file, 'bus.json');
  assert.equal(vpp.config, {
    url: 'amqps://broker.example:5671/ebadge',
    name: 'vpp',
    peers: ['heh-2', 'heh.1'],
    declareExchanges: false,
    passwordFile: 'broker.pw',
    tls: { ca: 'ca.pem' },
  });
  const slash = parseParties({
    format: 'ebadge-parties/1',
    url: 'amqp://b',
    vhost: '/',
    parties: [{ name: 'x', role: 'tso' }],
  });
  assert.is(partySettings(slash, slash.parties[0] as Plan['parties'][number]).config['url'], 'amqp://b/%2F');
});

test('docs/provisioning.md: its parties file is valid, and its excerpt is what provisioning makes of it', () => {
  const doc = readFileSync(path.join(repoRoot(), 'docs', 'provisioning.md'), 'utf8');
  const blocks = [...doc.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => m[1] as string);
  assert.is(blocks.length, 2);
  const plan = parseParties(JSON.parse(blocks[0] as string), 'docs/provisioning.md');
  const d = definitions(plan, new Map(plan.parties.map((p) => [p.name, 'x'])));
  const shown = (blocks[1] as string).split(/\n(?=\{)/).map((o) => JSON.parse(o) as Record<string, string>);
  assert.is(shown.length, 4);
  for (const o of shown) {
    const made =
      o['exchange'] === undefined
        ? d.permissions.find((p) => p.user === o['user'])
        : d.topic_permissions.find((t) => t.user === o['user'] && t.exchange === o['exchange']);
    assert.equal(made, { ...made, ...o }, `${o['user']} ${o['exchange'] ?? ''}`);
  }
});

test.run();
