/**
 * A wrong clock (docs/SECURITY.md, "What is not covered": a Pi has no real-time clock). The envelope's freshness
 * checks compare the sender's timestamp with the receiver's clock, so a clock off by more than maxClockSkewMs (60 s)
 * one way, or by more than the type's freshness window (5 minutes for a command, 24 h for a report) the other way,
 * refuses every message in that direction; the replay window keeps only the sender's timestamps, so a step of the
 * receiver's clock neither opens it to a replay nor locks a sender out once the clocks agree again.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  CryptoError,
  generateIdentity,
  Keyring,
  nodeBackend,
  ReplayWindow,
  Sealer,
} from '../../../src/crypto/index.js';
import { cryptoError, cryptoErrorAsync } from '../../helpers/crypto.js';
import { memoryReplay, sealers } from '../../helpers/memory-bus.js';

const T0 = Date.UTC(2026, 0, 1, 12);
const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const YEAR = 365 * DAY;

/** The hub (`a`) and the VPP (`b`), each on its own clock: `hubOff` is how far the hub's clock is from the VPP's. */
async function parties(dir: string, keysMadeAt = T0 - 2 * YEAR) {
  const clocks = { vpp: keysMadeAt + MIN, hubOff: 0, who: 'vpp' as 'vpp' | 'hub' };
  const now = (): number => (clocks.who === 'vpp' ? clocks.vpp : clocks.vpp + clocks.hubOff);
  const replay = await ReplayWindow.open(path.join(dir, 'replay.json'));
  const { a: hub, b: vpp } = sealers(
    'hub',
    'vpp',
    ['report', 'response'],
    ['get_report', 'activate'],
    now,
    {},
    { replay },
  );
  clocks.vpp = T0;
  const seal = async (by: 'vpp' | 'hub', type: string): Promise<Buffer> => {
    clocks.who = by;
    return (by === 'vpp' ? vpp : hub).seal({ peer: by === 'vpp' ? 'hub' : 'vpp' }, type, Buffer.from('{}'));
  };
  /** Opens at the other party, on its clock: the code of the refusal, or 'ok' (committed). */
  const open = async (to: 'vpp' | 'hub', body: Buffer): Promise<string> => {
    clocks.who = to;
    try {
      await (to === 'vpp' ? vpp : hub).open(body).commit();
      return 'ok';
    } catch (err) {
      if (err instanceof CryptoError) return err.code;
      throw err;
    }
  };
  return { clocks, seal, open, replay, hub };
}

const test = suite('a wrong clock');
let dir = '';
test.before.each(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'heh-clock-'));
});
test.after.each(() => rmSync(dir, { recursive: true, force: true }));

test('the hub behind or ahead of the VPP by 2 min, 1 h, 1 day, 1 year: which messages each side refuses', async () => {
  const seen: Record<string, string[]> = {};
  for (const [name, off] of [
    ['2 min', 2 * MIN],
    ['1 h', HOUR],
    ['1 day', DAY + MIN],
    ['1 year', YEAR],
  ] as const) {
    for (const sign of [-1, 1]) {
      const p = await parties(mkdtempSync(path.join(dir, 'p-')));
      p.clocks.hubOff = sign * off;
      // A command from the VPP (5 minutes fresh), a report and a response from the hub (24 h fresh).
      seen[`hub ${sign < 0 ? 'behind' : 'ahead'} ${name}`] = [
        await p.open('hub', await p.seal('vpp', 'get_report')),
        await p.open('vpp', await p.seal('hub', 'report')),
        await p.open('vpp', await p.seal('hub', 'response')),
      ];
    }
  }
  assert.equal(seen, {
    // Behind: the VPP's commands are refused as from the future past 60 s; the hub's own are merely old until 24 h.
    'hub behind 2 min': ['FROM_THE_FUTURE', 'ok', 'ok'],
    'hub behind 1 h': ['FROM_THE_FUTURE', 'ok', 'ok'],
    'hub behind 1 day': ['FROM_THE_FUTURE', 'STALE', 'STALE'],
    'hub behind 1 year': ['FROM_THE_FUTURE', 'STALE', 'STALE'],
    // Ahead: the VPP refuses all the hub sends past 60 s; the hub takes the VPP's commands until 5 minutes.
    'hub ahead 2 min': ['ok', 'FROM_THE_FUTURE', 'FROM_THE_FUTURE'],
    'hub ahead 1 h': ['STALE', 'FROM_THE_FUTURE', 'FROM_THE_FUTURE'],
    'hub ahead 1 day': ['STALE', 'FROM_THE_FUTURE', 'FROM_THE_FUTURE'],
    'hub ahead 1 year': ['STALE', 'FROM_THE_FUTURE', 'FROM_THE_FUTURE'],
  });
});

test('from the future: the refusal says our clock, and that ours may be the one behind', async () => {
  const p = await parties(dir);
  p.clocks.hubOff = -DAY;
  const body = await p.seal('vpp', 'get_report');
  p.clocks.who = 'hub';
  const err = cryptoError(() => p.hub.open(body), 'FROM_THE_FUTURE');
  assert.is(
    err.message,
    'get_report from vpp is timestamped 86400000 ms ahead of our clock (2025-12-31T12:00:00.000Z): ' +
      'its clock is ahead, or ours is behind',
  );
});

