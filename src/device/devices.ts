/**
 * Meter and actuator adapters of the hub: a real installation connects its meter and relays by configuration, without
 * changing code. `createMeter` and `createActuator` take the JSON-shaped config and return the adapter.
 *
 * Conventions shared by every adapter:
 * - Time is epoch milliseconds (`Date.now()` scale). Times of day are UTC: the simulated site lies on the Greenwich
 *   meridian and a seconds-of-day CSV counts from UTC midnight. Use ISO times with an offset in a CSV for local time.
 * - Power is in kW. A generator (PV) reports its generation as positive power of the generator device; the hub, not
 *   the adapter, decides that a generator's power counts against the household's consumption.
 * - A reading has exactly the meter's `signals` as keys; `null` means "no value for this signal at this time".
 * - Failures of the device reject with a DeviceError; a bad config rejects with a TypeError. Nothing here throws
 *   synchronously, emits 'error' or leaves a child process behind: children run in their own process group, are
 *   killed as a group on timeout and on close, and are always waited for (so Node reaps them).
 *
 * Meter kinds:
 * - simulated: `{ kind, seed, profile: 'household' | 'boiler' | 'pv', peakKw }`. The value at t is a pure function of
 *   (seed, profile, signal, t): shapes by time of day and season, day-to-day variation and per-minute jitter all come
 *   from a hash of (seed, signal, slot). Each signal draws its own variation with the same shape. kW, 3 decimals.
 * - csv: `{ kind, path, loop }`. Header `t,<signal>,...`; then one row per reading, numbers only (no quoting), an empty
 *   cell meaning null; blank lines and lines starting with `#` are skipped. `t` is either seconds since UTC midnight
 *   (0 <= t < 86400: a day profile, replayed every day) or an ISO 8601 time with an offset (absolute times); one form
 *   per file, strictly increasing. A row holds from its time until the next row's; the last row holds for as long as
 *   the interval before it (one row alone: forever). Outside the covered times the reading is all null, unless `loop`:
 *   then the position is taken modulo the file's span (start of the first row to end of the last), counted from the
 *   first row, so a file of whole days keeps the time of day. A malformed file rejects at open with BAD_FILE naming
 *   line and column. The file is read once, at open.
 * - command: `{ kind, command, intervalS?, timeoutMs }`. argv, spawned without a shell. Without intervalS, each read
 *   runs it and takes its stdout, which must be one JSON object line (`{"p": 1.23}`; a missing key or null gives null).
 *   Concurrent reads share one run. With intervalS, one long-running process prints a JSON line per reading; a reading
 *   is served while younger than intervalS + timeoutMs, a process silent for that long is killed, and a process that
 *   ends is restarted after 5 s, doubling per consecutive failure up to 5 min (reset by a run of a minute or more).
 *   The time passed to read() is not given to the command: the command measures now.
 * - file: `{ kind, path, scale, signal? }`. Reads a sysfs-style file (an IIO or hwmon value) at each read: trimmed
 *   text, a decimal number, times scale, for `signal` (default 'p').
 *
 * Actuator kinds (one actuator drives one relay or setpoint; commands to it are applied one at a time, in order):
 * - simulated: records the commands (the last 1000) and the activation in force per device (`state`).
 * - command: runs the argv per command, with the command as one JSON line on stdin, and expects exit code 0 within
 *   timeoutMs: `{"action":"activate","id":..,"device":..,"quantity":..,"from":"ISO","to":"ISO"}` or
 *   `{"action":"end","id":..,"device":..}` (device included so a stateless script knows which relay to release).
 * - file: writes `on` when an activation with quantity > 0 starts (a positive quantity asks a consumer to consume
 *   more: switch it on), `off` for quantity <= 0 and when the activation ends, e.g. /sys/class/gpio/gpioN/value.
 *   An `end` for an activation other than the one in force writes nothing, so a superseded activation's end cannot
 *   switch off its successor; an `end` with none known (after a restart) writes `off`, the safe state.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { EbTime } from '../codec/time.js';

// ---------------------------------------------------------------------------------------------------------------
// Config and API types
// ---------------------------------------------------------------------------------------------------------------

export type MeterProfile = 'household' | 'boiler' | 'pv';

export interface SimulatedMeterConfig {
  kind: 'simulated';
  seed: number;
  profile: MeterProfile;
  peakKw: number;
}
export interface CsvMeterConfig {
  kind: 'csv';
  path: string;
  loop: boolean;
}
export interface CommandMeterConfig {
  kind: 'command';
  command: readonly string[];
  intervalS?: number;
  timeoutMs: number;
}
export interface FileMeterConfig {
  kind: 'file';
  path: string;
  scale: number;
  signal?: string;
}
export type MeterConfig = SimulatedMeterConfig | CsvMeterConfig | CommandMeterConfig | FileMeterConfig;

export interface SimulatedActuatorConfig {
  kind: 'simulated';
}
export interface CommandActuatorConfig {
  kind: 'command';
  command: readonly string[];
  timeoutMs: number;
}
export interface FileActuatorConfig {
  kind: 'file';
  path: string;
  on: string;
  off: string;
}
export type ActuatorConfig = SimulatedActuatorConfig | CommandActuatorConfig | FileActuatorConfig;

export type Reading = Record<string, number | null>;

export interface Meter {
  readonly signals: readonly string[];
  read(t: number): Promise<Reading>;
  close(): Promise<void>;
}

export type ActuatorCommand =
  | { action: 'activate'; id: string; device: string; quantity: number; from: number; to: number }
  | { action: 'end'; id: string; device: string };

export interface Actuator {
  apply(cmd: ActuatorCommand): Promise<void>;
  close(): Promise<void>;
}

export type DeviceErrorCode = 'TIMEOUT' | 'EXIT' | 'NOT_FOUND' | 'BAD_OUTPUT' | 'IO' | 'BAD_FILE';

export class DeviceError extends Error {
  override name = 'DeviceError';
  readonly code: DeviceErrorCode;
  constructor(code: DeviceErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Factories
// ---------------------------------------------------------------------------------------------------------------

/**
 * `signals` are the keys every reading will have; empty means the meter's own (simulated: `p`; csv: the header's;
 * file: its signal). A command meter needs them listed. `cwd` resolves relative paths and is the command's cwd.
 */
