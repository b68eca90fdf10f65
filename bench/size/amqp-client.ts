// Minimal program for the size comparison (bench/size.ts bundles it): connect, declare, publish, consume, close.
// The bench also runs the bundle once against the broker: it must print "ok".
import { AMQPClient } from '@cloudamqp/amqp-client';

async function main(): Promise<void> {
  const queue = process.env['BENCH_SIZE_QUEUE'] ?? 'bench-size';
  const client = new AMQPClient('amqp://guest:guest@127.0.0.1:5672');
  const conn = await client.connect();
  const ch = await conn.channel();
  await ch.confirmSelect();
  await ch.queueDeclare(queue, { durable: true });
  await ch.basicPublish('', queue, 'hello', { deliveryMode: 2 });
  const text = await new Promise<string>((resolve) => {
    void ch.basicConsume(queue, { noAck: false }, async (msg) => {
      await msg.ack();
      resolve(msg.bodyToString() ?? '');
    });
  });
  await conn.close();
  console.log(text === 'hello' ? 'ok' : `unexpected ${text}`);
}

void main();
