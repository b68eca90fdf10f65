/**
 * The files a hub.json names (docs/operations.md, "Files and modes"): relative paths resolve against the folder of
 * hub.json, whatever the working directory (systemd's is /); a secret open to others, writable by its group or
 * readable by a group the hub is not in, a world-writable trusted file, a missing file: each refused with one sentence
 * naming the file, its mode and the command that fixes it, and `check-config` says exactly what the run says (78).
 */
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { FileReader } from '../../../src/core/file-check.js';
import { generateIdentity, nodeBackend, writePrivateKeyFile } from '../../../src/crypto/index.js';
import { ConfigError, exampleConfig, loadConfig, readPasswordFile } from '../../../src/device/config/index.js';
import { brokerSettings, hubMain } from '../../../src/device/main.js';
import { sleep } from '../../helpers/deadline.js';

const test = suite('config: the files it names');

/** A self-signed client certificate (CN=heh-test, valid until 2126) and its key: the TLS files are parsed. */
const CERT = `-----BEGIN CERTIFICATE-----
MIIBfTCCASOgAwIBAgIUbKeU6Y6X4UkZdUJfiKuCKQYUXMkwCgYIKoZIzj0EAwIw
EzERMA8GA1UEAwwIaGVoLXRlc3QwIBcNMjYxMjA1MTIxOTQ1WhgPMjEyNjExMTEx
MjE5NDVaMBMxETAPBgNVBAMMCGhlaC10ZXN0MFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAExYV9IG79TPAL8dFYmsUbqyQfi7OGdQIPzqbNnprucTBVu8+P1gqbcVFn
AKLYyOva0j2XQbKp76C3QiIdRjHBPKNTMFEwHQYDVR0OBBYEFLZG8b4WvgDJ/bN2
znVGsFich9KaMB8GA1UdIwQYMBaAFLZG8b4WvgDJ/bN2znVGsFich9KaMA8GA1Ud
EwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIgBfWayYPd7Dwuvy5iTUN/Gbpo
CnYFeXe695SuOxpMSLACIQC25XQSfI7FwEMroLGWE2uj3s6nazVh7lzqOG0ZDrHj
Ew==
-----END CERTIFICATE-----
`;
const KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgj9b9V8NjScQTGWNH
IDuJ4Otwi79BMP0mPUbR/HIA2VehRANCAATFhX0gbv1M8Avx0ViaxRurJB+Ls4Z1
Ag/Ops2emu5xMFW7z4/WCptxUWcAotjI69rSPZdBsqnvoLdCIh1GMcE8
-----END PRIVATE KEY-----
`;

interface Site {
  dir: string;
  file: string;
  /** Writes hub.json: the example, with these top-level keys replaced. */
  write(patch: Record<string, unknown>, mode?: number): void;
  /** A file next to hub.json with this content and mode. */
  put(name: string, content: string, mode: number): string;
}

async function inSite(fn: (s: Site) => void | Promise<void>): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'heh-config-files-'));
  const file = path.join(dir, 'hub.json');
  const site: Site = {
    dir,
    file,
    write(patch, mode = 0o640) {
      fs.writeFileSync(file, JSON.stringify({ ...(exampleConfig('state') as object), ...patch }));
      fs.chmodSync(file, mode);
    },
    put(name, content, mode) {
      const p = path.join(dir, name);
      fs.mkdirSync(path.dirname(p), { recursive: true });
      fs.writeFileSync(p, content);
      fs.chmodSync(p, mode);
      return p;
    },
  };
  try {
    await fn(site);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function refusal(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  assert.unreachable('expected a ConfigError, but the configuration was accepted');
  throw new Error('unreachable');
}

const guestBroker = (passwordFile: string): Record<string, unknown> => ({
  url: 'amqp://127.0.0.1:5672',
  username: 'guest',
  passwordFile,
});

test("every relative path resolves against hub.json's folder, not the working directory; absolute ones stay", () =>
  inSite((s) => {
    s.put('secrets/broker.pw', 'guest\n', 0o600);
    s.put('keys/keyring.json', '{}', 0o644);
    s.put('keys/hub.key', '{}', 0o600);
    s.put('data/pv.csv', 't,p\n0,1\n', 0o644);
    s.write({
      stateDir: 'state',
      broker: guestBroker('secrets/broker.pw'),
      crypto: { keyring: 'keys/keyring.json', privateKey: './keys/hub.key' },
      devices: [
        { name: 'pv', meter: { kind: 'csv', path: 'data/pv.csv' } },
        { name: 'ev', meter: { kind: 'file', path: '/sys/ev/power' }, actuator: { kind: 'file', path: 'relay' } },
      ],
    });
    const cwd = process.cwd();
    assert.not.equal(cwd, s.dir);
    const c = loadConfig(path.relative(cwd, s.file));
    assert.is(c.stateDir, path.join(s.dir, 'state'));
    assert.is(c.broker.passwordFile, path.join(s.dir, 'secrets/broker.pw'));
    assert.equal(c.crypto, {
      keyring: path.join(s.dir, 'keys/keyring.json'),
      privateKey: path.join(s.dir, 'keys/hub.key'),
      backend: 'auto',
    });
    assert.equal(c.devices[0]?.meter, { kind: 'csv', path: path.join(s.dir, 'data/pv.csv'), loop: true });
    assert.equal(c.devices[1]?.meter, { kind: 'file', path: '/sys/ev/power', scale: 1 });
    assert.equal(c.devices[1]?.actuator, { kind: 'file', path: path.join(s.dir, 'relay'), on: '1', off: '0' });
  }));

test('TLS files resolve too; the key is a secret, the CA and certificate only must not be world-writable', () =>
  inSite((s) => {
    s.put('tls/ca.pem', CERT, 0o644);
    s.put('tls/cert.pem', CERT, 0o644);
    const key = s.put('tls/key.pem', KEY, 0o600);
    const broker = {
      url: 'amqps://broker.example',
      external: true,
      tls: { ca: 'tls/ca.pem', cert: 'tls/cert.pem', key: 'tls/key.pem' },
    };
    s.write({ broker });
    assert.equal(loadConfig(s.file).broker.tls, {
      ca: path.join(s.dir, 'tls/ca.pem'),
      cert: path.join(s.dir, 'tls/cert.pem'),
      key,
    });
    fs.chmodSync(key, 0o640);
    loadConfig(s.file);
    fs.chmodSync(key, 0o644);
    const err = refusal(() => loadConfig(s.file));
    assert.is(err.path, '$.broker.tls.key');
    assert.is(err.found, `${key} with mode 0644, open to every user: run chmod o-rwx ${key}`);
    fs.chmodSync(key, 0o600);
    fs.chmodSync(path.join(s.dir, 'tls/ca.pem'), 0o666);
    const ca = refusal(() => loadConfig(s.file));
    assert.is(ca.path, '$.broker.tls.ca');
    assert.match(ca.found, / with mode 0666, writable by every user: run chmod o-w /);
  }));

test('TLS files that are not what they must be are refused at load (78), not retried at every connection', () =>
  inSite((s) => {
    const ca = s.put('ca.pem', CERT, 0o644);
    const cert = s.put('cert.pem', CERT, 0o644);
    const key = s.put('key.pem', KEY, 0o600);
    s.write({ broker: { url: 'amqps://broker.example', external: true, tls: { ca, cert, key } } });
    loadConfig(s.file);
    // Node ignores a `ca` without a PEM certificate and trusts nothing: the log then said to set broker.tls.ca.
    const der = new X509Certificate(CERT).raw;
    const cases: [string, string | Buffer, string, RegExp][] = [
      [ca, der, '$.broker.tls.ca', /, DER \(binary\) rather than PEM: convert it \(openssl x509 -inform der /],
      [ca, '', '$.broker.tls.ca', /, an empty file$/],
      [ca, KEY, '$.broker.tls.ca', /, a private key, not a certificate$/],
      [ca, 'hello\n', '$.broker.tls.ca', /, no PEM block/],
      [cert, der, '$.broker.tls.cert', /, DER \(binary\) rather than PEM/],
      [key, 'garbage\n', '$.broker.tls.key', /, no PEM block/],
      [key, CERT, '$.broker.tls.key', /, a certificate, not a private key$/],
      [
        key,
        generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }),
        '$.broker.tls.key',
        /, the key of another certificate$/,
      ],
    ];
    for (const [file, content, at, found] of cases) {
      const was = fs.readFileSync(file);
      fs.writeFileSync(file, content);
      const err = refusal(() => loadConfig(s.file));
      assert.is(err.path, at, `${at} ${String(found)}`);
      assert.match(err.found, found);
      assert.not.match(err.found, /MI[GI]|KEY-----/, 'the text of the file is not quoted');
      fs.writeFileSync(file, was);
    }
    loadConfig(s.file);
  }));

test("EXTERNAL: the broker user the log and the fixes name is the certificate's CN, not guest", () =>
  inSite((s) => {
    const cert = s.put('cert.pem', CERT, 0o644);
    const key = s.put('key.pem', KEY, 0o600);
    s.write({ broker: { url: 'amqps://broker.example/ebadge', external: true, tls: { cert, key } } });
    // It said guest: a vhost refused told the operator to run rabbitmqctl set_permissions -p ebadge guest.
    assert.is(brokerSettings(loadConfig(s.file)).username, 'heh-test');
  }));

test('a secret: 0600 and 0640 pass; open to others or writable by its group is refused, with the fix', () =>
  inSite((s) => {
    const pw = s.put('broker.pw', 'guest\n', 0o640);
    s.write({ broker: guestBroker('broker.pw') });
    loadConfig(s.file);
    fs.chmodSync(pw, 0o600);
    loadConfig(s.file);
    const cases: [number, string][] = [
      [0o644, 'open to every user: run chmod o-rwx'],
      [0o604, 'open to every user: run chmod o-rwx'],
      [0o660, 'writable by its group: run chmod g-w'],
      [0o662, 'open to every user and writable by its group: run chmod g-w,o-rwx'],
    ];
    for (const [mode, what] of cases) {
      fs.chmodSync(pw, mode);
      const err = refusal(() => loadConfig(s.file));
      assert.is(err.path, '$.broker.passwordFile');
      assert.is(
        err.message,
        `${s.file}: $.broker.passwordFile: expected a secret file only its owner and the hub's group may read and only its owner may write, found ${pw} with mode 0${mode.toString(8)}, ${what} ${pw}`,
      );
    }
  }));

