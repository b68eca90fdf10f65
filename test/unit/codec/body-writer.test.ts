/**
 * The codec's bodyWriter (src/codec/index.ts) and bodyBytes (src/core/body-writer.ts): the bytes written are
 * encode()'s, at the offset given and nowhere else; too little room is MORE_ROOM with nothing promised about the
 * bytes written, never an error; the next writer of a type is hinted with the size of the last; an invalid message
 * throws its EncodeError whatever the room; bodyBytes materialises a writer (asking for more room as needed) and
 * returns bytes as they are.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bodyWriter, EbTime, EncodeError, encode, type Message } from '../../../src/codec/index.js';
import { bodyBytes, MORE_ROOM } from '../../../src/core/body-writer.js';

const report = (values: number): Message<'report'> => ({
  msg: 'report',
  from: EbTime.fromEpochMs(Date.UTC(2026, 0, 1)),
  to: EbTime.fromEpochMs(Date.UTC(2026, 0, 1) + values * 60_000),
  resolution: 60,
  values: { 'meter.p': Array.from({ length: values }, (_, i) => i / 3) },
});

const t = suite('body writer');

t("writes encode()'s bytes at its offset, and nothing outside [offset, end)", () => {
  const m = report(10);
  const expected = encode(m);
  const buf = Buffer.alloc(expected.length + 20, 0xee);
  const end = bodyWriter(m).writeTo(buf, 7, buf.length - 3);
  assert.is(end, 7 + expected.length);
  assert.equal(buf.subarray(7, end), expected);
  assert.ok(buf.subarray(0, 7).every((b) => b === 0xee));
  assert.ok(buf.subarray(end).every((b) => b === 0xee));
});

t('too little room is MORE_ROOM; the next writer of a type starts from the size of the last', () => {
  const m = report(200);
  const size = encode(m).length;
  const w = bodyWriter(m);
  const buf = Buffer.alloc(size * 2, 0xee);
  assert.is(w.writeTo(buf, 0, size - 1), MORE_ROOM);
  assert.ok(
    buf.subarray(size - 1).every((b) => b === 0xee),
    'not past the room given',
  );
  assert.is(w.writeTo(buf, 0, size), size);
  const next = bodyWriter(report(200)).sizeHint as number;
  assert.ok(next >= size && next <= size * 1.2, `hint ${next} for ${size} bytes`);
});

t('an invalid message throws its EncodeError, whatever the room', () => {
  const bad = { ...report(3), resolution: Number.NaN } as Message;
  for (const room of [10, 100_000]) {
    assert.throws(
      () => bodyWriter(bad).writeTo(Buffer.alloc(room), 0, room),
      (e: unknown) => e instanceof EncodeError && e.kind === 'invalid',
    );
  }
});

t(
  'bodyBytes writes a writer into a buffer of its own, asking for room as needed; bytes are returned as they are',
  () => {
    const m = report(5_000);
    assert.equal(bodyBytes(bodyWriter(m)), encode(m));
    const bytes = new Uint8Array([1, 2, 3]);
    const b = bodyBytes(bytes);
    assert.ok(Buffer.isBuffer(b) && b.buffer === bytes.buffer, 'a view, not a copy');
    assert.throws(
      () => bodyBytes({ maxBytes: 10, sizeHint: 4, writeTo: () => MORE_ROOM }),
      (e: unknown) => e instanceof RangeError,
      'a writer that wants more than its maxBytes',
    );
  },
);

t.run();
