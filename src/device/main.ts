/**
 * `node hub.js [run] --config /etc/ebadge/hub.json`: the Home Energy Hub, as systemd runs it.
 *
 *   hub.js --version | --help
 *   hub.js [run] [--config FILE]           run the hub (default config /etc/ebadge/hub.json)
 *   hub.js check-config [--config FILE]    validate the config without connecting
 *   hub.js keygen --id ID --out FILE       a new identity for end-to-end sealing (src/crypto)
 *   hub.js bench [--config FILE] [--seconds N]   on-device figures: codec, sealing, broker round trips
 *
 * Exit codes (sysexits.h, so that systemd and scripts can tell them apart):
 *   0 stopped by SIGTERM / SIGINT after draining (SIGHUP drains too, then ends the process by that signal);  64 usage error;  78 configuration error (the hub's own: hub.json
 *   and the files it names);  70 an internal error;  for `bench` only: 77 the broker refused our credentials, 69
 *   unreachable. `run` never exits because of the broker: the hub measures and executes from the start, and its
 *   link (link.ts) connects and retries, with backoff, whatever the broker refuses (403, 404, credentials, vhost).
 * On SIGTERM / SIGINT the hub stops consuming, lets the handlers at work finish, flushes the history and the
 * state, lets its own sends under way be confirmed (at most 5 s), closes the connection, and exits 0.
 *
 * The hub reaches the broker through the bus only (an AMQP transport it builds with amqpBus), and follows the
 * connection through the transport's neutral events. Commands that belong to the operator's CLI (`keygen`) are
 * handed in by the composition layer (src/bin/hub.ts) and run here with the hub's exit codes.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import {
  type AmqpConnectOptions,
  AmqpTransport,
  amqpBus,
  type BudgetOptions,
  type ConnectionFailure,
  type Connector,
} from '../bus/index.js';
import { type Io, UsageError } from '../core/io.js';
import { CryptoError, Keyring, ReplayWindow, Sealer, SequenceReserver, selectBackend } from '../crypto/index.js';
import { DEFAULT_CONFIG, HUB_VERSION, usage, versionLine } from './about.js';
import { bench } from './bench.js';
import { ConfigError, checkPeerKeys, type HubConfig, loadConfig, readPasswordFile } from './config/index.js';
import { suggest } from './config/reader.js';
import { type Actuator, createActuator, createMeter, DeviceError, type Meter } from './devices/index.js';
import { Hub } from './hub.js';
import { BrokerLink } from './link.js';
import { createLogger, type Logger } from './log.js';
import { keepPeerKey, restorePeerKeys } from './peer-keys.js';
import { openStorage } from './storage.js';

export const EXIT = { OK: 0, USAGE: 64, CONFIG: 78, AUTH: 77, UNAVAILABLE: 69, SOFTWARE: 70 } as const;

/** A command run by hub.js with the hub's error handling and exit codes (keygen, from the CLI). */
export type HubCommand = (args: string[], io: Io) => Promise<number>;

export interface RunOptions {
  io: Io;
  /** Resolves when the hub must stop (SIGTERM, SIGINT). */
  stop: Promise<void>;
  /** More commands, by name (src/bin/hub.ts adds `keygen`). */
  commands?: Readonly<Record<string, HubCommand>>;
  /** The bus for an mqtt:// or mqtts:// broker (src/bin/hub-mqtt.ts); without it such a URL is refused. */
  mqttBus?: MqttBusFactory;
}

/**
 * The bus for an mqtt:// or mqtts:// broker, from the config and the sealer: src/bin/hub-mqtt.ts builds it with
 * mqttSettings() (mqtt-settings.ts), which dist/hub.js, without MQTT, does not carry.
 */
export type MqttBusFactory = (config: HubConfig, sealer: Sealer | undefined) => Connector;

const isMqtt = (url: string): boolean => /^mqtts?:/.test(url);

/**
 * What parseArgs does not say of a mistyped option: `-config` is read as the short options -c -o -n ... ("Unknown
 * option '-c'"), and `--conifg` is one letter away from an option.
 */
function optionHint(argv: readonly string[]): string {
  for (const a of argv) {
    const [, dashes, name = ''] = /^(--?)([^-=][^=]*)/.exec(a) ?? [];
    const near = OPTIONS.includes(name) ? name : suggest(name, OPTIONS);
    if (dashes === '-' && name.length > 1 && near !== undefined) return ` (options take two dashes: --${near})`;
    if (dashes === '--' && near !== undefined && near !== name) return ` (did you mean "--${near}"?)`;
  }
  return '';
}

