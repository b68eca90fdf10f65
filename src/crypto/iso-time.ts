/**
 * The times of the key files (notBefore, notAfter): ISO 8601 with a mandatory offset, as the codec's EbTime reads
 * them, so that a keyring accepts exactly the times a message does; read here so that the crypto layer does not
 * depend on the codec. A naive time is refused: read as local or as UTC, it would start a key hours early or late.
 */

const PATTERN =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)$/;

/**
 * Epoch milliseconds of `YYYY-MM-DDTHH:mm[:ss[.fraction]]` followed by `Z`, `±HH:MM`, `±HHMM` or `±HH` (`t`, `z`
 * and a space for `T` too; fractions beyond milliseconds cut), or undefined for anything else: no offset, no such
 * date (February 30), hour 24, second 60, an offset beyond ±23:59.
 */
export function parseIsoTime(text: string): number | undefined {
  const m = text.length > 40 ? null : PATTERN.exec(text);
  if (m === null) return undefined;
  const [, y, mo, d, h, mi, s, fraction, , sign, oh, om] = m;
  const month = Number(mo);
  const day = Number(d);
  const [hour, minute, second] = [Number(h), Number(mi), Number(s ?? 0)];
  const [offsetH, offsetM] = [Number(oh ?? 0), Number(om ?? 0)];
  if (hour > 23 || minute > 59 || second > 59 || offsetH > 23 || offsetM > 59) return undefined;
  // setUTCFullYear, unlike Date.UTC, does not read the years 0 to 99 as 1900 to 1999.
  const date = new Date(0);
  date.setUTCFullYear(Number(y), month - 1, day);
  if (date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day) return undefined; // rolled over: no such date
  date.setUTCHours(hour, minute, second, Number((fraction ?? '').slice(0, 3).padEnd(3, '0')));
  return date.getTime() - (sign === '-' ? -1 : 1) * (offsetH * 60 + offsetM) * 60_000;
}
