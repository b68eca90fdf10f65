/**
 * The hub's handlers and its own messages without a broker (src/device/hub.ts, reports.ts), a VPP connector over
 * the in-memory transport and a ManualClock: registration (and its retry on the clock), sampling into the history
 * and get_report / get_load_report from it with their §3.6 codes, periodic report subscriptions (sent per period on
 * the clock with ids derived from the period, replaced, stopped, resumed after a restart, through the outbox and
 * sent again after a lost connection), realtime events, status and events queries, set_clock and prices.
 * test/integration/hub.test.ts proves the same end to end against RabbitMQ and a real hub process.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BusError } from '../../../src/bus/index.js';
import { EbTime, type Message } from '../../../src/codec/index.js';
import { derivedUuid, MAX_PRICES } from '../../../src/device/hub.js';
import { deliver, uuid } from '../../helpers/memory-bus.js';
import { AGG, HEH, type HubRig, hubRig, ofType, T0, within } from '../../helpers/memory-hub.js';

const ts = (ms: number): EbTime => EbTime.fromEpochMs(ms);
const MIN = 60_000;

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
    throw new Error(`expected an error response, got ${JSON.stringify(m)}`);
  } catch (err) {
    if (err instanceof BusError && err.code === 'REJECTED') return err.reply as Message<'response'>;
    throw err;
  }
}

const ask = (r: HubRig, m: Message): Promise<Message> => within(r.vpp.request(HEH, m));

/** Moves the clock minute by minute, letting each sample land in the history. */
async function minutes(r: HubRig, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const before = r.history.newest();
    await r.clock.advance(MIN);
    await eventually(() => r.history.newest() !== before, 'a sample');
  }
}

const g = suite('hub: registration and sampling');

g(
  'registration: capabilities, device_capabilities per device, get_all_prices; retried on the clock when refused',
  async () => {
    const r = await hubRig({ start: false });
    try {
      let refuse = true;
      r.bus.transport.sendFailure = () => (refuse ? new Error('unroutable') : undefined);
      await within(r.hub.start());
      assert.equal(r.bus.transport.sent, [], 'nothing is sent before the broker is reached');
      await within(r.hub.connected());
      assert.ok(r.logs.some((l) => l.msg === 'registration not delivered; retrying' && l.fields['inSeconds'] === 15));
      assert.equal(r.got, []);
      refuse = false;
      await r.clock.advance(14_999);
      assert.equal(r.got, [], 'not before 15 s');
      await r.clock.advance(1);
      await eventually(() => r.got.length === 4, 'the registration');
      assert.equal(
        r.got.map((m) => m.msg),
        ['capabilities', 'device_capabilities', 'device_capabilities', 'get_all_prices'],
      );
      const caps = r.got[0] as Message<'capabilities'>;
      assert.equal([caps.devices, caps.dm_version], [['meter', 'boiler'], '3.1']);
      assert.ok(caps.supported_msgs?.includes('activate'));
      assert.equal(
        r.got.slice(1, 3).map((m) => (m as Message<'device_capabilities'>).device),
        ['meter', 'boiler'],
      );
      assert.ok(r.logs.some((l) => l.msg === 'registered' && l.fields['peer'] === AGG));
    } finally {
      await r.close();
    }
  },
);

g('samples land once per resolution; get_report and get_load_report answer from the history', async () => {
  const r = await hubRig();
  try {
    r.readings.set('meter', 1.25);
    await minutes(r, 1);
    r.readings.set('meter', 2.5);
    r.readings.set('boiler', 0.5);
    await minutes(r, 1);
    const report = (await ask(r, {
      msg: 'get_report',
      from: ts(T0),
      to: ts(T0 + 3 * MIN),
      resolution: 60,
      signals: ['meter.p', 'boiler.p'],
    })) as Message<'report'>;
    assert.equal(report.values, { 'meter.p': [1.25, 2.5, null], 'boiler.p': [2, 0.5, null] });
    const load = (await ask(r, {
      msg: 'get_load_report',
      from: ts(T0),
      to: ts(T0 + 2 * MIN),
      resolution: 60,
      device: null,
    })) as Message<'load_report'>;
    assert.equal([load.device, load.values], [null, [3.25, 3]], 'the sum of every device');
    const boiler = (await ask(r, {
      msg: 'get_load_report',
      from: ts(T0),
      to: ts(T0 + 2 * MIN),
      resolution: 60,
      device: 'boiler',
    })) as Message<'load_report'>;
    assert.equal(boiler.values, [2, 0.5]);
  } finally {
    await r.close();
  }
});

