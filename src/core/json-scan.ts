/**
 * One pass over JSON text that finds what JSON.parse does not tell: where the first syntax error is (Node 20 and
 * later give no position for an unexpected token, and quote the text around it instead, which may be a secret),
 * and the first key written twice in one object (JSON.parse keeps the last one without a word; RFC 8259 §4 leaves
 * the choice open, so a peer may read another value than we do). The grammar is RFC 8259's, which is JSON.parse's.
 * Iterative, so that deep nesting cannot overflow the stack.
 *
 * exceedsBounds() is the cheap counterpart on bytes, for what must be refused before JSON.parse builds a tree: how
 * deep the text nests and how many of the values that cost memory it holds.
 */

export interface JsonScan {
  /** The offset of the first character JSON.parse cannot accept, text.length when the text ends too early. */
  readonly errorAt: number | undefined;
  /** What was expected at errorAt, in words (`a comma or }`), with the usual slip of a hand-edited file named. */
  readonly expected: string | undefined;
  /** The first key written twice in one object before errorAt: its path (`$.devices[1].name`) and the key. */
  readonly duplicate: { readonly path: string; readonly key: string } | undefined;
}

interface Frame {
  /** The keys seen in this object; null for an array. */
  readonly keys: Set<string> | null;
  readonly path: string;
  index: number;
}

/** Scans `text`; paths start at `root` and go on with `.key` and `[index]`. */
export function scanJson(text: string, root = '$'): JsonScan {
  const { errorAt, expected, duplicate } = scan(text, root);
  return { errorAt, expected, duplicate };
}

const VALUE = 'a value (a string in double quotes, a number, true, false, null, an object or an array)';
const KEY = 'a key in double quotes';
const STRING = 'a valid string (no control character, a known escape)';

/** The slips JSON.parse refuses in a file written by hand, named after what was expected at `at`. */
function slip(text: string, at: number, expected: string): string {
  const c = text[at];
  if (c === "'") return `${expected}: JSON takes double quotes, not single`;
  if (c === '/' || c === '#') return `${expected}: JSON has no comments`;
  const closes = expected === VALUE ? ']' : expected === KEY ? '}' : undefined;
  if (c !== undefined && c === closes && /,\s*$/.test(text.slice(Math.max(0, at - 64), at)))
    return `${expected}: no comma may come before a closing ${c}`;
  return expected;
}

/**
 * The path of the value that `text` is in at `offset` (a UTF-16 index): `$.devices[1].name` inside that string or
 * number, `$.devices[1]` between its members. For error messages about a place found otherwise (a byte that is not
 * UTF-8, a nesting limit), so it may cost a scan of everything before the offset.
 */
export function pathAt(text: string, offset: number, root = '$'): string {
  return scan(text.slice(0, offset), root).path;
}

