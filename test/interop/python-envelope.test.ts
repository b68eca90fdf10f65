/**
 * Interop of the HEH-E2E v1 envelope with an independent Python implementation (test/interop/python/heh_e2e.py,
 * Python 3 and the `cryptography` package; its header says where it came from and what it was written from), on
 * both backends, offline (no broker):
 *
 *   1. Python seals, the project's Sealer opens: PAIR both ways (VPP -> hub, hub -> VPP), SIGNED and GROUP, with
 *      sequences past 2^53 and up to 2^64 - 1 so that neither side rounds them;
 *   2. the project seals, Python opens: the same four, from sequence 2^53 + 1 on; and Python refuses each with its last
 *      byte (tag or signature) flipped, so that it is seen to check what it opens;
 *   3. hostile envelopes crafted in Python, refused with their code: a flipped ciphertext byte (PAIR, GROUP:
 *      DECRYPT_FAILED), a flipped SIGNED payload byte (BAD_SIGNATURE), a header signed with another peer's key (PAIR,
 *      SIGNED: BAD_SIGNATURE), a sequence sent again (DUPLICATE) and one below the replay window (REPLAYED).
 *
 * Each side's payload, sender, type, mode, topic, sequence and timestamp are checked against what the other was given.
 * The keys are made by the project (generateIdentity, writePrivateKeyFile) in a temporary directory per test, removed
 * when it ends. Python runs through spawnSync with a timeout. Without python3 or its `cryptography` package the tests
 * are skipped, with a line saying why (PYTHON names another interpreter; HEH_E2E_PY another copy of the script).
 *
 *   npx tsc -p tsconfig.json && node .out/test/run.js .out/test/interop 'python-envelope'
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  type CryptoBackend,
  type CryptoErrorCode,
  generateIdentity,
  Keyring,
  type Opened,
  type PrivateKeyFile,
  type PublicEntry,
  ReplayWindow,
  Sealer,
  SequenceReserver,
  selectBackend,
  writePrivateKeyFile,
} from '../../src/crypto/index.js';
import { cryptoError } from '../helpers/crypto.js';

const PYTHON = process.env['PYTHON'] ?? 'python3';
/** Deadline for one Python run (it starts in well under a second). */
const PY_MS = 20_000;
const TOPIC = 'prices.north';
const U64_MAX = 2n ** 64n - 1n;

/**
 * The script, next to the TypeScript source: found from the compiled file (<outDir>/test/interop/) or the cwd.
 * HEH_E2E_PY names another copy (a deliberately broken one, to see these tests fail).
 */
function findScript(): string {
  const given = process.env['HEH_E2E_PY'];
  if (given !== undefined) return path.resolve(given);
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [
    path.resolve(here, '..', '..', '..', 'test', 'interop', 'python', 'heh_e2e.py'),
    path.resolve(process.cwd(), 'test', 'interop', 'python', 'heh_e2e.py'),
  ];
  const found = candidates.find((c) => existsSync(c));
  if (found === undefined) throw new Error(`heh_e2e.py not found; looked at ${candidates.join(', ')}`);
  return found;
}

/** Why the Python side cannot run here, or undefined when it can. */
function pythonMissing(): string | undefined {
  const r = spawnSync(PYTHON, ['-c', 'import cryptography'], { encoding: 'utf8', timeout: PY_MS });
  if (r.error !== undefined) return `${PYTHON} could not be run (${r.error.message})`;
  if (r.status !== 0) {
    const last = r.stderr.trim().split('\n').pop() ?? '';
    return `${PYTHON} has no 'cryptography' package (${last || `exit ${r.status}`}); pip install cryptography`;
  }
  return undefined;
}

interface PyResult {
  status: number | null;
  stdout: Buffer;
  stderr: string;
}

function runPython(script: string, args: string[], input: Uint8Array = new Uint8Array(0)): PyResult {
  const r = spawnSync(PYTHON, [script, ...args], { input, timeout: PY_MS, maxBuffer: 8 << 20 });
  if (r.error !== undefined) throw new Error(`${PYTHON} ${args[0]}: ${r.error.message}`);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString('utf8') };
}

