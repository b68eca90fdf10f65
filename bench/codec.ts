/**
 * The eBADGE codec against bare JSON, in the same process: encode with validation (into a new Buffer, and in place
 * into a frame buffer) against JSON.stringify + Buffer.from, and decode with validation (from a slice of a larger
 * buffer, as a frame body arrives) against JSON.parse(buf.toString()) without validation. Interleaved samples,
 * medians, ratios; each contender's output is checked before timing. Also the codec's minified size.
 *
 *   npx tsc -p tsconfig.json && node .out/bench/codec.js      (writes the "Codec" section of bench/RESULTS.md)
 *
 * Env: CODEC_BENCH_MS (one sample's duration, default 200), CODEC_BENCH_SAMPLES (default 7), CODEC_BENCH_RESULTS
 * (Markdown file to update, default bench/RESULTS.md; "-" writes none), CODEC_BENCH_CLOCK (`cpu`, the default: this
 * process's CPU time, which other work on a shared machine disturbs far less than wall time; or `wall`), and
 * CODEC_BENCH_BEFORE: the folder of another compiled build (`git worktree` + tsc, or a copy of .out made before a
 * change), whose decode is then timed in the same rounds as ours, one more row per message.
 */
import { loadavg } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { decode, EbTime, encode, encodeInto, type Message } from '../src/codec/index.js';
import { bundleSize } from './bundle-size.js';
import { replaceSection, resultsPath } from './results-file.js';
import { fmt, median } from './stats.js';

const SAMPLE_MS = Number(process.env['CODEC_BENCH_MS'] ?? 200);
const SAMPLES = Number(process.env['CODEC_BENCH_SAMPLES'] ?? 7);
const CLOCK = process.env['CODEC_BENCH_CLOCK'] === 'wall' ? 'wall' : 'cpu';
const BEFORE = process.env['CODEC_BENCH_BEFORE'];
const t = (s: string): EbTime => EbTime.parse(s);

const samples: Record<string, Message> = {
  'report 6x3': {
    msg: 'report',
    from: t('2015-06-01T10:00:00Z'),
    to: t('2015-06-01T10:45:00Z'),
    resolution: 900,
    values: {
      'dev1.power': [1.5, 2.25, null],
      'dev1.energy': [0.1, 0.2, 0.3],
      'dev2.power': [3, 4, 5],
      'dev2.energy': [1, 2, 3],
      'meter.power': [10.5, 11.25, 12],
      'meter.energy': [100.125, 100.25, 100.5],
    },
    request_id: '6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f',
  },
  activate: {
    msg: 'activate',
    id: '938f2b97-314c-49e8-9860-f441df2284a1',
    modification_count: 0,
    from: t('2013-07-24T11:10:20Z'),
    to: t('2013-07-24T11:14:55Z'),
    quantity: 3.4,
    device: 'ECAR01',
    heh_id: 'heh-b827ebea02c1',
  },
  get_report: {
    msg: 'get_report',
    from: t('2013-07-21T10:00:00Z'),
    to: t('2013-07-21T10:05:00Z'),
    resolution: 60,
    signals: ['total.ua', 'total.ub', 'total.uc', 'WaterHeater01.p'],
    heh_id: 'heh-b827ebea02c1',
  },
  response: {
    msg: 'response',
    msg_id: '938f2b97-314c-49e8-9860-f441df2284a1',
    response_code: 200,
    response_subcode: 0,
    response_desc: 'OK',
  },
  // Two large bodies: numbers in a few arrays (the bound check's native gate), and many objects (its full scan).
  'report 6x2000': {
    msg: 'report',
    from: t('2015-06-01T10:00:00Z'),
    to: t('2015-06-01T10:33:20Z'),
    resolution: 1,
    values: Object.fromEntries(
      ['dev1.power', 'dev1.energy', 'dev2.power', 'dev2.energy', 'meter.power', 'meter.energy'].map((s, k) => [
        s,
        Array.from({ length: 2000 }, (_, i) => Math.round(Math.sin(i + k) * 100_000) / 1000),
      ]),
    ),
    request_id: '6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f',
  },
  'energy_events 500': {
    msg: 'energy_events',
    events: Array.from({ length: 500 }, (_, i) => ({
      severity: i % 3,
      type: i % 2 === 0 ? 'voltage_low' : 'frequency_high',
      start_time: t(
        `2015-06-01T${String(Math.floor(i / 60) % 24).padStart(2, '0')}:${String(i % 60).padStart(2, '0')}:00Z`,
      ),
      end_time: null,
    })),
    request_id: '6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f',
  },
};

/** Milliseconds of CLOCK. */
const clockMs: () => number =
  CLOCK === 'wall'
    ? () => performance.now()
    : () => {
        const u = process.cpuUsage();
        return (u.user + u.system) / 1000;
      };

/** Results land here so the optimizing compiler cannot drop a call as dead code. */
const sink: unknown[] = [null];

