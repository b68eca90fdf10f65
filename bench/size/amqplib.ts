// Minimal program for the size comparison (bench/size.ts bundles it): connect, declare, publish, consume, close.
// The bench also runs the bundle once against the broker: it must print "ok".
import amqplib from 'amqplib';

async function main(): Promise<void> {
  const queue = process.env['BENCH_SIZE_QUEUE'] ?? 'bench-size';
  const conn = await amqplib.connect('amqp://guest:guest@127.0.0.1:5672');
  const ch = await conn.createConfirmChannel();
  await ch.assertQueue(queue, { durable: true });
  ch.sendToQueue(queue, Buffer.from('hello'), { deliveryMode: 2 });
  await ch.waitForConfirms();
  const text = await new Promise<string>((resolve) => {
    void ch.consume(queue, (msg) => {
      if (msg !== null) {
        ch.ack(msg);
        resolve(msg.content.toString());
      }
    });
  });
  await conn.close();
  console.log(text === 'hello' ? 'ok' : `unexpected ${text}`);
}

void main();