test('a password file: one line, spaces and line ends around it dropped; empty or several lines refused', () =>
  inSite((s) => {
    const pw = s.put('broker.pw', '  s3cret \r\n', 0o600);
    s.write({ broker: guestBroker('broker.pw') });
    loadConfig(s.file);
    assert.is(readPasswordFile(pw, s.file), 's3cret');
    const cases: [string, string][] = [
      ['', 'an empty file'],
      ['\n', 'an empty file'],
      ['root:$6$x:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n', '2 lines'],
      ['a'.repeat(5000), 'a larger one'],
    ];
    for (const [text, found] of cases) {
      fs.writeFileSync(pw, text);
      const err = refusal(() => loadConfig(s.file));
      assert.equal([err.path, err.found], ['$.broker.passwordFile', found], JSON.stringify(text.slice(0, 20)));
      assert.not.match(err.message, 'root:', 'what the file holds is never quoted');
    }
  }));

test('a group-readable secret whose group the hub is not in is refused (root, checking for the hub, is not)', () =>
  inSite((s) => {
    const pw = s.put('broker.pw', 'guest\n', 0o640);
    s.write({ broker: guestBroker('broker.pw') });
    const gid = fs.statSync(pw).gid;
    // A state directory the user 4242 may write, so that only the secret is in question.
    fs.mkdirSync(path.join(s.dir, 'state'));
    fs.chmodSync(path.join(s.dir, 'state'), 0o777);
    const member: FileReader = { uid: 4242, gid: gid + 1, groups: [gid + 1, gid] };
    const stranger: FileReader = { uid: 4242, gid: gid + 1, groups: [gid + 1] };
    loadConfig(s.file, member);
    const err = refusal(() => loadConfig(s.file, stranger));
    assert.is(err.path, '$.broker.passwordFile');
    assert.match(
      err.found,
      new RegExp(
        `^${pw} with mode 0640 and group \\S+, which the user 4242 is not in: run chgrp \\S+ ${pw}, or chmod g-rwx ${pw} if the hub's user owns it$`,
      ),
    );
    loadConfig(s.file, { uid: 0, gid: gid + 1, groups: [gid + 1] });
    fs.chmodSync(pw, 0o600);
    loadConfig(s.file, stranger);
  }));