const OPTIONS = ['config', 'seconds', 'version', 'help'];

export async function hubMain(argv: string[], options: RunOptions): Promise<number> {
  const { io } = options;
  const [first, ...rest] = argv;
  try {
    if (first === '--version' || first === '-v') {
      io.out(versionLine());
      return EXIT.OK;
    }
    if (first === '--help' || first === '-h' || first === 'help') {
      io.out(usage());
      return EXIT.OK;
    }
    const extra =
      first !== undefined && Object.hasOwn(options.commands ?? {}, first) ? options.commands?.[first] : undefined;
    if (extra !== undefined) return await extra(rest, io);
    if (first === 'bench') {
      const { values } = parseArgs({
        args: rest,
        options: { config: { type: 'string' }, seconds: { type: 'string' } },
        strict: true,
      });
      const seconds = values.seconds === undefined ? 2 : Number(values.seconds);
      if (!(seconds > 0 && seconds <= 60))
        throw new UsageError(`--seconds: expected 0 < seconds <= 60, found "${values.seconds}"`);
      if (values.config === undefined) return await bench(io, { seconds });
      const config = loadConfig(values.config);
      // Over MQTT a loopback is a session and a topic of the entity's own, which a provisioned broker refuses or
      // gives the hub's session (use_username_as_clientid): the round trips are measured over AMQP only.
      if (/^mqtts?:/i.test(config.broker.url))
        throw new UsageError(
          'bench --config: the broker round trips are measured over AMQP only, and broker.url is an MQTT one: run ' +
            'bench without --config for the codec and sealing figures',
        );
      return await benchBroker(io, seconds, config);
    }
    const command = first === undefined || first.startsWith('-') ? 'run' : first;
    const args = command === first ? rest : argv;
    if (command !== 'run' && command !== 'check-config') throw new UsageError(`unknown command "${command}"`);
    const { values } = parseArgs({ args, options: { config: { type: 'string' } }, strict: true });
    const file = values.config ?? DEFAULT_CONFIG;
    const config = loadConfig(file);
    if (isMqtt(config.broker.url) && options.mqttBus === undefined)
      throw new ConfigError(
        file,
        '$.broker.url',
        'an amqp:// or amqps:// URL (hub.js speaks AMQP; hub-mqtt.js, the MQTT hub, takes this config)',
        config.broker.url.split('://')[0] + '://...',
      );
    const warnings = checkPeerKeys(config, file);
    const csvMeters = await openCsvMeters(config, file);
    if (command === 'check-config') {
      for (const m of csvMeters.values()) await m.close();
      for (const w of warnings) io.err(`warning: ${w}`);
      io.out(
        `${file}: OK (${config.name}, ${config.devices.length} device(s), peers ${config.peers.map((p) => p.name).join(', ')})`,
      );
      return EXIT.OK;
    }
    const log = createLogger(config.log.level, io.out);
    for (const w of warnings) log.warn(`configuration warning: ${w}`);
    return await run(config, options.stop, log, options.mqttBus, csvMeters);
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true) {
      // A command handed in (keygen) has options of its own: the hint is for the hub's.
      const own = first === undefined || !Object.hasOwn(options.commands ?? {}, first);
      io.err(`error: ${(err as Error).message}${own ? optionHint(argv) : ''}\n${usage()}`);
      return EXIT.USAGE;
    }
    if (err instanceof ConfigError) {
      io.err(`configuration error: ${err.message}`);
      return EXIT.CONFIG;
    }
    if (err instanceof CryptoError) {
      io.err(`configuration error: ${err.message} [${err.code}]`);
      return EXIT.CONFIG;
    }
    io.err(`fatal: ${(err as Error)?.stack ?? String(err)}`);
    return EXIT.SOFTWARE;
  }
}

/**
 * `bench --config`: the round trips go through the configured broker on a transport of its own, which tries once
 * (a measurement answers at once when the broker is not there, rather than retrying like the hub). A failure to
 * connect, or a connection lost while measuring, is told apart from a fault of ours by the transport's events.
 */
