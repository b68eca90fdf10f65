/**
 * `ebadge provision` without a broker: what it writes (definitions 0600, a 0700 folder per party with its config
 * and, for a password party, broker.pw 0600), that no password reaches stdout or stderr, that a second run keeps
 * every password and leaves an edited config as it is (this run's beside it, .new), that a passwordFile is used
 * and an EXTERNAL party gets none; bad files exit 1 naming the path,
 * bad command lines exit 2. `--apply` runs against a throw-away broker in test/integration/provision.test.ts.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../../src/cli.js';
import type { Definitions } from '../../../src/provision/index.js';

const test = suite('ebadge provision');

let dir = '';
test.before.each(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'ebadge-provision-'));
});
test.after.each(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function cli(...argv: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err };
}

function parties(list: Record<string, unknown>[]): string {
  const file = path.join(dir, 'parties.json');
  writeFileSync(file, JSON.stringify({ format: 'ebadge-parties/1', url: 'amqps://broker.example', parties: list }));
  return file;
}

const mode = (f: string): number => statSync(f).mode & 0o777;

const PARTIES = [
  { name: 'vpp-acme', role: 'aggregator', peers: ['heh-b827ebea02c1', 'heh-b827ebea02c2'] },
  { name: 'heh-b827ebea02c1', role: 'hub' },
  { name: 'heh-b827ebea02c2', role: 'hub', auth: 'external' },
  { name: 'ops', role: 'operator', peers: ['heh-b827ebea02c1'], passwordFile: 'ops.pw' },
];

test('writes the definitions, and per party its config and password file, secrets 0600 in 0700 folders', async () => {
  writeFileSync(path.join(dir, 'ops.pw'), 'the operators own password\n', { mode: 0o600 });
  const out = path.join(dir, 'out');
  const r = await cli('provision', parties(PARTIES), '--out', out);
  assert.is(r.code, 0, r.err.join('\n'));
  assert.equal(r.err, []);
  assert.is(mode(out), 0o700);
  assert.is(mode(path.join(out, 'definitions.json')), 0o600);
  const defs = JSON.parse(readFileSync(path.join(out, 'definitions.json'), 'utf8')) as Definitions;
  assert.equal(defs.users.map((u) => u.name).sort(), [
    'guest',
    'heh-b827ebea02c1',
    'heh-b827ebea02c2',
    'ops',
    'vpp-acme',
  ]);
  const pw = (name: string): string => readFileSync(path.join(out, name, 'broker.pw'), 'utf8').trim();
  for (const name of ['vpp-acme', 'heh-b827ebea02c1', 'ops']) {
    assert.is(mode(path.join(out, name)), 0o700, name);
    assert.is(mode(path.join(out, name, 'broker.pw')), 0o600, name);
  }
  assert.is(pw('ops'), 'the operators own password');
  assert.is(pw('vpp-acme').length, 43, '32 random bytes, base64url');
  assert.is.not(pw('vpp-acme'), pw('heh-b827ebea02c1'));
  const printed = [...r.out, ...r.err].join('\n');
  for (const name of ['vpp-acme', 'heh-b827ebea02c1', 'ops']) assert.not.ok(printed.includes(pw(name)), name);
  assert.not.ok(readFileSync(path.join(out, 'definitions.json'), 'utf8').includes(pw('vpp-acme')));
  assert.throws(() => statSync(path.join(out, 'heh-b827ebea02c2', 'broker.pw')), /ENOENT/);
  const hub = JSON.parse(readFileSync(path.join(out, 'heh-b827ebea02c1', 'hub.json'), 'utf8'));
  assert.equal(hub.broker, {
    url: 'amqps://broker.example/ebadge',
    username: 'heh-b827ebea02c1',
    passwordFile: 'broker.pw',
  });
  const ops = JSON.parse(readFileSync(path.join(out, 'ops', 'bus.json'), 'utf8'));
  assert.is(ops.name, 'ops');
  assert.match(r.out.join('\n'), 'ops/bus.json: operator ops, 1 peer(s); password from ops.pw');
  assert.match(r.out.join('\n'), 'heh-b827ebea02c2/hub.json: hub heh-b827ebea02c2, 1 peer(s); EXTERNAL');
  assert.match(r.out[0] as string, '4 party users');
  assert.match(r.out.at(-1) as string, 'rabbitmqctl import_definitions');
});

test('a second run keeps every generated password; a party turned EXTERNAL loses its password file', async () => {
  const out = path.join(dir, 'out');
  const file = parties(PARTIES.slice(0, 3));
  assert.is((await cli('provision', file, '--out', out)).code, 0);
  const before = readFileSync(path.join(out, 'vpp-acme', 'broker.pw'), 'utf8');
  const again = await cli('provision', parties(PARTIES.slice(0, 3)), '--out', out);
  assert.is(again.code, 0);
  assert.is(readFileSync(path.join(out, 'vpp-acme', 'broker.pw'), 'utf8'), before);
  assert.match(again.out.join('\n'), 'vpp-acme, 2 peer(s); password kept in broker.pw');
  const external = PARTIES.slice(0, 3).map((p) => (p.name === 'vpp-acme' ? { ...p, auth: 'external' } : p));
  assert.is((await cli('provision', parties(external), '--out', out)).code, 0);
  assert.throws(() => statSync(path.join(out, 'vpp-acme', 'broker.pw')), /ENOENT/);
});

test("a second run keeps the operator's hub.json byte for byte; what it would write goes to hub.json.new, said on its line", async () => {
  const out = path.join(dir, 'out');
  const hubJson = path.join(out, 'heh-b827ebea02c1', 'hub.json');
  const two = [{ ...PARTIES[0], peers: ['heh-b827ebea02c1'] }, PARTIES[1] as Record<string, unknown>];
  assert.is((await cli('provision', parties(two), '--out', out)).code, 0);
  const generated = readFileSync(hubJson, 'utf8');
  const edited = generated.replace('{\n', '{\n  "stateDir": "state",\n  "allowClockChange": true,\n');
  writeFileSync(hubJson, edited);
  // A peer added: the run has something new to say about this hub.
  const more = [...two, { name: 'dso-1', role: 'dso', peers: ['heh-b827ebea02c1'] }];
  const again = await cli('provision', parties(more), '--out', out);
  assert.is(again.code, 0, again.err.join('\n'));
  assert.is(readFileSync(hubJson, 'utf8'), edited);
  const neu = JSON.parse(readFileSync(`${hubJson}.new`, 'utf8'));
  assert.equal(neu.peers.map((p: { name: string }) => p.name).sort(), ['dso-1', 'vpp-acme']);
  assert.is(mode(`${hubJson}.new`), 0o644);
  assert.match(
    again.out.join('\n'),
    `heh-b827ebea02c1/hub.json: hub heh-b827ebea02c1, 2 peer(s); password kept in broker.pw; hub.json kept as it is: this run's, which differs, is in ${hubJson}.new to merge`,
  );
  // Untouched files are no news: the same run on an unedited bus.json says nothing of it and writes no .new.
  assert.not.match(again.out.join('\n'), 'bus.json kept');
  assert.throws(() => statSync(path.join(out, 'vpp-acme', 'bus.json.new')), /ENOENT/);
  // Merged: the next run finds nothing to say and removes the stale .new.
  writeFileSync(hubJson, readFileSync(`${hubJson}.new`));
  const merged = await cli('provision', parties(more), '--out', out);
  assert.is(merged.code, 0);
  assert.not.match(merged.out.join('\n'), 'kept as it is');
  assert.throws(() => statSync(`${hubJson}.new`), /ENOENT/);
});

test('a hub.json nobody edited since the last run is updated in place: no .new, said on its line', async () => {
  const out = path.join(dir, 'out');
  const hubJson = path.join(out, 'heh-b827ebea02c1', 'hub.json');
  const two = [{ ...PARTIES[0], peers: ['heh-b827ebea02c1'] }, PARTIES[1] as Record<string, unknown>];
  assert.is((await cli('provision', parties(two), '--out', out)).code, 0);
  const more = [...two, { name: 'dso-1', role: 'dso', peers: ['heh-b827ebea02c1'] }];
  const again = await cli('provision', parties(more), '--out', out);
  assert.is(again.code, 0, again.err.join('\n'));
  const now = JSON.parse(readFileSync(hubJson, 'utf8'));
  assert.equal(now.peers.map((p: { name: string }) => p.name).sort(), ['dso-1', 'vpp-acme']);
  assert.throws(() => statSync(`${hubJson}.new`), /ENOENT/);
  assert.match(again.out.join('\n'), 'hub.json updated: nobody had edited it since the last run');
  // Edited after that update: kept, as any edited file.
  writeFileSync(hubJson, readFileSync(hubJson, 'utf8').replace('{\n', '{\n  "stateDir": "state",\n'));
  const edited = readFileSync(hubJson, 'utf8');
  const third = await cli('provision', parties(two), '--out', out);
  assert.is(third.code, 0);
  assert.is(readFileSync(hubJson, 'utf8'), edited);
  assert.match(third.out.join('\n'), 'hub.json kept as it is');
  // A file with no record of ours (written by hand, or by a run before the record existed) is taken as edited.
  rmSync(path.join(out, 'heh-b827ebea02c1', '.hub.json.sha256'));
  writeFileSync(hubJson, readFileSync(`${hubJson}.new`, 'utf8').replace('"peers"', '"stateDir": "s",\n  "peers"'));
  assert.match((await cli('provision', parties(more), '--out', out)).out.join('\n'), 'hub.json kept as it is');
});

test('an invalid parties file exits 1 naming the file and path, and writes nothing', async () => {
  const out = path.join(dir, 'out');
  const bad = await cli('provision', parties([{ name: 'heh to', role: 'hub' }]), '--out', out);
  assert.is(bad.code, 1);
  assert.match(bad.err.join('\n'), /parties\.json: \$\.parties\[0\]\.name: "heh to" cannot be a party name/);
  assert.throws(() => statSync(out), /ENOENT/);
  writeFileSync(path.join(dir, 'broken.json'), '{');
  const broken = await cli('provision', path.join(dir, 'broken.json'), '--out', out);
  assert.is(broken.code, 1);
  assert.match(broken.err.join('\n'), 'not valid JSON');
  const noPw = await cli('provision', parties([{ ...PARTIES[3], peers: [] }]), '--out', out);
  assert.is(noPw.code, 1);
  assert.match(noPw.err.join('\n'), 'the password file of ops');
});

test('--mosquitto: the ACL and the password file (0600), the listener (ebadge.conf), configs for that broker, no definitions; its mistakes', async () => {
  writeFileSync(path.join(dir, 'ops.pw'), 'the operators own password\n', { mode: 0o600 });
  const out = path.join(dir, 'out');
  const r = await cli('provision', parties(PARTIES), '--out', out, '--mosquitto', 'mqtts://mqtt.example:8883');
  assert.is(r.code, 0, r.err.join('\n'));
  assert.throws(() => statSync(path.join(out, 'definitions.json')), /ENOENT/);
  for (const f of ['acl', 'passwords']) assert.is(mode(path.join(out, 'mosquitto', f)), 0o600, f);
  // The listener, naming the files where provision wrote them (absolute), every client id the login name.
  const conf = path.join(out, 'mosquitto', 'ebadge.conf');
  assert.is(mode(conf), 0o644, 'no secret in it');
  const lines = readFileSync(conf, 'utf8')
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'));
  const files = path.resolve(out, 'mosquitto');
  assert.equal(lines, [
    'listener 8883',
    'allow_anonymous false',
    `password_file ${files}/passwords`,
    `acl_file ${files}/acl`,
    'use_username_as_clientid true',
    `cafile ${files}/ca.pem`,
    `certfile ${files}/server.pem`,
    `keyfile ${files}/server.key`,
    'require_certificate true',
    'use_identity_as_username true',
  ]);
  const acl = readFileSync(path.join(out, 'mosquitto', 'acl'), 'utf8');
  assert.match(acl, 'user vpp-acme\n');
  assert.match(acl, 'topic write activate/vpp-acme/heh-b827ebea02c2/#');
  const passwords = readFileSync(path.join(out, 'mosquitto', 'passwords'), 'utf8');
  assert.equal(
    passwords
      .trim()
      .split('\n')
      .map((l) => l.split(':')[0]),
    ['vpp-acme', 'heh-b827ebea02c1', 'ops'],
    'none for the certificate party',
  );
  assert.not.ok(passwords.includes('the operators own password'), 'hashed');
  const hub = JSON.parse(readFileSync(path.join(out, 'heh-b827ebea02c1', 'hub.json'), 'utf8'));
  assert.equal(hub.broker, {
    url: 'mqtts://mqtt.example:8883',
    username: 'heh-b827ebea02c1',
    passwordFile: 'broker.pw',
  });
  assert.is(hub.declareExchanges, undefined);
  const ext = JSON.parse(readFileSync(path.join(out, 'heh-b827ebea02c2', 'hub.json'), 'utf8'));
  assert.equal(ext.broker, {
    url: 'mqtts://mqtt.example:8883',
    external: true,
    tls: { cert: 'client.pem', key: 'client.key' },
  });
  const vpp = JSON.parse(readFileSync(path.join(out, 'vpp-acme', 'bus.json'), 'utf8'));
  assert.is(vpp.url, 'mqtts://mqtt.example:8883');
  assert.match(r.out.join('\n'), 'require_certificate true, use_identity_as_username true');
  assert.match(
    r.out.join('\n'),
    'ebadge.conf is its listener (allow_anonymous false, password_file, acl_file, use_username_as_clientid true',
  );
  // Its mistakes, each naming what is wrong; nothing written.
  const bad = async (url: string, what: string, list = PARTIES): Promise<void> => {
    const o = path.join(dir, `bad-${Math.random().toString(36).slice(2)}`);
    const b = await cli('provision', parties(list), '--out', o, '--mosquitto', url);
    assert.is(b.code, 1, url);
    assert.match(b.err.join('\n'), what);
    assert.throws(() => statSync(o), /ENOENT/, 'nothing written');
  };
  await bad(
    'mqtt://mqtt.example',
    'heh-b827ebea02c2 logs in with its certificate ("auth": "external"), which needs mqtts://',
  );
  await bad('amqp://mqtt.example', 'expected mqtt://host[:port] or mqtts://host[:port]');
  await bad('mqtts://mqtt.example/vhost', 'no path, query or fragment');
  const dotted = [
    { name: 'vpp.acme', role: 'aggregator', peers: ['heh-1'] },
    { name: 'heh-1', role: 'hub' },
  ];
  await bad('mqtt://mqtt.example', '"vpp.acme" cannot be an MQTT topic level', dotted);
  const usage = await cli('provision', parties(PARTIES), '--out', out, '--mosquitto', 'mqtt://m', '--apply');
  assert.is(usage.code, 2);
});

test('usage errors exit 2', async () => {
  const file = parties(PARTIES.slice(0, 2));
  assert.is((await cli('provision', file)).code, 2, '--out missing');
  assert.is((await cli('provision', '--out', dir)).code, 2, 'no parties file');
  assert.is((await cli('provision', file, file, '--out', dir)).code, 2, 'two files');
  assert.is((await cli('provision', file, '--out', dir, '--node', 'rabbit@x')).code, 2, '--node without --apply');
  assert.is((await cli('provision', file, '--out', dir, '--colour')).code, 2, 'unknown flag');
});

test.run();
