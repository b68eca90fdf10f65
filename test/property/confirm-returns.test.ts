/**
 * The confirm tracker (src/amqp/confirms.ts) against a model of a RabbitMQ channel's confirms, over seeded random runs.
 * The client publishes mandatory messages to one exchange under a few routing keys, with no message id, a unique one
 * or an id several share; each is routable or not. The model handles each publish as rabbit_channel does: a routable
 * one waits for its queue, whose confirm comes in any order later; an unroutable one gets its basic.return at once and
 * its confirm is recorded. After each event the channel flushes its confirms as coalesce_and_send does: those below
 * the oldest still unconfirmed in one ack with multiple at the highest of them, the rest one ack each. Whatever the
 * order, every routable publish must resolve and every unroutable one fail as `returned`, once.
 *
 * FUZZ_ITERATIONS=n runs n sequences (default 50), FUZZ_SEED=s replays one.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfirmTracker } from '../../src/amqp/confirms.js';
import type { PublishError } from '../../src/amqp/errors.js';
import { Random } from '../helpers/random.js';

const sequences = Number(process.env['FUZZ_ITERATIONS'] ?? 50);
const firstSeed = Number(process.env['FUZZ_SEED'] ?? 20_261_204);

interface Sent {
  readonly routingKey: string;
  readonly messageId: string | undefined;
  readonly routable: boolean;
  outcome: string[];
}

function sequence(seed: number, steps: number): void {
  const rnd = new Random(seed);
  const t = new ConfirmTracker();
  const sent = new Map<number, Sent>();
  const waitingForQueue = new Set<number>(); // routed, the queue has not confirmed yet
  let confirmed: number[] = []; // recorded since the last flush
  const unconfirmed = new Set<number>(); // published, not acked by the broker yet

  const flush = (): void => {
    if (confirmed.length === 0) return;
    const sorted = [...new Set(confirmed)].sort((a, b) => a - b);
    confirmed = [];
    for (const seq of sorted) unconfirmed.delete(seq);
    const cutoff = unconfirmed.size === 0 ? (sorted.at(-1) as number) + 1 : Math.min(...unconfirmed);
    const below = sorted.filter((s) => s < cutoff);
    if (below.length > 0) t.ack(below.at(-1) as number, true);
    for (const seq of sorted.filter((s) => s >= cutoff)) t.ack(seq, false);
  };

  for (let step = 0; step < steps; step++) {
    if (rnd.int(3) < 2) {
      const seq = t.nextSeq++;
      const id = rnd.int(3);
      const s: Sent = {
        routingKey: `k${rnd.int(2)}`,
        messageId: id === 0 ? undefined : id === 1 ? `m${seq}` : 'shared',
        routable: rnd.bool(),
        outcome: [],
      };
      sent.set(seq, s);
      unconfirmed.add(seq);
      t.add(seq, {
        deadline: Infinity,
        mandatory: true,
        exchange: 'x',
        routingKey: s.routingKey,
        messageId: s.messageId,
        returned: undefined,
        resolve: () => s.outcome.push('ok'),
        reject: (e: PublishError) => s.outcome.push(e.failure),
      });
      if (s.routable) waitingForQueue.add(seq);
      else {
        t.markReturned('x', s.routingKey, s.messageId, 312, 'NO_ROUTE');
        confirmed.push(seq);
      }
    } else if (waitingForQueue.size > 0) {
      // A queue confirms some of what it holds, in any order.
      for (const seq of [...waitingForQueue]) {
        if (rnd.int(3) === 0) continue;
        waitingForQueue.delete(seq);
        confirmed.push(seq);
      }
    }
    flush();
  }
  for (const seq of waitingForQueue) confirmed.push(seq);
  flush();
  assert.is(t.size, 0, `seed ${seed}: nothing left pending`);
  for (const [seq, s] of sent) {
    assert.equal(
      s.outcome,
      [s.routable ? 'ok' : 'returned'],
      `seed ${seed}: publish ${seq} (${s.routingKey}, id ${String(s.messageId)}, ${s.routable ? 'routable' : 'unroutable'})`,
    );
  }
}

test(`each return goes to its own publish, whatever the order of the queues' confirms (${sequences} sequences of 200 steps)`, () => {
  for (let i = 0; i < sequences; i++) sequence(firstSeed + i, 200);
});

test.run();
