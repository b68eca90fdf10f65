/**
 * Running a device's command: argv without a shell, in its own process group so that its helpers die with it,
 * killed as a group on timeout, and always waited for, so that no child is left behind unreaped.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { cut } from '../../core/shown.js';
import { DeviceError, errCode } from './adapter.js';

/** More stdout than any meter line needs; beyond it the child is misbehaving and is killed. */
export const MAX_OUTPUT_BYTES = 64 * 1024;
/** How long a killed child may take to be reaped before we stop waiting for it. */
export const REAP_WAIT_MS = 2000;

export function commandLabel(command: readonly string[]): string {
  const text = command.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
  return `command ${cut(text, 200)}`;
}

export function spawnFailure(label: string, err: unknown): DeviceError {
  const code = errCode(err);
  if (code === 'ENOENT' || code === 'ENOTDIR')
    return new DeviceError('NOT_FOUND', `${label}: not found (${code})`, { cause: err });
  if (code === 'EACCES') return new DeviceError('NOT_FOUND', `${label}: not executable (${code})`, { cause: err });
  return new DeviceError('IO', `${label}: cannot start (${code})`, { cause: err });
}

/** Kills the child's whole process group (it was spawned detached, as a group leader), so helpers it started go too. */
export function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
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
export class StderrTail {
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
    return last === undefined ? '' : `: ${cut(last, 200)}`;
  }
}

export function exitFailure(
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
export function runOnce(command: readonly string[], options: RunOptions): Promise<string> {
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

export async function killAndWait(
  children: Iterable<ChildProcess>,
  signal: NodeJS.Signals,
  graceMs: number,
): Promise<void> {
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
