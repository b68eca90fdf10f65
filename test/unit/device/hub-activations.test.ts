/**
 * The hub's activations (src/device/activations.ts, data model §3.5 rules 4 and 5) without a broker: a VPP connector
 * asks a Hub over the in-memory transport, time is a ManualClock. The decisions (the same (id, count) gets the same
 * decision, after a restart too; a stale count 450; expired or too late 454; passive or off 451; an unknown device
 * 462; quantity 0 cancels in any mode; over capacity a modify_activation with what the hub has), and their execution
 * on the clock: the actuator started at `from` and ended at `to`, the capacity taken meanwhile, a modification or
 * smart mode off ending what runs, contingencies. test/integration/hub.test.ts proves the decisions against RabbitMQ.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BusError } from '../../../src/bus/index.js';
import { EbTime, type Message } from '../../../src/codec/index.js';
import { MAX_ACTIVATIONS } from '../../../src/device/activations.js';
import { uuid } from '../../helpers/memory-bus.js';
import { AGG, HEH, type HubRig, hubRig, ofType, T0, within } from '../../helpers/memory-hub.js';

const ts = (ms: number): EbTime => EbTime.fromEpochMs(ms);

function activate(
  r: HubRig,
  id: string,
  count: number,
  quantity: number,
  from = T0 + 60_000,
  to = T0 + 120_000,
  device: string | null = null,
): Promise<Message> {
  return within(
    r.vpp.request(HEH, {
      msg: 'activate',
      id,
      modification_count: count,
      from: ts(from),
      to: ts(to),
      quantity,
      device,
    }),
  );
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

async function eventually(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

const setMode = (r: HubRig, mode: 'normal' | 'passive' | 'off', reset = false): Promise<Message> =>
  within(r.vpp.request(HEH, { msg: 'set_smart_mode', mode, reset }));

const events = (r: HubRig): string[] => r.store.state.events.map((e) => e.type);

const d = suite('hub activations: the decision');

d("a heh_id that names another HEH is refused 452 and never executed; this hub's own name is its heh_id", async () => {
  const r = await hubRig();
  try {
    const order = {
      msg: 'activate' as const,
      modification_count: 0,
      from: ts(T0 + 60_000),
      to: ts(T0 + 120_000),
      quantity: 1,
      device: null,
    };
    const wrong = await refused(within(r.vpp.request(HEH, { ...order, id: uuid(1), heh_id: 'heh-next-door' })));
    assert.equal([wrong.response_code, wrong.ref_msg, wrong.id], [452, 'activate', uuid(1)]);
    assert.match(wrong.response_desc, `heh_id "heh-next-door" is not this HEH's (${HEH})`);
    const report = await refused(
      within(
        r.vpp.request(HEH, {
          msg: 'get_report',
          from: ts(T0 - 60_000),
          to: ts(T0),
          resolution: 60,
          signals: ['meter.p'],
          heh_id: 'heh-next-door',
        }),
      ),
    );
    assert.is(report.response_code, 452);
    assert.equal(r.store.state.activations, [], 'nothing booked');
    // Addressed to this HEH by name, or with no heh_id (null or absent): handled, the heh_id echoed.
    const ours = await within(r.vpp.request(HEH, { ...order, id: uuid(2), heh_id: HEH }));
    assert.equal(ours, { msg: 'accept_activation', id: uuid(2), modification_count: 0, heh_id: HEH });
    const direct = await within(r.vpp.request(HEH, { ...order, id: uuid(3), heh_id: null }));
    assert.is(direct.msg, 'accept_activation');
    await r.clock.advance(70_000);
    assert.is(r.commands.length, 1, 'one start: the two activations share the boiler, the refused one never runs');
    assert.ok(
      r.logs.some((l) => l.msg === 'request' && l.fields['code'] === 452),
      'the refusal is logged as any answer',
    );
  } finally {
    await r.close();
  }
});

d('the same (id, count) gets the same decision again, after a restart too; a lower count is refused 450', async () => {
  const r = await hubRig();
  try {
    const A = uuid(1);
    const d0 = await activate(r, A, 0, 1);
    assert.equal(d0, { msg: 'accept_activation', id: A, modification_count: 0 });
    assert.equal(await activate(r, A, 0, 5), d0, 'the same count with other values: the decision already sent');
    const d1 = await activate(r, A, 1, 1.5);
    assert.equal(d1, { msg: 'accept_activation', id: A, modification_count: 1 });
    const stale = await refused(activate(r, A, 0, 1));
    assert.equal([stale.response_code, stale.msg_id, stale.ref_msg, stale.id], [450, null, 'activate', A]);
    assert.match(stale.response_desc, /modification_count 0 is older than 1/);
    await r.restart();
    assert.equal(await activate(r, A, 1, 9), d1, 'the decision survives a restart');
    assert.equal(r.commands, [], 'nothing started: from is a minute away and the clock did not move');
  } finally {
    await r.close();
  }
});

d('expired or more than 15 minutes late: 454; 15 minutes late is still taken', async () => {
  const r = await hubRig();
  try {
    let next = 10;
    const reject = async (from: number, to: number): Promise<[string, unknown]> => {
      const m = (await activate(r, uuid(next++), 0, 1, from, to)) as Message<'reject_activation'>;
      return [m.msg, m.code];
    };
    assert.equal(await reject(T0 - 7_200_000, T0 - 3_600_000), ['reject_activation', 454], 'ended an hour ago');
    assert.equal(await reject(T0 - 60_000, T0), ['reject_activation', 454], 'ends now');
    assert.equal(await reject(T0 - 15 * 60_000 - 1, T0 + 60_000), ['reject_activation', 454], '15 min + 1 ms late');
    assert.equal(
      (await activate(r, uuid(2), 0, 1, T0 - 15 * 60_000, T0 + 60_000)).msg,
      'accept_activation',
      'exactly 15 minutes late',
    );
  } finally {
    await r.close();
  }
});

d(
  'passive or off: 451; an unknown device 462; a device without an actuator 451; quantity 0 cancels in any mode',
  async () => {
    const r = await hubRig();
    try {
      const A = uuid(1);
      assert.is((await activate(r, A, 0, 1)).msg, 'accept_activation');
      for (const mode of ['passive', 'off'] as const) {
        await setMode(r, mode);
        const m = (await activate(r, uuid(100 + mode.length), 0, 1)) as Message<'reject_activation'>;
        assert.equal([m.msg, m.code, m.reason], ['reject_activation', 451, `the hub is in ${mode} mode`], mode);
      }
      await setMode(r, 'passive');
      assert.equal(
        await activate(r, A, 1, 0),
        { msg: 'accept_activation', id: A, modification_count: 1 },
        'a cancellation is accepted in passive mode',
      );
      // The cancellation is the decision now, and it is over: nothing is left to start (it was kept as a scheduled
      // 0 kW activation that sent the actuator "activate, quantity 0" at from).
      const kept = r.store.state.activations.find((a) => a.id === A);
      assert.equal([kept?.modificationCount, kept?.quantity, kept?.decision, kept?.phase], [1, 0, 'accepted', 'ended']);
      await setMode(r, 'normal');
      const unknown = (await activate(
        r,
        uuid(7),
        0,
        1,
        undefined,
        undefined,
        'toaster',
      )) as Message<'reject_activation'>;
      assert.equal([unknown.code, unknown.reason], [462, 'no device "toaster"']);
      const meter = (await activate(r, uuid(8), 0, 1, undefined, undefined, 'meter')) as Message<'reject_activation'>;
      assert.equal([meter.code, meter.reason], [451, 'no controllable capacity for this activation']);
      assert.is(
        (await activate(r, uuid(9), 0, 0, T0 + 180_000, T0 + 240_000)).msg,
        'accept_activation',
        'a new activation of 0 kW: nothing to do',
      );
      assert.is(r.store.state.activations.find((a) => a.id === uuid(9))?.phase, 'ended');
      await r.clock.advance(240_000);
      assert.equal(r.commands, [], 'no "activate 0 kW" at from, nothing at to');
    } finally {
      await r.close();
    }
  },
);

d('over capacity: a modify_activation for the same period with what the hub has, either sign', async () => {
  const r = await hubRig();
  try {
    for (const [n, q, expected, from] of [
      [1, 5, 2, T0 + 60_000],
      [2, -3.5, -2, T0 + 180_000],
    ] as const) {
      const m = (await activate(r, uuid(n), 0, q, from, from + 60_000)) as Message<'modify_activation'>;
      assert.equal(
        [m.msg, m.id, m.modification_count, m.quantity, m.device, m.from.epochMs, m.to.epochMs],
        ['modify_activation', uuid(n), 0, expected, null, from, from + 60_000],
      );
      assert.is(
        r.store.state.activations.find((a) => a.id === uuid(n))?.quantity,
        expected,
        'the modified quantity runs',
      );
    }
    assert.is(
      (await activate(r, uuid(3), 0, 2, T0 + 300_000, T0 + 360_000)).msg,
      'accept_activation',
      'exactly the capacity',
    );
  } finally {
    await r.close();
  }
});

d('every accepted activation that overlaps counts, not only what runs: the 2 kW boiler of issue 14', async () => {
  const r = await hubRig();
  try {
    // 1.5 kW accepted for a future window; 5 kW for the same window gets what is left of it, 0.5 kW (it got 2).
    assert.is((await activate(r, uuid(1), 0, 1.5, T0 + 60_000, T0 + 180_000, 'boiler')).msg, 'accept_activation');
    const m = (await activate(r, uuid(2), 0, 5, T0 + 60_000, T0 + 180_000, 'boiler')) as Message<'modify_activation'>;
    assert.equal([m.msg, m.quantity], ['modify_activation', 0.5]);
    // Overlapping only in part: the least headroom over its window counts (1.5 + 0.5 from T0 + 2 min).
    const late = (await activate(r, uuid(3), 0, 1, T0 + 120_000, T0 + 240_000)) as Message<'reject_activation'>;
    assert.equal(
      [late.msg, late.code, late.reason],
      [
        'reject_activation',
        451,
        'no capacity left between from and to: the 2 kW of the hub are taken by accepted activations',
      ],
    );
    // After the window, all of it again; a window entirely before, too.
    assert.is((await activate(r, uuid(4), 0, 2, T0 + 180_000, T0 + 240_000)).msg, 'accept_activation');
    const cap = (await within(
      r.vpp.request(HEH, { msg: 'get_activation_capacity', device: 'boiler' }),
    )) as Message<'activation_capacity'>;
    assert.equal([cap.pos_capacity, cap.neg_capacity], [2, 2], 'now, before any of them runs');
    await r.clock.advance(60_000);
    await eventually(() => r.commands.length === 2, 'both started');
    assert.is(
      r.commands.reduce((n, c) => n + (c.action === 'activate' ? c.quantity : 0), 0),
      2,
      'what runs is the capacity, not 3.5 kW',
    );
    const busy = (await within(
      r.vpp.request(HEH, { msg: 'get_activation_capacity', device: 'boiler' }),
    )) as Message<'activation_capacity'>;
    assert.equal([busy.pos_capacity, busy.neg_capacity], [0, 0]);
  } finally {
    await r.close();
  }
});

d(
  'at most 1,000 activations are kept: a new id past them is rejected 469 unstored; a day after their end they go',
  async () => {
    const r = await hubRig();
    try {
      // 1,000 rejected decisions (a peer that sends new ids without end), as the state holds them.
      await r.store.update((s) => {
        for (let i = 0; i < MAX_ACTIVATIONS; i++) {
          const id = uuid(10_000 + i);
          s.activations.push({
            id,
            requester: AGG,
            modificationCount: 0,
            from: T0 + 60_000,
            to: T0 + 120_000,
            quantity: 1,
            device: null,
            decision: 'rejected',
            decisionMessage: { msg: 'reject_activation', id, modification_count: 0, code: 451, reason: 'passive' },
            phase: 'scheduled',
          });
        }
      });
      const A = uuid(1);
      const full = (await activate(r, A, 0, 1)) as Message<'reject_activation'>;
      assert.equal([full.msg, full.id, full.code], ['reject_activation', A, 469]);
      assert.match(full.reason ?? '', 'at most 1000 activations');
      assert.is(r.store.state.activations.length, MAX_ACTIVATIONS, 'not stored');
      assert.equal(await activate(r, A, 0, 1), full, 'the same (id, count) again: the same refusal while full');
      // A known id is still decided: a cancellation of one of them.
      const cancel = await activate(r, uuid(10_000), 1, 0);
      assert.is(cancel.msg, 'accept_activation');
      // A day after their `to`, the rejected decisions are dropped at the next decision, which then has room.
      await r.clock.advance(86_400_000 + 120_001);
      const later = r.clock.now();
      const B = uuid(2);
      assert.is((await activate(r, B, 0, 1, later + 60_000, later + 120_000)).msg, 'accept_activation');
      assert.ok(r.store.state.activations.length <= 2, `${r.store.state.activations.length} kept`);
    } finally {
      await r.close();
    }
  },
);

const x = suite('hub activations: on the clock');

x('an answer the broker does not confirm holds no start or end back: the activation starts at its from', async () => {
  const r = await hubRig();
  try {
    const A = uuid(1);
    await activate(r, A, 0, 1.5);
    // The broker goes away as the hub answers the next activation: that answer waits for its confirm.
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    r.bus.transport.sendHold = (m) => (m.properties.type === 'accept_activation' ? held : undefined);
    const second = r.vpp.request(
      HEH,
      {
        msg: 'activate',
        id: uuid(2),
        modification_count: 0,
        from: ts(T0 + 600_000),
        to: ts(T0 + 660_000),
        quantity: 0.5,
        device: null,
      },
      { timeout: 3_600_000 },
    );
    second.catch(() => undefined);
    await eventually(() => r.store.state.activations.length === 2, 'the second decision stored');
    // Within a deadline: held behind the answer, the start would never run, and the clock with it.
    await within(r.clock.advance(60_000));
    await eventually(() => r.commands.length === 1, 'the first activation started at its from');
    assert.equal(r.commands[0]?.id, A);
    release();
    assert.is((await within(second)).msg, 'accept_activation');
  } finally {
    await r.close();
  }
});

x(
  'accepted: the actuator starts at from and ends at to; the capacity is taken meanwhile; events recorded',
  async () => {
    const r = await hubRig();
    try {
      const A = uuid(1);
      await activate(r, A, 0, 1.5);
      const capacity = async (): Promise<number> =>
        (
          (await within(
            r.vpp.request(HEH, { msg: 'get_activation_capacity', device: null }),
          )) as Message<'activation_capacity'>
        ).pos_capacity;
      assert.is(await capacity(), 2);
      await r.clock.advance(59_999);
      assert.equal(r.commands, [], 'not before from');
      await r.clock.advance(1);
      await eventually(() => events(r).includes('activation_start'), 'activation_start');
      assert.equal(r.commands, [
        { action: 'activate', id: A, device: 'boiler', quantity: 1.5, from: T0 + 60_000, to: T0 + 120_000 },
      ]);
      assert.is(r.store.state.activations[0]?.phase, 'running');
      assert.is(await capacity(), 0.5, 'what runs is taken from the capacity');
      const over = (await activate(r, uuid(2), 0, 1, T0 + 90_000, T0 + 150_000)) as Message<'modify_activation'>;
      assert.equal([over.msg, over.quantity], ['modify_activation', 0.5], 'overlapping what runs');
      const after = await activate(r, uuid(3), 0, 1, T0 + 600_000, T0 + 660_000);
      assert.is(after.msg, 'accept_activation', 'what runs now does not take from a later window');
      await r.clock.advance(60_000);
      await eventually(() => events(r).includes('activation_end'), 'activation_end');
      assert.equal(
        r.commands.filter((c) => c.id === A),
        [
          { action: 'activate', id: A, device: 'boiler', quantity: 1.5, from: T0 + 60_000, to: T0 + 120_000 },
          { action: 'end', id: A, device: 'boiler' },
        ],
      );
      assert.is(r.store.state.activations.find((a) => a.id === A)?.phase, 'ended');
    } finally {
      await r.close();
    }
  },
);

x('the clock stepped (NTP on a Pi that booted on a stale time): start and end follow the wall clock', async () => {
  const r = await hubRig();
  const H = 3_600_000;
  try {
    const A = uuid(1);
    await activate(r, A, 0, 1);
    await r.clock.advance(60_000);
    await eventually(() => r.commands.length === 1, 'the start');
    // Stepped an hour forward, past `to`: the device is not left running for the hour the step skipped.
    await r.clock.step(H);
    await eventually(() => r.commands.length === 2, 'the end, at once');
    assert.equal(r.commands[1], { action: 'end', id: A, device: 'boiler' });
    // Stepped an hour back while running: it runs until the clock reaches `to` again.
    const B = uuid(2);
    const t = r.clock.now();
    await activate(r, B, 0, 1, t + 60_000, t + 120_000);
    await r.clock.advance(60_000);
    await eventually(() => r.commands.length === 3, 'B started');
    await r.clock.step(-H);
    await r.clock.advance(60_000);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.is(r.commands.length, 3, 'still running an hour before its end');
    await r.clock.advance(H);
    await eventually(() => r.commands.length === 4, 'B ended at to');
    assert.equal(r.commands[3], { action: 'end', id: B, device: 'boiler' });
  } finally {
    await r.close();
  }
});

x('a modification of a running activation ends it (no activation_end) and schedules the new one', async () => {
  const r = await hubRig();
  try {
    const A = uuid(1);
    await activate(r, A, 0, 1);
    await r.clock.advance(60_000);
    await eventually(() => r.commands.length === 1, 'the start');
    // The version it replaces does not count against it: 2 kW of 2 over a window that overlaps its own (1 kW, until
    // T0 + 2 min) are accepted, not cut to the 1 kW left beside it.
    const d1 = await activate(r, A, 1, 2, T0 + 90_000, T0 + 240_000);
    assert.equal(d1, { msg: 'accept_activation', id: A, modification_count: 1 });
    assert.equal(r.commands[1], { action: 'end', id: A, device: 'boiler' });
    assert.not.ok(events(r).includes('activation_end'), 'a modification is no end');
    await r.clock.advance(30_000);
    await eventually(() => r.commands.length === 3, 'the new start');
    assert.equal(r.commands[2], {
      action: 'activate',
      id: A,
      device: 'boiler',
      quantity: 2,
      from: T0 + 90_000,
      to: T0 + 240_000,
    });
    await r.clock.advance(30_000);
    assert.is(r.commands.length, 3, 'the old end time no longer fires');
    await r.clock.advance(120_000);
    await eventually(() => r.commands.length === 4, 'the new end');
    assert.equal(r.commands[3], { action: 'end', id: A, device: 'boiler' });
  } finally {
    await r.close();
  }
});

x(
  'a modification of a scheduled activation replaces its timers: it starts and ends only at its own from and to',
  async () => {
    const r = await hubRig();
    try {
      const A = uuid(1);
      await activate(r, A, 0, 1, T0 + 60_000, T0 + 120_000);
      const d1 = await activate(r, A, 1, 1, T0 + 180_000, T0 + 240_000);
      assert.equal(d1, { msg: 'accept_activation', id: A, modification_count: 1 });
      await r.clock.advance(179_999);
      await r.network.idle();
      assert.equal(r.commands, [], "nothing at count 0's from or to: count 1 starts at T0 + 3 min");
      await r.clock.advance(1);
      await eventually(() => r.commands.length === 1, 'the start');
      await r.clock.advance(60_000);
      await eventually(() => r.commands.length === 2, 'the end');
      assert.equal(r.commands, [
        { action: 'activate', id: A, device: 'boiler', quantity: 1, from: T0 + 180_000, to: T0 + 240_000 },
        { action: 'end', id: A, device: 'boiler' },
      ]);
    } finally {
      await r.close();
    }
  },
);

x('a rejected modification of an ended activation never runs, whatever an earlier version had scheduled', async () => {
  // Found by the activations property (seed 9056): count 0 scheduled, count 1 scheduled over it, smart mode off ended
  // count 1, then count 2 was rejected; count 0's start timer still fired and ran the rejected quantity.
  const r = await hubRig();
  try {
    const A = uuid(1);
    await activate(r, A, 0, 1, T0 + 60_000, T0 + 300_000);
    await activate(r, A, 1, 0.5, T0 + 120_000, T0 + 300_000);
    await setMode(r, 'off');
    const d2 = await activate(r, A, 2, 1.5, T0 + 60_000, T0 + 300_000);
    assert.is(d2.msg, 'reject_activation', 'the hub is off');
    await r.clock.advance(300_000);
    await r.network.idle();
    assert.equal(r.commands, [], 'nothing ran: count 1 was ended before its from, count 2 was rejected');
  } finally {
    await r.close();
  }
});

const c = suite('hub activations: at once');

/** An actuator that, while closed, holds every command until opened (a command script slow to start or stop). */
class SlowActuator {
  #closed = false;
  #held: (() => void)[] = [];
  #arrived: (() => void) | undefined;

