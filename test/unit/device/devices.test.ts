/**
 * Meter and actuator adapters (src/device/devices/). Command adapters run small node scripts written to a temp
 * dir ([process.execPath, script]); every wait is bounded by `within`, every child is checked gone, the temp dir is
 * removed at the end.
 */

import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseReadingLine } from '../../../src/device/devices/command.js';
import {
  createActuator,
  createMeter,
  DeviceError,
  type MeterConfig,
  type Reading,
  restartDelayMs,
} from '../../../src/device/devices/index.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const JUNE_1 = Date.UTC(2024, 5, 1);

let dir = '';
const node = process.execPath;
const script = (): string => path.join(dir, 'fake.mjs');

/** One script, many behaviours: argv[2] picks one. */
const FAKE = `
import * as fs from 'node:fs';
const [mode, arg] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
switch (mode) {
  case 'ok': out({ p: 1.5, q: null, extra: 'ignored' }); break;
  case 'garbage': process.stdout.write('hello, I am a meter\\n'); break;
  case 'string': out({ p: 'high' }); break;
  case 'fail': process.stderr.write('sensor offline\\n'); process.exit(1); break;
  case 'sleep': fs.writeFileSync(arg, String(process.pid)); setTimeout(() => {}, 60_000); break;
  case 'stream': {
    fs.writeFileSync(arg, String(process.pid));
    let n = 0;
    const line = () => {
      out({ p: n });
      fs.writeFileSync(arg + '.last', String(n++)); // the last line written, for the test to wait on
    };
    line();
    setInterval(line, 100);
    break;
  }
  case 'once': {
    fs.appendFileSync(arg, Date.now() + '\\n');
    const starts = fs.readFileSync(arg, 'utf8').trim().split('\\n').length;
    out({ p: starts });
    // The first run ends (the adapter must restart it); the restarted one stays, so that a read can see its line.
    if (starts > 1) setTimeout(() => {}, 60_000);
    break;
  }
  case 'sink': {
    const chunks = [];
    process.stdin.on('data', (c) => chunks.push(c));
    process.stdin.on('end', () => {
      fs.appendFileSync(arg, Buffer.concat(chunks));
      process.exit(Number(process.argv[4] ?? 0));
    });
    break;
  }
}
`;

function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

async function rejection(promise: Promise<unknown>, what: string, ms = 4000): Promise<DeviceError> {
  try {
    await within(ms, promise, what);
  } catch (err) {
    if (err instanceof DeviceError) return err;
    throw err;
  }
  assert.unreachable(`${what}: resolved, expected a DeviceError`);
  throw new Error('unreachable');
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(check: () => boolean, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) assert.unreachable(`${what}: not within ${ms} ms`);
    await sleep(25);
  }
}

function tmp(name: string, text?: string): string {
  const file = path.join(dir, name);
  if (text !== undefined) fs.writeFileSync(file, text);
  return file;
}

function setup(): void {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebadge-devices-'));
  fs.writeFileSync(script(), FAKE);
}
function teardown(): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

// -----------------------------------------------------------------------------------------------------------------

const sim = suite('simulated meter');

async function series(
  config: MeterConfig,
  start: number,
  stepMs: number,
  n: number,
  signals = ['p'],
): Promise<number[]> {
  const meter = await createMeter(config, signals);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = await meter.read(start + i * stepMs);
    out.push(r[signals[0] ?? 'p'] as number);
  }
  return out;
}

sim('deterministic: same seed and t give the same value, from separate meters, without Math.random', async () => {
  const random = Math.random;
  Math.random = () => {
    throw new Error('Math.random used');
  };
  try {
    for (const profile of ['household', 'boiler', 'pv'] as const) {
      const config: MeterConfig = { kind: 'simulated', seed: 42, profile, peakKw: 5 };
      const a = await series(config, JUNE_1, 7 * 60_000, 400);
      const b = await series(config, JUNE_1, 7 * 60_000, 400);
      assert.equal(a, b, profile);
      for (const v of a) {
        assert.ok(Number.isFinite(v) && v >= 0 && v <= 5, `${profile}: ${v} in [0, 5]`);
        assert.is(Math.round(v * 1000) / 1000, v, `${profile}: ${v} has 3 decimals`);
      }
    }
  } finally {
    Math.random = random;
  }
});

