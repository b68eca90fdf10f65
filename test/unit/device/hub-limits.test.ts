/**
 * What a peer can ask of the hub's reports is bounded (issue 14, item 4; docs/hub.md "Limits"): a report never holds
 * more values than fit the body every peer's bus accepts, the error for a larger one says so (461, not "must be a
 * multiple of"), a periodic subscription's backlog is capped at MAX_CATCH_UP_PERIODS within the history and sent at
 * CATCH_UP_MS a report, not in one burst. On the in-memory transport and a ManualClock.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BusError } from '../../../src/bus/index.js';
import { decode, EbTime, encode, type Message } from '../../../src/codec/index.js';
import { BODY_LIMIT, CATCH_UP_MS, MAX_CATCH_UP_PERIODS, maxReportValues } from '../../../src/device/reports.js';
import { uuid } from '../../helpers/memory-bus.js';
import { HEH, type HubRig, hubRig, ofType, T0, within } from '../../helpers/memory-hub.js';

const ts = (ms: number): EbTime => EbTime.fromEpochMs(ms);
const MIN = 60_000;
const DAY = 86_400_000;

async function eventually(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

async function refused(p: Promise<Message>): Promise<Message<'response'>> {
  try {
    const m = await p;
    throw new Error(`expected an error response, got ${JSON.stringify(m).slice(0, 200)}`);
  } catch (err) {
    if (err instanceof BusError && err.code === 'REJECTED') return err.reply as Message<'response'>;
    throw err;
  }
}

const ask = (r: HubRig, m: Message): Promise<Message> => within(r.vpp.request(HEH, m));

const s = suite('hub report limits');

s(
  'the largest report allowed fits the body limit whatever its values, sealed too, and decodes with the default limits',
  () => {
    const signals = ['meter.p', 'boiler.p', 'a_rather_long_device_name.a_rather_long_signal_name'];
    const max = maxReportValues(signals);
    assert.ok(max > 40_000, `${max} values`);
    const steps = Math.floor(max / signals.length);
    const worst = -2.2250738585072014e-308; // the longest number JSON writes
    const report: Message<'report'> = {
      msg: 'report',
      from: ts(T0),
      to: ts(T0 + steps * 1000),
      resolution: 1,
      values: Object.fromEntries(signals.map((sig) => [sig, Array<number>(steps).fill(worst)])),
      request_id: uuid(1),
      heh_id: 'h'.repeat(200), // the longest a heh_id may be
    };
    const body = encode(report);
    // A sealed envelope adds its header, signature and tag: well under the 2 KiB kept for it.
    assert.ok(body.length + 200 <= BODY_LIMIT, `${body.length} bytes`);
    assert.is(decode(body).message.msg, 'report');
  },
);

s(
  'get_report of more values than a report may hold: 461 naming the real reason, before the history is read',
  async () => {
    const r = await hubRig();
    try {
      const max = maxReportValues(['meter.p', 'boiler.p']);
      // 24 h at 1 min is 1,440 steps per signal: fine. 90 days at 1 min for 2 signals is 259,200 values: too many.
      const ok = (await ask(r, {
        msg: 'get_report',
        from: ts(T0 - DAY),
        to: ts(T0),
        resolution: 60,
        signals: ['meter.p', 'boiler.p'],
      })) as Message<'report'>;
      assert.is(ok.values['meter.p']?.length, 1440);
      const e = await refused(
        ask(r, {
          msg: 'get_report',
          from: ts(T0 - 90 * DAY),
          to: ts(T0),
          resolution: 60,
          signals: ['meter.p', 'boiler.p'],
          request_id: uuid(1),
        }),
      );
      assert.is(e.response_code, 461);
      assert.is(
        e.response_desc,
        `a report of 259200 values (7776000 s at 60 s, per signal) is more than the ${max} one report may hold ` +
          `(a bus refuses bodies over ${BODY_LIMIT} bytes): ask for a shorter span, a coarser resolution or fewer signals`,
      );
      assert.not.match(e.response_desc, 'multiple');
      // A subscription whose every report would be too large is refused the same way.
      const sub = await refused(
        ask(r, {
          msg: 'get_periodic_report',
          interval: 3_000_000,
          first_from: null,
          resolution: 60,
          signals: ['meter.p'],
          request_id: uuid(2),
        }),
      );
      assert.equal(
        [sub.response_code, sub.response_desc.slice(0, 43)],
        [461, 'a report of 50000 values (3000000 s at 60 s'],
      );
      assert.equal(r.store.state.subscriptions, []);
    } finally {
      await r.close();
    }
  },
);

s('a subscription from two days back catches up 1,000 periods at most, ten a second, then goes on live', async () => {
  const r = await hubRig();
  try {
    const rid = uuid(7);
    const ack = (await ask(r, {
      msg: 'get_periodic_report',
      interval: 60,
      first_from: ts(T0 - 2 * DAY),
      resolution: 60,
      signals: ['meter.p'],
      request_id: rid,
      msg_id: uuid(8),
    })) as Message<'response'>;
    const start = T0 - MAX_CATCH_UP_PERIODS * MIN;
    assert.equal(
      [ack.response_code, ack.response_desc],
      [
        200,
        `OK; the backlog is capped at ${MAX_CATCH_UP_PERIODS} periods within the history: reports start at ${ts(start).toString()}`,
      ],
    );
    assert.is(r.store.state.subscriptions[0]?.next, start);
    const reports = (): Message<'report'>[] => ofType(r.got, 'report').filter((m) => m.request_id === rid);
    // Paced: one per CATCH_UP_MS of the clock, none at once.
    await r.network.idle();
    assert.is(reports().length, 0, 'nothing in the same instant');
    for (let i = 1; i <= 10; i++) {
      await r.clock.advance(CATCH_UP_MS);
      await eventually(() => reports().length === i, `catch-up report ${i}`);
    }
    assert.equal(
      reports().map((m) => m.from.epochMs),
      Array.from({ length: 10 }, (_, i) => start + i * MIN),
    );
    // The whole backlog takes 100 s of the clock.
    for (let t = 0; t < 99; t++) {
      await r.clock.advance(1000);
      await eventually(() => reports().length === 10 * (t + 2), `the backlog at ${t + 2} s`);
    }
    assert.is(reports().length, MAX_CATCH_UP_PERIODS);
    assert.is(reports().at(-1)?.from.epochMs, T0 - MIN);
    // Caught up: the live period [T0, T0 + 1 min) goes out at its end plus a sample, not before.
    const live = T0 + 2 * MIN - r.clock.now();
    await r.clock.advance(live - 1);
    assert.is(reports().length, MAX_CATCH_UP_PERIODS);
    await r.clock.advance(1);
    await eventually(() => reports().length === MAX_CATCH_UP_PERIODS + 1, 'the live period');
  } finally {
    await r.close();
  }
});

s.run();