g(
  'a clock stepped back (NTP correcting a fast clock) goes on sampling at once, not after the time it went back',
  async () => {
    const r = await hubRig();
    try {
      r.readings.set('meter', 1.25);
      await minutes(r, 3);
      await r.clock.step(-60 * MIN);
      r.readings.set('meter', 7);
      const from = T0 + 3 * MIN - 60 * MIN;
      await r.clock.advance(3 * MIN);
      await eventually(
        () => r.history.query(from, from + 2 * MIN, 60, ['meter.p']).values['meter.p']?.[1] === 7,
        'samples',
      );
      const report = (await ask(r, {
        msg: 'get_report',
        from: ts(from),
        to: ts(from + 2 * MIN),
        resolution: 60,
        signals: ['meter.p'],
      })) as Message<'report'>;
      assert.equal(report.values, { 'meter.p': [7, 7] }, 'the minutes lived again are sampled');
    } finally {
      await r.close();
    }
  },
);

g('a failing meter gives nulls, meter_fault once and status degraded; meter_ok when it reads again', async () => {
  const r = await hubRig();
  try {
    r.readings.set('meter', new Error('no answer'));
    await minutes(r, 2);
    const status = async (): Promise<Message<'status_report'>> =>
      (await ask(r, {
        msg: 'get_status_report',
        from: ts(T0),
        to: ts(T0 + 60 * MIN),
        severity_threshold: 0,
      })) as Message<'status_report'>;
    const s1 = await status();
    assert.is(s1.status, 'degraded');
    assert.equal(
      s1.events.filter((e) => e.type === 'meter_fault').length,
      1,
      'one event for the fault, not one per sample',
    );
    const q = r.history.query(T0, T0 + 2 * MIN, 60, ['meter.p', 'boiler.p']);
    assert.equal(q.values['meter.p'], [null, null]);
    assert.equal(q.values['boiler.p'], [2, 2]);
    r.readings.set('meter', 1);
    await minutes(r, 1);
    const s2 = await status();
    assert.is(s2.status, 'ok');
    assert.ok(s2.events.some((e) => e.type === 'meter_ok'));
    assert.is(s2.clock.epochMs, r.clock.now(), 'the status carries the hub time');
  } finally {
    await r.close();
  }
});

g('status is shutting_down from the moment stop() begins (docs/hub.md)', async () => {
  const r = await hubRig();
  try {
    assert.is(r.hub.status, 'ok');
    const stopping = r.hub.stop();
    assert.is(r.hub.status, 'shutting_down', 'before the stop has done anything it awaits');
    await stopping;
    assert.is(r.hub.status, 'shutting_down');
  } finally {
    await r.close();
  }
});

g(
  'a meter that does not answer within half a resolution, or reads out of range, gives nulls and meter_fault; the others are recorded',
  async () => {
    const r = await hubRig();
    try {
      r.readings.set('meter', 'hang');
      await r.clock.advance(MIN);
      // The slot's reading waits for the slow meter at most half the resolution (30 s here; 10 s at most).
      await r.clock.advance(10_000);
      await eventually(() => r.history.newest() !== undefined, 'the slot recorded');
      const q = r.history.query(T0, T0 + MIN, 60, ['meter.p', 'boiler.p']);
      assert.equal(q.values['meter.p'], [null]);
      assert.equal(q.values['boiler.p'], [2], 'the other meter is recorded');
      assert.ok(
        r.logs.some(
          (l) => l.msg === 'meter read failed' && String(l.fields['error']).includes('no reading within 10000 ms'),
        ),
      );
      // A reading no meter gives (it overflowed every sum of a report).
      r.readings.set('meter', 1);
      r.readings.set('boiler', 1.7e308);
      await minutes(r, 1);
      const q2 = r.history.query(T0 + MIN, T0 + 2 * MIN, 60, ['meter.p', 'boiler.p']);
      assert.equal([q2.values['meter.p'], q2.values['boiler.p']], [[1], [null]]);
      const report = (await ask(r, {
        msg: 'get_report',
        from: ts(T0),
        to: ts(T0 + 2 * MIN),
        resolution: 120,
        signals: ['boiler.p'],
      } as Message)) as Message<'report'>;
      assert.equal(report.values['boiler.p'], [2]);
    } finally {
      await r.close();
    }
  },
);

