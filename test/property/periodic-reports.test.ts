/**
 * Periodic reports as a property (src/device/reports.ts): whatever sequence of subscriptions (intervals of 1 to 5
 * minutes, first_from absent, in the past, unaligned or ahead), cancellations (interval -1), time passing, sends
 * held back by a broker that does not confirm, and restarts a VPP and the world make, drawn from a seeded PRNG, on
 * the example hub (with or without its outbox):
 *  - each report covers one period of its subscription (its interval, one value per resolution step);
 *  - a subscription's reports start at its first period (first_from, else the period holding the moment it was
 *    made) and follow each other without a gap or a repeat (a period sent again after a restart has the same
 *    message id and is dropped by the VPP as a duplicate);
 *  - no period is sent before it is over (its end plus one resolution step, for the last sample);
 *  - a subscription replaced or cancelled sends nothing more, but for a send that was already under way;
 *  - at the end, with the broker back and time moved on, every period that is over has been reported.
 * A failure names the seed and the step. FUZZ_ITERATIONS=n runs n sequences (default 12), FUZZ_SEED=s replays one.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Outgoing } from '../../src/bus/index.js';
import { EbTime, type Message } from '../../src/codec/index.js';
import { bodyBytes } from '../../src/core/body-writer.js';
import { HEH, type HubRig, hubRig, ofType, within } from '../helpers/memory-hub.js';
import { Random } from '../helpers/random.js';

const RES = 60_000; // the rig's resolution
const sequences = Number(process.env['FUZZ_ITERATIONS'] ?? 12);
const firstSeed = Number(process.env['FUZZ_SEED'] ?? 20_261_204);

const idOf = (n: number): string => `7a1c2e9a-3333-4333-8333-${n.toString(16).padStart(12, '0')}`;

interface Sub {
  requestId: string;
  step: number;
  first: number;
  /** When it was replaced or cancelled; undefined while it is the requester's subscription. */
  ended?: number;
}

/** Holds the hub's report sends while `holding`, as a broker that does not confirm; records when each was made. */
class Broker {
  holding = false;
  #release: (() => void)[] = [];
  readonly calls: { at: number; requestId: string; from: number }[] = [];
  readonly #wrapped = new WeakSet<object>();

  constructor(readonly r: HubRig) {}

