/**
 * Sealing and opening a 256-byte `report` with HEH-E2E v1, per backend (node:crypto, noble) and per mode (PAIR,
 * GROUP, SIGNED): operations per second, CPU microseconds per operation, and the ratio native / noble, in one run.
 * Opening includes every check (AEAD, signature, rights, freshness) except the replay state, which is the disk's
 * business; the same envelope is opened again and again after `release()`. Also the bundle size per backend.
 *
 *   npx tsc -p tsconfig.json && node .out/bench/crypto.js                      (x86; writes bench/RESULTS.md)
 *   ARM_ARCH=armel CRYPTO_BENCH_MS=300 ../shared/tools/arm-node .out/bench/crypto.js   (emulated ARMv6)
 *
 * Env: CRYPTO_BENCH_MS (200), CRYPTO_BENCH_SAMPLES (7), CRYPTO_BENCH_WARMUP_MS (1000), CRYPTO_BENCH_RESULTS (Markdown
 * file to update, default bench/RESULTS.md; "-" writes none). Each platform has its own subsection of the "Crypto"
 * section; a run replaces its own.
 */
import { arch } from 'node:os';
import { fileURLToPath } from 'node:url';
import { EbTime, encode } from '../src/codec/index.js';
import {
  type CryptoBackend,
  type Destination,
  generateIdentity,
  Keyring,
  type Mode,
  nobleBackend,
  nodeBackend,
  OVERHEAD,
  Sealer,
  selectBackend,
} from '../src/crypto/index.js';
import { bundleSize } from './bundle-size.js';
import { replaceSubsection, resultsPath } from './results-file.js';
import { fmt, median } from './stats.js';

const SAMPLE_MS = Number(process.env['CRYPTO_BENCH_MS'] ?? 200);
const SAMPLES = Number(process.env['CRYPTO_BENCH_SAMPLES'] ?? 7);
/** Long enough for V8 to optimize the envelope code even under emulation, where a seal takes milliseconds. */
const WARMUP_MS = Number(process.env['CRYPTO_BENCH_WARMUP_MS'] ?? 1000);
const RESULTS = resultsPath('CRYPTO_BENCH_RESULTS');
const SECTION = '## Crypto (bench/crypto.ts)';
const INTRO = 'HEH-E2E v1 (docs/crypto.md §6), src/crypto. One subsection per platform; each run replaces its own.';

/** A report of about 256 bytes, as a hub sends every few minutes. */
function reportPayload(): Buffer {
  const t = (s: string): EbTime => EbTime.parse(s);
  return encode({
    msg: 'report',
    from: t('2026-11-26T10:00:00Z'),
    to: t('2026-11-26T10:45:00Z'),
    resolution: 900,
    values: { 'meter.power': [1.25, 2.5, 3.75], 'meter.energy': [100.125, 100.25, 100.5], 'boiler.power': [2, 0, 2] },
    request_id: '6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f',
  });
}

function pair(backend: CryptoBackend): { sender: Sealer; receiver: Sealer } {
  const now = Date.now();
  const a = generateIdentity('hub-1', backend, now - 60_000);
  const b = generateIdentity('vpp-1', backend, now - 60_000);
  const group = {
    'reports.all': [
      { key: Buffer.alloc(32, 3).toString('base64url'), notBefore: new Date(now - 60_000).toISOString() },
    ],
  };
  const entry = (e: typeof a.publicEntry, maySend: string[], mayReceive: string[]): Record<string, unknown> => ({
    ed25519: e.ed25519,
    x25519: e.x25519.map(({ pub, notBefore }) => ({ pub, notBefore })),
    maySend,
    mayReceive,
    topics: ['reports.all'],
  });
  let seq = 0n;
  const sequence = { take: async (): Promise<bigint> => ++seq };
  const replay = {
    check: (): 'new' => 'new',
    accept: (): void => undefined,
    persist: async (): Promise<void> => undefined,
  };
  const sender = new Sealer({
    backend,
    sequence,
    replay,
    keyring: new Keyring(backend, {
      keyring: { format: 'heh-keyring/1', peers: { 'vpp-1': entry(b.publicEntry, [], ['report']) } },
      privateKey: { ...a.privateKey, groups: group },
    }),
  });
  const receiver = new Sealer({
    backend,
    sequence,
    replay,
    keyring: new Keyring(backend, {
      keyring: { format: 'heh-keyring/1', peers: { 'hub-1': entry(a.publicEntry, ['report'], []) } },
      privateKey: { ...b.privateKey, groups: group },
    }),
  });
  return { sender, receiver };
}

interface Sample {
  ops: number;
  cpuUs: number;
}

async function sample(fn: () => unknown, ms = SAMPLE_MS): Promise<Sample> {
  let n = 0;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const budget = BigInt(ms) * 1_000_000n;
  while (process.hrtime.bigint() - t0 < budget) {
    const r = fn();
    if (r instanceof Promise) await r;
    n++;
  }
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  return { ops: n / wall, cpuUs: (cpu.user + cpu.system) / n };
}

