/**
 * docs/operations.md, executed: the shell blocks the doc marks (`<!-- deploy: ... -->`) are taken from the doc and run
 * as written, then the hub they installed is started as deploy/ebadge-hub.service says, and must run: log "hub
 * running", answer a sealed get_report from a VPP on the local RabbitMQ, and exit 0 on SIGTERM.
 *
 * Isolation. The steps run as root (we are), in a private mount namespace (`unshare --mount`, private propagation,
 * `--kill-child`) in which /etc, /opt and /var are overlays whose writable layer is a tmpfs: useradd, install and
 * the unit's state directory write there, and all of it is gone when the namespace's last process exits. (Copies of
 * /etc/passwd and friends bind-mounted over the real ones would not do: useradd replaces them by rename, which a bind
 * mount point refuses.) The test checks afterwards that the host has no user ebadge and no /etc/ebadge, /opt/ebadge,
 * /var/lib/ebadge or installed unit it did not have before.
 *
 * What is shimmed: the bench block is not run (it would write the repository's dist/): its `npm run build` is
 * build/bundle.ts's bundle() of src/bin/hub.ts, its `scp` puts exactly the files it names into the folder the Pi's
 * steps run in (hub.js, the unit, hub.json from the doc's json block, keyring.json with the test VPP's key). On the
 * Pi: `sudo` runs the command (`-u USER`: runuser), `apt`, `systemctl` and `journalctl` only record their arguments;
 * `read` gets the broker password on stdin. The example names (heh-b827ebea02c1, vpp-acme) become this run's, and
 * hub.json gets the test broker's URL and user and resolutionS 1 (samples within seconds), nothing else.
 *
 * The unit, read from the file the steps installed (compared with deploy/ebadge-hub.service): User, Group,
 * ExecStartPre (each must succeed), ExecStart, Environment, UMask, WorkingDirectory (systemd's default /),
 * StateDirectory[Mode] (created owned by User), NoNewPrivileges and CapabilityBoundingSet (setpriv), ProtectSystem
 * (the overlays read-only, the state directory not), KillSignal, TimeoutStopSec. Not emulated, and listed so that a
 * new setting fails the test until it is placed: the restart policy (test/unit/deploy-unit.test.ts), memory and the
 * other sandboxing. `systemd-analyze verify` runs on the installed unit, after the steps created the user and
 * /opt/ebadge/hub.js. Two mistakes an operator makes are tried on the way, as the unit's user: a password file open to
 * every user and keygen's root-only key; check-config and the run must refuse each with the same line, exit 78.
 *
 * DEPLOY_TEST_VERBOSE=1 prints everything the steps and the hub said. Skipped, with a line saying why, when not root or without unshare, useradd, runuser, setpriv or overlay mounts.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bundle } from '../../build/bundle.js';
import { EbTime, type Message } from '../../src/codec/index.js';
import {
  generateIdentity,
  Keyring,
  KNOWN_TYPES,
  nodeBackend,
  ReplayWindow,
  Sealer,
  SequenceReserver,
} from '../../src/crypto/index.js';
import { AMQP_URL, timed } from '../helpers/amqp.js';
import { entity, until, withBus } from '../helpers/bus.js';
import { withDeadline } from '../helpers/deadline.js';
import { repoRoot } from '../helpers/oracle.js';
import { readUnit, systemdAnalyze, UNIT_FILE, type Unit, value, values, words } from '../helpers/systemd-unit.js';

const root = repoRoot();
const DOC = path.join(root, 'docs', 'operations.md');
const EXAMPLE_HUB = 'heh-b827ebea02c1';
const EXAMPLE_PEER = 'vpp-acme';
/** What the overlays cover: everything the steps and the unit write outside the folder they run in. */
const OVERLAID = ['/etc', '/opt', '/var'];
/** Paths the steps create; each must be as absent (or present) on the host afterwards as before. */
const HOST_PATHS = ['/etc/ebadge', '/opt/ebadge', '/var/lib/ebadge', '/etc/systemd/system/ebadge-hub.service'];