/** What heh_e2e.py `open` prints. */
interface PyOpened {
  sender: string;
  type: string;
  mode: string;
  topic: string | null;
  seq: string;
  ts: string;
  payload: string;
  payload_hex: string;
}

type Id = 'hub-1' | 'vpp-acme' | 'dso-north' | 'mallory';
type To = { peer: Id } | { signed: string } | { group: string };

/** Who knows whom: the hub knows the VPP, the DSO (and its topic) and mallory; the VPP and the DSO know the hub. */
const RINGS: Record<Id, Partial<Record<Id, { maySend: string[]; mayReceive: string[]; topics?: string[] }>>> = {
  'hub-1': {
    'vpp-acme': { maySend: ['get_report', 'activate'], mayReceive: ['report'] },
    'dso-north': { maySend: ['load_price'], mayReceive: [], topics: [TOPIC] },
    mallory: { maySend: ['get_report'], mayReceive: ['report'] },
  },
  'vpp-acme': { 'hub-1': { maySend: ['report'], mayReceive: ['get_report', 'activate'] } },
  'dso-north': { 'hub-1': { maySend: [], mayReceive: ['load_price'] } },
  mallory: { 'hub-1': { maySend: ['report'], mayReceive: ['get_report'] } },
};

/** Keys of four parties in a temporary directory, the project's Sealer for each, and the Python side. */
class World {
  readonly dir = mkdtempSync(path.join(tmpdir(), 'heh-e2e-python-'));
  /** Every sequence number the project's sealers took, per sealer. */
  readonly taken = new Map<Id, bigint[]>();
  readonly #sealers = new Map<Id, Sealer>();

  constructor(
    readonly backend: CryptoBackend,
    readonly script: string,
  ) {}

  key(id: Id): string {
    return path.join(this.dir, `${id}.key`);
  }

  ring(id: Id): string {
    return path.join(this.dir, `${id}.keyring.json`);
  }

  async makeKeys(): Promise<void> {
    const now = Date.now();
    const ids = Object.keys(RINGS) as Id[];
    const made = new Map<Id, { privateKey: PrivateKeyFile; publicEntry: PublicEntry }>();
    for (const id of ids) made.set(id, generateIdentity(id, this.backend, now - 3_600_000));
    const group = [{ key: randomBytes(32).toString('base64url'), notBefore: new Date(now - 3_600_000).toISOString() }];
    for (const id of ids) {
      const { privateKey } = made.get(id)!;
      const groups = id === 'hub-1' || id === 'dso-north' ? { [TOPIC]: group } : {};
      await writePrivateKeyFile(this.key(id), { ...privateKey, groups });
      const peers: Record<string, unknown> = {};
      for (const [peer, rights] of Object.entries(RINGS[id])) {
        const entry = made.get(peer as Id)!.publicEntry;
        peers[peer] = {
          roles: [],
          ed25519: entry.ed25519,
          x25519: entry.x25519.map(({ pub, notBefore }) => ({ pub, notBefore })),
          maySend: rights.maySend,
          mayReceive: rights.mayReceive,
          topics: rights.topics ?? [],
        };
      }
      writeFileSync(this.ring(id), JSON.stringify({ format: 'heh-keyring/1', peers }, null, 1));
    }
  }

  async sealer(id: Id): Promise<Sealer> {
    let s = this.#sealers.get(id);
    if (s === undefined) {
      // A sender that has sealed 2^53 envelopes already (its reserver's file says so): a JavaScript number would
      // round its next sequence, Python's int must not.
      const seqFile = path.join(this.dir, `${id}.seq.json`);
      writeFileSync(seqFile, `${JSON.stringify({ format: 'heh-seq/1', reservedUpTo: (2n ** 53n + 1n).toString() })}\n`);
      const reserver = await SequenceReserver.open(seqFile);
      const taken: bigint[] = [];
      this.taken.set(id, taken);
      s = new Sealer({
        keyring: Keyring.load(this.ring(id), this.key(id), this.backend),
        backend: this.backend,
        sequence: {
          async take() {
            const n = await reserver.take();
            taken.push(n);
            return n;
          },
        },
        replay: await ReplayWindow.open(path.join(this.dir, `${id}.replay.json`)),
      });
      this.#sealers.set(id, s);
    }
    return s;
  }

