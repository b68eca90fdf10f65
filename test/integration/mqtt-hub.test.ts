/**
 * The MQTT hub (src/bin/hub-mqtt.ts, bundled as dist/hub-mqtt.js) as systemd runs it, against the real Mosquitto:
 * the same config as the AMQP hub with an mqtt:// broker.url; an aggregator's MQTT bus gets its answers. The AMQP
 * hub refuses that config with the file, the path and what to run instead (exit 78).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Message } from '../../src/codec/index.js';
import { mqttBus } from '../../src/mqtt/index.js';
import { until, withDeadline } from '../helpers/deadline.js';
import { hubConfig, runToEnd } from '../helpers/hub-process.js';

const HUB_MQTT_JS = fileURLToPath(new URL('../../src/bin/hub-mqtt.js', import.meta.url));
const BROKER = 'mqtt://127.0.0.1:1883';
const MS = 15_000;

function config(dir: string, hub: string, vpp: string): string {
  const c = { ...hubConfig(dir, hub, vpp), broker: { url: BROKER } };
  const file = path.join(dir, 'hub.json');
  writeFileSync(file, JSON.stringify(c, null, 2));
  return file;
}

function spawnHub(file: string): { child: ChildProcess; out: string[]; err: string[]; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [HUB_MQTT_JS, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out: string[] = [];
  const err: string[] = [];
  child.stdout?.on('data', (b: Buffer) => out.push(...b.toString().split('\n').filter(Boolean)));
  child.stderr?.on('data', (b: Buffer) => err.push(b.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  return { child, out, err, exit };
}

const s = suite('mqtt hub');

s('hub-mqtt.js with an mqtt:// broker.url answers an aggregator over MQTT and stops on SIGTERM', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'mqtt-hub-'));
  const id = randomUUID().slice(0, 8);
  const hubName = `heh-mqhub${id}`;
  const vppName = `vpp-mqhub${id}`;
  const p = spawnHub(config(dir, hubName, vppName));
  const vpp = mqttBus({ name: vppName, peers: [hubName], url: BROKER });
  try {
    // Subscribed once the bus started (the link's "hub running"): a first session takes nothing sent before it.
    await until(
      () => p.out.some((l) => l.includes('"hub running"')),
      () => `hub running (${p.err.join('')})`,
      MS,
    );
    await withDeadline(vpp.start(), MS, 'vpp start');
    const caps = (await withDeadline(
      vpp.request(hubName, { msg: 'get_capabilities', device: null }, { timeout: MS }),
      MS,
      'get_capabilities',
    ).catch((e: unknown) => {
      throw new Error(`${String(e)}\n${p.out.join('\n')}\n${p.err.join('')}`);
    })) as Message;
    assert.is(caps.msg, 'capabilities');
    p.child.kill('SIGTERM');
    assert.is(await withDeadline(p.exit, MS, 'exit'), 0, p.err.join(''));
  } finally {
    p.child.kill('SIGKILL');
    await vpp.close();
    for (const clientId of [hubName, vppName]) {
      const c = await mqtt.connectAsync(BROKER, { clientId, clean: true, protocolVersion: 4, reconnectPeriod: 0 });
      await c.endAsync();
    }
    rmSync(dir, { recursive: true, force: true });
  }
});

s('hub.js, the AMQP hub, refuses an mqtt:// broker.url and names hub-mqtt.js (exit 78)', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'mqtt-hub-'));
  try {
    const file = config(dir, 'heh-x1', 'vpp-x1');
    const p = await runToEnd(['check-config', '--config', file]);
    assert.is(p.code, 78);
    assert.match(
      p.err.join('\n'),
      `${file}: $.broker.url: expected an amqp:// or amqps:// URL (hub.js speaks AMQP; hub-mqtt.js, the MQTT hub, takes this config), found mqtt://...`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

s('hub-mqtt.js answers --version as hub.js does, and check-config takes the mqtt:// config', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'mqtt-hub-'));
  try {
    const file = config(dir, 'heh-x2', 'vpp-x2');
    const [v1, v2, check] = await Promise.all([
      runToEnd(['--version']),
      runNode([HUB_MQTT_JS, '--version']),
      runNode([HUB_MQTT_JS, 'check-config', '--config', file]),
    ]);
    assert.is(v2.out, `${v1.out.join('\n')}\n`);
    assert.is(check.code, 0, check.err);
    assert.match(check.out, `${file}: OK (heh-x2, `);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

async function runNode(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout?.on('data', (b: Buffer) => {
    out += b.toString();
  });
  child.stderr?.on('data', (b: Buffer) => {
    err += b.toString();
  });
  const code = await withDeadline(
    new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c))),
    MS,
    args.join(' '),
  );
  return { code, out, err };
}

s.run();
