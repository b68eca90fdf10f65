/**
 * A hub's report from its encoder to the socket, before and after zero-copy (issue 13, item 5), in one process
 * against the RabbitMQ on 127.0.0.1: the code of BENCH_BASELINE_REF (default 29f15af, the commit before it) built
 * into a temporary folder, and this tree, side by side (test/helpers/outbound.ts drives both). For each report size,
 * sealing (clear, node:crypto, noble) and path (the hub's: into the outbox, published from it, acked; direct:
 * Connector.publish), each tree publishes N reports one at a time, each until the broker's confirm, in alternating
 * rounds (ABBA). CPU µs per report is the whole process's user + system CPU over a round divided by N (the broker's
 * confirms, timers and GC included), the median of the rounds. The copies of the body per report are counted once per
 * cell by test/helpers/copy-counter.ts, as test/integration/outbound-copies.test.ts counts them.
 *
 *   npx tsc -p tsconfig.json && node .out/bench/outbound.js          (BENCH_QUICK=1: a smoke run, ~1 min)
 *
 * Writes the "Outbound path" section of bench/RESULTS.md (OUTBOUND_BENCH_RESULTS: another file, or "-" for none).
 * BENCH_BASELINE_DIR: a compiled src/ folder to use as the baseline instead of building one.
 * OUTBOUND_VECTORS=<file>: instead, records the baseline's bytes on the wire for the outbound test (with the fixed
 * keys, nonce, sequence number, clock and message id of the harness) and exits.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CopyCounter, type CopyEvent } from '../test/helpers/copy-counter.js';
import {
  bodyOf,
  canonical,
  fixedSealer,
  type Lib,
  loadLib,
  OutboundRig,
  publishFrames,
  report,
  type Sealing,
  suffix,
  withFixedRandomBytes,
} from '../test/helpers/outbound.js';
import { type LocalCell, localCells, localTable } from './outbound-local.js';
import { replaceSection, resultsPath } from './results-file.js';
import { fmt, median, ratio } from './stats.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const QUICK = process.env['BENCH_QUICK'] === '1';
const REF = process.env['BENCH_BASELINE_REF'] ?? '29f15af';
const ROUNDS = QUICK ? 2 : 8;
const SIZES = [
  { name: '4 x 1 (bench/hub.ts)', signals: 4, values: 1 },
  { name: '4 x 40', signals: 4, values: 40 },
  { name: '4 x 900', signals: 4, values: 900 },
  { name: '4 x 3,600', signals: 4, values: 3600 },
];
const SEALINGS: Sealing[] = ['clear', 'node', 'noble'];
const PATHS = ['viaOutbox', 'direct'] as const;
type Path = (typeof PATHS)[number];
const PATH_NAME: Record<Path, string> = { viaOutbox: "hub's (outbox)", direct: 'direct (publish)' };
const SEALING_NAME: Record<Sealing, string> = { clear: 'clear', node: 'sealed, node:crypto', noble: 'sealed, noble' };

/** Reports per round: noble signs in pure JS (~0.3 ms each here), big bodies take longer to confirm. */
function perRound(sealing: Sealing, values: number): number {
  const n = sealing === 'noble' ? 150 : values >= 900 ? 300 : 600;
  return QUICK ? Math.ceil(n / 6) : n;
}

