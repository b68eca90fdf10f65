/**
 * Operator commands on the bus: send, request, listen (one file of about 610 lines: the three commands share the
 * config file, the login and the connector, and each is short). They act as one entity (`--as`), which must be one of the
 * broker's users with its permissions; `listen` and `request` consume that entity's inbox, so use a dedicated
 * operator entity rather than a running VPP's. Neither acks a message it has not printed: what `request` takes that
 * is not its reply, and what `listen` takes beyond --count, goes back to the queue. Connection settings come from a
 * JSON config file (`--config`, whose relative file names are its neighbours) and flags (which win). Secrets are read
 * from files or the environment, never given inline: `--password-file` (or EBADGE_PASSWORD_FILE, EBADGE_PASSWORD),
 * `--key`, `--private-key`. We log in as the entity, never as guest unless the URL names it (credentials.ts), and
 * say as whom on stderr. An mqtt:// or mqtts:// URL gives the same commands over MQTT (src/mqtt, handed in by the
 * binary: see useMqtt); `send` then connects to the entity's own session and takes nothing from it (see send()).
 *
 * Config file: { "url": "amqps://broker:5671", "name": "ops", "peers": ["heh-b827ebea02c1"], "topology": "exchanges",
 *   "role": "controller", "declareExchanges": true, "passwordFile": "...", "external": false,
 *   "tls": { "ca": "ca.pem", "cert": "ops.pem", "key": "ops.key" }, "keyring": "...", "privateKey": "...", "stateDir": "...",
 *   "inboxes": { "shards": 8 } (a sharded party's, as ebadge provision writes it) }
 */

import { mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { ChannelError, type ConnectOptions, parseUrl } from '../amqp/index.js';
import {
  type AmqpBusOptions,
  AmqpTransport,
  amqpBus,
  BusError,
  type BusOptions,
  type Connector,
  type HandlerContext,
} from '../bus/index.js';
import { DecodeError, decode, type Message, type MessageType, SCHEMAS } from '../codec/index.js';
import { readFileBounded } from '../core/read-bounded.js';
import { Keyring, ReplayWindow, Sealer, SequenceReserver, selectBackend } from '../crypto/index.js';
import { backendOption, type Io, UsageError } from './common.js';
import { login } from './credentials.js';

export const BUS_USAGE = `  send    --as ENTITY --to PEER TYPE [field=value ...] [--json FILE|-]
  request --as ENTITY --to PEER TYPE [field=value ...] [--json FILE|-] [--timeout MS]
  listen  --as ENTITY [--peer PEER ...] [--count N]
  connection: [--config FILE] [--url URL] [--password-file FILE] [--ca FILE --cert FILE --key FILE] [--external]
              URL: amqp(s)://HOST:PORT, or mqtt(s)://HOST:PORT for an MQTT broker (--topology, --role, --passive and
              --external are AMQP's)
              the user is ENTITY; its password: --password-file, the config's, EBADGE_PASSWORD_FILE or EBADGE_PASSWORD
              [--topology exchanges|queues] [--role hub|controller] [--passive] [--peer PEER ...]
  sealing:    [--keyring FILE --private-key FILE --state-dir DIR] [--backend auto|node|noble]`;

const OPTIONS = {
  config: { type: 'string' },
  url: { type: 'string' },
  as: { type: 'string' },
  to: { type: 'string' },
  peer: { type: 'string', multiple: true },
  topology: { type: 'string' },
  role: { type: 'string' },
  passive: { type: 'boolean' },
  'password-file': { type: 'string' },
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  external: { type: 'boolean' },
  keyring: { type: 'string' },
  'private-key': { type: 'string' },
  'state-dir': { type: 'string' },
  backend: { type: 'string' },
  json: { type: 'string' },
  timeout: { type: 'string' },
  count: { type: 'string' },
} as const;

type Values = ReturnType<typeof parse>['values'];

/** What the CLI hands an MQTT bus: src/mqtt's mqttBus takes these (and more). */
export interface MqttCliOptions extends BusOptions {
  name: string;
  peers: readonly string[];
  url: string;
  username?: string;
  password?: string;
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
}
export type MqttBusFactory = (options: MqttCliOptions) => Connector;

/**
 * The MQTT bus for mqtt:// and mqtts:// URLs. The cli layer does not import src/mqtt (test/unit/layers.test.ts):
 * the binary hands it in (src/bin/ebadge.ts: loaded on first use, so a command over AMQP never loads MQTT.js).
 */
let mqttLoader: (() => Promise<MqttBusFactory>) | undefined;
export function useMqtt(loader: () => Promise<MqttBusFactory>): void {
  mqttLoader = loader;
}

function parse(args: string[]) {
  return parseArgs({ args, options: OPTIONS, allowPositionals: true, strict: true });
}

interface FileConfig {
  url?: string;
  name?: string;
  peers?: string[];
  topology?: string;
  role?: string;
  declareExchanges?: boolean;
  passwordFile?: string;
  external?: boolean;
  tls?: { ca?: string; cert?: string; key?: string };
  keyring?: string;
  privateKey?: string;
  stateDir?: string;
  /** A party's inbox layout, as `ebadge provision` writes it for a sharded party (`{ "shards": K }`). */
  inboxes?: 'shared' | 'per-peer' | { shards: number };
}

function readConfig(file: string | undefined): FileConfig {
  if (file === undefined) return {};
  let v: unknown;
  try {
    v = JSON.parse(readFileBounded(file).toString('utf8'));
  } catch (err) {
    throw new UsageError(`--config ${file}: ${(err as NodeJS.ErrnoException).code ?? 'not valid JSON'}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw new UsageError(`--config ${file}: expected a JSON object`);
  const c = v as Record<string, unknown>;
  const known = [
    'url',
    'name',
    'peers',
    'topology',
    'role',
    'declareExchanges',
    'passwordFile',
    'external',
    'tls',
    'keyring',
    'privateKey',
    'stateDir',
    'inboxes',
  ];
  for (const k of Object.keys(c))
    if (!known.includes(k)) throw new UsageError(`--config ${file}: unknown setting "${k}"`);
  if (c['peers'] !== undefined && (!Array.isArray(c['peers']) || !c['peers'].every((p) => typeof p === 'string'))) {
    throw new UsageError(`--config ${file}: peers must be an array of entity names`);
  }
  const inboxes = c['inboxes'];
  if (
    inboxes !== undefined &&
    inboxes !== 'shared' &&
    inboxes !== 'per-peer' &&
    !(
      typeof inboxes === 'object' &&
      inboxes !== null &&
      Object.keys(inboxes).join() === 'shards' &&
      Number.isInteger((inboxes as { shards: unknown }).shards)
    )
  )
    throw new UsageError(`--config ${file}: inboxes must be "shared", "per-peer" or { "shards": K }`);
  // As in a hub.json: a relative file name is the config's neighbour (ebadge provision writes them so), whatever
  // the working directory.
  const cfg = c as FileConfig;
  const near = (f: string | undefined): string | undefined =>
    f === undefined ? undefined : path.resolve(path.dirname(file), f);
  const tls =
    cfg.tls === undefined ? {} : { tls: { ca: near(cfg.tls.ca), cert: near(cfg.tls.cert), key: near(cfg.tls.key) } };
  return {
    ...cfg,
    ...tls,
    passwordFile: near(cfg.passwordFile),
    keyring: near(cfg.keyring),
    privateKey: near(cfg.privateKey),
    stateDir: near(cfg.stateDir),
  } as FileConfig;
}

/**
 * The connector of the entity we act as, from the config file and the flags, started once `setup` has registered
 * its handlers: consuming begins with start(), and a connector takes no handler after it.
 */
async function connector(
  values: Values,
  io: Io,
  extra: Partial<AmqpBusOptions>,
  setup: (bus: Connector) => void = () => undefined,
): Promise<Connector> {
  const cfg = readConfig(values.config);
  const name = values.as ?? cfg.name;
  if (name === undefined) throw new UsageError('--as ENTITY is required (or "name" in --config)');
  const peers = [
    ...new Set([...(cfg.peers ?? []), ...(values.peer ?? []), ...(values.to === undefined ? [] : [values.to])]),
  ];
  if (peers.length === 0) throw new UsageError('no peer: give --to or --peer (or "peers" in --config)');
  const rawUrl = values.url ?? cfg.url ?? 'amqp://127.0.0.1:5672';
  const mqtt = /^mqtts?:/i.test(rawUrl);
  const url: ConnectOptions = mqtt ? mqttUrl(rawUrl) : parseUrl(rawUrl);
  if (mqtt && (values.external === true || cfg.external === true))
    throw new UsageError('--external is for AMQP brokers: over MQTT the entity logs in with its password');
  const tlsFiles = {
    ca: values.ca ?? cfg.tls?.ca,
    cert: values.cert ?? cfg.tls?.cert,
    key: values.key ?? cfg.tls?.key,
  };
  if (tlsFiles.ca !== undefined || tlsFiles.cert !== undefined) {
    url.tls = {
      ...(typeof url.tls === 'object' ? url.tls : {}),
      ...(tlsFiles.ca === undefined ? {} : { ca: readFileBounded(tlsFiles.ca) }),
      ...(tlsFiles.cert === undefined ? {} : { cert: readFileBounded(tlsFiles.cert) }),
      ...(tlsFiles.key === undefined ? {} : { key: readFileBounded(tlsFiles.key) }),
    };
  }
  const passwordFile =
    values['password-file'] !== undefined
      ? { file: values['password-file'], from: '--password-file' }
      : cfg.passwordFile === undefined
        ? undefined
        : { file: cfg.passwordFile, from: `the passwordFile of ${values.config as string}` };
  io.err(
    login({
      name,
      url,
      urlFrom:
        values.url !== undefined
          ? '--url'
          : cfg.url !== undefined
            ? `--config ${values.config as string}`
            : 'the default URL',
      ...(passwordFile === undefined ? {} : { passwordFile }),
      external: values.external === true || cfg.external === true,
      ...(tlsFiles.cert === undefined ? {} : { certFile: tlsFiles.cert }),
      env: process.env,
    }),
  );
  url.connectionName = `ebadge-cli ${name}`;
  const topology = values.topology ?? cfg.topology ?? 'exchanges';
  if (topology !== 'exchanges' && topology !== 'queues')
    throw new UsageError(`--topology: expected exchanges or queues, found "${topology}"`);
  const role = values.role ?? cfg.role ?? 'controller';
  if (role !== 'hub' && role !== 'controller')
    throw new UsageError(`--role: expected hub or controller, found "${role}"`);
  const keyringFile = values.keyring ?? cfg.keyring;
  let sealer: Sealer | undefined;
  if (keyringFile !== undefined) {
    const privateKey = values['private-key'] ?? cfg.privateKey;
    if (privateKey === undefined) throw new UsageError('--keyring needs --private-key');
    const backend = selectBackend(backendOption(values.backend));
    const dir = values['state-dir'] ?? cfg.stateDir ?? path.dirname(privateKey);
    // The sequence and replay files live there: made on first use (0700), as the hub makes its stateDir.
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const keyring = Keyring.load(keyringFile, privateKey, backend);
    // The bus seals only to the peers its keyring has, and talks in clear to the rest; the hub refuses that unless its
    // config says clearText, and so does the command: without --keyring it talks in clear, said by the command line.
    const clear = peers.filter((p) => !keyring.peers.has(p));
    if (clear.length > 0)
      throw new UsageError(
        `--keyring ${keyringFile} has no keys for ${clear.join(', ')}: sealed to the others, ` +
          `${clear.length === 1 ? 'it' : 'they'} would get clear text; add ${clear.length === 1 ? 'its' : 'their'} ` +
          'entry, or leave out --keyring to talk in clear',
      );
    sealer = new Sealer({
      keyring,
      backend,
      sequence: await SequenceReserver.open(path.join(dir, `${name}.seq.json`)),
      replay: await ReplayWindow.open(path.join(dir, `${name}.replay.json`)),
    });
  }
  let bus: Connector;
  if (mqtt) {
    if (mqttLoader === undefined)
      throw new UsageError(
        `${rawUrl.split(':')[0]}:// URLs need the CLI with MQTT: dist/ebadge.js (or src/bin/ebadge.ts)`,
      );
    const tls = typeof url.tls === 'object' ? url.tls : undefined;
    bus = (await mqttLoader())({
      name,
      peers,
      url: `${url.tls === undefined ? 'mqtt' : 'mqtts'}://${url.hostname ?? '127.0.0.1'}:${url.port}`,
      ...(url.username === undefined ? {} : { username: url.username }),
      ...(url.password === undefined ? {} : { password: url.password }),
      ...(tls === undefined ? {} : { tls: pick(tls) }),
      ...(sealer === undefined ? {} : { sealer }),
    });
  } else {
    bus = amqpBus({
      // A command line tool answers at once when the broker is not there, rather than retrying like a service.
      name,
      peers,
      url: { ...url, initialAttempts: 1 },
      topology,
      role,
      declareExchanges: !(values.passive === true || cfg.declareExchanges === false),
      // Sharded, the command is one more instance of its party, a standby: it hands any shard it is given to the
      // running instances it hears, and the answer to its request is handed to it by whichever one receives it.
      ...(cfg.inboxes === undefined ? {} : { inboxes: cfg.inboxes }),
      ...(typeof cfg.inboxes === 'object'
        ? { instance: `ebadge-cli-${process.pid}-${Date.now()}`, standby: true }
        : {}),
      ...(sealer === undefined ? {} : { sealer }),
      ...extra,
    });
  }
  // A command line tool answers at once when the broker is not there, rather than retrying like a service: over
  // MQTT (no initialAttempts) the first failed connection attempt ends the command.
  let unreachable: (err: Error) => void = () => undefined;
  const failed = new Promise<never>((_resolve, reject) => {
    unreachable = (err) =>
      reject(new Error(`cannot connect to ${rawUrl.replace(/\/\/[^@/]*@/, '//')}: ${err.message}`));
  });
  failed.catch(() => undefined);
  if (mqtt) bus.transport.on('failed', unreachable);
  // A broker in a resource alarm stops reading what we publish: said at once, not after the publish deadline.
  bus.transport.on('blocked', (reason) =>
    io.err(`warning: the broker blocks our publishing (${reason}); waiting for it, or for the timeout`),
  );
  try {
    setup(bus);
    // A send over MQTT: the transport alone, its deliveries never handed to the connector (send() says why).
    const started =
      mqtt && extra.consume === false ? bus.transport.start(holdMqtt, { maxBodyBytes: bus.maxBodyBytes }) : bus.start();
    await Promise.race([started, failed]);
    bus.transport.off('failed', unreachable);
  } catch (err) {
    // A connector left open would go on consuming, and reconnecting, after the command has failed.
    await bus.close().catch(() => undefined);
    throw err;
  }
  return bus;
}

/**
 * What a send over MQTT is given from the entity's session: never settled, so never acknowledged (the transport
 * holds back its PUBACK), and the broker delivers it again to the entity's next connection.
 */
async function holdMqtt(): Promise<void> {
  await new Promise<never>(() => undefined);
}

/**
 * The messages a command takes from the entity's inbox but will not print (`request`: everything but its reply;
 * `listen`: what comes after --count). Acking one would lose it, since nobody has seen it; giving it back at once
 * would have the broker hand it straight back to us, in a loop, for as long as we consume. So it stays unsettled
 * until the command is done, and goes back to the queue, for the next consumer, once we have stopped consuming.
 */
class Held {
  count = 0;
  /** A message the command printed (a reply of the wrong type, INVALID_REPLY): acked, not given back. */
  printed: Message | undefined;
  #release!: () => void;
  readonly #released = new Promise<void>((resolve) => {
    this.#release = resolve;
  });

  /** The handler's body for a message we keep: it settles the message itself, so the connector does not ack it. */
  async hold(ctx: HandlerContext, message?: Message): Promise<void> {
    this.count++;
    await this.#released;
    if (message !== undefined && message === this.printed) {
      this.count--;
      ctx.ack();
    } else ctx.nack(true);
  }

  /** Stops consuming first, so that no message given back can reach us again, then gives back what we hold. */
  async giveBack(bus: Connector): Promise<void> {
    await bus.transport.stopConsuming().catch(() => undefined);
    this.#release();
  }
}

