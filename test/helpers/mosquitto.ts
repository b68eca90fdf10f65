/**
 * A throw-away Mosquitto for the tests that need a broker of their own (a password file, persistence, restarts):
 * its own free port on 127.0.0.1, its own config and data directory under a temp folder, stopped and removed by
 * close(). The shared Mosquitto on 1883 is never touched.
 *
 *   const m = await Mosquitto.start({ persistence: true, autosaveIntervalS: 1800 });
 *   m.url                        // mqtt://127.0.0.1:<port>
 *   await m.stop('SIGKILL');     // or SIGTERM (saves its database first when persistence is on)
 *   await m.restart();           // the same port, config and data directory
 *   await m.close();             // stopped (SIGKILL if SIGTERM is not enough) and its folder removed
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { until, withDeadline } from './deadline.js';

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
export function listening(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const c = net.connect(port, '127.0.0.1', () => {
      c.destroy();
      resolve(true);
    });
    c.on('error', () => resolve(false));
  });
}

export interface MosquittoOptions {
  /** `persistence true`, its database in the data directory (default false). */
  persistence?: boolean;
  /** `autosave_interval`, s (Mosquitto's default 1800); with `autosaveOnChanges`, a number of changes. */
  autosaveIntervalS?: number;
  /** `autosave_on_changes true`: autosave_interval counts changes to the in-memory database, not seconds. */
  autosaveOnChanges?: boolean;
  /**
   * More lines for mosquitto.conf (the persistence and logging lines are written already), given its folder. With a
   * `listener` line of their own (on `port`), the helper writes none.
   */
  config?: (dir: string) => string[];
  /** The port (default a free one): for a config with its own listener line. */
  port?: number;
  /** Files to write into the folder before the start (name to content), e.g. a password file. */
  files?: Record<string, string>;
}

export class Mosquitto {
  readonly url: string;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();

  private constructor(
    readonly dir: string,
    readonly port: number,
    readonly configFile: string,
  ) {
    this.url = `mqtt://127.0.0.1:${port}`;
  }

  /** Writes the config and starts the broker; resolves once it listens. */
  static async start(options: MosquittoOptions = {}): Promise<Mosquitto> {
    const dir = mkdtempSync(path.join(tmpdir(), 'mosquitto-'));
    // Mosquitto started as root drops to its own user, which must read the folder and write its database there
    // (test secrets only).
    chmodSync(dir, 0o777);
    for (const [name, content] of Object.entries(options.files ?? {})) {
      writeFileSync(path.join(dir, name), content);
      chmodSync(path.join(dir, name), 0o644);
    }
    const port = options.port ?? (await freePort());
    const extra = options.config?.(dir) ?? [];
    const lines = extra.some((l) => l.startsWith('listener ')) ? [] : [`listener ${port} 127.0.0.1`];
    lines.push('log_dest none');
    if (options.persistence === true) {
      lines.push('persistence true', `persistence_location ${dir}/`);
      if (options.autosaveIntervalS !== undefined) lines.push(`autosave_interval ${options.autosaveIntervalS}`);
      if (options.autosaveOnChanges === true) lines.push('autosave_on_changes true');
    } else {
      lines.push('persistence false');
    }
    lines.push(...extra);
    if (!lines.some((l) => l.startsWith('allow_anonymous'))) lines.push('allow_anonymous true');
    const configFile = path.join(dir, 'mosquitto.conf');
    writeFileSync(configFile, `${lines.join('\n')}\n`);
    chmodSync(configFile, 0o644);
    const m = new Mosquitto(dir, port, configFile);
    await m.restart();
    return m;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  /** Starts the broker again with the same port, config and data directory (after stop()); resolves once it listens. */
  async restart(): Promise<void> {
    if (this.#child !== undefined) throw new Error('mosquitto is running');
    const child = spawn('mosquitto', ['-c', this.configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      err = (err + d).slice(-2000);
    });
    this.#child = child;
    this.#exited = new Promise((resolve) => child.once('exit', () => resolve()));
    await until(
      async () => {
        if (child.exitCode !== null) throw new Error(`mosquitto exited (${child.exitCode}): ${err}`);
        return listening(this.port);
      },
      () => `mosquitto listening on ${this.port}`,
      10_000,
      20,
    );
  }

  /** Stops the broker with `signal` (SIGTERM: a clean stop, which saves the database) and waits for its exit. */
  async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    child.kill(signal);
    await withDeadline(this.#exited, 10_000, `mosquitto to exit on ${signal}`).catch(async () => {
      child.kill('SIGKILL');
      await this.#exited;
    });
    this.#child = undefined;
  }

  async close(): Promise<void> {
    await this.stop('SIGTERM');
    rmSync(this.dir, { recursive: true, force: true });
  }
}
