/**
 * The walk over a parsed configuration: each section checked in turn, with defaults filled in. The broker section
 * has its own file (broker.ts).
 */
import { DEFAULT_BUDGET } from '../../bus/budget.js';
import { isObject } from '../../core/is-object.js';
import { OVERHEAD } from '../../crypto/index.js';
import { parseBroker } from './broker.js';
import { describe, keysOf, Reader, shown } from './reader.js';
import type {
  ActuatorConfig,
  BudgetConfig,
  CommandMeterConfig,
  CryptoBackendChoice,
  DeviceClass,
  DeviceConfig,
  FileMeterConfig,
  HubConfig,
  LogConfig,
  LogLevel,
  MeterConfig,
  MeterProfile,
  PeerConfig,
  PeerRole,
  SignalConfig,
  Topology,
} from './types.js';

const ENTITY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/;
const ENTITY_NAME_TEXT = 'an entity name (a letter or digit, then up to 200 letters, digits, ".", "_" or "-")';
const LOCAL_NAME = /^[A-Za-z][A-Za-z0-9_]*$/;
const LOCAL_NAME_TEXT = 'a name of a letter, then letters, digits or "_"';
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
  'budget',
  'allowClockChange',
  'log',
] as const;
const DEVICE_KEYS = ['name', 'classes', 'type', 'version', 'signals', 'meter', 'actuator', 'maxPowerKw'] as const;
const SIGNAL_KEYS = ['name', 'unit', 'desc', 'range'] as const;
const PEER_ROLES: readonly PeerRole[] = ['aggregator', 'dso', 'tso', 'operator'];
const DEVICE_CLASSES: readonly DeviceClass[] = ['consumer', 'generator', 'storage'];
const METER_KINDS: readonly MeterConfig['kind'][] = ['simulated', 'csv', 'command', 'file'];
const ACTUATOR_KINDS: readonly ActuatorConfig['kind'][] = ['simulated', 'command', 'file'];
const HISTORY_MAX_HOURS = 24 * 31;
const TIMEOUT_MAX_MS = 600_000;

/** Checks a parsed configuration and fills in the defaults; `file` only names the source in messages. */
export function parseConfig(value: unknown, file = 'hub.json'): HubConfig {
  const r = new Reader(file);
  const o = r.object(value, '$', TOP_KEYS);
  const at = keysOf(o, '$');
  const name = r.pattern(...at('name'), ENTITY_NAME, ENTITY_NAME_TEXT);
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
    topology: r.oneOf<Topology>(...at('topology', 'exchanges'), ['exchanges', 'queues']),
    declareExchanges: r.boolean(...at('declareExchanges', true)),
    stateDir: r.path(...at('stateDir', '/var/lib/ebadge'), 'a directory path'),
    resolutionS,
    // A day at least: a get_load_report for yesterday must be answerable from a hub that restarted this morning.
    historyHours: r.integer(...at('historyHours', 24), 24, HISTORY_MAX_HOURS),
    fsyncIntervalS: r.integer(...at('fsyncIntervalS', 60), 1, 3600),
    devices: parseDevices(r, o['devices']),
    allowClockChange: r.boolean(...at('allowClockChange', false)),
    log: parseLog(r, o['log']),
  };
  if (o['crypto'] !== undefined) {
    const c = keysOf(r.object(...at('crypto'), ['keyring', 'privateKey', 'backend']), '$.crypto');
    config.crypto = {
      keyring: r.path(...c('keyring')),
      privateKey: r.path(...c('privateKey')),
      backend: r.oneOf<CryptoBackendChoice>(...c('backend', 'auto'), ['auto', 'node', 'noble']),
    };
  }
  if (o['budget'] !== undefined) config.budget = parseBudget(r, o['budget']);
  if (/^mqtts?:/.test(broker.url)) refuseAmqpKeys(r, o);
  return config;
}

/**
 * hub-mqtt.js connects to broker.url alone and has no exchanges or queues of its own: these keys, taken and left
 * unused, would let an operator who moved a hub to MQTT count on a cluster's other nodes or a topology it no longer has.
 */