g(
  'why a report has no answer: 460 a signal not measured, 461 a resolution not a multiple, 454 from >= to',
  async () => {
    const r = await hubRig();
    try {
      const get = (signals: string[], resolution = 60): Promise<Message> =>
        ask(r, {
          msg: 'get_report',
          from: ts(T0),
          to: ts(T0 + 2 * MIN),
          resolution,
          signals,
          request_id: uuid(1),
        });
      const e460 = await refused(get(['meter.p', 'toaster.p', 'boiler.q']));
      assert.equal(
        [e460.response_code, e460.msg_id, e460.ref_msg, e460.request_id],
        [460, null, 'get_report', uuid(1)],
      );
      // The signals not measured are named, and those that are listed, so that the peer can correct its request.
      assert.is(
        e460.response_desc,
        'signals not measured here: toaster.p, boiler.q; this hub measures: meter.p, boiler.p',
      );
      const e461 = await refused(get(['meter.p'], 90));
      assert.equal(
        [e461.response_code, e461.response_desc],
        [461, 'the resolution must be a multiple of 60 s, found 90'],
      );
      // from = to: the codec will not encode it, so it goes raw, as a 2015 peer could send it, with a msg_id.
      const raw = JSON.stringify({
        msg: 'get_report',
        from: ts(T0).toString(),
        to: ts(T0).toString(),
        resolution: 60,
        signals: ['meter.p'],
        msg_id: uuid(2),
      });
      const settled = await within(
        r.bus.transport.inject({
          body: raw,
          properties: { messageId: uuid(2), type: 'get_report', contentType: 'application/json', headers: {} },
        }),
      );
      // The codec itself refuses it (§3.6 454): dead-lettered and answered with the code, never handled.
      assert.equal([settled.outcome, settled.code], ['dead', 'DECODE_454']);
      await eventually(() => ofType(r.got, 'response').length === 1, 'the 454');
      const e454 = ofType(r.got, 'response')[0];
      assert.equal([e454?.response_code, e454?.msg_id], [454, uuid(2)]);
      const unknown = await refused(ask(r, { msg: 'get_capabilities', device: 'toaster', request_id: uuid(3) }));
      assert.equal([unknown.response_code, unknown.request_id], [462, uuid(3)]);
    } finally {
      await r.close();
    }
  },
);

const p = suite('hub: periodic reports');

p(
  'a refusal of a message with no msg_id, request_id or id is not sent: nobody could tell what it is about',
  async () => {
    const r = await hubRig();
    try {
      const sent = (): number => r.bus.transport.sent.filter((o) => o.routingKey.startsWith('response')).length;
      const before = sent();
      const ask = (extra: Record<string, unknown>) =>
        deliver(
          r.bus.transport,
          { msg: 'get_periodic_report' },
          {
            raw: JSON.stringify({
              msg: 'get_periodic_report',
              interval: 60,
              first_from: null,
              resolution: 60,
              signals: ['toaster.p'],
              ...extra,
            }),
          },
        );
      await ask({});
      await r.network.idle();
      assert.is(sent(), before, 'an unknown signal, and nothing to name the request by: no answer');
      // With a request_id, the same refusal is sent, naming it (§3.5 rule 3).
      await ask({ request_id: uuid(5) });
      await r.network.idle();
      assert.is(sent(), before + 1);
    } finally {
      await r.close();
    }
  },
);

const subscribe = (r: HubRig, interval: number, requestId: string, signals = ['boiler.p']): Promise<Message> =>
  ask(r, {
    msg: 'get_periodic_report',
    interval,
    first_from: null,
    resolution: 60,
    signals,
    request_id: requestId,
    msg_id: uuid(Number.parseInt(requestId.slice(-4), 16) + 1000),
  });

const reportsFor = (r: HubRig, requestId: string): Message<'report'>[] =>
  ofType(r.got, 'report').filter((m) => m.request_id === requestId);