export async function createMeter(
  config: MeterConfig,
  signals: readonly string[],
  options?: { cwd?: string },
): Promise<Meter> {
  if (typeof config !== 'object' || config === null) throw new TypeError('meter config must be an object');
  if (!Array.isArray(signals) || !signals.every((s) => typeof s === 'string' && s !== '')) {
    throw new TypeError('meter signals must be non-empty strings');
  }
  if (new Set(signals).size !== signals.length) throw new TypeError(`meter signals repeat: ${signals.join(',')}`);
  const cwd = options?.cwd ?? process.cwd();
  switch (config.kind) {
    case 'simulated':
      return new SimulatedMeter(config, signals);
    case 'csv':
      return CsvMeter.open(config, signals, cwd);
    case 'command': {
      checkCommand(config.command, config.timeoutMs, 'meter');
      if (signals.length === 0) throw new TypeError('a command meter needs its signals listed');
      if (config.intervalS === undefined) return new OneShotCommandMeter(config, signals, cwd);
      if (!(typeof config.intervalS === 'number' && config.intervalS > 0 && Number.isFinite(config.intervalS))) {
        throw new TypeError(`meter intervalS must be a positive number, not ${String(config.intervalS)}`);
      }
      return new LongRunningCommandMeter(config, config.intervalS, signals, cwd);
    }
    case 'file':
      return new FileMeter(config, signals, cwd);
    default:
      throw new TypeError(`unknown meter kind ${JSON.stringify((config as { kind?: unknown }).kind)}`);
  }
}

export async function createActuator(config: SimulatedActuatorConfig): Promise<SimulatedActuator>;
export async function createActuator(config: ActuatorConfig): Promise<Actuator>;
export async function createActuator(config: ActuatorConfig): Promise<Actuator> {
  if (typeof config !== 'object' || config === null) throw new TypeError('actuator config must be an object');
  switch (config.kind) {
    case 'simulated':
      return new SimulatedActuator();
    case 'command':
      checkCommand(config.command, config.timeoutMs, 'actuator');
      return new CommandActuator(config);
    case 'file':
      if (typeof config.path !== 'string' || config.path === '')
        throw new TypeError('actuator path must be a non-empty string');
      if (typeof config.on !== 'string' || typeof config.off !== 'string')
        throw new TypeError('actuator on and off must be strings');
      return new FileActuator(config);
    default:
      throw new TypeError(`unknown actuator kind ${JSON.stringify((config as { kind?: unknown }).kind)}`);
  }
}

function checkCommand(command: unknown, timeoutMs: unknown, what: string): void {
  if (
    !Array.isArray(command) ||
    command.length === 0 ||
    !command.every((a) => typeof a === 'string') ||
    command[0] === ''
  ) {
    throw new TypeError(`${what} command must be a non-empty array of strings (argv, no shell)`);
  }
  if (!(typeof timeoutMs === 'number' && timeoutMs > 0 && Number.isFinite(timeoutMs))) {
    throw new TypeError(`${what} timeoutMs must be a positive number, not ${String(timeoutMs)}`);
  }
}

function closedError(label: string): DeviceError {
  return new DeviceError('IO', `${label}: closed`);
}

// ---------------------------------------------------------------------------------------------------------------
// Simulated meter
// ---------------------------------------------------------------------------------------------------------------

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;

class SimulatedMeter implements Meter {
  readonly signals: readonly string[];
  readonly #config: SimulatedMeterConfig;
  readonly #seed: readonly [number, number];
  readonly #salts: readonly number[];

  constructor(config: SimulatedMeterConfig, signals: readonly string[]) {
    if (typeof config.seed !== 'number' || !Number.isFinite(config.seed))
      throw new TypeError('simulated meter seed must be a finite number');
    if (config.profile !== 'household' && config.profile !== 'boiler' && config.profile !== 'pv') {
      throw new TypeError(
        `simulated meter profile must be household, boiler or pv, not ${JSON.stringify(config.profile)}`,
      );
    }
    if (!(typeof config.peakKw === 'number' && config.peakKw >= 0 && Number.isFinite(config.peakKw))) {
      throw new TypeError('simulated meter peakKw must be a non-negative number');
    }
    this.#config = { ...config };
    this.signals = Object.freeze(signals.length === 0 ? ['p'] : [...signals]);
    // Every bit of the seed counts, fractions and sign included, so close seeds still give unrelated households.
    const bits = new Uint32Array(new Float64Array([config.seed]).buffer);
    this.#seed = [bits[0] ?? 0, bits[1] ?? 0];
    this.#salts = this.signals.map(fnv1a);
  }