/** [Service] settings this test applies, and those it knowingly does not (with where they are covered, if anywhere). */
const EMULATED = new Set([
  'Type',
  'User',
  'Group',
  'ExecStartPre',
  'ExecStart',
  'Environment',
  'UMask',
  'WorkingDirectory',
  'StateDirectory',
  'StateDirectoryMode',
  'ConfigurationDirectory',
  'ConfigurationDirectoryMode',
  'NoNewPrivileges',
  'CapabilityBoundingSet',
  'AmbientCapabilities',
  'ProtectSystem',
  'ReadWritePaths',
  'KillSignal',
  'TimeoutStopSec',
]);
const NOT_EMULATED = new Set([
  'Restart',
  'RestartSec',
  'RestartPreventExitStatus',
  'MemoryMax',
  'ProtectHome',
  'PrivateTmp',
  'PrivateDevices',
  'ProtectKernelTunables',
  'ProtectKernelModules',
  'ProtectControlGroups',
  'ProtectClock',
  'RestrictAddressFamilies',
  'RestrictNamespaces',
  'RestrictRealtime',
  'LockPersonality',
  'SystemCallArchitectures',
]);

const s = suite('deployment, as docs/operations.md says');

// ---- the doc's blocks ------------------------------------------------------------------------------------------------

/** The fenced block right after `<!-- deploy: NAME -->`. */
function block(doc: string, name: string, lang: 'sh' | 'json'): string {
  const marker = `<!-- deploy: ${name} -->`;
  const at = doc.indexOf(marker);
  assert.ok(at >= 0, `docs/operations.md has the marker ${marker}`);
  const open = `\`\`\`${lang}\n`;
  const start = doc.indexOf(open, at);
  assert.is(doc.slice(at + marker.length, start).trim(), '', `the ${lang} block follows ${marker} directly`);
  const end = doc.indexOf('\n```', start + open.length);
  return doc.slice(start + open.length, end + 1);
}

// ---- the host: can we, and what must stay as it was -------------------------------------------------------------------