async function benchBroker(io: Io, seconds: number, config: HubConfig): Promise<number> {
  const transport = new AmqpTransport({
    name: config.name,
    peers: [],
    url: config.broker.url,
    connectOptions: { ...brokerSettings(config), initialAttempts: 1, connectionName: 'hub bench' },
  });
  let failure: ConnectionFailure | undefined;
  let lost = false;
  transport.on('failed', (_error, info) => {
    failure = info;
  });
  transport.on('down', () => {
    lost = true;
  });
  try {
    return await bench(io, { seconds, broker: transport });
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ACCESS_REFUSED') {
      // The loopback's server-named queue fed through the default exchange: a provisioned hub's user may use neither.
      io.err(
        `hub.js bench: the broker refused the loopback queue: ${(err as Error).message}; the round trips need a user ` +
          'that may declare a server-named queue and publish to the default exchange (guest on a broker of your own), ' +
          "which a provisioned hub's user may not",
      );
      return EXIT.AUTH;
    }
    if (failure === undefined && !lost) throw err;
    const refused = failure?.authentication === true;
    io.err(
      `hub.js bench: ${refused ? 'the broker refused our credentials' : 'the broker is unreachable'}: ${(err as Error).message}`,
    );
    return refused ? EXIT.AUTH : EXIT.UNAVAILABLE;
  } finally {
    await transport.close().catch(() => undefined);
  }
}

/**
 * The connection settings of the config that take precedence over its URL's: credentials (a password only from its
 * file), heartbeat, TLS files. The URL itself (host, port, vhost, its query) is given to the transport as it is.
 */
export function brokerSettings(c: HubConfig): AmqpConnectOptions & { username: string } {
  const b = c.broker;
  const t = b.tls;
  // The files given (ca, cert, key) read now, in that order; servername as it is.
  const tls =
    t === undefined
      ? undefined
      : (Object.fromEntries(
          (['ca', 'cert', 'key', 'servername'] as const).flatMap((k) => {
            const v = t[k];
            return v === undefined ? [] : [[k, k === 'servername' ? v : readFileSync(v)]];
          }),
        ) as { ca?: Buffer; cert?: Buffer; key?: Buffer; servername?: string });
  const url = new URL(b.url);
  // EXTERNAL logs in as the certificate's CN (ssl_cert_login_from = common_name, docs/provisioning.md): the user the
  // log and the fixes name. It was guest, and a refused vhost told the operator to give guest access to it.
  const username = b.external
    ? (cnOf(tls?.cert) ?? c.name)
    : (b.username ?? (url.username === '' ? 'guest' : decodeURIComponent(url.username)));
  // The config holds no secret: a password comes from its file; guest's is guest (the local broker only).
  const password =
    b.passwordFile === undefined
      ? username === 'guest'
        ? 'guest'
        : ''
      : readPasswordFile(b.passwordFile, 'the configuration');
  return {
    username,
    password,
    heartbeat: b.heartbeatS,
    connectionName: c.name,
    ...(b.external ? { mechanism: 'EXTERNAL' as const } : {}),
    ...(tls === undefined ? (url.protocol === 'amqps:' ? { tls: true } : {}) : { tls }),
  };
}

function cnOf(cert: Buffer | undefined): string | undefined {
  try {
    return cert === undefined ? undefined : /^CN=(.*)$/m.exec(new X509Certificate(cert).subject)?.[1];
  } catch {
    return undefined; // not a certificate: loadConfig refuses it
  }
}

/** The hub's own: the URL's broker first, then the other nodes of the cluster, and the reconnection delays. */
function connectOptions(c: HubConfig): AmqpConnectOptions & { username: string } {
  const b = c.broker;
  const url = new URL(b.url);
  // As the AMQP client reads the URL: an IPv6 host without its brackets, the scheme's port by default.
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1';
  const port = url.port === '' ? (url.protocol === 'amqps:' ? 5671 : 5672) : Number(url.port);
  return {
    ...brokerSettings(c),
    endpoints: [`${host}:${port}`, ...b.endpoints],
    reconnectDelay: Math.round(b.reconnectDelayS * 1000),
    maxReconnectDelay: Math.round(b.maxReconnectDelayS * 1000),
  };
}

/**
 * The `csv` meters, opened before anything else: a file that is malformed or too large is a configuration error
 * naming its line (exit 78, which the unit does not restart), found by check-config too. It was a stack and exit 70
 * at the run, restarted by systemd 20 times. The run takes these meters as they are (a file of up to 8 MiB is not
 * parsed twice on a Pi).
 */