test('from the future from two peers by about as much: the refusal says our clock looks behind', async () => {
  let now = T0 - 2 * YEAR;
  const clock = (): number => now;
  const ids = Object.fromEntries(['hub', 'vpp', 'dso'].map((id) => [id, generateIdentity(id, nodeBackend, now)]));
  const entry = (id: string, maySend: string[], mayReceive: string[]) => {
    const e = ids[id]!.publicEntry;
    return {
      ed25519: e.ed25519,
      x25519: e.x25519.map(({ pub, notBefore }) => ({ pub, notBefore })),
      maySend,
      mayReceive,
    };
  };
  const sealer = (id: string, peers: Record<string, unknown>): Sealer => {
    let seq = 0n;
    return new Sealer({
      backend: nodeBackend,
      now: clock,
      sequence: { take: async () => ++seq },
      replay: memoryReplay(),
      keyring: new Keyring(nodeBackend, {
        keyring: { format: 'heh-keyring/1', peers },
        privateKey: ids[id]!.privateKey,
      }),
    });
  };
  const cmd = ['get_report'];
  const hub = sealer('hub', { vpp: entry('vpp', cmd, []), dso: entry('dso', cmd, []) });
  const vpp = sealer('vpp', { hub: entry('hub', [], cmd) });
  const dso = sealer('dso', { hub: entry('hub', [], cmd) });
  const from = async (s: Sealer, off: number): Promise<Buffer> => {
    now = T0;
    const body = await s.seal({ peer: 'hub' }, 'get_report', Buffer.from('{}'));
    now = T0 - off; // the hub's clock
    return body;
  };
  // One peer ahead: either clock may be wrong.
  let body = await from(vpp, DAY);
  assert.match(cryptoError(() => hub.open(body), 'FROM_THE_FUTURE').message, /its clock is ahead, or ours is behind$/);
  // A second peer ahead by about as much: ours is the odd one out.
  body = await from(dso, DAY + 5 * MIN);
  assert.match(
    cryptoError(() => hub.open(body), 'FROM_THE_FUTURE').message,
    /get_report from dso is timestamped 86700000 ms ahead of our clock \(.*\): so was vpp's, by about as much: our clock looks behind \(NTP\?\)$/,
  );
  // A peer ahead by another amount is its own clock's matter.
  body = await from(dso, 3 * HOUR);
  assert.match(cryptoError(() => hub.open(body), 'FROM_THE_FUTURE').message, /its clock is ahead, or ours is behind$/);
});

test("a clock behind our key's start (a Pi in 1970): nothing can be sealed, and the refusal says our clock", async () => {
  const p = await parties(dir);
  p.clocks.hubOff = MIN - T0; // the hub's clock a minute after 0: 1970, no fake-hwclock
  const err = await cryptoErrorAsync(() => p.seal('hub', 'report'), 'NO_KEY_FOR_PEER');
  assert.match(err.message, /^none of our X25519 keys is in force at 1970-01-01T00:0.*Z \(our clock\)$/);
});

test('refused for its time, a message is not recorded: the same envelope opens once the clocks agree, once', async () => {
  const p = await parties(dir);
  p.clocks.hubOff = -DAY; // fake-hwclock restored yesterday's shutdown time
  const early = await p.seal('vpp', 'get_report');
  assert.is(await p.open('hub', early), 'FROM_THE_FUTURE');
  assert.is(p.replay.size, 0, 'nothing recorded in the replay window');
  p.clocks.hubOff = 0; // NTP steps the hub's clock: the same bytes (redelivered, or shovelled back) now open
  assert.is(await p.open('hub', early), 'ok');
  assert.is(await p.open('hub', early), 'DUPLICATE', 'and only once');
});

test('the hub stepped back a year, then forward: the replay window holds the VPP sequence across both steps', async () => {
  const p = await parties(dir);
  const a = await p.seal('vpp', 'get_report');
  const b = await p.seal('vpp', 'get_report');
  assert.is(await p.open('hub', a), 'ok');
  p.clocks.hubOff = -YEAR;
  const c = await p.seal('vpp', 'get_report');
  assert.is(await p.open('hub', c), 'FROM_THE_FUTURE');
  p.clocks.hubOff = YEAR; // ahead now: stale
  assert.is(await p.open('hub', b), 'STALE');
  p.clocks.hubOff = 0;
  assert.is(await p.open('hub', a), 'DUPLICATE', 'a replay across the steps is still refused');
  assert.is(await p.open('hub', b), 'ok', 'the message refused while the clock was wrong opens after');
  assert.is(await p.open('hub', c), 'ok');
  // The state file written across the steps is read back and still refuses the replays.
  await p.replay.persist();
  const again = await ReplayWindow.open(p.replay.file);
  const kid = Object.keys(
    (JSON.parse(readFileSync(p.replay.file, 'utf8')) as { senders: object }).senders,
  )[0] as string;
  for (const seq of [1n, 2n, 3n]) assert.is(again.check(kid, seq, T0), 'duplicate');
});

test.run();
