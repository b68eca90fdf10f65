/**
 * Reproduction: publishing more than about 17 MiB at once on one channel rejects with `buffer-full`, although the
 * default is to wait (PublishOptions.wait = true), and the API offers nothing to wait on before publishing more.
 * amqplib (publish() returns false, then 'drain') and amqp-client (every publish waits for its socket write) both
 * complete the same loop.
 *
 *   npx tsc -p tsconfig.json && node .out/bench/repro/publish-queue-full.js [count] [bodyBytes]
 *
 * Default 1000 x 64 KiB (the bench's publish-64k scenario). With the defaults, writeBufferBytes (1 MiB) fills, the
 * rest waits in the channel's publish queue, and every publish beyond publishQueueBytes (16 MiB) is rejected.
 */
import { connect } from '../../src/amqp/index.js';

async function main(): Promise<void> {
  const count = Number(process.argv[2] ?? 1000);
  const size = Number(process.argv[3] ?? 64 * 1024);
  const conn = await connect('amqp://guest:guest@127.0.0.1:5672');
  const ch = await conn.createConfirmChannel();
  const queue = `repro-queue-full-${process.pid}`;
  await ch.queueDeclare(queue, { durable: true });
  const body = Buffer.alloc(size, 0x61);
  const results = await Promise.allSettled(
    Array.from({ length: count }, () => ch.basicPublish('', queue, body, { deliveryMode: 2 })),
  );
  const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  const first = rejected[0]?.reason as { code?: string; message?: string } | undefined;
  console.log(
    `${count} x ${size} B published at once: ${count - rejected.length} confirmed, ${rejected.length} rejected` +
      (first ? ` (first: ${first.code} "${first.message}")` : ''),
  );
  await ch.queueDelete(queue);
  await conn.close();
}

void main();
