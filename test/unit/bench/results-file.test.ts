/**
 * bench/results-file.ts, the one writer of bench/RESULTS.md: a benchmark replaces its own sections (or subsections)
 * and every other byte of the file stays as it was.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RESULTS_FILE, replaceSection, replaceSubsection, resultsPath } from '../../../bench/results-file.js';

const root = process.cwd();
const test = suite('bench/results-file');

let dir = '';
test.before.each(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'bench-results-'));
});
test.after.each(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A file of `text` in the temp folder. */
function file(text: string | null, name = 'RESULTS.md'): string {
  const f = path.join(dir, name);
  if (text !== null) writeFileSync(f, text);
  return f;
}
const read = (f: string): string => readFileSync(f, 'utf8');

// Irregular on purpose: a missing blank line before a heading, trailing spaces, a fenced `## ` line, no final newline.
const TITLE = '# Title\n\nintro of the file\n';
const A = '## A (bench/a.ts)\n\nfigures of a  \n| x | 1 |\n';
const CODEC_DECODE =
  '## Codec: decode path\n\n```sh\n## not a heading\n```\n\n### Node 18\n\nn18\n\n### Conclusion\n\nhand-written\n\n';
const CODEC = '## Codec\n\nold codec\n\n\n';
const LAST = '## Last\n\nthe end';
const FILE = TITLE + A + CODEC_DECODE + CODEC + LAST;

test('replacing a section keeps every other byte, whatever the spacing around it', () => {
  const f = file(FILE);
  replaceSection('## Codec', '## Codec\n\nnew codec\n', f);
  assert.is(read(f), `${TITLE}${A}${CODEC_DECODE}## Codec\n\nnew codec\n\n${LAST}`);
  replaceSection('## A (bench/a.ts)', '## A (bench/a.ts)\n\nnew a', f);
  assert.is(read(f), `${TITLE}## A (bench/a.ts)\n\nnew a\n\n${CODEC_DECODE}## Codec\n\nnew codec\n\n${LAST}`);
  replaceSection('## Last', '## Last\n\nnew end\n\n\n', f);
  assert.is(
    read(f),
    `${TITLE}## A (bench/a.ts)\n\nnew a\n\n${CODEC_DECODE}## Codec\n\nnew codec\n\n## Last\n\nnew end\n`,
  );
});

test('a heading matches a whole line only: "## Codec" is not "## Codec: decode path", a fenced line is no heading', () => {
  const f = file(FILE);
  replaceSection('## Codec: decode path', '## Codec: decode path\n\nreplaced\n', f);
  assert.is(read(f), `${TITLE}${A}## Codec: decode path\n\nreplaced\n\n${CODEC}${LAST}`);
  replaceSection('## not a heading', '## not a heading\n\nappended\n', file(FILE, 'fenced.md'));
  assert.is(read(path.join(dir, 'fenced.md')), `${FILE}\n\n## not a heading\n\nappended\n`);
});

test('the title block (to the first `## `) is a section of its own; an absent title goes first', () => {
  const f = file(FILE);
  replaceSection('# Title', '# Title\n\nnew intro\n', f);
  assert.is(read(f), `# Title\n\nnew intro\n\n${A}${CODEC_DECODE}${CODEC}${LAST}`);
  const g = file(A + LAST, 'untitled.md');
  replaceSection('# Title', '# Title\n\ntitle\n', g);
  assert.is(read(g), `# Title\n\ntitle\n\n${A}${LAST}`);
});

test('an absent section is appended after a blank line; a missing file is created; null writes nothing', () => {
  const f = file(FILE);
  replaceSection('## New', '## New\n\nnew\n', f);
  assert.is(read(f), `${FILE}\n\n## New\n\nnew\n`);
  const g = file('## A\n\na\n', 'a.md');
  replaceSection('## B', '## B\n\nb', g);
  assert.is(read(g), '## A\n\na\n\n## B\n\nb\n');
  const h = file(null, 'missing.md');
  replaceSection('## B', '## B\n\nb\n', h);
  assert.is(read(h), '## B\n\nb\n');
  replaceSection('## C', '## C\n', null);
  replaceSubsection('## C', '### D\n', null);
  assert.equal(readdirSync(dir).sort(), ['RESULTS.md', 'a.md', 'missing.md']);
});

test('the text must start with its heading line, and headings have the right level', () => {
  const f = file(FILE);
  assert.throws(() => replaceSection('## A (bench/a.ts)', 'figures without the heading\n', f), /must start/);
  assert.throws(() => replaceSection('### Node 18', '### Node 18\n', f), /level/);
  assert.throws(() => replaceSubsection('## Codec: decode path', '## Node 18\n', f), /level 3/);
  assert.throws(() => replaceSubsection('### Node 18', '### x\n', f), /level 2/);
  assert.is(read(f), FILE);
});

