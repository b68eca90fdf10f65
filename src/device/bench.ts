/**
 * `hub.js bench`: the figures that matter on the device itself (a Pi Zero is not an x86 laptop): the codec
 * encoding and decoding a report, sealing and opening one with each crypto backend, and round trips to the
 * configured broker (with --config), through the transport the hub uses (its loopback: a private queue or topic of
 * our own, so nothing the hub receives is touched). A progress line on stderr while it runs; a table on stdout at
 * the end.
 */
import type { Transport } from '../bus/index.js';
import { decode, EbTime, encode, encodeInto, type Message } from '../codec/index.js';
import type { Io } from '../core/io.js';
import {
  type CryptoBackend,
  generateIdentity,
  Keyring,
  nobleBackend,
  nodeBackend,
  Sealer,
  selectBackend,
} from '../crypto/index.js';

interface Row {
  what: string;
  value: string;
}

function report(): Message<'report'> {
  const from = EbTime.fromEpochMs(Math.floor(Date.now() / 900_000) * 900_000 - 2_700_000);
  return {
    msg: 'report',
    from,
    to: from.plusSeconds(2700),
    resolution: 900,
    values: { 'meter.p': [1.25, 2.5, 3.75], 'meter.q': [0.1, 0.2, 0.3], 'boiler.p': [2, 0, 2] },
  };
}

/** Runs `fn` for about `ms` and returns operations per second. */
async function rate(fn: () => unknown, ms: number): Promise<number> {
  let n = 0;
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    const r = fn();
    if (r instanceof Promise) await r;
    n++;
  }
  return n / ((Date.now() - t0) / 1000);
}

function sealers(backend: CryptoBackend): { a: Sealer; b: Sealer } {
  const now = Date.now() - 60_000;
  const x = generateIdentity('bench-a', backend, now);
  const y = generateIdentity('bench-b', backend, now);
  const entry = (e: typeof x.publicEntry, send: string[], receive: string[]): Record<string, unknown> => ({
    ed25519: e.ed25519,
    x25519: e.x25519.map(({ pub, notBefore }) => ({ pub, notBefore })),
    maySend: send,
    mayReceive: receive,
  });
  let seq = 0n;
  const sequence = { take: async (): Promise<bigint> => ++seq };
  const replay = {
    check: (): 'new' => 'new',
    accept: (): void => undefined,
    persist: async (): Promise<void> => undefined,
  };
  return {
    a: new Sealer({
      backend,
      sequence,
      replay,
      keyring: new Keyring(backend, {
        keyring: { format: 'heh-keyring/1', peers: { 'bench-b': entry(y.publicEntry, [], ['report']) } },
        privateKey: x.privateKey,
      }),
    }),
    b: new Sealer({
      backend,
      sequence,
      replay,
      keyring: new Keyring(backend, {
        keyring: { format: 'heh-keyring/1', peers: { 'bench-a': entry(x.publicEntry, ['report'], []) } },
        privateKey: y.privateKey,
      }),
    }),
  };
}

export async function bench(
  io: Io,
  options: { seconds: number; broker?: Pick<Required<Transport>, 'loopback'> },
): Promise<number> {
  const ms = options.seconds * 1000;
  const rows: Row[] = [];
  const steps = 4 + 4 + (options.broker === undefined ? 0 : 1);
  let step = 0;
  const progress = (what: string): void => io.err(`bench: ${++step}/${steps} ${what} ...`);
  const m = report();
  const body = encode(m);
  const frame = Buffer.alloc(4096);
  const fmt = (n: number): string => `${Math.round(n).toLocaleString('en-US')} /s`;

  progress('codec encode in place');
  rows.push({
    what: `codec: encode + validate a ${body.length} B report (in place)`,
    value: fmt(await rate(() => encodeInto(m, frame, 7), ms)),
  });
  progress('codec decode');
  rows.push({ what: 'codec: decode + validate it', value: fmt(await rate(() => decode(body), ms)) });
  progress('JSON.stringify baseline');
  const plain = JSON.parse(body.toString()) as unknown;
  rows.push({
    what: '  baseline: Buffer.from(JSON.stringify(m))',
    value: fmt(await rate(() => Buffer.from(JSON.stringify(plain)), ms)),
  });
  progress('JSON.parse baseline');
  rows.push({
    what: '  baseline: JSON.parse(buf.toString())',
    value: fmt(await rate(() => JSON.parse(body.toString()), ms)),
  });

  const backends = selectBackend('auto') === nodeBackend ? [nodeBackend, nobleBackend] : [nobleBackend];
  for (const backend of [nodeBackend, nobleBackend]) {
    if (!backends.includes(backend)) {
      step += 2;
      rows.push({ what: `seal/open (${backend.name})`, value: 'not available in this Node' });
      continue;
    }
    const { a, b } = sealers(backend);
    const env = await a.seal({ peer: 'bench-b' }, 'report', body);
    progress(`seal with ${backend.name}`);
    rows.push({
      what: `crypto: seal a report, PAIR (${backend.name})`,
      value: fmt(await rate(() => a.seal({ peer: 'bench-b' }, 'report', body), ms)),
    });
    progress(`open with ${backend.name}`);
    rows.push({ what: `crypto: open it (${backend.name})`, value: fmt(await rate(() => b.open(env).release(), ms)) });
  }

  // The broker's failure must not throw away what was measured before it: the table is printed either way.
  let brokerFailure: { error: unknown } | undefined;
  if (options.broker !== undefined) {
    progress('broker round trips');
    try {
      rows.push(await roundTrips(options.broker, body, ms));
    } catch (error) {
      brokerFailure = { error };
      rows.push({
        what: 'broker: publish (confirmed) + consume round trip',
        value: 'not measured: the broker part could not run',
      });
    }
  }
  const width = Math.max(...rows.map((r) => r.what.length));
  io.out(`ebadge hub bench: node ${process.version} ${process.arch}, ${options.seconds} s per figure`);
  for (const r of rows) io.out(`${r.what.padEnd(width)}  ${r.value}`);
  if (brokerFailure !== undefined) throw brokerFailure.error;
  return 0;
}

/** Round trips through the broker's loopback: `ms` of them, at most 1,000. */
async function roundTrips(broker: Pick<Required<Transport>, 'loopback'>, body: Uint8Array, ms: number): Promise<Row> {
  let resolveNext: (() => void) | undefined;
  const loop = await broker.loopback(() => resolveNext?.());
  try {
    const rtts: number[] = [];
    const t0 = Date.now();
    while (Date.now() - t0 < ms && rtts.length < 1000) {
      const t = process.hrtime.bigint();
      const got = new Promise<void>((r) => {
        resolveNext = r;
      });
      await loop.send(body);
      await got;
      rtts.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    rtts.sort((x, y) => x - y);
    const q = (p: number): string => (rtts[Math.min(rtts.length - 1, Math.floor(rtts.length * p))] ?? NaN).toFixed(1);
    return {
      what: `broker: publish (confirmed) + consume round trip, ${rtts.length} x`,
      value: `median ${q(0.5)} ms, p99 ${q(0.99)} ms`,
    };
  } finally {
    // A connection lost while measuring fails the close too: the error that tells why is the one to report.
    await loop.close().catch(() => undefined);
  }
}
