/**
 * Promises of the repository itself, kept by tests so they cannot silently break: it installs on every platform a
 * hub developer uses (no dependency bound to a platform unless optional), and nothing the code, the tests or the
 * build need lives outside it (users clone it without the reference folder that sits beside it here).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

const root = process.cwd();
const test = suite('repository');

interface LockEntry {
  optional?: boolean;
  dev?: boolean;
  os?: string[];
  cpu?: string[];
}

test('package-lock.json: every package bound to an os or cpu is optional, so npm ci works on a Pi, an ARM Mac, anywhere', () => {
  const lock = JSON.parse(readFileSync(path.join(root, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, LockEntry>;
  };
  const entries = Object.entries(lock.packages).filter(([name]) => name !== '');
  assert.ok(entries.length > 10, `${entries.length} packages in the lock file`);
  const bound = entries.filter(([, p]) => (p.os !== undefined || p.cpu !== undefined) && p.optional !== true);
  assert.equal(
    bound.map(([name, p]) => `${name} (os ${String(p.os)}, cpu ${String(p.cpu)})`),
    [],
  );
});

test('package.json: no dependency is a Node binary (npm scripts must run on the Node the user has)', () => {
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as Record<
    string,
    Record<string, string>
  >;
  const names = [...Object.keys(pkg['dependencies'] ?? {}), ...Object.keys(pkg['devDependencies'] ?? {})];
  assert.equal(
    names.filter((n) => /^(node|node-(linux|darwin|win)-.*)$/.test(n)),
    [],
  );
});

/** Source files under `dir`, recursively. */
function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const file = path.join(dir, name);
    if (statSync(file).isDirectory()) return name === 'node_modules' ? [] : sources(file);
    return /\.(ts|mjs|js)$/.test(name) ? [file] : [];
  });
}

const ARM_SMOKE = path.join(root, 'build', 'arm-smoke.ts');
const SELF = path.join(root, 'test', 'unit', 'repository.test.ts');

test('no code in src/, test/ or build/ reads the reference folder beside the clone (the CI-only ARM smoke test excepted)', () => {
  const offenders: string[] = [];
  const files = ['src', 'test', 'build'].flatMap((d) => sources(path.join(root, d)));
  assert.ok(files.length > 50, `${files.length} files scanned`);
  for (const file of files) {
    if (file === ARM_SMOKE || file === SELF) continue;
    readFileSync(file, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        const code = line.trim();
        if (code.startsWith('//') || code.startsWith('*') || code.startsWith('/*')) return;
        if (/\.\.\/shared\b|'\.\.',\s*'shared'/.test(code)) offenders.push(`${path.relative(root, file)}:${i + 1}`);
      });
  }
  assert.equal(offenders, []);
});

test('src/core/version.ts holds the release of package.json (ebadge --version and hub.js --version print it)', async () => {
  const { VERSION } = await import('../../src/core/version.js');
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
  assert.is(VERSION, pkg.version);
  // The AMQP client's `version` in connection.start-ok is the same release.
  const { CLIENT_VERSION } = await import('../../src/amqp/handshake.js');
  assert.is(CLIENT_VERSION, pkg.version);
});

test.run();
