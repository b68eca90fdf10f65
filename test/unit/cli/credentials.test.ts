/**
 * Whom the CLI logs in as (src/cli/credentials.ts), without a broker: the entity, with a password from a file or
 * the environment; guest only when the URL names it, with a warning; a certificate's CN for EXTERNAL. What it
 * refuses, it refuses before connecting, with exit 2 and without quoting a password.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type ConnectOptions, parseUrl } from '../../../src/amqp/index.js';
import { type LoginSources, login } from '../../../src/cli/credentials.js';
import { main } from '../../../src/cli.js';

const test = suite('CLI credentials');

/** A self-signed certificate with CN=ops (never expires before 2126): only its subject is read. */
const OPS_CERT = `-----BEGIN CERTIFICATE-----
MIIBczCCARmgAwIBAgIUGASZIu+7YW1mF+GKjFCoPb2l1GQwCgYIKoZIzj0EAwIw
DjEMMAoGA1UEAwwDb3BzMCAXDTI2MTIwMzE3NDAxN1oYDzIxMjYxMTA5MTc0MDE3
WjAOMQwwCgYDVQQDDANvcHMwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAARNUAwg
8rQ9dMZfJZt6LxCP1W0RmSleElRQWY+z06rpclyTgNAG0ntvCVgNc2SfOq8LQhg8
JM/ZF3IIzSqVW15Io1MwUTAdBgNVHQ4EFgQU+LF93KtWtyJI02s4qP31cDHbijEw
HwYDVR0jBBgwFoAU+LF93KtWtyJI02s4qP31cDHbijEwDwYDVR0TAQH/BAUwAwEB
/zAKBggqhkjOPQQDAgNIADBFAiEAsSGuWXjOcmO0q0EtSShS9PuPTfhF7baIr1OB
umkLUQICIGzuTOaVMCfRIXApldiqZW5+G+kzvWTODmtOowEP/Xkr
-----END CERTIFICATE-----
`;

let dir = '';
test.before.each(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'ebadge-credentials-'));
});
test.after.each(() => {
  rmSync(dir, { recursive: true, force: true });
});

function file(name: string, text: string): string {
  const f = path.join(dir, name);
  writeFileSync(f, text, { mode: 0o600 });
  return f;
}

function sources(url: string, more: Partial<LoginSources> = {}): LoginSources & { url: ConnectOptions } {
  return { name: 'ops', url: parseUrl(url), urlFrom: '--url', external: false, env: {}, ...more };
}

test('the user is the entity; the password comes from --password-file, then the env file, then the env', () => {
  const pwFile = file('ops.pw', 'from-the-file\n');
  const a = sources('amqps://broker:5671/ebadge', {
    passwordFile: { file: pwFile, from: '--password-file' },
    env: { EBADGE_PASSWORD: 'from-the-env' },
  });
  const said = login(a);
  assert.is(a.url.username, 'ops');
  assert.is(a.url.password, 'from-the-file');
  assert.is(said, `connecting to broker:5671 (vhost ebadge) as ops (password from ${pwFile} (--password-file))`);
  const envFile = file('env.pw', 'from-env-file');
  const b = sources('amqp://broker', { env: { EBADGE_PASSWORD_FILE: envFile, EBADGE_PASSWORD: 'from-the-env' } });
  assert.match(login(b), `password from ${envFile} (EBADGE_PASSWORD_FILE)`);
  assert.is(b.url.password, 'from-env-file');
  const c = sources('amqp://ops@broker', { env: { EBADGE_PASSWORD: 'from-the-env' } });
  assert.match(login(c), 'as ops (password from EBADGE_PASSWORD)');
  assert.is(c.url.password, 'from-the-env');
  assert.not.ok([login(sources('amqp://b', { env: { EBADGE_PASSWORD: 'p' } }))].join().includes('from-the'));
});

test('no password: refused, never guest; a password in the URL: refused unless it is guest', () => {
  assert.throws(() => login(sources('amqp://broker')), /no password for the user ops: .* never falls back to guest/);
  let message = '';
  try {
    login(sources('amqp://ops:hunter2@broker'));
  } catch (err) {
    message = (err as Error).message;
  }
  assert.match(message, '--url: the URL holds a password');
  assert.not.match(message, 'hunter2');
  assert.throws(() => login(sources('amqp://alice@broker', { env: { EBADGE_PASSWORD: 'p' } })), /logs in as "alice"/);
  assert.throws(
    () => login(sources('amqp://broker', { env: { EBADGE_PASSWORD_FILE: path.join(dir, 'none') } })),
    /ENOENT/,
  );
  assert.throws(() => login(sources('amqp://broker', { env: { EBADGE_PASSWORD_FILE: file('e', '\n') } })), /empty/);
});

