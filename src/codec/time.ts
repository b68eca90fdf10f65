/**
 * Timestamps of the eBADGE data model: ISO 8601 with a mandatory offset (D3.1.3 §4.2.4; data model §3.2 "ts").
 * A naive timestamp is refused with 454: the 2015 reference library silently labelled naive local times as UTC,
 * which shifts an activation by the hub's distance from Greenwich.
 *
 * EbTime is immutable and keeps both the instant (epoch milliseconds) and the offset it was written with, so a
 * message can be re-emitted as it came (`toOffsetString`) or in the canonical UTC form `YYYY-MM-DDTHH:mm:ss.sssZ`
 * (`toString`, `toJSON`). No date library: the calendar arithmetic is done here, for years 0000 to 9999.
 *
 * Accepted on input (lenient parse): `YYYY-MM-DDTHH:mm[:ss[.fraction]]` followed by `Z`, `±HH:MM`, `±HHMM` or `±HH`;
 * `t` / `z` in lower case and a space instead of `T` (RFC 3339 §5.6 allows both). Fractions beyond milliseconds
 * are truncated. Refused: naive times, invalid dates (February 30), hour 24, leap second 60 (JavaScript time cannot
 * hold it), offsets beyond ±23:59.
 */
import { throwRangeError } from '../core/errors.js';
import { refuse, shown } from './errors.js';

const PATTERN =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?$/;
const MS_PER_MINUTE = 60_000;
const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

export class EbTime {
  /** Milliseconds since 1970-01-01T00:00:00Z. */
  declare readonly epochMs: number;
  /** The offset from UTC the time was written with, in minutes (east positive); 0 for `Z`. */
  declare readonly offsetMinutes: number;
  private constructor(epochMs: number, offsetMinutes: number) {
    this.epochMs = epochMs;
    this.offsetMinutes = offsetMinutes;
  }

  /** Parses a timestamp; `path` names the field in the error (`activate.from`). */
  static parse(text: string, path = 'time'): EbTime {
    if (text.length === 24) {
      const fast = parseCanonical(text);
      if (fast !== null) return fast;
    }
    const m = text.length > 40 ? null : PATTERN.exec(text);
    if (m === null) refuse(454, path, `not an ISO 8601 timestamp: ${shown(text)}`);
    const [, y, mo, d, h, mi, s, frac, z, sign, oh, om] = m;
    if (z === undefined && sign === undefined) refuse(454, path, `time zone missing in ${shown(text)}`);
    const year = Number(y);
    const month = Number(mo);
    const day = Number(d);
    const hour = Number(h);
    const minute = Number(mi);
    const second = s === undefined ? 0 : Number(s);
    const ms = frac === undefined ? 0 : Number(frac.slice(0, 3).padEnd(3, '0'));
    if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) {
      refuse(454, path, `no such date in ${shown(text)}`);
    }
    if (hour > 23 || minute > 59 || second > 59) refuse(454, path, `no such time of day in ${shown(text)}`);
    let offset = 0;
    if (sign !== undefined) {
      const ohn = Number(oh);
      const omn = om === undefined ? 0 : Number(om);
      if (ohn > 23 || omn > 59) refuse(454, path, `invalid offset in ${shown(text)}`);
      offset = (sign === '-' ? -1 : 1) * (ohn * 60 + omn);
    }
    const local = daysFromCivil(year, month, day) * 86_400_000 + ((hour * 60 + minute) * 60 + second) * 1000 + ms;
    return new EbTime(local - offset * MS_PER_MINUTE, offset);
  }

  /** The time `epochMs`, to be written with `offsetMinutes` (default UTC). */
  static fromEpochMs(
    epochMs: number,
    offsetMinutes = 0,
    /** @internal the year is known to be in range */ checked = false,
  ): EbTime {
    if (checked) return new EbTime(epochMs, offsetMinutes);
    if (!Number.isFinite(epochMs) || !Number.isInteger(offsetMinutes) || Math.abs(offsetMinutes) > 23 * 60 + 59) {
      throwRangeError(`EbTime.fromEpochMs: invalid instant ${epochMs} or offset ${offsetMinutes}`);
    }
    const t = new EbTime(Math.trunc(epochMs), offsetMinutes);
    const year = civilFromDays(Math.floor((t.epochMs + offsetMinutes * MS_PER_MINUTE) / 86_400_000))[0];
    if (year < 0 || year > 9999) throwRangeError(`EbTime.fromEpochMs: year ${year} is outside 0000-9999`);
    return t;
  }

  static fromDate(date: Date): EbTime {
    return EbTime.fromEpochMs(date.getTime());
  }

  static now(): EbTime {
    return EbTime.fromEpochMs(Date.now());
  }

  /** The same instant `seconds` later (negative: earlier), keeping the offset. */
  plusSeconds(seconds: number): EbTime {
    return EbTime.fromEpochMs(this.epochMs + seconds * 1000, this.offsetMinutes);
  }

  /** Seconds from this time to `other` (positive when `other` is later). */
  secondsUntil(other: EbTime): number {
    return (other.epochMs - this.epochMs) / 1000;
  }

  /** Same instant (the offsets may differ). */
  equals(other: EbTime): boolean {
    return this.epochMs === other.epochMs;
  }

  compare(other: EbTime): number {
    return this.epochMs - other.epochMs;
  }

  toDate(): Date {
    return new Date(this.epochMs);
  }

  /** The canonical form: `YYYY-MM-DDTHH:mm:ss.sssZ`. */
  toString(): string {
    return format(this.epochMs, 0);
  }

  /** Writes the canonical form (24 ASCII bytes) at `pos` of `buf`, without making a string; returns the end. */
  writeCanonical(buf: Buffer, pos: number): number {
    const days = Math.floor(this.epochMs / 86_400_000);
    const [y, m, d] = civilFromDays(days);
    let rest = this.epochMs - days * 86_400_000;
    const ms = rest % 1000;
    rest = (rest - ms) / 1000;
    const sec = rest % 60;
    rest = (rest - sec) / 60;
    const min = rest % 60;
    const hour = (rest - min) / 60;
    put(buf, pos, y, 4);
    buf[pos + 4] = 0x2d;
    put(buf, pos + 5, m, 2);
    buf[pos + 7] = 0x2d;
    put(buf, pos + 8, d, 2);
    buf[pos + 10] = 0x54;
    put(buf, pos + 11, hour, 2);
    buf[pos + 13] = 0x3a;
    put(buf, pos + 14, min, 2);
    buf[pos + 16] = 0x3a;
    put(buf, pos + 17, sec, 2);
    buf[pos + 19] = 0x2e;
    put(buf, pos + 20, ms, 3);
    buf[pos + 23] = 0x5a;
    return pos + 24;
  }

  toJSON(): string {
    return this.toString();
  }

  /** The instant written with its original offset, e.g. `2015-06-01T10:00:00.000+02:00`. */
  toOffsetString(): string {
    return format(this.epochMs, this.offsetMinutes);
  }

  /** Comparisons with < and > work on the instant. */
  valueOf(): number {
    return this.epochMs;
  }
}

