/**
 * The JSON file reader shared by the hub's configuration and the key files, and the scanner under it: the scanner
 * accepts exactly what JSON.parse accepts and puts an error where JSON.parse does whenever the platform states a
 * position (Node 18 for every error but a truncated text, Node 20 and later only for some), finds the first key
 * written twice with its path, and the reader's messages never quote the file.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { scanJson } from '../../../src/core/json-scan.js';
import { JsonFileError, MAX_JSON_FILE_BYTES, readJsonFile } from '../../../src/store/json-file.js';
import { fuzzIterations, fuzzSeed, Random } from '../../helpers/random.js';

const VALUE = 'a value (a string in double quotes, a number, true, false, null, an object or an array)';

const scan = suite('scanJson');

/** A random JSON text: nested objects and arrays, keys that repeat now and then, escapes, odd spacing. */
function randomJson(r: Random, depth = 0): string {
  const roll = r.next();
  if (depth > 4 || roll < 0.3)
    return r.pick(['1', '-0.5e+3', '"s"', 'true', 'false', 'null', '"\\u00e9\\n"', '0', '[]', '{}', '1E-2']);
  if (roll < 0.6) {
    const items = Array.from({ length: r.int(4) }, () => randomJson(r, depth + 1));
    return `[${items.join(r.pick([',', ' , ', ',\n']))}]`;
  }
  const keys = ['a', 'b', 'c', 'a.b', 'x y', 'é', 'k\\u0061', '\\"q', ''];
  const members = Array.from(
    { length: r.int(5) },
    () => `"${r.pick(keys)}"${r.pick([':', ' : '])}${randomJson(r, depth + 1)}`,
  );
  return `{${members.join(',')}}`;
}

/** The text with a few characters inserted, deleted, or everything after some point cut off. */
function damaged(r: Random, text: string): string {
  const junk = [
    ',',
    ':',
    '{',
    '}',
    '[',
    ']',
    '"',
    '\\',
    'x',
    '0',
    '01',
    '-',
    '.',
    'e',
    ' ',
    '\n',
    'tru',
    '\u0001',
    "'",
  ];
  let out = text;
  for (let k = r.range(1, 3); k > 0; k--) {
    const at = r.int(out.length + 1);
    const op = r.next();
    if (op < 0.4) out = out.slice(0, at) + r.pick(junk) + out.slice(at);
    else if (op < 0.7) out = out.slice(0, at) + out.slice(at + 1);
    else out = out.slice(0, at);
  }
  return out;
}

scan('accepts what JSON.parse accepts, and errs where JSON.parse says it does', () => {
  const seed = fuzzSeed(0x15_0a_75);
  const r = new Random(seed);
  let stated = 0;
  for (let i = 0; i < fuzzIterations(20_000); i++) {
    const valid = randomJson(r);
    const text = r.bool() ? valid : damaged(r, valid);
    let message: string | undefined;
    try {
      JSON.parse(text);
    } catch (err) {
      message = (err as Error).message;
    }
    const { errorAt } = scanJson(text);
    const where = `seed ${seed} iteration ${i}: ${JSON.stringify(text)}`;
    assert.is(errorAt === undefined, message === undefined, `${where}: JSON.parse says ${message ?? 'valid'}`);
    const position = message === undefined ? undefined : /at position (\d+)/.exec(message)?.[1];
    if (position !== undefined) {
      stated++;
      assert.is(errorAt, Number(position), `${where}: ${message}`);
    }
    if (message === 'Unexpected end of JSON input') assert.is(errorAt, text.length, where);
  }
  assert.ok(stated > 100, `only ${stated} positions stated by JSON.parse`);
});

scan('the first key written twice, with its path; keys compared as JSON.parse decodes them', () => {
  const dup = (text: string, root?: string) => scanJson(text, root).duplicate;
  assert.equal(dup('{"a":1,"a":2}'), { path: '$.a', key: 'a' });
  assert.equal(dup('[0, {"x": {"k": 1, "j": [], "k": 2}}]'), { path: '$[1].x.k', key: 'k' });
  assert.equal(dup('{"\\u0061": 1, "a": 2}'), { path: '$.a', key: 'a' });
  assert.equal(dup('{"a.b": 1, "a.b": 2, "c": 1, "c": 2}'), { path: '$.a.b', key: 'a.b' });
  assert.equal(dup('{"report": {"p": 1, "p": 2}}', 'msg'), { path: 'msg.report.p', key: 'p' });
  assert.is(dup('{"a": {"a": {"a": 1}}, "b": [{"a": 1}, {"a": 2}]}'), undefined, 'the same key in other objects');
  assert.is(dup('{"a": 1, "A": 2, "a ": 3}'), undefined);
  assert.equal(scanJson('{"a": 1, "a": 2, ]'), {
    errorAt: 17,
    expected: 'a key in double quotes',
    duplicate: { path: '$.a', key: 'a' },
  });
});

scan('deep nesting does not overflow the stack', () => {
  const deep = `${'['.repeat(200_000)}${']'.repeat(200_000)}`;
  assert.is(scanJson(deep).errorAt, undefined);
  assert.is(scanJson(deep.slice(0, -1)).errorAt, deep.length - 1);
  assert.is(scanJson(`${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}`).errorAt, undefined);
});

const file = suite('readJsonFile');