p(
  'a clock stepped back by more than an interval: reports go on from the period under way, and after a restart',
  async () => {
    const r = await hubRig();
    try {
      const R1 = uuid(11);
      await subscribe(r, 120, R1);
      await minutes(r, 7);
      await eventually(() => reportsFor(r, R1).length === 3, 'three periods');
      // NTP corrects a clock that ran a day ahead.
      await r.clock.step(-24 * 60 * MIN);
      // The next sample sees the step (a minute), the period under way ends (2 min), then the one after.
      await minutes(r, 6);
      await eventually(() => reportsFor(r, R1).length >= 5, 'reports again, within minutes of the step');
      const after = reportsFor(r, R1).slice(3);
      assert.ok(
        after.every((m) => m.from.epochMs < T0),
        'periods of the clock as it is now, not a day ahead',
      );
      assert.ok(r.logs.some((l) => l.msg === 'the clock went back: periodic reports go on from the period under way'));
      // A hub restarted on the corrected clock, with a subscription saved while it ran ahead, does not wait either.
      await r.store.update((s) => {
        for (const sub of s.subscriptions) sub.next += 24 * 60 * MIN;
      });
      await r.restart();
      const before = reportsFor(r, R1).length;
      await minutes(r, 5);
      await eventually(() => reportsFor(r, R1).length >= before + 2, 'reports after the restart');
    } finally {
      await r.close();
    }
  },
);

p(
  "request() of a subscription with no msg_id of its own (the CLI's) is answered by the 200, not the first period",
  async () => {
    const r = await hubRig();
    try {
      // A peer answers a 200 only to a msg_id: without one the request waited for the first report, a whole interval
      // (`ebadge request ... get_periodic_report` ended TIMEOUT, exit 1, the subscription taken).
      const m = { msg: 'get_periodic_report', interval: 900, first_from: null, resolution: 60, signals: ['boiler.p'] };
      const ack = (await within(r.vpp.request(HEH, m as Message), 5000)) as Message<'response'>;
      assert.equal([ack.msg, ack.response_code, ack.ref_msg], ['response', 200, 'get_periodic_report']);
      assert.is(r.store.state.subscriptions.length, 1);
    } finally {
      await r.close();
    }
  },
);

p(
  'each period once it is over, with an id derived from it; a new subscription replaces the old; -1 stops it',
  async () => {
    const r = await hubRig();
    try {
      const R1 = uuid(1);
      const ack = (await subscribe(r, 120, R1)) as Message<'response'>;
      assert.equal([ack.response_code, ack.ref_msg], [200, 'get_periodic_report']);
      // The first period is [T0, T0 + 2 min): sent at its end plus one resolution for the last sample.
      await minutes(r, 2);
      assert.equal(reportsFor(r, R1), []);
      await r.clock.advance(MIN);
      await eventually(() => reportsFor(r, R1).length === 1, 'the first report');
      const first = reportsFor(r, R1)[0] as Message<'report'>;
      assert.equal([first.from.epochMs, first.to.epochMs, first.resolution], [T0, T0 + 2 * MIN, 60]);
      assert.equal(first.values, { 'boiler.p': [2, 2] });
      const sent = r.bus.transport.sent.find((o) => o.properties.type === 'report');
      assert.is(
        sent?.properties.messageId,
        derivedUuid(`${HEH}|periodic|${AGG}|${R1}|120|60|${T0}`),
        'the message id is derived from the period: a period sent twice is a duplicate',
      );
      const R2 = uuid(2);
      await subscribe(r, 120, R2);
      assert.equal(
        r.store.state.subscriptions.map((x) => x.requestId),
        [R2],
        'one subscription per requester',
      );
      await r.clock.advance(4 * MIN);
      await eventually(() => reportsFor(r, R2).length >= 1, 'a report of the new subscription');
      assert.is(reportsFor(r, R1).length, 1, 'none for the replaced one');
      const stop = (await ask(r, {
        msg: 'get_periodic_report',
        interval: -1,
        first_from: null,
        resolution: 60,
        signals: ['boiler.p'],
        msg_id: uuid(9),
      })) as Message<'response'>;
      assert.is(stop.response_code, 200);
      const count = ofType(r.got, 'report').length;
      await r.clock.advance(10 * MIN);
      await r.network.idle();
      assert.is(ofType(r.got, 'report').length, count, 'interval -1 stops the reports');
      assert.equal(r.store.state.subscriptions, []);
    } finally {
      await r.close();
    }
  },
);

