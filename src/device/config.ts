/**
 * The hub's configuration file (`node hub.js --config /etc/ebadge/hub.json`): read once at start, checked whole,
 * and returned with every default filled in, so that the rest of the hub never asks "was this given?".
 *
 * A hub runs unattended on a Raspberry Pi, so a mistake must stop it at start with a message that says where and
 * what, rather than surface hours later as a device that never reports:
 *
 *   hub.json: $.devices[1].meter.kind: expected one of "simulated", "csv", "command", "file", found "modbus"
 *
 * Unknown keys are errors everywhere (a typo such as "peer" for "peers" would otherwise be a silently ignored
 * setting), and so is a key written twice (JSON.parse would keep the last one without a word). The file holds no
 * secrets: the broker password lives in its own file (broker.passwordFile), and a password written into the URL
 * is refused without ever being quoted.
 */
import { readFileSync } from 'node:fs';
import { findDuplicateKey } from '../codec/duplicate-keys.js';

export type PeerRole = 'aggregator' | 'dso' | 'tso' | 'operator';
export type Topology = 'exchanges' | 'queues';
export type DeviceClass = 'consumer' | 'generator' | 'storage';
export type MeterProfile = 'household' | 'boiler' | 'pv';
export type CryptoBackendChoice = 'auto' | 'node' | 'noble';
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface TlsConfig {
  /** PEM files: the CA that signed the broker's certificate, our client certificate and its key. */
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
  /** The name the broker's certificate must carry, when it is not the URL's host. */
  readonly servername?: string;
}

export interface BrokerConfig {
  /** `amqp://` or `amqps://`, without a password, a query or a fragment. */
  readonly url: string;
  readonly username?: string;
  /** A file whose content (one line) is the password for PLAIN authentication. */
  readonly passwordFile?: string;
  readonly tls?: TlsConfig;
  /** EXTERNAL authentication: the broker takes our identity from the TLS client certificate. */
  readonly external: boolean;
  readonly heartbeatS: number;
  readonly prefetch: number;
  /** More brokers of the cluster (`host:port`), used with the URL's for connecting and for recovery. */
  readonly endpoints: readonly string[];
  /** First delay before reconnecting (at least 2 s), doubled per failed attempt up to maxReconnectDelayS. */
  readonly reconnectDelayS: number;
  readonly maxReconnectDelayS: number;
}

export interface PeerConfig {
  readonly name: string;
  readonly role: PeerRole;
}

export interface SignalConfig {
  readonly name: string;
  readonly unit: string;
  readonly desc: string;
  readonly range?: [min: number, max: number];
}

export interface SimulatedMeterConfig {
  readonly kind: 'simulated';
  readonly seed: number;
  readonly profile: MeterProfile;
  readonly peakKw: number;
}

export interface CsvMeterConfig {
  readonly kind: 'csv';
  readonly path: string;
  readonly loop: boolean;
}

export interface CommandMeterConfig {
  readonly kind: 'command';
  /** argv, run without a shell. */
  readonly command: string[];
  readonly intervalS?: number;
  readonly timeoutMs: number;
}

export interface FileMeterConfig {
  readonly kind: 'file';
  readonly path: string;
  readonly scale: number;
  /** The device signal the value is reported as; one of the device's signals. */
  readonly signal?: string;
}

export type MeterConfig = SimulatedMeterConfig | CsvMeterConfig | CommandMeterConfig | FileMeterConfig;

export interface SimulatedActuatorConfig {
  readonly kind: 'simulated';
}

export interface CommandActuatorConfig {
  readonly kind: 'command';
  readonly command: string[];
  readonly timeoutMs: number;
}

export interface FileActuatorConfig {
  readonly kind: 'file';
  readonly path: string;
  readonly on: string;
  readonly off: string;
}

export type ActuatorConfig = SimulatedActuatorConfig | CommandActuatorConfig | FileActuatorConfig;

export interface DeviceConfig {
  readonly name: string;
  readonly classes: DeviceClass[];
  readonly type: string;
  readonly version: string;
  readonly signals: SignalConfig[];
  readonly meter?: MeterConfig;
  readonly actuator?: ActuatorConfig;
  readonly maxPowerKw?: number;
}

export interface CryptoConfig {
  readonly keyring: string;
  readonly privateKey: string;
  readonly backend: CryptoBackendChoice;
}

export interface LogConfig {
  readonly level: LogLevel;
}

