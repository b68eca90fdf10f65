/**
 * The system clock's timers (src/core/clock.ts) past Node's longest timeout: Node runs a setTimeout of more than
 * 2^31 - 1 ms after 1 ms, so an activation a month ahead would start at once. Node's timers are stubbed here to see
 * what is armed: the delay in pieces of at most 2^31 - 1 ms, the callback only after the last, cancel at any piece.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { MAX_TIMEOUT_MS, ManualClock, systemClock, WALL_CHECK_MS, wallTimer } from '../../../src/core/clock.js';

interface Armed {
  fn: () => void;
  ms: number;
  cleared: boolean;
  unref: boolean;
}

/** Runs `body` with Node's setTimeout and clearTimeout replaced by ones that record what is armed. */
function withStubbedTimers(body: (armed: Armed[]) => void): void {
  const real = { set: globalThis.setTimeout, clear: globalThis.clearTimeout };
  const armed: Armed[] = [];
  globalThis.setTimeout = ((fn: () => void, ms: number) => {
    const a: Armed = { fn, ms, cleared: false, unref: false };
    armed.push(a);
    return {
      unref() {
        a.unref = true;
        return this;
      },
      a,
    };
  }) as unknown as typeof setTimeout;
  globalThis.clearTimeout = ((t: { a: Armed }) => {
    t.a.cleared = true;
  }) as unknown as typeof clearTimeout;
  try {
    body(armed);
  } finally {
    globalThis.setTimeout = real.set;
    globalThis.clearTimeout = real.clear;
  }
}

const s = suite('systemClock');

s('a delay past 2^31 - 1 ms is armed in pieces, and the callback runs only after the last', () => {
  withStubbedTimers((armed) => {
    const thirtyDays = 30 * 86_400_000;
    let ran = 0;
    systemClock.setTimeout(() => ran++, thirtyDays, { unref: true });
    assert.equal(
      armed.map((a) => a.ms),
      [MAX_TIMEOUT_MS],
    );
    (armed[0] as Armed).fn();
    assert.is(ran, 0, 'not after the first piece');
    assert.equal(
      armed.map((a) => a.ms),
      [MAX_TIMEOUT_MS, thirtyDays - MAX_TIMEOUT_MS],
    );
    assert.ok(
      armed.every((a) => a.unref),
      'every piece unref',
    );
    (armed[1] as Armed).fn();
    assert.is(ran, 1);
  });
});

s('cancel stops a long timer at whichever piece it is', () => {
  withStubbedTimers((armed) => {
    let ran = 0;
    const t = systemClock.setTimeout(() => ran++, 3 * MAX_TIMEOUT_MS);
    (armed[0] as Armed).fn();
    t.cancel();
    assert.equal(
      armed.map((a) => a.cleared),
      [false, true],
      'the piece armed now is the one cleared',
    );
    assert.is(ran, 0);
  });
});

s('a short delay is one timer, as before', () => {
  withStubbedTimers((armed) => {
    systemClock.setTimeout(() => undefined, 1500);
    assert.equal(
      armed.map((a) => [a.ms, a.unref]),
      [[1500, false]],
    );
  });
});

s(
  'a wall timer follows steps of the clock: run within a check of a step past its deadline, held by a step back',
  () => {
    withStubbedTimers((armed) => {
      let wall = 1_000_000;
      let ran = 0;
      const hour = 3_600_000;
      wallTimer(
        () => ran++,
        hour,
        true,
        () => wall,
      );
      assert.equal(
        armed.map((a) => [a.ms, a.unref]),
        [[WALL_CHECK_MS, true]],
        'checked every 10 s',
      );
      // Ten seconds pass, then NTP steps the clock 2 h forward: the next check runs it.
      wall += WALL_CHECK_MS;
      (armed[0] as Armed).fn();
      assert.is(ran, 0);
      wall += 2 * hour;
      (armed[1] as Armed).fn();
      assert.is(ran, 1, 'run at the first check after the step');
      assert.is(armed.length, 2, 'nothing armed after');
      // Stepped back by an hour: it waits for the clock to reach its deadline again, whatever time has elapsed.
      const back = wallTimer(
        () => ran++,
        20_000,
        false,
        () => wall,
      );
      wall -= hour;
      (armed[2] as Armed).fn();
      assert.is(ran, 1);
      assert.is((armed[3] as Armed).ms, WALL_CHECK_MS);
      wall += hour + 20_000;
      (armed[3] as Armed).fn();
      assert.is(ran, 2);
      back.cancel();
      // Within the check period, the timer is armed for exactly what is left.
      wallTimer(
        () => ran++,
        2_500,
        false,
        () => wall,
      );
      assert.is((armed[4] as Armed).ms, 2_500);
      // Already due, it still runs from a timer, not inside the call that sets it.
      wallTimer(
        () => ran++,
        0,
        false,
        () => wall,
      );
      assert.is(ran, 2, 'not run synchronously');
      assert.is((armed[5] as Armed).ms, 0);
      (armed[5] as Armed).fn();
      assert.is(ran, 3);
    });
  },
);

s('systemClock: { wall: true } gives a wall timer, cancel stops it at any check', () => {
  withStubbedTimers((armed) => {
    let ran = 0;
    const t = systemClock.setTimeout(() => ran++, 60_000, { wall: true, unref: true });
    assert.equal(
      armed.map((a) => [a.ms, a.unref]),
      [[WALL_CHECK_MS, true]],
    );
    (armed[0] as Armed).fn();
    t.cancel();
    assert.equal(
      armed.map((a) => a.cleared),
      [false, true],
    );
    assert.is(ran, 0);
  });
});

const m = suite('ManualClock.step');

m('a wall timer keeps its deadline through a step, any other timer the time it had left', async () => {
  const clock = new ManualClock(0);
  const ran: string[] = [];
  clock.setTimeout(() => ran.push('wall at 60 s'), 60_000, { wall: true });
  clock.setTimeout(() => ran.push('elapsed 60 s'), 60_000);
  clock.setTimeout(() => ran.push('wall at 30 s'), 30_000, { wall: true });
  await clock.step(45_000);
  assert.equal(ran, ['wall at 30 s'], 'a step past a wall deadline runs it');
  await clock.advance(15_000);
  assert.equal(ran, ['wall at 30 s', 'wall at 60 s']);
  await clock.advance(44_999);
  assert.equal(ran.length, 2, 'the other still has its time to go');
  await clock.advance(1);
  assert.is(ran[2], 'elapsed 60 s');
  clock.setTimeout(() => ran.push('wall back'), 10_000, { wall: true });
  await clock.step(-60_000);
  await clock.advance(10_000);
  assert.is(ran.length, 3, 'held by a step back');
  await clock.advance(60_000);
  assert.is(ran[3], 'wall back');
});

s.run();
m.run();
