/**
 * Message bodies that can be checked on arrival: bytes 0..9 hold the message index as ten ASCII digits, the rest is
 * a fixed pattern that depends only on the position. A body that was truncated, shifted, duplicated or mixed up with
 * another message fails bodyIndex().
 */

const DIGITS = 10;

function patternByte(pos: number): number {
  return (pos * 31 + 7) & 0xff;
}

/** The pattern for `size` bytes (index digits not yet written). */
function template(size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let j = 0; j < size; j++) b[j] = patternByte(j);
  return b;
}

function writeIndex(b: Buffer, i: number): void {
  if (b.length >= DIGITS) b.write(String(i).padStart(DIGITS, '0'), 0, DIGITS, 'latin1');
}

/** One body. */
export function makeBody(size: number, index: number): Buffer {
  const b = template(size);
  writeIndex(b, index);
  return b;
}

/** `n` distinct bodies in one slab (allocated before timing starts); body(i) is a view, no copy. */
export function makeBodies(n: number, size: number): (i: number) => Buffer {
  const t = template(size);
  const slab = Buffer.allocUnsafe(n * size);
  for (let i = 0; i < n; i++) {
    t.copy(slab, i * size);
    writeIndex(slab.subarray(i * size, (i + 1) * size), i);
  }
  return (i) => slab.subarray(i * size, (i + 1) * size);
}

/** The same body for every index (large messages: one buffer, sent n times). */
export function sameBody(size: number): (i: number) => Buffer {
  const b = makeBody(size, 0);
  return () => b;
}

const templates = new Map<number, Buffer>();

/** The index a body carries, or -1 when it is not exactly a body made by makeBody(size, i). */
export function bodyIndex(body: Buffer, size: number): number {
  if (body.length !== size) return -1;
  let t = templates.get(size);
  if (t === undefined) {
    t = template(size);
    templates.set(size, t);
  }
  if (size < DIGITS) return body.equals(t) ? 0 : -1;
  let i = 0;
  for (let j = 0; j < DIGITS; j++) {
    const d = (body[j] as number) - 0x30;
    if (d < 0 || d > 9) return -1;
    i = i * 10 + d;
  }
  return body.compare(t, DIGITS, size, DIGITS, size) === 0 ? i : -1;
}