sim('different seeds and different signals give different values', async () => {
  for (const profile of ['household', 'boiler', 'pv'] as const) {
    const a = await series({ kind: 'simulated', seed: 1, profile, peakKw: 3 }, JUNE_1, 13 * 60_000, 300);
    const b = await series({ kind: 'simulated', seed: 2, profile, peakKw: 3 }, JUNE_1, 13 * 60_000, 300);
    assert.not.equal(a, b, profile);
  }
  const meter = await createMeter({ kind: 'simulated', seed: 7, profile: 'household', peakKw: 4 }, ['p', 'p2']);
  let differ = 0;
  for (let i = 0; i < 50; i++) {
    const r = await meter.read(JUNE_1 + i * HOUR);
    if (r['p'] !== r['p2']) differ++;
  }
  assert.ok(differ > 25, `signals differ in ${differ} of 50 readings`);
  assert.equal(meter.signals, ['p', 'p2']);
});

sim('household: evenings are higher than nights on average; base load never 0', async () => {
  const meter = await createMeter({ kind: 'simulated', seed: 3, profile: 'household', peakKw: 6 }, []);
  assert.equal(meter.signals, ['p']);
  let evening = 0;
  let night = 0;
  for (let d = 0; d < 60; d++) {
    for (let m = 0; m < 60; m += 10) {
      const e = (await meter.read(JUNE_1 + d * DAY + 19.5 * HOUR + m * 60_000))['p'] as number;
      const n = (await meter.read(JUNE_1 + d * DAY + 3 * HOUR + m * 60_000))['p'] as number;
      evening += e;
      night += n;
      assert.ok(n > 0, `night base load ${n}`);
    }
  }
  assert.ok(evening > 3 * night, `evening ${evening.toFixed(1)} vs night ${night.toFixed(1)}`);
});

sim('pv: exactly 0 at night all year, positive generation around noon, never negative', async () => {
  const meter = await createMeter({ kind: 'simulated', seed: 11, profile: 'pv', peakKw: 4 }, ['p']);
  let noon = 0;
  for (let d = 0; d < 365; d += 3) {
    const day = Date.UTC(2024, 0, 1) + d * DAY;
    for (const h of [0, 1, 2, 3, 4, 21, 22, 23])
      assert.is((await meter.read(day + h * HOUR))['p'], 0, `day ${d} ${h}:00`);
    const v = (await meter.read(day + 12 * HOUR))['p'] as number;
    assert.ok(v > 0, `day ${d} noon: ${v}`);
    noon += v;
  }
  assert.ok(noon / 122 > 1, `mean noon generation ${noon / 122} kW`);
  const summer = await series({ kind: 'simulated', seed: 11, profile: 'pv', peakKw: 4 }, JUNE_1, 11 * 60_000, 2000);
  assert.ok(summer.every((v) => v >= 0));
});

sim('boiler: on/off cycles, full power or nothing', async () => {
  const values = await series({ kind: 'simulated', seed: 5, profile: 'boiler', peakKw: 2 }, JUNE_1, 60_000, 3 * 1440);
  const on = values.filter((v) => v > 0);
  assert.ok(
    values.every((v) => v === 0 || v >= 1.9),
    'no partial power',
  );
  assert.ok(on.length > 100 && on.length < values.length / 2, `${on.length} minutes on of ${values.length}`);
  let switches = 0;
  for (let i = 1; i < values.length; i++) if ((values[i] === 0) !== (values[i - 1] === 0)) switches++;
  assert.ok(switches > 20, `${switches} switches in 3 days`);
});

