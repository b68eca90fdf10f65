/**
 * The Connector's receive pipeline (src/bus/receive.ts, dispatch.ts) as a property, over the in-memory transport:
 * a VPP sends messages to a hub whose handler, drawn from a seeded PRNG, returns, throws (the bus retries it, up to
 * its delivery limit) or hangs until a later step; meanwhile copies of earlier messages arrive again (a publisher's
 * retry with the same message id), and the hub's connection drops and comes back (what was unsettled is delivered
 * again, also in the instant a message is being dead-lettered), with or without a broker that counts deliveries;
 * some messages are refused by the codec. Whatever the sequence, once everything is let go:
 *  - each message is handled to completion exactly once (a handler that returned), or, when it failed as often as
 *    the delivery limit, dead-lettered once and answered 500, never both;
 *  - each refused message is dead-lettered once and answered once;
 *  - no message is handled by two handler calls at the same time;
 *  - nothing is left in the queue or unsettled.
 * FUZZ_ITERATIONS=n runs n sequences (default 20), FUZZ_SEED=s replays one.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Message } from '../../src/codec/index.js';
import { EbTime } from '../../src/codec/index.js';
import { HUB, pair, responses, uuid, VPP } from '../helpers/memory-bus.js';
import { Random } from '../helpers/random.js';

const sequences = Number(process.env['FUZZ_ITERATIONS'] ?? 20);
const firstSeed = Number(process.env['FUZZ_SEED'] ?? 20_261_204);
const LIMIT = 3;
const T0 = EbTime.parse('2026-01-01T00:00:00Z');

async function sequence(seed: number, steps: number): Promise<void> {
  const rnd = new Random(seed);
  // Half the sequences without a broker that counts deliveries (a classic queue, MQTT): the Connector counts them.
  const { network, hub, vpp } = pair({ hub: { deliveryLimit: LIMIT }, countDeliveries: rnd.bool() });
  const completed = new Map<number, number>(); // price (the message's number) -> handler calls that returned
  const calls = new Map<number, number>();
  const running = new Set<number>();
  const hanging: (() => void)[] = [];
  let overlap = '';
  let letGo = false;
  hub.onLoadPrice(async (m) => {
    const n = m.price;
    calls.set(n, (calls.get(n) ?? 0) + 1);
    if (running.has(n)) overlap ||= `message ${n} handled twice at the same time`;
    running.add(n);
    try {
      const fate = rnd.int(10);
      if (fate < 2) throw new Error(`handler failure for ${n}`);
      if (fate < 3 && !letGo) await new Promise<void>((resolve) => hanging.push(resolve));
      completed.set(n, (completed.get(n) ?? 0) + 1);
    } finally {
      running.delete(n);
    }
  });
  const handlerErrors: string[] = [];
  hub.on('handler-error', (_e, type) => handlerErrors.push(type));
  await hub.start();
  await vpp.start();
  const sentIds = new Map<number, string>();
  let next = 1;
  const t = hub.transport;
  // Now and then the connection drops just as a message is dead-lettered: that dead letter is lost with it.
  t.deadLetterFailure = () => {
    if (!letGo && rnd.int(4) === 0) {
      t.disconnect();
      setImmediate(() => t.reconnect());
    }
    return undefined;
  };
  const refused: string[] = [];
  try {
    for (let step = 0; step < steps; step++) {
      const op = rnd.int(12);
      if (op < 5) {
        for (let k = rnd.range(1, 4); k > 0; k--) {
          const n = next++;
          const message: Message = { msg: 'load_price', from: T0, to: T0.plusSeconds(3600), price: n };
          const messageId = `m-${seed}-${n}`;
          sentIds.set(n, messageId);
          await vpp.publish(HUB, message, { messageId });
        }
      } else if (op < 7 && sentIds.size > 0) {
        // A copy of an earlier message, with its message id: a publisher's retry, or the broker's redelivery.
        const n = rnd.range(1, next - 1);
        void t.inject({
          from: VPP,
          body: JSON.stringify({
            msg: 'load_price',
            from: T0.toString(),
            to: T0.plusSeconds(3600).toString(),
            price: n,
          }),
          routingKey: 'load_price',
          properties: { messageId: sentIds.get(n) as string, type: 'load_price', contentType: 'application/json' },
        });
      } else if (op < 9) {
        t.disconnect();
        await new Promise((resolve) => setImmediate(resolve));
        t.reconnect();
      } else if (op < 11) {
        for (const resolve of hanging.splice(0, rnd.range(1, 3))) resolve();
      } else {
        // A message the codec refuses (a price that is not a number), with a msg_id to answer.
        const msgId = uuid(seed * 1000 + refused.length);
        refused.push(msgId);
        void t.inject({
          from: VPP,
          body: JSON.stringify({
            msg: 'load_price',
            from: T0.toString(),
            to: T0.toString(),
            price: 'x',
            msg_id: msgId,
          }),
          routingKey: 'load_price',
          properties: { messageId: `r-${msgId}`, type: 'load_price', contentType: 'application/json' },
        });
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    // Everything let go: no handler hangs from here.
    letGo = true;
    for (let i = 0; i < 200 && (hanging.length > 0 || t.unsettled > 0 || network.queued(HUB).length > 0); i++) {
      for (const resolve of hanging.splice(0)) resolve();
      await network.idle();
    }
    await network.idle();
    assert.is(overlap, '', `seed ${seed}: ${overlap}`);
    const dead = new Map<string, number>();
    for (const d of t.deadLetters) {
      const id = d.message.properties.messageId ?? '?';
      dead.set(id, (dead.get(id) ?? 0) + 1);
    }
    for (let n = 1; n < next; n++) {
      const id = sentIds.get(n) as string;
      const done = completed.get(n) ?? 0;
      const deadLettered = dead.get(id) ?? 0;
      assert.ok(
        (done === 1 && deadLettered === 0) || (done === 0 && deadLettered === 1),
        `seed ${seed}: message ${n} handled to completion ${done} time(s), dead-lettered ${deadLettered} time(s) (${calls.get(n) ?? 0} calls)`,
      );
      if (deadLettered === 1)
        assert.ok((calls.get(n) ?? 0) >= LIMIT, `seed ${seed}: message ${n} dead-lettered before ${LIMIT} failures`);
    }
    const answers = responses(t);
    for (const msgId of refused) {
      assert.is(dead.get(`r-${msgId}`), 1, `seed ${seed}: refused ${msgId} dead-lettered once`);
      assert.equal(
        answers.filter(([, id]) => id === msgId),
        [[400, msgId]],
        `seed ${seed}: refused ${msgId} answered once`,
      );
    }
    assert.equal(t.problems, [], `seed ${seed}: the consumer did nothing wrong`);
    assert.is(t.unsettled, 0, `seed ${seed}: nothing unsettled`);
    assert.is(network.queued(HUB).length, 0, `seed ${seed}: nothing left in the queue`);
  } finally {
    for (const resolve of hanging.splice(0)) resolve();
    await Promise.all([hub.close(), vpp.close()]);
  }
}

test(`each message handled once or dead-lettered once, whatever fails, repeats or drops (${sequences} sequences of 60 steps)`, async () => {
  for (let i = 0; i < sequences; i++) await sequence(firstSeed + i, 60);
});

test.run();