  async read(t: number): Promise<Reading> {
    if (typeof t !== 'number' || !Number.isFinite(t))
      throw new RangeError(`simulated meter: invalid time ${String(t)}`);
    const out: Reading = {};
    this.signals.forEach((signal, i) => {
      const rnd: Rnd = (slot, stream) => unitHash(this.#seed[0], this.#seed[1], this.#salts[i] ?? 0, stream, slot);
      out[signal] = simulatedKw(this.#config.profile, this.#config.peakKw, t, rnd);
    });
    return out;
  }

  async close(): Promise<void> {}
}

/** A uniform number in [0, 1) for a time slot and one of several independent streams. */
type Rnd = (slot: number, stream: number) => number;

/** The simulated power at t in kW, >= 0, <= peakKw, 3 decimals. */
function simulatedKw(profile: MeterProfile, peakKw: number, t: number, rnd: Rnd): number {
  const day = Math.floor(t / DAY_MS);
  const minute = Math.floor(t / MINUTE_MS);
  const hour = (t - day * DAY_MS) / 3_600_000;
  let x: number;
  switch (profile) {
    case 'household':
      x = household(hour, day, minute, rnd);
      break;
    case 'boiler':
      x = boiler(t, minute, rnd);
      break;
    case 'pv':
      x = pv(t, hour, day, minute, rnd);
      break;
  }
  const kw = Math.round(peakKw * Math.min(1, Math.max(0, x)) * 1000) / 1000;
  return Number.isFinite(kw) ? kw + 0 : 0; // + 0 turns -0 into 0
}

function household(hour: number, day: number, minute: number, rnd: Rnd): number {
  const shift = (rnd(day, 1) - 0.5) * 1.0; // households do not get up at the same minute every day
  const activity =
    0.45 * bump(hour, 7.25 + shift, 0.9) + 0.15 * bump(hour, 12.5 + shift, 1.5) + 0.75 * bump(hour, 19.5 + shift, 1.6);
  const base = 0.07 + 0.04 * rnd(day, 2); // fridge, standby, router
  let x = base + activity * (0.75 + 0.5 * rnd(Math.floor(minute / 15), 3));
  x *= 0.9 + 0.2 * rnd(minute, 4);
  // A kettle or an oven element: short spikes while people are awake.
  if (hour >= 6 && hour < 23 && rnd(minute, 5) < 0.04) x += 0.3;
  return x;
}

/** An electric water heater on a thermostat: full power or nothing, more often after the morning and evening draws. */
function boiler(t: number, minute: number, rnd: Rnd): number {
  const cycleMs = 30 * MINUTE_MS;
  const cycle = Math.floor(t / cycleMs);
  const startHour = ((((cycle * cycleMs) % DAY_MS) + DAY_MS) % DAY_MS) / 3_600_000;
  const duty = startHour < 5 ? 0.08 : startHour < 9 ? 0.55 : startHour < 17 ? 0.2 : startHour < 22 ? 0.45 : 0.12;
  const on = Math.min(1, duty * (0.6 + 0.8 * rnd(cycle, 1)));
  const offset = rnd(cycle, 2) * (1 - on);
  const pos = (t - cycle * cycleMs) / cycleMs;
  return pos >= offset && pos < offset + on ? 0.96 + 0.04 * rnd(minute, 3) : 0;
}

/** A roof array at about 46 degrees north on the Greenwich meridian: a daylight bell, seasons, clear/partly/overcast days. */
function pv(t: number, hour: number, day: number, minute: number, rnd: Rnd): number {
  const date = new Date(t);
  const dayOfYear =
    (Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate()) - Date.UTC(date.getUTCFullYear(), 0, 1)) /
    DAY_MS;
  const season = Math.sin((2 * Math.PI * (dayOfYear - 80)) / 365.25); // +1 at the June solstice
  const dayLength = 12 + 3.8 * season;
  const sunrise = 12 - dayLength / 2;
  if (hour <= sunrise || hour >= 12 + dayLength / 2) return 0;
  const clearSky = Math.sin((Math.PI * (hour - sunrise)) / dayLength) ** 1.3 * (0.75 + 0.25 * season);
  const weather = rnd(day, 1);
  const cloud =
    weather < 0.5
      ? 1
      : weather < 0.8
        ? 0.35 + 0.65 * rnd(Math.floor(minute / 10), 2)
        : 0.15 + 0.15 * rnd(Math.floor(minute / 30), 3);
  return clearSky * cloud * (0.97 + 0.03 * rnd(minute, 4));
}

/** A Gaussian bump on the 24-hour circle, so an evening peak does not leak into the next morning's arithmetic. */
function bump(hour: number, centre: number, width: number): number {
  const d = ((((hour - centre) % 24) + 36) % 24) - 12;
  return Math.exp(-(d * d) / (2 * width * width));
}

function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

function unitHash(seedLo: number, seedHi: number, salt: number, stream: number, slot: number): number {
  let h = mix32(seedLo ^ 0x9e3779b9);
  h = mix32(h ^ seedHi);
  h = mix32(h ^ salt);
  h = mix32(h ^ Math.imul(stream, 0x85ebca6b));
  h = mix32(h ^ (slot >>> 0));
  h = mix32(h ^ (Math.floor(slot / 0x1_0000_0000) >>> 0));
  return h / 0x1_0000_0000;
}

function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

// ---------------------------------------------------------------------------------------------------------------
// CSV meter
// ---------------------------------------------------------------------------------------------------------------

const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const SECONDS = /^\d+(?:\.\d+)?$/;

class CsvMeter implements Meter {
  readonly signals: readonly string[];
  /** Seconds of each row: since UTC midnight (seconds form) or since the epoch (ISO form). */
  readonly #times: Float64Array;
  /** Row-major values of the requested signals; NaN for an empty cell. */
  readonly #values: Float64Array;
  readonly #end: number;
  readonly #isoForm: boolean;
  readonly #loop: boolean;