async function openCsvMeters(config: HubConfig, file: string): Promise<Map<string, Meter>> {
  const meters = new Map<string, Meter>();
  for (const [i, d] of config.devices.entries()) {
    if (d.meter?.kind !== 'csv') continue;
    try {
      meters.set(
        d.name,
        await createMeter(
          d.meter,
          d.signals.map((s) => s.name),
        ),
      );
    } catch (err) {
      for (const m of meters.values()) await m.close();
      if (!(err instanceof DeviceError)) throw err;
      throw new ConfigError(file, `$.devices[${i}].meter.path`, 'a CSV file the meter can replay', err.message);
    }
  }
  return meters;
}

async function run(
  config: HubConfig,
  stop: Promise<void>,
  log: Logger,
  mqttBus: MqttBusFactory | undefined,
  csvMeters: Map<string, Meter>,
): Promise<number> {
  // State, history and outbox; their disk faults and recovery warnings go to this log (src/device/storage.ts).
  const storage = await openStorage(config, log);
  const { history, store, outbox } = storage;
  const meters = new Map<string, Meter>();
  const actuators = new Map<string, Actuator>();
  for (const d of config.devices) {
    if (d.meter !== undefined)
      meters.set(
        d.name,
        csvMeters.get(d.name) ??
          (await createMeter(
            d.meter,
            d.signals.map((s) => s.name),
          )),
      );
    if (d.actuator !== undefined) actuators.set(d.name, await createActuator(d.actuator));
  }
  let sealer: Sealer | undefined;
  if (config.crypto !== undefined) {
    const backend = selectBackend(config.crypto.backend);
    const keyring = Keyring.load(config.crypto.keyring, config.crypto.privateKey, backend);
    await restorePeerKeys(keyring, store, log, Date.now());
    sealer = new Sealer({
      keyring,
      backend,
      sequence: await SequenceReserver.open(path.join(config.stateDir, 'seq.json')),
      replay: await ReplayWindow.open(path.join(config.stateDir, 'replay.json')),
      onKeyLearned: keepPeerKey(keyring, store),
    });
    log.info('end-to-end sealing on', { backend: backend.name, peers: [...sealer.keyring.peers.keys()] });
  }
  const amqp = connectOptions(config);
  const bus =
    mqttBus !== undefined && isMqtt(config.broker.url)
      ? mqttBus(config, sealer)
      : amqpBus({
          name: config.name,
          peers: config.peers.map((p) => p.name),
          url: config.broker.url,
          connectOptions: amqp,
          topology: config.topology,
          role: 'hub',
          declareExchanges: config.declareExchanges,
          prefetch: config.broker.prefetch,
          inboxes: config.broker.inboxes,
          ...(sealer === undefined ? {} : { sealer }),
          ...budgetOf(config),
        });
  const hub = new Hub({ config, bus, history, meters, actuators, store, log, outbox });
  storage.attach(hub);
  // The size too: a body refused unread for its size (TOO_LARGE) is only ever seen here and in the dead letters. The
  // routing key and type property as they came: a mismatch with the message is refused for them (docs/bus.md).
  bus.on('dead-letter', (reason, code, d) =>
    log.warn('message refused', {
      reason,
      code,
      from: d.from,
      id: d.messageId,
      bytes: d.oversized ?? d.body.length,
      routing_key: d.routingKey,
      type: d.type,
    }),
  );
  bus.on('handler-error', (error, type, final) => log.error('handler failed', { type, final, error }));
  bus.on('duplicate', (id, sender) => log.debug('duplicate dropped', { id, sender }));
  bus.on('key-update', (sender, kid, learned) => {
    if (learned) log.info('peer key learned', { peer: sender, kid });
  });
  // A flood is what the budget answers: a line per refused request would flood the journal in turn, so at most one a
  // minute per peer, with how many were refused since the last one.
  const overBudget = new Map<string, { at: number; since: number }>();
  bus.on('over-budget', (sender, type, id) => {
    const now = Date.now();
    const last = overBudget.get(sender);
    if (last !== undefined && now - last.at < 60_000) {
      last.since++;
      return;
    }
    log.warn('requests over budget', { from: sender, type, id, refused_before: last?.since ?? 0 });
    overBudget.set(sender, { at: now, since: 0 });
  });
  // A type the hub does not handle is answered 453 when it has a msg_id, and without one only acked: this line is then
  // its one trace (a late reply to one of the hub's own requests comes here too).
  bus.on('unhandled', (message, sender) => {
    const m = message as { msg_id?: unknown; request_id?: unknown };
    log.info('message not handled', {
      type: message.msg,
      from: sender,
      ...(typeof m.msg_id === 'string' ? { msg_id: m.msg_id } : {}),
      ...(typeof m.request_id === 'string' ? { request_id: m.request_id } : {}),
    });
  });
  // The broker's state never stops the hub: the link connects, and retries whatever the broker refuses (link.ts).
  const link = new BrokerLink({ config, bus, hub, log, user: amqp.username });

  // Measuring, history and activations do not wait for the broker (a Pi may boot without network).
  await hub.start();
  log.info('hub started', {
    name: config.name,
    devices: config.devices.map((d) => d.name),
    version: HUB_VERSION,
    broker: config.broker.url,
    user: amqp.username,
  });
  void link.start();
  await stop;
  log.info(link.up ? 'stopping: draining in-flight work' : 'stopping before the broker was reached');
  link.close();
  await hub.stop().catch((err: unknown) => log.error('stopping the hub', { error: err }));
  await bus.close().catch(() => undefined);
  await storage.close();
  await Promise.allSettled([...meters.values()].map((m) => m.close()));
  await Promise.allSettled([...actuators.values()].map((a) => a.close()));
  log.info('stopped');
  return EXIT.OK;
}

