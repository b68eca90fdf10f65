/** EbTime: ISO 8601 with a mandatory offset, checked against the platform's Date as an independent oracle. */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DecodeError } from '../../../src/codec/errors.js';
import { EbTime } from '../../../src/codec/time.js';
import { Random } from '../../helpers/random.js';

const parse = suite('EbTime.parse');

parse('the D3.1.3 forms, with Z and with offsets, give the same instant as Date.parse', () => {
  for (const text of [
    '2015-06-01T10:00:00Z',
    '2015-06-01T10:00:00+02:00',
    '2015-06-01T10:00:00.123-05:30',
    '2015-06-01T10:00Z',
    '2016-02-29T23:59:59.999+14:00',
    '1970-01-01T00:00:00Z',
    '2038-01-19T03:14:08Z',
    '9999-12-31T23:59:59.999Z',
  ]) {
    const t = EbTime.parse(text);
    assert.is(t.epochMs, Date.parse(text), text);
    assert.is(t.toString(), new Date(Date.parse(text)).toISOString(), text);
  }
});

parse('offsets are kept: toOffsetString writes the instant as it came', () => {
  const t = EbTime.parse('2015-06-01T10:00:00+02:00');
  assert.is(t.offsetMinutes, 120);
  assert.is(t.toOffsetString(), '2015-06-01T10:00:00.000+02:00');
  assert.is(t.toString(), '2015-06-01T08:00:00.000Z');
  assert.is(EbTime.parse('2015-06-01T10:00:00-0330').toOffsetString(), '2015-06-01T10:00:00.000-03:30');
  assert.is(EbTime.parse('2015-06-01T10:00:00+05').offsetMinutes, 300);
  assert.is(EbTime.parse('2015-06-01T10:00:00-00:00').offsetMinutes, 0);
});

parse('lenient forms: lower-case t and z, a space, a comma, long fractions (truncated to ms)', () => {
  assert.is(EbTime.parse('2015-06-01t10:00:00z').toString(), '2015-06-01T10:00:00.000Z');
  assert.is(EbTime.parse('2015-06-01 10:00:00Z').toString(), '2015-06-01T10:00:00.000Z');
  assert.is(EbTime.parse('2015-06-01T10:00:00,5Z').toString(), '2015-06-01T10:00:00.500Z');
  assert.is(EbTime.parse('2015-06-01T10:00:00.123456789Z').toString(), '2015-06-01T10:00:00.123Z');
});

parse('a naive timestamp is refused with 454 and the path, never read as UTC', () => {
  try {
    EbTime.parse('2015-06-01T10:00:00', 'activate.from');
    assert.unreachable('parsed a naive time');
  } catch (err) {
    assert.instance(err, DecodeError);
    assert.is((err as DecodeError).code, 454);
    assert.is((err as DecodeError).path, 'activate.from');
    assert.is((err as DecodeError).message, 'activate.from: time zone missing in "2015-06-01T10:00:00" (454)');
  }
});

parse('malformed and impossible times are refused with 454', () => {
  for (const text of [
    '',
    'now',
    '2015-06-01',
    '10:00:00Z',
    '2015-6-1T10:00:00Z',
    '2015-06-01T10:00:00+2:00',
    '2015-02-29T00:00:00Z',
    '2100-02-29T00:00:00Z',
    '2015-13-01T00:00:00Z',
    '2015-00-10T00:00:00Z',
    '2015-04-31T00:00:00Z',
    '2015-06-01T24:00:00Z',
    '2015-06-01T10:60:00Z',
    '2015-06-31T23:59:60Z',
    '2015-06-01T10:00:00+24:00',
    '2015-06-01T10:00:00+01:60',
    '2015-06-01T10:00:00.Z',
    '2015-06-01T10:00:00Z ',
    ' 2015-06-01T10:00:00Z',
    '２０１５-06-01T10:00:00Z',
    `2015-06-01T10:00:00Z${'x'.repeat(1_000_000)}`,
  ]) {
    assert.throws(
      () => EbTime.parse(text),
      (e: DecodeError) => e instanceof DecodeError && e.code === 454,
      JSON.stringify(text.slice(0, 60)),
    );
  }
  const long = (() => {
    try {
      EbTime.parse('9'.repeat(100_000));
    } catch (e) {
      return (e as Error).message;
    }
    return '';
  })();
  assert.ok(long.length < 120, 'a huge input is cut short in the message');
});

