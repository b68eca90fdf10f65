/** A command run once per reading (meter) or per command (actuator). */
import type { ChildProcess } from 'node:child_process';
import { EbTime } from '../../codec/time.js';
import { isObject } from '../../core/is-object.js';
import type { CommandActuatorConfig, CommandMeterConfig } from '../config/types.js';
import {
  type Actuator,
  type ActuatorCommand,
  checkCommandShape,
  closedError,
  DeviceError,
  type Meter,
  type Reading,
  Serial,
  shortText,
} from './adapter.js';
import { commandLabel, killAndWait, runOnce } from './child-process.js';

/** Parses one output line into a reading of `signals`; throws a message for BAD_OUTPUT. */
export function parseReadingLine(line: string, signals: readonly string[]): Reading {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    throw new Error(`not JSON: ${shortText(line)}`);
  }
  if (!isObject(parsed)) throw new Error(`not a JSON object: ${shortText(line)}`);
  const record = parsed as Record<string, unknown>;
  const out: Reading = {};
  let named = false;
  for (const s of signals) {
    const has = Object.hasOwn(record, s);
    named ||= has;
    const v = has ? record[s] : null;
    if (v !== null && typeof v !== 'number')
      throw new Error(`signal ${shortText(s)} is not a number: ${shortText(JSON.stringify(v))}`);
    out[s] = v;
  }
  // Keys, but none of ours: a name that differs (`power` for `p`) read as null for ever, without a word.
  if (!named && Object.keys(record).length > 0)
    throw new Error(
      `none of the device's signals (${signals.join(', ')}) in ${shortText(line)}: print them by those names`,
    );
  return out;
}

/**
 * `{ kind, command, timeoutMs }`: argv, spawned without a shell. Each read runs it and takes its stdout, which must be
 * one JSON object line (`{"p": 1.23}`; a missing key or null gives null). Concurrent reads share one run. The time
 * passed to read() is not given to the command: the command measures now.
 */
export class OneShotCommandMeter implements Meter {
  declare readonly signals: readonly string[];
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

/**
 * `{ kind, command, timeoutMs }`. Runs the argv per command, with the command as one JSON line on stdin, and expects
 * exit code 0 within timeoutMs: `{"action":"activate","id":..,"device":..,"quantity":..,"from":"ISO","to":"ISO"}` or
 * `{"action":"end","id":..,"device":..}` (device included so a stateless script knows which relay to release).
 */
export class CommandActuator implements Actuator {
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
