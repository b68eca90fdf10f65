/**
 * Test fixture: start extra, throw-away RabbitMQ nodes on this machine next to
 * the default node (rabbit@localhost, 127.0.0.1:5672, dist port 25672), which
 * is never touched except through the read-mostly `rabbitmqctl()` helper.
 *
 * Every extra node
 * - is called `${stem}-${process.pid}@localhost`, so parallel test processes
 *   never clash in the shared epmd;
 * - lives entirely in a fresh `$TMPDIR/ebadge-broker-<stem>-XXXXXX` folder
 *   (mnesia, logs, config, enabled_plugins, TLS material, HOME with cookie);
 * - listens on 127.0.0.1 only (AMQP, optional AMQPS/management, Erlang
 *   distribution) on ports picked by `freePort()`;
 * - uses the default node's Erlang cookie, so nodes can be clustered with each
 *   other and one rabbitmqctl setup reaches all of them;
 * - runs as a child process in its own process group, so `stop()` and the
 *   process-exit safety net can always SIGKILL the whole tree.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

export interface BrokerNodeOptions {
  /** Short unique stem ([A-Za-z0-9_-]); the node becomes `${name}-${pid}@localhost`. */
  name: string;
  /** Plain AMQP port on 127.0.0.1; a free one is picked when omitted. */
  amqpPort?: number;
  /** Also start an AMQPS listener with a throw-away CA/server/client PKI (openssl). */
  tls?: boolean;
  /** Plugins to enable, written to the node's own enabled_plugins file (offline, no CLI). */
  plugins?: string[];
  /** Raw lines appended to the generated rabbitmq.conf (later keys win). */
  extraConfig?: string;
  /**
   * Erlang terms for advanced.config, for settings rabbitmq.conf has no key
   * for (e.g. `[{rabbit, [{channel_tick_interval, 1000}]}].`).
   */
  advancedConfig?: string;
  /** Upper bound for boot + `await_startup`; default 60 s. */
  startTimeoutMs?: number;
}

export interface BrokerTlsMaterial {
  /** CA that signed the server and the trusted client certificate (PEM file). */
  caFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  /** CN of the trusted client cert; a user of that name exists (for SASL EXTERNAL). */
  clientCn: string;
  /** Name in the server certificate (CN and SAN DNS; the SAN also has IP 127.0.0.1). */
  serverName: string;
  /** Client cert with the same CN but signed by another CA: the broker must reject it. */
  untrustedCertFile: string;
  untrustedKeyFile: string;
}

export interface BrokerNode {
  nodeName: string;
  amqpPort: number;
  /** Erlang distribution port (127.0.0.1), handy when debugging clusters. */
  distPort: number;
  tlsPort?: number;
  /** Management HTTP port, only when the rabbitmq_management plugin was requested. */
  managementPort?: number;
  /** The node's temp folder; removed by stop(). */
  dataDir: string;
  tls?: BrokerTlsMaterial;
  /** The OS process runs (false after kill9() until restart(), and after stop()). */
  readonly running: boolean;
  /** `rabbitmqctl -n <nodeName> ...args`; resolves with stdout, rejects on non-zero exit or timeout. */
  ctl(args: string[], timeoutMs?: number): Promise<string>;
  /**
   * A crash: SIGKILL to the whole process group (beam, erl_child_setup,
   * helpers), no goodbye to peers or clients. Data and ports stay reserved,
   * so restart() brings the same node back. Resolves once the process is gone
   * (bounded, ~5 s). A no-op on a dead node.
   */
  kill9(): Promise<void>;
  /**
   * Starts the node again with the same name, ports, config and data (a
   * cluster member rejoins its cluster). A running node is stopped
   * gracefully first. Rejects (and leaves the node dead) if it does not boot
   * within `timeoutMs` (default: the start timeout).
   */
  restart(timeoutMs?: number): Promise<void>;
  /** Idempotent and bounded (~30 s worst case): graceful stop, SIGKILL fallback, temp folder removed. */
  stop(): Promise<void>;
}

/** Deterministic node name for a stem, e.g. to list cluster peers in extraConfig before start. */
export function brokerNodeName(stem: string): string {
  return `${stem}-${process.pid}@localhost`;
}

