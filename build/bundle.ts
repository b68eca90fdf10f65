/**
 * Bundles the deployables, each one file that runs with `node FILE` and nothing beside it: CommonJS (a lone .js
 * file outside an ESM package is loaded as CommonJS), Node 18 syntax, minified, with a shebang.
 *
 *   npm run build        ->  dist/ebadge.js (the operator's CLI), dist/hub.js (the hub)
 */
import { chmodSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('../../', import.meta.url));

export const BUNDLES: Record<string, string> = {
  'dist/ebadge.js': 'src/bin/ebadge.ts',
  'dist/hub.js': 'src/bin/hub.ts',
};

export async function bundle(entry: string, outfile: string): Promise<number> {
  await build({
    entryPoints: [`${root}${entry}`], outfile, bundle: true, platform: 'node', target: 'node18', format: 'cjs', minify: true,
    banner: { js: '#!/usr/bin/env node' }, legalComments: 'none', logLevel: 'warning',
    // import.meta only serves the "run when executed directly" check of the unbundled sources.
    define: { 'import.meta.url': '""' },
  });
  chmodSync(outfile, 0o755);
  return statSync(outfile).size;
}

async function main(): Promise<void> {
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