p('a subscription that replaces another while its report is being sent starts at its own first period', async () => {
  const r = await hubRig();
  try {
    const R1 = uuid(1);
    await subscribe(r, 60, R1);
    // The report of [T0, T0 + 1 min) waits for the broker (a publish that is not confirmed yet)...
    const transport = r.bus.transport;
    const send = transport.send.bind(transport);
    let release = (): void => undefined;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    transport.send = async (o) => {
      if (o.properties.type === 'report') await held;
      return send(o);
    };
    await r.clock.advance(2 * MIN);
    // ...when the requester subscribes again, for 5-minute periods from T0.
    const R2 = uuid(2);
    await ask(r, {
      msg: 'get_periodic_report',
      interval: 300,
      first_from: EbTime.fromEpochMs(T0),
      resolution: 60,
      signals: ['boiler.p'],
      request_id: R2,
      msg_id: uuid(1002),
    });
    release();
    await r.network.idle();
    await eventually(() => reportsFor(r, R1).length === 1, "the old subscription's report");
    await r.clock.advance(5 * MIN);
    await eventually(() => reportsFor(r, R2).length === 1, 'the first report of the new subscription');
    const first = reportsFor(r, R2)[0] as Message<'report'>;
    assert.equal(
      [first.from.epochMs, first.to.epochMs],
      [T0, T0 + 5 * MIN],
      "the new subscription's periods, not the old one's progress",
    );
  } finally {
    await r.close();
  }
});

p(
  'a period whose end the clock is stepped past (NTP) is reported then, not after the time the step skipped',
  async () => {
    const r = await hubRig();
    try {
      const R = uuid(1);
      await subscribe(r, 3600, R);
      // The first period [T0, T0 + 1 h) is due at T0 + 1 h + 1 min; the clock is stepped there after 30 s.
      await r.clock.advance(30_000);
      await r.clock.step(3600_000 + 30_000);
      await eventually(() => reportsFor(r, R).length === 1, 'the report, at the step');
      assert.equal((reportsFor(r, R)[0] as Message<'report'>).from.epochMs, T0);
    } finally {
      await r.close();
    }
  },
);

p('a subscription survives a restart and goes on from the period it had reached', async () => {
  const r = await hubRig();
  try {
    await subscribe(r, 60, uuid(1));
    await r.clock.advance(2 * MIN);
    await eventually(() => reportsFor(r, uuid(1)).length === 1, 'the first report');
    await r.restart();
    await r.clock.advance(MIN);
    await eventually(() => reportsFor(r, uuid(1)).length === 2, 'a report after the restart');
    assert.equal(
      reportsFor(r, uuid(1)).map((m) => m.from.epochMs),
      [T0, T0 + MIN],
    );
  } finally {
    await r.close();
  }
});

p('refused subscriptions: 461 an interval not a multiple of the resolution, 460 a signal not measured', async () => {
  const r = await hubRig();
  try {
    const e461 = await refused(subscribe(r, 90, uuid(1)));
    assert.is(e461.response_code, 461);
    const e460 = await refused(subscribe(r, 120, uuid(2), ['toaster.p']));
    assert.equal(
      [e460.response_code, e460.response_desc],
      [460, 'signals not measured here: toaster.p; this hub measures: meter.p, boiler.p'],
    );
    assert.equal(r.store.state.subscriptions, []);
  } finally {
    await r.close();
  }
});

p(
  'through the outbox: a report the broker did not take is kept and sent again, same id, when the link is back',
  async () => {
    const r = await hubRig({ outbox: true });
    try {
      await subscribe(r, 60, uuid(1));
      r.bus.transport.sendFailure = (o) => (o.properties.type === 'report' ? new Error('nacked') : undefined);
      await r.clock.advance(2 * MIN);
      await eventually(() => (r.outbox?.pending().length ?? 0) === 1, 'the report kept in the outbox');
      // The period counts as reported (it is in the outbox): the subscription moves on.
      await eventually(() => r.store.state.subscriptions[0]?.next === T0 + MIN, 'the next period');
      assert.equal(reportsFor(r, uuid(1)), []);
      assert.ok(r.logs.some((l) => l.msg === 'send failed'));
      r.bus.transport.sendFailure = undefined;
      await within(r.hub.connectionChanged(true));
      await eventually(() => reportsFor(r, uuid(1)).length === 1, 'the report sent again');
      assert.is(r.outbox?.pending().length, 0);
      assert.is(
        r.bus.transport.sent.find((o) => o.properties.type === 'report')?.properties.messageId,
        derivedUuid(`${HEH}|periodic|${AGG}|${uuid(1)}|60|60|${T0}`),
      );
      assert.equal(
        r.store.state.events.map((e) => e.type).filter((t) => t.startsWith('network') || t.startsWith('broker')),
        ['network_up', 'broker_reconnect'],
      );
    } finally {
      await r.close();
    }
  },
);