/** `rabbitmqctl ...args` against the default node (rabbit@localhost). */
export async function rabbitmqctl(args: string[], timeoutMs = DEFAULT_CTL_TIMEOUT_MS): Promise<string> {
  return runCtl(await sharedCliHome(), undefined, args, timeoutMs);
}

/**
 * A port on 127.0.0.1 that is free right now.
 *
 * Why not just listen(0)? The kernel hands out ports from the ephemeral range,
 * the same range it uses for the local side of *outgoing* connections (our
 * AMQP clients, rabbitmqctl's distribution links...), so such a port can be
 * taken again before the broker binds it. Random ports from 10000-29999 lie
 * below Linux's ephemeral range (32768-60999) and are probed by binding them.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 10_000 + Math.floor(Math.random() * 20_000);
    if (RESERVED_PORTS.has(port) || handedOutPorts.has(port)) continue;
    if (await canListen(port)) {
      // Never hand the same port out twice in this process (nodes started in
      // parallel have not bound their ports yet).
      handedOutPorts.add(port);
      return port;
    }
  }
  throw new Error('freePort: no free port found on 127.0.0.1 in 10000-29999 after 200 attempts');
}

/**
 * A client certificate for `cn`, signed by the CA of a node started with `tls` (so that the node trusts it, and SASL
 * EXTERNAL logs it in as `cn`): PEM files in the node's TLS folder, removed with the node.
 */
export async function issueClientCertificate(
  node: BrokerNode,
  cn: string,
): Promise<{ certFile: string; keyFile: string }> {
  if (node.tls === undefined) throw new Error('issueClientCertificate: the node was started without tls');
  if (!/^[A-Za-z0-9._-]+$/.test(cn)) throw new Error(`issueClientCertificate: bad CN ${JSON.stringify(cn)}`);
  const dir = path.dirname(node.tls.caFile);
  const stem = `client-${cn}`;
  await signLeaf(dir, stem, cn, 'ca', 'client');
  return { certFile: path.join(dir, `${stem}.pem`), keyFile: path.join(dir, `${stem}.key`) };
}

/**
 * An executable script at `file` that runs rabbitmqctl against the node with its arguments, as `rabbitmqctl -n NODE`
 * does for an operator: for code under test that runs rabbitmqctl itself.
 */
export async function writeCtlScript(node: BrokerNode, file: string): Promise<void> {
  const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  const script = [
    '#!/bin/sh',
    `HOME=${q(path.join(node.dataDir, 'home'))} ERL_EPMD_ADDRESS=${LOOPBACK} ERL_FLAGS=${q(DIST_ERL_FLAGS)} \\`,
    `  exec ${q(sbinTool('rabbitmqctl'))} -n ${q(node.nodeName)} "$@"`,
    '',
  ].join('\n');
  await fsp.writeFile(file, script, { mode: 0o700 });
}

