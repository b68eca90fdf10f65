/**
 * Before any timing: each contender must round-trip the scenario's message shapes correctly (dequal's bench does the
 * same: a contender that gives wrong answers is not benchmarked). It publishes with confirms, consumes with manual
 * ack, and both directions are cross-checked with the harness client (amqplib when installed), so an encoder and a
 * decoder of the same client cannot hide each other's mistakes.
 */
import { makeBody } from './bodies.js';
import { type Contender, describeError, type Received } from './peers/index.js';
import type { Harness } from './runner.js';
import { uniqueQueue } from './runner.js';

const SHAPES: Buffer[] = [
  ...Array.from({ length: 10 }, (_, i) => makeBody(200, i)),
  makeBody(64 * 1024, 1), // one frame for ours and amqplib, several for amqp-client (frame_max 8192)
  makeBody(1024 * 1024, 2), // several frames for everyone
];

export async function preflight(c: Contender, harness: Harness, port: number): Promise<string[]> {
  const problems: string[] = [];
  const queue = uniqueQueue();
  try {
    const conn = await c.connect({ port, noDelay: false });
    try {
      const ch = await conn.channel(true);
      await ch.declare(queue);
      await ch.publishAll(queue, (i) => SHAPES[i] as Buffer, SHAPES.length, true);
      // The harness reads the first message: did the contender encode it right?
      const first = await harness.with((h) => h.get(queue));
      if (first === null || !first.body.equals(SHAPES[0] as Buffer) || first.deliveryMode !== 2) {
        problems.push(
          `harness read back ${first === null ? 'nothing' : `${first.body.length} bytes, deliveryMode ${String(first.deliveryMode)}`} for the first publish`,
        );
      }
      // The harness publishes it again at the end; the contender must decode all of them, in order.
      const expected = [...SHAPES.slice(1), SHAPES[0] as Buffer];
      await harness.with((h) => h.publishAll(queue, () => SHAPES[0] as Buffer, 1, true));
      const got: Received[] = [];
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`consumed ${got.length} of ${expected.length} within 10 s`)),
          10_000,
        );
        ch.consume(queue, 100, (m) => {
          got.push({ body: Buffer.from(m.body), deliveryMode: m.deliveryMode });
          if (got.length === expected.length) {
            clearTimeout(timer);
            resolve();
          }
        }).catch(reject);
      });
      got.forEach((m, i) => {
        const want = expected[i] as Buffer;
        if (!m.body.equals(want))
          problems.push(`message ${i}: got ${m.body.length} bytes, expected ${want.length} (or different content)`);
        if (m.deliveryMode !== 2) problems.push(`message ${i}: deliveryMode ${String(m.deliveryMode)}`);
      });
      await new Promise((r) => setTimeout(r, 50));
      problems.push(...ch.errors);
    } finally {
      await conn.close();
    }
    const left = await harness.with((h) => h.messageCount(queue));
    if (left !== 0) problems.push(`${left} messages left in the queue after consuming and acking all`);
  } catch (err) {
    problems.push(describeError(err));
  } finally {
    await harness.with((h) => h.deleteQueue(queue)).catch(() => undefined);
  }
  return problems;
}
