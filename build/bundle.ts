/**
 * Bundles the deployables, each one file that runs with `node FILE` and nothing beside it: CommonJS (a lone .js
 * file outside an ESM package is loaded as CommonJS), Node 18 syntax, minified, with a shebang.
 *
 *   npm run build        ->  dist/ebadge.js (the operator's CLI), dist/hub.js (the hub), plain minified code
 *   node .out/build/bundle.js --pack                    the same, dist/hub.js packed (Brotli + a loader: see pack())
 *   node .out/build/bundle.js --analyze [BUNDLE]   what each source file and package adds to the bundle, largest first
 */
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants } from 'node:zlib';
import { type BuildOptions, build, type Metafile, type Plugin, transform } from 'esbuild';

const root = fileURLToPath(new URL('../../', import.meta.url));

export const BUNDLES: Record<string, string> = {
  'dist/ebadge.js': 'src/bin/ebadge.ts',
  'dist/hub.js': 'src/bin/hub.ts',
  // The MQTT hub: dist/hub.js must not carry MQTT.js (issue 16).
  'dist/hub-mqtt.js': 'src/bin/hub-mqtt.ts',
};
/**
 * The hubs: one process each, never one of several instances of a party (hub.json has no sharded inboxes), so they
 * leave out the code that shares shards among instances (src/bus/amqp-instances-absent.ts stands in for it).
 */
const HUBS = new Set(['dist/hub.js', 'dist/hub-mqtt.js']);

const withoutInstances: Plugin = {
  name: 'without-instances',
  setup(b) {
    b.onResolve({ filter: /^\.\/amqp-instances\.js$/ }, (args) =>
      args.importer.endsWith(`src/bus/amqp-transport.ts`)
        ? { path: `${root}src/bus/amqp-instances-absent.ts` }
        : undefined,
    );
  },
};

/**
 * One require() per Node module in a hub: esbuild gives each of our modules that imports `node:fs` a require() of
 * its own (45 in dist/hub.js, 11 of them wrapped for `import * as`). Our imports of a `node:` module go to one
 * module that re-exports it, required once (-1 KB). Only our ES imports: a CommonJS package's require() keeps the
 * module itself (the re-exports leave out the default, which is what `require('node:events')` calls).
 * Each name is its own `export var`, marked pure, so that esbuild keeps the ones used, as plain variables read once
 * when the hub's code loads: `readFileSync(f)` in the bundle, not `(0, fs.readFileSync)(f)` through an `export *`
 * namespace of getters (-771 B). The names come from the Node that builds; a name it lacks fails the build.
 */
const NODE_REQUIRE = 'ebadgeRequire';
const nodeOnce: Plugin = {
  name: 'node-once',
  setup(b) {
    b.onResolve({ filter: /^node:/ }, (args) =>
      args.kind === 'import-statement' && args.importer.startsWith(`${root}src/`)
        ? { path: args.path, namespace: 'node-once' }
        : args.namespace === 'node-once'
          ? { path: args.path, external: true }
          : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'node-once' }, async (args) => {
      const names = Object.keys(await import(args.path)).filter((k) => k !== 'default' && isBindingName(k));
      const exports = names.map((k) => `export var ${k} = /* @__PURE__ */ (() => m.${k})();`);
      return {
        contents: `var m = ${NODE_REQUIRE}(${JSON.stringify(args.path)});\n${exports.join('\n')}`,
        loader: 'js',
      };
    });
  },
};

/** A name `export var` can declare. */
function isBindingName(k: string): boolean {
  try {
    new Function(`var ${k};`);
    return /^[A-Za-z_$][\w$]*$/.test(k);
  } catch {
    return false;
  }
}

/**
 * The hubs' entries answer `--version` without loading the hub: they import its code with import() from the module
 * named here. Bundled as one, esbuild would wrap each of the ~120 modules behind that import() in a lazy initialiser
 * of its own (a closure, its path as a name, a call per import: 3.8 KB of dist/hub.js). So the module is bundled by
 * itself, statically, into one function that the entry's import() calls instead (see bundleCode()).
 */
const LAZY: Record<string, string> = {
  'src/bin/hub.ts': 'src/bin/hub-loaded.ts',
  'src/bin/hub-mqtt.ts': 'src/bin/hub-mqtt-loaded.ts',
};
const LAZY_LOADER = 'ebadgeLoadLazyModule';

/**
 * Reads the hub entry with its one import() of its lazy module turned into a call of the function that bundleCode()
 * puts after the entry (a global name to esbuild, which leaves it as it is).
 */