  private constructor(
    signals: readonly string[],
    times: Float64Array,
    values: Float64Array,
    isoForm: boolean,
    loop: boolean,
  ) {
    this.signals = Object.freeze([...signals]);
    this.#times = times;
    this.#values = values;
    this.#isoForm = isoForm;
    this.#loop = loop;
    const n = times.length;
    this.#end = n === 1 ? Infinity : (times[n - 1] ?? 0) * 2 - (times[n - 2] ?? 0);
  }

  static async open(config: CsvMeterConfig, wanted: readonly string[], cwd: string): Promise<CsvMeter> {
    if (typeof config.path !== 'string' || config.path === '')
      throw new TypeError('csv meter path must be a non-empty string');
    if (typeof config.loop !== 'boolean') throw new TypeError('csv meter loop must be true or false');
    const file = path.resolve(cwd, config.path);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new DeviceError('IO', `csv ${file}: cannot read (${errCode(err)})`, { cause: err });
    }
    const bad = (line: number, column: number, what: string): DeviceError =>
      new DeviceError('BAD_FILE', `csv ${file} line ${line}, column ${column}: ${what}`);

    // Spreadsheet programs start their CSV export with a byte-order mark, which would hide the "t" of the header.
    const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
    let header: string[] | undefined;
    let headerLine = 0;
    let columns: number[] = [];
    let signals: readonly string[] = wanted;
    const times: number[] = [];
    const values: number[] = [];
    let isoForm: boolean | undefined;
    for (let i = 0; i < lines.length; i++) {
      const raw = lines[i] ?? '';
      const lineNo = i + 1;
      if (raw.trim() === '' || raw.trimStart().startsWith('#')) continue;
      const cells = raw.split(',').map((c) => c.trim());
      if (header === undefined) {
        header = cells;
        headerLine = lineNo;
        if (cells[0] !== 't') throw bad(lineNo, 1, `the header must start with "t", not ${shortText(cells[0] ?? '')}`);
        const seen = new Set<string>();
        for (let c = 1; c < cells.length; c++) {
          const name = cells[c] ?? '';
          if (name === '') throw bad(lineNo, c + 1, 'empty signal name in the header');
          if (seen.has(name)) throw bad(lineNo, c + 1, `signal ${shortText(name)} appears twice in the header`);
          seen.add(name);
        }
        if (cells.length < 2) throw bad(lineNo, 2, 'the header names no signal');
        if (signals.length === 0) signals = cells.slice(1);
        columns = signals.map((s) => {
          const c = cells.indexOf(s, 1);
          if (c < 0) throw bad(lineNo, cells.length + 1, `no column for signal ${shortText(s)}`);
          return c;
        });
        continue;
      }
      if (cells.length !== header.length) {
        throw bad(
          lineNo,
          Math.min(cells.length, header.length) + 1,
          `${cells.length} columns where the header has ${header.length}`,
        );
      }
      const tCell = cells[0] ?? '';
      let seconds: number;
      const rowIso = !SECONDS.test(tCell);
      if (rowIso) {
        try {
          seconds = EbTime.parse(tCell, 't').epochMs / 1000;
        } catch {
          throw bad(
            lineNo,
            1,
            `t must be seconds since midnight or an ISO time with an offset, not ${shortText(tCell)}`,
          );
        }
      } else {
        seconds = Number(tCell);
        if (seconds >= 86_400) throw bad(lineNo, 1, `t ${tCell} is beyond one day: use ISO times for longer files`);
      }
      if (isoForm !== undefined && isoForm !== rowIso) {
        throw bad(lineNo, 1, `t mixes ISO times and seconds (this row: ${rowIso ? 'ISO' : 'seconds'})`);
      }
      isoForm = rowIso;
      const previous = times[times.length - 1];
      if (previous !== undefined && !(seconds > previous)) throw bad(lineNo, 1, `t ${tCell} does not increase`);
      for (let c = 1; c < cells.length; c++) {
        const cell = cells[c] ?? '';
        if (cell !== '' && (!NUMBER.test(cell) || !Number.isFinite(Number(cell)))) {
          throw bad(lineNo, c + 1, `${header[c] ?? ''}: not a number: ${shortText(cell)}`);
        }
      }
      times.push(seconds);
      for (const c of columns) {
        const cell = cells[c] ?? '';
        values.push(cell === '' ? NaN : Number(cell));
      }
    }
    if (header === undefined) throw bad(1, 1, 'empty file: expected a header "t,<signal>,..."');
    if (times.length === 0) throw bad(headerLine + 1, 1, 'no rows after the header');
    return new CsvMeter(signals, Float64Array.from(times), Float64Array.from(values), isoForm === true, config.loop);
  }