/** Writes `n` as exactly `width` decimal digits. */
function put(buf: Buffer, pos: number, n: number, width: number): void {
  for (let i = width - 1; i >= 0; i--) {
    const q = Math.floor(n / 10);
    buf[pos + i] = 0x30 + (n - q * 10);
    n = q;
  }
}

/**
 * The form we and most peers emit, `YYYY-MM-DDTHH:mm:ss.sssZ`, read without a regular expression; anything else
 * (or an impossible date) returns null and takes the general path, which also produces the error.
 */
function parseCanonical(s: string): EbTime | null {
  if (
    s.charCodeAt(4) !== 0x2d ||
    s.charCodeAt(7) !== 0x2d ||
    s.charCodeAt(10) !== 0x54 ||
    s.charCodeAt(13) !== 0x3a ||
    s.charCodeAt(16) !== 0x3a ||
    s.charCodeAt(19) !== 0x2e ||
    s.charCodeAt(23) !== 0x5a
  )
    return null;
  const year = digits(s, 0, 4);
  const month = digits(s, 5, 2);
  const day = digits(s, 8, 2);
  const hour = digits(s, 11, 2);
  const minute = digits(s, 14, 2);
  const second = digits(s, 17, 2);
  const ms = digits(s, 20, 3);
  if (
    year < 0 ||
    month < 1 ||
    month > 12 ||
    day < 1 ||
    hour < 0 ||
    hour > 23 ||
    minute < 0 ||
    minute > 59 ||
    second < 0 ||
    second > 59 ||
    ms < 0 ||
    day > daysInMonth(year, month)
  )
    return null;
  return EbTime.fromEpochMs(
    daysFromCivil(year, month, day) * 86_400_000 + ((hour * 60 + minute) * 60 + second) * 1000 + ms,
    0,
    true,
  );
}

/** The decimal number in `s[at, at + len)`, or -1 when a character is not a digit. */
function digits(s: string, at: number, len: number): number {
  let v = 0;
  for (let i = at; i < at + len; i++) {
    const c = s.charCodeAt(i) - 0x30;
    if (c < 0 || c > 9) return -1;
    v = v * 10 + c;
  }
  return v;
}

function isLeap(y: number): boolean {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}

function daysInMonth(y: number, m: number): number {
  return m === 2 ? (isLeap(y) ? 29 : 28) : (DAYS_IN_MONTH[m - 1] as number);
}

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
function daysFromCivil(y: number, m: number, d: number): number {
  y -= m <= 2 ? 1 : 0;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

/** The inverse: [year, month, day] of a day number (civil_from_days). */
function civilFromDays(z: number): [number, number, number] {
  z += 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp + (mp < 10 ? 3 : -9);
  return [yoe + era * 400 + (m <= 2 ? 1 : 0), m, d];
}

const pad2 = (n: number): string => (n < 10 ? '0' : '') + n;

function format(epochMs: number, offset: number): string {
  const local = epochMs + offset * MS_PER_MINUTE;
  const days = Math.floor(local / 86_400_000);
  const [y, m, d] = civilFromDays(days);
  let rest = local - days * 86_400_000;
  const ms = rest % 1000;
  rest = (rest - ms) / 1000;
  const sec = rest % 60;
  rest = (rest - sec) / 60;
  const min = rest % 60;
  const hour = (rest - min) / 60;
  const zone =
    offset === 0
      ? 'Z'
      : `${offset < 0 ? '-' : '+'}${pad2(Math.floor(Math.abs(offset) / 60))}:${pad2(Math.abs(offset) % 60)}`;
  return `${String(y).padStart(4, '0')}-${pad2(m)}-${pad2(d)}T${pad2(hour)}:${pad2(min)}:${pad2(sec)}.${String(ms).padStart(3, '0')}${zone}`;
}
