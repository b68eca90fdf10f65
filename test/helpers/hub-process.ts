/**
 * The hub as systemd runs it, for the integration tests: `node .out/src/bin/hub.js --config FILE` as a child process
 * whose JSON log lines are collected and waited for, and a valid config for it on the test broker.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { exampleConfig } from '../../src/device/config/index.js';
import { AMQP_URL } from './amqp.js';
import { NET_MS, until } from './bus.js';
import { withDeadline } from './deadline.js';

export const HUB_JS = fileURLToPath(new URL('../../src/bin/hub.js', import.meta.url));
/** The MQTT hub (dist/hub-mqtt.js's entry): the same config and logs. */
export const HUB_MQTT_JS = fileURLToPath(new URL('../../src/bin/hub-mqtt.js', import.meta.url));

export interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

export class HubProcess {
  readonly child: ChildProcess;
  readonly out: string[] = [];
  readonly err: string[] = [];
  /** Resolves once the process is gone and its output read: the exit code, or the signal that killed it. */
  readonly exit: Promise<number | NodeJS.Signals>;
  code: number | NodeJS.Signals | undefined;

  constructor(args: string[], script = HUB_JS) {
    this.child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    collect(this.child.stdout, this.out);
    collect(this.child.stderr, this.err);
    this.exit = new Promise((resolve) => {
      this.child.once('close', (code, signal) => {
        this.code = code ?? signal ?? 'SIGKILL';
        resolve(this.code);
      });
    });
  }

  get logs(): LogLine[] {
    return this.out.flatMap((l) => {
      try {
        return [JSON.parse(l) as LogLine];
      } catch {
        return [];
      }
    });
  }

  has(msg: string): boolean {
    return this.logs.some((l) => l.msg === msg);
  }

  transcript(): string {
    return [...this.out.slice(-25), ...this.err.slice(-10).map((l) => `stderr: ${l}`)].join('\n');
  }

  /** Waits for a log line; fails at once, with the output, if the hub exits first. */
  async waitFor(msg: string, ms = NET_MS): Promise<void> {
    await until(
      () => {
        if (this.code !== undefined)
          throw new Error(`the hub exited (${this.code}) before logging "${msg}":\n${this.transcript()}`);
        return this.has(msg);
      },
      () => `"${msg}" from the hub:\n${this.transcript()}`,
      ms,
      20,
    );
  }

  /** SIGTERM, then the exit code. */
  async stop(): Promise<number | NodeJS.Signals> {
    if (this.code === undefined) this.child.kill('SIGTERM');
    return withDeadline(this.exit, 15_000, 'the hub to exit after SIGTERM');
  }

  async kill(): Promise<void> {
    if (this.code === undefined) this.child.kill('SIGKILL');
    await withDeadline(this.exit, 5_000, 'the hub to die').catch(() => undefined);
  }
}

function collect(stream: Readable | null, into: string[]): void {
  let rest = '';
  stream
    ?.setEncoding('utf8')
    .on('data', (d: string) => {
      const parts = (rest + d).split('\n');
      rest = parts.pop() ?? '';
      into.push(...parts.filter((l) => l !== ''));
    })
    .on('end', () => {
      if (rest !== '') into.push(rest);
    });
}

/** Runs hub.js to its end (bounded): exit code and output. */
export async function runToEnd(args: string[], ms = 10_000): Promise<HubProcess> {
  const p = new HubProcess(args);
  try {
    await withDeadline(p.exit, ms, `hub.js ${args.join(' ')}`);
  } finally {
    await p.kill();
  }
  return p;
}

/**
 * hub.json's broker section for the test broker (AMQP_URL): the URL without its credentials, which hub.json refuses,
 * the user, and a password file in `dir` unless it is guest's.
 */
export function hubBroker(dir: string): Record<string, unknown> {
  const url = new URL(AMQP_URL);
  const user = decodeURIComponent(url.username) || 'guest';
  const password = decodeURIComponent(url.password) || 'guest';
  const broker: Record<string, unknown> = { url: `${url.protocol}//${url.host}${url.pathname}`, username: user };
  if (!(user === 'guest' && password === 'guest')) {
    writeFileSync(path.join(dir, 'broker.pw'), password, { mode: 0o600 });
    broker['passwordFile'] = path.join(dir, 'broker.pw');
  }
  return broker;
}

/** A valid config: exampleConfig (household meter, switchable 2 kW boiler) on the test broker, with our names. */
export function hubConfig(dir: string, hub: string, vpp: string): Record<string, unknown> {
  const broker = hubBroker(dir);
  return {
    ...(exampleConfig(path.join(dir, 'state')) as Record<string, unknown>),
    name: hub,
    peers: [{ name: vpp, role: 'aggregator' }],
    broker,
    resolutionS: 1,
    fsyncIntervalS: 1,
  };
}