export async function startBrokerNode(opts: BrokerNodeOptions): Promise<BrokerNode> {
  if (!/^[A-Za-z0-9_-]+$/.test(opts.name)) {
    throw new Error(`startBrokerNode: name must match [A-Za-z0-9_-]+, got ${JSON.stringify(opts.name)}`);
  }
  const plugins = new Set(opts.plugins ?? []);
  if (opts.tls === true) plugins.add('rabbitmq_auth_mechanism_ssl');
  for (const plugin of plugins) {
    // Written verbatim into an Erlang term file.
    if (!/^[a-z][a-z0-9_]*$/.test(plugin)) throw new Error(`startBrokerNode: bad plugin name ${plugin}`);
  }
  const nodeName = brokerNodeName(opts.name);
  const startTimeoutMs = opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const deadlineAt = Date.now() + startTimeoutMs;
  installSafetyNet();

  const dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), `ebadge-broker-${opts.name}-`));
  const entry: LiveEntry = { dir: dataDir, pid: undefined };
  liveEntries.add(entry);
  const homeDir = path.join(dataDir, 'home');
  const logDir = path.join(dataDir, 'log');
  const consoleLog = path.join(dataDir, 'console.log');
  /** The current OS process (rabbitmq-server and its group); replaced by restart(). */
  let run: NodeRun | undefined;

  /** Spawns rabbitmq-server with the prepared environment and waits for await_startup. */
  const launch = async (env: NodeJS.ProcessEnv, launchDeadlineAt: number, timeoutMs: number): Promise<void> => {
    // stdout/stderr go to a file, not a pipe: nothing has to drain it, and the
    // child (unref'ed below) cannot keep the test process alive by itself.
    const consoleFd = fs.openSync(consoleLog, 'a');
    let child: ChildProcess;
    try {
      // Not -detached, so we own the pid. `detached: true` only gives the child
      // its own process group (setsid), so killGroup() reaches sh + beam + helpers.
      child = spawn(sbinTool('rabbitmq-server'), [], {
        env,
        cwd: dataDir,
        stdio: ['ignore', consoleFd, consoleFd],
        detached: true,
      });
    } finally {
      fs.closeSync(consoleFd);
    }
    child.unref();
    entry.pid = child.pid;
    const startedChild = child;
    const thisRun: NodeRun = {
      pid: child.pid,
      hasExited: false,
      exited: new Promise<ExitInfo>((resolve) => {
        startedChild.once('exit', (code, signal) => resolve({ code, signal }));
        startedChild.once('error', (error) => resolve({ code: null, signal: null, error }));
      }),
    };
    void thisRun.exited.then(() => {
      thisRun.hasExited = true;
    });
    run = thisRun;
    await awaitStartup(homeDir, nodeName, thisRun.exited, launchDeadlineAt, timeoutMs);
  };

  /** SIGKILLs the current process group and waits for it to be gone; fails if it is not gone within 5 s. */
  const killNow = async (): Promise<void> => {
    const current = run;
    if (current === undefined) return;
    killGroup(current.pid, 'SIGKILL');
    await settleWithin(current.exited, 5_000);
    // 'exit' is only our direct child; a restart right away must not find
    // the ports or the node name still held by a dying group member.
    await groupGone(current.pid, 5_000);
  };

  /** Graceful `rabbitmqctl stop`, SIGKILL fallback; afterwards no process of this node is left. */
  const halt = async (): Promise<void> => {
    const current = run;
    if (current === undefined) return;
    if (!current.hasExited) {
      try {
        await runCtl(homeDir, nodeName, ['stop'], STOP_GRACE_MS);
      } catch {
        // Hung or already dead: the SIGKILL below takes care of it.
      }
      // `rabbitmqctl stop` returns when the node agreed to stop; the VM
      // (and the rabbitmq-server shell waiting on it) exit shortly after.
      if ((await settleWithin(current.exited, 5_000)) === TIMED_OUT) await killNow();
    }
    // Sweep stragglers of the group (erl_child_setup, inet_gethost...).
    killGroup(current.pid, 'SIGKILL');
  };

  try {
    await writeCookieHome(homeDir);
    await fsp.mkdir(logDir);
    const amqpPort = opts.amqpPort ?? (await freePort());
    const distPort = await freePort();
    const tlsPort = opts.tls === true ? await freePort() : undefined;
    const managementPort = plugins.has('rabbitmq_management') ? await freePort() : undefined;
    const tls = opts.tls === true ? await makeTlsMaterial(path.join(dataDir, 'tls')) : undefined;

    const conf = [
      '# Generated by test/helpers/broker-node.ts',
      `listeners.tcp.default = ${LOOPBACK}:${amqpPort}`,
      ...(tlsPort !== undefined && tls !== undefined ? tlsConfig(tlsPort, tls) : []),
      // The management plugin would otherwise bind 0.0.0.0:15672.
      ...(managementPort !== undefined
        ? [`management.tcp.ip = ${LOOPBACK}`, `management.tcp.port = ${managementPort}`]
        : []),
      opts.extraConfig ?? '',
      '',
    ].join('\n');
    const confFile = path.join(dataDir, 'rabbitmq.conf');
    await fsp.writeFile(confFile, conf);
    const advancedConfigFile = path.join(dataDir, 'advanced.config');
    // Without the option the file stays absent on purpose (nothing to override).
    if (opts.advancedConfig !== undefined) await fsp.writeFile(advancedConfigFile, `${opts.advancedConfig.trim()}\n`);
    const pluginsFile = path.join(dataDir, 'enabled_plugins');
    await fsp.writeFile(pluginsFile, `[${[...plugins].join(',')}].\n`);
    // An own (empty) rabbitmq-env.conf: the system one sets NODENAME etc. for the default node.
    const envConfFile = path.join(dataDir, 'rabbitmq-env.conf');
    await fsp.writeFile(
      envConfFile,
      '# intentionally empty: isolates this node from /etc/rabbitmq/rabbitmq-env.conf\n',
    );

    const env: NodeJS.ProcessEnv = {};
    for (const [key, value] of Object.entries(process.env)) {
      // Never let a RABBITMQ_* variable of the test runner leak into the node.
      if (!key.startsWith('RABBITMQ_')) env[key] = value;
    }
    Object.assign(env, {
      HOME: homeDir, // Erlang reads $HOME/.erlang.cookie
      ERL_EPMD_ADDRESS: LOOPBACK, // share the default node's epmd, never listen elsewhere
      ERL_FLAGS: DIST_ERL_FLAGS,
      RABBITMQ_NODENAME: nodeName,
      RABBITMQ_DIST_PORT: String(distPort), // default would be amqpPort + 20000: may collide
      RABBITMQ_CONF_ENV_FILE: envConfFile,
      RABBITMQ_CONFIG_FILE: confFile,
      RABBITMQ_ADVANCED_CONFIG_FILE: advancedConfigFile,
      RABBITMQ_ENABLED_PLUGINS_FILE: pluginsFile,
      RABBITMQ_MNESIA_BASE: path.join(dataDir, 'mnesia'),
      RABBITMQ_LOG_BASE: logDir,
    });

    await launch(env, deadlineAt, startTimeoutMs);

    if (tls !== undefined) {
      // SASL EXTERNAL maps the client cert's CN to a user that must exist.
      const password = randomBytes(12).toString('hex');
      const ctlTimeout = Math.max(5_000, deadlineAt - Date.now());
      await runCtl(homeDir, nodeName, ['add_user', tls.clientCn, password], ctlTimeout);
      await runCtl(homeDir, nodeName, ['set_permissions', '-p', '/', tls.clientCn, '.*', '.*', '.*'], ctlTimeout);
    }

    let stopping: Promise<void> | undefined;
    const stop = (): Promise<void> =>
      (stopping ??= (async () => {
        await halt();
        liveEntries.delete(entry);
        await removeDir(dataDir);
      })());

    const restart = async (timeoutMs = startTimeoutMs): Promise<void> => {
      if (stopping !== undefined) throw new Error(`restart: ${nodeName} was stopped for good`);
      await halt();
      try {
        await launch(env, Date.now() + timeoutMs, timeoutMs);
      } catch (err) {
        const message = (err instanceof Error ? err.message : String(err)) + (await killedOrWhy(killNow));
        throw new Error(
          `RabbitMQ node ${nodeName} failed to restart: ${message}\n${await logTails(consoleLog, logDir)}`,
          { cause: err },
        );
      }
    };

    return {
      nodeName,
      amqpPort,
      distPort,
      dataDir,
      ...(tlsPort !== undefined ? { tlsPort } : {}),
      ...(managementPort !== undefined ? { managementPort } : {}),
      ...(tls !== undefined ? { tls } : {}),
      get running() {
        return run !== undefined && !run.hasExited && stopping === undefined;
      },
      ctl: (args, timeoutMs = DEFAULT_CTL_TIMEOUT_MS) => runCtl(homeDir, nodeName, args, timeoutMs),
      kill9: killNow,
      restart,
      stop,
    };
  } catch (err) {
    const message = (err instanceof Error ? err.message : String(err)) + (await killedOrWhy(killNow));
    const logs = await logTails(consoleLog, logDir);
    liveEntries.delete(entry);
    await removeDir(dataDir);
    throw new Error(`RabbitMQ node ${nodeName} failed to start: ${message}\n${logs}`, { cause: err });
  }
}