export interface HubConfig {
  /** Our entity name, which is also our RabbitMQ user (`heh-b827ebea02c1`). */
  readonly name: string;
  readonly broker: BrokerConfig;
  readonly peers: PeerConfig[];
  readonly topology: Topology;
  readonly declareExchanges: boolean;
  readonly stateDir: string;
  readonly resolutionS: number;
  readonly historyHours: number;
  readonly fsyncIntervalS: number;
  readonly devices: DeviceConfig[];
  readonly crypto?: CryptoConfig;
  readonly allowClockChange: boolean;
  readonly log: LogConfig;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(
    /** The configuration file, as given (`hub.json` when a parsed value was checked). */
    readonly file: string,
    /** JSON path of the offending value, e.g. `$.devices[1].meter.kind`; `$` for the file as a whole. */
    readonly path: string,
    readonly expected: string,
    readonly found: string,
  ) {
    super(`${file}: ${path}: expected ${expected}, found ${found}`);
  }
}

const ENTITY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/;
const ENTITY_NAME_TEXT = 'an entity name (a letter or digit, then up to 200 letters, digits, ".", "_" or "-")';
const LOCAL_NAME = /^[A-Za-z][A-Za-z0-9_]*$/;
const LOCAL_NAME_TEXT = 'a name of a letter, then letters, digits or "_"';
const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
/** userinfo with a password in any URL-like text: `//user:secret@`. */
const URL_PASSWORD = /(\/\/[^/?#@:\s]*):[^/?#@\s]*@/g;

/** Reads JSON values with the path of each one, so that every error names what was wrong and where. */
class Reader {
  constructor(readonly file: string) {}

  fail(path: string, expected: string, found: string): never {
    throw new ConfigError(this.file, path, expected, found);
  }

  /** An object whose keys are all in `known`: an unknown one is reported before anything is read from it. */
  object(v: unknown, path: string, known: readonly string[]): Record<string, unknown> {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) this.fail(path, 'an object', describe(v, path));
    const o = v as Record<string, unknown>;
    for (const key of Object.keys(o)) {
      if (known.includes(key)) continue;
      const hint = suggest(key, known);
      this.fail(
        keyPath(path, key),
        `one of the keys ${known.join(', ')}`,
        `unknown key ${shown(key)}${hint === undefined ? '' : ` (did you mean "${hint}"?)`}`,
      );
    }
    return o;
  }

  array(v: unknown, path: string, what: string, minLength = 0): unknown[] {
    if (!Array.isArray(v)) this.fail(path, what, describe(v, path));
    if (v.length < minLength) this.fail(path, what, 'an empty array');
    return v;
  }

  string(v: unknown, path: string, what = 'a non-empty string'): string {
    if (typeof v !== 'string' || v === '') this.fail(path, what, describe(v, path));
    return v;
  }

  /** A file name: any non-empty string, but no NUL (the system calls would refuse it later, far from here). */
  path(v: unknown, path: string, what = 'a file path'): string {
    if (typeof v !== 'string' || v === '' || v.includes('\0')) this.fail(path, what, describe(v, path));
    return v;
  }

  pattern(v: unknown, path: string, re: RegExp, what: string): string {
    if (typeof v !== 'string' || !re.test(v)) this.fail(path, what, describe(v, path));
    return v;
  }

  oneOf<T extends string>(v: unknown, path: string, values: readonly T[]): T {
    if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
      this.fail(path, `one of ${values.map((x) => `"${x}"`).join(', ')}`, describe(v, path));
    }
    return v as T;
  }

  boolean(v: unknown, path: string): boolean {
    if (typeof v !== 'boolean') this.fail(path, 'true or false', describe(v, path));
    return v;
  }

  number(v: unknown, path: string, what: string, ok: (n: number) => boolean): number {
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) this.fail(path, what, describe(v, path));
    return v;
  }

  integer(v: unknown, path: string, min: number, max: number): number {
    return this.number(v, path, `an integer from ${min} to ${max}`, (n) => Number.isInteger(n) && n >= min && n <= max);
  }

  positive(v: unknown, path: string): number {
    return this.number(v, path, 'a number greater than 0', (n) => n > 0);
  }

  /** argv of a program run without a shell: a string would be split by nobody, so it is refused. */
  argv(v: unknown, path: string): string[] {
    const what =
      'a non-empty array of strings (the argv of a program run without a shell, e.g. ["/usr/local/bin/read-meter", "--json"])';
    return this.array(v, path, what, 1).map((a, i) => this.string(a, `${path}[${i}]`));
  }
}

