/**
 * Reproduction: a synchronous method (queue.declare, tx.commit, queue.delete ...) overtakes earlier basicPublish calls
 * on the same channel when those publishes are waiting in the channel's publish queue (the write buffer was over
 * writeBufferBytes, 1 MiB by default: here after ~4,000 x 200 B). Channel.call() writes the method frame straight to
 * the output (sendRpc), while waiting publishes are written later by _resume(). AMQP orders a channel's frames as
 * sent, so the program order is lost:
 *
 *   1. passive queue.declare right after 20,000 publishes (not awaited) reports only those written before it
 *      (~3,800); amqplib, which keeps the order, reports nearly all (~19,800: the broker's count lags a little);
 *   2. tx.commit right after N publishes goes out first, the waiting publishes follow while the commit is in
 *      progress, and RabbitMQ closes the whole connection: 504 CHANNEL_ERROR "unexpected command while processing
 *      'tx.commit'". (With fewer publishes, none waits and both work.)
 *
 *   npx tsc -p tsconfig.json && node .out/bench/repro/rpc-overtakes-publishes.js [n]
 */
import amqplib from 'amqplib';
import { connect } from '../../src/amqp/index.js';

const URL = 'amqp://guest:guest@127.0.0.1:5672';

async function oursDeclare(n: number): Promise<number> {
  const conn = await connect(URL);
  const ch = await conn.createChannel();
  const queue = `repro-order-${process.pid}`;
  await ch.queueDeclare(queue, { durable: true });
  const body = Buffer.alloc(200, 0x61);
  for (let i = 0; i < n; i++) void ch.basicPublish('', queue, body, { deliveryMode: 2 });
  const count = (await ch.queueDeclare(queue, { passive: true })).messageCount;
  await ch.queueDelete(queue);
  await conn.close();
  return count;
}

async function amqplibDeclare(n: number): Promise<number> {
  const conn = await amqplib.connect(URL);
  const ch = await conn.createChannel();
  const queue = `repro-order-amqplib-${process.pid}`;
  await ch.assertQueue(queue, { durable: true });
  const body = Buffer.alloc(200, 0x61);
  for (let i = 0; i < n; i++) ch.sendToQueue(queue, body, { deliveryMode: 2 });
  const count = (await ch.checkQueue(queue)).messageCount;
  await ch.deleteQueue(queue);
  await conn.close();
  return count;
}

async function oursTx(n: number): Promise<string> {
  const conn = await connect(URL);
  let closed = 'open';
  conn.on('close', (err) => {
    closed = err === undefined ? 'closed cleanly' : `closed: ${err.message}`;
  });
  const queue = `repro-tx-${process.pid}`;
  const setup = await conn.createChannel();
  await setup.queueDeclare(queue, { durable: true });
  const ch = await conn.createChannel();
  await ch.txSelect();
  const body = Buffer.alloc(200, 0x61);
  const publishes = Array.from({ length: n }, () => ch.basicPublish('', queue, body, { deliveryMode: 2 }));
  let outcome: string;
  try {
    await ch.txCommit();
    await Promise.allSettled(publishes);
    await ch.close();
    const check = await conn.createChannel();
    outcome = `committed; the queue holds ${(await check.queueDeclare(queue, { passive: true })).messageCount}`;
    await check.queueDelete(queue);
  } catch (err) {
    outcome = `tx.commit failed: ${err instanceof Error ? err.message : String(err)}`;
  }
  if (conn.isOpen) await conn.close();
  else {
    const c = await connect(URL);
    await (await c.createChannel()).queueDelete(queue);
    await c.close();
  }
  return `${outcome} (connection ${closed})`;
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 20_000);
  console.log(`${n} publishes, then passive queue.declare on the same channel:`);
  console.log(`  ours    reports ${await oursDeclare(n)} messages`);
  console.log(`  amqplib reports ${await amqplibDeclare(n)} messages`);
  console.log(`${n} publishes in a transaction, then tx.commit:`);
  console.log(`  ours: ${await oursTx(n)}`);
  console.log(`${Math.min(n, 2000)} publishes in a transaction (none has to wait), then tx.commit:`);
  console.log(`  ours: ${await oursTx(Math.min(n, 2000))}`);
}

void main();