/**
 * Rejects with the broker's refusal of a publish (403: a message type this entity may not send there, an exchange it
 * may not write; docs/provisioning.md). The broker closes the channel for it, and the AMQP client, taking that for a
 * passing fault, re-creates the channel and sends again until the publish deadline, a minute later; a command fails
 * at once instead. `stop()` when the command is done.
 */
function refusal(bus: Connector): { refused: Promise<never>; stop: () => void } {
  // Only AMQP has the channel to watch; over MQTT, what becomes of a refused publish is the transport's (docs/bus.md).
  if (!(bus.transport instanceof AmqpTransport))
    return { refused: new Promise<never>(() => undefined), stop: () => undefined };
  const conn = bus.transport.connection;
  let listener: (err: Error | undefined) => void = () => undefined;
  const refused = new Promise<never>((_resolve, reject) => {
    listener = (err) => {
      if (err instanceof ChannelError && err.replyCode === 403) reject(err);
    };
    conn.on('channel-recovered', listener);
  });
  refused.catch(() => undefined);
  return { refused, stop: () => conn.off('channel-recovered', listener) };
}

/** The PEM files of AMQP's TLS options that an MQTT connection takes. */
function pick(tls: { ca?: unknown; cert?: unknown; key?: unknown }): { ca?: Buffer; cert?: Buffer; key?: Buffer } {
  const out: { ca?: Buffer; cert?: Buffer; key?: Buffer } = {};
  for (const k of ['ca', 'cert', 'key'] as const) {
    const v = tls[k];
    if (Buffer.isBuffer(v)) out[k] = v;
  }
  return out;
}

