/**
 * Runs one job from the parent: declares (and for `consume` fills) a fresh uniquely named queue, runs the contender
 * in a child process, then validates the outcome against the broker with the harness client before the numbers
 * count, and deletes the queue whatever happened.
 *
 * The harness client is amqplib when it is installed (an independent implementation checks ours), else ours.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { bodyIndex, makeBodies, makeBody } from './bodies.js';
import type { Scenario } from './config.js';
import { type Chan, type Conn, type Contender, type ContenderName, describeError } from './peers/index.js';
import { type Job, type RunResult, runJob } from './scenarios.js';

const WORKER = fileURLToPath(new URL('./worker.js', import.meta.url));

/** A fresh 10-character queue name (also the routing key of the wire-bytes scenario). */
export function uniqueQueue(): string {
  return `b${randomBytes(8).toString('hex').slice(0, 9)}`;
}

export class Harness {
  private constructor(
    readonly contender: Contender,
    private readonly conn: Conn,
  ) {}

  static async open(contender: Contender, port: number): Promise<Harness> {
    return new Harness(contender, await contender.connect({ port, noDelay: true }));
  }

  /** Runs `fn` on a fresh confirm channel (a failed passive declare closes its channel; the next job gets a new one). */
  async with<T>(fn: (ch: Chan) => Promise<T>): Promise<T> {
    const ch = await this.conn.channel(true);
    try {
      return await fn(ch);
    } finally {
      await ch.close().catch(() => undefined);
    }
  }

  async prepare(s: Scenario, queue: string): Promise<void> {
    await this.with(async (ch) => {
      await ch.declare(queue);
      if (s.kind !== 'consume') return;
      await ch.publishAll(queue, makeBodies(s.n, s.size), s.n, true);
      const count = await ch.messageCount(queue);
      if (count !== s.n) throw new Error(`pre-fill: the queue holds ${count} messages, expected ${s.n}`);
    });
  }

  /** What the broker says about the run's queue, compared with what the scenario should have left there. */
  async validate(s: Scenario, queue: string): Promise<string[]> {
    return this.with(async (ch) => {
      const problems: string[] = [];
      const count = await ch.messageCount(queue);
      const expected = s.kind === 'publish' ? s.n : s.kind === 'wire' ? s.n + s.warmup : 0;
      if (count !== expected) problems.push(`broker: queue holds ${count} messages, expected ${expected}`);
      if (expected > 0 && count > 0) {
        const m = await ch.get(queue);
        if (m === null) {
          problems.push('broker: basic.get found no message');
        } else {
          const ok = s.size >= 64 * 1024 ? m.body.equals(makeBody(s.size, 0)) : bodyIndex(m.body, s.size) === 0;
          if (!ok) problems.push(`broker: the first message's body is wrong (${m.body.length} bytes)`);
          if (s.persistent && m.deliveryMode !== 2)
            problems.push(`broker: deliveryMode ${String(m.deliveryMode)}, expected 2`);
        }
      }
      return problems;
    });
  }

  async cleanup(queue: string): Promise<void> {
    await this.with(async (ch) => {
      await ch.deleteQueue(queue);
      await ch.deleteQueue(`${queue}-w`);
    });
  }

  close(): Promise<void> {
    return this.conn.close();
  }
}

/** A failure inside the worker, already described in one line. */
class WorkerError extends Error {
  override name = 'in the worker';
}

/** Forks worker.js for one job; kills it (it is our own child) when it overruns `timeoutMs`. */
export function runIsolated(job: Job, timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = fork(WORKER, [JSON.stringify(job)], { stdio: ['ignore', 'inherit', 'pipe', 'ipc'] });
    // Keep the tail of the child's stderr: when it dies, that is the explanation.
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-2000);
    });
    let settled = false;
    const done = (f: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      f();
    };
    const timer = setTimeout(() => {
      done(() => reject(new Error(`timed out after ${timeoutMs} ms`)));
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('message', (m: { result?: RunResult; error?: string }) => {
      if (m.result !== undefined) done(() => resolve(m.result as RunResult));
      else done(() => reject(new WorkerError(m.error ?? 'the worker sent no result')));
    });
    child.on('error', (err) => done(() => reject(err)));
    child.on('close', (code, signal) =>
      done(() => reject(new Error(`the worker exited (${signal ?? code}) without a result: ${stderr.trim()}`))),
    );
  });
}

/** Checks that forking works here (under arm-node it needs ARM_BINFMT=1). */
export function canFork(): Promise<boolean> {
  return new Promise((resolve) => {
    let child: ChildProcess;
    try {
      child = fork(WORKER, ['ping'], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
    } catch {
      resolve(false);
      return;
    }
    const timer = setTimeout(() => {
      resolve(false);
      child.kill('SIGKILL');
    }, 30_000);
    child.on('message', () => {
      clearTimeout(timer);
      resolve(true);
    });
    child.on('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
    child.on('exit', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

export interface Outcome {
  scenario: string;
  contender: ContenderName;
  rep: number;
  valid: boolean;
  problems: string[];
  result: RunResult | null;
}

export async function execute(
  s: Scenario,
  contender: ContenderName,
  rep: number,
  harness: Harness,
  opts: { isolate: boolean; port: number; timeoutMs: number },
): Promise<Outcome> {
  const queue = uniqueQueue();
  const job: Job = { scenario: s, contender, queue, port: opts.port, sampleRss: !opts.isolate };
  const problems: string[] = [];
  let result: RunResult | null = null;
  try {
    await harness.prepare(s, queue);
    result = opts.isolate ? await runIsolated(job, opts.timeoutMs) : await runJob(job);
    problems.push(...result.problems);
    problems.push(...(await harness.validate(s, queue)));
  } catch (err) {
    problems.push(describeError(err));
  } finally {
    await harness.cleanup(queue).catch((err: unknown) => problems.push(`cleanup: ${describeError(err)}`));
  }
  return { scenario: s.id, contender, rep, valid: problems.length === 0 && result !== null, problems, result };
}
