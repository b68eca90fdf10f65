/**
 * The key files' times are read without the codec, yet must accept exactly the times EbTime accepts, as the same
 * instants: checked on the edge cases and on random near-ISO strings, with EbTime.parse as the oracle.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { EbTime } from '../../../src/codec/time.js';
import { parseIsoTime } from '../../../src/crypto/iso-time.js';
import { fuzzIterations, fuzzSeed, Random } from '../../helpers/random.js';

const test = suite('parseIsoTime');

function ebTime(text: string): number | undefined {
  try {
    return EbTime.parse(text).epochMs;
  } catch {
    return undefined;
  }
}

test('the accepted forms give the instant EbTime gives', () => {
  for (const text of [
    '2026-03-01T12:00:00Z',
    '2026-03-01T13:00:00+02:00',
    '2026-03-01T12:00:00.123-05:30',
    '2026-03-01T12:00Z',
    '2024-02-29T23:59:59.999+14:00',
    '2026-03-01t12:00:00z',
    '2026-03-01 12:00:00Z',
    '2026-03-01T12:00:00,5Z',
    '2026-03-01T12:00:00.123456789Z',
    '2026-03-01T12:00:00-0330',
    '2026-03-01T12:00:00+05',
    '0000-01-01T00:00:00Z',
    '0099-12-31T23:59:59Z',
    '9999-12-31T23:59:59.999Z',
  ]) {
    const ms = parseIsoTime(text);
    assert.ok(ms !== undefined, text);
    assert.is(ms, ebTime(text), text);
  }
});

test('refused: no offset, no such date or time, offsets beyond 23:59, anything else', () => {
  for (const text of [
    '2026-01-01T00:00:00',
    '2026-01-01T00:00',
    '2026-01-01',
    '2026-13-01T00:00:00Z',
    '2026-00-01T00:00:00Z',
    '2025-02-29T00:00:00Z',
    '2026-04-31T00:00:00Z',
    '2026-01-00T00:00:00Z',
    '2026-01-01T24:00:00Z',
    '2026-01-01T23:60:00Z',
    '2026-01-01T23:59:60Z',
    '2026-01-01T00:00:00+24:00',
    '2026-01-01T00:00:00+23:60',
    '2026-01-01T00:00:00.Z',
    '2026-01-01T00:00:00.1234567890Z',
    ' 2026-01-01T00:00:00Z',
    `2026-01-01T00:00:00Z${' '.repeat(20)}`,
    'yesterday',
    '',
  ]) {
    assert.is(ebTime(text), undefined, `EbTime refuses ${JSON.stringify(text)}`);
    assert.is(parseIsoTime(text), undefined, JSON.stringify(text));
  }
});

test('random near-ISO strings: the same verdict and instant as EbTime', () => {
  const seed = fuzzSeed(0x150_7143);
  const r = new Random(seed);
  const two = (): string => String(r.int(100)).padStart(2, '0');
  let accepted = 0;
  const n = fuzzIterations(20_000);
  for (let i = 0; i < n; i++) {
    const seconds = r.pick(['', ':00', ':59', ':60', ':5', `:${two()}`]);
    const text = [
      r.pick(['2026', '0000', '0099', '9999', '1970', '2024', '2100', '1900']),
      `-${r.pick(['01', '02', '12', '13', '00', two()])}`,
      `-${r.pick(['01', '28', '29', '30', '31', '00', '32', two()])}`,
      r.pick(['T', 't', ' ', 'X']),
      `${r.pick(['00', '23', '24', two()])}:${r.pick(['00', '59', '60', two()])}`,
      seconds,
      seconds === '' ? '' : r.pick(['', '.1', '.123', '.123456789', '.1234567890', ',5', '.']),
      r.pick([
        '',
        'Z',
        'z',
        '+02:00',
        '-05:30',
        '+0200',
        '+02',
        '+24:00',
        '+23:59',
        '-00:60',
        '+2',
        `+${two()}:${two()}`,
      ]),
    ].join('');
    const expected = ebTime(text);
    assert.is(parseIsoTime(text), expected, `seed ${seed} iteration ${i}: ${JSON.stringify(text)}`);
    if (expected !== undefined) accepted++;
  }
  assert.ok(accepted > n / 50, `only ${accepted} of ${n} accepted: the generator misses the valid forms`);
});

test.run();
