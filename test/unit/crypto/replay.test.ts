/** Replay protection: the sender's block-reserved sequence and the receiver's sliding window, both persisted. */

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { instanceTag } from '../../../src/core/shard.js';
import { ReplayStateError, ReplayWindow, SequenceReserver } from '../../../src/crypto/replay.js';

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'heh-replay-'));
  try {
    await fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function rejects(p: Promise<unknown>, code: string, file?: string): Promise<ReplayStateError> {
  try {
    await p;
  } catch (err) {
    assert.instance(err, ReplayStateError);
    const e = err as ReplayStateError;
    assert.is(e.code, code, e.message);
    if (file !== undefined) {
      assert.is(e.file, file);
      assert.ok(e.message.includes(file), e.message);
    }
    return e;
  }
  assert.unreachable(`expected a ReplayStateError ${code}`);
  throw new Error('unreachable');
}

function assertIncreasing(xs: readonly bigint[]): void {
  for (let i = 1; i < xs.length; i++) assert.ok(xs[i]! > xs[i - 1]!, `#${i}: ${xs[i]} after ${xs[i - 1]}`);
}

const onDisk = (file: string): unknown => JSON.parse(fs.readFileSync(file, 'utf8'));
const A = '0011223344556677',
  B = '8899aabbccddeeff';

const seq = suite('SequenceReserver');

seq('a fresh file starts at 1, and numbers strictly increase across reopens', () =>
  inTempDir(async (dir) => {
    const file = path.join(dir, 'seq.json');
    const got: bigint[] = [];
    for (let round = 0; round < 3; round++) {
      const r = await SequenceReserver.open(file, { block: 8 });
      for (let i = 0; i < 20; i++) got.push(await r.take());
    }
    assert.is(got[0], 1n);
    assertIncreasing(got);
    assert.equal(new Set(got).size, 60);
  }),
);

seq('a crash (reopen without using the block) skips numbers but never repeats one', () =>
  inTempDir(async (dir) => {
    const file = path.join(dir, 'seq.json');
    const first = await SequenceReserver.open(file, { block: 100 });
    const used = [first.next(), first.next(), first.next()];
    assert.equal(used, [1n, 2n, 3n]);
    // The reservation was durable before the first number left: the file already covers the whole block.
    assert.equal(onDisk(file), { format: 'heh-seq/1', reservedUpTo: '101' });
    // A crash halfway through a later write leaves a stray temp file; it must not be mistaken for state.
    fs.writeFileSync(path.join(dir, `.seq.json.${process.pid}.999.tmp`), '{"format":"heh-seq/1","reser');
    const second = await SequenceReserver.open(file, { block: 100 });
    const n = second.next();
    assert.is(n, 101n);
    assert.ok(n > used[2]!);
    assert.is(second.reservedUpTo, 201n);
  }),
);

seq('next() and tryTake() are synchronous within the block; take() reserves the next one', () =>
  inTempDir(async (dir) => {
    const file = path.join(dir, 'seq.json');
    const r = await SequenceReserver.open(file, { block: 2 });
    assert.is(r.next(), 1n);
    assert.is(r.tryTake(), 2n);
    assert.is(r.tryTake(), undefined);
    assert.throws(() => r.next(), /exhausted/);
    assert.is(r.writeCount, 1);
    assert.is(await r.take(), 3n);
    assert.is(r.writeCount, 2);
    assert.is(r.tryTake(), 4n);
    assert.equal(onDisk(file), { format: 'heh-seq/1', reservedUpTo: '5' });
  }),
);

seq('5000 concurrent take() with block 16: distinct, in call order, one shared write per block', () =>
  inTempDir(async (dir) => {
    const file = path.join(dir, 'seq.json');
    const r = await SequenceReserver.open(file, { block: 16 });
    const got = await Promise.all(Array.from({ length: 5000 }, () => r.take()));
    assert.is(got[0], 1n);
    assert.is(got[4999], 5000n);
    assertIncreasing(got);
    assert.is(r.writeCount, Math.ceil(5000 / 16));
    assert.is(r.reservedUpTo, 1n + 16n * BigInt(Math.ceil(5000 / 16)));
    assert.equal(onDisk(file), { format: 'heh-seq/1', reservedUpTo: r.reservedUpTo.toString() });
  }),
);

seq('a failed reservation write hands out no number, and a later take() retries', () =>
  inTempDir(async (dir) => {
    const file = path.join(dir, 'seq.json');
    const r = await SequenceReserver.open(file, { block: 1 });
    assert.is(r.next(), 1n);
    fs.rmSync(file);
    fs.mkdirSync(path.join(file, 'blocker'), { recursive: true }); // a rename cannot replace a non-empty directory
    await rejects(Promise.all([r.take(), r.take()]), 'IO', file);
    assert.is(r.tryTake(), undefined);
    assert.is(r.reservedUpTo, 2n);
    assert.equal(fs.readdirSync(dir), ['seq.json'], 'the temp file was cleaned up');
    fs.rmSync(file, { recursive: true });
    assert.is(await r.take(), 2n);
    assert.equal(onDisk(file), { format: 'heh-seq/1', reservedUpTo: '3' });
  }),
);

const corruptSeq: Array<[string, string]> = [
  ['empty', ''],
  ['whitespace', ' \n'],
  ['not JSON', 'hello'],
  ['truncated', '{"format":"heh-seq/1","reservedUpTo":"12'],
  ['null', 'null'],
  ['array', '[]'],
  ['wrong format', '{"format":"heh-seq/2","reservedUpTo":"5"}'],
  ['no format', '{"reservedUpTo":"5"}'],
  ['number', '{"format":"heh-seq/1","reservedUpTo":5}'],
  ['zero', '{"format":"heh-seq/1","reservedUpTo":"0"}'],
  ['negative', '{"format":"heh-seq/1","reservedUpTo":"-5"}'],
  ['leading zero', '{"format":"heh-seq/1","reservedUpTo":"05"}'],
  ['exponent', '{"format":"heh-seq/1","reservedUpTo":"1e3"}'],
  ['above 2^64', `{"format":"heh-seq/1","reservedUpTo":"${(1n << 64n) + 1n}"}`],
  ['missing', '{"format":"heh-seq/1"}'],
];

seq('corrupt, truncated, empty, non-JSON and wrong-format files are refused with CORRUPT_STATE and left alone', () =>
  inTempDir(async (dir) => {
    const file = path.join(dir, 'seq.json');
    for (const [what, text] of corruptSeq) {
      fs.writeFileSync(file, text);
      const e = await rejects(SequenceReserver.open(file), 'CORRUPT_STATE', file);
      assert.ok(e.message.length > file.length + 10, what);
      assert.is(fs.readFileSync(file, 'utf8'), text, `${what}: not reset`);
    }
    // Near the end of the u64 space the last block is cut short, and the end itself is an error, not a wrap.
    fs.writeFileSync(file, `{"format":"heh-seq/1","reservedUpTo":"${(1n << 64n) - 2n}"}`);
    const r = await SequenceReserver.open(file, { block: 5 });
    assert.equal([r.tryTake(), r.tryTake(), r.tryTake()], [(1n << 64n) - 2n, (1n << 64n) - 1n, undefined]);
    try {
      await r.take();
      assert.unreachable('took a number beyond u64');
    } catch (err) {
      assert.match((err as Error).message, /exhausted/);
    }
    try {
      await SequenceReserver.open(file);
      assert.unreachable('opened an exhausted sequence');
    } catch (err) {
      assert.match((err as Error).message, /exhausted/);
    }
  }),
);

seq('state files have mode 0600 and no temp files stay behind', () =>
  inTempDir(async (dir) => {
    if (process.platform === 'win32') return;
    const seqFile = path.join(dir, 'seq.json'),
      winFile = path.join(dir, 'win.json');
    const r = await SequenceReserver.open(seqFile, { block: 1 });
    await r.take();
    await r.take();
    const w = await ReplayWindow.open(winFile);
    w.accept(A, 1n);
    await w.persist();
    assert.is(fs.statSync(seqFile).mode & 0o777, 0o600);
    assert.is(fs.statSync(winFile).mode & 0o777, 0o600);
    assert.equal(fs.readdirSync(dir).sort(), ['seq.json', 'win.json']);
  }),
);

seq.run();

const win = suite('ReplayWindow');

win('in order: each new seq is new once, then a duplicate', () =>
  inTempDir(async (dir) => {
    const w = await ReplayWindow.open(path.join(dir, 'w.json'));
    for (let s = 1n; s <= 200n; s++) {
      assert.is(w.check(A, s), 'new');
      assert.is(w.check(A, s), 'new', 'check changes nothing');
      w.accept(A, s);
      assert.is(w.check(A, s), 'duplicate');
    }
    assert.is(w.check(A, 137n), 'duplicate');
    assert.is(w.check(A, 136n), 'too-old');
    assert.is(w.check(B, 5n), 'new', 'senders are independent');
  }),
);

win('out of order within 64 is accepted once; accepting twice is harmless', () =>
  inTempDir(async (dir) => {
    const w = await ReplayWindow.open(path.join(dir, 'w.json'));
    w.accept(A, 100n);
    const order = [99n, 40n, 70n, 41n, 98n, 55n, 37n];
    for (const s of order) {
      assert.is(w.accept(A, s), 'new', `${s}`);
      assert.is(w.accept(A, s), 'duplicate', `${s} again`);
    }
    for (let s = 37n; s <= 100n; s++)
      assert.is(w.check(A, s), order.includes(s) || s === 100n ? 'duplicate' : 'new', `${s}`);
    assert.is(w.check(A, 36n), 'too-old');
  }),
);

win('exactly 63 behind is still in the window, 64 behind is too old, across shifts of 63 and 64', () =>
  inTempDir(async (dir) => {
    const w = await ReplayWindow.open(path.join(dir, 'w.json'));
    w.accept(A, 100n);
    assert.is(w.check(A, 37n), 'new');
    assert.is(w.check(A, 36n), 'too-old');
    w.accept(A, 37n);
    assert.is(w.check(A, 37n), 'duplicate');
    w.accept(A, 163n); // shift by 63: 100 slides to bit 63
    assert.is(w.check(A, 100n), 'duplicate');
    assert.is(w.check(A, 101n), 'new');
    assert.is(w.check(A, 99n), 'too-old');
    w.accept(A, 227n); // shift by 64: everything falls out
    assert.is(w.check(A, 164n), 'new');
    assert.is(w.check(A, 163n), 'too-old');
  }),
);

win('a jump of 2^40 makes the old numbers too old; seq 0 and out-of-range seqs are refused', () =>
  inTempDir(async (dir) => {
    const w = await ReplayWindow.open(path.join(dir, 'w.json'));
    for (let s = 1n; s <= 10n; s++) w.accept(A, s);
    const far = 10n + (1n << 40n);
    assert.is(w.accept(A, far), 'new');
    for (let s = 1n; s <= 10n; s++) assert.is(w.check(A, s), 'too-old');
    assert.is(w.check(A, far - 1n), 'new');
    assert.is(w.check(A, far - 63n), 'new');
    assert.is(w.check(A, far - 64n), 'too-old');
    assert.is(w.check(A, far), 'duplicate');
    assert.is(w.check(A, 0n), 'too-old');
    assert.is(w.check(B, 0n), 'too-old', 'even from an unknown sender');
    assert.is(w.accept(B, 0n), 'too-old');
    assert.is(w.size, 1, 'seq 0 created no sender');
    assert.is(w.check(B, -1n), 'too-old');
    assert.is(w.check(B, 1n << 64n), 'too-old');
    assert.is(w.check(B, (1n << 64n) - 1n), 'new');
    assert.throws(() => w.check('0011', 1n), TypeError);
    assert.throws(() => w.check(A.toUpperCase().replace('0', 'A'), 1n), TypeError);
  }),
);

const T = Date.UTC(2026, 11, 4);
/** The highest number of a sender that is one process (instance 0). */
const MAX = (1n << 48n) - 1n;

win('a seq behind the window but newer than all accepted starts it again: 2^48-1 locks a sender out no longer', () =>
  inTempDir(async (dir) => {
    const file = path.join(dir, 'w.json');
    const w = await ReplayWindow.open(file);
    for (let s = 1n; s <= 10n; s++) assert.is(w.accept(A, s, T + Number(s)), 'new');
    // One authentic message numbered 2^48-1, instance 0's last (a foreign sender's bug, or a key held for a moment).
    assert.is(w.accept(A, MAX, T + 20), 'new');
    assert.is(w.check(A, 11n, T + 20), 'too-old', 'not newer than everything accepted: the strict window');
    assert.is(w.check(A, 11n), 'too-old', 'without a timestamp: the strict window');
    assert.is(w.check(A, 11n, T + 21), 'new', 'newer than everything accepted: not a replay');
    assert.is(w.accept(A, 11n, T + 21), 'new');
    assert.is(w.accept(A, 12n, T + 22), 'new', 'the sender goes on from there');
    assert.is(w.check(A, 11n, T + 21), 'duplicate');
    // Every message accepted before the new start is refused, whatever its seq: each is at or before the floor.
    assert.is(w.check(A, MAX, T + 20), 'too-old', 'the 2^48-1 message replayed');
    for (let s = 1n; s <= 10n; s++) assert.is(w.check(A, s, T + Number(s)), 'too-old', `#${s} replayed`);
    assert.is(w.check(A, 13n, T + 20), 'too-old', 'a new seq at the old newest time');
    await w.persist();
    const r = await ReplayWindow.open(file);
    assert.is(r.check(A, MAX, T + 20), 'too-old', 'after a reopen too');
    assert.is(r.check(A, 12n, T + 22), 'duplicate');
    assert.is(r.check(A, 13n, T + 23), 'new');
    assert.equal((onDisk(file) as { senders: Record<string, unknown> }).senders[A], {
      max: '12',
      bitmap: '0000000000000003',
      newest: T + 22,
      floor: T + 20,
    });
  }),
);

win("instances: a window per instance number (a seq's top 16 bits), at most 64 a sender; each restarts alone", () =>
  inTempDir(async (dir) => {
    const file = path.join(dir, 'w.json');
    const w = await ReplayWindow.open(file);
    const of = (instance: number, n: number): bigint => (BigInt(instance) << 48n) + BigInt(n);
    // Two instances of one party, counting from 1 each, interleaved: neither refuses the other's.
    for (let n = 1; n <= 100; n++) {
      assert.is(w.accept(A, of(0, n), T + 2 * n), 'new', `instance 0 #${n}`);
      assert.is(w.accept(A, of(0x2a, n), T + 2 * n + 1), 'new', `instance 2a #${n}`);
    }
    assert.is(w.check(A, of(0x2a, 100)), 'duplicate');
    assert.is(w.check(A, of(0x2a, 30), T + 59), 'too-old', 'instance 2a has its own window');
    assert.is(w.check(A, of(0, 101), T + 300), 'new');
    await w.persist();
    assert.equal(Object.keys((onDisk(file) as { senders: object }).senders), [A, `${A}:002a`]);
    const r = await ReplayWindow.open(file);
    assert.is(r.check(A, of(0x2a, 100)), 'duplicate', 'after a reopen');
    assert.is(r.check(A, of(0, 100)), 'duplicate');
    // A peer's key cannot fill the state: 64 windows a sender (instance 0 and 63 others), refused as it opens.
    for (let i = 2; i <= 63; i++) r.accept(A, of(i + 0x100, 1), T);
    assert.is(r.size, 64);
    try {
      r.check(A, of(0xfff0, 1), T);
      assert.unreachable('a 65th window was made');
    } catch (err) {
      assert.instance(err, ReplayStateError);
      assert.is((err as ReplayStateError).code, 'TOO_MANY_SENDERS');
      assert.match((err as Error).message, 'more than 64 instances');
    }
    assert.is(r.check(A, of(0x2a, 101), T + 300), 'new', 'the instances it has go on');
    assert.is(r.check(B, of(0x2a, 1), T), 'new', 'other senders are not affected');
  }),
);

win('SequenceReserver with an instance: its tag in the top 16 bits, a file of another tag not reused', () =>
  inTempDir(async (dir) => {
    const file = path.join(dir, 's.json');
    const tag = BigInt(Number.parseInt(instanceTag('vpp-acme-2'), 16));
    const s = await SequenceReserver.open(file, { instance: 'vpp-acme-2', block: 4 });
    assert.is(await s.take(), (tag << 48n) + 1n);
    assert.is(await s.take(), (tag << 48n) + 2n);
    const again = await SequenceReserver.open(file, { instance: 'vpp-acme-2', block: 4 });
    assert.is(await again.take(), (tag << 48n) + 5n, 'goes on after the block reserved');
    const renamed = await SequenceReserver.open(file, { instance: 'vpp-acme-3', block: 4 });
    const tag3 = BigInt(Number.parseInt(instanceTag('vpp-acme-3'), 16));
    assert.is(await renamed.take(), (tag3 << 48n) + 1n, "another instance's numbers start afresh");
    const plain = await SequenceReserver.open(path.join(dir, 'p.json'));
    assert.is(await plain.take(), 1n, 'no instance: from 1, as before');
    const refused = await SequenceReserver.open(file, { instance: '' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.instance(refused, RangeError, 'an empty instance name');
  }),
);

win('a sender whose sequence file was lost starts again at 1 with later timestamps, and is heard', () =>
  inTempDir(async (dir) => {
    const w = await ReplayWindow.open(path.join(dir, 'w.json'));
    for (let s = 1n; s <= 5000n; s++) w.accept(A, s, T + Number(s));
    assert.is(w.check(A, 1n, T + 5000), 'too-old');
    assert.is(w.accept(A, 1n, T + 9000), 'new');
    assert.is(w.accept(A, 2n, T + 9001), 'new');
    assert.is(w.check(A, 4999n, T + 4999), 'too-old', 'its old messages stay refused');
    assert.is(w.check(A, 5001n, T + 5000), 'too-old', 'a seq above the old one, timestamped before the restart');
  }),
);

win('a state file without timestamps: no restart until a day after the first message taken, whatever the clock', () =>
  inTempDir(async (dir) => {
    const file = path.join(dir, 'w.json');
    fs.writeFileSync(file, `{"format":"heh-replay/1","senders":{"${A}":{"max":"70","bitmap":"8000000000000001"}}}`);
    const w = await ReplayWindow.open(file);
    // Its messages may have had any time: even one years ahead of ours does not start the window again.
    assert.is(w.check(A, 1n, Date.now() + 3 * 365 * 86_400_000), 'too-old');
    assert.is(w.accept(A, 71n, T), 'new', 'the window itself goes on');
    assert.is(w.check(A, 2n, T + 86_400_000), 'too-old', 'a day after the first message taken, not yet');
    assert.is(w.check(A, 2n, T + 86_400_001), 'new', 'then it may start again');
    await w.persist();
    const r = await ReplayWindow.open(file);
    assert.is(r.check(A, 2n, T + 86_400_000), 'too-old', 'after a reopen too');
  }),
);

win('a file from before the instances: a window past 2^48 still refuses every number it refused, of any instance', () =>
  inTempDir(async (dir) => {
    const file = path.join(dir, 'w.json');
    const M = (1n << 64n) - 1n;
    fs.writeFileSync(file, `{"format":"heh-replay/1","senders":{"${A}":{"max":"${M}","bitmap":"0000000000000005"}}}`);
    const w = await ReplayWindow.open(file);
    assert.is(w.check(A, M, T), 'duplicate', 'its highest, replayed');
    assert.is(w.check(A, M - 2n, T), 'duplicate');
    assert.is(w.check(A, M - 1n, T), 'new', 'a number of its window it never took');
    for (const seq of [1n, 6n, (1n << 48n) + 3n, M - 64n])
      assert.is(w.check(A, seq, T + 86_400_000), 'too-old', `${seq}, refused before, stays refused`);
    assert.is(w.check(B, 6n, T), 'new', 'other senders are not affected');
    assert.is(w.accept(A, M - 1n, T), 'new');
    await w.persist();
    const json = onDisk(file) as { senders: Record<string, unknown>; legacy: Record<string, unknown> };
    assert.equal(json.legacy[A], { max: `${M}`, bitmap: '0000000000000005' });
    const r = await ReplayWindow.open(file);
    assert.is(r.check(A, 6n, T), 'too-old', 'after a reopen');
    assert.is(r.check(A, M - 1n, T), 'duplicate');
    for (const [what, text] of [
      ['instance 0 named', `{"format":"heh-replay/1","senders":{"${A}:0000":{"max":"5","bitmap":"0000000000000001"}}}`],
      [
        'a max of another instance',
        `{"format":"heh-replay/1","senders":{"${A}:0001":{"max":"5","bitmap":"0000000000000001"}}}`,
      ],
      [
        'a new-format window past 2^48',
        `{"format":"heh-replay/1","senders":{"${A}":{"max":"${M}","bitmap":"0000000000000001","newest":1,"floor":0}}}`,
      ],
    ] as const) {
      fs.writeFileSync(file, text);
      await rejects(ReplayWindow.open(file), 'CORRUPT_STATE', file).catch((e: Error) => {
        throw new Error(`${what}: ${e.message}`);
      });
    }
  }),
);

win('persist and reopen give identical verdicts and the documented JSON', () =>
  inTempDir(async (dir) => {
    const file = path.join(dir, 'w.json');
    const w = await ReplayWindow.open(file);
    let x = 12345;
    const rand = () => (x = (x * 1103515245 + 12345) % 2 ** 31);
    for (let i = 0; i < 500; i++) w.accept(i % 2 ? A : B, BigInt(1 + (rand() % 700)));
    w.accept('ffffffffffffffff', (1n << 64n) - 1n);
    await w.persist();
    assert.is(w.writeCount, 1);
    await w.persist();
    assert.is(w.writeCount, 1, 'nothing changed, nothing written');
    const r = await ReplayWindow.open(file);
    assert.is(r.size, 3);
    assert.equal(
      Object.keys((onDisk(file) as { senders: object }).senders).sort(),
      [A, B, 'ffffffffffffffff:ffff'].sort(),
    );
    for (const kid of [A, B, 'ffffffffffffffff']) {
      for (let s = 1n; s <= 760n; s++) assert.is(r.check(kid, s), w.check(kid, s), `${kid} ${s}`);
      assert.is(r.check(kid, (1n << 64n) - 1n), w.check(kid, (1n << 64n) - 1n));
    }
    const json = onDisk(file) as { format: string; senders: Record<string, { max: string; bitmap: string }> };
    assert.is(json.format, 'heh-replay/1');
    assert.equal(json.senders['ffffffffffffffff:ffff'], {
      max: '18446744073709551615',
      bitmap: '0000000000000001',
      newest: 0,
      floor: 0,
    });
    assert.match(json.senders[A]!.bitmap, /^[0-9a-f]{16}$/);
  }),
);

win('group commit: 100 concurrent persist() calls share writes, each resolving after its accept is on disk', () =>
  inTempDir(async (dir) => {
    const file = path.join(dir, 'w.json');
    const w = await ReplayWindow.open(file);
    const onFile = (s: bigint): boolean => {
      const e = (onDisk(file) as { senders: Record<string, { max: string; bitmap: string }> }).senders[A];
      if (e === undefined) return false;
      const behind = BigInt(e.max) - s;
      // Refused from now on, either as a duplicate or (slid out of the window) as too old.
      return behind >= 64n || (behind >= 0n && ((BigInt(`0x${e.bitmap}`) >> behind) & 1n) === 1n);
    };
    const all: Array<Promise<void>> = [];
    for (let s = 1n; s <= 100n; s++) {
      w.accept(A, s);
      all.push(w.persist().then(() => assert.ok(onFile(s), `seq ${s} durable when its persist resolved`)));
    }
    await Promise.all(all);
    assert.is(w.writeCount, 2, 'the first write, plus one queued write for the other 99');
    const again = [w.persist(), w.persist()];
    await Promise.all(again);
    assert.is(w.writeCount, 2);
    w.accept(A, 101n);
    await Promise.all([w.persist(), w.persist(), w.persist()]);
    assert.is(w.writeCount, 3);
    assert.is((await ReplayWindow.open(file)).check(A, 101n), 'duplicate');
  }),
);

win('a failed write rejects its callers with IO; the next persist() writes again', () =>
  inTempDir(async (dir) => {
    const file = path.join(dir, 'w.json');
    const w = await ReplayWindow.open(file);
    fs.mkdirSync(path.join(file, 'blocker'), { recursive: true });
    w.accept(A, 1n);
    const first = w.persist();
    w.accept(A, 2n);
    const queued = w.persist();
    await rejects(first, 'IO', file);
    await rejects(queued, 'IO', file);
    fs.rmSync(file, { recursive: true });
    await w.persist();
    assert.is((await ReplayWindow.open(file)).check(A, 2n), 'duplicate');
  }),
);

win(
  'maxSenders: a new sender beyond the bound is refused, none evicted; a file above a lowered bound still loads',
  () =>
    inTempDir(async (dir) => {
      const file = path.join(dir, 'w.json');
      const w = await ReplayWindow.open(file, { maxSenders: 3 });
      const kids = ['0000000000000001', '0000000000000002', '0000000000000003'];
      for (const k of kids) w.accept(k, 5n);
      try {
        w.accept(A, 1n);
        assert.unreachable('a fourth sender was accepted');
      } catch (err) {
        assert.instance(err, ReplayStateError);
        assert.is((err as ReplayStateError).code, 'TOO_MANY_SENDERS');
      }
      assert.is(w.size, 3);
      for (const k of kids) assert.is(w.check(k, 5n), 'duplicate');
      assert.is(w.accept(kids[0]!, 6n), 'new', 'known senders go on');
      await w.persist();
      const lowered = await ReplayWindow.open(file, { maxSenders: 2 });
      assert.is(lowered.size, 3);
      for (const k of kids) assert.is(lowered.check(k, 5n), 'duplicate');
      assert.throws(
        () => lowered.accept(A, 1n),
        (e: unknown) => e instanceof ReplayStateError && e.code === 'TOO_MANY_SENDERS',
      );
    }),
);

const corruptWin: Array<[string, string]> = [
  ['empty', ''],
  ['not JSON', '{{'],
  ['truncated', '{"format":"heh-replay/1","senders":{"0011223344556677":{"max":"5"'],
  ['wrong format', '{"format":"heh-seq/1","senders":{}}'],
  ['senders missing', '{"format":"heh-replay/1"}'],
  ['senders array', '{"format":"heh-replay/1","senders":[]}'],
  ['short kid', '{"format":"heh-replay/1","senders":{"0011":{"max":"5","bitmap":"0000000000000001"}}}'],
  [
    'upper-case kid',
    '{"format":"heh-replay/1","senders":{"00112233445566AA":{"max":"5","bitmap":"0000000000000001"}}}',
  ],
  ['__proto__ kid', '{"format":"heh-replay/1","senders":{"__proto__":{"max":"5","bitmap":"0000000000000001"}}}'],
  ['max 0', `{"format":"heh-replay/1","senders":{"${A}":{"max":"0","bitmap":"0000000000000001"}}}`],
  ['max 2^64', `{"format":"heh-replay/1","senders":{"${A}":{"max":"${1n << 64n}","bitmap":"0000000000000001"}}}`],
  ['max number', `{"format":"heh-replay/1","senders":{"${A}":{"max":5,"bitmap":"0000000000000001"}}}`],
  ['short bitmap', `{"format":"heh-replay/1","senders":{"${A}":{"max":"5","bitmap":"1"}}}`],
  ['bitmap without bit 0', `{"format":"heh-replay/1","senders":{"${A}":{"max":"5","bitmap":"0000000000000002"}}}`],
  ['entry null', `{"format":"heh-replay/1","senders":{"${A}":null}}`],
  [
    'newest a string',
    `{"format":"heh-replay/1","senders":{"${A}":{"max":"5","bitmap":"0000000000000001","newest":"1"}}}`,
  ],
  ['floor -1', `{"format":"heh-replay/1","senders":{"${A}":{"max":"5","bitmap":"0000000000000001","floor":-1}}}`],
];

win('corrupt, truncated, empty, non-JSON and wrong-format files are refused with CORRUPT_STATE', () =>
  inTempDir(async (dir) => {
    const file = path.join(dir, 'w.json');
    for (const [what, text] of corruptWin) {
      fs.writeFileSync(file, text);
      await rejects(ReplayWindow.open(file), 'CORRUPT_STATE', file).catch((e: Error) => {
        throw new Error(`${what}: ${e.message}`);
      });
      assert.is(fs.readFileSync(file, 'utf8'), text, `${what}: not reset`);
    }
    fs.writeFileSync(file, `{"format":"heh-replay/1","senders":{"${A}":{"max":"70","bitmap":"8000000000000001"}}}`);
    const w = await ReplayWindow.open(file);
    assert.is(w.check(A, 7n), 'duplicate');
    assert.is(w.check(A, 8n), 'new');
  }),
);

win.run();