// ---------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------

const LOOPBACK = '127.0.0.1';
/** Binds the Erlang distribution listener to loopback (same flag as the default node). */
const DIST_ERL_FLAGS = '-kernel inet_dist_use_interface {127,0,0,1}';
const DEFAULT_START_TIMEOUT_MS = 60_000;
const DEFAULT_CTL_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 20_000;
/** Set EBADGE_BROKER_KEEP_DIR=1 to keep temp folders (logs!) for post-mortems. */
const KEEP_DIRS = process.env['EBADGE_BROKER_KEEP_DIR'] === '1';

/**
 * Ports freePort() never returns even if they look free: epmd, the default
 * node's AMQP(S)/management/dist ports and rabbitmqctl's own distribution
 * range (RABBITMQ_CTL_DIST_PORT_MIN..MAX = 35672..35682), which is only bound
 * while a CLI command runs.
 */
const RESERVED_PORTS = new Set<number>([
  4369,
  5671,
  5672,
  15672,
  15692,
  25672,
  ...Array.from({ length: 11 }, (_unused, i) => 35672 + i),
]);
const handedOutPorts = new Set<number>();

/**
 * The Debian package's /usr/sbin/rabbitmq* wrappers `su` to the rabbitmq
 * user when run as root (that user's HOME, hence cookie, is /var/lib/rabbitmq)
 * and a timeout would then only kill `su`. The real scripts live in
 * /usr/lib/rabbitmq/bin; elsewhere (generic tarball, Homebrew) use $PATH, or
 * point EBADGE_RABBITMQ_SBIN at the sbin folder.
 */