p(
  'through the outbox: a message that can never be sent (its peer left hub.json) is dropped and told, and no longer holds back the rest',
  async () => {
    const r = await hubRig({ outbox: true });
    try {
      const report = (id: number): Message =>
        ({
          msg: 'report',
          from: ts(T0),
          to: ts(T0 + MIN),
          resolution: 60,
          values: { 'boiler.p': [1] },
          request_id: uuid(id),
        }) as unknown as Message;
      const meta = (id: number) => ({ messageId: uuid(id), type: 'report', routingKey: 'report' });
      // Oldest first: one for a peer no longer configured, then one for the VPP.
      await r.outbox?.append('vpp-gone', Buffer.from(JSON.stringify(report(1))), meta(1));
      await r.outbox?.append(AGG, Buffer.from(JSON.stringify(report(2))), meta(2));
      await r.clock.advance(MIN);
      await eventually(() => reportsFor(r, uuid(2)).length === 1, 'the VPP report, past the one that cannot go');
      assert.is(r.outbox?.pending().length, 0);
      const lost = r.logs.find((l) => l.msg === 'data lost: an outbox message that can never be sent was dropped');
      assert.equal(
        [lost?.fields['peer'], lost?.fields['code'], lost?.fields['id']],
        ['vpp-gone', 'UNKNOWN_PEER', uuid(1)],
      );
    } finally {
      await r.close();
    }
  },
);

const h = suite('hub: events, clock, prices');

h(
  'realtime events are pushed at or above the asked severity; get_energy_events filters by window and severity',
  async () => {
    const r = await hubRig();
    try {
      const ok = (await ask(r, {
        msg: 'get_energy_events_realtime',
        severity: 1,
        msg_id: uuid(1),
      })) as Message<'response'>;
      assert.is(ok.response_code, 200);
      await within(r.hub.event('activation_start')); // severity 0: not pushed
      await within(r.hub.event('mode_changed')); // severity 1: pushed
      await within(r.hub.event('network_down')); // severity 2: pushed
      await r.network.idle();
      assert.equal(
        ofType(r.got, 'energy_events').map((m) => m.events.map((e) => [e.type, e.severity])),
        [[['mode_changed', 1]], [['network_down', 2]]],
      );
      const q = (await ask(r, {
        msg: 'get_energy_events',
        from: ts(T0),
        to: ts(T0 + MIN),
        severity: 2,
      })) as Message<'energy_events'>;
      assert.equal(
        q.events.map((e) => e.type),
        ['network_down'],
      );
      const later = (await ask(r, {
        msg: 'get_energy_events',
        from: ts(T0 + MIN),
        to: ts(T0 + 2 * MIN),
        severity: 0,
      })) as Message<'energy_events'>;
      assert.equal(later.events, [], 'outside the window');
    } finally {
      await r.close();
    }
  },
);

/** Holds the hub's sends of `type` at the transport until released: a publish waiting for the broker's confirm. */
function holdSends(r: HubRig, type: string): { held: () => number; release: () => void } {
  const transport = r.bus.transport;
  const send = transport.send.bind(transport);
  let held = 0;
  let release!: () => void;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  transport.send = async (o) => {
    if (o.properties.type === type) {
      held++;
      await gate;
    }
    return send(o);
  };
  return { held: () => held, release };
}