  /** Wraps the current transport's send (a restart makes a new one). */
  wrap(): void {
    const transport = this.r.bus.transport;
    if (this.#wrapped.has(transport)) return;
    this.#wrapped.add(transport);
    const send = transport.send.bind(transport);
    transport.send = async (o: Outgoing) => {
      if (o.properties.type === 'report') {
        this.calls.push({ at: this.r.clock.now(), ...periodOf(o) });
        if (this.holding) await new Promise<void>((resolve) => this.#release.push(resolve));
      }
      return send(o);
    };
  }

  release(): void {
    this.holding = false;
    for (const resolve of this.#release.splice(0)) resolve();
  }
}

/** The subscription and the period of a report being sent (its body is the JSON the hub wrote). */
function periodOf(o: Outgoing): { requestId: string; from: number } {
  const body = o.body instanceof Uint8Array ? o.body : bodyBytes(o.body);
  const m = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString()) as Record<
    string,
    unknown
  >;
  return { requestId: String(m['request_id']), from: Date.parse(String(m['from'])) };
}

async function sequence(seed: number, steps: number): Promise<void> {
  const rnd = new Random(seed);
  // A send held here may go again from the outbox and both copies arrive an hour apart: further apart than the
  // VPP's dedupe window (15 minutes, the inbox's message TTL), beyond which a copy is handled again. It is widened.
  const r = await hubRig({ outbox: rnd.bool(), vppDedupeTtlMs: 86_400_000 });
  const broker = new Broker(r);
  broker.wrap();
  const subs: Sub[] = [];
  let next = 1;
  const current = (): Sub | undefined => subs.find((s) => s.ended === undefined);
  try {
    for (let step = 0; step < steps; step++) {
      const where = `seed ${seed}, step ${step}`;
      const op = rnd.int(20);
      const now = r.clock.now();
      if (op < 4) {
        const interval = [60, 120, 180, 300][rnd.int(4)] as number;
        const stepMs = interval * 1000;
        const aligned = Math.floor(now / stepMs) * stepMs;
        const firstFrom = [
          null,
          null,
          aligned - rnd.int(4) * stepMs,
          now - rnd.range(1, 30) * 10_000,
          aligned + stepMs * rnd.range(1, 2),
        ][rnd.int(5)] as number | null;
        const requestId = idOf(next++);
        const answer = await within(
          r.vpp.request(HEH, {
            msg: 'get_periodic_report',
            interval,
            first_from: firstFrom === null ? null : EbTime.fromEpochMs(firstFrom),
            resolution: 60,
            signals: ['boiler.p'],
            request_id: requestId,
            msg_id: idOf(1_000_000 + step),
          }),
        );
        assert.is((answer as Message<'response'>).response_code, 200, `${where}: subscribed`);
        const old = current();
        if (old !== undefined) old.ended = now;
        subs.push({ requestId, step: stepMs, first: firstFrom ?? aligned });
      } else if (op < 5) {
        await within(
          r.vpp.request(HEH, {
            msg: 'get_periodic_report',
            interval: -1,
            first_from: null,
            resolution: 60,
            signals: ['boiler.p'],
            msg_id: idOf(1_000_000 + step),
          }),
        );
        const old = current();
        if (old !== undefined) old.ended = now;
      } else if (op < 7) {
        broker.holding = true;
      } else if (op < 9) {
        broker.release();
      } else if (op < 10) {
        broker.release();
        await r.network.idle();
        await r.restart();
        broker.wrap();
      } else {
        await r.clock.advance(rnd.range(1, 36) * 10_000);
      }
      await r.network.idle();
      check(r, broker, subs, where, false);
    }
    // The broker back, time moved on: every period over is reported. The manual clock does not wait for the disk
    // (the outbox, the state): time moves in small steps with a real pause between them, as it would by itself.
    broker.release();
    for (let i = 0; i < 72; i++) {
      await r.network.idle();
      await new Promise((resolve) => setTimeout(resolve, 2));
      await r.clock.advance(5_000);
    }
    // On a loaded machine the disk lags the clock further: the last period due gets up to 10 s of real time.
    for (let i = 0; i < 1000 && !caughtUp(r, current()); i++) {
      await r.network.idle();
      await new Promise((resolve) => setTimeout(resolve, 10));
      await r.clock.advance(100);
    }
    await r.network.idle();
    check(r, broker, subs, `seed ${seed}, the end`, true);
  } finally {
    broker.release();
    await r.close();
  }
}

/** Whether the requester's subscription has reported every period over (with a second's slack at the boundary). */
function caughtUp(r: HubRig, sub: Sub | undefined): boolean {
  if (sub === undefined) return true;
  const reported = ofType(r.got, 'report').filter((m) => m.request_id === sub.requestId).length;
  return reported >= Math.max(0, Math.floor((r.clock.now() - RES - 1000 - sub.first) / sub.step));
}

function check(r: HubRig, broker: Broker, subs: Sub[], where: string, complete: boolean): void {
  const reports = ofType(r.got, 'report');
  for (const m of reports) {
    const sub = subs.find((s) => s.requestId === m.request_id);
    assert.ok(sub !== undefined, `${where}: a report for a subscription never made (${String(m.request_id)})`);
    assert.is(m.to.epochMs - m.from.epochMs, sub.step, `${where}: one period of ${sub.step / 1000} s`);
    assert.is(m.values['boiler.p']?.length, sub.step / RES, `${where}: one value per resolution step`);
  }
  for (const sub of subs) {
    const froms = reports.filter((m) => m.request_id === sub.requestId).map((m) => m.from.epochMs);
    const expected = froms.map((_, i) => sub.first + i * sub.step);
    assert.equal(froms, expected, `${where}: ${sub.requestId}'s periods from its first, without gap or repeat`);
    const calls = broker.calls.filter((c) => c.requestId === sub.requestId);
    for (const c of calls)
      assert.ok(
        c.at >= c.from + sub.step + RES,
        `${where}: ${sub.requestId}'s period ${c.from} sent before it was over`,
      );
    if (sub.ended !== undefined) {
      // What was under way may go again (from the outbox, after a restart); nothing new.
      const before = new Set(calls.filter((c) => c.at <= (sub.ended as number)).map((c) => c.from));
      const late = calls.filter((c) => c.at > (sub.ended as number) && !before.has(c.from));
      assert.equal(late, [], `${where}: ${sub.requestId} sent a new period after it was replaced or cancelled`);
    } else if (complete) {
      // A period is over at its end plus one resolution step; one due at this very instant may still be on its way.
      const over = (slack: number): number =>
        Math.max(0, Math.floor((r.clock.now() - RES - slack - sub.first) / sub.step));
      assert.ok(
        froms.length >= over(1000) && froms.length <= over(0),
        `${where}: every period of ${sub.requestId} that is over is reported (${froms.length} of ${over(0)})`,
      );
    }
  }
}

test(`periodic reports: each period once, in order, when it is over, whatever the sequence (${sequences} sequences of 60 steps)`, async () => {
  for (let i = 0; i < sequences; i++) await sequence(firstSeed + i, 60);
});

test.run();