function refuseAmqpKeys(r: Reader, o: Record<string, unknown>): void {
  const b = (o['broker'] ?? {}) as Record<string, unknown>;
  const keys: [string, unknown][] = [
    ['$.broker.endpoints', b['endpoints']],
    ['$.broker.inboxes', b['inboxes']],
    ['$.topology', o['topology']],
    ['$.declareExchanges', o['declareExchanges']],
  ];
  for (const [at, v] of keys)
    if (v !== undefined && !(Array.isArray(v) && v.length === 0))
      r.fail(
        at,
        'no such key with an mqtt:// or mqtts:// broker.url (AMQP only: hub-mqtt.js has none)',
        describe(v, at),
      );
}

/** The largest body the hub accepts (1 MiB and a sealed envelope): a smaller byte burst could never let one through. */
const MIN_BYTES_BURST = (1 << 20) + OVERHEAD.pair;

function parseBudget(r: Reader, v: unknown): BudgetConfig | false {
  if (v === false) return false;
  const b = r.object(v, '$.budget', ['messagesPerS', 'messagesBurst', 'bytesPerS', 'bytesBurst']);
  const above0 = (key: string, d: number): number =>
    r.number(b[key] ?? d, `$.budget.${key}`, 'a number above 0', (n) => n > 0);
  return {
    messagesPerS: above0('messagesPerS', DEFAULT_BUDGET.messages.rate),
    messagesBurst: r.number(
      b['messagesBurst'] ?? DEFAULT_BUDGET.messages.burst,
      '$.budget.messagesBurst',
      'a number of at least 1',
      (n) => n >= 1,
    ),
    bytesPerS: above0('bytesPerS', DEFAULT_BUDGET.bytes.rate),
    bytesBurst: r.number(
      b['bytesBurst'] ?? DEFAULT_BUDGET.bytes.burst,
      '$.budget.bytesBurst',
      `a number of at least ${MIN_BYTES_BURST} (the largest body the hub accepts)`,
      (n) => n >= MIN_BYTES_BURST,
    ),
  };
}

/** Refuses the name of `list[i]` when an earlier element has it; `seen` keeps each name's index. */
function once(r: Reader, seen: Map<string, number>, name: string, list: string, i: number): void {
  const first = seen.get(name);
  if (first !== undefined) r.fail(`${list}[${i}].name`, `a name not already used by ${list}[${first}]`, shown(name));
  seen.set(name, i);
}

function parsePeers(r: Reader, v: unknown, self: string): PeerConfig[] {
  const seen = new Map<string, number>();
  return r.array(v, '$.peers', 'an array of at least one peer ({ "name": "vpp-acme" })', 1).map((e, i) => {
    const p = `$.peers[${i}]`;
    const o = r.object(e, p, ['name', 'role', 'clearText']);
    const at = keysOf(o, p);
    const name = r.pattern(...at('name'), ENTITY_NAME, ENTITY_NAME_TEXT);
    once(r, seen, name, '$.peers', i);
    if (name === self) r.fail(`${p}.name`, "a name other than the hub's own ($.name)", shown(name));
    const role = r.oneOf<PeerRole>(...at('role', 'aggregator'), PEER_ROLES);
    const clearText = o['clearText'] === undefined ? false : r.boolean(...at('clearText'));
    return { name, role, ...(clearText ? { clearText } : {}) };
  });
}

const DEFAULT_SIGNALS: readonly unknown[] = [{ name: 'p', unit: 'kW', desc: 'active power' }];