  async read(t: number): Promise<Reading> {
    if (typeof t !== 'number' || !Number.isFinite(t)) throw new RangeError(`csv meter: invalid time ${String(t)}`);
    const first = this.#times[0] ?? 0;
    let pos = this.#isoForm ? t / 1000 : (((t % DAY_MS) + DAY_MS) % DAY_MS) / 1000;
    if (this.#loop && Number.isFinite(this.#end)) {
      const span = this.#end - first;
      pos = first + ((((pos - first) % span) + span) % span);
    }
    const out: Reading = {};
    const row = pos >= first && pos < this.#end ? lastAtOrBefore(this.#times, pos) : -1;
    const width = this.signals.length;
    this.signals.forEach((s, i) => {
      const v = row < 0 ? NaN : (this.#values[row * width + i] ?? NaN);
      out[s] = Number.isNaN(v) ? null : v;
    });
    return out;
  }

  async close(): Promise<void> {}
}

function lastAtOrBefore(times: Float64Array, x: number): number {
  let lo = 0;
  let hi = times.length - 1;
  if (hi < 0 || (times[0] ?? Infinity) > x) return -1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((times[mid] ?? Infinity) <= x) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function shortText(text: string, max = 40): string {
  return JSON.stringify(text.length > max ? `${text.slice(0, max)}...` : text);
}

// ---------------------------------------------------------------------------------------------------------------
// File meter
// ---------------------------------------------------------------------------------------------------------------

class FileMeter implements Meter {
  readonly signals: readonly string[];
  readonly #file: string;
  readonly #scale: number;
  #closed = false;

  constructor(config: FileMeterConfig, signals: readonly string[], cwd: string) {
    if (typeof config.path !== 'string' || config.path === '')
      throw new TypeError('file meter path must be a non-empty string');
    if (typeof config.scale !== 'number' || !Number.isFinite(config.scale))
      throw new TypeError('file meter scale must be a finite number');
    const signal = config.signal ?? 'p';
    if (typeof signal !== 'string' || signal === '')
      throw new TypeError('file meter signal must be a non-empty string');
    if (signals.some((s) => s !== signal)) {
      throw new TypeError(`a file meter gives one signal, ${JSON.stringify(signal)}; asked for ${signals.join(',')}`);
    }
    this.signals = Object.freeze([signal]);
    this.#file = path.resolve(cwd, config.path);
    this.#scale = config.scale;
  }

  async read(): Promise<Reading> {
    if (this.#closed) throw closedError(`file ${this.#file}`);
    let text: string;
    try {
      text = (await readFile(this.#file, 'utf8')).trim();
    } catch (err) {
      throw new DeviceError('IO', `file ${this.#file}: cannot read (${errCode(err)})`, { cause: err });
    }
    if (!NUMBER.test(text) || !Number.isFinite(Number(text))) {
      throw new DeviceError('BAD_FILE', `file ${this.#file} line 1, column 1: not a number: ${shortText(text)}`);
    }
    return { [this.signals[0] ?? 'p']: Number(text) * this.#scale };
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------------------------

/** More stdout than any meter line needs; beyond it the child is misbehaving and is killed. */
const MAX_OUTPUT_BYTES = 64 * 1024;
/** How long a killed child may take to be reaped before we stop waiting for it. */
const REAP_WAIT_MS = 2000;

function commandLabel(command: readonly string[]): string {
  const text = command.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
  return `command ${text.length > 200 ? `${text.slice(0, 200)}...` : text}`;
}

function errCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : err instanceof Error ? err.message : String(err);
}

function spawnFailure(label: string, err: unknown): DeviceError {
  const code = errCode(err);
  if (code === 'ENOENT' || code === 'ENOTDIR')
    return new DeviceError('NOT_FOUND', `${label}: not found (${code})`, { cause: err });
  if (code === 'EACCES') return new DeviceError('NOT_FOUND', `${label}: not executable (${code})`, { cause: err });
  return new DeviceError('IO', `${label}: cannot start (${code})`, { cause: err });
}

/** Kills the child's whole process group (it was spawned detached, as a group leader), so helpers it started go too. */
function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

/** The last non-empty stderr line, for the error message: what the command said went wrong. */
class StderrTail {
  #text = '';
  add(chunk: Buffer): void {
    this.#text = (this.#text + chunk.toString('utf8')).slice(-1024);
  }
  get line(): string {
    const lines = this.#text
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter((l) => l !== '');
    const last = lines[lines.length - 1];
    return last === undefined ? '' : `: ${last.length > 200 ? `${last.slice(0, 200)}...` : last}`;
  }
}

function exitFailure(
  label: string,
  code: number | null,
  signal: NodeJS.Signals | null,
  stderr: StderrTail,
): DeviceError {
  const how = signal !== null ? `was killed by ${signal}` : `exited with code ${String(code)}`;
  return new DeviceError('EXIT', `${label}: ${how}${stderr.line}`);
}

interface RunOptions {
  cwd?: string;
  timeoutMs: number;
  input?: string;
  live: Set<ChildProcess>;
}

/**
 * Runs the command to completion and resolves with its stdout, or rejects with a DeviceError. Settles only once the
 * child has been reaped (or REAP_WAIT_MS after killing it), so a rejected TIMEOUT means the process is gone.
 */
function runOnce(command: readonly string[], options: RunOptions): Promise<string> {
  const label = commandLabel(command);
  return new Promise<string>((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn(command[0] ?? '', command.slice(1), {
        ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
        stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
        detached: true,
        windowsHide: true,
      });
    } catch (err) {
      reject(spawnFailure(label, err));
      return;
    }
    options.live.add(child);
    const chunks: Buffer[] = [];
    let bytes = 0;
    const stderr = new StderrTail();
    let failure: DeviceError | undefined;
    let settled = false;
    let reapTimer: NodeJS.Timeout | undefined;

    const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(reapTimer);
      options.live.delete(child);
      child.stdout?.destroy();
      child.stderr?.destroy();
      child.stdin?.destroy();
      if (failure !== undefined) reject(failure);
      else if (code !== 0 || signal !== null) reject(exitFailure(label, code, signal, stderr));
      else resolve(Buffer.concat(chunks).toString('utf8'));
    };
    const abort = (why: DeviceError): void => {
      failure ??= why;
      killGroup(child, 'SIGKILL');
      reapTimer ??= setTimeout(() => finish(null, null), REAP_WAIT_MS);
    };
    const timer = setTimeout(
      () => abort(new DeviceError('TIMEOUT', `${label}: no result within ${options.timeoutMs} ms; killed`)),
      options.timeoutMs,
    );

    child.on('error', (err) => {
      // Without a pid the process never started: no exit will follow that matters, but 'close' may; settle now.
      if (child.pid === undefined) {
        failure ??= spawnFailure(label, err);
        finish(null, null);
      } else {
        abort(new DeviceError('IO', `${label}: ${errCode(err)}`, { cause: err }));
      }
    });
    child.on('close', (code, signal) => finish(code, signal));
    child.stdout?.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > MAX_OUTPUT_BYTES)
        abort(new DeviceError('BAD_OUTPUT', `${label}: more than ${MAX_OUTPUT_BYTES} bytes of output; killed`));
      else chunks.push(chunk);
    });
    child.stderr?.on('data', (chunk: Buffer) => stderr.add(chunk));
    if (options.input !== undefined && child.stdin) {
      // A command that exits without reading its stdin gives EPIPE here; its exit code tells what happened.
      child.stdin.on('error', () => {});
      child.stdin.end(options.input);
    }
  });
}

async function killAndWait(children: Iterable<ChildProcess>, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  await Promise.all(
    [...children].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
            resolve();
            return;
          }
          let hard: NodeJS.Timeout | undefined;
          const give = setTimeout(resolve, graceMs + REAP_WAIT_MS);
          child.once('exit', () => {
            clearTimeout(hard);
            clearTimeout(give);
            resolve();
          });
          killGroup(child, signal);
          if (signal !== 'SIGKILL') hard = setTimeout(() => killGroup(child, 'SIGKILL'), graceMs);
        }),
    ),
  );
}

