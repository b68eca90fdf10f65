/**
 * The package as an outside project gets it: `npm pack` (its prepack builds lib/ and dist/), installed from the
 * tarball into a new project, each entry imported by plain Node and type-checked by a consumer's tsc, and the two
 * commands it installs started. Slow (a build and an install: about 15 s), so it runs with the integration tests.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

const root = process.cwd();
const ENTRIES = ['amqp', 'codec', 'crypto', 'bus', 'mqtt'] as const;
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  name: string;
  exports: Record<string, unknown>;
};
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

const test = suite('npm pack');
const dir = mkdtempSync(path.join(tmpdir(), 'ebadge-pack-'));
const project = path.join(dir, 'consumer');
let tarball = '';
let files: string[] = [];
test.after(() => rmSync(dir, { recursive: true, force: true }));

// Work that can fail goes in a test, not a before hook: uvu does not report a hook's error (test/run.ts).
test('npm pack runs its prepack build and the tarball installs into a new project', () => {
  // Packed from a copy of the repository's files, so that the prepack build cannot rewrite the .out/, lib/ and dist/
  // that this very test run is using.
  const source = path.join(dir, 'source');
  const listed = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], {
    cwd: root,
    encoding: 'utf8',
  });
  for (const f of listed.split('\0').filter((f) => f !== '' && existsSync(path.join(root, f)))) {
    mkdirSync(path.dirname(path.join(source, f)), { recursive: true });
    copyFileSync(path.join(root, f), path.join(source, f));
  }
  symlinkSync(path.join(root, 'node_modules'), path.join(source, 'node_modules'), 'dir');
  const out = execFileSync(npm, ['pack', '--json', '--pack-destination', dir], {
    cwd: source,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 180_000,
  });
  // prepack's own output comes first; the JSON report is the last thing npm prints.
  const report = JSON.parse(out.slice(out.lastIndexOf('\n[') + 1)) as { filename: string; files: { path: string }[] }[];
  tarball = path.join(dir, report[0]?.filename ?? '');
  files = (report[0]?.files ?? []).map((f) => f.path);
  mkdirSync(project);
  writeFileSync(
    path.join(project, 'package.json'),
    JSON.stringify({ name: 'consumer', version: '1.0.0', type: 'module', private: true }),
  );
  execFileSync(npm, ['install', '--no-audit', '--no-fund', '--prefer-offline', '--ignore-scripts', tarball], {
    cwd: project,
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 180_000,
  });
  assert.ok(existsSync(path.join(project, 'node_modules', pkg.name, 'package.json')));
});

test('the tarball has the library, its types, both commands and the licence, and no tests or sources', () => {
  for (const entry of ENTRIES) {
    assert.ok(files.includes(`lib/${entry}/index.js`), `lib/${entry}/index.js in ${files.length} files`);
    assert.ok(files.includes(`lib/${entry}/index.d.ts`), `lib/${entry}/index.d.ts`);
  }
  for (const f of ['dist/hub.js', 'dist/ebadge.js', 'dist/package.json', 'LICENSE', 'README.md', 'package.json'])
    assert.ok(files.includes(f), f);
  const strays = files.filter(
    (f) => /^(src|test|bench|build|\.out|spec)\//.test(f) || f.endsWith('.ts') !== f.endsWith('.d.ts'),
  );
  assert.equal(strays, []);
});

test('every entry of package.json "exports" is imported by plain Node from the installed package', () => {
  assert.equal(
    Object.keys(pkg.exports).filter((k) => k !== './package.json'),
    ENTRIES.map((e) => `./${e}`),
  );
  const script = ENTRIES.map(
    (e) => `{ const m = await import('${pkg.name}/${e}'); console.log('${e}', Object.keys(m).length); }`,
  ).join('\n');
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: project, encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  for (const e of ENTRIES) assert.match(r.stdout, new RegExp(`^${e} [1-9]\\d*$`, 'm'));
});

test('a TypeScript consumer type-checks against the published declarations (strict, NodeNext)', () => {
  writeFileSync(
    path.join(project, 'use.ts'),
    [
      `import { connect, type Connection } from '${pkg.name}/amqp';`,
      `import { decode, EbTime, type Message } from '${pkg.name}/codec';`,
      `import { selectBackend } from '${pkg.name}/crypto';`,
      `import { Connector } from '${pkg.name}/bus';`,
      'export const uses = [connect, decode, EbTime, selectBackend, Connector];',
      "export type Used = [Connection, Message<'activate'>];",
      // A type error on purpose would fail tsc: this proves the declarations are really read, not `any`.
      '// @ts-expect-error the codec has no such export',
      `import { notExported } from '${pkg.name}/codec';`,
      'export const x = notExported;',
    ].join('\n'),
  );
  writeFileSync(
    path.join(project, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        target: 'ES2022',
        strict: true,
        noEmit: true,
        types: ['node'],
        typeRoots: [path.join(root, 'node_modules', '@types')],
      },
      files: ['use.ts'],
    }),
  );
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', project], { cwd: project, encoding: 'utf8' });
  assert.is(r.status, 0, `${r.stdout}${r.stderr}`);
});

test('the installed commands start: ebadge-hub --version and ebadge with no arguments', () => {
  const hub = spawnSync(
    process.execPath,
    [path.join(project, 'node_modules', pkg.name, 'dist', 'hub.js'), '--version'],
    {
      encoding: 'utf8',
    },
  );
  assert.is(hub.status, 0, hub.stderr);
  assert.match(hub.stdout, /ebadge-hub/);
  const cli = spawnSync(process.execPath, [path.join(project, 'node_modules', '.bin', 'ebadge')], { encoding: 'utf8' });
  assert.is(cli.status, 2, `${cli.stdout}${cli.stderr}`);
  assert.match(`${cli.stdout}${cli.stderr}`, /usage/i);
});

test.run();
