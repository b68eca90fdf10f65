/**
 * A sealing hub whose clock is wrong (docs/SECURITY.md, "What is not covered"), without a broker: what the VPP and the
 * hub each see when the hub's clock is a day behind the VPP's, as a Pi without a real-time clock boots on the time
 * fake-hwclock saved at its last shutdown, until NTP steps it.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BusError, type ManualClock } from '../../../src/bus/index.js';
import { EbTime, type Message } from '../../../src/codec/index.js';
import {
  generateIdentity,
  Keyring,
  KNOWN_TYPES,
  nodeBackend,
  type PublicEntry,
  Sealer,
} from '../../../src/crypto/index.js';
import { memoryReplay, until, uuid } from '../../helpers/memory-bus.js';
import { AGG, HEH, type HubRig, hubRig, ofType, T0, within } from '../../helpers/memory-hub.js';

const MIN = 60_000;
const DAY = 24 * 60 * MIN;

const entry = (e: PublicEntry): Record<string, unknown> => ({
  ed25519: e.ed25519,
  x25519: e.x25519.map(({ pub, notBefore }) => ({ pub, notBefore })),
  maySend: KNOWN_TYPES,
  mayReceive: KNOWN_TYPES,
});

/** A sealing hub and VPP on one ManualClock; the hub's sealer reads it `off.ms` off (its own clock, wrong). */
async function skewedRig(): Promise<HubRig & { off: { ms: number }; dead: { hub: string[][]; vpp: string[][] } }> {
  let clock: ManualClock | undefined;
  const off = { ms: 0 };
  const now = (): number => clock?.now() ?? T0;
  const heh = generateIdentity(HEH, nodeBackend, T0 - 7 * DAY);
  const agg = generateIdentity(AGG, nodeBackend, T0 - 7 * DAY);
  let hubSeq = 0n;
  let vppSeq = 0n;
  const rig = await hubRig({
    outbox: true,
    sealing: {
      vpp: new Sealer({
        keyring: new Keyring(nodeBackend, {
          keyring: { format: 'heh-keyring/1', peers: { [HEH]: entry(heh.publicEntry) } },
          privateKey: agg.privateKey,
        }),
        backend: nodeBackend,
        now,
        sequence: { take: async () => ++vppSeq },
        replay: memoryReplay(),
      }),
      hub: async () =>
        new Sealer({
          keyring: new Keyring(nodeBackend, {
            keyring: { format: 'heh-keyring/1', peers: { [AGG]: entry(agg.publicEntry) } },
            privateKey: heh.privateKey,
          }),
          backend: nodeBackend,
          now: () => now() + off.ms,
          sequence: { take: async () => ++hubSeq },
          replay: memoryReplay(),
        }),
    },
  });
  clock = rig.clock;
  const dead = { hub: [] as string[][], vpp: [] as string[][] };
  rig.bus.on('dead-letter', (reason, code) => dead.hub.push([code, reason]));
  rig.vpp.on('dead-letter', (reason, code) => dead.vpp.push([code, reason]));
  return Object.assign(rig, { off, dead });
}

const status = (): Message =>
  ({
    msg: 'get_status_report',
    from: EbTime.fromEpochMs(T0),
    to: EbTime.fromEpochMs(T0 + DAY),
    severity_threshold: 0,
  }) as Message;

const s = suite('hub: a clock a day behind');

s(
  "the VPP's requests: dead-lettered by the hub, unanswered; the VPP learns only that its request timed out",
  async () => {
    const r = await skewedRig();
    try {
      r.off.ms = -DAY;
      const asked = r.vpp.request(HEH, status());
      asked.catch(() => undefined);
      await r.network.idle();
      await until(() => r.dead.hub.length === 1, 2000);
      assert.is(r.dead.hub[0]?.[0], 'FROM_THE_FUTURE');
      assert.match(r.dead.hub[0]?.[1] ?? '', /ahead of our clock .*: its clock is ahead, or ours is behind/);
      await r.clock.advance(60 * MIN);
      const err = await within(asked).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err instanceof BusError, String(err));
      assert.is((err as BusError).code, 'TIMEOUT', (err as Error).message);
      // Once NTP has stepped the hub's clock, the VPP's next request is answered.
      r.off.ms = 0;
      const answer = await within(r.vpp.request(HEH, status()));
      assert.is(answer.msg, 'status_report');
    } finally {
      await r.close();
    }
  },
);

s(
  'its periodic reports: confirmed and dropped from its outbox, dead-lettered STALE by the VPP; the hub logs nothing',
  async () => {
    const r = await skewedRig();
    try {
      await within(
        r.vpp.request(HEH, {
          msg: 'get_periodic_report',
          interval: 120,
          first_from: null,
          resolution: 60,
          signals: ['boiler.p'],
          request_id: uuid(11),
          msg_id: uuid(12),
        } as Message),
      );
      r.off.ms = -(DAY + MIN); // past a report's 24 h
      const warned = r.logs.filter((l) => l.level !== 'debug' && l.level !== 'info').length;
      for (let i = 0; i < 6; i++) {
        await r.clock.advance(MIN);
        await r.network.idle();
      }
      // The outbox writes each report to disk before it sends it: real time, not turns of the event loop.
      const settled = (): boolean => r.dead.vpp.length >= 1 && r.outbox?.pending().length === 0;
      for (const deadline = Date.now() + 10_000; !settled() && Date.now() < deadline; ) {
        await new Promise((resolve) => setTimeout(resolve, 5));
        await r.network.idle();
      }
      assert.ok(r.dead.vpp.length >= 1, 'no report dead-lettered by the VPP within 10 s');
      assert.ok(
        r.dead.vpp.every(([code]) => code === 'STALE'),
        JSON.stringify(r.dead.vpp),
      );
      assert.is(ofType(r.got, 'report').length, 0, 'no report reached the VPP');
      assert.is(r.outbox?.pending().length, 0, 'and none is kept to be sent again: they are lost');
      assert.is(
        r.logs.filter((l) => l.level !== 'debug' && l.level !== 'info').length,
        warned,
        'not a warning at the hub',
      );
    } finally {
      await r.close();
    }
  },
);

s.run();