/** ops/s of `fn`, one sample of about SAMPLE_MS of CLOCK. */
function sample(fn: () => unknown): number {
  let n = 0;
  const start = clockMs();
  let elapsed = 0;
  while (elapsed < SAMPLE_MS) {
    for (let i = 0; i < 200; i++) sink[0] = fn();
    n += 200;
    elapsed = clockMs() - start;
  }
  return (n * 1000) / elapsed;
}

interface Row {
  message: string;
  op: string;
  ours: number;
  baseline: number;
  /** The median of the per-round ratios ours / baseline (each round times every contender, moments apart). */
  ratio: number;
  bytes: number;
}

async function main(): Promise<void> {
  const before =
    BEFORE === undefined
      ? undefined
      : ((await import(pathToFileURL(path.resolve(BEFORE, 'src/codec/index.js')).href)) as {
          decode: typeof decode;
          encode: typeof encode;
        });
  const rows: Row[] = [];
  const frame = Buffer.alloc(256 * 1024);
  for (const [label, m] of Object.entries(samples)) {
    const plain = JSON.parse(encode(m).toString()) as unknown; // the same message as plain JSON, for the baseline
    const ours = encode(m);
    // Validate before timing: the baseline emits the same bytes; both decoders agree.
    if (!Buffer.from(JSON.stringify(plain)).equals(ours)) throw new Error(`${label}: encodings differ`);
    const end = encodeInto(m, frame, 7);
    const body = frame.subarray(7, end);
    if (JSON.stringify(JSON.parse(body.toString())) !== JSON.stringify(plain))
      throw new Error(`${label}: decodings differ`);
    if (encode(decode(body).message).compare(ours) !== 0) throw new Error(`${label}: round trip differs`);
    // (its messages hold its own EbTime class: its own encode checks them)
    if (before !== undefined && before.encode(before.decode(body).message).compare(ours) !== 0)
      throw new Error(`${label}: the other build decodes otherwise`);

    const contenders: [string, () => unknown][] = [
      ['encode (new Buffer)', () => encode(m)],
      ['encode in place', () => encodeInto(m, frame, 7)],
      ['baseline encode', () => Buffer.from(JSON.stringify(plain))],
      ['decode', () => decode(body)],
      ['baseline decode', () => JSON.parse(body.toString())],
    ];
    if (before !== undefined) contenders.push(['other build decode', () => before.decode(body)]);
    for (const [, fn] of contenders) sample(fn); // warm-up
    const results = new Map<string, number[]>(contenders.map(([n]) => [n, []]));
    for (let s = 0; s < SAMPLES; s++) for (const [n, fn] of contenders) results.get(n)?.push(sample(fn));
    const row = (op: string, a: string, b: string): Row => {
      const xs = results.get(a) ?? [];
      const ys = results.get(b) ?? [];
      return {
        message: label,
        op,
        ours: median(xs),
        baseline: median(ys),
        ratio: median(xs.map((x, i) => x / (ys[i] as number))),
        bytes: ours.length,
      };
    };
    rows.push(row('encode + validate, new Buffer', 'encode (new Buffer)', 'baseline encode'));
    rows.push(row('encode + validate, in place', 'encode in place', 'baseline encode'));
    rows.push(row('decode + validate', 'decode', 'baseline decode'));
    if (before !== undefined)
      rows.push(row('decode + validate, against the other build', 'decode', 'other build decode'));
  }
  const size = await bundleSize({ entry: fileURLToPath(new URL('../../src/codec/index.ts', import.meta.url)) });
  const lines = [
    '## Codec (bench/codec.ts)',
    '',
    `Command: \`${BEFORE === undefined ? '' : `CODEC_BENCH_BEFORE=${BEFORE} `}node .out/bench/codec.js\`, ${new Date().toISOString()}, Node ${process.version}; ${SAMPLES} interleaved samples of ${SAMPLE_MS} ms of ${CLOCK === 'cpu' ? 'process CPU time (ops per CPU-second)' : 'wall time'}, medians;`,
    `the ratio is the median of the per-round ratios. Load average at the end: ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}.`,
    'Baselines: `Buffer.from(JSON.stringify(m))` and `JSON.parse(buf.toString())`, without validation. Ours validates every field, the',
    'time zones and the cross-field rules; "in place" writes into a frame buffer at offset 7, as the bus does.',
    ...(BEFORE === undefined
      ? []
      : [
          '"against the other build": our decode timed in the same rounds as the decode of the build in CODEC_BENCH_BEFORE.',
        ]),
    '',
    '| message | bytes | operation | ours ops/s | baseline ops/s | ours / baseline |',
    '| :-- | --: | :-- | --: | --: | --: |',
    ...rows.map(
      (r) =>
        `| ${r.message} | ${r.bytes} | ${r.op} | ${fmt(r.ours, 0)} | ${fmt(r.baseline, 0)} | ${r.ratio.toFixed(2)}x |`,
    ),
    '',
    `Codec size (esbuild, node18, minified): ${(size.bytes / 1024).toFixed(1)} KB, ${(size.gzipBytes / 1024).toFixed(1)} KB gzipped.`,
    '',
  ];
  const section = lines.join('\n');
  console.log(section);
  replaceSection('## Codec (bench/codec.ts)', section, resultsPath('CODEC_BENCH_RESULTS'));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