/**
 * An mqtt:// or mqtts:// URL as src/amqp's parseUrl gives an AMQP one, for login() and the TLS files: host, port
 * (1883, 8883), user and password; `tls` set for mqtts:.
 */
function mqttUrl(text: string): ConnectOptions {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new UsageError(`--url: not a URL: "${text}"`);
  }
  const secure = u.protocol.toLowerCase() === 'mqtts:';
  if ((u.pathname !== '' && u.pathname !== '/') || u.search !== '')
    throw new UsageError(`--url: an MQTT URL names a broker only (mqtt://host:port), found "${u.pathname}${u.search}"`);
  return {
    hostname: u.hostname,
    port: u.port === '' ? (secure ? 8883 : 1883) : Number(u.port),
    ...(u.username === '' ? {} : { username: decodeURIComponent(u.username) }),
    ...(u.password === '' ? {} : { password: decodeURIComponent(u.password) }),
    ...(secure ? { tls: {} } : {}),
  } as ConnectOptions;
}

/** A --json file's text; a file that cannot be read is named with the reason (EISDIR alone named nothing). */
function readInput(file: string): string {
  try {
    return readFileBounded(file).toString('utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new UsageError(`--json ${file}: cannot be read (${e.code ?? e.message})`);
  }
}

/** Builds a message from `TYPE field=value ...` or a JSON file, and validates it with the codec. */
async function message(values: Values, positionals: string[], io: Io): Promise<Message> {
  let obj: Record<string, unknown>;
  if (values.json !== undefined) {
    const text =
      values.json === '-'
        ? await (io.stdin ?? (() => Promise.reject(new UsageError('no standard input'))))()
        : readInput(values.json);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new UsageError(`--json: not valid JSON (${(err as Error).message})`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new UsageError(
        `--json: expected a JSON object (a message), found ${parsed === null ? 'null' : Array.isArray(parsed) ? 'an array' : typeof parsed}`,
      );
    obj = parsed as Record<string, unknown>;
    // As given, the codec reads the text itself: its limits (nesting, size) apply before anything is built from it.
    if (obj['msg'] !== undefined || positionals[0] === undefined) return decoded(text);
    obj['msg'] = positionals[0];
  } else {
    const [type, ...fields] = positionals;
    if (type === undefined) throw new UsageError('the message TYPE is required (e.g. get_report)');
    if (!Object.hasOwn(SCHEMAS, type)) throw new UsageError(`unknown message type "${type}"`);
    obj = { msg: type };
    const spec = (
      SCHEMAS[type as MessageType] as { fields: Record<string, { type: { name: string }; nullable: boolean }> }
    ).fields;
    for (const f of fields) {
      const eq = f.indexOf('=');
      if (eq <= 0) throw new UsageError(`"${f}": expected field=value`);
      const k = f.slice(0, eq);
      const raw = f.slice(eq + 1);
      // `device=null` is the data model's null where the field allows it, never the string "null".
      obj[k] = raw === 'null' && spec[k]?.nullable === true ? null : fieldValue(raw, spec[k]?.type.name);
    }
  }
  let text: string;
  try {
    text = JSON.stringify(obj);
  } catch {
    // JSON.parse takes any depth, JSON.stringify recurses: what overflows it is far past the codec's nesting limit.
    throw new UsageError('invalid message: nested too deeply (a message nests 32 levels at most)', FIELDS_HINT);
  }
  return decoded(text);
}

/** The command was right, the message was not: what helps is its fields, not the usage of every command. */
const FIELDS_HINT = '`ebadge fields TYPE` lists the fields of a message type';

function decoded(text: string): Message {
  try {
    return decode(text).message;
  } catch (err) {
    if (err instanceof DecodeError) throw new UsageError(`invalid message: ${err.message}`, FIELDS_HINT);
    throw err;
  }
}

/** `900` is a number, `true` a boolean, `["a"]` JSON; a bare word is a string; `a,b` for a list of strings. */
function fieldValue(raw: string, typeName: string | undefined): unknown {
  if (typeName?.endsWith('[]') && !raw.startsWith('[')) return raw === '' ? [] : raw.split(',');
  if (typeName === 'string' || typeName === 'uuid' || typeName === 'time' || typeName?.startsWith('enum') === true)
    return raw;
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

/**
 * Over MQTT, `send` connects as the entity itself (its client id, clean session off), not with a throw-away client id
 * and a clean session: a broker that makes the client id the login name (Mosquitto's `use_username_as_clientid`,
 * which `ebadge provision --mosquitto` sets so that no party can take another's session) gave that clean session the
 * entity's own, and wiped it with what waited there (docs/SECURITY.md). What the session delivers meanwhile is never
 * handed to the connector (which would refuse a message from a peer the command does not name), nor acknowledged: the
 * entity gets it on its next connection.
 */
export async function send(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args);
  if (values.to === undefined) throw new UsageError('--to PEER is required');
  const m = await message(values, positionals, io);
  const bus = await connector(values, io, { consume: false });
  const broker = refusal(bus);
  try {
    await Promise.race([bus.publish(values.to, m), broker.refused]);
    io.out(`sent ${m.msg} to ${values.to}`);
    return 0;
  } finally {
    broker.stop();
    await settled(bus.close(CLOSE_MS));
  }
}

/**
 * How long a command waits for its goodbyes (a basic.cancel, a connection.close): a broker in a resource alarm reads
 * none of them, and the command, its answer printed, hung for minutes.
 */
const CLOSE_MS = 3000;

/** `p` settled, or CLOSE_MS passed: what is left is the process's to end (run() exits). */
function settled(p: Promise<unknown>): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p.then(
      () => undefined,
      () => undefined,
    ),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, CLOSE_MS);
      timer.unref();
    }),
  ]).finally(() => clearTimeout(timer));
}

