/**
 * The parties file (src/provision/parties.ts): who talks to whom and what each may send, worked out from the role
 * table and the overrides; and every refusal names the JSON path and says why, without quoting a secret.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type Plan, ProvisionError, parseParties } from '../../../src/provision/index.js';

const test = suite('parties file');

type Spec = Record<string, unknown>;

function file(parties: Spec[], extra: Spec = {}): Spec {
  return { format: 'ebadge-parties/1', url: 'amqps://broker.example:5671', parties, ...extra };
}

const BASE: Spec[] = [
  { name: 'vpp-acme', role: 'aggregator', peers: ['heh-b827ebea02c1', 'tso-north'] },
  { name: 'heh-b827ebea02c1', role: 'hub' },
  { name: 'tso-north', role: 'tso', peers: ['market'] },
  { name: 'market', role: 'market' },
];

function plan(parties: Spec[] = BASE, extra: Spec = {}): Plan {
  return parseParties(file(parties, extra));
}

function party(p: Plan, name: string) {
  const found = p.parties.find((x) => x.name === name);
  if (found === undefined) throw new Error(`no party ${name}`);
  return found;
}

/** The error for a parties file: its path and message. */
function refusal(parties: Spec[], extra: Spec = {}): ProvisionError {
  try {
    parseParties(file(parties, extra), 'p.json');
  } catch (err) {
    assert.instance(err, ProvisionError);
    return err as ProvisionError;
  }
  throw new Error('the parties file was accepted');
}

test('links are undirected: a party named by another has it as a peer, sorted', () => {
  const p = plan();
  assert.equal(party(p, 'heh-b827ebea02c1').peers, ['vpp-acme']);
  assert.equal(party(p, 'vpp-acme').peers, ['heh-b827ebea02c1', 'tso-north']);
  assert.equal(party(p, 'tso-north').peers, ['market', 'vpp-acme']);
  assert.is(p.vhost, 'ebadge');
  assert.is(p.deliveryLimit, 10);
  assert.is(p.url, 'amqps://broker.example:5671');
});

test('the types come from the role table, per receiver role, with response and key_update', () => {
  const p = plan();
  const hub = party(p, 'heh-b827ebea02c1').sends.get('vpp-acme') ?? [];
  assert.ok(hub.includes('report') && hub.includes('accept_activation') && hub.includes('response'));
  assert.ok(hub.includes('key_update'));
  assert.not.ok(hub.includes('activate'), 'a hub does not activate');
  const vpp = party(p, 'vpp-acme');
  const down = vpp.sends.get('heh-b827ebea02c1') ?? [];
  assert.ok(down.includes('activate') && down.includes('get_report') && down.includes('set_smart_mode'));
  assert.not.ok(down.includes('report') || down.includes('balancing_reserve_bid'));
  assert.equal(vpp.sends.get('tso-north'), ['balancing_energy_bid', 'balancing_reserve_bid', 'key_update', 'response']);
  assert.equal(party(p, 'market').sends.get('tso-north'), [
    'activate_bid',
    'balancing_activated',
    'balancing_unachievable',
    'key_update',
    'response',
  ]);
  assert.equal([...hub].sort(), hub, 'sorted');
});

test('sends replaces the table: for every peer (a list) or per peer (an object)', () => {
  const p = plan([
    { name: 'dso-north', role: 'dso', peers: ['heh-1', 'heh-2'], sends: ['load_price'] },
    { name: 'vpp-acme', role: 'aggregator', peers: ['heh-1', 'heh-2'], sends: { 'heh-2': ['get_report'] } },
    { name: 'heh-1', role: 'hub' },
    { name: 'heh-2', role: 'hub' },
  ]);
  assert.equal(party(p, 'dso-north').sends.get('heh-1'), ['key_update', 'load_price', 'response']);
  assert.equal(party(p, 'dso-north').sends.get('heh-2'), ['key_update', 'load_price', 'response']);
  assert.equal(party(p, 'vpp-acme').sends.get('heh-2'), ['get_report', 'key_update', 'response']);
  assert.ok(party(p, 'vpp-acme').sends.get('heh-1')?.includes('activate'), 'the table for the others');
});

test('the top level: format, url without user, password, vhost or query, vhost, deliveryLimit, unknown keys', () => {
  assert.is(refusal(BASE, { format: 'x' }).path, '$.format');
  const withPassword = refusal(BASE, { url: 'amqps://admin:s3cret@broker:5671' });
  assert.is(withPassword.path, '$.url');
  assert.not.match(withPassword.message, 's3cret');
  assert.match(withPassword.message, 'each party logs in as itself');
  assert.match(refusal(BASE, { url: 'amqps://broker/ebadge' }).message, 'give it as "vhost"');
  assert.is(refusal(BASE, { url: 'amqps://broker?heartbeat=5' }).path, '$.url');
  assert.is(refusal(BASE, { url: 'http://broker' }).path, '$.url');
  assert.is(refusal(BASE, { vhost: '' }).path, '$.vhost');
  assert.is(refusal(BASE, { deliveryLimit: 0 }).path, '$.deliveryLimit');
  assert.is(refusal(BASE, { deliveryLimit: 1.5 }).path, '$.deliveryLimit');
  assert.is(refusal(BASE, { colour: 'red' }).path, '$.colour');
  assert.is(refusal([]).path, '$.parties');
  assert.is(plan(BASE, { vhost: '/', deliveryLimit: 20 }).deliveryLimit, 20);
});

