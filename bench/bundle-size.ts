/**
 * The size of an ESM bundle as codec.ts and crypto.ts report it: esbuild (bundle, platform node, target node18, format
 * esm, minify), and that output gzipped (default level). esbuild is imported here, so that a platform without its
 * native binary (the emulated Pi) fails only this call.
 */
import { gzipSync } from 'node:zlib';

/** An entry file, or TypeScript source whose imports resolve from `resolveDir`. */
export type BundleInput = { readonly entry: string } | { readonly contents: string; readonly resolveDir: string };

export async function bundleSize(input: BundleInput): Promise<{ bytes: number; gzipBytes: number }> {
  const { build } = await import('esbuild');
  const out = await build({
    ...('entry' in input
      ? { entryPoints: [input.entry] }
      : { stdin: { contents: input.contents, resolveDir: input.resolveDir, loader: 'ts' as const } }),
    bundle: true,
    platform: 'node',
    target: 'node18',
    format: 'esm',
    minify: true,
    write: false,
  });
  const code = out.outputFiles[0]?.contents ?? new Uint8Array();
  return { bytes: code.length, gzipBytes: gzipSync(code).length };
}