parse('the canonical fast path refuses what the general parser refuses', () => {
  for (const text of [
    '2015-02-29T00:00:00.000Z',
    '2015-06-01T24:00:00.000Z',
    '2015-06-01T10:60:00.000Z',
    '2015-06-01T10:00:60.000Z',
    '2015-00-01T10:00:00.000Z',
    '2015-06-00T10:00:00.000Z',
    '2015-06-01T1a:00:00.000Z',
    '2015-06-01T10:00:00.000z',
  ]) {
    if (text.endsWith('z')) assert.is(EbTime.parse(text).toString(), text.toUpperCase());
    else
      assert.throws(
        () => EbTime.parse(text),
        (e: DecodeError) => e.code === 454,
        text,
      );
  }
});

parse('leap years: Feb 29 of 2000 and 2016 exist, of 1900 and 2015 do not', () => {
  assert.is(EbTime.parse('2000-02-29T12:00:00Z').toString(), '2000-02-29T12:00:00.000Z');
  assert.is(EbTime.parse('2016-02-29T12:00:00Z').toString(), '2016-02-29T12:00:00.000Z');
  assert.throws(() => EbTime.parse('1900-02-29T12:00:00Z'));
  assert.throws(() => EbTime.parse('2015-02-29T12:00:00Z'));
});

parse.run();

const props = suite('EbTime properties');

props('20,000 random instants and offsets: format matches Date, parse(format) is the identity', () => {
  const random = new Random(20151101);
  const rnd = (): number => random.next();
  for (let i = 0; i < 20_000; i++) {
    const ms = Math.floor(rnd() * 253402300799999); // 1970 .. 9999-12-31
    const offset = Math.floor(rnd() * (2 * 1439 + 1)) - 1439;
    let t: EbTime;
    try {
      t = EbTime.fromEpochMs(ms, offset);
    } catch {
      continue; // past 9999 once the offset is applied
    }
    assert.is(t.toString(), new Date(ms).toISOString());
    const back = EbTime.parse(t.toOffsetString());
    assert.is(back.epochMs, ms);
    assert.is(back.offsetMinutes, offset);
    assert.is(EbTime.parse(t.toString()).epochMs, ms);
    const buf = Buffer.alloc(26, 0x20);
    assert.is(t.writeCanonical(buf, 1), 25);
    assert.is(buf.toString('latin1', 1, 25), t.toString());
  }
});

props('arithmetic and comparison work on the instant', () => {
  const a = EbTime.parse('2015-06-01T10:00:00+02:00');
  const b = EbTime.parse('2015-06-01T08:00:00Z');
  assert.ok(a.equals(b));
  assert.is(a.compare(b), 0);
  const c = a.plusSeconds(900);
  assert.is(c.toOffsetString(), '2015-06-01T10:15:00.000+02:00');
  assert.is(a.secondsUntil(c), 900);
  assert.ok(c > a && a < c);
  assert.is(JSON.stringify({ at: c }), '{"at":"2015-06-01T08:15:00.000Z"}');
  assert.is(EbTime.fromDate(new Date(0)).toString(), '1970-01-01T00:00:00.000Z');
  assert.throws(() => EbTime.fromEpochMs(NaN), RangeError);
  assert.throws(() => EbTime.fromEpochMs(0, 24 * 60), RangeError);
  assert.throws(() => EbTime.fromEpochMs(253402300800000), RangeError);
});

props.run();