test('replacing a subsection keeps the other subsections and sections byte for byte', () => {
  const f = file(FILE);
  replaceSubsection('## Codec: decode path', '### Node 18\n\nnew n18', f);
  assert.is(
    read(f),
    `${TITLE}${A}## Codec: decode path\n\n\`\`\`sh\n## not a heading\n\`\`\`\n\n### Node 18\n\nnew n18\n\n### Conclusion\n\nhand-written\n\n${CODEC}${LAST}`,
  );
  replaceSubsection('## Codec: decode path', '### Conclusion\n\nredone\n', f);
  assert.is(
    read(f),
    `${TITLE}${A}## Codec: decode path\n\n\`\`\`sh\n## not a heading\n\`\`\`\n\n### Node 18\n\nnew n18\n\n### Conclusion\n\nredone\n\n${CODEC}${LAST}`,
  );
});

test('a new subsection goes before `before` when present, else at the end of its section; ifAbsent keeps one', () => {
  const f = file(FILE);
  replaceSubsection('## Codec: decode path', '### Node 20\n\nn20\n', f, { before: '### Conclusion' });
  const withN20 = `${TITLE}${A}## Codec: decode path\n\n\`\`\`sh\n## not a heading\n\`\`\`\n\n### Node 18\n\nn18\n\n### Node 20\n\nn20\n\n### Conclusion\n\nhand-written\n\n${CODEC}${LAST}`;
  assert.is(read(f), withN20);
  replaceSubsection('## Codec: decode path', '### Conclusion\n\ngenerated\n', f, { ifAbsent: true });
  assert.is(read(f), withN20);
  replaceSubsection('## Codec: decode path', '### ARM\n\narm\n', f, { before: '### Absent' });
  assert.is(read(f), withN20.replace('hand-written\n\n', 'hand-written\n\n### ARM\n\narm\n\n'));
  replaceSubsection('## Last', '### Sub\n\nsub\n', f);
  assert.ok(read(f).endsWith('## Last\n\nthe end\n\n### Sub\n\nsub\n'));
});

test('the intro is rewritten when given, kept otherwise; an absent section is created with it', () => {
  const f = file(FILE);
  replaceSubsection('## Codec: decode path', '### Node 18\n\nn18\n', f, { intro: 'new intro' });
  assert.is(
    read(f),
    `${TITLE}${A}## Codec: decode path\n\nnew intro\n\n### Node 18\n\nn18\n\n### Conclusion\n\nhand-written\n\n${CODEC}${LAST}`,
  );
  replaceSubsection('## Crypto', '### x64\n\nfigures\n', f, { intro: 'one subsection per platform' });
  assert.is(
    read(f),
    `${TITLE}${A}## Codec: decode path\n\nnew intro\n\n### Node 18\n\nn18\n\n### Conclusion\n\nhand-written\n\n${CODEC}${LAST}\n\n## Crypto\n\none subsection per platform\n\n### x64\n\nfigures\n`,
  );
  replaceSubsection('## Crypto', '### arm\n\nslow\n', f);
  assert.ok(read(f).endsWith('## Crypto\n\none subsection per platform\n\n### x64\n\nfigures\n\n### arm\n\nslow\n'));
});

test('in a copy of bench/RESULTS.md, replacing any one section leaves every other byte', () => {
  const original = readFileSync(path.join(root, 'bench', 'RESULTS.md'), 'utf8');
  const heads = original.split('\n').filter((l) => /^#{1,2} /.test(l));
  assert.ok(heads.length >= 5, heads.join(', '));
  for (const h of heads) {
    const f = file(original);
    const section = `${h}\n\nreplaced\n`;
    replaceSection(h, section, f);
    const now = read(f);
    const start = original.indexOf(`${h}\n`);
    const next = original.slice(start + h.length).search(/\n#{1,2} /);
    const rest = next < 0 ? '' : original.slice(start + h.length + next + 1);
    assert.is(now, original.slice(0, start) + section + (rest === '' ? '' : '\n') + rest, h);
  }
});

test('resultsPath: the variable names the file, `-` none, unset or empty the shared RESULTS.md', () => {
  const name = 'RESULTS_FILE_TEST_PATH';
  try {
    delete process.env[name];
    assert.is(resultsPath(name), RESULTS_FILE);
    process.env[name] = '';
    assert.is(resultsPath(name), RESULTS_FILE);
    process.env[name] = '-';
    assert.is(resultsPath(name), null);
    process.env[name] = 'some/where.md';
    assert.is(resultsPath(name), path.resolve('some/where.md'));
  } finally {
    delete process.env[name];
  }
  assert.is(RESULTS_FILE, path.join(root, 'bench', 'RESULTS.md'));
});

test.run();