test('names that cannot be AMQP names, or would make exchanges or permissions ambiguous, are refused', () => {
  const named = (name: unknown): ProvisionError =>
    refusal([
      { name, role: 'hub', peers: ['vpp'] },
      { name: 'vpp', role: 'aggregator' },
    ]);
  for (const bad of ['heh 1', 'heh/1', '-heh', 'heh*', 'héh', 'heh#1', 'a{username}', '.heh']) {
    const e = named(bad);
    assert.is(e.path, '$.parties[0].name', bad);
    assert.match(e.message, `"${bad}" cannot be a party name`);
  }
  assert.match(named('heh-to-vpp').message, 'the word "to" between dashes');
  assert.match(named('TO-x').message, 'the word "to"');
  assert.ok(
    plan([
      { name: 'toaster', role: 'hub', peers: ['vpp'] },
      { name: 'vpp', role: 'aggregator' },
    ]),
  );
  assert.match(named('amq.heh').message, 'reserves');
  assert.match(named('guest').message, 'guest');
  assert.match(named('h'.repeat(101)).message, 'longer than 100');
  assert.is(named(42).path, '$.parties[0].name');
  assert.is(named('heh\u0000').path, '$.parties[0].name');
  const twice = refusal([
    { name: 'vpp', role: 'aggregator', peers: ['heh-1'] },
    { name: 'heh-1', role: 'hub' },
    { name: 'VPP', role: 'aggregator' },
  ]);
  assert.is(twice.path, '$.parties[2].name');
  assert.match(twice.message, 'differs only in case');
});

test('peers, roles, auth and sends are checked, each error at its path', () => {
  const vpp = { name: 'vpp', role: 'aggregator' };
  assert.is(refusal([{ name: 'heh-1', role: 'hub', peers: ['nobody'] }, vpp]).path, '$.parties[0].peers[0]');
  assert.is(refusal([{ name: 'heh-1', role: 'hub', peers: ['heh-1'] }, vpp]).path, '$.parties[0].peers[0]');
  assert.is(refusal([{ name: 'heh-1', role: 'hub', peers: ['vpp', 'vpp'] }, vpp]).path, '$.parties[0].peers[1]');
  assert.is(refusal([{ name: 'heh-1', role: 'boss' }]).path, '$.parties[0].role');
  assert.is(refusal([{ name: 'heh-1', role: 'hub', colour: 1 }]).path, '$.parties[0].colour');
  const external = refusal([{ name: 'heh-1', role: 'hub', auth: 'external' }], { url: 'amqp://broker' });
  assert.is(external.path, '$.parties[0].auth');
  assert.match(external.message, 'amqps://');
  assert.is(
    refusal([{ name: 'heh-1', role: 'hub', auth: 'external', passwordFile: 'x' }]).path,
    '$.parties[0].passwordFile',
  );
  assert.is(refusal([{ name: 'heh-1', role: 'hub', auth: 'kerberos' }]).path, '$.parties[0].auth');
  const type = refusal([{ name: 'heh-1', role: 'hub', peers: ['vpp'], sends: ['report', 'hack'] }, vpp]);
  assert.is(type.path, '$.parties[0].sends[1]');
  assert.match(type.message, '"hack" is not a message type');
  assert.ok(plan([{ name: 'heh-1', role: 'hub', peers: ['vpp'], sends: ['report', 'ext_org_x'] }, vpp]));
  assert.is(refusal([{ name: 'heh-1', role: 'hub', peers: ['vpp'], sends: 'report' }, vpp]).path, '$.parties[0].sends');
  const stranger = refusal([{ name: 'heh-1', role: 'hub', sends: { vpp: ['report'] } }, vpp]);
  assert.is(stranger.path, '$.parties[0].sends.vpp');
  assert.match(stranger.message, 'not a peer');
});

test('a link the data model has no message for is refused; a hub peer of a role its config lacks too', () => {
  const tso = refusal([
    { name: 'heh-1', role: 'hub', peers: ['tso-north'] },
    { name: 'tso-north', role: 'tso' },
  ]);
  assert.is(tso.path, '$.parties[0].peers[0]');
  assert.match(tso.message, 'no message type to send each other');
  assert.match(tso.message, 'from a hub to a tso or back');
  assert.ok(
    plan([
      { name: 'heh-1', role: 'hub', peers: ['tso-north'] },
      { name: 'tso-north', role: 'tso', sends: ['get_report'] },
    ]),
    'sends makes the link',
  );
  const hubs = refusal([
    { name: 'heh-1', role: 'hub', peers: ['heh-2'], sends: ['report'] },
    { name: 'heh-2', role: 'hub' },
  ]);
  assert.is(hubs.path, '$.parties[0].peers[0]');
  assert.match(hubs.message, "a hub's configuration knows peers of the roles aggregator, dso, tso, operator");
  const market = refusal([
    { name: 'heh-1', role: 'hub', peers: ['market'], sends: ['report'] },
    { name: 'market', role: 'market' },
  ]);
  assert.match(market.message, 'cannot have the market "market" as a peer');
});

test.run();
