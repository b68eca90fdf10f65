/**
 * The system clock's timers (src/core/clock.ts) past Node's longest timeout: Node runs a setTimeout of more than
 * 2^31 - 1 ms after 1 ms, so an activation a month ahead would start at once. Node's timers are stubbed here to see
 * what is armed: the delay in pieces of at most 2^31 - 1 ms, the callback only after the last, cancel at any piece.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { MAX_TIMEOUT_MS, systemClock } from '../../../src/core/clock.js';

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

s.run();
