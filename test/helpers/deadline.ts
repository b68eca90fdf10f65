/**
 * uvu has no per-test timeout, so every await in an integration test that
 * talks to a broker or a socket goes through `withDeadline`: a hung broker
 * then fails the test with a readable message instead of hanging the run.
 *
 * The deadline only stops the *waiting*; it cannot cancel `work`. Tests must
 * still release what `work` was acquiring (e.g. `BrokerNode.stop()` in an
 * `after` hook).
 */
export function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  // The timer stays ref'ed on purpose: if nothing else keeps the event loop
  // alive, an unref'ed timer would let Node exit silently with the test still
  // pending instead of failing it.
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

/** Resolves after `ms` milliseconds (a ref'ed timer, see above). */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `pred` every `every` ms (10 by default; more for a predicate that asks the broker or the hub) until it holds;
 * fails with `what` (a function: evaluated then) after `ms`. The default is long enough for a broker round trip on a
 * loaded 2-core CI machine (a broker still busy after the suite's heavier files once took over 5 s): it only costs
 * time when the test fails.
 */
export async function until(
  pred: () => boolean | Promise<boolean>,
  what: string | (() => string),
  ms = 10_000,
  every = 10,
): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > end)
      throw new Error(`timed out after ${ms} ms waiting for ${typeof what === 'string' ? what : what()}`);
    await sleep(every);
  }
}
