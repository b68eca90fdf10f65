/**
 * Code size: each contender's minimal program (bench/size/<name>.ts: connect, declare, publish, consume, close) and
 * the client alone (everything its entry exports), bundled by esbuild (bundle, platform node, target node18, minify,
 * format cjs), sizes read from the esbuild metafile, gzip at level 9. Each program bundle is then run once against
 * the broker and must print "ok": a bundle that does not work does not get a size.
 *
 * cjs rather than esm: amqplib is CommonJS and requires node built-ins, which esbuild's esm output cannot do without
 * a createRequire banner. Tree-shaking of ES modules is the same in both formats.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { ContenderName } from './peers/index.js';
import { type Harness, uniqueQueue } from './runner.js';

export interface SizeRow {
  contender: ContenderName;
  what: 'program' | 'client';
  minBytes: number;
  gzipBytes: number;
  /** 'ok', or why the bundle is not counted. */
  status: string;
}

const CLIENT_ENTRY: Record<ContenderName, string> = {
  ours: './src/amqp/index.ts',
  amqplib: 'amqplib',
  'amqp-client': '@cloudamqp/amqp-client',
};

function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return (
    text
      .split('\n')
      .map((l) => l.trim())
      .find((l) => l !== '') ?? 'unknown error'
  );
}

function runBundle(file: string, queue: string): Promise<string> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [file],
      { env: { ...process.env, BENCH_SIZE_QUEUE: queue }, timeout: 20_000 },
      (err, stdout, stderr) => {
        const out = stdout.trim();
        resolve(
          err === null && out === 'ok' ? 'ok' : `run failed: ${(err?.message ?? out) || stderr.trim()}`.slice(0, 200),
        );
      },
    );
  });
}

export async function measureSizes(
  root: string,
  contenders: readonly ContenderName[],
  harness: Harness,
): Promise<SizeRow[]> {
  // Imported here, so a platform without esbuild's native binary (the emulated Pi) still runs everything else.
  const { build } = await import('esbuild');
  try {
    await build({ stdin: { contents: 'export {}' }, write: false, logLevel: 'silent' });
  } catch (err) {
    throw new Error(`esbuild does not run here: ${firstLine(err)}`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'amqp-bench-size-'));
  const rows: SizeRow[] = [];
  try {
    for (const c of contenders) {
      for (const what of ['program', 'client'] as const) {
        const outfile = join(dir, `${c}-${what}.cjs`);
        const common = {
          bundle: true,
          platform: 'node',
          target: 'node18',
          minify: true,
          format: 'cjs',
          metafile: true,
          outfile,
          absWorkingDir: root,
          logLevel: 'silent',
        } as const;
        let status = 'ok';
        let minBytes = Number.NaN;
        let gzipBytes = Number.NaN;
        try {
          const r =
            what === 'program'
              ? await build({ ...common, entryPoints: [join(root, 'bench', 'size', `${c}.ts`)] })
              : await build({
                  ...common,
                  stdin: {
                    contents: `export * from ${JSON.stringify(CLIENT_ENTRY[c])};`,
                    resolveDir: root,
                    loader: 'ts',
                  },
                });
          const out = Object.entries(r.metafile.outputs).find(([k]) => basename(k) === basename(outfile));
          if (out === undefined) throw new Error('no output in the esbuild metafile');
          minBytes = out[1].bytes;
          gzipBytes = gzipSync(readFileSync(outfile), { level: 9 }).length;
          if (what === 'program') {
            const queue = uniqueQueue();
            try {
              status = await runBundle(outfile, queue);
            } finally {
              await harness.with((h) => h.deleteQueue(queue)).catch(() => undefined);
            }
          }
        } catch (err) {
          status = `build failed: ${firstLine(err)}`;
        }
        rows.push({ contender: c, what, minBytes, gzipBytes, status });
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}