h('a stop lets the event it pushes go out before it returns: nothing stays in the outbox', async () => {
  const r = await hubRig({ outbox: true });
  try {
    await ask(r, { msg: 'get_energy_events_realtime', severity: 0 });
    const hold = holdSends(r, 'energy_events');
    let stopped = false;
    const stop = r.hub.stop().then(() => {
      stopped = true;
    });
    await eventually(() => hold.held() === 1, 'the stopping event sent');
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.not.ok(stopped, 'the stop waits for the send under way');
    hold.release();
    await within(stop);
    assert.equal(r.outbox?.pending(), [], 'the event left the outbox');
    await r.network.idle();
    assert.equal(
      ofType(r.got, 'energy_events').flatMap((m) => m.events.map((e) => e.type)),
      ['stopping'],
    );
  } finally {
    await r.close();
  }
});

h('a stop waits at most 5 s for a send the broker does not confirm; the message stays in the outbox', async () => {
  const r = await hubRig({ outbox: true });
  const hold = holdSends(r, 'energy_events');
  try {
    await ask(r, { msg: 'get_energy_events_realtime', severity: 0 });
    let stopped = false;
    const stop = r.hub.stop().then(() => {
      stopped = true;
    });
    const t = r.clock.now();
    await eventually(() => hold.held() === 1, 'the stopping event sent');
    // The bound is armed once the state is flushed (a file write, real time).
    await eventually(() => r.clock.next() === t + 5_000, 'the stop waiting');
    await r.clock.advance(4_999);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.not.ok(stopped, 'still waiting before 5 s');
    await r.clock.advance(1);
    await within(stop);
    assert.equal(
      r.outbox?.pending().map((p) => p.type),
      ['energy_events'],
      'kept for the next start',
    );
  } finally {
    hold.release();
    await r.close();
  }
});

h('set_clock: refused 451 when not allowed; allowed, the hub time moves by the offset', async () => {
  const r = await hubRig();
  try {
    const no = await refused(ask(r, { msg: 'set_clock', offset: 5, msg_id: uuid(1) }));
    assert.equal([no.response_code, no.msg_id, no.ref_msg], [451, uuid(1), 'set_clock']);
    assert.is(r.hub.now(), r.clock.now());
    // Refused, it changed nothing: no clock_set event (a flood of them pushed every other event out).
    assert.not.ok(r.store.state.events.some((e) => e.type === 'clock_set'));
  } finally {
    await r.close();
  }
  const y = await hubRig({ config: { allowClockChange: true } });
  try {
    const ok = (await ask(y, { msg: 'set_clock', offset: 5, msg_id: uuid(2) })) as Message<'response'>;
    assert.is(ok.response_code, 200);
    assert.is(y.hub.now(), y.clock.now() + 5000);
    assert.ok(y.store.state.events.some((e) => e.type === 'clock_set'));
    // An offset of 0 (a peer's periodic sync) is answered 200 and moves nothing: no event, so the outage history
    // stays among the 1,000 events kept.
    const events = y.store.state.events.length;
    for (let i = 0; i < 3; i++) {
      const zero = (await ask(y, { msg: 'set_clock', offset: 0, msg_id: uuid(10 + i) })) as Message<'response'>;
      assert.is(zero.response_code, 200);
    }
    assert.is(y.store.state.events.length, events, 'no clock_set for an offset of 0');
    // More than a year off the system clock in all: refused, nothing stored (1e300 was kept, and broke every
    // status report after it).
    for (const offset of [1e300, 366 * 86_400]) {
      const far = await refused(ask(y, { msg: 'set_clock', offset, msg_id: uuid(3) }));
      assert.equal([far.response_code, far.ref_msg], [454, 'set_clock']);
      assert.match(String(far.response_desc), /at most 31622400 s \(a year\) either way/);
    }
    assert.is(y.store.state.clockOffsetS, 5);
    const status = (await ask(y, {
      msg: 'get_status_report',
      from: ts(T0 - 60 * MIN),
      to: ts(T0 + 60 * MIN),
      severity_threshold: 0,
    } as Message)) as Message<'status_report'>;
    assert.is(status.msg, 'status_report');
  } finally {
    await y.close();
  }
});

