/**
 * The README promises things a test must keep true: its library example is examples/aggregator.ts (which tsc checks
 * and bus-examples runs), the commands it names exist, and it stays short enough to read (the manual is in docs/).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { repoRoot } from '../helpers/oracle.js';

const root = repoRoot();
const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
const test = suite('README');

test("the library example is examples/aggregator.ts, with the package's import paths", () => {
  const file = readFileSync(path.join(root, 'examples', 'aggregator.ts'), 'utf8');
  const begin = '// README example begins\n';
  const code = file
    .slice(file.indexOf(begin) + begin.length, file.indexOf('// README example ends'))
    .replace(/from '\.\.\/src\/(\w+)\/index\.js';/g, "from 'ebadge-hub-bus/$1';");
  assert.ok(code.length > 200, 'the example markers are in examples/aggregator.ts');
  assert.ok(readme.includes(`\`\`\`ts\n${code}\`\`\``), 'README.md shows examples/aggregator.ts as it is');
});

test('the npm scripts the README and docs/development.md name exist', () => {
  const scripts = Object.keys(
    (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts,
  );
  const dev = readFileSync(path.join(root, 'docs', 'development.md'), 'utf8');
  const named = [...`${readme}\n${dev}`.matchAll(/npm (?:run ([\w:-]+)|(test|start))\b/g)].map((m) => m[1] ?? m[2]);
  assert.ok(named.length >= 5, `${named.length} commands named`);
  assert.equal(
    named.filter((n) => !scripts.includes(n as string)),
    [],
  );
});

test('the README fits on a screen or two, and every document it links exists', () => {
  assert.ok(readme.split('\n').length <= 100, `${readme.split('\n').length} lines`);
  for (const [, link] of readme.matchAll(/\]\(([^)#]+)\)/g)) {
    assert.ok(readFileSync(path.join(root, link as string), 'utf8').length > 0, link);
  }
});

test.run();