function sbinTool(tool: string): string {
  const dir =
    process.env['EBADGE_RABBITMQ_SBIN'] ??
    (fs.existsSync('/usr/lib/rabbitmq/bin/rabbitmq-server') ? '/usr/lib/rabbitmq/bin' : '');
  return dir === '' ? tool : path.join(dir, tool);
}

/**
 * The default node's cookie. rabbitmqctl run as root goes through `su rabbitmq`
 * and therefore uses /var/lib/rabbitmq/.erlang.cookie (root has no
 * ~/.erlang.cookie here). $HOME/.erlang.cookie covers non-packaged installs.
 */
function readErlangCookie(): string {
  const candidates = [
    process.env['EBADGE_ERLANG_COOKIE_FILE'],
    '/var/lib/rabbitmq/.erlang.cookie',
    path.join(os.homedir(), '.erlang.cookie'),
  ].filter((c): c is string => c !== undefined && c !== '');
  const problems: string[] = [];
  for (const file of candidates) {
    try {
      const cookie = fs.readFileSync(file, 'utf8').trim();
      if (cookie !== '') return cookie;
      problems.push(`${file}: empty`);
    } catch (err) {
      problems.push(`${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  }
  throw new Error(`no readable Erlang cookie (need root or the rabbitmq user?): ${problems.join('; ')}`);
}

/**
 * A private HOME holding a copy of the cookie. Erlang only reads the cookie
 * from $HOME/.erlang.cookie (or -setcookie / --erlang-cookie, which would show
 * it in `ps` to every local user), and insists on owner-only permissions.
 */
async function writeCookieHome(homeDir: string): Promise<void> {
  await fsp.mkdir(homeDir, { mode: 0o700 });
  await fsp.writeFile(path.join(homeDir, '.erlang.cookie'), readErlangCookie(), { mode: 0o400 });
}

/** One cookie HOME for rabbitmqctl calls against the default node, removed on exit. */
let sharedCliHomePromise: Promise<string> | undefined;
function sharedCliHome(): Promise<string> {
  sharedCliHomePromise ??= (async () => {
    installSafetyNet();
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ebadge-broker-cli-'));
    liveEntries.add({ dir, pid: undefined });
    const home = path.join(dir, 'home');
    await writeCookieHome(home);
    return home;
  })();
  return sharedCliHomePromise;
}

async function runCtl(
  homeDir: string,
  nodeName: string | undefined,
  args: string[],
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<string> {
  const fullArgs = nodeName === undefined ? args : ['-n', nodeName, ...args];
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: homeDir,
    ERL_EPMD_ADDRESS: LOOPBACK,
    ERL_FLAGS: DIST_ERL_FLAGS,
  };
  const result = await runProcess(sbinTool('rabbitmqctl'), fullArgs, env, timeoutMs, signal);
  const output = `${result.stderr}${result.stdout}`.trim();
  if (result.timedOut) {
    throw new Error(`rabbitmqctl ${fullArgs.join(' ')}: killed after ${timeoutMs} ms\n${output}`);
  }
  if (result.code !== 0) {
    throw new Error(`rabbitmqctl ${fullArgs.join(' ')}: exit ${result.code ?? result.signal}\n${output}`);
  }
  return result.stdout;
}

/**
 * Polls `rabbitmqctl await_startup` until the node has booted. await_startup
 * fails at once (exit 69) while the node is not yet registered in epmd, and
 * blocks once it is, so a short retry loop is enough. Fails early when the
 * node process exits (bad config, port in use...).
 */
async function awaitStartup(
  homeDir: string,
  nodeName: string,
  exited: Promise<ExitInfo>,
  deadlineAt: number,
  startTimeoutMs: number,
): Promise<void> {
  let lastError = '';
  for (;;) {
    const remaining = deadlineAt - Date.now();
    if (remaining <= 0) {
      throw new Error(`not booted within ${startTimeoutMs} ms; last rabbitmqctl error:\n${lastError}`);
    }
    const seconds = String(Math.max(1, Math.ceil(remaining / 1000)));
    const abort = new AbortController();
    const attempt = runCtl(homeDir, nodeName, ['await_startup', '--timeout', seconds], remaining, abort.signal).then(
      () => ({ kind: 'up' as const }),
      (error: unknown) => ({ kind: 'failed' as const, error }),
    );
    const outcome = await Promise.race([attempt, exited.then((info) => ({ kind: 'exited' as const, info }))]);
    if (outcome.kind === 'up') return;
    if (outcome.kind === 'exited') {
      // A blocked await_startup does not notice the node died for many seconds.
      abort.abort();
      const { code, signal, error } = outcome.info;
      throw new Error(
        error !== undefined
          ? `could not run rabbitmq-server: ${error.message}`
          : `rabbitmq-server exited during startup (code ${code}, signal ${signal})`,
      );
    }
    lastError = outcome.error instanceof Error ? outcome.error.message : String(outcome.error);
    // Short pause before retrying; cut short if the node exits (the next race reports it).
    await settleWithin(exited, 250);
  }
}

/** Configuration for the AMQPS listener and the SASL mechanisms the client tests need. */
function tlsConfig(
  tlsPort: number,
  tls: BrokerTlsMaterial & { serverCertFile: string; serverKeyFile: string },
): string[] {
  return [
    `listeners.ssl.default = ${LOOPBACK}:${tlsPort}`,
    `ssl_options.cacertfile = ${tls.caFile}`,
    `ssl_options.certfile = ${tls.serverCertFile}`,
    `ssl_options.keyfile = ${tls.serverKeyFile}`,
    'ssl_options.verify = verify_peer',
    // Client certificates are optional, so PLAIN over TLS works too; a
    // certificate that *is* presented must still chain to the CA.
    'ssl_options.fail_if_no_peer_cert = false',
    'auth_mechanisms.1 = PLAIN',
    'auth_mechanisms.2 = AMQPLAIN',
    'auth_mechanisms.3 = EXTERNAL',
    'ssl_cert_login_from = common_name',
  ];
}

/** Minimal openssl config so the system openssl.cnf cannot add or veto extensions. */
const OPENSSL_CNF = `[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = placeholder
[ ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ server ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ client ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`;

const CLIENT_CN = 'ebadge-hub-test';
const SERVER_NAME = 'localhost';

/**
 * CA + server cert + client cert, plus a second CA with a client cert of the
 * same CN (so a negative test proves it is the issuer, not the name, that
 * counts). RSA-2048: boring and accepted by every TLS stack involved.
 */
export async function makeTlsMaterial(
  dir: string,
): Promise<BrokerTlsMaterial & { serverCertFile: string; serverKeyFile: string }> {
  await fsp.mkdir(dir, { mode: 0o700 });
  const cnf = path.join(dir, 'openssl.cnf');
  await fsp.writeFile(cnf, OPENSSL_CNF);
  const f = (name: string): string => path.join(dir, name);

  const makeCa = (stem: string, cn: string): Promise<void> =>
    openssl([
      'req',
      '-x509',
      '-new',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-sha256',
      '-days',
      '3',
      '-config',
      cnf,
      '-extensions',
      'ca',
      '-subj',
      `/CN=${cn}`,
      '-keyout',
      f(`${stem}.key`),
      '-out',
      f(`${stem}.pem`),
    ]);
  const makeLeaf = (stem: string, cn: string, ca: string, extensions: 'server' | 'client'): Promise<void> =>
    signLeaf(dir, stem, cn, ca, extensions);

  await Promise.all([makeCa('ca', 'ebadge-test-ca'), makeCa('untrusted-ca', 'ebadge-untrusted-ca')]);
  await Promise.all([
    makeLeaf('server', SERVER_NAME, 'ca', 'server'),
    makeLeaf('client', CLIENT_CN, 'ca', 'client'),
    makeLeaf('untrusted-client', CLIENT_CN, 'untrusted-ca', 'client'),
  ]);
  return {
    caFile: f('ca.pem'),
    serverCertFile: f('server.pem'),
    serverKeyFile: f('server.key'),
    clientCertFile: f('client.pem'),
    clientKeyFile: f('client.key'),
    clientCn: CLIENT_CN,
    serverName: SERVER_NAME,
    untrustedCertFile: f('untrusted-client.pem'),
    untrustedKeyFile: f('untrusted-client.key'),
  };
}

/** `<stem>.key` and `<stem>.pem` in `dir`: a leaf certificate for `cn`, signed by `<ca>.pem` / `<ca>.key` there. */
export async function signLeaf(
  dir: string,
  stem: string,
  cn: string,
  ca: string,
  extensions: 'server' | 'client',
): Promise<void> {
  const cnf = path.join(dir, 'openssl.cnf');
  const f = (name: string): string => path.join(dir, name);
  await openssl([
    'req',
    '-new',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-sha256',
    '-config',
    cnf,
    '-subj',
    `/CN=${cn}`,
    '-keyout',
    f(`${stem}.key`),
    '-out',
    f(`${stem}.csr`),
  ]);
  // -set_serial instead of -CAcreateserial: no .srl state file to race on.
  const serialBytes = randomBytes(8);
  serialBytes[0] = serialBytes[0]! & 0x7f; // serials must be positive
  const serial = `0x${serialBytes.toString('hex')}`;
  await openssl([
    'x509',
    '-req',
    '-sha256',
    '-days',
    '3',
    '-in',
    f(`${stem}.csr`),
    '-CA',
    f(`${ca}.pem`),
    '-CAkey',
    f(`${ca}.key`),
    '-set_serial',
    serial,
    '-extfile',
    cnf,
    '-extensions',
    extensions,
    '-out',
    f(`${stem}.pem`),
  ]);
}

async function openssl(args: string[]): Promise<void> {
  const result = await runProcess('openssl', args, process.env, 30_000);
  if (result.timedOut || result.code !== 0) {
    throw new Error(
      `openssl ${args.slice(0, 2).join(' ')} failed (${result.timedOut ? 'timeout' : `exit ${result.code}`}): ${result.stderr.trim()}`,
    );
  }
}

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/**
 * execFile with a timeout (and an optional abort signal) that kills the whole
 * process group: rabbitmqctl is sh -> erl -> helpers. Running children are
 * tracked so the exit safety net can kill them as well.
 */
function runProcess(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
  abortSignal?: AbortSignal,
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const pid = child.pid;
    if (pid !== undefined) inFlightPids.add(pid);
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(pid, 'SIGKILL');
    }, timeoutMs);
    const onAbort = (): void => killGroup(pid, 'SIGKILL');
    abortSignal?.addEventListener('abort', onAbort, { once: true });
    const done = (): void => {
      clearTimeout(timer);
      abortSignal?.removeEventListener('abort', onAbort);
      if (pid !== undefined) inFlightPids.delete(pid);
    };
    child.once('error', (err) => {
      done();
      reject(new Error(`cannot run ${file}: ${err.message}`, { cause: err }));
    });
    child.once('close', (code, signal) => {
      done();
      resolve({
        code,
        signal,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
        timedOut,
      });
    });
  });
}

/** One OS process of a node: the first start, or a restart(). */
interface NodeRun {
  pid: number | undefined;
  exited: Promise<ExitInfo>;
  hasExited: boolean;
}

interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: Error;
}

const TIMED_OUT = Symbol('timed out');
/** Waits for `p` at most `ms`, clearing its timer so it never delays process exit. */
async function settleWithin<T>(p: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal); // negative pid: the whole process group
  } catch {
    // ESRCH: already gone.
  }
}

/** Runs `kill` while another error is being reported: '' once done, else why not (to append to that error). */
async function killedOrWhy(kill: () => Promise<void>): Promise<string> {
  try {
    await kill();
    return '';
  } catch (err) {
    return ` (and: ${err instanceof Error ? err.message : String(err)})`;
  }
}

/**
 * Polls until no live process of the group is left; fails after `ms`. Zombies
 * count as gone: they hold no sockets, and here PID 1 reaps the orphaned beam
 * only after a second or two. Linux /proc; elsewhere it returns at once.
 */
async function groupGone(pgid: number | undefined, ms: number): Promise<void> {
  if (pgid === undefined) return;
  const until = Date.now() + ms;
  while (await liveGroupMember(pgid)) {
    if (Date.now() > until)
      throw new Error(`process group ${pgid}: still a live process ${ms} ms after SIGKILL (ports and node name held)`);
    await new Promise((resolve) => setTimeout(resolve, 20)); // the poll interval
  }
}

async function liveGroupMember(pgid: number): Promise<boolean> {
  let entries: string[];
  try {
    entries = await fsp.readdir('/proc');
  } catch {
    return false;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = await fsp.readFile(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // "pid (comm) state ppid pgrp ...": comm may contain spaces and parentheses.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z' && state !== 'X') return true;
  }
  return false;
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ port, host: LOOPBACK, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

async function removeDir(dir: string): Promise<void> {
  if (KEEP_DIRS) return;
  await fsp.rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
}

/**
 * Console output and log files for start-up errors: the first [error] lines
 * (the cause, e.g. a bad config key, is logged first and then buried under
 * supervisor reports) followed by the last lines.
 */
async function logTails(consoleLog: string, logDir: string, lines = 40): Promise<string> {
  const files = [consoleLog];
  try {
    for (const name of (await fsp.readdir(logDir)).sort()) {
      if (name.endsWith('.log')) files.push(path.join(logDir, name));
    }
  } catch {
    // no log folder yet
  }
  const parts: string[] = [];
  for (const file of files) {
    try {
      const text = (await fsp.readFile(file, 'utf8')).trimEnd();
      if (text === '') continue;
      const all = text.split('\n');
      const name = path.basename(file);
      if (all.length > lines) {
        const firstErrors = all
          .slice(0, -lines)
          .filter((l) => l.includes('[error]'))
          .slice(0, 15);
        if (firstErrors.length > 0) parts.push(`--- ${name} (first error lines) ---\n${firstErrors.join('\n')}`);
      }
      parts.push(`--- ${name} (last ${lines} lines) ---\n${all.slice(-lines).join('\n')}`);
    } catch {
      // unreadable or missing: skip
    }
  }
  return parts.length > 0 ? parts.join('\n') : '(no log output)';
}

// ---------------------------------------------------------------------------
// Safety net: a crashed or interrupted test run must not leave nodes behind.
// ---------------------------------------------------------------------------

interface LiveEntry {
  dir: string;
  pid: number | undefined;
}
const liveEntries = new Set<LiveEntry>();
/** Process groups of running rabbitmqctl/openssl helpers. */
const inFlightPids = new Set<number>();
let safetyNetInstalled = false;

/** Synchronous on purpose: it runs inside process 'exit', where async work never completes. */
function killAllNow(): void {
  for (const pid of inFlightPids) killGroup(pid, 'SIGKILL');
  inFlightPids.clear();
  for (const entry of liveEntries) {
    killGroup(entry.pid, 'SIGKILL');
    if (!KEEP_DIRS) {
      try {
        fs.rmSync(entry.dir, { recursive: true, force: true, maxRetries: 3, retryDelay: 50 });
      } catch {
        // best effort
      }
    }
  }
  liveEntries.clear();
}

function installSafetyNet(): void {
  if (safetyNetInstalled) return;
  safetyNetInstalled = true;
  // 'exit' covers normal ends and uncaught exceptions.
  process.on('exit', killAllNow);
  // Signals do not emit 'exit'. The nodes run in their own process groups, so a
  // Ctrl+C in the terminal does not reach them either: kill them, then let the
  // signal take its default action by re-raising it.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      killAllNow();
      process.removeListener(sig, onSignal);
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}