/** Parses one output line into a reading of `signals`; throws a message for BAD_OUTPUT. */
function parseReadingLine(line: string, signals: readonly string[]): Reading {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    throw new Error(`not JSON: ${shortText(line)}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new Error(`not a JSON object: ${shortText(line)}`);
  const record = parsed as Record<string, unknown>;
  const out: Reading = {};
  for (const s of signals) {
    const v = Object.hasOwn(record, s) ? record[s] : null;
    if (v !== null && typeof v !== 'number')
      throw new Error(`signal ${shortText(s)} is not a number: ${shortText(JSON.stringify(v))}`);
    out[s] = v;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Command meters
// ---------------------------------------------------------------------------------------------------------------

class OneShotCommandMeter implements Meter {
  readonly signals: readonly string[];
  readonly #command: readonly string[];
  readonly #label: string;
  readonly #timeoutMs: number;
  readonly #cwd: string;
  readonly #live = new Set<ChildProcess>();
  #inFlight: Promise<Reading> | undefined;
  #closed = false;

  constructor(config: CommandMeterConfig, signals: readonly string[], cwd: string) {
    this.signals = Object.freeze([...signals]);
    this.#command = [...config.command];
    this.#label = commandLabel(this.#command);
    this.#timeoutMs = config.timeoutMs;
    this.#cwd = cwd;
  }

  read(): Promise<Reading> {
    if (this.#closed) return Promise.reject(closedError(this.#label));
    // A slow meter must not pile up processes on a small board: callers arriving meanwhile share the running one.
    if (this.#inFlight !== undefined) return this.#inFlight;
    const run = this.#run();
    this.#inFlight = run;
    const clear = (): void => {
      if (this.#inFlight === run) this.#inFlight = undefined;
    };
    run.then(clear, clear);
    return run;
  }

  async #run(): Promise<Reading> {
    const stdout = await runOnce(this.#command, { cwd: this.#cwd, timeoutMs: this.#timeoutMs, live: this.#live });
    const lines = stdout.split(/\r?\n/).filter((l) => l.trim() !== '');
    if (lines.length !== 1) {
      throw new DeviceError(
        'BAD_OUTPUT',
        `${this.#label}: printed ${lines.length} lines, expected one JSON object line`,
      );
    }
    try {
      return parseReadingLine(lines[0] ?? '', this.signals);
    } catch (err) {
      throw new DeviceError('BAD_OUTPUT', `${this.#label}: ${(err as Error).message}`);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    await killAndWait(this.#live, 'SIGKILL', 0);
  }
}

const RESTART_MIN_MS = 5000;
const RESTART_MAX_MS = 300_000;
/** A run at least this long counts as healthy and resets the backoff. */
const HEALTHY_RUN_MS = 60_000;

/** Delay before restarting a long-running meter command after its `failures`-th consecutive end (1-based). */
export function restartDelayMs(failures: number): number {
  return Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** Math.max(0, Math.min(failures - 1, 16)));
}

class LongRunningCommandMeter implements Meter {
  readonly signals: readonly string[];
  readonly #command: readonly string[];
  readonly #label: string;
  readonly #cwd: string;
  readonly #timeoutMs: number;
  /** A reading older than this is stale, and a process silent for this long is declared hung. */
  readonly #maxAgeMs: number;
  #child: ChildProcess | undefined;
  #startedAt = 0;
  #pending = '';
  #latest: { values: Reading; at: number } | undefined;
  #problem: DeviceError | undefined;
  #killReason: DeviceError | undefined;
  #failures = 0;
  #restartTimer: NodeJS.Timeout | undefined;
  #silenceTimer: NodeJS.Timeout | undefined;
  readonly #waiters = new Set<(line: { values: Reading } | { error: DeviceError }) => void>();
  #closed = false;

