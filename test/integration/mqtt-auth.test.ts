/**
 * The MQTT transport's connection failures against a throw-away Mosquitto (own port, own temp folder, stopped at the
 * end) that requires a password: refused credentials are reported as `failed` with `authentication`, and the next
 * attempts follow the exponential backoff (backoff.ts), not MQTT.js's fixed period; the right password gets in.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BusError } from '../../src/bus/index.js';
import { MqttTransport } from '../../src/mqtt/index.js';
import { until, withDeadline } from '../helpers/deadline.js';
import { listening, Mosquitto } from '../helpers/mosquitto.js';

const MS = 10_000;

/** A Mosquitto password file for heh-auth / right (mosquitto_passwd hashes it). */
function passwordFile(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'mqtt-auth-'));
  try {
    const file = path.join(dir, 'passwords');
    execFileSync('mosquitto_passwd', ['-c', '-b', file, 'heh-auth', 'right']);
    return readFileSync(file, 'utf8');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const s = suite('mqtt auth');
let broker: Mosquitto | undefined;
let port = 0;

s.before(async () => {
  broker = await Mosquitto.start({
    files: { passwords: passwordFile() },
    config: (dir) => ['allow_anonymous false', `password_file ${path.join(dir, 'passwords')}`],
  });
  port = broker.port;
});

s.after(async () => {
  await broker?.close();
});

s('the throw-away broker listens', async () => {
  assert.ok(await listening(port), `mosquitto on ${port}`);
});

s(
  'a refused password: start() rejects ACCESS_REFUSED; failed with authentication, retried with the exponential backoff; the right one gets in',
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
    const started = wrong
      .start(async () => undefined)
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    try {
      const refused = await withDeadline(started, MS, 'start() with a wrong password');
      assert.instance(refused, BusError, 'start() rejects at the first refusal, and does not wait without end');
      assert.is((refused as BusError).code, 'ACCESS_REFUSED');
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