test('the private key and the keyring are checked at load (check-config), not only when sealing starts', () =>
  inSite((s) => {
    const key = s.put('hub.key', '{}', 0o600);
    const ring = s.put('keyring.json', '{}', 0o644);
    s.write({ crypto: { keyring: 'keyring.json', privateKey: 'hub.key' } });
    loadConfig(s.file);
    fs.chmodSync(key, 0o644);
    assert.is(refusal(() => loadConfig(s.file)).path, '$.crypto.privateKey');
    fs.chmodSync(key, 0o600);
    fs.chmodSync(ring, 0o646);
    const err = refusal(() => loadConfig(s.file));
    assert.is(err.path, '$.crypto.keyring');
    assert.is(err.expected, 'a file no other user may write');
    fs.chmodSync(ring, 0o644);
    fs.rmSync(key);
    const gone = refusal(() => loadConfig(s.file));
    assert.is(gone.message, `${s.file}: $.crypto.privateKey: expected an existing file, found no file ${key} (ENOENT)`);
  }));

test('hub.json itself must not be world-writable; a missing password or CSV file is named', () =>
  inSite((s) => {
    s.write({}, 0o666);
    const err = refusal(() => loadConfig(s.file));
    assert.is(err.path, '$');
    assert.is(err.found, `${s.file} with mode 0666, writable by every user: run chmod o-w ${s.file}`);
    s.write({ broker: guestBroker('broker.pw') });
    assert.is(refusal(() => loadConfig(s.file)).found, `no file ${path.join(s.dir, 'broker.pw')} (ENOENT)`);
    s.write({ devices: [{ name: 'pv', meter: { kind: 'csv', path: 'pv.csv' } }] });
    const csv = refusal(() => loadConfig(s.file));
    assert.is(csv.path, '$.devices[0].meter.path');
    assert.is(csv.found, `no file ${path.join(s.dir, 'pv.csv')} (ENOENT)`);
  }));