  /** Python seals `payload` from `from`; `extra` are the hostile options (--sign-key, --flip). */
  pySeal(from: Id, to: To, type: string, payload: Uint8Array, seq: bigint, extra: string[] = []): Buffer {
    const how =
      'peer' in to
        ? ['seal', '--keyring', this.ring(from), '--to', to.peer]
        : 'signed' in to
          ? ['signed', '--topic', to.signed]
          : ['group', '--topic', to.group];
    const [cmd, ...rest] = how as [string, ...string[]];
    const r = runPython(
      this.script,
      [cmd, '--key', this.key(from), ...rest, '--type', type, '--seq', seq.toString(), ...extra],
      payload,
    );
    assert.is(r.status, 0, `python ${cmd} from ${from} exited ${r.status}: ${r.stderr}`);
    return r.stdout;
  }

  /** Python opens `body` as `me`: what it printed, or the refusal's code. */
  pyOpen(me: Id, body: Uint8Array): PyOpened {
    const r = runPython(this.script, ['open', '--key', this.key(me), '--keyring', this.ring(me)], body);
    const out = r.stdout.toString('utf8');
    assert.is(r.status, 0, `python open as ${me} exited ${r.status}: ${out}${r.stderr}`);
    return JSON.parse(out) as PyOpened;
  }

  /** Python opens `body` as `me` and must refuse it: the refusal's code. */
  pyRefuses(me: Id, body: Uint8Array): string {
    const r = runPython(this.script, ['open', '--key', this.key(me), '--keyring', this.ring(me)], body);
    const out = r.stdout.toString('utf8');
    assert.is(r.status, 2, `python open as ${me} should refuse, exited ${r.status}: ${out}${r.stderr}`);
    return (JSON.parse(out) as { error: string }).error;
  }