test('guest only when the URL names it, with a warning; its password is guest unless one is given', () => {
  const g = sources('amqp://guest@127.0.0.1:5672');
  assert.match(login(g), /^warning: connecting to 127\.0\.0\.1:5672 as guest, because --url names it/);
  assert.is(g.url.username, 'guest');
  assert.is(g.url.password, 'guest');
  const gg = sources('amqp://guest:guest@127.0.0.1');
  login(gg);
  assert.is(gg.url.password, 'guest');
});

test("EXTERNAL: the certificate's CN is the user, and must be the entity", () => {
  const cert = file('ops.pem', OPS_CERT);
  const e = sources('amqps://broker', { external: true, certFile: cert });
  assert.is(login(e), `connecting to broker:5671 as ops (EXTERNAL: the CN of ${cert})`);
  assert.is(e.url.mechanism, 'EXTERNAL');
  assert.throws(
    () => login(sources('amqps://broker', { name: 'vpp', external: true, certFile: cert })),
    /certificate .* is for "ops", so the broker would log us in as that user, not as vpp/,
  );
  assert.throws(() => login(sources('amqps://broker', { external: true })), /needs the client certificate/);
  assert.throws(
    () => login(sources('amqps://broker', { external: true, certFile: file('x.pem', 'nope') })),
    /not a readable PEM/,
  );
});

test('ebadge send refuses before connecting (exit 2) and says why; a config names its password file', async () => {
  const err: string[] = [];
  const io = { out: () => undefined, err: (l: string) => err.push(l) };
  const saved = { ...process.env };
  delete process.env['EBADGE_PASSWORD'];
  delete process.env['EBADGE_PASSWORD_FILE'];
  try {
    const args = ['send', '--as', 'ops', '--to', 'heh-1', '--url', 'amqp://127.0.0.1:1', 'set_clock', 'offset=1'];
    assert.is(await main(args, io), 2);
    assert.match(err.join('\n'), 'no password for the user ops');
    // The config's passwordFile is its neighbour: found from any working directory, then the connection fails (1).
    file('broker.pw', 'secret-of-ops');
    const cfg = file('bus.json', JSON.stringify({ url: 'amqp://127.0.0.1:1', name: 'ops', passwordFile: 'broker.pw' }));
    err.length = 0;
    assert.is(await main(['send', '--config', cfg, '--to', 'heh-1', 'set_clock', 'offset=1'], io), 1);
    assert.match(
      err[0] as string,
      `as ops (password from ${path.join(dir, 'broker.pw')} (the passwordFile of ${cfg}))`,
    );
    assert.not.ok(err.join('\n').includes('secret-of-ops'));
  } finally {
    process.env = saved;
  }
});

test('a config with inboxes is checked before connecting: shared, per-peer or { shards: K }', async () => {
  const err: string[] = [];
  const io = { out: () => undefined, err: (l: string) => err.push(l) };
  file('broker.pw', 'secret-of-vpp');
  const base = { url: 'amqp://127.0.0.1:1', name: 'vpp', passwordFile: 'broker.pw' };
  for (const inboxes of ['sharded', { shards: 'four' }, { shards: 4, more: 1 }, null]) {
    err.length = 0;
    const cfg = file('bus.json', JSON.stringify({ ...base, inboxes }));
    assert.is(await main(['send', '--config', cfg, '--to', 'heh-1', 'set_clock', 'offset=1'], io), 2, String(inboxes));
    assert.match(err.join('\n'), 'inboxes must be "shared", "per-peer" or { "shards": K }');
  }
  // A good one gets as far as connecting (refused here: exit 1).
  const cfg = file('bus.json', JSON.stringify({ ...base, inboxes: { shards: 4 } }));
  assert.is(await main(['send', '--config', cfg, '--to', 'heh-1', 'set_clock', 'offset=1'], io), 1);
});

test.run();