export async function request(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args);
  if (values.to === undefined) throw new UsageError('--to PEER is required');
  const timeout = values.timeout === undefined ? 10_000 : Number(values.timeout);
  if (!Number.isInteger(timeout) || timeout < 1)
    throw new UsageError(`--timeout: expected milliseconds, found "${values.timeout}"`);
  const m = await message(values, positionals, io);
  // The reply settles the request before any handler sees it; whatever else waits in the inbox is not ours to take.
  const held = new Held();
  const bus = await connector(values, io, {}, (b) => {
    for (const type of Object.keys(SCHEMAS) as MessageType[]) b.handle(type, (m, ctx) => held.hold(ctx, m));
  });
  const broker = refusal(bus);
  try {
    const reply = await Promise.race([bus.request(values.to, m, { timeout }), broker.refused]);
    io.out(JSON.stringify(reply));
    return 0;
  } catch (err) {
    // REJECTED's error response, or the message of another type INVALID_REPLY got: what the peer said. The latter
    // then reaches the handlers as any message: printed here, it is acked, not left for a listen to print again.
    if (err instanceof BusError && err.reply !== undefined) {
      io.out(JSON.stringify(err.reply));
      held.printed = err.reply;
    }
    throw err;
  } finally {
    // A turn for the message that failed the request to reach its handler (the steps after the match are not I/O).
    await new Promise((resolve) => setImmediate(resolve));
    broker.stop();
    await settled(held.giveBack(bus).then(() => bus.close(CLOSE_MS)));
    if (held.count > 0)
      io.err(`left ${held.count} other message(s) to ${bus.name} in the queue, unread (ebadge listen prints them)`);
  }
}

