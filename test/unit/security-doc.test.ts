/**
 * docs/SECURITY.md names the test that proves each defence: `test/...ts` followed by quoted titles. A renamed or
 * deleted test must not leave the document claiming a proof that no longer exists.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { repoRoot } from '../helpers/oracle.js';

const root = repoRoot();
const doc = readFileSync(path.join(root, 'docs', 'SECURITY.md'), 'utf8');
const test = suite('docs/SECURITY.md');

/** Each cited file with the titles quoted right after it (`file` "title", "title"). */
function citations(text: string): { file: string; titles: string[] }[] {
  return [...text.matchAll(/`(test\/[^`]+\.ts)`((?:,? "[^"]+")*)/g)].map((m) => ({
    file: m[1] as string,
    titles: [...(m[2] ?? '').matchAll(/"([^"]+)"/g)].map((t) => t[1] as string),
  }));
}

test('cites test files, most with titles', () => {
  const cited = citations(doc);
  assert.ok(cited.length >= 40, `${cited.length} citations`);
  assert.ok(cited.filter((c) => c.titles.length > 0).length >= 40);
});

test('every test file it cites exists, and holds every title quoted after it', () => {
  const missing: string[] = [];
  for (const { file, titles } of citations(doc)) {
    const full = path.join(root, file);
    if (!existsSync(full)) {
      missing.push(file);
      continue;
    }
    const source = readFileSync(full, 'utf8');
    // A title built at run time is quoted from its fixed end, after '... '.
    for (const title of titles) if (!source.includes(title.replace(/^\.\.\. /, ''))) missing.push(`${file}: ${title}`);
  }
  assert.equal(missing, []);
});

test('the citation check itself: a wrong title or file is found', () => {
  const bad = citations('`test/unit/readme.test.ts` "no such title"; `test/unit/nope.test.ts`');
  assert.equal(bad, [
    { file: 'test/unit/readme.test.ts', titles: ['no such title'] },
    { file: 'test/unit/nope.test.ts', titles: [] },
  ]);
});

test.run();
