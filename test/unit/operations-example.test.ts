/**
 * docs/operations.md's aggregator program ("An aggregator as N instances") is examples/aggregator-instance.ts, which tsc
 * checks and test/integration/provision.test.ts runs on a TLS broker's generated configs. The doc's copy had drifted
 * into a program that never connected over amqps (no CA) and crashed on an `external` party's bus.json.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { repoRoot } from '../helpers/oracle.js';

const root = repoRoot();
const test = suite('docs/operations.md');

test("the aggregator program is examples/aggregator-instance.ts, with the package's import paths", () => {
  const file = readFileSync(path.join(root, 'examples', 'aggregator-instance.ts'), 'utf8');
  const begin = '// operations.md example begins\n';
  const code = file
    .slice(file.indexOf(begin) + begin.length, file.indexOf('// operations.md example ends'))
    .replace(/from '\.\.\/src\/(\w+)\/index\.js';/g, "from 'ebadge-hub-bus/$1';");
  assert.ok(code.length > 200, 'the example markers are in examples/aggregator-instance.ts');
  // The doc shows it inside a numbered item: indented by three spaces, blank lines left empty.
  const indented = code.replace(/^(?=.)/gm, '   ');
  const doc = readFileSync(path.join(root, 'docs', 'operations.md'), 'utf8');
  assert.ok(doc.includes(`   \`\`\`ts\n${indented}   \`\`\``), 'docs/operations.md shows the example as it is');
});

test.run();