function keyPath(path: string, key: string): string {
  return IDENTIFIER.test(key) ? `${path}.${key}` : `${path}[${shown(key)}]`;
}

/** A string inside a message: quoted, cut short, and with any URL password replaced. */
function shown(s: string): string {
  const cut = s.length > 60 ? `${s.slice(0, 60)}...` : s;
  return JSON.stringify(cut.replace(URL_PASSWORD, '$1:***@'));
}

/** What was found instead, for a message; the values of password* fields are never quoted. */
function describe(v: unknown, path: string): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return v.length === 0 ? 'an empty array' : 'an array';
  if (typeof v === 'string') {
    if (/\.password[^.[]*$/i.test(path)) return v === '' ? 'an empty string' : 'a string';
    return v === '' ? 'an empty string' : shown(v);
  }
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return typeof v === 'object' ? 'an object' : typeof v;
}

/** The known key the unknown one was probably meant to be: same letters but for case, or one or two typos. */
function suggest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const k of known) {
    const d = k.toLowerCase() === key.toLowerCase() ? 0 : distance(key, k);
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best;
}

function distance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2 || a.length > 64) return 3;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row.push(Math.min((prev[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost));
    }
    prev = row;
  }
  return prev[b.length] ?? 3;
}

const TOP_KEYS = [
  'name',
  'broker',
  'peers',
  'topology',
  'declareExchanges',
  'stateDir',
  'resolutionS',
  'historyHours',
  'fsyncIntervalS',
  'devices',
  'crypto',
  'allowClockChange',
  'log',
] as const;
const BROKER_KEYS = [
  'url',
  'username',
  'passwordFile',
  'tls',
  'external',
  'heartbeatS',
  'prefetch',
  'endpoints',
  'reconnectDelayS',
  'maxReconnectDelayS',
] as const;
const TLS_KEYS = ['ca', 'cert', 'key', 'servername'] as const;
const DEVICE_KEYS = ['name', 'classes', 'type', 'version', 'signals', 'meter', 'actuator', 'maxPowerKw'] as const;
const SIGNAL_KEYS = ['name', 'unit', 'desc', 'range'] as const;
const PEER_ROLES: readonly PeerRole[] = ['aggregator', 'dso', 'tso', 'operator'];
const DEVICE_CLASSES: readonly DeviceClass[] = ['consumer', 'generator', 'storage'];
const METER_KINDS: readonly MeterConfig['kind'][] = ['simulated', 'csv', 'command', 'file'];
const ACTUATOR_KINDS: readonly ActuatorConfig['kind'][] = ['simulated', 'command', 'file'];
const HISTORY_MAX_HOURS = 24 * 31;
const TIMEOUT_MAX_MS = 600_000;
const GUEST = 'guest';

/** Checks a parsed configuration and fills in the defaults; `file` only names the source in messages. */
export function parseConfig(value: unknown, file = 'hub.json'): HubConfig {
  const r = new Reader(file);
  const o = r.object(value, '$', TOP_KEYS);
  const name = r.pattern(o['name'], '$.name', ENTITY_NAME, ENTITY_NAME_TEXT);
  const broker = parseBroker(r, o['broker']);
  const peers = parsePeers(r, o['peers'], name);
  const resolutionS = r.number(
    o['resolutionS'] ?? 60,
    '$.resolutionS',
    'an integer from 1 to 3600 that divides 3600',
    // Intervals must tile the hour so that every hour starts a new interval, whatever the hub's start time.
    (n) => Number.isInteger(n) && n >= 1 && n <= 3600 && 3600 % n === 0,
  );
  const config: {
    -readonly [K in keyof HubConfig]: HubConfig[K];
  } = {
    name,
    broker,
    peers,
    topology: r.oneOf<Topology>(o['topology'] ?? 'exchanges', '$.topology', ['exchanges', 'queues']),
    declareExchanges: r.boolean(o['declareExchanges'] ?? true, '$.declareExchanges'),
    stateDir: r.path(o['stateDir'] ?? '/var/lib/ebadge', '$.stateDir', 'a directory path'),
    resolutionS,
    // A day at least: a get_load_report for yesterday must be answerable from a hub that restarted this morning.
    historyHours: r.integer(o['historyHours'] ?? 24, '$.historyHours', 24, HISTORY_MAX_HOURS),
    fsyncIntervalS: r.integer(o['fsyncIntervalS'] ?? 60, '$.fsyncIntervalS', 1, 3600),
    devices: parseDevices(r, o['devices']),
    allowClockChange: r.boolean(o['allowClockChange'] ?? false, '$.allowClockChange'),
    log: parseLog(r, o['log']),
  };
  if (o['crypto'] !== undefined) {
    const c = r.object(o['crypto'], '$.crypto', ['keyring', 'privateKey', 'backend']);
    config.crypto = {
      keyring: r.path(c['keyring'], '$.crypto.keyring'),
      privateKey: r.path(c['privateKey'], '$.crypto.privateKey'),
      backend: r.oneOf<CryptoBackendChoice>(c['backend'] ?? 'auto', '$.crypto.backend', ['auto', 'node', 'noble']),
    };
  }
  return config;
}

