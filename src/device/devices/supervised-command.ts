/**
 * A meter command that runs for good and prints a JSON line per reading, supervised: a silent process is killed, an
 * ended one restarted with a growing delay.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import type { CommandMeterConfig } from '../config/types.js';
import { closedError, DeviceError, errCode, type Meter, type Reading } from './adapter.js';
import {
  commandLabel,
  exitFailure,
  killAndWait,
  killGroup,
  MAX_OUTPUT_BYTES,
  REAP_WAIT_MS,
  StderrTail,
  spawnFailure,
} from './child-process.js';
import { parseReadingLine } from './command.js';

const RESTART_MIN_MS = 5000;
const RESTART_MAX_MS = 300_000;
/** A run at least this long counts as healthy and resets the backoff. */
const HEALTHY_RUN_MS = 60_000;

/** Delay before restarting a long-running meter command after its `failures`-th consecutive end (1-based). */
export function restartDelayMs(failures: number): number {
  return Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** Math.max(0, Math.min(failures - 1, 16)));
}

/**
 * `{ kind, command, intervalS, timeoutMs }`: one long-running process prints a JSON line per reading. A reading is
 * served while younger than intervalS + timeoutMs, a process silent for that long is killed, and a process that ends
 * is restarted after 5 s, doubling per consecutive failure up to 5 min (reset by a run of a minute or more). The
 * time passed to read() is not given to the command: the command measures now.
 */
export class LongRunningCommandMeter implements Meter {
  declare readonly signals: readonly string[];
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
