/**
 * Bundles the deployables, each one file that runs with `node FILE` and nothing beside it: CommonJS (a lone .js
 * file outside an ESM package is loaded as CommonJS), Node 18 syntax, minified, with a shebang.
 *
 *   npm run build        ->  dist/ebadge.js (the operator's CLI), dist/hub.js (the hub)
 *   node .out/build/bundle.js --analyze [BUNDLE]   what each source file and package adds to the bundle, largest first
 */
import { chmodSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build, type BuildOptions } from 'esbuild';

const root = fileURLToPath(new URL('../../', import.meta.url));

export const BUNDLES: Record<string, string> = {
  'dist/ebadge.js': 'src/bin/ebadge.ts',
  'dist/hub.js': 'src/bin/hub.ts',
};

export async function bundle(entry: string, outfile: string): Promise<number> {
  await build(options(entry, outfile));
  chmodSync(outfile, 0o755);
  return statSync(outfile).size;
}

function options(entry: string, outfile: string): BuildOptions {
  return {
    entryPoints: [`${root}${entry}`], outfile, bundle: true, platform: 'node', target: 'node18', format: 'cjs', minify: true,
    // The sources are ES modules, strict throughout: one directive for the whole file, not one per lazily
    // initialised module (esbuild writes one into each wrapper when tsconfig's strict implies alwaysStrict).
    banner: { js: '#!/usr/bin/env node\n"use strict";' }, legalComments: 'none', logLevel: 'warning',
    tsconfigRaw: { compilerOptions: { alwaysStrict: false, verbatimModuleSyntax: true, useDefineForClassFields: true } },
    // import.meta only serves the "run when executed directly" check of the unbundled sources.
    define: { 'import.meta.url': '""' },
  };
}

/** Bytes of minified output per input file, summed per folder and per package. */
async function analyze(out: string): Promise<void> {
  const entry = BUNDLES[out];
  if (entry === undefined) throw new Error(`--analyze: unknown bundle "${out}" (one of ${Object.keys(BUNDLES).join(', ')})`);
  const { metafile } = await build({ ...options(entry, `${root}${out}`), write: false, metafile: true });
  const output = Object.values(metafile.outputs)[0];
  if (output === undefined) throw new Error('--analyze: esbuild wrote no output');
  const files = Object.entries(output.inputs).map(([file, { bytesInOutput }]) => ({ file, bytes: bytesInOutput }));
  const groups = new Map<string, number>();
  for (const { file, bytes } of files) {
    const group = /node_modules\/(@[^/]+\/[^/]+|[^/]+)/.exec(file)?.[1] ?? file.split('/').slice(0, 2).join('/');
    groups.set(group, (groups.get(group) ?? 0) + bytes);
  }
  const kb = (n: number): string => `${(n / 1024).toFixed(1).padStart(7)} KB`;
  console.log(`${out}: ${kb(output.bytes)} total`);
  for (const [group, bytes] of [...groups].sort((a, b) => b[1] - a[1])) console.log(`${kb(bytes)}  ${group}`);
  console.log('');
  for (const { file, bytes } of files.sort((a, b) => b.bytes - a.bytes)) console.log(`${kb(bytes)}  ${file}`);
}

async function main(): Promise<void> {
  if (process.argv[2] === '--analyze') return analyze(process.argv[3] ?? 'dist/hub.js');
  mkdirSync(`${root}dist`, { recursive: true });
  // Inside this ESM package the bundles would be read as ES modules; alone on a Pi they are CommonJS anyway.
  writeFileSync(`${root}dist/package.json`, '{ "type": "commonjs" }\n');
  for (const [out, entry] of Object.entries(BUNDLES)) {
    const size = await bundle(entry, `${root}${out}`);
    console.log(`${out}: ${(size / 1024).toFixed(1)} KB`);
  }
}

if (process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