function parseBroker(r: Reader, v: unknown): BrokerConfig {
  const b = r.object(v ?? {}, '$.broker', BROKER_KEYS);
  const url = r.string(b['url'] ?? 'amqp://127.0.0.1:5672', '$.broker.url', 'an amqp:// or amqps:// URL');
  const urlUser = checkUrl(r, url);
  const secure = url.startsWith('amqps://');
  const broker: { -readonly [K in keyof BrokerConfig]: BrokerConfig[K] } = {
    url,
    external: r.boolean(b['external'] ?? false, '$.broker.external'),
    // Below 5 s heartbeats raise false alarms on a busy Pi (the client refuses them); 0 takes the broker's value.
    heartbeatS: r.number(
      b['heartbeatS'] ?? 20,
      '$.broker.heartbeatS',
      "an integer from 5 to 600, or 0 (the broker's value)",
      (n) => Number.isInteger(n) && (n === 0 || (n >= 5 && n <= 600)),
    ),
    prefetch: r.integer(b['prefetch'] ?? 10, '$.broker.prefetch', 1, 1000),
    endpoints: r.array(b['endpoints'] ?? [], '$.broker.endpoints', 'an array of "host:port" strings').map((e, i) => {
      const at = `$.broker.endpoints[${i}]`;
      const x = r.string(e, at, 'a "host:port" string');
      const m = /^\[?([^\]\s]+?)\]?:(\d{1,5})$/.exec(x);
      if (m === null || Number(m[2]) < 1 || Number(m[2]) > 65535)
        r.fail(at, 'a "host:port" string (port 1 to 65535)', shown(x));
      return x;
    }),
    reconnectDelayS: r.number(
      b['reconnectDelayS'] ?? 5,
      '$.broker.reconnectDelayS',
      'a number from 2 to 600 (seconds)',
      (n) => n >= 2 && n <= 600,
    ),
    maxReconnectDelayS: 60,
  };
  broker.maxReconnectDelayS = r.number(
    b['maxReconnectDelayS'] ?? Math.max(60, broker.reconnectDelayS),
    '$.broker.maxReconnectDelayS',
    `a number from reconnectDelayS (${broker.reconnectDelayS}) to 3600 (seconds)`,
    (n) => n >= broker.reconnectDelayS && n <= 3600,
  );
  if (b['username'] !== undefined) {
    broker.username = r.string(b['username'], '$.broker.username');
    if (urlUser !== undefined && urlUser !== broker.username) {
      r.fail(
        '$.broker.username',
        `the user named in $.broker.url (${shown(urlUser)}), or no username`,
        shown(broker.username),
      );
    }
  }
  if (b['passwordFile'] !== undefined) broker.passwordFile = r.path(b['passwordFile'], '$.broker.passwordFile');
  if (b['tls'] !== undefined) {
    const t = r.object(b['tls'], '$.broker.tls', TLS_KEYS);
    const tls: { -readonly [K in keyof TlsConfig]: TlsConfig[K] } = {};
    if (t['ca'] !== undefined) tls.ca = r.path(t['ca'], '$.broker.tls.ca');
    if (t['cert'] !== undefined) tls.cert = r.path(t['cert'], '$.broker.tls.cert');
    if (t['key'] !== undefined) tls.key = r.path(t['key'], '$.broker.tls.key');
    if (t['servername'] !== undefined) tls.servername = r.string(t['servername'], '$.broker.tls.servername');
    // Over amqp:// these files would be silently unused: the operator believes the link is encrypted when it is not.
    if (!secure) r.fail('$.broker.url', 'an amqps:// URL (broker.tls is given)', shown(url));
    broker.tls = tls;
  }
  if (broker.external) {
    if (!secure)
      r.fail(
        '$.broker.url',
        'an amqps:// URL (broker.external authenticates with the TLS client certificate)',
        shown(url),
      );
    const why = '(broker.external authenticates with the TLS client certificate)';
    if (broker.tls === undefined) r.fail('$.broker.tls', `an object with cert and key ${why}`, 'nothing');
    if (broker.tls.cert === undefined) r.fail('$.broker.tls.cert', `the client certificate file ${why}`, 'nothing');
    if (broker.tls.key === undefined) r.fail('$.broker.tls.key', `the client certificate's key file ${why}`, 'nothing');
  } else {
    // PLAIN authentication. Without a password file the password is "guest", and only for the user "guest" (the
    // local broker's default account, as in the example config): any other user would log in with a password
    // that is not theirs and be refused by the broker, after the hub had already started.
    const user = broker.username ?? urlUser ?? GUEST;
    if (user !== GUEST && broker.passwordFile === undefined) {
      r.fail(
        '$.broker.passwordFile',
        `a password file for the user ${shown(user)} (only the user "guest" has a default password), or broker.external`,
        'nothing',
      );
    }
  }
  return broker;
}

