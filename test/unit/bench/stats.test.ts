/** bench/stats.ts is the one home of median and percentile: no benchmark keeps a copy of its own. */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { median, percentile } from '../../../bench/stats.js';

const root = process.cwd();
const test = suite('bench/stats');

test('median: the middle value, the mean of the two middle ones for an even count, NaN for none', () => {
  assert.is(median([3, 1, 2]), 2);
  assert.is(median([4, 1, 3, 2]), 2.5);
  assert.is(median([7]), 7);
  assert.ok(Number.isNaN(median([])));
  const xs = [5, 1, 4];
  median(xs);
  assert.equal(xs, [5, 1, 4], 'the input is not sorted in place');
});

test('percentile: nearest rank of an ascending array', () => {
  const xs = Array.from({ length: 10 }, (_, i) => i + 1);
  assert.is(percentile(xs, 50), 5);
  assert.is(percentile(xs, 90), 9);
  assert.is(percentile(xs, 99), 10);
  assert.is(percentile(xs, 0), 1);
  assert.ok(Number.isNaN(percentile([], 50)));
});

/** The .ts files under bench/, recursively. */
function benchSources(d: string): string[] {
  return readdirSync(d).flatMap((name) => {
    const f = path.join(d, name);
    if (statSync(f).isDirectory()) return benchSources(f);
    return name.endsWith('.ts') ? [f] : [];
  });
}

test('no benchmark re-implements median (a function of that name, or the middle element of a sorted array)', () => {
  const files = benchSources(path.join(root, 'bench'));
  assert.ok(files.length > 20, `${files.length} files`);
  const definition = /\bfunction\s+median\s*[(<]|\b(?:const|let|var)\s+median\s*[=:]/;
  const middle = /\[\s*(?:Math\.floor\(\s*[\w.]+\.length\s*\/\s*2\s*\)|[\w.]+\.length\s*>>\s*1)\s*\]/;
  const offenders: string[] = [];
  for (const f of files) {
    const rel = path.relative(root, f);
    if (rel === path.join('bench', 'stats.ts')) continue;
    readFileSync(f, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        if (definition.test(line) || middle.test(line)) offenders.push(`${rel}:${i + 1}: ${line.trim()}`);
      });
  }
  assert.equal(offenders, []);
});

test.run();