/** hub.json's `budget` as the Connector takes it (docs/bus.md, "Fairness"); nothing when absent. */
export function budgetOf(c: HubConfig): { budget?: BudgetOptions | false } {
  const b = c.budget;
  if (b === undefined) return {};
  if (b === false) return { budget: false };
  return {
    budget: {
      messages: { rate: b.messagesPerS, burst: b.messagesBurst },
      bytes: { rate: b.bytesPerS, burst: b.bytesBurst },
    },
  };
}

/** The process entry: real stdio, signals, exit code; `commands` and `mqttBus` as in RunOptions. */
export function runHubProcess(commands: Readonly<Record<string, HubCommand>> = {}, mqttBus?: MqttBusFactory): void {
  let stopRequested!: () => void;
  const stop = new Promise<void>((resolve) => {
    stopRequested = resolve;
  });
  // Kept, not once: a second signal while draining (`timeout` signals the hub and then its process group, a terminal's
  // ^C reaches every process of its group) found Node's default action back and ended the drain, logging nothing.
  process.on('SIGTERM', () => stopRequested());
  process.on('SIGINT', () => stopRequested());
  // The terminal it was started from closed (a hub run from an SSH session): a stop like any other, drained, then
  // ended by that signal again (a normal exit makes Node restore the terminal, gone: it aborted). A second hang-up
  // while draining (the shell forwards one, the kernel sends one) must not end the drain.
  let hangup = false;
  process.on('SIGHUP', () => {
    hangup = true;
    stopRequested();
  });
  // What operators send to have logs reopened: the hub has no log file, so nothing to do. Unheard, SIGUSR1 opened
  // Node's inspector on 127.0.0.1:9229, where any local user could run code as the hub and read its keys; SIGUSR2
  // ended it. A listener of our own keeps both from happening (Node 18 and 20 alike).
  for (const signal of ['SIGUSR1', 'SIGUSR2'] as const)
    process.on(signal, () =>
      process.stderr.write(`${signal} ignored: the hub logs to stdout, it has no file to reopen\n`),
    );
  // A log sink that fails (a pipe whose reader left: `hub.js | head`; a full disk under a log file) loses the logs
  // from then on, not the hub: an 'error' event nobody listened to ended the process with a stack trace.
  process.stdout.once('error', (err) => {
    process.stderr.write(
      `the log output failed (${String((err as { code?: unknown }).code ?? err)}); logs are lost from now on\n`,
    );
    process.stdout.on('error', () => undefined);
  });
  process.stderr.on('error', () => undefined);
  const io: Io = { out: (l) => process.stdout.write(`${l}\n`), err: (l) => process.stderr.write(`${l}\n`) };
  hubMain(process.argv.slice(2), { io, stop, commands, ...(mqttBus === undefined ? {} : { mqttBus }) }).then(
    (code) => {
      if (hangup && code === EXIT.OK) {
        process.removeAllListeners('SIGHUP');
        process.kill(process.pid, 'SIGHUP');
        return;
      }
      process.exitCode = code;
      setTimeout(() => process.exit(code), 2000).unref();
    },
    (err: unknown) => {
      process.stderr.write(`fatal: ${String(err)}\n`);
      process.exit(EXIT.SOFTWARE);
    },
  );
}