/** Checks the broker URL; returns the user it names, if any. A password in it is refused without being quoted. */
function checkUrl(r: Reader, url: string): string | undefined {
  const what = 'an amqp:// or amqps:// URL';
  if (!url.startsWith('amqp://') && !url.startsWith('amqps://')) r.fail('$.broker.url', what, shown(url));
  const authority = url.slice(url.indexOf('//') + 2).split(/[/?#]/, 1)[0] ?? '';
  const at = authority.lastIndexOf('@');
  const userinfo = at < 0 ? '' : authority.slice(0, at);
  // Checked before anything else looks at the URL, so that no later message can quote the password.
  if (userinfo.includes(':')) {
    r.fail(
      '$.broker.url',
      `${what} without a password (put the password in the file named by broker.passwordFile)`,
      'a password in the URL',
    );
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return r.fail('$.broker.url', what, shown(url));
  }
  // The connection's own settings (heartbeat, TLS files, mechanism) have their keys here; a second place to set them
  // in the query would let the two disagree.
  if (u.search !== '' || u.hash !== '' || url.includes('?') || url.includes('#')) {
    r.fail(
      '$.broker.url',
      `${what} without a query or fragment (use broker.heartbeatS, broker.tls, broker.external)`,
      shown(url),
    );
  }
  if (u.hostname === '') r.fail('$.broker.url', `${what} with a host`, shown(url));
  if (userinfo === '') return undefined;
  try {
    return decodeURIComponent(u.username);
  } catch {
    return r.fail('$.broker.url', `${what} with a user name in valid percent-encoding`, shown(url));
  }
}

function parsePeers(r: Reader, v: unknown, self: string): PeerConfig[] {
  const seen = new Map<string, number>();
  return r.array(v, '$.peers', 'an array of at least one peer ({ "name": "vpp-acme" })', 1).map((e, i) => {
    const p = `$.peers[${i}]`;
    const o = r.object(e, p, ['name', 'role']);
    const name = r.pattern(o['name'], `${p}.name`, ENTITY_NAME, ENTITY_NAME_TEXT);
    const first = seen.get(name);
    if (first !== undefined) r.fail(`${p}.name`, `a name not already used by $.peers[${first}]`, shown(name));
    if (name === self) r.fail(`${p}.name`, "a name other than the hub's own ($.name)", shown(name));
    seen.set(name, i);
    return { name, role: r.oneOf<PeerRole>(o['role'] ?? 'aggregator', `${p}.role`, PEER_ROLES) };
  });
}

const DEFAULT_SIGNALS: readonly unknown[] = [{ name: 'p', unit: 'kW', desc: 'active power' }];

function parseDevices(r: Reader, v: unknown): DeviceConfig[] {
  const seen = new Map<string, number>();
  return r.array(v, '$.devices', 'an array of at least one device ({ "name": "meter" })', 1).map((e, i) => {
    const p = `$.devices[${i}]`;
    const o = r.object(e, p, DEVICE_KEYS);
    const name = r.pattern(o['name'], `${p}.name`, LOCAL_NAME, LOCAL_NAME_TEXT);
    const first = seen.get(name);
    if (first !== undefined) r.fail(`${p}.name`, `a name not already used by $.devices[${first}]`, shown(name));
    seen.set(name, i);
    const signals = parseSignals(r, o['signals'] ?? DEFAULT_SIGNALS, `${p}.signals`);
    const device: { -readonly [K in keyof DeviceConfig]: DeviceConfig[K] } = {
      name,
      classes: parseClasses(r, o['classes'] ?? ['consumer'], `${p}.classes`),
      type: r.string(o['type'] ?? 'meter', `${p}.type`),
      version: r.string(o['version'] ?? '1.0', `${p}.version`),
      signals,
    };
    if (o['meter'] !== undefined) device.meter = parseMeter(r, o['meter'], `${p}.meter`, signals);
    if (o['actuator'] !== undefined) device.actuator = parseActuator(r, o['actuator'], `${p}.actuator`);
    if (o['maxPowerKw'] !== undefined) device.maxPowerKw = r.positive(o['maxPowerKw'], `${p}.maxPowerKw`);
    return device;
  });
}

function parseClasses(r: Reader, v: unknown, path: string): DeviceClass[] {
  const what = `a non-empty array of ${DEVICE_CLASSES.map((c) => `"${c}"`).join(', ')}`;
  const out: DeviceClass[] = [];
  r.array(v, path, what, 1).forEach((c, i) => {
    const cls = r.oneOf(c, `${path}[${i}]`, DEVICE_CLASSES);
    if (out.includes(cls)) r.fail(`${path}[${i}]`, 'each class once', shown(cls));
    out.push(cls);
  });
  return out;
}

function parseSignals(r: Reader, v: unknown, path: string): SignalConfig[] {
  const seen = new Map<string, number>();
  return r.array(v, path, 'a non-empty array of signals ({ "name": "p", "unit": "kW" })', 1).map((e, i) => {
    const p = `${path}[${i}]`;
    const o = r.object(e, p, SIGNAL_KEYS);
    const name = r.pattern(o['name'], `${p}.name`, LOCAL_NAME, LOCAL_NAME_TEXT);
    const first = seen.get(name);
    if (first !== undefined) r.fail(`${p}.name`, `a name not already used by ${path}[${first}]`, shown(name));
    seen.set(name, i);
    const desc = o['desc'] ?? '';
    if (typeof desc !== 'string') r.fail(`${p}.desc`, 'a string', describe(desc, `${p}.desc`));
    const signal: { -readonly [K in keyof SignalConfig]: SignalConfig[K] } = {
      name,
      unit: r.string(o['unit'] ?? 'kW', `${p}.unit`),
      desc,
    };
    if (o['range'] !== undefined) {
      const what = 'a range [min, max] of two numbers';
      const range = r.array(o['range'], `${p}.range`, what);
      if (range.length !== 2) r.fail(`${p}.range`, what, `an array of ${range.length}`);
      const min = r.number(range[0], `${p}.range[0]`, 'a number', () => true);
      const max = r.number(range[1], `${p}.range[1]`, 'a number', () => true);
      if (min > max) r.fail(`${p}.range`, 'a range [min, max] with min <= max', `[${min}, ${max}]`);
      signal.range = [min, max];
    }
    return signal;
  });
}

/** The discriminator first, so that the keys of the wrong kind are not what the message talks about. */
function kindOf<K extends string>(
  r: Reader,
  v: unknown,
  path: string,
  kinds: readonly K[],
): [K, Record<string, unknown>] {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) r.fail(path, 'an object', describe(v, path));
  return [r.oneOf((v as Record<string, unknown>)['kind'], `${path}.kind`, kinds), v as Record<string, unknown>];
}

function parseMeter(r: Reader, v: unknown, path: string, signals: readonly SignalConfig[]): MeterConfig {
  const [kind] = kindOf(r, v, path, METER_KINDS);
  switch (kind) {
    case 'simulated': {
      const o = r.object(v, path, ['kind', 'seed', 'profile', 'peakKw']);
      return {
        kind,
        // A 32-bit PRNG seed: a larger one would be cut silently and two devices could get the same stream.
        seed: r.integer(o['seed'] ?? 1, `${path}.seed`, 0, 0xffff_ffff),
        profile: r.oneOf<MeterProfile>(o['profile'] ?? 'household', `${path}.profile`, ['household', 'boiler', 'pv']),
        peakKw: r.positive(o['peakKw'] ?? 3, `${path}.peakKw`),
      };
    }
    case 'csv': {
      const o = r.object(v, path, ['kind', 'path', 'loop']);
      return { kind, path: r.path(o['path'], `${path}.path`), loop: r.boolean(o['loop'] ?? true, `${path}.loop`) };
    }
    case 'command': {
      const o = r.object(v, path, ['kind', 'command', 'intervalS', 'timeoutMs']);
      const meter: { -readonly [K in keyof CommandMeterConfig]: CommandMeterConfig[K] } = {
        kind,
        command: r.argv(o['command'], `${path}.command`),
        timeoutMs: r.integer(o['timeoutMs'] ?? 5000, `${path}.timeoutMs`, 1, TIMEOUT_MAX_MS),
      };
      if (o['intervalS'] !== undefined) meter.intervalS = r.integer(o['intervalS'], `${path}.intervalS`, 1, 3600);
      return meter;
    }
    case 'file': {
      const o = r.object(v, path, ['kind', 'path', 'scale', 'signal']);
      const meter: { -readonly [K in keyof FileMeterConfig]: FileMeterConfig[K] } = {
        kind,
        path: r.path(o['path'], `${path}.path`),
        // 0 would report a constant 0 kW: a meter that looks alive and says nothing.
        scale: r.number(o['scale'] ?? 1, `${path}.scale`, 'a number other than 0', (n) => n !== 0),
      };
      if (o['signal'] !== undefined) {
        const names = signals.map((s) => s.name);
        meter.signal = r.oneOf(o['signal'], `${path}.signal`, names);
      }
      return meter;
    }
  }
}

function parseActuator(r: Reader, v: unknown, path: string): ActuatorConfig {
  const [kind] = kindOf(r, v, path, ACTUATOR_KINDS);
  switch (kind) {
    case 'simulated':
      r.object(v, path, ['kind']);
      return { kind };
    case 'command': {
      const o = r.object(v, path, ['kind', 'command', 'timeoutMs']);
      return {
        kind,
        command: r.argv(o['command'], `${path}.command`),
        timeoutMs: r.integer(o['timeoutMs'] ?? 5000, `${path}.timeoutMs`, 1, TIMEOUT_MAX_MS),
      };
    }
    case 'file': {
      const o = r.object(v, path, ['kind', 'path', 'on', 'off']);
      const on = r.string(o['on'] ?? '1', `${path}.on`);
      const off = r.string(o['off'] ?? '0', `${path}.off`);
      if (on === off) r.fail(`${path}.off`, `a value other than on (${shown(on)})`, shown(off));
      return { kind, path: r.path(o['path'], `${path}.path`), on, off };
    }
  }
}

function parseLog(r: Reader, v: unknown): LogConfig {
  const o = r.object(v ?? {}, '$.log', ['level']);
  return { level: r.oneOf<LogLevel>(o['level'] ?? 'info', '$.log.level', ['debug', 'info', 'warn', 'error']) };
}

/** Reads and checks a configuration file. Every failure, reading included, is a ConfigError. */
export function loadConfig(file: string): HubConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    const found =
      code === 'ENOENT'
        ? 'no file'
        : code === 'EISDIR'
          ? 'a directory'
          : code === 'EACCES' || code === 'EPERM'
            ? 'a file the hub may not read'
            : 'a file that cannot be read';
    throw new ConfigError(file, '$', 'a readable JSON file', `${found} (${code})`);
  }
  // Editors on Windows may save with a byte order mark, which JSON.parse refuses although the text is fine.
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // JSON.parse's message quotes the text near the error, and only some Node versions give a position: the position
    // is found here instead, and nothing of the text is repeated.
    const offset = jsonErrorOffset(text);
    const { line, column } = lineColumn(text, offset);
    throw new ConfigError(
      file,
      '$',
      'valid JSON',
      `invalid JSON at line ${line} column ${column}${offset >= text.length ? ' (the text ends too early)' : ''}`,
    );
  }
  const duplicate = findDuplicateKey(text, '$');
  if (duplicate !== null) {
    const key = duplicate.slice(duplicate.lastIndexOf('.') + 1);
    throw new ConfigError(file, duplicate, 'each key once in an object', `the key ${shown(key)} a second time`);
  }
  return parseConfig(value, file);
}

