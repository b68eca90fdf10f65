/**
 * The hub's configuration as parseConfig returns it: checked, every default filled in. The device adapters
 * (../devices/) take their meter and actuator sections in these types too.
 */
import { EbadgeError } from '../../core/errors.js';

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
  /**
   * AMQP: `per-peer` (default) consumes `private-<me>-in:<peer>` for each peer besides `private-<me>-in`, so that one
   * peer's flood never waits in front of another's messages; `shared` is D3.2.3's single inbox.
   */
  readonly inboxes: 'per-peer' | 'shared';
  /** More brokers of the cluster (`host:port`), used with the URL's for connecting and for recovery. */
  readonly endpoints: readonly string[];
  /** First delay before reconnecting (at least 2 s), doubled per failed attempt up to maxReconnectDelayS. */
  readonly reconnectDelayS: number;
  readonly maxReconnectDelayS: number;
}

export interface PeerConfig {
  readonly name: string;
  readonly role: PeerRole;
  /** With crypto on, this peer has no keys and is sent and accepted in clear text on purpose (docs/hub.md). */
  readonly clearText?: boolean;
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
  readonly command: readonly string[];
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
  readonly command: readonly string[];
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

/** Each peer's budget (docs/bus.md, "Fairness"): messages and body bytes a second, with their bursts. */
export interface BudgetConfig {
  readonly messagesPerS: number;
  readonly messagesBurst: number;
  readonly bytesPerS: number;
  readonly bytesBurst: number;
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
  /** Absent: the Connector's default budget; false: none. */
  readonly budget?: BudgetConfig | false;
  readonly allowClockChange: boolean;
  readonly log: LogConfig;
}

/** `code` is always CONFIG: what was wrong is in `path`, `expected` and `found`. */
export class ConfigError extends EbadgeError<'CONFIG'> {
  override name = 'ConfigError';
  /** The configuration file, as given (`hub.json` when a parsed value was checked). */
  declare readonly file: string;
  /** JSON path of the offending value, e.g. `$.devices[1].meter.kind`; `$` for the file as a whole. */
  declare readonly path: string;
  declare readonly expected: string;
  declare readonly found: string;
  constructor(file: string, path: string, expected: string, found: string) {
    super('CONFIG', `${file}: ${path}: expected ${expected}, found ${found}`);
    this.file = file;
    this.path = path;
    this.expected = expected;
    this.found = found;
  }
}
