/**
 * Finds a key written twice in one JSON object. JSON.parse keeps the last one silently, and a peer whose parser
 * keeps the first would then read another message than we do (RFC 8259 §4 leaves the choice open; RFC 7493 I-JSON
 * forbids duplicates). This scanner runs only when the decoder's colon count says a key went missing, so it may
 * be simple rather than fast. The text is known to be valid JSON: JSON.parse accepted it.
 */

interface Frame {
  /** Keys seen so far; null for an array. */
  keys: Set<string> | null;
  path: string;
  index: number;
  expectKey: boolean;
}

/** How many times the scanner ran: the tests check that valid messages never need it (a miscount would). */
export let duplicateScans = 0;

/** The path of the first duplicate key (`activate.from`, `report.values.total.p`), or null when there is none. */
export function findDuplicateKey(text: string, root: string): string | null {
  duplicateScans++;
  const stack: Frame[] = [];
  let pending = root; // the path of the value about to start
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    const top = stack[stack.length - 1];
    if (c === 0x7b || c === 0x5b) {
      // { [
      stack.push({ keys: c === 0x7b ? new Set() : null, path: pending, index: 0, expectKey: true });
      if (c === 0x5b) pending = `${pending}[0]`;
      i++;
    } else if (c === 0x7d || c === 0x5d) {
      // } ]
      stack.pop();
      i++;
    } else if (c === 0x2c) {
      // ,
      if (top !== undefined) {
        if (top.keys === null) pending = `${top.path}[${++top.index}]`;
        else top.expectKey = true;
      }
      i++;
    } else if (c === 0x22) {
      // "
      let end = i + 1;
      let escaped = false;
      while (text.charCodeAt(end) !== 0x22) {
        if (text.charCodeAt(end) === 0x5c) {
          escaped = true;
          end++;
        }
        end++;
      }
      if (top !== undefined && top.keys !== null && top.expectKey) {
        const key = escaped ? (JSON.parse(text.slice(i, end + 1)) as string) : text.slice(i + 1, end);
        pending = `${top.path}.${key}`;
        if (top.keys.has(key)) return pending;
        top.keys.add(key);
        top.expectKey = false;
      }
      i = end + 1;
    } else {
      i++; // whitespace, ':', and the characters of numbers and literals
    }
  }
  return null;
}