sim('bad config and times reject, never throw synchronously', async () => {
  const bad = createMeter({ kind: 'simulated', seed: 1, profile: 'spaceship' as 'pv', peakKw: 1 }, ['p']);
  assert.instance(bad, Promise);
  await bad.then(
    () => assert.unreachable('accepted'),
    (err: unknown) => assert.instance(err, TypeError),
  );
  const meter = await createMeter({ kind: 'simulated', seed: 1, profile: 'pv', peakKw: 1 }, ['p']);
  await meter.read(NaN).then(
    () => assert.unreachable('read NaN'),
    (err: unknown) => assert.instance(err, RangeError),
  );
  await createMeter({ kind: 'nope' } as unknown as MeterConfig, ['p']).then(
    () => assert.unreachable('accepted'),
    (err: unknown) => assert.instance(err, TypeError),
  );
});

sim.run();

// -----------------------------------------------------------------------------------------------------------------

const csv = suite('csv meter');
csv.before(setup);
csv.after(teardown);

const at = (h: number, m = 0, s = 0): number => JUNE_1 + 3 * DAY + ((h * 60 + m) * 60 + s) * 1000;

csv('seconds of the day: the row in force, empty cell null, outside the file null', async () => {
  const file = tmp('day.csv', '# one morning\nt,p,q\n3600,1.5,0.1\n\n7200,2.5,\n10800,-0.5,0.3\n');
  const meter = await createMeter({ kind: 'csv', path: file, loop: false }, ['p', 'q']);
  assert.equal(await meter.read(at(1)), { p: 1.5, q: 0.1 });
  assert.equal(await meter.read(at(1, 59, 59)), { p: 1.5, q: 0.1 });
  assert.equal(await meter.read(at(2, 30)), { p: 2.5, q: null });
  assert.equal(await meter.read(at(3, 59)), { p: -0.5, q: 0.3 });
  assert.equal(await meter.read(at(4)), { p: null, q: null }, 'the last row holds one interval');
  assert.equal(await meter.read(at(0, 30)), { p: null, q: null });
  assert.equal(await meter.read(at(2, 30) + 17 * DAY), { p: 2.5, q: null }, 'a day profile: every day alike');
});

csv(
  'loop: the time of day is taken modulo the span; signals default to the header; cwd resolves the path',
  async () => {
    tmp('hour.csv', 't,p\n0,1\n1800,2\n');
    const meter = await createMeter({ kind: 'csv', path: 'hour.csv', loop: true }, [], { cwd: dir });
    assert.equal(meter.signals, ['p']);
    assert.equal(await meter.read(at(0, 10)), { p: 1 });
    assert.equal(await meter.read(at(0, 40)), { p: 2 });
    assert.equal(await meter.read(at(5, 10)), { p: 1 });
    assert.equal(await meter.read(at(17, 59)), { p: 2 });
  },
);

csv('ISO times with offsets: absolute rows; loop replays the span from the first row', async () => {
  const file = tmp(
    'iso.csv',
    [
      't,p,soc',
      '2024-06-04T00:00:00+02:00,1,50',
      '2024-06-04T12:00:00+02:00,2,60',
      '2024-06-05T00:00:00+02:00,3,70',
      '2024-06-05T12:00:00+02:00,4,80',
    ].join('\r\n'),
  );
  const once = await createMeter({ kind: 'csv', path: file, loop: false }, ['soc', 'p']);
  assert.equal(await once.read(Date.parse('2024-06-03T22:00:00Z')), { soc: 50, p: 1 });
  assert.equal(await once.read(Date.parse('2024-06-04T21:59:59Z')), { soc: 60, p: 2 });
  assert.equal(await once.read(Date.parse('2024-06-05T15:00:00+02:00')), { soc: 80, p: 4 });
  assert.equal(await once.read(Date.parse('2024-06-06T00:00:00+02:00')), { soc: null, p: null }, 'after the end');
  assert.equal(await once.read(Date.parse('2024-06-03T23:59:00+02:00')), { soc: null, p: null }, 'before the start');
  const loop = await createMeter({ kind: 'csv', path: file, loop: true }, ['p']);
  assert.equal(await loop.read(Date.parse('2024-06-06T01:00:00+02:00')), { p: 1 });
  assert.equal(await loop.read(Date.parse('2024-06-09T13:00:00+02:00')), { p: 4 }, 'two-day span: odd days');
  assert.equal(await loop.read(Date.parse('2024-06-02T13:00:00+02:00')), { p: 2 }, 'before the file, too');
});

