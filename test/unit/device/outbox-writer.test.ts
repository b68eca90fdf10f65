/**
 * The outbox given a BodyWriter (src/device/outbox.ts append): the message is encoded straight into its record, and
 * the files are byte for byte those of the same message appended encoded; the pending record's body is a view of
 * the record written (sent from there: docs/bus.md); a writer that asks for more room is given it; what is read back
 * after a reopen is the same.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bodyWriter, EbTime, encode, type Message } from '../../../src/codec/index.js';
import { type BodyWriter, MORE_ROOM } from '../../../src/core/body-writer.js';
import { Outbox } from '../../../src/device/outbox.js';

const PEER = 'vpp-operator';
const meta = (i: number) => ({
  messageId: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
  type: 'report',
  routingKey: 'report',
});
const report = (i: number): Message<'report'> => ({
  msg: 'report',
  from: EbTime.fromEpochMs(Date.UTC(2026, 0, 1) + i * 600_000),
  to: EbTime.fromEpochMs(Date.UTC(2026, 0, 1) + (i + 1) * 600_000),
  resolution: 60,
  values: { 'meter.p': Array.from({ length: 10 }, (_, k) => i + k / 4), 'boiler.p': Array(10).fill(2) },
});

async function files(dir: string): Promise<Buffer> {
  return Buffer.concat(
    fs
      .readdirSync(dir)
      .sort()
      .map((n) => fs.readFileSync(path.join(dir, n))),
  );
}

const t = suite('outbox: bodies encoded in place');

t('the same files as appending the encoded bytes; the pending body is the record, not a copy of it', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'heh-outbox-writer-'));
  try {
    const [a, b] = [path.join(root, 'a'), path.join(root, 'b')];
    const inPlace = await Outbox.open(a);
    const encoded = await Outbox.open(b);
    for (let i = 0; i < 5; i++) {
      const id = await inPlace.append(PEER, bodyWriter(report(i)), meta(i));
      assert.is(await encoded.append(PEER, encode(report(i)), meta(i)), id);
      const r = inPlace.get(id);
      assert.equal(r?.body, encode(report(i)));
      assert.is(r?.body.buffer, inPlace.pending().find((p) => p.id === id)?.body.buffer);
      // A view of the record: right before the body lies the record's last string, the routing key.
      const body = r?.body as Buffer;
      assert.is(Buffer.from(body.buffer, body.byteOffset - 6, 6).toString(), 'report');
      if (i % 2 === 1) {
        inPlace.ack(id);
        encoded.ack(id);
      }
    }
    await inPlace.close();
    await encoded.close();
    assert.equal(await files(a), await files(b));
    const again = await Outbox.open(a);
    assert.equal(
      again.pending().map((r) => r.body.toString()),
      [0, 2, 4].map((i) => encode(report(i)).toString()),
    );
    await again.close();
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

t('a writer that asks for more room is given twice as much until it fits', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'heh-outbox-writer-'));
  try {
    const box = await Outbox.open(dir);
    const data = Buffer.alloc(5_000, 'x');
    const rooms: number[] = [];
    const w: BodyWriter = {
      maxBytes: 1 << 20,
      sizeHint: 100,
      writeTo(target, offset, end) {
        rooms.push(end - offset);
        return end - offset < data.length ? MORE_ROOM : offset + data.copy(target, offset);
      },
    };
    const id = await box.append(PEER, w, meta(1));
    assert.equal(rooms, [100, 200, 400, 800, 1600, 3200, 6400]);
    assert.equal(box.get(id)?.body, data);
    await box.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

t.run();
