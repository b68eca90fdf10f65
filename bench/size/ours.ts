// Minimal program for the size comparison (bench/size.ts bundles it): connect, declare, publish, consume, close.
// The bench also runs the bundle once against the broker: it must print "ok".
import { connect } from '../../src/amqp/index.js';

async function main(): Promise<void> {
  const queue = process.env['BENCH_SIZE_QUEUE'] ?? 'bench-size';
  const conn = await connect('amqp://guest:guest@127.0.0.1:5672');
  const ch = await conn.createConfirmChannel();
  await ch.queueDeclare(queue, { durable: true });
  await ch.basicPublish('', queue, 'hello', { deliveryMode: 2 });
  const text = await new Promise<string>((resolve) => {
    void ch.basicConsume(queue, (msg) => {
      msg.ack();
      resolve(msg.text());
    });
  });
  await conn.close();
  console.log(text === 'hello' ? 'ok' : `unexpected ${text}`);
}

void main();