  constructor(config: CommandMeterConfig, intervalS: number, signals: readonly string[], cwd: string) {
    this.signals = Object.freeze([...signals]);
    this.#command = [...config.command];
    this.#label = commandLabel(this.#command);
    this.#cwd = cwd;
    this.#timeoutMs = config.timeoutMs;
    this.#maxAgeMs = intervalS * 1000 + config.timeoutMs;
    this.#start();
  }

  read(): Promise<Reading> {
    if (this.#closed) return Promise.reject(closedError(this.#label));
    const latest = this.#latest;
    if (latest !== undefined && performance.now() - latest.at <= this.#maxAgeMs)
      return Promise.resolve({ ...latest.values });
    if (this.#problem !== undefined) return Promise.reject(this.#problem);
    return new Promise<Reading>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(this.#problem ?? new DeviceError('TIMEOUT', `${this.#label}: no reading within ${this.#timeoutMs} ms`));
      }, this.#timeoutMs);
      const waiter = (line: { values: Reading } | { error: DeviceError }): void => {
        clearTimeout(timer);
        this.#waiters.delete(waiter);
        if ('error' in line) reject(line.error);
        else resolve({ ...line.values });
      };
      this.#waiters.add(waiter);
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#restartTimer);
    clearTimeout(this.#silenceTimer);
    this.#notify({ error: closedError(this.#label) });
    const child = this.#child;
    if (child !== undefined) await killAndWait([child], 'SIGTERM', 1000);
  }

  #notify(line: { values: Reading } | { error: DeviceError }): void {
    for (const waiter of [...this.#waiters]) waiter(line);
  }

  #start(): void {
    this.#restartTimer = undefined;
    if (this.#closed) return;
    this.#startedAt = performance.now();
    this.#pending = '';
    this.#killReason = undefined;
    let child: ChildProcess;
    try {
      child = spawn(this.#command[0] ?? '', this.#command.slice(1), {
        cwd: this.#cwd,
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
        windowsHide: true,
      });
    } catch (err) {
      this.#ended(spawnFailure(this.#label, err));
      return;
    }
    this.#child = child;
    const stderr = new StderrTail();
    let done = false;
    const end = (problem: DeviceError): void => {
      if (done) return;
      done = true;
      child.stdout?.destroy();
      child.stderr?.destroy();
      // The kill fallback may have given up on this child already and scheduled its restart.
      if (this.#child !== child) return;
      this.#child = undefined;
      this.#ended(this.#killReason ?? problem);
    };
    child.on('error', (err) => {
      if (child.pid === undefined) end(spawnFailure(this.#label, err));
      else this.#kill(new DeviceError('IO', `${this.#label}: ${errCode(err)}`, { cause: err }));
    });
    child.on('close', (code, signal) => end(exitFailure(this.#label, code, signal, stderr)));
    child.stdout?.on('data', (chunk: Buffer) => this.#onData(chunk));
    child.stderr?.on('data', (chunk: Buffer) => stderr.add(chunk));
    this.#armSilence();
  }

  #armSilence(): void {
    clearTimeout(this.#silenceTimer);
    this.#silenceTimer = setTimeout(() => {
      this.#kill(new DeviceError('TIMEOUT', `${this.#label}: printed no reading for ${this.#maxAgeMs} ms; killed`));
    }, this.#maxAgeMs);
  }

  #kill(reason: DeviceError): void {
    this.#killReason ??= reason;
    this.#problem = this.#killReason;
    this.#latest = undefined;
    this.#notify({ error: this.#killReason });
    const child = this.#child;
    if (child === undefined) return;
    killGroup(child, 'SIGKILL');
    // The 'close' that normally follows may never come if a stray process holds the pipes; don't wait forever.
    setTimeout(() => {
      if (this.#child === child) {
        this.#child = undefined;
        child.stdout?.destroy();
        child.stderr?.destroy();
        this.#ended(reason);
      }
    }, REAP_WAIT_MS).unref();
  }

  #onData(chunk: Buffer): void {
    this.#pending += chunk.toString('utf8');
    for (let nl = this.#pending.indexOf('\n'); nl >= 0; nl = this.#pending.indexOf('\n')) {
      const line = this.#pending.slice(0, nl).trim();
      this.#pending = this.#pending.slice(nl + 1);
      if (line !== '') this.#onLine(line);
    }
    if (this.#pending.length > MAX_OUTPUT_BYTES) {
      this.#pending = '';
      this.#kill(new DeviceError('BAD_OUTPUT', `${this.#label}: a line longer than ${MAX_OUTPUT_BYTES} bytes; killed`));
    }
  }

  #onLine(line: string): void {
    if (this.#killReason !== undefined) return;
    this.#armSilence();
    try {
      const values = parseReadingLine(line, this.signals);
      this.#latest = { values, at: performance.now() };
      this.#problem = undefined;
      this.#notify({ values });
    } catch (err) {
      // A confused device is not trusted until it prints a good line again.
      const error = new DeviceError('BAD_OUTPUT', `${this.#label}: ${(err as Error).message}`);
      this.#latest = undefined;
      this.#problem = error;
      this.#notify({ error });
    }
  }

  #ended(problem: DeviceError): void {
    clearTimeout(this.#silenceTimer);
    if (this.#closed) return;
    if (performance.now() - this.#startedAt >= HEALTHY_RUN_MS) this.#failures = 0;
    this.#failures++;
    const delay = restartDelayMs(this.#failures);
    this.#latest = undefined;
    this.#problem = new DeviceError(problem.code, `${problem.message}; restarting in ${Math.round(delay / 1000)} s`, {
      cause: problem.cause,
    });
    this.#notify({ error: this.#problem });
    clearTimeout(this.#restartTimer);
    this.#restartTimer = setTimeout(() => this.#start(), delay);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Actuators
// ---------------------------------------------------------------------------------------------------------------

/** Runs commands strictly one after another, so an activation's end can never overtake its start. */
class Serial {
  #tail: Promise<unknown> = Promise.resolve();
  run<T>(task: () => Promise<T>): Promise<T> {
    const next = this.#tail.then(task, task);
    this.#tail = next.then(
      () => {},
      () => {},
    );
    return next;
  }
  drain(): Promise<void> {
    return this.#tail.then(() => {});
  }
}

function checkCommandShape(cmd: ActuatorCommand): void {
  if (typeof cmd !== 'object' || cmd === null) throw new TypeError('actuator command must be an object');
  if (typeof cmd.id !== 'string' || typeof cmd.device !== 'string')
    throw new TypeError('actuator command id and device must be strings');
  if (cmd.action === 'activate') {
    if (typeof cmd.quantity !== 'number' || !Number.isFinite(cmd.quantity))
      throw new TypeError('activate quantity must be a finite number');
    EbTime.fromEpochMs(cmd.from);
    EbTime.fromEpochMs(cmd.to);
  } else if (cmd.action !== 'end') {
    throw new TypeError(`unknown actuator action ${JSON.stringify((cmd as { action?: unknown }).action)}`);
  }
}

export interface ActiveActivation {
  id: string;
  quantity: number;
  from: number;
  to: number;
}

const MAX_RECORDED = 1000;

export class SimulatedActuator implements Actuator {
  readonly #commands: ActuatorCommand[] = [];
  readonly #state = new Map<string, ActiveActivation>();
  #closed = false;

  /** The commands applied, oldest first (the last 1000: the simulated hub runs for long too). */
  get commands(): readonly ActuatorCommand[] {
    return this.#commands.slice();
  }

  /** The activation in force per device, as the commands left it. */
  get state(): ReadonlyMap<string, ActiveActivation> {
    return new Map([...this.#state].map(([device, a]) => [device, { ...a }]));
  }

  async apply(cmd: ActuatorCommand): Promise<void> {
    if (this.#closed) throw closedError('simulated actuator');
    checkCommandShape(cmd);
    this.#commands.push({ ...cmd });
    if (this.#commands.length > MAX_RECORDED) this.#commands.shift();
    if (cmd.action === 'activate') {
      this.#state.set(cmd.device, { id: cmd.id, quantity: cmd.quantity, from: cmd.from, to: cmd.to });
    } else if (this.#state.get(cmd.device)?.id === cmd.id) {
      this.#state.delete(cmd.device);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}

class CommandActuator implements Actuator {
  readonly #command: readonly string[];
  readonly #label: string;
  readonly #timeoutMs: number;
  readonly #serial = new Serial();
  readonly #live = new Set<ChildProcess>();
  #closed = false;

  constructor(config: CommandActuatorConfig) {
    this.#command = [...config.command];
    this.#label = commandLabel(this.#command);
    this.#timeoutMs = config.timeoutMs;
  }

  async apply(cmd: ActuatorCommand): Promise<void> {
    if (this.#closed) throw closedError(this.#label);
    checkCommandShape(cmd);
    const line =
      cmd.action === 'activate'
        ? JSON.stringify({
            action: 'activate',
            id: cmd.id,
            device: cmd.device,
            quantity: cmd.quantity,
            from: EbTime.fromEpochMs(cmd.from).toString(),
            to: EbTime.fromEpochMs(cmd.to).toString(),
          })
        : JSON.stringify({ action: 'end', id: cmd.id, device: cmd.device });
    await this.#serial.run(() =>
      runOnce(this.#command, { timeoutMs: this.#timeoutMs, input: `${line}\n`, live: this.#live }),
    );
  }

  /** Lets a command already started finish (it may be switching a relay), bounded by its timeout. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#serial.drain();
  }
}

class FileActuator implements Actuator {
  readonly #file: string;
  readonly #on: string;
  readonly #off: string;
  readonly #serial = new Serial();
  #current: string | undefined;
  #closed = false;

  constructor(config: FileActuatorConfig) {
    this.#file = config.path;
    this.#on = config.on;
    this.#off = config.off;
  }

  async apply(cmd: ActuatorCommand): Promise<void> {
    if (this.#closed) throw closedError(`file ${this.#file}`);
    checkCommandShape(cmd);
    await this.#serial.run(async () => {
      if (cmd.action === 'activate') {
        await this.#write(cmd.quantity > 0 ? this.#on : this.#off);
        this.#current = cmd.id;
      } else if (this.#current === undefined || this.#current === cmd.id) {
        await this.#write(this.#off);
        this.#current = undefined;
      }
    });
  }

  async #write(text: string): Promise<void> {
    try {
      await writeFile(this.#file, text);
    } catch (err) {
      throw new DeviceError('IO', `file ${this.#file}: cannot write (${errCode(err)})`, { cause: err });
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#serial.drain();
  }
}
