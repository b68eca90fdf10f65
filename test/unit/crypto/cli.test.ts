/**
 * The command line (src/cli.ts): keygen, keyring verify and keyring rotate, called in process with a capturing
 * io, in a temp dir; exit codes 0 / 1 / 2; nothing secret is ever printed. Once also as a child process, to show
 * that the compiled file runs on its own.
 */

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type Io, main } from '../../../src/cli.js';

const CLI = fileURLToPath(new URL('../../../src/cli.js', import.meta.url));

interface Run {
  code: number;
  out: string[];
  err: string[];
}

/** Every line the CLI printed in this file's tests, and every secret it wrote, for the final check. */
const printed: string[] = [];
const secrets = new Set<string>();

async function cli(...argv: string[]): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = {
    out: (l) => {
      out.push(l);
      printed.push(l);
    },
    err: (l) => {
      err.push(l);
      printed.push(l);
    },
  };
  const code = await main(argv, io);
  return { code, out, err };
}

interface PrivateFile {
  format: string;
  id: string;
  ed25519: string;
  x25519: { secret: string; notBefore: string; notAfter?: string }[];
}

/** Reads a private key file and remembers its secrets. */
function readPrivate(file: string): PrivateFile {
  const p = JSON.parse(fs.readFileSync(file, 'utf8')) as PrivateFile;
  secrets.add(p.ed25519);
  for (const e of p.x25519) secrets.add(e.secret);
  return p;
}