  readonly gate = (): Promise<void> =>
    this.#closed
      ? new Promise<void>((resolve) => {
          this.#held.push(resolve);
          this.#arrived?.();
        })
      : Promise.resolve();

  close(): void {
    this.#closed = true;
  }

  /** Resolves once a command is held. */
  async holding(): Promise<void> {
    if (this.#held.length === 0) await new Promise<void>((resolve) => (this.#arrived = resolve));
  }

  open(): void {
    this.#closed = false;
    for (const resolve of this.#held.splice(0)) resolve();
  }
}

/** Until the hub has taken `n` messages that it has not settled yet, and a moment more for its handlers to run. */
async function inHand(r: HubRig, n = 1): Promise<void> {
  await eventually(() => r.bus.transport.unsettled >= n, `${n} message(s) in the hub's hands`);
  await new Promise((resolve) => setTimeout(resolve, 10));
}

c('two activate messages handled at once never book more than the device has', async () => {
  const r = await hubRig();
  try {
    const A = uuid(1);
    await activate(r, A, 0, 0.5, T0 + 60_000, T0 + 600_000, 'boiler');
    await r.clock.advance(60_000);
    await eventually(() => r.commands.length === 1, 'A runs');
    // A's modification ends what runs first (the actuator, the disk) while B is decided.
    const [a1, b] = await Promise.all([
      activate(r, A, 1, 2, T0 + 60_000, T0 + 600_000, 'boiler'),
      activate(r, uuid(2), 0, 1.5, T0 + 60_000, T0 + 600_000, 'boiler'),
    ]);
    assert.equal([a1.msg, b.msg], ['accept_activation', 'reject_activation']);
    const live = r.store.state.activations.filter((a) => a.decision !== 'rejected' && a.phase !== 'ended');
    assert.is(
      live.reduce((n, a) => n + Math.abs(a.quantity), 0),
      2,
      'the 2 kW of the boiler, not 3.5',
    );
  } finally {
    await r.close();
  }
});

c('a cancellation that comes while the actuator is being started ends it once started', async () => {
  const slow = new SlowActuator();
  const r = await hubRig({ actuatorGate: slow.gate });
  try {
    const A = uuid(1);
    await activate(r, A, 0, 1, T0 + 60_000, T0 + 600_000, 'boiler');
    slow.close();
    const advancing = r.clock.advance(60_000);
    await slow.holding();
    const cancelled = activate(r, A, 1, 0, T0 + 60_000, T0 + 600_000, 'boiler');
    await inHand(r);
    slow.open();
    assert.is((await cancelled).msg, 'accept_activation');
    await advancing;
    await r.clock.advance(600_000);
    assert.equal(
      r.commands.map((x) => x.action),
      ['activate', 'end'],
      'started, then ended: not left running',
    );
  } finally {
    await r.close();
  }
});

c('smart mode off while a modification is being decided ends that modification too', async () => {
  const slow = new SlowActuator();
  const r = await hubRig({ actuatorGate: slow.gate });
  try {
    const A = uuid(1);
    await activate(r, A, 0, 1, T0 + 60_000, T0 + 600_000, 'boiler');
    await r.clock.advance(60_000);
    await eventually(() => r.commands.length === 1, 'A runs');
    slow.close();
    // The modification first ends what runs: the actuator holds that end while smart mode off comes.
    const modified = activate(r, A, 1, 2, T0 + 120_000, T0 + 600_000, 'boiler');
    await slow.holding();
    const off = setMode(r, 'off');
    await inHand(r, 2);
    slow.open();
    assert.is((await modified).msg, 'accept_activation');
    assert.is(((await off) as Message<'response'>).response_code, 200);
    await r.clock.advance(600_000);
    assert.equal(
      r.commands.filter((x) => x.action === 'activate').map((x) => x.quantity),
      [1],
      'the modification never starts: the hub is off',
    );
    assert.equal(
      r.store.state.activations.map((a) => a.phase),
      ['ended'],
    );
  } finally {
    await r.close();
  }
});

x('an activation running when the hub stops is resumed by the next start, and ended on time', async () => {
  const r = await hubRig();
  try {
    const A = uuid(1);
    await activate(r, A, 0, 1);
    await r.clock.advance(60_000);
    await eventually(() => r.commands.length === 1, 'the start');
    await r.restart();
    assert.is(r.commands.length, 1, 'a stop ends nothing on the devices');
    await r.clock.advance(60_000);
    await eventually(() => r.commands.length === 2, 'the end after the restart');
    assert.equal(r.commands[1], { action: 'end', id: A, device: 'boiler' });
  } finally {
    await r.close();
  }
});

/** A hub with a meter, a 2 kW boiler and a 1 kW relay, each with an actuator. */
function boilerAndRelay(): Promise<HubRig> {
  const device = (name: string, kw: number) => ({
    name,
    type: 'boiler',
    maxPowerKw: kw,
    meter: { kind: 'simulated' },
    actuator: { kind: 'simulated' },
  });
  return hubRig({
    config: { devices: [{ name: 'meter', meter: { kind: 'simulated' } }, device('boiler', 2), device('relay', 1)] },
  });
}

x(
  'a whole-hub activation is shared out over the devices by their room, not given whole to each; each gets its end',
  async () => {
    const r = await boilerAndRelay();
    try {
      // 2.5 kW over a 2 kW boiler and a 1 kW relay: the boiler 2, the relay 0.5 (it was 2.5 each, 5 kW in all).
      assert.is((await activate(r, uuid(1), 0, 2.5)).msg, 'accept_activation');
      await r.clock.advance(60_000);
      await eventually(() => r.commands.length === 2, 'the starts');
      assert.equal(
        r.commands.map((c) => [c.device, c.action === 'activate' ? c.quantity : undefined]),
        [
          ['boiler', 2],
          ['relay', 0.5],
        ],
      );
      assert.equal(r.store.state.activations[0]?.shares, { boiler: 2, relay: 0.5 });
      await r.clock.advance(60_000);
      await eventually(() => r.commands.length === 4, 'the ends');
      assert.equal(
        r.commands.slice(2).map((c) => [c.action, c.device]),
        [
          ['end', 'boiler'],
          ['end', 'relay'],
        ],
      );
      // 0.5 kW: the boiler alone, the relay not told anything.
      await activate(r, uuid(2), 0, 0.5, T0 + 180_000, T0 + 240_000);
      await r.clock.advance(60_000);
      await eventually(() => r.commands.length === 5, 'the start');
      assert.equal(r.commands[4], {
        action: 'activate',
        id: uuid(2),
        device: 'boiler',
        quantity: 0.5,
        from: T0 + 180_000,
        to: T0 + 240_000,
      });
      await r.clock.advance(60_000);
      await eventually(() => r.commands.length === 6, 'the end');
      assert.equal(r.commands[5], { action: 'end', id: uuid(2), device: 'boiler' });
    } finally {
      await r.close();
    }
  },
);

x(
  "a device's own activation starting under a whole-hub one takes its room from it: the shares move, no device is told more than its maxPowerKw",
  async () => {
    const r = await boilerAndRelay();
    const max: Record<string, number> = { boiler: 2, relay: 1 };
    // What each device is told, by activation: a later activate of the same id replaces its quantity.
    const told = new Map<string, Map<string, number>>();
    const over: string[] = [];
    const seen = (n: number): void => {
      for (const c of r.commands.slice(n)) {
        const onIt = told.get(c.device) ?? new Map<string, number>();
        told.set(c.device, onIt);
        if (c.action === 'activate') onIt.set(c.id, c.quantity);
        else onIt.delete(c.id);
        const kw = [...onIt.values()].reduce((a, q) => a + Math.abs(q), 0);
        if (kw > (max[c.device] as number) + 1e-9) over.push(`${c.device} told ${kw} kW`);
      }
    };
    try {
      // The hub's 3 kW: 2.5 for the hub from T0 + 1 min to T0 + 3 min, then 0.5 of the boiler's own from T0 + 2 min.
      assert.is((await activate(r, uuid(1), 0, 2.5, T0 + 60_000, T0 + 180_000)).msg, 'accept_activation');
      const own = await activate(r, uuid(2), 0, 0.5, T0 + 120_000, T0 + 180_000, 'boiler');
      assert.is(own.msg, 'accept_activation');
      await r.clock.advance(60_000);
      await eventually(() => r.commands.length === 2, 'the whole-hub start');
      assert.equal(r.store.state.activations[0]?.shares, { boiler: 2, relay: 0.5 });
      await r.clock.advance(60_000);
      await eventually(() => r.commands.length === 5, "the boiler's own start");
      assert.equal(
        r.commands.slice(2).map((c) => [c.id, c.device, c.action === 'activate' ? c.quantity : c.action]),
        [
          [uuid(1), 'boiler', 1.5],
          [uuid(1), 'relay', 1],
          [uuid(2), 'boiler', 0.5],
        ],
        'the whole-hub share moves off the boiler before its own starts, less first',
      );
      assert.equal(r.store.state.activations[0]?.shares, { boiler: 1.5, relay: 1 });
      await r.clock.advance(60_000);
      await eventually(() => r.commands.length === 8, 'the ends');
      seen(0);
      assert.equal(over, []);
      assert.equal(
        [...told.values()].map((m) => m.size),
        [0, 0],
        'each end reaches every device its activation was on',
      );
    } finally {
      await r.close();
    }
  },
);

x('an activation whose whole window passed while the hub was stopped is not started at the next start', async () => {
  const r = await hubRig();
  try {
    await activate(r, uuid(1), 0, 1);
    await r.restart({ whileStopped: () => r.clock.advance(5 * 60_000) });
    await within(r.clock.advance(1000));
    await eventually(
      () => r.logs.some((l) => l.msg === 'activation not started: its window passed while the hub was stopped'),
      'told',
    );
    assert.is(r.store.state.activations[0]?.phase, 'ended');
    assert.equal(r.commands, [], 'never started after its to');
  } finally {
    await r.close();
  }
});

x('an actuator that fails to end an activation: actuator_fault recorded, as for a failed start', async () => {
  const r = await hubRig({
    actuatorGate: async (cmd) => {
      if (cmd.action === 'end') throw new Error('relay stuck');
    },
  });
  try {
    await activate(r, uuid(1), 0, 1);
    await r.clock.advance(60_000);
    await eventually(() => r.commands.length === 1, 'the start');
    await r.clock.advance(60_000);
    await eventually(() => events(r).includes('actuator_fault'), 'actuator_fault');
    assert.ok(r.logs.some((l) => l.msg === 'actuator failed'));
  } finally {
    await r.close();
  }
});

x('smart mode off ends what runs; set_smart_mode answers 200 and records mode_changed', async () => {
  const r = await hubRig();
  try {
    await activate(r, uuid(1), 0, 1);
    await r.clock.advance(60_000);
    await eventually(() => r.commands.length === 1, 'the start');
    const ok = (await setMode(r, 'off')) as Message<'response'>;
    assert.equal([ok.response_code, ok.ref_msg], [200, 'set_smart_mode']);
    assert.equal(r.commands[1], { action: 'end', id: uuid(1), device: 'boiler' });
    assert.is(r.store.state.mode, 'off');
    assert.ok(events(r).includes('mode_changed'));
  } finally {
    await r.close();
  }
});

x(
  'contingency: every actuator sheds max_quantity, the start event stays open until contingency_end; no reply',
  async () => {
    const r = await hubRig();
    try {
      const C = uuid(5);
      await within(
        r.vpp.publish(HEH, { msg: 'contingency_activate', id: C, from: ts(T0), to: ts(T0 + 600_000), max_quantity: 1 }),
      );
      await eventually(() => r.commands.length === 1, 'the contingency start');
      assert.equal(r.commands[0], {
        action: 'activate',
        id: C,
        device: 'boiler',
        quantity: -1,
        from: T0,
        to: T0 + 600_000,
      });
      assert.equal(
        r.store.state.events.filter((e) => e.type === 'contingency_start').map((e) => e.end),
        [null],
      );
      await r.clock.advance(30_000);
      await within(r.vpp.publish(HEH, { msg: 'contingency_end', id: C, end: ts(T0 + 30_000) }));
      await eventually(() => events(r).includes('contingency_end'), 'contingency_end');
      assert.equal(r.commands[1], { action: 'end', id: C, device: 'boiler' });
      assert.equal(
        r.store.state.events.filter((e) => e.type === 'contingency_start').map((e) => e.end),
        [T0 + 30_000],
      );
      await r.network.idle();
      assert.equal(
        ofType(r.got, 'response').filter((m) => m.ref_msg?.startsWith('contingency') === true),
        [],
      );
      assert.ok(r.bus.transport.sent.every((o) => o.to === AGG));
      // A contingency_end that asks for its ack (a msg_id, which §3.2 allows on every HEH-level type) gets it.
      const ack = (await within(
        r.vpp.request(HEH, { msg: 'contingency_end', id: C, end: ts(T0 + 30_000), msg_id: uuid(6) }),
      )) as Message<'response'>;
      assert.equal([ack.response_code, ack.msg_id, ack.ref_msg], [200, uuid(6), 'contingency_end']);
    } finally {
      await r.close();
    }
  },
);

d.run();
x.run();
c.run();