function why(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root (the steps add a user and write /etc, /opt and /var, in a namespace)';
  const missing = ['unshare', 'useradd', 'runuser', 'setpriv', 'mount', 'bash', 'install', 'timeout'].filter(
    (c) => spawnSync('sh', ['-c', `command -v ${c}`]).status !== 0,
  );
  if (missing.length > 0) return `${missing.join(', ')} not installed`;
  const user = value(readUnit(), 'Service', 'User') ?? 'ebadge';
  if (spawnSync('getent', ['passwd', user]).status === 0) return `this host has a user ${user} already`;
  const dir = mkdtempSync(path.join(tmpdir(), 'deploy-probe-'));
  try {
    const probe = spawnSync(
      'unshare',
      [
        '--mount',
        '--propagation',
        'private',
        '--fork',
        'sh',
        '-c',
        `mount -t tmpfs probe "${dir}" && mkdir "${dir}/u" "${dir}/w" && mount -t overlay overlay -o "lowerdir=/etc,upperdir=${dir}/u,workdir=${dir}/w" /etc`,
      ],
      { encoding: 'utf8', timeout: 10_000 },
    );
    if (probe.status !== 0) return `no private mount namespace with an overlay here: ${probe.stderr.trim()}`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return undefined;
}

interface HostState {
  paths: boolean[];
  passwd: boolean;
  group: boolean;
}

function hostState(): HostState {
  const has = (file: string): boolean => /^ebadge:/m.test(readFileSync(file, 'utf8'));
  return { paths: HOST_PATHS.map((p) => existsSync(p)), passwd: has('/etc/passwd'), group: has('/etc/group') };
}

// ---- the unit, as the test runs it ----------------------------------------------------------------------------------

interface UnitRun {
  user: string;
  group: string;
  stateDir: string;
  stateMode: string;
  /** ConfigurationDirectory, which the steps must have made with ConfigurationDirectoryMode. */
  configDir: string | undefined;
  configMode: string;
  killSignal: NodeJS.Signals;
  stopMs: number;
  /** Shell text: runs the words that follow as the unit's user, with its environment, umask and directory. */
  prefix: string;
  pre: string[][];
  start: string[];
  protect: boolean;
}

function unitRun(unit: Unit): UnitRun {
  const service = unit.get('Service') ?? [];
  const unknown = service.map(([k]) => k).filter((k) => !EMULATED.has(k) && !NOT_EMULATED.has(k));
  assert.equal(unknown, [], 'every [Service] setting of the unit is emulated here or listed as not emulated');
  const one = (key: string): string | undefined => value(unit, 'Service', key);
  assert.is(one('Type') ?? 'simple', 'simple', 'Type=simple: the process started is the service');
  const user = one('User');
  assert.ok(user !== undefined, 'the unit names its User');
  const group = one('Group') ?? user;
  const node = (argv: string[]): string[] =>
    argv[0] === '/usr/bin/node' && !existsSync('/usr/bin/node') ? [process.execPath, ...argv.slice(1)] : argv;
  const env = values(unit, 'Service', 'Environment').flatMap(words);
  const flags = [`--reuid=${user}`, `--regid=${group}`, '--init-groups'];
  if (one('NoNewPrivileges') !== undefined) {
    assert.is(one('NoNewPrivileges'), 'yes');
    flags.push('--no-new-privs');
  }
  if (one('CapabilityBoundingSet') !== undefined) {
    assert.is(one('CapabilityBoundingSet'), '', 'no capabilities at all');
    flags.push('--bounding-set=-all', '--inh-caps=-all');
  }
  assert.is(one('AmbientCapabilities') ?? '', '');
  const stateDir = one('StateDirectory');
  assert.ok(stateDir !== undefined && !stateDir.includes('/'), 'StateDirectory=<one name>');
  const protect = one('ProtectSystem');
  assert.ok(protect === undefined || protect === 'strict', 'ProtectSystem=strict (or none)');
  for (const p of values(unit, 'Service', 'ReadWritePaths').flatMap(words))
    assert.is(p, `/var/lib/${stateDir}`, 'ReadWritePaths= only the state directory, which stays writable here');
  const cwd = one('WorkingDirectory') ?? '/';
  const umask = one('UMask') ?? '0022';
  const shell = `$(getent passwd ${user} | cut -d: -f7)`;
  const homeDir = `$(getent passwd ${user} | cut -d: -f6)`;
  const prefix =
    `cd ${cwd} && umask ${umask} && exec setpriv ${flags.join(' ')} -- env -i ` +
    `PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 USER=${user} LOGNAME=${user} ` +
    `HOME=${homeDir} SHELL=${shell} ${env.join(' ')}`;
  const signal = (one('KillSignal') ?? 'SIGTERM') as NodeJS.Signals;
  const stop = one('TimeoutStopSec') ?? '90';
  assert.match(stop, /^\d+$/, 'TimeoutStopSec in seconds');
  return {
    user,
    group,
    stateDir: `/var/lib/${stateDir}`,
    stateMode: one('StateDirectoryMode') ?? '0755',
    configDir: one('ConfigurationDirectory') === undefined ? undefined : `/etc/${one('ConfigurationDirectory')}`,
    configMode: one('ConfigurationDirectoryMode') ?? '0755',
    killSignal: signal,
    stopMs: Number(stop) * 1000,
    prefix,
    pre: values(unit, 'Service', 'ExecStartPre').map((c) => node(words(c))),
    start: node(words(one('ExecStart') ?? '')),
    protect: protect === 'strict',
  };
}

// ---- the script run in the namespace --------------------------------------------------------------------------------

function shims(dir: string, log: string): void {
  mkdirSync(dir);
  const write = (name: string, text: string): void => writeFileSync(path.join(dir, name), text, { mode: 0o755 });
  write(
    'sudo',
    `#!/bin/bash
# deploy test: we are root already; "sudo -u USER command" runs it as USER, as sudo does
if [ "\${1-}" = -u ]; then user=$2; shift 2; exec runuser -u "$user" -- "$@"; fi
case "\${1-}" in -*) echo "sudo shim: option $1 is not emulated" >&2; exit 99;; esac
exec "$@"
`,
  );
  for (const name of ['apt', 'systemctl', 'journalctl'])
    write(name, `#!/bin/sh\n# deploy test: recorded, not run\necho "${name} $*" >> "${log}"\n`);
}

function script(o: {
  scratch: string;
  pi: string;
  shims: string;
  results: string;
  steps: string;
  run: UnitRun;
}): string {
  const { run } = o;
  const q = (argv: string[]): string => argv.join(' ');
  const check = [...run.start.slice(0, 2), 'check-config', ...run.start.slice(2)];
  const analyze = systemdAnalyze() !== undefined && existsSync('/usr/bin/node');
  return `set -euo pipefail
R=${o.results}
# ---- isolation (the test's): overlays on a tmpfs, visible in this namespace only
mount -t tmpfs -o mode=0700 deploy-test ${o.scratch}
for d in ${OVERLAID.join(' ')}; do
  mkdir -p ${o.scratch}$d/upper ${o.scratch}$d/work
  mount -t overlay overlay -o lowerdir=$d,upperdir=${o.scratch}$d/upper,workdir=${o.scratch}$d/work $d
done
# A host that has a hub of its own (or left one by another test) starts from none, as a new Pi: removed in the
# overlays only (whiteouts on the tmpfs), the host's copies untouched, which the test checks afterwards.
rm -rf ${HOST_PATHS.join(' ')}
export PATH=${o.shims}:$PATH
cd ${o.pi}
echo "@@deploy-test steps"
set -x
# ---- docs/operations.md, the steps on the Pi, as written
${o.steps}
set +x
echo "@@deploy-test steps done"
exec </dev/null
cmp ebadge-hub.service /etc/systemd/system/ebadge-hub.service
# ---- what systemd does before it starts the unit: the state directory, owned by the user; the configuration one
install -d -o ${run.user} -g ${run.group} -m ${run.stateMode} ${run.stateDir}
${
  run.configDir === undefined
    ? ''
    : `[ -d ${run.configDir} ] || install -d -m ${run.configMode} ${run.configDir}
test "$(stat -c %a ${run.configDir})" = ${Number.parseInt(run.configMode, 8).toString(8)}`
}
${analyze ? `rc=0; systemd-analyze verify /etc/systemd/system/ebadge-hub.service > $R/verify.out 2>&1 || rc=$?; echo $rc > $R/verify.rc` : 'echo "@@deploy-test systemd-analyze verify skipped"'}
# ---- two mistakes, as the unit's user: check-config and the run must say the same
mistake() {
  local name=$1 file=$2 mode=$3 old rc
  old=$(stat -c %a "$file")
  chmod "$mode" "$file"
  rc=0; ( ${run.prefix} timeout 20 ${q(check)} ) > $R/$name.check.out 2> $R/$name.check.err || rc=$?; echo $rc > $R/$name.check.rc
  rc=0; ( ${run.prefix} timeout 20 ${q(run.start)} ) > $R/$name.run.out 2> $R/$name.run.err || rc=$?; echo $rc > $R/$name.run.rc
  chmod "$old" "$file"
}
mistake open-password /etc/ebadge/broker.pw 0644
mistake root-only-key /etc/ebadge/hub.key 0600
# ---- ProtectSystem=strict, for what the overlays cover: read-only but the state directory
${run.protect ? `mount --bind ${run.stateDir} ${run.stateDir}\nfor d in ${OVERLAID.join(' ')}; do mount -o remount,bind,ro $d; done` : ''}
${run.pre.map((argv) => `( ${run.prefix} ${q(argv)} )`).join('\n')}
echo "@@deploy-test hub pid $$"
${run.prefix} ${q(run.start)}
`;
}

// ---- the test ---------------------------------------------------------------------------------------------------------

interface Proc {
  child: ChildProcess;
  out: string[];
  err: string[];
  exit: Promise<number | string>;
  code: number | string | undefined;
}

function start(argv: string[], stdin: string): Proc {
  const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  const p: Proc = { child, out: [], err: [], exit: Promise.resolve(0), code: undefined };
  const lines = (into: string[]) => {
    let rest = '';
    return (d: string): void => {
      const parts = (rest + d).split('\n');
      rest = parts.pop() ?? '';
      into.push(...parts);
    };
  };
  child.stdout?.setEncoding('utf8').on('data', lines(p.out));
  child.stderr?.setEncoding('utf8').on('data', lines(p.err));
  p.exit = new Promise((resolve) =>
    child.once('close', (code, signal) => {
      p.code = code ?? signal ?? 'killed';
      resolve(p.code);
    }),
  );
  child.stdin?.end(stdin);
  return p;
}

const transcript = (p: Proc): string =>
  [...p.out.slice(-40), ...p.err.slice(-40).map((l) => `stderr: ${l}`)].join('\n');

const logged = (p: Proc, msg: string): boolean =>
  p.out.some((l) => {
    try {
      return (JSON.parse(l) as { msg?: string }).msg === msg;
    } catch {
      return false;
    }
  });

/** The public entry keygen printed: the JSON object between the steps' markers that names the hub. */
function keygenEntry(p: Proc, hub: string): { ed25519: string; x25519: { pub: string; notBefore: string }[] } {
  const from = p.out.indexOf(`{`, p.out.indexOf('@@deploy-test steps'));
  const to = p.out.indexOf('}', from);
  assert.ok(from >= 0 && to > from, `keygen printed a JSON object:\n${transcript(p)}`);
  const printed = JSON.parse(p.out.slice(from, to + 1).join('\n')) as Record<string, ReturnType<typeof keygenEntry>>;
  const entry = printed[hub];
  assert.ok(entry !== undefined, `keygen's entry is for ${hub}`);
  return entry;
}

const skip = why();
if (skip !== undefined) {
  process.stdout.write(`skipping the deployment test: ${skip}\n`);
  s.skip('docs/operations.md run as written, the hub started as the unit says');
} else {
  s(
    'docs/operations.md run as written, the hub started as the unit says: it runs, answers a sealed get_report, exits 0 on SIGTERM, and the host is untouched',
    timed(
      () =>
        withBus(async (f) => {
          const before = hostState();
          const tmp = mkdtempSync(path.join(tmpdir(), 'ebadge-deploy-'));
          const pi = path.join(tmp, 'pi');
          const results = path.join(tmp, 'results');
          const calls = path.join(tmp, 'shim-calls');
          mkdirSync(pi);
          mkdirSync(results);
          mkdirSync(path.join(tmp, 'scratch'));
          shims(path.join(tmp, 'shims'), calls);
          const hub = entity('heh');
          const vpp = entity('vpp');
          f.hubTopology(hub, [vpp]);
          let p: Proc | undefined;
          try {
            const doc = readFileSync(DOC, 'utf8');
            const named = (text: string): string => text.replaceAll(EXAMPLE_HUB, hub).replaceAll(EXAMPLE_PEER, vpp);
            const url = new URL(AMQP_URL);
            const user = decodeURIComponent(url.username) || 'guest';
            const password = decodeURIComponent(url.password) || 'guest';

            // The bench: what `npm run build` and `scp` would put in the Pi's folder.
            const bench = block(doc, 'the steps on the bench', 'sh');
            assert.match(bench, /^npm ci && npm run build\b/m);
            const scp = /^scp (.+) \S+:\s*$/m.exec(bench);
            assert.ok(scp !== null, 'the bench block copies with scp');
            const vppId = generateIdentity(vpp, nodeBackend, Date.now() - 60_000);
            const files: Record<string, () => Promise<void>> = {
              'dist/hub.js': async () => void (await bundle('src/bin/hub.ts', path.join(pi, 'hub.js'))),
              'deploy/ebadge-hub.service': async () => copyFileSync(UNIT_FILE, path.join(pi, 'ebadge-hub.service')),
              'hub.json': async () => {
                const config = JSON.parse(named(block(doc, 'hub.json', 'json'))) as Record<string, unknown>;
                const broker = config['broker'] as Record<string, unknown>;
                broker['url'] = `${url.protocol}//${url.host}`;
                broker['username'] = user;
                config['resolutionS'] = 1;
                writeFileSync(path.join(pi, 'hub.json'), JSON.stringify(config, null, 2));
              },
              'keyring.json': async () => {
                const { ed25519, x25519 } = vppId.publicEntry;
                const peer = {
                  roles: ['aggregator'],
                  ed25519,
                  x25519: x25519.map(({ pub, notBefore }) => ({ pub, notBefore })),
                  maySend: KNOWN_TYPES,
                  mayReceive: KNOWN_TYPES,
                };
                const ring = { format: 'heh-keyring/1', peers: { [vpp]: peer } };
                writeFileSync(path.join(pi, 'keyring.json'), JSON.stringify(ring, null, 2));
              },
            };
            for (const source of (scp[1] as string).split(/\s+/)) {
              const make = files[source];
              assert.ok(make !== undefined, `the test knows what scp's ${source} is`);
              await make();
            }

            // The Pi.
            const run = unitRun(readUnit());
            const file = path.join(tmp, 'deploy.sh');
            const steps = named(block(doc, 'the steps on the Pi', 'sh'));
            writeFileSync(
              file,
              script({ scratch: path.join(tmp, 'scratch'), pi, shims: path.join(tmp, 'shims'), results, steps, run }),
            );
            p = start(
              ['unshare', '--mount', '--propagation', 'private', '--fork', '--kill-child', 'bash', file],
              `${password}\n`,
            );
            const proc = p;
            await until(
              () => {
                if (proc.code !== undefined)
                  throw new Error(`the steps or the hub ended (${proc.code}):\n${transcript(proc)}`);
                return logged(proc, 'hub running');
              },
              () => `"hub running":\n${transcript(proc)}`,
              90_000,
              50,
            );
            const pidLine = p.out.find((l) => l.startsWith('@@deploy-test hub pid '));
            const pid = Number(pidLine?.slice('@@deploy-test hub pid '.length));
            assert.ok(pid > 0, 'the script says which process is the hub');

            // It runs as the unit says: its user, no new privileges, no capabilities, its state in the state directory.
            const inside = (f: string): string => path.join(`/proc/${pid}/root`, f);
            const entry = readFileSync(inside('/etc/passwd'), 'utf8')
              .split('\n')
              .find((l) => l.startsWith(`${run.user}:`));
            const uid = Number(entry?.split(':')[2]);
            const status = readFileSync(`/proc/${pid}/status`, 'utf8');
            assert.match(status, new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}$`, 'm'));
            assert.match(status, /^NoNewPrivs:\s+1$/m);
            assert.match(status, /^CapBnd:\s+0+$/m);
            assert.equal(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(1, -1), run.start.slice(1));
            const state = statSync(inside(run.stateDir));
            assert.equal([state.uid, (state.mode & 0o777).toString(8)], [uid, '700']);
            assert.ok(
              readdirSync(inside(run.stateDir)).includes('history'),
              'the default stateDir is the state directory',
            );
            assert.ok(logged(p, 'end-to-end sealing on'), transcript(p));

            // The VPP asks for a report: sealed, with the key keygen printed, answered from the samples.
            const hubEntry = keygenEntry(p, hub);
            const ring = {
              format: 'heh-keyring/1',
              peers: {
                [hub]: {
                  ed25519: hubEntry.ed25519,
                  x25519: hubEntry.x25519.map(({ pub, notBefore }) => ({ pub, notBefore })),
                  maySend: KNOWN_TYPES,
                  mayReceive: KNOWN_TYPES,
                },
              },
            };
            const sealer = new Sealer({
              keyring: new Keyring(nodeBackend, { keyring: ring, privateKey: vppId.privateKey }),
              backend: nodeBackend,
              sequence: await SequenceReserver.open(path.join(tmp, 'vpp.seq')),
              replay: await ReplayWindow.open(path.join(tmp, 'vpp.replay')),
            });
            const v = f.create({ name: vpp, peers: [hub], role: 'controller', sealer });
            await f.start();
            let values: (number | null)[] = [];
            let asked = 'no error';
            await until(
              async () => {
                const to = EbTime.fromEpochMs(Math.floor(Date.now() / 1000) * 1000 - 1000);
                try {
                  const report = (await v.request(hub, {
                    msg: 'get_report',
                    from: to.plusSeconds(-3),
                    to,
                    resolution: 1,
                    signals: ['meter.p'],
                  })) as Message<'report'>;
                  values = report.values['meter.p'] ?? [];
                } catch (err) {
                  asked = String(err);
                  return false;
                }
                return values.length === 3 && values.every((x) => typeof x === 'number');
              },
              () => `a report of 3 samples (last: ${JSON.stringify(values)}, ${asked}):\n${transcript(proc)}`,
              20_000,
              500,
            );

            // KillSignal drains, within TimeoutStopSec, exit 0.
            process.kill(pid, run.killSignal);
            const code = await withDeadline(p.exit, run.stopMs, `the hub to exit after ${run.killSignal}`);
            assert.is(code, 0, transcript(p));
            assert.ok(logged(p, 'stopped'), transcript(p));

            // The shimmed commands got what the doc says, for the unit the steps installed.
            assert.equal(readFileSync(calls, 'utf8').trim().split('\n'), [
              'apt install nodejs',
              'systemctl daemon-reload',
              'systemctl enable --now ebadge-hub',
              'journalctl -u ebadge-hub -f',
            ]);
            assert.ok(p.out.includes(`/etc/ebadge/hub.json: OK (${hub}, 1 device(s), peers ${vpp})`), transcript(p));

            // The two mistakes: one line each, the same from check-config and the run, exit 78.
            const said = (name: string, what: string): [string, string, string] => {
              const r = (ext: string): string => readFileSync(path.join(results, `${name}.${what}.${ext}`), 'utf8');
              return [r('rc').trim(), r('out'), r('err')];
            };
            const cases: [string, string][] = [
              [
                'open-password',
                "configuration error: /etc/ebadge/hub.json: $.broker.passwordFile: expected a secret file only its owner and the hub's group may read and only its owner may write, found /etc/ebadge/broker.pw with mode 0644, open to every user: run chmod o-rwx /etc/ebadge/broker.pw\n",
              ],
              [
                'root-only-key',
                `configuration error: /etc/ebadge/hub.json: $.crypto.privateKey: expected a secret file only its owner and the hub's group may read and only its owner may write, found /etc/ebadge/hub.key, which the user ${run.user} may not read (EACCES): run chgrp ${run.group} /etc/ebadge/hub.key and chmod g+r /etc/ebadge/hub.key\n`,
              ],
            ];
            for (const [name, line] of cases) {
              assert.equal(said(name, 'check'), ['78', '', line], `${name}: check-config`);
              assert.equal(said(name, 'run'), ['78', '', line], `${name}: the run`);
            }

            // systemd-analyze verify on the installed unit, once the user and /opt/ebadge/hub.js exist.
            if (existsSync(path.join(results, 'verify.rc'))) {
              const out = readFileSync(path.join(results, 'verify.out'), 'utf8').split('\n');
              assert.equal(
                out.filter((l) => l.includes('ebadge-hub.service')),
                [],
                'systemd-analyze verify: nothing about the unit',
              );
              assert.is(readFileSync(path.join(results, 'verify.rc'), 'utf8').trim(), '0');
            } else
              process.stdout.write(
                'systemd-analyze verify of the installed unit skipped: no systemd-analyze or /usr/bin/node\n',
              );
          } finally {
            if (process.env['DEPLOY_TEST_VERBOSE'] !== undefined && p !== undefined)
              process.stdout.write(`${[...p.out, ...p.err.map((l) => `stderr: ${l}`)].join('\n')}\n`);
            p?.child.kill('SIGKILL');
            await p?.exit;
            rmSync(tmp, { recursive: true, force: true });
          }
          assert.equal(hostState(), before, 'the host has no user, folder or unit it did not have before');
        }),
      180_000,
    ),
  );
}

s.run();