async function inTempDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'heh-'));
  try {
    await fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const mode = (f: string): number => fs.statSync(f).mode & 0o777;

type Entry = {
  roles: string[];
  ed25519: string;
  x25519: { pub: string; notBefore: string; kid: string }[];
  maySend: string[];
  mayReceive: string[];
};

/** keygen, checked, returning the printed public entry. */
async function keygen(dir: string, id: string, ...extra: string[]): Promise<{ file: string; entry: Entry; run: Run }> {
  const file = path.join(dir, `${id}.key`);
  const run = await cli('keygen', '--id', id, '--out', file, ...extra);
  assert.is(run.code, 0, run.err.join('\n'));
  readPrivate(file);
  const printedEntry = JSON.parse(run.out.join('\n')) as Record<string, Entry>;
  assert.equal(Object.keys(printedEntry), [id]);
  return { file, entry: printedEntry[id]!, run };
}

function usage(run: Run, what: string): void {
  assert.is(run.code, 2, `${what}: exit code`);
  assert.ok(run.err.join('\n').includes('usage'), `${what}: usage on err: ${run.err.join('\n')}`);
}

const writeRing = (file: string, peers: Record<string, unknown>): void => {
  fs.writeFileSync(file, JSON.stringify({ format: 'heh-keyring/1', peers }, null, 2));
};

// -----------------------------------------------------------------------------------------------------------------
const kg = suite('cli keygen');

kg('writes a 0600 private file and prints a public entry that, with permissions filled in, verifies', () =>
  inTempDir(async (dir) => {
    const hub = await keygen(dir, 'hub');
    const vpp = await keygen(dir, 'vpp-acme');
    assert.is(mode(hub.file), 0o600);
    assert.is(mode(vpp.file), 0o600);
    const priv = readPrivate(hub.file);
    assert.is(priv.format, 'heh-private/1');
    assert.is(priv.id, 'hub');
    assert.is(priv.x25519.length, 1);
    assert.equal(hub.entry.roles, []);
    assert.equal(hub.entry.maySend, []);
    assert.equal(hub.entry.mayReceive, []);
    assert.is(hub.entry.x25519.length, 1);
    assert.match(hub.entry.x25519[0]!.kid, /^[0-9a-f]{16}$/);
    assert.ok(hub.run.err.join('\n').includes(hub.file), 'says where the private key went');
    // Pasted as printed, the entry lets nothing through: it says what to fill in.
    assert.ok(hub.run.err.join('\n').includes('roles, maySend and mayReceive filled in'), hub.run.err.join('\n'));

    // The VPP's keyring names the hub; the hub's names the VPP.
    const vppRing = path.join(dir, 'vpp-keyring.json');
    writeRing(vppRing, {
      hub: { ...hub.entry, roles: ['hub'], maySend: ['report'], mayReceive: ['activate', 'get_report'] },
    });
    const hubRing = path.join(dir, 'hub-keyring.json');
    writeRing(hubRing, { 'vpp-acme': { ...vpp.entry, maySend: ['activate', 'get_report'], mayReceive: ['report'] } });
    for (const [ring, key, me, peer, peerKid] of [
      [vppRing, vpp.file, 'vpp-acme', 'hub', hub.entry.x25519[0]!.kid],
      [hubRing, hub.file, 'hub', 'vpp-acme', vpp.entry.x25519[0]!.kid],
    ] as const) {
      for (const backend of ['node', 'noble', 'auto']) {
        const r = await cli('keyring', 'verify', '--keyring', ring, '--private-key', key, '--backend', backend);
        assert.is(r.code, 0, r.err.join('\n'));
        assert.equal(r.err, [], 'no warnings');
        assert.is(r.out[r.out.length - 1], 'keyring OK');
        assert.ok(r.out[0]!.startsWith(`identity ${me}: 1 X25519 key(s)`), r.out[0]);
        if (backend !== 'auto') assert.ok(r.out[0]!.includes(`(backend ${backend})`), r.out[0]);
        assert.ok(
          r.out.some((l) => l.startsWith(`peer ${peer}: 1 X25519 key(s), in force: ${peerKid}`)),
          r.out.join('\n'),
        );
      }
    }
  }),
);

kg('--public writes the printed entry to a file', () =>
  inTempDir(async (dir) => {
    const pub = path.join(dir, 'hub.pub.json');
    const { run } = await keygen(dir, 'hub', '--public', pub);
    assert.equal(JSON.parse(fs.readFileSync(pub, 'utf8')), JSON.parse(run.out.join('\n')));
  }),
);

kg('careless targets are refused before a key is made: --public naming --out, an existing --public, no folder', () =>
  inTempDir(async (dir) => {
    const key = path.join(dir, 'hub.key');
    const err = (r: Run): string => r.err.join('\n');
    // The same file under two names: the public entry would be written over the private key.
    for (const pub of [key, path.join(dir, '.', 'hub.key')]) {
      const r = await cli('keygen', '--id', 'hub', '--out', key, '--public', pub);
      usage(r, `--public ${pub}`);
      assert.match(err(r), `--public names the private key file ${key}`);
    }
    assert.equal(fs.readdirSync(dir), [], 'nothing written');
    // ... and with --force over an identity that exists, through a hard link.
    const { file } = await keygen(dir, 'hub');
    const before = fs.readFileSync(file, 'utf8');
    fs.linkSync(file, path.join(dir, 'link.json'));
    usage(
      await cli('keygen', '--id', 'hub', '--out', file, '--public', path.join(dir, 'link.json'), '--force'),
      'link',
    );
    assert.is(fs.readFileSync(file, 'utf8'), before, 'the identity is untouched');
    // A file that is there already (a keyring named by mistake) is replaced only with --force.
    const ring = path.join(dir, 'keyring.json');
    fs.writeFileSync(ring, '{"format":"heh-keyring/1","peers":{}}');
    const r = await cli('keygen', '--id', 'vpp', '--out', path.join(dir, 'vpp.key'), '--public', ring);
    usage(r, 'an existing --public');
    assert.match(err(r), `${ring} exists: the public entry would replace it (use --force)`);
    assert.not.ok(fs.existsSync(path.join(dir, 'vpp.key')), 'no key made');
    await keygen(dir, 'vpp', '--public', ring, '--force');
    assert.equal(Object.keys(JSON.parse(fs.readFileSync(ring, 'utf8')) as object), ['vpp']);
    // A folder that is not there, a folder given as the file.
    const nowhere = path.join(dir, 'no', 'such', 'x.key');
    const missing = await cli('keygen', '--id', 'hub', '--out', nowhere);
    usage(missing, 'no folder');
    assert.match(err(missing), `--out: no folder ${path.dirname(nowhere)} to write ${nowhere} in`);
    const pubMissing = await cli('keygen', '--id', 'x', '--out', path.join(dir, 'x.key'), '--public', nowhere);
    assert.match(err(pubMissing), '--public: no folder');
    usage(await cli('keygen', '--id', 'hub', '--out', dir, '--force'), 'a folder as --out');
    assert.not.ok(fs.existsSync(path.join(dir, 'x.key')), 'no key made');
  }),
);

kg('refuses to overwrite an identity without --force (exit 2), replaces it with --force', () =>
  inTempDir(async (dir) => {
    const { file } = await keygen(dir, 'hub');
    const before = fs.readFileSync(file, 'utf8');
    const r = await cli('keygen', '--id', 'hub', '--out', file);
    usage(r, 'no --force');
    assert.ok(r.err.join('\n').includes('--force'), r.err.join('\n'));
    assert.is(fs.readFileSync(file, 'utf8'), before, 'the old identity is untouched');
    assert.equal(r.out, []);
    fs.chmodSync(file, 0o644);
    const again = await keygen(dir, 'hub', '--force');
    const after = readPrivate(file);
    assert.is.not(after.ed25519, (JSON.parse(before) as PrivateFile).ed25519, 'a new identity');
    assert.is(mode(file), 0o600, 'and the file is 0600 again');
    assert.is(again.entry.ed25519.length, 43);
    assert.match(again.run.err.join('\n'), `to ${file} (mode 0600)`);
    // A safe group read is kept (docs/operations.md): the line says so, not 0600.
    fs.chmodSync(file, 0o640);
    const kept = await keygen(dir, 'hub', '--force');
    assert.is(mode(file), 0o640);
    assert.match(kept.run.err.join('\n'), `to ${file} (mode 0640)`);
  }),
);

kg('usage errors exit 2 with the usage on err and write nothing', () =>
  inTempDir(async (dir) => {
    const out = path.join(dir, 'x.key');
    usage(await cli('keygen', '--out', out), 'missing --id');
    usage(await cli('keygen', '--id', '', '--out', out), 'empty --id');
    usage(await cli('keygen', '--id', 'hub'), 'missing --out');
    usage(await cli('keygen', '--id', 'hub', '--out', out, '--colour', 'blue'), 'unknown flag');
    usage(await cli('keygen', '--id', 'hub', '--out', out, '--backend', 'openssl'), 'bad --backend');
    usage(await cli('keygen', '--id', 'hub/../x', '--out', out), 'bad --id');
    usage(await cli('keygen', '--id', 'hub', '--out', out, 'extra'), 'a positional argument');
    usage(await cli('keygen', '--id'), '--id without a value');
    usage(await cli('frobnicate'), 'unknown command');
    usage(await cli('keyring'), 'keyring without a subcommand');
    usage(await cli('keyring', 'destroy'), 'unknown keyring subcommand');
    usage(await cli('keyring', 'verify', '--keyring', 'k.json'), 'verify without --private-key');
    usage(
      await cli('keyring', 'verify', '--keyring', 'k.json', '--private-key', out, '--backend', 'fast'),
      'verify with a bad --backend',
    );
    usage(await cli('keyring', 'rotate'), 'rotate without --private-key');
    assert.equal(fs.readdirSync(dir), [], 'nothing written');
    const none = await cli();
    assert.is(none.code, 2);
    assert.ok(none.out.join('\n').includes('usage'));
    const help = await cli('--help');
    assert.is(help.code, 0);
    assert.ok(help.out.join('\n').includes('keyring rotate'));
  }),
);

// -----------------------------------------------------------------------------------------------------------------
const ver = suite('cli keyring verify');

ver('a private key file readable by others: exit 1 with KEY_FILE_PERMISSIONS', () =>
  inTempDir(async (dir) => {
    const hub = await keygen(dir, 'hub');
    const vpp = await keygen(dir, 'vpp');
    const ring = path.join(dir, 'keyring.json');
    writeRing(ring, { vpp: vpp.entry });
    assert.is((await cli('keyring', 'verify', '--keyring', ring, '--private-key', hub.file)).code, 0);
    fs.chmodSync(hub.file, 0o644);
    const r = await cli('keyring', 'verify', '--keyring', ring, '--private-key', hub.file);
    assert.is(r.code, 1);
    const err = r.err.join('\n');
    assert.ok(err.includes('KEY_FILE_PERMISSIONS'), err);
    assert.ok(err.includes(`${hub.file} with mode 0644, open to every user: run chmod o-rwx ${hub.file}`), err);
    assert.not.ok(err.includes('usage'), 'not a usage error');
    assert.equal(r.out, []);
  }),
);

ver('an invalid keyring: exit 1 with KEYRING_INVALID, the file and the JSON path', () =>
  inTempDir(async (dir) => {
    const hub = await keygen(dir, 'hub');
    const vpp = await keygen(dir, 'vpp');
    const ring = path.join(dir, 'keyring.json');
    writeRing(ring, { vpp: { ...vpp.entry, maySend: ['teleport'] } });
    const r = await cli('keyring', 'verify', '--keyring', ring, '--private-key', hub.file);
    assert.is(r.code, 1);
    const err = r.err.join('\n');
    assert.ok(err.includes(`${ring}: $.peers.vpp.maySend[0]`), err);
    assert.ok(err.includes('[KEYRING_INVALID]'), err);
    writeRing(ring, { vpp: { ...vpp.entry, ed25519: `AQ${'A'.repeat(41)}` } });
    const small = await cli('keyring', 'verify', '--keyring', ring, '--private-key', hub.file);
    assert.is(small.code, 1);
    assert.ok(small.err.join('\n').includes('[SMALL_ORDER_KEY]'), small.err.join('\n'));
    const missing = await cli('keyring', 'verify', '--keyring', path.join(dir, 'none.json'), '--private-key', hub.file);
    assert.is(missing.code, 1);
    assert.ok(missing.err.join('\n').includes('none.json'));
  }),
);

ver('a peer with no key in force: a warning, and the summary says so', () =>
  inTempDir(async (dir) => {
    const hub = await keygen(dir, 'hub');
    const vpp = await keygen(dir, 'vpp');
    const dso = await keygen(dir, 'dso');
    const ring = path.join(dir, 'keyring.json');
    writeRing(ring, {
      vpp: {
        ...vpp.entry,
        maySend: ['report'],
        x25519: [{ pub: vpp.entry.x25519[0]!.pub, notBefore: '2099-01-01T00:00:00Z' }],
      },
      dso: {
        ...dso.entry,
        x25519: [
          { pub: dso.entry.x25519[0]!.pub, notBefore: '2020-01-01T00:00:00Z', notAfter: '2021-01-01T00:00:00+01:00' },
        ],
        topics: ['prices.north'],
      },
    });
    const r = await cli('keyring', 'verify', '--keyring', ring, '--private-key', hub.file);
    assert.is(r.code, 0);
    const err = r.err.join('\n');
    assert.ok(err.includes('warning: no X25519 key of vpp is in force'), err);
    assert.ok(err.includes('warning: no X25519 key of dso is in force'), err);
    assert.is(r.out[r.out.length - 1], 'keyring OK with 2 warning(s)');
    assert.ok(
      r.out.some((l) => l.startsWith('peer vpp: 1 X25519 key(s), in force: none')),
      r.out.join('\n'),
    );
    assert.ok(
      r.out.some((l) => l.includes('topics prices.north')),
      r.out.join('\n'),
    );
  }),
);

ver(
  'a peer entry pasted as keygen printed it (no maySend, mayReceive or topics): a warning, since it lets nothing through',
  () =>
    inTempDir(async (dir) => {
      const hub = await keygen(dir, 'hub');
      const vpp = await keygen(dir, 'vpp');
      const ring = path.join(dir, 'keyring.json');
      writeRing(ring, { vpp: vpp.entry });
      const r = await cli('keyring', 'verify', '--keyring', ring, '--private-key', hub.file);
      assert.is(r.code, 0);
      assert.match(
        r.err.join('\n'),
        'warning: the keyring lets vpp send and receive nothing: every sealed message to or from it is refused (TYPE_NOT_ALLOWED); fill in its maySend and mayReceive (docs/crypto.md)',
      );
      assert.is(r.out[r.out.length - 1], 'keyring OK with 1 warning(s)');
    }),
);

// -----------------------------------------------------------------------------------------------------------------
const rot = suite('cli keyring rotate');

rot('adds an epoch: the private file then has 2 X25519 keys, the old one ending after the grace period', () =>
  inTempDir(async (dir) => {
    const hub = await keygen(dir, 'hub');
    const vpp = await keygen(dir, 'vpp');
    const r = await cli(
      'keyring',
      'rotate',
      '--private-key',
      hub.file,
      '--not-before',
      '2030-01-01T00:00:00+01:00',
      '--grace-hours',
      '48',
    );
    assert.is(r.code, 0, r.err.join('\n'));
    assert.is(mode(hub.file), 0o600);
    const priv = readPrivate(hub.file);
    assert.is(priv.x25519.length, 2);
    assert.is(priv.x25519[1]!.notBefore, '2029-12-31T23:00:00.000Z');
    assert.is(priv.x25519[0]!.notAfter, '2030-01-02T23:00:00.000Z');
    const printedEpochs = JSON.parse(r.out.join('\n')) as { pub: string; kid: string; notBefore: string }[];
    assert.is(printedEpochs.length, 2);
    assert.is(printedEpochs[0]!.kid, hub.entry.x25519[0]!.kid, 'the old key is unchanged');
    assert.is.not(printedEpochs[1]!.kid, printedEpochs[0]!.kid);
    assert.ok(r.err.join('\n').includes('2029-12-31T23:00:00.000Z'), r.err.join('\n'));

    // The rotated file still verifies, and its new key is the current one once in force (as the peers will see it).
    const ring = path.join(dir, 'keyring.json');
    writeRing(ring, { vpp: { ...vpp.entry, mayReceive: ['get_report'] } });
    const v = await cli('keyring', 'verify', '--keyring', ring, '--private-key', hub.file);
    assert.is(v.code, 0, v.err.join('\n'));
    assert.ok(v.out[0]!.startsWith(`identity hub: 2 X25519 key(s), in force: ${hub.entry.x25519[0]!.kid}`), v.out[0]);
    assert.is(v.out[v.out.length - 1], 'keyring OK');

    // Default grace and not-before: now.
    const r2 = await cli('keyring', 'rotate', '--private-key', hub.file);
    assert.is(r2.code, 0, r2.err.join('\n'));
    assert.is(readPrivate(hub.file).x25519.length, 3);
    const v2 = await cli('keyring', 'verify', '--keyring', ring, '--private-key', hub.file);
    assert.is(v2.code, 0, v2.err.join('\n'));
    const newest = (JSON.parse(r2.out.join('\n')) as { kid: string }[])[2]!.kid;
    assert.ok(v2.out[0]!.includes(`in force: ${newest}`), v2.out[0]);
  }),
);

rot('refuses --grace-hours 0 and a naive --not-before (exit 2) and leaves the file alone', () =>
  inTempDir(async (dir) => {
    const hub = await keygen(dir, 'hub');
    const before = fs.readFileSync(hub.file, 'utf8');
    for (const args of [
      ['--grace-hours', '0'],
      ['--grace-hours', '0.5'],
      ['--grace-hours', 'a day'],
      ['--grace-hours', '-24'],
      ['--not-before', '2030-01-01T00:00:00'],
      ['--not-before', 'tomorrow'],
    ]) {
      const r = await cli('keyring', 'rotate', '--private-key', hub.file, ...args);
      usage(r, args.join(' '));
      assert.is(fs.readFileSync(hub.file, 'utf8'), before, `${args.join(' ')}: file unchanged`);
    }
    fs.chmodSync(hub.file, 0o604);
    const perm = await cli('keyring', 'rotate', '--private-key', hub.file);
    assert.is(perm.code, 1);
    assert.ok(perm.err.join('\n').includes('KEY_FILE_PERMISSIONS'));
    assert.is(fs.readFileSync(hub.file, 'utf8'), before);
  }),
);

// -----------------------------------------------------------------------------------------------------------------
const proc = suite('cli as a program');

proc('node .out/src/cli.js keygen runs standalone: exit 0, the entry on stdout, a 0600 file', () =>
  inTempDir((dir) => {
    const out = path.join(dir, 'child.key');
    const r = spawnSync(process.execPath, [CLI, 'keygen', '--id', 'child', '--out', out], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.is(r.status, 0, r.stderr);
    const entry = JSON.parse(r.stdout) as Record<string, Entry>;
    assert.equal(Object.keys(entry), ['child']);
    assert.is(mode(out), 0o600);
    const priv = readPrivate(out);
    printed.push(...r.stdout.split('\n'), ...r.stderr.split('\n'));
    assert.is(priv.id, 'child');
    const bad = spawnSync(process.execPath, [CLI, 'keygen', '--id', 'child'], { encoding: 'utf8', timeout: 60_000 });
    assert.is(bad.status, 2, bad.stderr);
    assert.ok(bad.stderr.includes('usage'), bad.stderr);
  }),
);

// -----------------------------------------------------------------------------------------------------------------
const leak = suite('cli secrecy');

leak('no line printed by any command above contains a private seed or X25519 secret', () => {
  assert.ok(secrets.size >= 10, `secrets collected: ${secrets.size}`);
  assert.ok(printed.length >= 40, `lines collected: ${printed.length}`);
  for (const line of printed) {
    for (const s of secrets) assert.not.ok(line.includes(s), `a secret was printed: ${line}`);
  }
});

kg.run();
ver.run();
rot.run();
proc.run();
leak.run();
