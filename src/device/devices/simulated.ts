/**
 * Simulated devices, for an example hub and for tests: a meter whose value at t is a pure function of (seed, profile,
 * signal, t), and an actuator that records what it was told.
 */
import { throwRangeError, throwTypeError } from '../../core/errors.js';
import type { MeterProfile, SimulatedMeterConfig } from '../config/types.js';
import {
  type Actuator,
  type ActuatorCommand,
  checkCommandShape,
  closedError,
  type Meter,
  type Reading,
} from './adapter.js';

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;

/**
 * `{ kind, seed, profile: 'household' | 'boiler' | 'pv', peakKw }`. The value at t is a pure function of (seed,
 * profile, signal, t): shapes by time of day and season, day-to-day variation and per-minute jitter all come from a
 * hash of (seed, signal, slot). Each signal draws its own variation with the same shape. kW, 3 decimals.
 */
export class SimulatedMeter implements Meter {
  declare readonly signals: readonly string[];
  readonly #config: SimulatedMeterConfig;
  readonly #seed: readonly [number, number];
  readonly #salts: readonly number[];

  constructor(config: SimulatedMeterConfig, signals: readonly string[]) {
    if (typeof config.seed !== 'number' || !Number.isFinite(config.seed))
      throwTypeError('simulated meter seed must be a finite number');
    if (config.profile !== 'household' && config.profile !== 'boiler' && config.profile !== 'pv') {
      throwTypeError(`simulated meter profile must be household, boiler or pv, not ${JSON.stringify(config.profile)}`);
    }
    if (!(typeof config.peakKw === 'number' && config.peakKw >= 0 && Number.isFinite(config.peakKw))) {
      throwTypeError('simulated meter peakKw must be a non-negative number');
    }
    this.#config = { ...config };
    this.signals = Object.freeze(signals.length === 0 ? ['p'] : [...signals]);
    // Every bit of the seed counts, fractions and sign included, so close seeds still give unrelated households.
    const bits = new Uint32Array(new Float64Array([config.seed]).buffer);
    this.#seed = [bits[0] ?? 0, bits[1] ?? 0];
    this.#salts = this.signals.map(fnv1a);
  }

  async read(t: number): Promise<Reading> {
    if (typeof t !== 'number' || !Number.isFinite(t)) throwRangeError(`simulated meter: invalid time ${String(t)}`);
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

export interface ActiveActivation {
  id: string;
  quantity: number;
  from: number;
  to: number;
}

const MAX_RECORDED = 1000;

/** Records the commands (the last 1000) and the activation in force per device (`state`). */
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
