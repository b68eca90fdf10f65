/**
 * Where bytes stop being UTF-8. Node's decoders replace a bad sequence with U+FFFD without a word, and buffer.isUtf8
 * (Node 18.14 and later) says only yes or no; this says where, so that a refusal can name the place. It is a plain
 * loop, meant for the rare body that already decoded to text containing U+FFFD, not for every body.
 */

/**
 * The offset of the first byte that does not belong to a well-formed UTF-8 sequence (Unicode 15 §3.9, table 3-7:
 * no overlong forms, no surrogates, nothing above U+10FFFF; a sequence cut short by the end counts at its start), or
 * -1 when all of `b` is UTF-8.
 */
export function invalidUtf8At(b: Uint8Array): number {
  const n = b.length;
  let i = 0;
  while (i < n) {
    const c = b[i] as number;
    if (c < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      if (c === 0xe0)
        lo = 0xa0; // overlong below U+0800
      else if (c === 0xed) hi = 0x9f; // UTF-16 surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      if (c === 0xf0)
        lo = 0x90; // overlong below U+10000
      else if (c === 0xf4) hi = 0x8f; // above U+10FFFF
    } else return i; // 0x80-0xc1 (a continuation or an overlong lead), 0xf5-0xff
    if (i + need >= n) return i; // cut short by the end
    const second = b[i + 1] as number;
    if (second < lo || second > hi) return i;
    for (let k = 2; k <= need; k++) {
      const x = b[i + k] as number;
      if (x < 0x80 || x > 0xbf) return i;
    }
    i += need + 1;
  }
  return -1;
}

/** A surrogate not in a pair (a `u` regex reads a pair as one code point): what no UTF-8 can carry. */
export const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/**
 * `s` cut to at most `max` UTF-16 units for a message field, never inside a surrogate pair, lone surrogates replaced
 * by U+FFFD: a text of ours (an error, a reason) with half a pair is what peers' decoders refuse (ours with 400).
 */
export function fieldText(s: string, max: number): string {
  const whole = LONE_SURROGATE.test(s) ? s.replace(new RegExp(LONE_SURROGATE.source, 'gu'), '\uFFFD') : s;
  if (whole.length <= max) return whole;
  const end = max > 0 && (whole.charCodeAt(max - 1) & 0xfc00) === 0xd800 ? max - 1 : max;
  return whole.slice(0, end);
}