csv('a malformed file rejects at open with BAD_FILE naming file, line and column', async () => {
  const cases: Array<[string, string]> = [
    ['t,p\n0,1\n60,abc\n', 'line 3, column 2'],
    ['t,p,q\n0,1,2\n60,1\n', 'line 3, column 3'],
    ['t,p\n0,1\n0,2\n', 'line 3, column 1'],
    ['t,p\n0,1\n2024-06-01T00:00:00Z,2\n', 'line 3, column 1'],
    ['t,p\n2024-06-01T00:00:00,1\n', 'line 2, column 1'],
    ['time,p\n0,1\n', 'line 1, column 1'],
    ['t,p,p\n0,1,1\n', 'line 1, column 3'],
    ['t,p\n\n\n90000,1\n', 'line 4, column 1'],
    ['t,p\n', 'line 2, column 1'],
    ['', 'line 1, column 1'],
    ['t,p\n0,Infinity\n', 'line 2, column 2'],
  ];
  for (const [text, where] of cases) {
    const file = tmp('bad.csv', text);
    const err = await rejection(createMeter({ kind: 'csv', path: file, loop: false }, []), JSON.stringify(text));
    assert.is(err.code, 'BAD_FILE', text);
    assert.ok(err.message.includes(file) && err.message.includes(where), `${err.message} names ${where}`);
  }
  const missing = await rejection(
    createMeter({ kind: 'csv', path: tmp('ok.csv', 't,p\n0,1\n'), loop: false }, ['x']),
    'no column',
  );
  assert.is(missing.code, 'BAD_FILE');
  assert.match(missing.message, 'line 1');
  const absent = await rejection(
    createMeter({ kind: 'csv', path: path.join(dir, 'absent.csv'), loop: false }, []),
    'absent',
  );
  assert.is(absent.code, 'IO');
  assert.match(absent.message, 'absent.csv');
});

csv('a CSV over 8 MiB is BAD_FILE, not read (a 27 MB one ran the hub out of its heap on a Pi)', async () => {
  const f = tmp('year.csv', `t,p\n${'2026-01-01T00:00:00Z,1.234\n'.repeat(320_000)}`);
  const e = await rejection(createMeter({ kind: 'csv', path: f, loop: false }, ['p']), 'a large CSV');
  assert.is(e.code, 'BAD_FILE');
  assert.match(e.message, `csv ${f}: more than 8 MiB, not read`);
});

csv.run();

// -----------------------------------------------------------------------------------------------------------------

const cmd = suite('command meter');
cmd.before(setup);
cmd.after(teardown);

const command = (...args: string[]): string[] => [node, script(), ...args];

cmd('one-shot: one JSON object line per read; missing and null signals are null', async () => {
  const meter = await createMeter({ kind: 'command', command: command('ok'), timeoutMs: 3000 }, ['p', 'q', 'r']);
  assert.equal(await within(4000, meter.read(Date.now()), 'read'), { p: 1.5, q: null, r: null });
  const [a, b] = await within(4000, Promise.all([meter.read(0), meter.read(0)]), 'concurrent reads');
  assert.equal(a, b);
  await meter.close();
});

cmd('one-shot failures: garbage and wrong types are BAD_OUTPUT, exit 1 is EXIT with its stderr', async () => {
  for (const mode of ['garbage', 'string']) {
    const meter = await createMeter({ kind: 'command', command: command(mode), timeoutMs: 3000 }, ['p']);
    const err = await rejection(meter.read(0), mode);
    assert.is(err.code, 'BAD_OUTPUT', mode);
    assert.match(err.message, 'fake.mjs');
    await meter.close();
  }
  const meter = await createMeter({ kind: 'command', command: command('fail'), timeoutMs: 3000 }, ['p']);
  const err = await rejection(meter.read(0), 'fail');
  assert.is(err.code, 'EXIT');
  assert.match(err.message, 'exited with code 1: sensor offline');
  assert.match(err.message, 'fake.mjs fail');
});