function inTempDir(fn: (dir: string) => void): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'heh-json-file-'));
  try {
    fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function refusal(fn: () => unknown): JsonFileError {
  try {
    fn();
  } catch (err) {
    if (err instanceof JsonFileError) return err;
    throw err;
  }
  throw new Error('expected a JsonFileError');
}

file('a valid file is its parsed value; a byte order mark is skipped', () =>
  inTempDir((dir) => {
    const f = path.join(dir, 'a.json');
    fs.writeFileSync(f, '\ufeff{"a": [1, {"b": null}], "c": "\\u00e9"}\n');
    assert.equal(readJsonFile(f), { a: [1, { b: null }], c: 'é' });
  }),
);

file('a missing file, a directory: UNREADABLE with the system code', () =>
  inTempDir((dir) => {
    const missing = path.join(dir, 'nope.json');
    const e1 = refusal(() => readJsonFile(missing));
    assert.equal([e1.code, e1.fault, e1.file], ['UNREADABLE', { code: 'UNREADABLE', errno: 'ENOENT' }, missing]);
    assert.is(e1.message, `${missing}: cannot read (ENOENT)`);
    assert.equal(refusal(() => readJsonFile(dir)).fault, { code: 'UNREADABLE', errno: 'EISDIR' });
  }),
);

file('a file past 16 MiB, or one without an end: TOO_LARGE, read no further', () =>
  inTempDir((dir) => {
    const f = path.join(dir, 'big.json');
    // Exactly the limit is read (and parsed: the spaces around a number are valid JSON).
    fs.writeFileSync(f, `1${' '.repeat(MAX_JSON_FILE_BYTES - 1)}`);
    assert.is(readJsonFile(f), 1);
    fs.appendFileSync(f, ' ');
    const e = refusal(() => readJsonFile(f));
    assert.equal([e.code, e.fault], ['TOO_LARGE', { code: 'TOO_LARGE', limit: MAX_JSON_FILE_BYTES }]);
    assert.is(e.message, `${f}: more than 16 MiB, not read (a JSON file here is kilobytes)`);
    if (fs.existsSync('/dev/zero')) assert.is(refusal(() => readJsonFile('/dev/zero')).code, 'TOO_LARGE');
  }),
);

file(
  "a hand-edited file's usual slips are named: a trailing comma, single quotes, a comment, a missing comma or colon",
  () => {
    const expected = (text: string) => scanJson(text).expected;
    assert.is(expected('{"a": 1,\n}'), 'a key in double quotes: no comma may come before a closing }');
    assert.is(expected('[1, 2, ]'), `${VALUE}: no comma may come before a closing ]`);
    assert.is(expected("{'a': 1}"), 'a key in double quotes: JSON takes double quotes, not single');
    assert.is(expected('{"a": \'x\'}'), `${VALUE}: JSON takes double quotes, not single`);
    assert.is(expected('{\n  // the meter\n  "a": 1}'), 'a key in double quotes: JSON has no comments');
    assert.is(expected('{"a": 1 # the meter\n}'), 'a comma or }: JSON has no comments');
    assert.is(expected('{"a": 1\n "b": 2}'), 'a comma or }');
    assert.is(expected('[1 2]'), 'a comma or ]');
    assert.is(expected('{"a" 1}'), 'a colon after the key');
    assert.is(expected('{"a": "x\u0001"}'), 'a valid string (no control character, a known escape)');
    assert.is(expected('{"a": 1} x'), 'the end of the text');
    assert.is(expected('{"a": [1, 2], "b": {}}'), undefined);
  },
);

file('a syntax error: line and column, whether the text ends early, and nothing of the text', () =>
  inTempDir((dir) => {
    const f = path.join(dir, 'secret.json');
    fs.writeFileSync(f, '{\n  "seed": "SUPERSECRET",\n  "x": SUPERSECRET\n}');
    const e1 = refusal(() => readJsonFile(f));
    assert.equal(e1.fault, { code: 'SYNTAX', line: 3, column: 8, endsEarly: false, expected: VALUE });
    assert.is(e1.message, `${f}: invalid JSON at line 3 column 8: expected ${VALUE}`);
    assert.is(e1.detail, `invalid JSON at line 3 column 8: expected ${VALUE}`);
    fs.writeFileSync(f, '{"seed": "SUPERSECRET');
    const e2 = refusal(() => readJsonFile(f));
    assert.equal(e2.fault, { code: 'SYNTAX', line: 1, column: 22, endsEarly: true });
    assert.is(e2.detail, 'invalid JSON at line 1 column 22 (the text ends too early)');
    for (const e of [e1, e2]) {
      assert.not.ok(`${e.message} ${e.stack}`.includes('SUPERS'), e.message);
      assert.is((e as { cause?: unknown }).cause, undefined);
    }
  }),
);

file('a key written twice: its path; a syntax error after it wins', () =>
  inTempDir((dir) => {
    const f = path.join(dir, 'a.json');
    fs.writeFileSync(f, '{"peers": {"vpp": {}, "vpp": {}}}');
    const e = refusal(() => readJsonFile(f));
    assert.equal(e.fault, { code: 'DUPLICATE_KEY', path: '$.peers.vpp', key: 'vpp' });
    assert.is(e.message, `${f}: $.peers.vpp: the key "vpp" a second time`);
    fs.writeFileSync(f, '{"a": 1, "a": 2,}');
    assert.is(refusal(() => readJsonFile(f)).code, 'SYNTAX');
  }),
);

scan.run();
file.run();