const lazyImport = (entry: string, loaded: string): Plugin => ({
  name: 'lazy-import',
  setup(b) {
    const call = `import('./${loaded.split('/').pop()?.replace(/\.ts$/, '.js')}')`;
    b.onLoad({ filter: new RegExp(`${entry.replace(/[.]/g, '\\.')}$`) }, (args) => {
      const source = readFileSync(args.path, 'utf8');
      if (source.split(call).length !== 2) throw new Error(`${entry}: expected one ${call}`);
      return { contents: source.replace(call, `Promise.resolve().then(${LAZY_LOADER})`), loader: 'ts' };
    });
  },
});

/**
 * The lazy modules whose `_name` properties are renamed short (esbuild's mangleProps): each is the client's internals
 * between its own classes (`_attach`, `_topology`, `_flush` ...), never a Node API's (no class of the hub is a
 * stream) nor read by string or from JSON, which bundleCode() checks on the output. Not in hub-mqtt.js, where
 * MQTT.js's streams define `_write`, `_transform` for Node to call and our transport wraps its `_sendPacket`.
 */
const MANGLED = new Set(['src/bin/hub-loaded.ts']);

/** The bundles `--pack` packs: the hub goes to the Pi, sometimes over a slow link. */
const PACKED = new Set(['dist/hub.js']);

const SHEBANG = '#!/usr/bin/env node\n';

/** Writes the bundle of `entry` to `outfile`; returns its size and, when packed, the size of the code inside. */
export async function bundle(entry: string, outfile: string, packed = false): Promise<{ bytes: number; code: number }> {
  const { code } = await bundleCode(entry, outfile);
  writeFileSync(outfile, packed ? pack(code) : code, { mode: 0o755 });
  chmodSync(outfile, 0o755);
  return { bytes: statSync(outfile).size, code: Buffer.byteLength(code) };
}

/**
 * The minified bundle, Brotli-compressed into a base64 string, behind a loader that inflates it and runs it as the
 * CommonJS module it is, under this file's name (stack traces name hub.js), in about 40% of the bytes. Inflating
 * and compiling cost about as much as reading the plain file (hyperfine: --version within noise of it on x86).
 */
export function pack(code: string): string {
  const body = code.startsWith(SHEBANG) ? code.slice(SHEBANG.length) : code;
  // The code runs through vm, which has no loader for a real import(); esbuild turns ours into require()s.
  if (/\bimport\(/.test(body)) throw new Error('pack: the bundle holds a dynamic import(), which vm cannot load');
  const input = Buffer.from(body);
  const packed = brotliCompressSync(input, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: 11,
      [constants.BROTLI_PARAM_LGWIN]: 24,
      [constants.BROTLI_PARAM_MODE]: constants.BROTLI_MODE_TEXT,
      [constants.BROTLI_PARAM_SIZE_HINT]: input.length,
    },
  }).toString('base64');
  return (
    `${SHEBANG}"use strict";require("vm").runInThisContext("(function(exports,require,module,__filename,__dirname){"+` +
    `require("zlib").brotliDecompressSync(Buffer.from("${packed}","base64"))+"\\n})",{filename:__filename})` +
    '(exports,require,module,__filename,__dirname);\n'
  );
}

/**
 * The code of the bundle of `entry`, and esbuild's metafile for it (one output, `outfile`, whose inputs are every
 * source file in the bundle with the bytes it adds). A hub entry is two builds made one file: the entry itself, as an
 * IIFE so that its names cannot reach into the other, and its lazy module inside a function that its import()
 * calls on a later turn (a failure in it rejects the import()'s promise as before). The lazy module is built as an ES
 * module whose closing `export{...}` becomes the function's `return{...}`: no CommonJS export helpers (-488 B of
 * dist/hub.js). Our `node:` modules are required through the file's own require() under another name
 * (NODE_REQUIRE), which esbuild leaves alone; a require() it saw in ESM output would get its dynamic-require shim.
 */