cmd('a line with keys but none of the signals is BAD_OUTPUT naming them; {} and a signal set to null are null', () => {
  assert.throws(
    () => parseReadingLine('{"power": 1.25}', ['p', 'q']),
    (e: Error) =>
      e.message === `none of the device's signals (p, q) in "{\\"power\\": 1.25}": print them by those names`,
  );
  assert.equal(parseReadingLine('{}', ['p']), { p: null });
  assert.equal(parseReadingLine('{"p": null, "power": 1}', ['p']), { p: null });
  assert.equal(parseReadingLine('{"q": 2, "power": 1}', ['p', 'q']), { p: null, q: 2 });
});

cmd('one-shot timeout: TIMEOUT, and the child is killed and reaped before read() rejects', async () => {
  const pidFile = tmp('sleep.pid');
  const meter = await createMeter({ kind: 'command', command: command('sleep', pidFile), timeoutMs: 2000 }, ['p']);
  const started = Date.now();
  const err = await rejection(meter.read(0), 'sleep', 6000);
  assert.is(err.code, 'TIMEOUT');
  assert.match(err.message, '2000 ms');
  assert.ok(Date.now() - started < 4500, 'rejects soon after the timeout');
  const pid = Number(fs.readFileSync(pidFile, 'utf8'));
  assert.ok(pid > 0);
  assert.not.ok(alive(pid), `child ${pid} still exists`);
});

cmd('a missing executable is NOT_FOUND, from read(), for both modes', async () => {
  const missing = path.join(dir, 'no-such-meter');
  const meter = await createMeter({ kind: 'command', command: [missing, '--read'], timeoutMs: 1000 }, ['p']);
  const err = await rejection(meter.read(0), 'one-shot');
  assert.is(err.code, 'NOT_FOUND');
  assert.match(err.message, 'no-such-meter');
  const long = await createMeter({ kind: 'command', command: [missing], intervalS: 1, timeoutMs: 1000 }, ['p']);
  const err2 = await rejection(long.read(0), 'long-running');
  assert.is(err2.code, 'NOT_FOUND');
  await within(3000, long.close(), 'close');
});

cmd('long-running: keeps the latest of its lines; close() ends the process', async () => {
  const pidFile = tmp('stream.pid');
  const meter = await createMeter(
    { kind: 'command', command: command('stream', pidFile), intervalS: 0.1, timeoutMs: 2000 },
    ['p'],
  );
  const first = (await within(3000, meter.read(0), 'first'))['p'] as number;
  // Lines keep coming: once the child has written first + 3, the line first + 2 has been on the pipe for 100 ms.
  const last = (): number =>
    fs.existsSync(`${pidFile}.last`) ? Number(fs.readFileSync(`${pidFile}.last`, 'utf8')) : -1;
  await waitFor(() => last() >= first + 3, 3000, 'three more lines');
  const later = (await within(3000, meter.read(0), 'later'))['p'] as number;
  assert.ok(later >= first + 2, `${first} then ${later}`);
  const pid = Number(fs.readFileSync(pidFile, 'utf8'));
  assert.ok(alive(pid));
  await within(4000, meter.close(), 'close');
  assert.not.ok(alive(pid), 'child gone after close');
  const err = await rejection(meter.read(0), 'after close');
  assert.match(err.message, 'closed');
});

