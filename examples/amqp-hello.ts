/**
 * The AMQP client in 30 lines: publish with confirms, consume with manual acks, close.
 *
 *   npm run build:ts && node .out/examples/amqp-hello.js [amqp://guest:guest@127.0.0.1:5672]
 */
import { connect, PublishError } from '../src/amqp/index.js';

const conn = await connect(process.argv[2] ?? 'amqp://guest:guest@127.0.0.1:5672', { connectionName: 'amqp-hello' });
conn.on('blocked', (reason) => console.log('broker blocked publishing:', reason));

const ch = await conn.createConfirmChannel();
const { queue } = await ch.queueDeclare('', { exclusive: true });

const consumer = await ch.basicConsume(
  queue,
  (msg) => {
    console.log(`received ${msg.properties.messageId}: ${msg.text()}`);
    msg.ack(); // manual ack: only now may the broker forget the message
  },
  { prefetch: 10 },
);

for (let i = 1; i <= 3; i++) {
  try {
    // Resolves when the broker has taken responsibility for the message (publisher confirm).
    await ch.basicPublish('', queue, `hello ${i}`, {
      deliveryMode: 2,
      messageId: `msg-${i}`,
      contentType: 'text/plain',
    });
  } catch (err) {
    if (err instanceof PublishError)
      console.log(`publish ${i} failed: ${err.failure}`); // nacked, returned, closed, timeout
    else throw err;
  }
}

await new Promise((resolve) => setTimeout(resolve, 200));
await consumer.cancel();
await conn.close();