function scan(text: string, root: string): JsonScan & { path: string } {
  const n = text.length;
  const stack: Frame[] = [];
  let duplicate: JsonScan['duplicate'];
  let i = 0;
  let path = root; // of the value about to start
  let stringStart = 0;
  let stringEscaped = false;

  const ws = (): void => {
    for (let c = text.charCodeAt(i); c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d; c = text.charCodeAt(++i));
  };
  const digits = (): boolean => {
    const start = i;
    for (let c = text.charCodeAt(i); c >= 0x30 && c <= 0x39; c = text.charCodeAt(++i));
    return i > start;
  };
  // Each of these moves i past what it read and returns -1, or returns the offset of the error.
  const string = (): number => {
    if (text[i] !== '"') return i;
    stringStart = i++;
    stringEscaped = false;
    for (;;) {
      if (i >= n) return n;
      const c = text.charCodeAt(i);
      if (c === 0x22) break;
      if (c < 0x20) return i;
      if (c !== 0x5c) {
        i++;
        continue;
      }
      stringEscaped = true;
      const e = text[++i];
      if (e === undefined) return n;
      if (e === 'u') {
        for (let k = 1; k <= 4; k++) {
          if (i + k >= n) return n;
          if (!/[0-9A-Fa-f]/.test(text[i + k] ?? '')) return i + k;
        }
        i += 5;
      } else if ('"\\/bfnrt'.includes(e)) {
        i++;
      } else {
        return i;
      }
    }
    i++;
    return -1;
  };
  const scalar = (): number => {
    const c = text[i];
    if (c === '"') return string();
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) {
      if (c === '-') i++;
      if (text[i] === '0') i++;
      else if (!digits()) return Math.min(i, n);
      if (text[i] === '.') {
        i++;
        if (!digits()) return Math.min(i, n);
      }
      if (text[i] === 'e' || text[i] === 'E') {
        i++;
        if (text[i] === '+' || text[i] === '-') i++;
        if (!digits()) return Math.min(i, n);
      }
      return -1;
    }
    for (const word of ['true', 'false', 'null']) {
      if (c !== word[0]) continue;
      for (let k = 0; k < word.length; k++) {
        if (i + k >= n) return n;
        if (text[i + k] !== word[k]) return i + k;
      }
      i += word.length;
      return -1;
    }
    return Math.min(i, n);
  };
  // After "{" or ",": a key and a colon.
  let expected = VALUE;
  const member = (frame: Frame): number => {
    path = frame.path; // until the key is read, the place is the object itself
    ws();
    expected = text[i] === '"' ? STRING : KEY;
    const e = string();
    if (e >= 0) return e;
    const key = stringEscaped ? (JSON.parse(text.slice(stringStart, i)) as string) : text.slice(stringStart + 1, i - 1);
    path = `${frame.path}.${key}`;
    if (frame.keys?.has(key)) duplicate ??= { path, key };
    frame.keys?.add(key);
    ws();
    expected = 'a colon after the key';
    if (i >= n) return n;
    if (text[i] !== ':') return i;
    i++;
    return -1;
  };
  const failAt = (errorAt: number): JsonScan & { path: string } => ({
    errorAt,
    expected: slip(text, errorAt, expected),
    duplicate,
    path,
  });

  for (;;) {
    // A value starts here.
    ws();
    expected = VALUE;
    if (i >= n) return failAt(n);
    const c = text[i];
    if (c === '{' || c === '[') {
      i++;
      ws();
      if (text[i] !== (c === '{' ? '}' : ']')) {
        const frame: Frame = { keys: c === '{' ? new Set() : null, path, index: 0 };
        stack.push(frame);
        if (frame.keys === null) path = `${path}[0]`;
        else {
          const e = member(frame);
          if (e >= 0) return failAt(e);
        }
        continue;
      }
      i++;
    } else {
      if (c === '"') expected = STRING;
      const e = scalar();
      if (e >= 0) return failAt(e);
    }
    // A value ended: close what it ends, up to the next element or member.
    for (;;) {
      ws();
      const top = stack[stack.length - 1];
      expected = top === undefined ? 'the end of the text' : `a comma or ${top.keys === null ? ']' : '}'}`;
      if (top === undefined)
        return i < n ? failAt(i) : { errorAt: undefined, expected: undefined, duplicate, path: root };
      if (i >= n) return failAt(n);
      const d = text[i];
      if (d === ',') {
        i++;
        if (top.keys === null) path = `${top.path}[${++top.index}]`;
        else {
          const e = member(top);
          if (e >= 0) return failAt(e);
        }
        break;
      }
      if (d !== (top.keys === null ? ']' : '}')) return failAt(i);
      stack.pop();
      i++;
    }
  }
}

/** Where a text goes over a bound of exceedsBounds(): the byte offset, and which bound. */
export interface JsonExcess {
  readonly at: number;
  readonly bound: 'depth' | 'values';
}

/**
 * Checks, in one pass over the bytes of JSON text (UTF-8), that it nests at most `maxDepth` arrays and objects deep
 * and holds at most `maxValues` of the values that cost memory once parsed: arrays, objects and object members (a
 * key and its value). Array items that are numbers, strings, true, false or null are not counted: parsed, they cost
 * about what their bytes do, which a byte limit bounds; an object member or a container costs many times its bytes
 * (a key is an interned string and a property slot; an empty object is a few words for two bytes).
 *
 * Brackets and colons inside strings are skipped, escapes included. Nothing is validated: JSON.parse does that next,
 * and text that is not JSON ends the scan early (an unterminated string) or is counted as it stands. Returns the
 * first place where a bound is exceeded, or undefined.
 */
export function exceedsBounds(b: Uint8Array, maxDepth: number, maxValues: number): JsonExcess | undefined {
  const n = b.length;
  let depth = 0;
  let values = 0;
  for (let i = 0; i < n; ) {
    const c = b[i++] as number;
    if (c === 0x22) {
      for (;;) {
        if (i >= n) return undefined;
        const d = b[i++] as number;
        if (d === 0x22) break;
        if (d === 0x5c) i++;
      }
    } else if (c === 0x3a) {
      if (++values > maxValues) return { at: i - 1, bound: 'values' };
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) return { at: i - 1, bound: 'depth' };
      if (++values > maxValues) return { at: i - 1, bound: 'values' };
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  return undefined;
}

/**
 * A quick test that `b` cannot exceed the bounds of exceedsBounds(): when its bytes hold at most `maxDepth` opening
 * brackets and at most `budget` brackets and colons in all (strings included: an over-count), neither bound can be
 * reached. Counted with Buffer.indexOf, whose native search skips the numbers and strings between them, and given up
 * after `budget` hits: a large report of a few arrays passes in a few calls, a body of many objects goes to the scan.
 */
export function withinBounds(b: Buffer, maxDepth: number, maxValues: number, budget = 64): boolean {
  let left = Math.min(budget, maxValues);
  let opens = 0;
  for (const c of [0x5b, 0x7b, 0x3a]) {
    for (let i = b.indexOf(c); i !== -1; i = b.indexOf(c, i + 1)) {
      if (--left < 0) return false;
      if (c !== 0x3a && ++opens > maxDepth) return false;
    }
  }
  return true;
}
