/**
 * One pass over JSON text that finds what JSON.parse does not tell: where the first syntax error is (Node 20 and
 * later give no position for an unexpected token, and quote the text around it instead, which may be a secret),
 * and the first key written twice in one object (JSON.parse keeps the last one without a word; RFC 8259 §4 leaves
 * the choice open, so a peer may read another value than we do). The grammar is RFC 8259's, which is JSON.parse's.
 * Iterative, so that deep nesting cannot overflow the stack.
 */

export interface JsonScan {
  /** The offset of the first character JSON.parse cannot accept, text.length when the text ends too early. */
  readonly errorAt: number | undefined;
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
  const member = (frame: Frame): number => {
    ws();
    const e = string();
    if (e >= 0) return e;
    const key = stringEscaped ? (JSON.parse(text.slice(stringStart, i)) as string) : text.slice(stringStart + 1, i - 1);
    path = `${frame.path}.${key}`;
    if (frame.keys?.has(key)) duplicate ??= { path, key };
    frame.keys?.add(key);
    ws();
    if (i >= n) return n;
    if (text[i] !== ':') return i;
    i++;
    return -1;
  };
  const failAt = (errorAt: number): JsonScan => ({ errorAt, duplicate });

  for (;;) {
    // A value starts here.
    ws();
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
      const e = scalar();
      if (e >= 0) return failAt(e);
    }
    // A value ended: close what it ends, up to the next element or member.
    for (;;) {
      ws();
      const top = stack[stack.length - 1];
      if (top === undefined) return i < n ? failAt(i) : { errorAt: undefined, duplicate };
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
