/**
 * Recovery loses only damaged records: segments written by the real outbox and history, then random bytes of them
 * corrupted (single bytes, bursts, zeroed stretches as a bad sector gives, the header included) and the file cut at a
 * random length. Every record whose bytes are all intact must come back, and nothing that was not written may: each
 * record read must equal one that was written. Seeded: a failure names its seed and iteration.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { History } from '../../src/device/history.js';
import { Outbox, type OutboxEntry, scanOutbox } from '../../src/device/outbox.js';
import { Random } from '../helpers/random.js';

const ITERATIONS = Number(process.env['RECOVERY_ITERATIONS'] ?? 4000);

async function inTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'heh-recovery-'));
  try {
    return await fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Damage as a disk gives it: flipped bytes, short bursts, zeroed stretches; sometimes the file cut short too. */
function damage(r: Random, original: Buffer): { buf: Buffer; changed: Uint8Array } {
  const buf = Buffer.from(original);
  for (let k = r.range(1, 4); k > 0; k--) {
    const at = r.int(buf.length);
    const kind = r.int(3);
    const n = kind === 0 ? 1 : kind === 1 ? r.range(2, 8) : r.range(16, 64);
    for (let i = at; i < Math.min(buf.length, at + n); i++) buf[i] = kind === 2 ? 0 : r.int(256);
  }
  const cut = r.int(4) === 0 ? r.int(buf.length + 1) : buf.length;
  const out = buf.subarray(0, cut);
  const changed = new Uint8Array(original.length);
  for (let i = 0; i < original.length; i++) changed[i] = i >= cut || out[i] !== original[i] ? 1 : 0;
  return { buf: Buffer.from(out), changed };
}

const intact = (changed: Uint8Array, start: number, end: number): boolean => {
  for (let i = start; i < end; i++) if (changed[i]) return false;
  return true;
};

const key = (e: OutboxEntry): string =>
  e.kind === 'ack'
    ? `ack ${e.id}`
    : `message ${e.id} ${e.peer} ${e.messageId} ${e.type} ${e.routingKey} ${e.body.toString('hex')}`;

const s = suite('recovery: random damage');

s(`outbox: ${ITERATIONS} damaged segments: every intact record is read back, none is invented`, () =>
  inTempDir(async (dir) => {
    const r = new Random(20_260_312);
    // A few real segments: messages of random sizes, bodies of text or random bytes (sealed), tombstones between.
    const bases: { bytes: Buffer; records: { start: number; end: number; key: string }[] }[] = [];
    for (let b = 0; b < 6; b++) {
      const sub = path.join(dir, `base${b}`);
      const box = await Outbox.open(sub, { onWarning: () => undefined, segmentBytes: 1 << 20 });
      for (let i = 0; i < 40; i++) {
        const binary = r.int(3) === 0;
        const body = binary
          ? Buffer.from(Array.from({ length: r.range(0, 400) }, () => r.int(256)))
          : Buffer.from(JSON.stringify({ msg: 'report', i, v: r.next() }).repeat(r.range(1, 6)));
        const id = await box.append(`peer-${r.int(3)}`, body, {
          messageId: `00000000-0000-4000-8000-${String(b * 100 + i).padStart(12, '0')}`,
          type: 'report',
          routingKey: `hub.${r.int(10)}.report`,
        });
        if (r.int(3) === 0) box.ack(id);
      }
      await box.close();
      const [seg] = await scanOutbox(sub);
      const bytes = fs.readFileSync(path.join(sub, seg!.name));
      // Offsets of the records of the clean file: u32 length | payload | CRC, from the 8-byte header on.
      const records: { start: number; end: number; key: string }[] = [];
      for (let off = 8, i = 0; off < bytes.length; i++) {
        const end = off + 4 + bytes.readUInt32LE(off) + 4;
        records.push({ start: off, end, key: key(seg!.entries[i]!) });
        off = end;
      }
      assert.is(records.length, seg!.entries.length);
      bases.push({ bytes, records });
    }
    const probe = path.join(dir, 'probe');
    fs.mkdirSync(probe);
    let lostIntact = 0;
    let recovered = 0;
    let damaged = 0;
    for (let it = 0; it < ITERATIONS; it++) {
      const base = bases[it % bases.length]!;
      const { buf, changed } = damage(r, base.bytes);
      fs.writeFileSync(path.join(probe, '0000000001.obx'), buf);
      const [seg] = await scanOutbox(probe);
      const read = new Set((seg?.entries ?? []).map(key));
      const written = new Set(base.records.map((x) => x.key));
      for (const k of read)
        assert.ok(
          written.has(k),
          `seed ${r.seed} iteration ${it}: a record read that was never written: ${k.slice(0, 80)}`,
        );
      for (const rec of base.records) {
        if (!intact(changed, rec.start, rec.end)) {
          damaged++;
          continue;
        }
        if (!read.has(rec.key)) lostIntact++;
        else recovered++;
        assert.ok(read.has(rec.key), `seed ${r.seed} iteration ${it}: the intact record at ${rec.start} was lost`);
      }
    }
    console.log(`  outbox: ${recovered} intact records recovered, ${damaged} damaged ones dropped, ${lostIntact} lost`);
  }),
);