function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let start = 0;
  for (let i = text.indexOf('\n'); i >= 0 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    start = i + 1;
  }
  return { line, column: offset - start + 1 };
}

/**
 * The offset of the first character JSON.parse could not accept (RFC 8259 grammar), or text.length when the text
 * ends early. Iterative, so that a deeply nested file cannot overflow the stack here.
 */
function jsonErrorOffset(text: string): number {
  const n = text.length;
  const stack: number[] = []; // '{' or '['
  let i = 0;
  const ws = (): void => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
      i++;
    }
  };
  const digits = (): boolean => {
    const s = i;
    while (i < n && text.charCodeAt(i) >= 0x30 && text.charCodeAt(i) <= 0x39) i++;
    return i > s;
  };
  // Each of these returns -1 on success, or the offset of the error.
  const string = (): number => {
    if (text[i] !== '"') return i;
    i++;
    for (;;) {
      if (i >= n) return n;
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return -1;
      }
      if (c < 0x20) return i;
      if (c === 0x5c) {
        i++;
        const e = text[i];
        if (e === undefined) return n;
        if (e === 'u') {
          for (let k = 1; k <= 4; k++) {
            if (i + k >= n) return n;
            if (!/[0-9A-Fa-f]/.test(text[i + k] ?? '')) return i + k;
          }
          i += 5;
        } else if ('"\\/bfnrt'.includes(e)) {
          i++;
        } else {
          return i;
        }
      } else {
        i++;
      }
    }
  };
  const scalar = (): number => {
    const c = text[i];
    if (c === '"') return string();
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) {
      if (c === '-') i++;
      if (text[i] === '0') i++;
      else if (!digits()) return Math.min(i, n);
      if (text[i] === '.') {
        i++;
        if (!digits()) return Math.min(i, n);
      }
      if (text[i] === 'e' || text[i] === 'E') {
        i++;
        if (text[i] === '+' || text[i] === '-') i++;
        if (!digits()) return Math.min(i, n);
      }
      return -1;
    }
    for (const word of ['true', 'false', 'null']) {
      if (c !== word[0]) continue;
      for (let k = 0; k < word.length; k++) {
        if (i + k >= n) return n;
        if (text[i + k] !== word[k]) return i + k;
      }
      i += word.length;
      return -1;
    }
    return Math.min(i, n);
  };
  // After "{" or ",": a key, a colon, then a value follows.
  const member = (): number => {
    ws();
    const e = string();
    if (e >= 0) return e;
    ws();
    if (i >= n) return n;
    if (text[i] !== ':') return i;
    i++;
    return -1;
  };
  let expectValue = true;
  for (;;) {
    if (expectValue) {
      ws();
      if (i >= n) return n;
      const c = text[i];
      if (c === '{' || c === '[') {
        i++;
        ws();
        if (text[i] === (c === '{' ? '}' : ']')) {
          i++;
          expectValue = false;
          continue;
        }
        stack.push(c.charCodeAt(0));
        if (c === '{') {
          const e = member();
          if (e >= 0) return e;
        }
        continue;
      }
      const e = scalar();
      if (e >= 0) return e;
      expectValue = false;
      continue;
    }
    ws();
    const top = stack[stack.length - 1];
    if (top === undefined) return i; // extra text after the document (or none: then JSON.parse would have accepted it)
    if (i >= n) return n;
    const c = text[i];
    if (c === ',') {
      i++;
      if (top === 0x7b) {
        const e = member();
        if (e >= 0) return e;
      }
      expectValue = true;
    } else if ((top === 0x7b && c === '}') || (top === 0x5b && c === ']')) {
      stack.pop();
      i++;
    } else {
      return i;
    }
  }
}

/**
 * A small valid configuration: a household meter and a switchable boiler, both simulated, on a local broker.
 * There is no passwordFile: the user "guest" logs in with the password "guest", the local RabbitMQ's default
 * account (which RabbitMQ only accepts from localhost). Any other user needs broker.passwordFile (or
 * broker.external), and parseConfig refuses a configuration without it.
 */
export function exampleConfig(stateDir: string): unknown {
  return {
    name: 'heh-example',
    broker: { url: 'amqp://127.0.0.1:5672', username: GUEST },
    peers: [{ name: 'vpp-example', role: 'aggregator' }],
    stateDir,
    devices: [
      { name: 'meter', meter: { kind: 'simulated' } },
      {
        name: 'boiler',
        type: 'boiler',
        maxPowerKw: 2,
        meter: { kind: 'simulated', seed: 2, profile: 'boiler', peakKw: 2 },
        actuator: { kind: 'simulated' },
      },
    ],
  };
}