test('check-config and the run refuse a bad secret with the same one line, exit 78', () =>
  inSite(async (s) => {
    const pw = s.put('broker.pw', 'guest\n', 0o644);
    s.write({ broker: guestBroker('broker.pw') });
    const check = await said(['check-config', '--config', s.file]);
    const run = await said(['--config', s.file]);
    assert.equal(check, run);
    assert.equal(check, [
      78,
      [],
      [
        `configuration error: ${s.file}: $.broker.passwordFile: expected a secret file only its owner and the hub's group may read and only its owner may write, found ${pw} with mode 0644, open to every user: run chmod o-rwx ${pw}`,
      ],
    ]);
    fs.chmodSync(pw, 0o640);
    const ok = await said(['check-config', '--config', s.file]);
    assert.is(ok[0], 0, ok[2].join('\n'));
  }));

test('a malformed CSV is a configuration error naming its line, from check-config and the run alike (exit 78)', () =>
  inSite(async (s) => {
    const csv = s.put('pv.csv', 't,p\n2026-01-01T00:00:00Z,1\n2026-01-01T00:01:00Z,abc\n', 0o644);
    s.write({ devices: [{ name: 'pv', meter: { kind: 'csv', path: 'pv.csv' } }] });
    const check = await said(['check-config', '--config', s.file]);
    const run = await said(['--config', s.file]);
    assert.equal(check, run);
    assert.is(check[0], 78);
    assert.equal(check[2].length, 1, 'one line, no stack');
    assert.match(
      check[2][0] ?? '',
      `configuration error: ${s.file}: $.devices[0].meter.path: expected a CSV file the meter can replay, found csv ${csv} line 3, column 2`,
    );
  }));

test("the state directory: one the hub's user may write, or create; else the folder, its mode and the fix", () =>
  inSite((s) => {
    s.write({ stateDir: 'var/state' });
    const hub: FileReader = { uid: 4242, gid: 4242, groups: [4242] };
    // Missing, in a folder the user may write (as root made it, open to all): created by the run.
    const varDir = path.join(s.dir, 'var');
    fs.mkdirSync(varDir, { mode: 0o777 });
    fs.chmodSync(varDir, 0o777);
    loadConfig(s.file, hub);
    // Missing, in a folder the user may not write.
    fs.chmodSync(varDir, 0o755);
    const missing = refusal(() => loadConfig(s.file, hub));
    assert.is(missing.path, '$.stateDir');
    assert.is(missing.expected, 'a state directory the user 4242 may write, or create');
    assert.match(
      missing.found,
      new RegExp(
        `^no directory ${s.dir}/var/state, and the user 4242 may not create it in ${varDir} \\(\\S+'s, mode 0755\\): create it: install -d -o 4242 -g 4242 -m 0700 ${s.dir}/var/state$`,
      ),
    );
    // There, but not the user's.
    fs.mkdirSync(path.join(varDir, 'state'), { mode: 0o700 });
    const foreign = refusal(() => loadConfig(s.file, hub));
    assert.match(foreign.found, new RegExp(`^${s.dir}/var/state, which the user 4242 may not write: run chown 4242 `));
    // Its own, or root checking for itself: fine.
    loadConfig(s.file, { uid: fs.statSync(varDir).uid, gid: 0, groups: [] });
    loadConfig(s.file, { uid: 0, gid: 0, groups: [] });
  }));