  close(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function withWorld(backendName: 'node' | 'noble', script: string, fn: (w: World) => Promise<void>) {
  const w = new World(selectBackend(backendName), script);
  try {
    assert.is(w.backend.name, backendName, 'the backend asked for');
    await w.makeKeys();
    await fn(w);
  } finally {
    w.close();
  }
}

const enc = (v: unknown): Uint8Array => new Uint8Array(Buffer.from(JSON.stringify(v)));
/** Payloads with non-ASCII text, so that both sides must carry the bytes unchanged. */
const GET_REPORT = enc({
  msg: 'get_report',
  from: '2026-12-04T20:00:00.000Z',
  to: '2026-12-04T20:15:00.000Z',
  note: 'Ω€',
});
const REPORT = enc({ msg: 'report', from: '2026-12-04T20:00:00.000Z', power: [1.5, -0.25], device: 'Wärmepumpe' });
const PRICE = enc({ msg: 'load_price', from: '2026-12-04T21:00:00.000Z', to: '2026-12-04T22:00:00.000Z', price: 0.21 });

interface Expected {
  sender: Id;
  type: string;
  mode: 'pair' | 'group' | 'signed';
  topic: string | undefined;
  seq: bigint;
  payload: Uint8Array;
}

function checkOpened(o: Opened, e: Expected, what: string): void {
  assert.is(o.sender.id, e.sender, `${what}: sender`);
  assert.is(o.type, e.type, `${what}: type`);
  assert.is(o.mode, e.mode, `${what}: mode`);
  assert.is(o.topic, e.topic, `${what}: topic`);
  assert.is(o.sequence, e.seq, `${what}: sequence`);
  assert.ok(Math.abs(o.timestamp - Date.now()) < 60_000, `${what}: timestamp ${o.timestamp} is about now`);
  assert.equal(Buffer.from(o.payload).toString('hex'), Buffer.from(e.payload).toString('hex'), `${what}: payload`);
}

function checkPyOpened(p: PyOpened, e: Expected, what: string): void {
  assert.is(p.sender, e.sender, `${what}: sender`);
  assert.is(p.type, e.type, `${what}: type`);
  assert.is(p.mode, e.mode, `${what}: mode`);
  assert.is(p.topic ?? undefined, e.topic, `${what}: topic`);
  assert.is(p.seq, e.seq.toString(), `${what}: sequence`);
  assert.ok(Math.abs(Number(p.ts) - Date.now()) < 60_000, `${what}: timestamp ${p.ts} is about now`);
  assert.is(p.payload_hex, Buffer.from(e.payload).toString('hex'), `${what}: payload`);
  assert.is(p.payload, Buffer.from(e.payload).toString('utf8'), `${what}: payload as text`);
}

/** The four directions each test runs: who sends what to whom, and how it is addressed. */
interface Case {
  from: Id;
  to: Id;
  dest: To;
  type: string;
  mode: Expected['mode'];
  topic: string | undefined;
  payload: Uint8Array;
}
const CASES: Case[] = [
  {
    from: 'vpp-acme',
    to: 'hub-1',
    dest: { peer: 'hub-1' },
    type: 'get_report',
    mode: 'pair',
    topic: undefined,
    payload: GET_REPORT,
  },
  {
    from: 'hub-1',
    to: 'vpp-acme',
    dest: { peer: 'vpp-acme' },
    type: 'report',
    mode: 'pair',
    topic: undefined,
    payload: REPORT,
  },
  {
    from: 'dso-north',
    to: 'hub-1',
    dest: { signed: TOPIC },
    type: 'load_price',
    mode: 'signed',
    topic: TOPIC,
    payload: PRICE,
  },
  {
    from: 'dso-north',
    to: 'hub-1',
    dest: { group: TOPIC },
    type: 'load_price',
    mode: 'group',
    topic: TOPIC,
    payload: PRICE,
  },
];
/** Python's sequences: past 2^53 (a JavaScript number would round it), the top bit, and the largest. */
const PY_SEQS = [2n ** 53n + 1n, 7n, 2n ** 63n, U64_MAX];

const projectDest = (d: To) =>
  'peer' in d ? { peer: d.peer } : 'signed' in d ? { topic: d.signed } : { group: d.group };

function register(backendName: 'node' | 'noble', script: string): void {
  const s = suite(`python-envelope (${backendName} backend)`);

  s('Python seals, the project opens: PAIR both ways, SIGNED and GROUP', () =>
    withWorld(backendName, script, async (w) => {
      for (const [i, c] of CASES.entries()) {
        const what = `${c.mode} ${c.type} ${c.from} -> ${c.to}, sealed by Python`;
        const seq = PY_SEQS[i]!;
        const body = w.pySeal(c.from, c.dest, c.type, c.payload, seq);
        const opened = (await w.sealer(c.to)).open(body);
        checkOpened(
          opened,
          { sender: c.from, type: c.type, mode: c.mode, topic: c.topic, seq, payload: c.payload },
          what,
        );
        await opened.commit();
      }
    }),
  );

  s('the project seals, Python opens: PAIR both ways, SIGNED and GROUP', () =>
    withWorld(backendName, script, async (w) => {
      for (const c of CASES) {
        const what = `${c.mode} ${c.type} ${c.from} -> ${c.to}, sealed by the project`;
        const body = await (await w.sealer(c.from)).seal(projectDest(c.dest), c.type, c.payload);
        const seq = w.taken.get(c.from)!.at(-1)!;
        assert.ok(seq > 2n ** 53n, `${what}: the sequence ${seq} is past 2^53`);
        const opened = w.pyOpen(c.to, body);
        checkPyOpened(
          opened,
          { sender: c.from, type: c.type, mode: c.mode, topic: c.topic, seq, payload: c.payload },
          what,
        );
        // Python checks what it opens: the same envelope with its last byte (tag or signature) flipped is refused.
        const last = body.length - 1;
        body[last] = (body[last] as number) ^ 1;
        assert.is(
          w.pyRefuses(c.to, body),
          c.mode === 'signed' ? 'BAD_SIGNATURE' : 'DECRYPT_FAILED',
          `${what}, tampered`,
        );
      }
    }),
  );

  s('hostile envelopes crafted in Python are refused with their code', () =>
    withWorld(backendName, script, async (w) => {
      const hub = await w.sealer('hub-1');
      const refused = (body: Buffer, code: CryptoErrorCode, what: string) =>
        cryptoError(() => hub.open(body), code, what);
      const mallory = ['--sign-key', w.key('mallory')];
      // 60 header bytes, then the encrypted signature (64 bytes) and payload: byte 130 is in the payload's ciphertext.
      refused(
        w.pySeal('vpp-acme', { peer: 'hub-1' }, 'get_report', GET_REPORT, 10n, ['--flip', '130']),
        'DECRYPT_FAILED',
        'PAIR with a flipped ciphertext byte',
      );
      refused(
        w.pySeal('dso-north', { group: TOPIC }, 'load_price', PRICE, 11n, ['--flip', '-1']),
        'DECRYPT_FAILED',
        'GROUP with a flipped tag byte',
      );
      refused(
        w.pySeal('dso-north', { signed: TOPIC }, 'load_price', PRICE, 12n, ['--flip', '70']),
        'BAD_SIGNATURE',
        'SIGNED with a flipped payload byte',
      );
      refused(
        w.pySeal('vpp-acme', { peer: 'hub-1' }, 'get_report', GET_REPORT, 13n, mallory),
        'BAD_SIGNATURE',
        "PAIR from the VPP's key, its header signed by mallory (a peer of the hub)",
      );
      refused(
        w.pySeal('dso-north', { signed: TOPIC }, 'load_price', PRICE, 14n, mallory),
        'BAD_SIGNATURE',
        "SIGNED naming the DSO's key, its header signed by mallory",
      );
      // Replay: the first envelope with a sequence opens; another with the same one (a new nonce) is a duplicate,
      // and one 64 below the highest seen, timestamped no later than it (as a replayed one would be), is past the
      // window. (A sequence behind the window timestamped after everything accepted from its sender starts the window
      // again: ReplayWindow, src/crypto/replay.ts.)
      const ts = ['--ts', String(Date.now())];
      const first = hub.open(w.pySeal('vpp-acme', { peer: 'hub-1' }, 'get_report', GET_REPORT, 100n, ts));
      assert.is(first.sequence, 100n, 'the first envelope with sequence 100 opens');
      await first.commit();
      refused(
        w.pySeal('vpp-acme', { peer: 'hub-1' }, 'get_report', GET_REPORT, 100n),
        'DUPLICATE',
        'sequence 100 again',
      );
      refused(
        w.pySeal('vpp-acme', { peer: 'hub-1' }, 'get_report', GET_REPORT, 36n, ts),
        'REPLAYED',
        'sequence 36, 64 below the highest seen, timestamped as it',
      );
      // Nothing refused was recorded: the next sequence still opens.
      const next = hub.open(w.pySeal('vpp-acme', { peer: 'hub-1' }, 'get_report', GET_REPORT, 101n));
      assert.is(next.sender.id, 'vpp-acme');
      await next.commit();
    }),
  );

  s.run();
}

const missing = pythonMissing();
if (missing !== undefined) {
  process.stdout.write(`skipping the Python HEH-E2E interop test: ${missing}\n`);
  const s = suite('python-envelope');
  s.skip('HEH-E2E v1 interop with test/interop/python/heh_e2e.py');
  s.run();
} else {
  const script = findScript();
  const self = suite('python-envelope (the Python side)');
  self(
    'its XChaCha20-Poly1305 passes the draft-irtf-cfrg-xchacha-03 vectors (test/vectors/crypto/xchacha.json)',
    () => {
      const r = runPython(script, ['selftest']);
      assert.is(r.status, 0, `selftest exited ${r.status}: ${r.stdout.toString('utf8')}${r.stderr}`);
      assert.match(r.stdout.toString('utf8'), /^selftest ok: 3 vectors/);
    },
  );
  self.run();
  register('node', script);
  register('noble', script);
}
