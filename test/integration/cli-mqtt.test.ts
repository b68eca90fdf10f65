/**
 * The operator CLI over MQTT (issue 16, item 7), against the Mosquitto on 127.0.0.1:1883: `ebadge send`, `request`
 * and `listen` with an mqtt:// URL, acting as an operator entity towards a hub connector (mqttBus); a command sent
 * while nobody listens waits in the operator's session and `listen` prints it; dist/ebadge.js, bundled and run
 * alone (no node_modules), sends over MQTT, so the one file carries MQTT.js. Entity names are unique per run; their
 * sessions are removed at the end (a clean connect with the same client id).
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import mqtt from 'mqtt';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bundle } from '../../build/bundle.js';
import { useMqtt } from '../../src/cli/bus.js';
import { type Io, main } from '../../src/cli.js';
import type { Message } from '../../src/codec/index.js';
import { mqttBus } from '../../src/mqtt/index.js';
import { until, withDeadline } from '../helpers/deadline.js';

const URL = 'mqtt://127.0.0.1:1883';
const MS = 15_000;
const id = randomUUID().slice(0, 8);
const HUB = `heh-climq${id}`;
const OPS = `ops-climq${id}`;
const dir = mkdtempSync(path.join(tmpdir(), 'cli-mqtt-'));
// Mosquitto on 1883 lets anyone in; the CLI still wants the entity's password from somewhere (never inline).
const PASSWORD = path.join(dir, 'ops.pw');
writeFileSync(PASSWORD, 'unused-by-an-anonymous-broker\n', { mode: 0o600 });
const common = ['--as', OPS, '--url', URL, '--password-file', PASSWORD];

// What src/bin/ebadge.ts does: the cli layer gets the MQTT bus from the binary.
useMqtt(async () => mqttBus);

function capture(): Io & { lines: string[]; errors: string[] } {
  const lines: string[] = [];
  const errors: string[] = [];
  return { lines, errors, out: (l) => lines.push(l), err: (l) => errors.push(l), stdin: async () => '' };
}

const s = suite('ebadge CLI over MQTT');

s('send, request and listen with an mqtt:// URL; what came while nobody listened is printed by listen', async () => {
  const hub = mqttBus({ name: HUB, peers: [OPS], url: URL });
  const got: (number | null)[] = [];
  hub.onSetClock((m) => {
    got.push(m.offset);
  });
  hub.onGetReport(async (m, ctx) => {
    await ctx.reply({ msg: 'report', from: m.from, to: m.to, resolution: m.resolution, values: { 'total.p': [1.5] } });
  });
  await withDeadline(hub.start(), MS, 'hub start');
  try {
    const sent = capture();
    assert.is(await main(['send', ...common, '--to', HUB, 'set_clock', 'offset=2.5'], sent), 0, sent.errors.join('\n'));
    assert.equal(sent.lines, [`sent set_clock to ${HUB}`]);
    assert.match(sent.errors.join('\n'), `connecting to 127.0.0.1:1883 as ${OPS}`);
    await until(() => got.length === 1, 'the hub got the set_clock', MS);
    assert.equal(got, [2.5]);

    const asked = capture();
    const code = await main(
      [
        'request',
        ...common,
        '--to',
        HUB,
        'get_report',
        'from=2026-11-26T10:00:00Z',
        'to=2026-11-26T10:15:00Z',
        'resolution=900',
        'signals=total.p',
      ],
      asked,
    );
    assert.is(code, 0, asked.errors.join('\n'));
    const reply = JSON.parse(asked.lines[0] as string) as Record<string, unknown>;
    assert.is(reply['msg'], 'report');
    assert.equal(reply['values'], { 'total.p': [1.5] });

    // The request made the operator's session (subscribed, persistent): what the hub sends now waits there.
    await hub.publish(OPS, { msg: 'set_smart_mode', mode: 'passive', reset: false } as Message);
    const listened = capture();
    assert.is(
      await withDeadline(main(['listen', ...common, '--peer', HUB, '--count', '1'], listened), MS, 'listen'),
      0,
      listened.errors.join('\n'),
    );
    const line = JSON.parse(listened.lines[0] as string) as { from: string; type: string; message: { mode: string } };
    assert.equal([line.from, line.type, line.message.mode], [HUB, 'set_smart_mode', 'passive']);

    // No broker there: the command fails at the first attempt rather than reconnecting for ever as a service would.
    const nobody = capture();
    const args = ['send', '--as', OPS, '--url', 'mqtt://127.0.0.1:1', '--password-file', PASSWORD, '--to', HUB];
    assert.is(await withDeadline(main([...args, 'set_clock', 'offset=1'], nobody), MS, 'send to nobody'), 1);
    assert.match(nobody.errors.join('\n'), 'cannot connect to mqtt://127.0.0.1:1: connect ECONNREFUSED');

    const amqpOnly = capture();
    assert.is(await main(['send', ...common, '--to', HUB, '--external', 'set_clock', 'offset=1'], amqpOnly), 2);
    assert.match(amqpOnly.errors.join('\n'), '--external is for AMQP brokers');
  } finally {
    await hub.close();
  }
});

s('dist/ebadge.js alone (no node_modules beside it) sends over MQTT: the one file carries MQTT.js', async () => {
  const hub = mqttBus({ name: HUB, peers: [OPS], url: URL });
  const got: (number | null)[] = [];
  hub.onSetClock((m) => {
    got.push(m.offset);
  });
  await withDeadline(hub.start(), MS, 'hub start');
  const bin = mkdtempSync(path.join(tmpdir(), 'ebadge-mqtt-bundle-'));
  try {
    const file = path.join(bin, 'ebadge.js');
    await bundle('src/bin/ebadge.ts', file);
    const r = spawnSync(process.execPath, [file, 'send', ...common, '--to', HUB, 'set_clock', 'offset=7'], {
      cwd: bin,
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.is(r.status, 0, r.stderr);
    assert.is(r.stdout.trim(), `sent set_clock to ${HUB}`);
    await until(() => got.length === 1, 'the hub got the set_clock from dist/ebadge.js', MS);
    assert.equal(got, [7]);
  } finally {
    await hub.close();
    rmSync(bin, { recursive: true, force: true });
  }
});

s('cleanup: the sessions of this run are removed', async () => {
  for (const clientId of [HUB, OPS]) {
    const c = await withDeadline(
      mqtt.connectAsync(URL, { clientId, clean: true, protocolVersion: 4, reconnectPeriod: 0 }),
      MS,
      'clean connect',
    );
    await c.endAsync();
  }
  rmSync(dir, { recursive: true, force: true });
});

s.run();
