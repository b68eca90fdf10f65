/**
 * `hub.js bench` on the device: every figure is printed, with a progress line per step on stderr; the broker round
 * trips go through a transport's loopback, and a broker that cannot be reached is exit 69, told by the transport's
 * events. Commands handed to hubMain (src/bin/hub.ts gives `keygen`) run with the hub's exit codes.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { MemoryTransport } from '../../../src/bus/index.js';
import { UsageError } from '../../../src/core/io.js';
import { bench } from '../../../src/device/bench.js';
import { exampleConfig } from '../../../src/device/config/index.js';
import { hubMain } from '../../../src/device/main.js';

const never = new Promise<void>(() => undefined);

const s = suite('hub bench');

s('codec and both crypto backends, a progress line per step, no broker without a config', async () => {
  const out: string[] = [];
  const err: string[] = [];
  assert.is(await bench({ out: (l) => out.push(l), err: (l) => err.push(l) }, { seconds: 0.05 }), 0);
  assert.match(out[0] as string, /^ebadge hub bench: node v/);
  for (const what of ['codec: encode', 'codec: decode', 'seal a report, PAIR (node)', 'open it (noble)']) {
    const line = out.find((l) => l.includes(what));
    assert.ok(line !== undefined && /[\d,]+ \/s$/.test(line), `${what}: ${String(line)}`);
  }
  assert.not.ok(out.some((l) => l.startsWith('broker')));
  assert.equal(
    err.map((l) => /^bench: (\d+)\/8 /.exec(l)?.[1]),
    ['1', '2', '3', '4', '5', '6', '7', '8'],
  );
});

s('hub.js bench refuses a bad --seconds with the usage exit code', async () => {
  const err: string[] = [];
  const code = await hubMain(['bench', '--seconds', 'soon'], {
    io: { out: () => undefined, err: (l) => err.push(l) },
    stop: new Promise(() => undefined),
  });
  assert.is(code, 64);
  assert.match(err.join('\n'), /--seconds/);
});

s('the broker round trips go through the transport: a loopback, closed afterwards', async () => {
  const [t] = MemoryTransport.pair('heh-bench', 'vpp-bench');
  let sent = 0;
  let closed = false;
  const broker = {
    loopback: async (onMessage: (body: Buffer) => void) => {
      const loop = await t.loopback(onMessage);
      return {
        send: (body: Uint8Array) => {
          sent++;
          return loop.send(body);
        },
        close: async () => {
          closed = true;
          await loop.close();
        },
      };
    },
  };
  const out: string[] = [];
  const err: string[] = [];
  assert.is(await bench({ out: (l) => out.push(l), err: (l) => err.push(l) }, { seconds: 0.05, broker }), 0);
  const line = out.find((l) => l.startsWith('broker: publish (confirmed) + consume round trip'));
  assert.ok(line !== undefined && /, (\d+) x +median [\d.]+ ms, p99 [\d.]+ ms$/.test(line), String(line));
  assert.is(Number(/, (\d+) x/.exec(line)?.[1]), sent, 'one row per round trip made');
  assert.ok(sent > 0 && closed);
  assert.equal(
    err.map((l) => /^bench: (\d+)\/9 /.exec(l)?.[1]),
    ['1', '2', '3', '4', '5', '6', '7', '8', '9'],
  );
});

s(
  'hub.js bench --config with no broker listening: the codec and sealing figures printed, then "the broker is unreachable", exit 69',
  async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'heh-bench-'));
    try {
      const config = exampleConfig(path.join(dir, 'state')) as Record<string, unknown>;
      // Port 1: nothing listens there, the connection is refused at once.
      writeFileSync(path.join(dir, 'hub.json'), JSON.stringify({ ...config, broker: { url: 'amqp://127.0.0.1:1' } }));
      const err: string[] = [];
      const out: string[] = [];
      const code = await hubMain(['bench', '--seconds', '0.01', '--config', path.join(dir, 'hub.json')], {
        io: { out: (l) => out.push(l), err: (l) => err.push(l) },
        stop: never,
      });
      assert.is(code, 69, err.join('\n'));
      assert.match(err.at(-1) ?? '', /^hub\.js bench: the broker is unreachable: /);
      // What was measured before the broker part is not thrown away.
      assert.match(out[0] as string, /^ebadge hub bench: node v/);
      for (const what of ['codec: encode', 'codec: decode', 'seal a report, PAIR (node)', 'open it (noble)']) {
        const line = out.find((l) => l.includes(what));
        assert.ok(line !== undefined && /[\d,]+ \/s$/.test(line), `${what}: ${String(line)}`);
      }
      assert.match(
        out.at(-1) ?? '',
        /^broker: publish \(confirmed\) \+ consume round trip +not measured: the broker part could not run$/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

s(
  'hub.js bench --config on an MQTT broker: a usage error saying the round trips are AMQP only, not a crash',
  async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'heh-bench-'));
    try {
      const config = exampleConfig(path.join(dir, 'state')) as Record<string, unknown>;
      writeFileSync(
        path.join(dir, 'hub.json'),
        JSON.stringify({ ...config, broker: { url: 'mqtt://127.0.0.1:1883' } }),
      );
      const err: string[] = [];
      const code = await hubMain(['bench', '--seconds', '0.01', '--config', path.join(dir, 'hub.json')], {
        io: { out: () => undefined, err: (l) => err.push(l) },
        stop: never,
      });
      assert.is(code, 64, err.join('\n'));
      assert.match(err.join('\n'), 'the broker round trips are measured over AMQP only, and broker.url is an MQTT one');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

const c = suite('hub.js commands given by the composition layer');

c('a command handed in runs with the hub exit codes: its result, 64 and the hub usage for a usage error', async () => {
  const calls: string[][] = [];
  const keygen = async (args: string[]): Promise<number> => {
    calls.push(args);
    if (args.includes('--bad')) throw new UsageError('--bad is not a flag');
    return 0;
  };
  const err: string[] = [];
  const io = { out: () => undefined, err: (l: string) => err.push(l) };
  assert.is(await hubMain(['keygen', '--id', 'hub'], { io, stop: never, commands: { keygen } }), 0);
  assert.equal(calls, [['--id', 'hub']]);
  assert.is(await hubMain(['keygen', '--bad'], { io, stop: never, commands: { keygen } }), 64);
  assert.match(err.join('\n'), /^error: --bad is not a flag\nusage: hub\.js/);
  // A name of Object.prototype is no command; without the commands, keygen is an unknown command too.
  err.length = 0;
  assert.is(await hubMain(['constructor'], { io, stop: never, commands: { keygen } }), 64);
  assert.match(err.join('\n'), /unknown command "constructor"/);
  err.length = 0;
  assert.is(await hubMain(['keygen'], { io, stop: never }), 64);
  assert.match(err.join('\n'), /unknown command "keygen"/);
});

c('a mistyped option is a usage error that says what was meant: one dash for two, a letter off', async () => {
  const err: string[] = [];
  const io = { out: () => undefined, err: (l: string) => err.push(l) };
  for (const [args, said] of [
    [['-config', 'hub.json'], '(options take two dashes: --config)'],
    [['--conifg', 'hub.json'], '(did you mean "--config"?)'],
    [['check-config', '--confg=hub.json'], '(did you mean "--config"?)'],
    [['bench', '--second', '2'], '(did you mean "--seconds"?)'],
  ] as const) {
    err.length = 0;
    assert.is(await hubMain([...args], { io, stop: never }), 64, args.join(' '));
    assert.ok((err[0] ?? '').includes(said), `${args.join(' ')}: ${err[0]}`);
  }
  err.length = 0;
  assert.is(await hubMain(['--frobnicate'], { io, stop: never }), 64);
  assert.not.match(err[0] ?? '', /did you mean|two dashes/);
});

s.run();
c.run();