async function bundleSizes(): Promise<string> {
  try {
    const resolveDir = fileURLToPath(new URL('../../src/crypto/', import.meta.url));
    const size = async (contents: string): Promise<string> => {
      const { bytes, gzipBytes } = await bundleSize({ contents, resolveDir });
      return `${(bytes / 1024).toFixed(1)} KB (${(gzipBytes / 1024).toFixed(1)} KB gzipped)`;
    };
    const common = "export { Sealer } from './envelope.ts'; export { Keyring } from './keyring.ts';";
    return [
      `Bundle (esbuild, node18, minified): envelope + keyring + node:crypto backend ${await size(`${common} export { nodeBackend } from './node-backend.ts';`)};`,
      `+ noble backend ${await size(`${common} export { nodeBackend } from './node-backend.ts'; export { nobleBackend } from './noble-backend.ts';`)};`,
      `all of src/crypto ${await size("export * from './index.ts';")}. The keyring's point checks use @noble/ed25519 with either backend.`,
    ].join(' ');
  } catch (err) {
    return `Bundle sizes: not measured on this platform (esbuild: ${String((err as Error).message || err).split('\n')[0]}).`;
  }
}

async function main(): Promise<void> {
  const payload = reportPayload();
  const backends: CryptoBackend[] =
    selectBackend('auto') === nodeBackend ? [nodeBackend, nobleBackend] : [nobleBackend];
  const modes: [Mode, Destination][] = [
    ['pair', { peer: 'vpp-1' }],
    ['group', { group: 'reports.all' }],
    ['signed', { topic: 'reports.all' }],
  ];
  const contenders: {
    backend: string;
    mode: Mode;
    op: 'seal' | 'open';
    fn: () => unknown;
    ops: number[];
    cpu: number[];
  }[] = [];
  for (const backend of backends) {
    const { sender, receiver } = pair(backend);
    for (const [mode, to] of modes) {
      const env = await sender.seal(to, 'report', payload);
      if (env.length !== payload.length + OVERHEAD[mode])
        throw new Error(`${mode}: overhead ${env.length - payload.length}`);
      const opened = receiver.open(env);
      if (!Buffer.from(opened.payload).equals(payload)) throw new Error(`${backend.name} ${mode}: the payload differs`);
      opened.release();
      contenders.push({
        backend: backend.name,
        mode,
        op: 'seal',
        fn: () => sender.seal(to, 'report', payload),
        ops: [],
        cpu: [],
      });
      contenders.push({
        backend: backend.name,
        mode,
        op: 'open',
        fn: () => receiver.open(env).release(),
        ops: [],
        cpu: [],
      });
    }
  }
  for (const c of contenders) await sample(c.fn, WARMUP_MS); // warm-up (noble builds its precomputed tables here)
  for (let s = 0; s < SAMPLES; s++) {
    for (const c of contenders) {
      const r = await sample(c.fn);
      c.ops.push(r.ops);
      c.cpu.push(r.cpuUs);
    }
  }
  const find = (b: string, m: Mode, op: string): (typeof contenders)[number] | undefined =>
    contenders.find((c) => c.backend === b && c.mode === m && c.op === op);
  const platform = `Node ${process.version} (${process.platform}/${arch()}${process.env['ARM_ARCH'] !== undefined ? `, qemu ${process.env['ARM_ARCH']}` : ''})`;
  const rows = contenders.map((c) => {
    const noble = find('noble', c.mode, c.op);
    const ratio =
      c.backend === 'node' && noble !== undefined ? `${(median(c.ops) / median(noble.ops)).toFixed(1)}x` : '';
    return `| ${c.backend} | ${c.mode} | ${c.op} | ${fmt(median(c.ops), 0)} | ${median(c.cpu).toFixed(0)} | ${ratio} |`;
  });
  const sealPair = find(backends[0]?.name ?? 'node', 'pair', 'seal');
  const openPair = find(backends[0]?.name ?? 'node', 'pair', 'open');
  const lines = [
    `### ${platform}`,
    '',
    `Command: \`${process.env['ARM_ARCH'] !== undefined ? `ARM_ARCH=${process.env['ARM_ARCH']} CRYPTO_BENCH_MS=${SAMPLE_MS} ../shared/tools/arm-node` : 'node'} .out/bench/crypto.js\`, ${new Date().toISOString()};`,
    `${SAMPLES} interleaved samples of ${SAMPLE_MS} ms per cell after a warm-up of ${WARMUP_MS} ms each; medians. Payload: a ${payload.length}-byte \`report\`; overhead ${OVERHEAD.pair} B (PAIR, GROUP), ${OVERHEAD.signed} B (SIGNED).`,
    '',
    '| backend | mode | operation | ops/s | CPU µs/op | native / noble |',
    '| :-- | :-- | :-- | --: | --: | --: |',
    ...rows,
    '',
    sealPair !== undefined && openPair !== undefined
      ? `With the ${sealPair.backend} backend: sealing 10 messages a second costs ${((median(sealPair.cpu) * 10) / 1e4).toFixed(2)}% of one core; one core opens ${fmt(median(openPair.ops), 0)} PAIR envelopes a second.`
      : '',
    '',
    await bundleSizes(),
    '',
  ];
  const sub = lines.join('\n');
  console.log(sub);
  replaceSubsection(SECTION, sub, RESULTS, { intro: INTRO });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