export async function bundleCode(entry: string, outfile: string): Promise<{ code: string; metafile: Metafile }> {
  const options = bundleOptions(entry, outfile);
  const loaded = LAZY[entry];
  if (loaded === undefined) {
    const r = await build({ ...options, write: false, metafile: true });
    const code = r.outputFiles[0]?.text;
    if (code === undefined) throw new Error(`${entry}: esbuild wrote no output`);
    return { code, metafile: r.metafile };
  }
  const outer = await build({
    ...options,
    format: 'iife',
    plugins: [...(options.plugins ?? []), lazyImport(entry, loaded)],
    write: false,
    metafile: true,
  });
  const inner = await build({
    ...bundleOptions(loaded, outfile),
    format: 'esm',
    ...(MANGLED.has(loaded) ? { mangleCache: {} } : {}),
    banner: {},
    write: false,
    metafile: true,
  });
  const [o, esm] = [outer.outputFiles[0]?.text, inner.outputFiles[0]?.text];
  if (o === undefined || esm === undefined) throw new Error(`${entry}: esbuild wrote no output`);
  const exported = /export\{([^}]*)\};?\s*$/.exec(esm);
  if (exported === null || /(^|[;}])(export|import)[{ ]/.test(esm.slice(0, exported.index)))
    throw new Error(`${loaded}: expected one export statement at the end`);
  const names = (exported[1] ?? '')
    .split(',')
    .map((e) => e.split(' as '))
    .map(([local, as]) => `${as ?? local}:${local}`);
  const i = `var ${NODE_REQUIRE}=require;${esm.slice(0, exported.index)}return{${names.join(',')}}`;
  // A renamed property still named anywhere in the output is read some other way (a string, a quoted key, JSON).
  for (const name of Object.keys(inner.mangleCache ?? {}))
    if (new RegExp(`\\b${name}\\b`).test(i)) throw new Error(`${loaded}: "${name}" is renamed but named in the output`);
  // Minified once more as one file: the modules' var statements joined and the names given by use across all of
  // them (-520 B); esbuild leaves the top-level names (the loader's) as they are.
  const joined = `${o}function ${LAZY_LOADER}(){${i}}\n`;
  if (!joined.startsWith(SHEBANG)) throw new Error(`${entry}: the bundle does not start with ${SHEBANG}`);
  const again = await transform(joined.slice(SHEBANG.length), {
    minify: true,
    target: 'node18',
    legalComments: 'none',
  });
  const code = `${SHEBANG}${again.code}`;
  return { code, metafile: merged(outer.metafile, inner.metafile, Buffer.byteLength(code)) };
}

/** The two builds' metafiles as one output of `bytes`, each input's bytes summed. */
function merged(a: Metafile, b: Metafile, bytes: number): Metafile {
  const [key, first] = Object.entries(a.outputs)[0] ?? [];
  const second = Object.values(b.outputs)[0];
  if (key === undefined || first === undefined || second === undefined) throw new Error('a build without output');
  const inputs = { ...first.inputs };
  for (const [file, { bytesInOutput }] of Object.entries(second.inputs))
    inputs[file] = { bytesInOutput: (inputs[file]?.bytesInOutput ?? 0) + bytesInOutput };
  return { inputs: { ...a.inputs, ...b.inputs }, outputs: { [key]: { ...first, bytes, inputs } } };
}

/** esbuild's options for the bundle of `entry`, or of a hub entry's lazy module (bundleCode() puts them together). */
export function bundleOptions(entry: string, outfile: string): BuildOptions {
  const hub =
    Object.entries(BUNDLES).some(([out, e]) => e === entry && HUBS.has(out)) || Object.values(LAZY).includes(entry);
  return {
    ...(hub ? { plugins: [withoutInstances, nodeOnce] } : {}),
    entryPoints: [`${root}${entry}`],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node18',
    format: 'cjs',
    minify: true,
    // The sources are ES modules, strict throughout: one directive for the whole file, not one per lazily
    // initialised module (esbuild writes one into each wrapper when tsconfig's strict implies alwaysStrict).
    banner: { js: `${SHEBANG}"use strict";` },
    legalComments: 'none',
    logLevel: 'warning',
    tsconfigRaw: {
      compilerOptions: { alwaysStrict: false, verbatimModuleSyntax: true, useDefineForClassFields: true },
    },
    // import.meta only serves the "run when executed directly" check of the unbundled sources.
    define: { 'import.meta.url': '""' },
    ...(MANGLED.has(entry) ? { mangleProps: /^_[a-z]/ } : {}),
  };
}

/** Bytes of minified output per input file, summed per folder and per package. */
async function analyze(out: string): Promise<void> {
  const entry = BUNDLES[out];
  if (entry === undefined)
    throw new Error(`--analyze: unknown bundle "${out}" (one of ${Object.keys(BUNDLES).join(', ')})`);
  const { metafile } = await bundleCode(entry, `${root}${out}`);
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
  // Packing is opt-in: the size that counts is the minified code, and running it from a string costs ~0.9 MB of RSS.
  const noPack = !process.argv.includes('--pack');
  for (const [out, entry] of Object.entries(BUNDLES)) {
    const packed = PACKED.has(out) && !noPack;
    const { bytes, code } = await bundle(entry, `${root}${out}`, packed);
    console.log(
      `${out}: ${(bytes / 1024).toFixed(1)} KB${packed ? ` (${(code / 1024).toFixed(1)} KB of minified code, packed)` : ''}`,
    );
  }
}

if (process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