function git(args: string[]): string {
  const r = spawnSync('git', args, { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

/** The baseline's src/ compiled into a temporary folder (removed at the end). */
function buildBaseline(ref: string): { src: string; dir: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'outbound-baseline-'));
  const tar = spawnSync('git', ['archive', ref, 'src', 'tsconfig.json', 'package.json'], {
    cwd: root,
    maxBuffer: 1 << 28,
  });
  if (tar.status !== 0) throw new Error(`git archive ${ref}: ${tar.stderr.toString()}`);
  const x = spawnSync('tar', ['-x', '-C', dir], { input: tar.stdout });
  if (x.status !== 0) throw new Error(`tar: ${x.stderr.toString()}`);
  symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'));
  const tsc = spawnSync(
    process.execPath,
    [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', path.join(dir, 'tsconfig.json'), '--outDir', 'out'],
    { cwd: dir, encoding: 'utf8' },
  );
  if (tsc.status !== 0) throw new Error(`building ${ref}: ${tsc.stdout}${tsc.stderr}`);
  return { src: path.join(dir, 'out/src'), dir };
}

interface Tree {
  name: 'before' | 'after';
  lib: Lib;
}

/** Fixed random bytes only for the tree whose Sealer has no `random` option. */
const run = <T>(tree: Tree, fn: () => Promise<T>): Promise<T> =>
  tree.name === 'before' ? withFixedRandomBytes(fn) : fn();

async function vectors(baseline: Tree, file: string): Promise<void> {
  const cases: Record<string, string> = {};
  for (const sealing of SEALINGS) {
    const sfx = suffix();
    await run(baseline, async () => {
      const rig = await OutboundRig.open(baseline.lib, { sealing, suffix: sfx });
      try {
        for (const p of PATHS) {
          const c = new CopyCounter();
          c.start();
          try {
            await rig[p](report(baseline.lib));
          } finally {
            c.stop();
          }
          const frames = publishFrames(Buffer.concat(c.socketWrites), 'report');
          if (frames === undefined) throw new Error(`${sealing} ${p}: no publish seen`);
          cases[`${sealing} ${p}`] = canonical(frames, sfx).toString('hex');
        }
      } finally {
        await rig.close();
      }
    });
  }
  const commit = git(['rev-parse', REF]);
  writeFileSync(
    file,
    `${JSON.stringify(
      {
        what: 'basic.publish method, header and body frames of test/helpers/outbound.ts report(), entity names blanked',
        recordedWith: `bench/outbound.ts OUTBOUND_VECTORS, code of commit ${commit}`,
        cases,
      },
      null,
      2,
    )}\n`,
  );
  console.log(`wrote ${Object.keys(cases).length} cases to ${file}`);
}

interface Copies {
  /** Ours, on the way to the socket. */
  socket: number;
  /** Made by the outbox: after zero-copy only the one joining a record with tombstones or a header in one write. */
  disk: number;
  /** Inside @noble's functions. */
  noble: number;
  /** node:crypto's Cipher#update output (an encryption, not a copy). */
  cipher: number;
}

function classify(events: CopyEvent[]): Copies {
  const c: Copies = { socket: 0, disk: 0, noble: 0, cipher: 0 };
  for (const e of events) {
    if (e.op === 'cipher') c.cipher++;
    else if (e.site.includes('node_modules/@noble/')) c.noble++;
    else if (/src\/device\/outbox[.-]/.test(e.site)) c.disk++;
    else c.socket++;
  }
  return c;
}

async function countCopies(tree: Tree, rig: OutboundRig, sealing: Sealing, p: Path, m: ReturnType<typeof report>) {
  const c = new CopyCounter();
  c.start();
  try {
    await run(tree, () => rig[p](m));
  } finally {
    c.stop();
  }
  const body = bodyOf(publishFrames(Buffer.concat(c.socketWrites), 'report') as Buffer);
  const payload =
    sealing === 'clear'
      ? body
      : Buffer.from(
          fixedSealer(
            tree.lib,
            sealing === 'noble' ? tree.lib.crypto.nobleBackend : tree.lib.crypto.nodeBackend,
            rig.names.hub,
            'vpp',
          ).open(body).payload,
        );
  return { copies: classify(c.bodyCopies(payload, body)), bytes: payload.length };
}

async function round(rig: OutboundRig, p: Path, m: ReturnType<typeof report>, n: number) {
  const ids = Array.from({ length: n }, (_, i) => `0b5d1f57-6c1e-4a39-9a5e-${String(i).padStart(12, '0')}`);
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (const id of ids) await rig[p](m, id);
  const wall = Number(process.hrtime.bigint() - t0) / 1000 / n;
  const cpu = process.cpuUsage(cpu0);
  await rig.purge();
  return { cpuUs: (cpu.user + cpu.system) / n, wallUs: wall };
}

interface Cell {
  size: string;
  bytes: number;
  sealing: Sealing;
  path: Path;
  copies: Record<Tree['name'], Copies>;
  cpu: Record<Tree['name'], number[]>;
  wall: Record<Tree['name'], number[]>;
}

const show = (c: Copies): string =>
  `${c.socket + c.disk}${c.disk > 0 ? ` (${c.disk} in the outbox)` : ''}${c.cipher > 0 ? ` + ${c.cipher} cipher` : ''}${c.noble > 0 ? ` + ${c.noble} in noble` : ''}`;

async function main(): Promise<void> {
  const load0 = loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
  const commit0 = git(['rev-parse', '--short', 'HEAD']);
  const dirty = git(['status', '--porcelain', '--', 'src']) !== '';
  const given = process.env['BENCH_BASELINE_DIR'];
  const built = given === undefined ? buildBaseline(REF) : undefined;
  const baseline: Tree = { name: 'before', lib: await loadLib(given ?? built?.src) };
  const current: Tree = { name: 'after', lib: await loadLib() };
  try {
    const vectorsFile = process.env['OUTBOUND_VECTORS'];
    if (vectorsFile !== undefined) return await vectors(baseline, vectorsFile);
    const cells: Cell[] = [];
    for (const sealing of SEALINGS) {
      const rigs = new Map<Tree, OutboundRig>();
      for (const tree of [baseline, current])
        rigs.set(tree, await run(tree, () => OutboundRig.open(tree.lib, { sealing, suffix: suffix() })));
      try {
        for (const size of SIZES) {
          for (const p of PATHS) {
            const n = perRound(sealing, size.values);
            const cell = {
              size: size.name,
              sealing,
              path: p,
              cpu: { before: [], after: [] },
              wall: { before: [], after: [] },
            };
            const copies = {} as Cell['copies'];
            let bytes = 0;
            for (const tree of [baseline, current]) {
              const rig = rigs.get(tree) as OutboundRig;
              const m = report(tree.lib, size.signals, size.values);
              await run(tree, () => round(rig, p, m, Math.ceil(n / 4))); // warm-up
              const counted = await countCopies(tree, rig, sealing, p, m);
              copies[tree.name] = counted.copies;
              bytes = counted.bytes;
            }
            for (let r = 0; r < ROUNDS; r++) {
              const order = r % 2 === 0 ? [baseline, current] : [current, baseline];
              for (const tree of order) {
                const rig = rigs.get(tree) as OutboundRig;
                const m = report(tree.lib, size.signals, size.values);
                const x = await run(tree, () => round(rig, p, m, n));
                (cell.cpu as Cell['cpu'])[tree.name].push(x.cpuUs);
                (cell.wall as Cell['wall'])[tree.name].push(x.wallUs);
              }
            }
            const done: Cell = { ...cell, bytes, copies } as Cell;
            cells.push(done);
            console.log(
              `${SEALING_NAME[sealing]}, ${size.name} (${bytes} B), ${PATH_NAME[p]}: copies ${show(copies.before)} -> ${show(copies.after)}; CPU µs/report ${fmt(median(done.cpu.before))} -> ${fmt(median(done.cpu.after))}`,
            );
          }
        }
      } finally {
        for (const rig of rigs.values()) await rig.close();
      }
    }
    const local = await localCells([baseline, current], SIZES, SEALINGS, ROUNDS, QUICK ? 50 : 200, run);
    write(cells, local, { load0, commit0, dirty });
  } finally {
    if (built !== undefined) rmSync(built.dir, { recursive: true, force: true });
  }
}

function write(cells: Cell[], local: LocalCell[], at: { load0: string; commit0: string; dirty: boolean }): void {
  const commit1 = git(['rev-parse', '--short', 'HEAD']);
  const lines = [
    '## Outbound path: copies and CPU per report (bench/outbound.ts)',
    '',
    `Command: \`npx tsc -p tsconfig.json && node .out/bench/outbound.js\`${QUICK ? ' (BENCH_QUICK=1)' : ''}, ${new Date().toISOString()}, Node ${process.version} (${process.platform}/${process.arch}), RabbitMQ on 127.0.0.1;`,
    `before: the code of ${git(['rev-parse', '--short', REF])} (built into a temporary folder), after: ${at.commit0}${at.dirty ? ' with uncommitted changes in src/' : ''}${commit1 === at.commit0 ? '' : ` (HEAD moved to ${commit1} during the run)`}, in one process.`,
    `Load average before ${at.load0}, after ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}.`,
    '',
    "A report of signals x values (`report()` in test/helpers/outbound.ts) goes the hub's way (src/device/hub.ts: into the",
    'outbox, published from its record, acked on the confirm) or directly (Connector.publish, as replies go), one at a time,',
    `each until the broker's confirm; ${ROUNDS} alternating rounds per tree (N reports each: ${QUICK ? 'a quick run' : '600, 300 for 25 KiB and more, 150 with noble'}), medians. CPU is the`,
    "whole process's user + system time per report (the broker's confirms, timers and GC included), and in brackets the",
    "lowest and highest after / before of one round's pair (both trees measured back to back): the noise; wall is the round",
    "trip. Copies: those of the body's bytes from its encoder to the socket (test/helpers/copy-counter.ts), of 128 B",
    'or more; "in the outbox": made by src/device/outbox.ts (before: into the record, a copy kept to send, and the',
    'join of records, tombstones and header into the SD card\'s one write; after: that join only); "cipher":',
    'node:crypto\'s update writing the ciphertext into a buffer of its own; "in noble": inside @noble/ed25519 and',
    '@noble/ciphers. docs/bus.md, "Copies of a body", says which copies remain and why.',
    '',
    '| report | sealing | path | copies before | copies after | CPU µs before | CPU µs after | after / before (per round) | wall µs before | wall µs after |',
    '| :-- | :-- | :-- | :-- | :-- | --: | --: | --: | --: | --: |',
    ...cells.map((c) => {
      const [b, a] = [median(c.cpu.before), median(c.cpu.after)];
      // Each round's after / before, the two trees measured back to back: their spread is the noise.
      const paired = c.cpu.after.map((x, i) => x / (c.cpu.before[i] as number)).sort((x, y) => x - y);
      const spread = `${(paired[0] as number).toFixed(2)}-${(paired[paired.length - 1] as number).toFixed(2)}`;
      return `| ${c.size}, ${c.bytes.toLocaleString('en-US')} B | ${SEALING_NAME[c.sealing]} | ${PATH_NAME[c.path]} | ${show(c.copies.before)} | ${show(c.copies.after)} | ${fmt(b)} | ${fmt(a)} | ${ratio(a, b)} (${spread}) | ${fmt(median(c.wall.before))} | ${fmt(median(c.wall.after))} |`;
    }),
    '',
    'The same paths without the broker (bench/outbound-local.ts): what the hub, the Connector and the AMQP client do',
    "with the report up to the frames, written into the connection's output buffer and dropped there; the outbox on a",
    `tmpfs. CPU µs per report over rounds of ${QUICK ? 50 : 200} ms, ${ROUNDS} alternating rounds, medians (per-round pairs in brackets).`,
    '',
    ...localTable(local, { sealing: SEALING_NAME, path: PATH_NAME }),
    '',
  ];
  const section = lines.join('\n');
  console.log(section);
  replaceSection(
    '## Outbound path: copies and CPU per report (bench/outbound.ts)',
    section,
    QUICK && process.env['OUTBOUND_BENCH_RESULTS'] === undefined ? null : resultsPath('OUTBOUND_BENCH_RESULTS'),
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