s('outbox: open recovers what scanOutbox reads, a bad header included, and the copies survive a second open', () =>
  inTempDir(async (dir) => {
    const r = new Random(7);
    for (let it = 0; it < 60; it++) {
      const sub = path.join(dir, `o${it}`);
      let box = await Outbox.open(sub, { onWarning: () => undefined });
      for (let i = 0; i < 12; i++) {
        const id = await box.append('vpp', Buffer.from(`body ${it} ${i} ${r.next()}`), {
          messageId: `m-${it}-${i}`,
          type: 'report',
          routingKey: 'k',
        });
        if (i % 4 === 1) box.ack(id);
      }
      await box.close();
      const [seg] = await scanOutbox(sub);
      const file = path.join(sub, seg!.name);
      const { buf } = damage(r, fs.readFileSync(file));
      if (it % 3 === 0) buf.writeUInt32LE(0, 0); // and the header's magic, every third time
      fs.writeFileSync(file, buf);
      const scanned = (await scanOutbox(sub))[0]!;
      const acked = new Set(scanned.entries.filter((e) => e.kind === 'ack').map((e) => e.id));
      const expected = scanned.entries.filter((e) => e.kind === 'message' && !acked.has(e.id)).map((e) => e.id);
      box = await Outbox.open(sub, { onWarning: () => undefined });
      assert.equal(
        box.pending().map((p) => p.id),
        expected,
        `iteration ${it}`,
      );
      await box.close();
      box = await Outbox.open(sub, { onWarning: () => undefined });
      assert.equal(
        box.pending().map((p) => p.id),
        expected,
        `iteration ${it}, second open`,
      );
      await box.close();
      assert.ok(fs.readdirSync(sub).filter((n) => n.endsWith('.obx')).length <= 2);
    }
  }),
);

s('history: 300 damaged segments of the current set, header included: every intact record is read back', () =>
  inTempDir(async (dir) => {
    const r = new Random(424242);
    const MIN = 60_000;
    const T0 = Date.UTC(2024, 0, 1);
    const signals = ['m.p', 'm.q', 'pv.p'];
    const options = {
      resolutionS: 60,
      signals,
      retentionHours: 24,
      now: () => T0 + 59 * MIN,
      onWarning: () => undefined,
    };
    const src = path.join(dir, 'src');
    const h = await History.open(src, options);
    for (let i = 0; i < 60; i++) h.record(T0 + i * MIN, { 'm.p': i, 'm.q': -i, 'pv.p': i * 0.5 });
    await h.close();
    const [name] = fs.readdirSync(src);
    const original = fs.readFileSync(path.join(src, name!));
    const RECORD = 8 + 8 * signals.length;
    const headerLength = original.length - 60 * RECORD;
    let recovered = 0;
    for (let it = 0; it < 300; it++) {
      const { buf, changed } = damage(r, original);
      const sub = path.join(dir, `h${it}`);
      fs.mkdirSync(sub);
      fs.writeFileSync(path.join(sub, name!), buf);
      const g = await History.open(sub, options);
      const got = g.query(T0, T0 + 60 * MIN, 60, ['m.p', 'm.q']).values;
      for (let i = 0; i < 60; i++) {
        const start = headerLength + i * RECORD;
        const mp = got['m.p']![i];
        // Nothing invented: a value read is the one written.
        assert.ok(mp === null || mp === i, `seed ${r.seed} iteration ${it}: slot ${i} reads ${mp}`);
        if (!intact(changed, start, start + RECORD)) continue;
        assert.is(mp, i, `seed ${r.seed} iteration ${it}: the intact record of slot ${i} was lost`);
        assert.is(got['m.q']![i], -i);
        recovered++;
      }
      await g.close();
      fs.rmSync(sub, { recursive: true });
    }
    console.log(`  history: ${recovered} intact records recovered`);
  }),
);

s.run();