function parseDevices(r: Reader, v: unknown): DeviceConfig[] {
  const seen = new Map<string, number>();
  return r.array(v, '$.devices', 'an array of at least one device ({ "name": "meter" })', 1).map((e, i) => {
    const p = `$.devices[${i}]`;
    const o = r.object(e, p, DEVICE_KEYS);
    const at = keysOf(o, p);
    const name = r.pattern(...at('name'), LOCAL_NAME, LOCAL_NAME_TEXT);
    once(r, seen, name, '$.devices', i);
    const signals = parseSignals(r, ...at('signals', DEFAULT_SIGNALS));
    const device: { -readonly [K in keyof DeviceConfig]: DeviceConfig[K] } = {
      name,
      classes: parseClasses(r, ...at('classes', ['consumer'])),
      type: r.string(...at('type', 'meter')),
      version: r.string(...at('version', '1.0')),
      signals,
    };
    if (o['meter'] !== undefined) device.meter = parseMeter(r, ...at('meter'), signals);
    if (o['actuator'] !== undefined) device.actuator = parseActuator(r, ...at('actuator'));
    if (o['maxPowerKw'] !== undefined) device.maxPowerKw = r.power(...at('maxPowerKw'));
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
    const at = keysOf(o, p);
    const name = r.pattern(...at('name'), LOCAL_NAME, LOCAL_NAME_TEXT);
    once(r, seen, name, path, i);
    const desc = o['desc'] ?? '';
    if (typeof desc !== 'string') r.fail(`${p}.desc`, 'a string', describe(desc, `${p}.desc`));
    const signal: { -readonly [K in keyof SignalConfig]: SignalConfig[K] } = {
      name,
      unit: r.string(...at('unit', 'kW')),
      desc,
    };
    if (o['range'] !== undefined) {
      const what = 'a range [min, max] of two numbers';
      const range = r.array(...at('range'), what);
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
  if (!isObject(v)) r.fail(path, 'an object', describe(v, path));
  return [r.oneOf((v as Record<string, unknown>)['kind'], `${path}.kind`, kinds), v as Record<string, unknown>];
}

function parseMeter(r: Reader, v: unknown, path: string, signals: readonly SignalConfig[]): MeterConfig {
  const [kind] = kindOf(r, v, path, METER_KINDS);
  switch (kind) {
    case 'simulated': {
      const o = r.object(v, path, ['kind', 'seed', 'profile', 'peakKw']);
      const at = keysOf(o, path);
      return {
        kind,
        // A 32-bit PRNG seed: a larger one would be cut silently and two devices could get the same stream.
        seed: r.integer(...at('seed', 1), 0, 0xffff_ffff),
        profile: r.oneOf<MeterProfile>(...at('profile', 'household'), ['household', 'boiler', 'pv']),
        peakKw: r.power(...at('peakKw', 3)),
      };
    }
    case 'csv': {
      const o = r.object(v, path, ['kind', 'path', 'loop']);
      const at = keysOf(o, path);
      return { kind, path: r.path(...at('path')), loop: r.boolean(...at('loop', true)) };
    }
    case 'command': {
      const o = r.object(v, path, ['kind', 'command', 'intervalS', 'timeoutMs']);
      const at = keysOf(o, path);
      const meter: { -readonly [K in keyof CommandMeterConfig]: CommandMeterConfig[K] } = {
        kind,
        command: r.argv(...at('command')),
        timeoutMs: r.integer(...at('timeoutMs', 5000), 1, TIMEOUT_MAX_MS),
      };
      if (o['intervalS'] !== undefined) meter.intervalS = r.integer(...at('intervalS'), 1, 3600);
      return meter;
    }
    case 'file': {
      const o = r.object(v, path, ['kind', 'path', 'scale', 'signal']);
      const at = keysOf(o, path);
      const meter: { -readonly [K in keyof FileMeterConfig]: FileMeterConfig[K] } = {
        kind,
        path: r.path(...at('path')),
        // 0 would report a constant 0 kW: a meter that looks alive and says nothing.
        scale: r.number(...at('scale', 1), 'a number other than 0', (n) => n !== 0),
      };
      if (o['signal'] !== undefined) {
        const names = signals.map((s) => s.name);
        meter.signal = r.oneOf(...at('signal'), names);
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
      const at = keysOf(o, path);
      return {
        kind,
        command: r.argv(...at('command')),
        timeoutMs: r.integer(...at('timeoutMs', 5000), 1, TIMEOUT_MAX_MS),
      };
    }
    case 'file': {
      const o = r.object(v, path, ['kind', 'path', 'on', 'off']);
      const at = keysOf(o, path);
      const on = r.string(...at('on', '1'));
      const off = r.string(...at('off', '0'));
      if (on === off) r.fail(`${path}.off`, `a value other than on (${shown(on)})`, shown(off));
      return { kind, path: r.path(...at('path')), on, off };
    }
  }
}

function parseLog(r: Reader, v: unknown): LogConfig {
  const o = r.object(v ?? {}, '$.log', ['level']);
  return { level: r.oneOf<LogLevel>(o['level'] ?? 'info', '$.log.level', ['debug', 'info', 'warn', 'error']) };
}