cmd('long-running: a process that exits is restarted no sooner than 5 s later; reads fail meanwhile', async () => {
  const starts = tmp('starts.txt');
  const meter = await createMeter(
    { kind: 'command', command: command('once', starts), intervalS: 1, timeoutMs: 2000 },
    ['p'],
  );
  try {
    const lines = (): number[] =>
      fs.existsSync(starts) ? fs.readFileSync(starts, 'utf8').trim().split('\n').map(Number) : [];
    await waitFor(() => lines().length === 1, 3000, 'first start');
    // The first run's line may still be served until its exit is seen; then reads fail until the restart.
    const err = await rejection(
      (async () => {
        for (const until = Date.now() + 3000; Date.now() < until; await sleep(25)) await meter.read(0);
      })(),
      'after exit',
      4000,
    );
    assert.is(err.code, 'EXIT');
    assert.match(err.message, 'exited with code 0; restarting in 5 s');
    await waitFor(() => lines().length === 2, 12_000, 'restart'); // 5 s of backoff, then a node child's start
    const [t1 = 0, t2 = 0] = lines();
    assert.ok(t2 - t1 >= 5000, `restarted after ${t2 - t1} ms`);
    // A node child can take seconds to start on a loaded machine: the bound is generous, the loop ends early.
    assert.equal(
      await within(
        10_000,
        (async () => {
          for (const until = Date.now() + 10_000; Date.now() < until; await sleep(25)) {
            const r: Reading | undefined = await meter.read(0).catch(() => undefined);
            if (r !== undefined) return r;
          }
          return undefined;
        })(),
        'reading after restart',
      ),
      { p: 2 },
    );
  } finally {
    await meter.close();
  }
});

cmd('restart backoff: 5 s, doubling, at most 5 min', () => {
  assert.equal(
    [1, 2, 3, 4, 5, 6, 7, 50].map(restartDelayMs),
    [5000, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000],
  );
});

cmd.run();

// -----------------------------------------------------------------------------------------------------------------

const file = suite('file meter');
file.before(setup);
file.after(teardown);

file('reads the trimmed number times scale, for its signal; re-reads every time', async () => {
  const f = tmp('in_power_raw', '1234\n');
  const meter = await createMeter({ kind: 'file', path: f, scale: 0.001, signal: 'pv' }, ['pv']);
  assert.equal(meter.signals, ['pv']);
  assert.equal(await meter.read(0), { pv: 1234 * 0.001 });
  fs.writeFileSync(f, '  -500 \n');
  assert.equal(await meter.read(0), { pv: -0.5 });
  const plain = await createMeter({ kind: 'file', path: 'in_power_raw', scale: 2 }, [], { cwd: dir });
  assert.equal(await plain.read(0), { p: -1000 });
});

file('bad content is BAD_FILE, a missing file IO, a foreign signal a TypeError', async () => {
  const f = tmp('hwmon', 'N/A\n');
  const meter = await createMeter({ kind: 'file', path: f, scale: 1 }, ['p']);
  const bad = await rejection(meter.read(0), 'garbage');
  assert.is(bad.code, 'BAD_FILE');
  assert.match(bad.message, f);
  fs.rmSync(f);
  const gone = await rejection(meter.read(0), 'missing');
  assert.is(gone.code, 'IO');
  // A value file is a page at most: one past it (or /dev/zero) fails the reading instead of filling the memory.
  fs.writeFileSync(f, `42${' '.repeat(4094)}`);
  assert.equal(await meter.read(0), { p: 42 });
  fs.appendFileSync(f, ' ');
  const big = await rejection(meter.read(0), 'a file past 4 KiB');
  assert.equal([big.code, big.message], ['BAD_FILE', `file ${f}: more than 4096 bytes, not a value file`]);
  if (fs.existsSync('/dev/zero')) {
    const zero = await createMeter({ kind: 'file', path: '/dev/zero', scale: 1 }, ['p']);
    assert.is((await rejection(zero.read(0), '/dev/zero')).code, 'BAD_FILE');
  }
  await createMeter({ kind: 'file', path: f, scale: 1 }, ['q']).then(
    () => assert.unreachable('accepted'),
    (err: unknown) => assert.instance(err, TypeError),
  );
});

file(
  'a FIFO is BAD_FILE at once: opened without O_NONBLOCK, it held the read (and a thread of libuv) for ever',
  async () => {
    const fifo = path.join(dir, 'fifo');
    try {
      execFileSync('mkfifo', [fifo]);
    } catch {
      return console.log('  (skipped: no mkfifo)');
    }
    const meter = await createMeter({ kind: 'file', path: fifo, scale: 1 }, ['p']);
    const e = await rejection(meter.read(0), 'a FIFO');
    assert.equal([e.code, e.message], ['BAD_FILE', `file ${fifo}: a FIFO, not a value file`]);
  },
);

