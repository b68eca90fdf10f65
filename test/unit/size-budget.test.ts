/**
 * The bundles stay within build/size-budget.ts: each is built in memory the way it ships (build/bundle.ts's options;
 * the minimal client program with bench/size.ts's) and its minified size read from esbuild's metafile. Raising a
 * budget is a deliberate edit with its reason, never a test that drifts.
 */
import path from 'node:path';
import { type BuildOptions, build } from 'esbuild';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BUNDLES, bundleCode } from '../../build/bundle.js';
import { SIZE_BUDGET } from '../../build/size-budget.js';
import { repoRoot } from '../helpers/oracle.js';

async function minifiedBytes(options: BuildOptions): Promise<number> {
  const { metafile } = await build({ ...options, write: false, metafile: true });
  const output = Object.values(metafile?.outputs ?? {})[0];
  if (output === undefined) throw new Error(`esbuild wrote no output for ${String(options.entryPoints)}`);
  return output.bytes;
}

/** The minified size of a shipped bundle as build/bundle.ts makes it, or of the minimal program as bench/size.ts. */
async function bytesOf(bundle: string): Promise<number> {
  const root = repoRoot();
  const entry = BUNDLES[bundle];
  if (entry !== undefined) return Buffer.byteLength((await bundleCode(entry, path.join(root, bundle))).code);
  return minifiedBytes({
    entryPoints: [path.join(root, bundle)],
    outfile: path.join(root, 'dist', 'minimal-program.cjs'),
    bundle: true,
    platform: 'node',
    target: 'node18',
    minify: true,
    format: 'cjs',
    logLevel: 'silent',
  });
}

const s = suite('size budget');

s('the budget covers the hub bundles and the minimal client program', () => {
  assert.equal(Object.keys(SIZE_BUDGET).sort(), ['bench/size/ours.ts', 'dist/hub-mqtt.js', 'dist/hub.js']);
});

for (const [bundle, budget] of Object.entries(SIZE_BUDGET)) {
  s(`${bundle} is at most ${budget.toLocaleString('en-US')} B minified`, async () => {
    const bytes = await bytesOf(bundle);
    assert.ok(
      bytes <= budget,
      `${bundle} is ${bytes.toLocaleString('en-US')} B, over its budget of ${budget.toLocaleString('en-US')} B by ` +
        `${(bytes - budget).toLocaleString('en-US')}: take the growth out, or raise the budget in build/size-budget.ts ` +
        'with the reason and the figure in bench/RESULTS.md ("Size")',
    );
    // A budget far above the size is no check: lower it with the bundle.
    assert.ok(
      bytes > budget - 4_096,
      `${bundle} is ${bytes.toLocaleString('en-US')} B, more than 4 KiB under its budget of ` +
        `${budget.toLocaleString('en-US')} B: lower the budget in build/size-budget.ts to keep the ratchet`,
    );
  });
}

s.run();
