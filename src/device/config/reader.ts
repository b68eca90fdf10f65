/**
 * Reading checked values out of parsed JSON, each with its JSON path, so that a message says where and what: the
 * value found is described (never a password), an unknown key gets the known key it was probably meant to be.
 */

import { isObject } from '../../core/is-object.js';
import { cut } from '../../core/shown.js';
import { ConfigError } from './types.js';

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
/** userinfo with a password in any URL-like text: `//user:secret@`. */
const URL_PASSWORD = /(\/\/[^/?#@:\s]*):[^/?#@\s]*@/g;

/**
 * Reads of the keys of `o`, found at `path`: `at('prefetch', 10)` is `[o.prefetch ?? 10, '<path>.prefetch']`, the
 * value and the path that a Reader method takes first (`r.integer(...at('prefetch', 10), 1, 1000)`); without a
 * default, the value as it is (null stays null). Each key is then written once, not as a property and in a path.
 */
export function keysOf(o: Record<string, unknown>, path: string) {
  return (key: string, ...otherwise: [unknown?]): [unknown, string] => [
    otherwise.length > 0 ? (o[key] ?? otherwise[0]) : o[key],
    `${path}.${key}`,
  ];
}

/** Reads JSON values with the path of each one, so that every error names what was wrong and where. */
export class Reader {
  declare readonly file: string;
  constructor(file: string) {
    this.file = file;
  }

  fail(path: string, expected: string, found: string): never {
    throw new ConfigError(this.file, path, expected, found);
  }

  /** An object whose keys are all in `known`: an unknown one is reported before anything is read from it. */
  object(v: unknown, path: string, known: readonly string[]): Record<string, unknown> {
    if (!isObject(v)) this.fail(path, 'an object', describe(v, path));
    const o = v as Record<string, unknown>;
    for (const key of Object.keys(o)) {
      if (known.includes(key)) continue;
      const hint = suggest(key, known);
      this.fail(
        keyPath(path, key),
        `one of the keys ${known.join(', ')}`,
        `unknown key ${shown(key)}${hint === undefined ? '' : ` (did you mean "${hint}"?)`}`,
      );
    }
    return o;
  }

  array(v: unknown, path: string, what: string, minLength = 0): unknown[] {
    if (!Array.isArray(v)) this.fail(path, what, describe(v, path));
    if (v.length < minLength) this.fail(path, what, 'an empty array');
    return v;
  }

  string(v: unknown, path: string, what = 'a non-empty string'): string {
    if (typeof v !== 'string' || v === '') this.fail(path, what, describe(v, path));
    return v;
  }

  /** A file name: any non-empty string, but no NUL (the system calls would refuse it later, far from here). */
  path(v: unknown, path: string, what = 'a file path'): string {
    if (typeof v !== 'string' || v === '' || v.includes('\0')) this.fail(path, what, describe(v, path));
    return v;
  }

  pattern(v: unknown, path: string, re: RegExp, what: string): string {
    if (typeof v !== 'string' || !re.test(v)) this.fail(path, what, describe(v, path));
    return v;
  }

  oneOf<T extends string>(v: unknown, path: string, values: readonly T[]): T {
    if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
      this.fail(path, `one of ${values.map((x) => `"${x}"`).join(', ')}`, describe(v, path));
    }
    return v as T;
  }

  boolean(v: unknown, path: string): boolean {
    if (typeof v !== 'boolean') this.fail(path, 'true or false', describe(v, path));
    return v;
  }

  number(v: unknown, path: string, what: string, ok: (n: number) => boolean): number {
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) this.fail(path, what, describe(v, path));
    return v;
  }

  integer(v: unknown, path: string, min: number, max: number): number {
    return this.number(v, path, `an integer from ${min} to ${max}`, (n) => Number.isInteger(n) && n >= min && n <= max);
  }

  /** A power in kW, above 0 and at most 100,000 (no home device comes near; 1e308 made capacities infinite). */
  power(v: unknown, path: string): number {
    return this.number(v, path, 'a power in kW, greater than 0 and at most 100000', (n) => n > 0 && n <= 100_000);
  }

  /** argv of a program run without a shell: a string would be split by nobody, so it is refused. */
  argv(v: unknown, path: string): string[] {
    const what =
      'a non-empty array of strings (the argv of a program run without a shell, e.g. ["/usr/local/bin/read-meter", "--json"])';
    return this.array(v, path, what, 1).map((a, i) => this.string(a, `${path}[${i}]`));
  }
}

function keyPath(path: string, key: string): string {
  return IDENTIFIER.test(key) ? `${path}.${key}` : `${path}[${shown(key)}]`;
}

/** A string inside a message: quoted, cut short, and with any URL password replaced. */
export function shown(s: string): string {
  return JSON.stringify(cut(s, 60).replace(URL_PASSWORD, '$1:***@'));
}

/** What was found instead, for a message; the values of password* fields are never quoted. */
export function describe(v: unknown, path: string): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return v.length === 0 ? 'an empty array' : 'an array';
  if (typeof v === 'string') {
    if (/\.password[^.[]*$/i.test(path)) return v === '' ? 'an empty string' : 'a string';
    return v === '' ? 'an empty string' : shown(v);
  }
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return typeof v === 'object' ? 'an object' : typeof v;
}

/** The known key the unknown one was probably meant to be: same letters but for case, or one or two typos. */
/** The one of `known` within two edits of `key` (a typo), if any. */
export function suggest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const k of known) {
    const d = k.toLowerCase() === key.toLowerCase() ? 0 : distance(key, k);
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best;
}

function distance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2 || a.length > 64) return 3;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row.push(Math.min((prev[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost));
    }
    prev = row;
  }
  return prev[b.length] ?? 3;
}