file.run();

// -----------------------------------------------------------------------------------------------------------------

const act = suite('actuators');
act.before(setup);
act.after(teardown);

const activate = (id: string, device: string, quantity: number) =>
  ({ action: 'activate', id, device, quantity, from: Date.UTC(2024, 5, 1, 10), to: Date.UTC(2024, 5, 1, 11) }) as const;

act('simulated: records the commands and the activation in force per device', async () => {
  const a = await createActuator({ kind: 'simulated' });
  await a.apply(activate('a1', 'boiler', 2));
  await a.apply(activate('a2', 'heatpump', -1));
  assert.equal(a.state.get('boiler'), {
    id: 'a1',
    quantity: 2,
    from: Date.UTC(2024, 5, 1, 10),
    to: Date.UTC(2024, 5, 1, 11),
  });
  await a.apply({ action: 'end', id: 'old', device: 'boiler' });
  assert.ok(a.state.has('boiler'), 'the end of another activation leaves this one');
  await a.apply({ action: 'end', id: 'a1', device: 'boiler' });
  assert.equal([...a.state.keys()], ['heatpump']);
  assert.equal(
    a.commands.map((c) => `${c.action}:${c.id}`),
    ['activate:a1', 'activate:a2', 'end:old', 'end:a1'],
  );
  await a.close();
  await a.apply(activate('a3', 'boiler', 1)).then(
    () => assert.unreachable('applied after close'),
    () => {},
  );
});

act('command: each command is one JSON line on stdin; a failing exit is EXIT; a missing one NOT_FOUND', async () => {
  const sink = tmp('sink.jsonl');
  const a = await createActuator({ kind: 'command', command: [node, script(), 'sink', sink], timeoutMs: 3000 });
  await within(4000, a.apply(activate('a1', 'boiler', 1.5)), 'activate');
  await within(4000, a.apply({ action: 'end', id: 'a1', device: 'boiler' }), 'end');
  assert.is(
    fs.readFileSync(sink, 'utf8'),
    '{"action":"activate","id":"a1","device":"boiler","quantity":1.5,"from":"2024-06-01T10:00:00.000Z","to":"2024-06-01T11:00:00.000Z"}\n' +
      '{"action":"end","id":"a1","device":"boiler"}\n',
  );
  await a.close();
  const failing = await createActuator({
    kind: 'command',
    command: [node, script(), 'sink', sink, '3'],
    timeoutMs: 3000,
  });
  const err = await rejection(failing.apply(activate('a2', 'boiler', 1)), 'exit 3');
  assert.is(err.code, 'EXIT');
  assert.match(err.message, 'exited with code 3');
  const missing = await createActuator({ kind: 'command', command: [path.join(dir, 'relay')], timeoutMs: 1000 });
  assert.is((await rejection(missing.apply(activate('a3', 'boiler', 1)), 'missing')).code, 'NOT_FOUND');
});

act(
  'file: on for a positive quantity, off for zero or negative and at the end; a superseded end writes nothing',
  async () => {
    const value = tmp('gpio17-value', '0');
    const a = await createActuator({ kind: 'file', path: value, on: '1', off: '0' });
    const read = (): string => fs.readFileSync(value, 'utf8');
    await a.apply(activate('a1', 'boiler', 2));
    assert.is(read(), '1');
    await a.apply({ action: 'end', id: 'a1', device: 'boiler' });
    assert.is(read(), '0');
    await a.apply(activate('a2', 'boiler', 0));
    assert.is(read(), '0');
    await a.apply(activate('a3', 'boiler', 1));
    assert.is(read(), '1');
    await a.apply({ action: 'end', id: 'a2', device: 'boiler' });
    assert.is(read(), '1', 'the end of a2 must not switch off a3');
    await a.close();
    const broken = await createActuator({ kind: 'file', path: path.join(dir, 'no-dir', 'value'), on: '1', off: '0' });
    const err = await rejection(broken.apply(activate('a4', 'boiler', 1)), 'no dir');
    assert.is(err.code, 'IO');
    assert.match(err.message, 'no-dir');
  },
);

act.run();