/** hubMain as systemd runs it and as the operator checks: exit code, stdout, stderr. */
async function said(argv: string[]): Promise<[number, string[], string[]]> {
  const out: string[] = [];
  const err: string[] = [];
  // A run that got past the checks would go on: it is stopped, and the comparison fails.
  const code = await hubMain(argv, { io: { out: (l) => out.push(l), err: (l) => err.push(l) }, stop: sleep(3000) });
  return [code, out, err];
}

test('check-config and the run: a state directory that cannot be made is the same one line, exit 78 (the run died 70)', () =>
  inSite(async (s) => {
    s.put('not-a-dir', 'x', 0o644);
    s.write({ stateDir: 'not-a-dir/state' });
    const check = await said(['check-config', '--config', s.file]);
    const run = await said(['--config', s.file]);
    assert.equal(check, run);
    assert.equal(check, [
      78,
      [],
      [
        `configuration error: ${s.file}: $.stateDir: expected a state directory the user ${os.userInfo().username} may write, or create, found ${path.join(s.dir, 'not-a-dir/state')}, which cannot be read (ENOTDIR)`,
      ],
    ]);
  }));

/** An identity and a keyring naming `peers` (with keys of their own), written next to hub.json. */
async function keys(s: Site, peers: string[], allow = ['report']): Promise<Record<string, unknown>> {
  const hub = generateIdentity('heh-example', nodeBackend);
  await writePrivateKeyFile(path.join(s.dir, 'hub.key'), hub.privateKey);
  const ring: Record<string, unknown> = {};
  for (const name of peers) {
    const e = generateIdentity(name, nodeBackend).publicEntry;
    ring[name] = { ed25519: e.ed25519, x25519: e.x25519, maySend: allow, mayReceive: allow };
  }
  s.put('keyring.json', JSON.stringify({ format: 'heh-keyring/1', peers: ring }), 0o644);
  return { keyring: 'keyring.json', privateKey: 'hub.key' };
}

test('crypto on: a peer without keys is refused (it would get clear text) unless "clearText": true; keys for a peer not configured are a warning', () =>
  inSite(async (s) => {
    const crypto = await keys(s, ['vpp-other']);
    s.write({ crypto, stateDir: 'state' });
    const check = await said(['check-config', '--config', s.file]);
    assert.equal(check, await said(['--config', s.file]), 'check-config and the run say the same');
    assert.equal(check, [
      78,
      [],
      [
        `configuration error: ${s.file}: $.peers[0]: expected keys for vpp-example in the keyring (crypto is on: without them its messages go and are accepted in clear text), or "clearText": true to allow that, found no keys for vpp-example in ${path.join(s.dir, 'keyring.json')}`,
      ],
    ]);
    // Clear text on purpose: accepted, and the unused keys of vpp-other are said, by check-config and by the run.
    // A broker nobody listens on: the run goes on without one (a unit test declares nothing on a real broker).
    const nowhere = { url: 'amqp://127.0.0.1:1' };
    s.write({ crypto, stateDir: 'state', broker: nowhere, peers: [{ name: 'vpp-example', clearText: true }] });
    const [code, out, err] = await said(['check-config', '--config', s.file]);
    assert.is(code, 0, err.join('\n'));
    assert.match(out.join('\n'), ': OK (heh-example');
    const warning = `${path.join(s.dir, 'keyring.json')} has keys for peer(s) hub.json does not name: vpp-other; unused (add them to $.peers, or remove them from the keyring)`;
    assert.equal(err, [`warning: ${warning}`]);
    const ran = await said(['--config', s.file]);
    assert.is(ran[0], 0);
    const logged = ran[1]
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => String(l['msg']).startsWith('configuration warning'));
    assert.equal(
      logged.map((l) => [l['level'], l['msg']]),
      [['warn', `configuration warning: ${warning}`]],
    );
    // Keys for the peer: no warning about it, nothing refused.
    const both = await keys(s, ['vpp-example']);
    s.write({ crypto: both, stateDir: 'state', broker: nowhere });
    assert.equal((await said(['check-config', '--config', s.file])).slice(0, 2), [
      0,
      [`${s.file}: OK (heh-example, 2 device(s), peers vpp-example)`],
    ]);
    // Its entry as keygen prints it, nothing allowed: every sealed message to or from it would be refused.
    s.write({ crypto: await keys(s, ['vpp-example'], []), stateDir: 'state', broker: nowhere });
    assert.equal((await said(['check-config', '--config', s.file]))[2], [
      `warning: ${path.join(s.dir, 'keyring.json')}: the keyring lets vpp-example send and receive nothing: every sealed message to or from it is refused (TYPE_NOT_ALLOWED); fill in its maySend and mayReceive (docs/crypto.md)`,
    ]);
  }));

test.run();
