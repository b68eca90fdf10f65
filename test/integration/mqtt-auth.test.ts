/**
 * The MQTT transport's connection failures against a throw-away Mosquitto (own port, own temp folder, stopped at the
 * end) that requires a password: refused credentials are reported as `failed` with `authentication`, and the next
 * attempts follow the exponential backoff (backoff.ts), not MQTT.js's fixed period; the right password gets in.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { MqttTransport } from '../../src/mqtt/index.js';
import { until, withDeadline } from '../helpers/deadline.js';

const MS = 10_000;

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const s = suite('mqtt auth');
let broker: ChildProcess | undefined;
let dir = '';
let port = 0;

s.before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'mqtt-auth-'));
  port = await freePort();
  const passwords = path.join(dir, 'passwords');
  execFileSync('mosquitto_passwd', ['-c', '-b', passwords, 'heh-auth', 'right']);
  // Mosquitto started as root drops to its own user, which must read the folder and the file (test secrets only).
  chmodSync(dir, 0o755);
  chmodSync(passwords, 0o644);
  const conf = path.join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    `listener ${port} 127.0.0.1\nallow_anonymous false\npassword_file ${passwords}\npersistence false\nlog_dest none\n`,
  );
  broker = spawn('mosquitto', ['-c', conf], { stdio: 'ignore' });
});

s.after(async () => {
  broker?.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
});

s('the throw-away broker listens', async () => {
  await until(
    () =>
      new Promise<boolean>((resolve) => {
        const c = net.connect(port, '127.0.0.1', () => {
          c.destroy();
          resolve(true);
        });
        c.on('error', () => resolve(false));
      }),
    `mosquitto on ${port}`,
    MS,
    50,
  );
});

s(
  'a refused password is failed with authentication, retried with the exponential backoff; the right one gets in',
  async () => {
    const url = `mqtt://127.0.0.1:${port}`;
    const events: string[] = [];
    const delays: number[] = [];
    const wrong = new MqttTransport({
      name: 'heh-auth',
      peers: ['vpp-auth'],
      url,
      username: 'heh-auth',
      password: 'wrong',
      reconnectDelay: 40,
      maxReconnectDelay: 160,
    });
    wrong.on('failed', (_e, info) => events.push(`failed ${info.attempt} auth=${info.authentication}`));
    wrong.on('reconnecting', (i) => delays.push(i.delayMs));
    const started = wrong.start(async () => undefined);
    started.catch(() => undefined);
    try {
      await until(
        () => delays.length >= 4,
        () => `4 reconnect delays (${delays.join(', ')})`,
        MS,
      );
      assert.equal(events.slice(0, 3), ['failed 1 auth=true', 'failed 2 auth=true', 'failed 3 auth=true']);
      for (const [i, d] of delays.slice(0, 4).entries()) {
        const base = Math.min(160, 40 * 2 ** i);
        assert.ok(d >= base && d <= base * 1.5, `attempt ${i + 1}: ${d} ms outside [${base}, ${base * 1.5}]`);
      }
    } finally {
      await wrong.close();
    }
    const right = new MqttTransport({
      name: 'heh-auth',
      peers: ['vpp-auth'],
      url,
      username: 'heh-auth',
      password: 'right',
    });
    try {
      await withDeadline(
        right.start(async () => undefined),
        MS,
        'start with the right password',
      );
      assert.is(right.protocolVersion, 5);
    } finally {
      await right.close();
    }
  },
);

s.run();