export async function listen(args: string[], io: Io, signal?: AbortSignal): Promise<number> {
  const { values, positionals } = parse(args);
  if (positionals.length > 0)
    throw new UsageError(`listen takes no positional arguments, found "${positionals[0] as string}"`);
  const count = values.count === undefined ? Infinity : Number(values.count);
  if (!(count === Infinity || (Number.isInteger(count) && count > 0)))
    throw new UsageError(`--count: expected a positive integer, found "${values.count}"`);
  let seen = 0;
  let done!: () => void;
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  const print = (message: Message, from: string, diagnostics: readonly string[]): void => {
    io.out(JSON.stringify({ from, type: message.msg, message, ...(diagnostics.length > 0 ? { diagnostics } : {}) }));
    if (++seen >= count) done();
  };
  // A message is acked only once printed: what the broker delivers beyond --count (it sends up to a prefetch of
  // messages at once) goes back to the queue.
  const held = new Held();
  const bus = await connector(values, io, {}, (b) => {
    for (const type of Object.keys(SCHEMAS) as MessageType[])
      b.handle(type, (m, ctx) => (seen < count ? print(m, ctx.sender, ctx.diagnostics) : held.hold(ctx)));
    b.on('dead-letter', (reason, code, d) =>
      io.err(`refused from ${d.from ?? 'an unknown sender'}: ${reason} [${code}]`),
    );
    // A listener runs for long: the connection's losses and returns are said, not only seen as a silence.
    b.transport.on('down', (err) => io.err(`warning: connection lost (${err?.message ?? 'closed'}); reconnecting`));
    b.transport.on('recovered', (i) => io.err(`reconnected to ${i.endpoint} after ${i.downtimeMs} ms`));
  });
  signal?.addEventListener('abort', () => done(), { once: true });
  try {
    await finished;
    return 0;
  } finally {
    await settled(held.giveBack(bus).then(() => bus.close(CLOSE_MS)));
  }
}