h(
  'a report that would end after 9999 is refused 454, not failed 500; a subscription whose first period would is not stored',
  async () => {
    const r = await hubRig();
    try {
      const late = Date.UTC(9999, 11, 31, 23);
      const report = await refused(
        ask(r, {
          msg: 'get_report',
          from: ts(late),
          to: ts(late + 59.5 * MIN),
          resolution: 60,
          signals: ['meter.p'],
          request_id: uuid(5),
        }),
      );
      assert.equal([report.response_code, report.ref_msg], [454, 'get_report']);
      assert.match(String(report.response_desc), /would end after 9999-12-31T23:59:59Z/);
      const periodic = await refused(
        ask(r, {
          msg: 'get_periodic_report',
          interval: 3600,
          first_from: ts(late + 30 * MIN),
          resolution: 60,
          signals: ['meter.p'],
          request_id: uuid(6),
        }),
      );
      assert.equal([periodic.response_code, periodic.ref_msg], [454, 'get_periodic_report']);
      assert.equal(r.store.state.subscriptions, []);
    } finally {
      await r.close();
    }
  },
);

h('prices: stored and answered 200, a newer one replaces what it overlaps, per kind and device', async () => {
  const r = await hubRig();
  try {
    const price = (from: number, to: number, p: number): Promise<Message> =>
      ask(r, { msg: 'load_price', from: ts(from), to: ts(to), price: p, msg_id: uuid(Math.round(p * 100)) });
    const ok = (await price(T0, T0 + 60 * MIN, 0.21)) as Message<'response'>;
    assert.equal([ok.response_code, ok.ref_msg], [200, 'load_price']);
    await price(T0 + 30 * MIN, T0 + 90 * MIN, 0.3);
    assert.is(r.hub.priceAt('load', T0 + 10 * MIN), undefined, 'the overlapped price is replaced whole');
    assert.is(r.hub.priceAt('load', T0 + 40 * MIN), 0.3);
    const gen = (await ask(r, {
      msg: 'generation_price',
      from: ts(T0),
      to: ts(T0 + 60 * MIN),
      price: 0.07,
      device: 'boiler',
      msg_id: uuid(7),
    })) as Message<'response'>;
    assert.is(gen.response_code, 200);
    assert.is(r.hub.priceAt('generation', T0, 'boiler'), 0.07);
    assert.is(r.hub.priceAt('generation', T0, 'meter'), undefined);
    // A device this hub does not have: 462, and nothing stored (it would only take a slot).
    const stored = r.store.state.prices.length;
    const none = await refused(
      ask(r, {
        msg: 'generation_price',
        from: ts(T0),
        to: ts(T0 + 60 * MIN),
        price: 0.07,
        device: 'fridge',
        msg_id: uuid(8),
      }),
    );
    assert.equal([none.response_code, none.response_desc], [462, 'no device "fridge"']);
    assert.is(r.store.state.prices.length, stored);
  } finally {
    await r.close();
  }
});

h('prices: at most 1,000 kept; past them a new one is refused 469 and not stored, until some expire', async () => {
  const r = await hubRig();
  try {
    await r.store.update((s) => {
      for (let i = 0; i < MAX_PRICES; i++)
        s.prices.push({ kind: 'load', from: T0 + i * MIN, to: T0 + (i + 1) * MIN, price: 0.1, sender: AGG });
    });
    const later = T0 + 2 * MAX_PRICES * MIN;
    const full = await refused(
      ask(r, { msg: 'load_price', from: ts(later), to: ts(later + MIN), price: 0.5, msg_id: uuid(1) }),
    );
    assert.equal([full.response_code, full.ref_msg], [469, 'load_price']);
    assert.match(full.response_desc, 'at most 1000 prices');
    assert.is(r.store.state.prices.length, MAX_PRICES);
    // Replacing one it overlaps takes no more room.
    const over = (await ask(r, {
      msg: 'load_price',
      from: ts(T0 + MIN),
      to: ts(T0 + 2 * MIN),
      price: 0.2,
      msg_id: uuid(2),
    })) as Message<'response'>;
    assert.is(over.response_code, 200);
    // Once ten have expired, there is room again.
    await r.clock.advance(10 * MIN);
    const ok = (await ask(r, {
      msg: 'load_price',
      from: ts(later),
      to: ts(later + MIN),
      price: 0.5,
      msg_id: uuid(3),
    })) as Message<'response'>;
    assert.is(ok.response_code, 200);
    assert.is(r.hub.priceAt('load', later), 0.5);
  } finally {
    await r.close();
  }
});

g.run();
p.run();
h.run();
