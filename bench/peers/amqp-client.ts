/**
 * @cloudamqp/amqp-client (low-level AMQPClient API) behind the bench interface. Every basicPublish returns a promise
 * (settled at the socket write, or at the broker's confirm on a confirm channel); it has no other flow control, so
 * "all in flight" means N calls and one Promise.all. Its default frame_max is 8192, which we keep.
 *
 * TCP_NODELAY: the client has no option for it. The net.Socket lives on `client.socket` (amqp-socket-client.ts,
 * set in connect(), non-enumerable), so the adapter calls `client.socket.setNoDelay(true)` once connect resolves.
 */
import { type AMQPChannel, AMQPClient, type AMQPMessage } from '@cloudamqp/amqp-client';
import { type Chan, type Conn, type ConnectSpec, type Contender, describeError, type Received } from './types.js';

function view(u8: Uint8Array | null): Buffer {
  return u8 === null ? Buffer.alloc(0) : Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

class AmqpClientChan implements Chan {
  readonly errors: string[] = [];
  private readonly record = (err: unknown): void => {
    this.errors.push(describeError(err));
  };

  constructor(private readonly ch: AMQPChannel) {
    ch.onerror = (reason: string) => this.record(new Error(`channel closed: ${reason}`));
  }

  async declare(queue: string): Promise<void> {
    await this.ch.queueDeclare(queue, { durable: true, autoDelete: false, exclusive: false });
  }

  async messageCount(queue: string): Promise<number> {
    return (await this.ch.queueDeclare(queue, { passive: true })).messageCount;
  }

  async deleteQueue(queue: string): Promise<void> {
    await this.ch.queueDelete(queue);
  }

  async get(queue: string): Promise<Received | null> {
    const m = await this.ch.basicGet(queue, { noAck: true });
    return m === null ? null : { body: view(m.body), deliveryMode: m.properties.deliveryMode };
  }

  async publishAll(queue: string, body: (i: number) => Buffer, n: number, persistent: boolean): Promise<void> {
    const props = persistent ? { deliveryMode: 2 } : {};
    const all: Promise<number>[] = new Array(n);
    for (let i = 0; i < n; i++) all[i] = this.ch.basicPublish('', queue, body(i), props);
    await Promise.all(all);
  }

  publishOne(queue: string, body: Buffer, persistent: boolean): void {
    this.ch.basicPublish('', queue, body, persistent ? { deliveryMode: 2 } : {}).catch(this.record);
  }

  async consume(
    queue: string,
    prefetch: number,
    onMessage: (m: Received) => void,
  ): Promise<{ cancel(): Promise<void> }> {
    await this.ch.basicQos(prefetch);
    const consumer = await this.ch.basicConsume(queue, { noAck: false }, (msg: AMQPMessage) => {
      onMessage({ body: view(msg.body), deliveryMode: msg.properties.deliveryMode });
      msg.ack().catch(this.record);
    });
    return {
      cancel: async () => {
        await consumer.cancel();
      },
    };
  }

  async close(): Promise<void> {
    await this.ch.close();
  }
}

class AmqpClientConn implements Conn {
  constructor(private readonly client: AMQPClient) {}

  async channel(confirm: boolean): Promise<Chan> {
    const ch = await this.client.channel();
    if (confirm) await ch.confirmSelect();
    return new AmqpClientChan(ch);
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

export function amqpClientContender(version: string): Contender {
  return {
    name: 'amqp-client',
    label: `@cloudamqp/amqp-client ${version}`,
    noDelayByDefault: false,
    async connect(spec: ConnectSpec): Promise<Conn> {
      const client = new AMQPClient(`amqp://guest:guest@127.0.0.1:${spec.port}`);
      client.onerror = () => {
        /* surfaced through the channels' onerror and rejected promises */
      };
      await client.connect();
      if (spec.noDelay) {
        if (client.socket === undefined)
          throw new Error('amqp-client: no socket after connect, cannot set TCP_NODELAY');
        client.socket.setNoDelay(true);
      }
      return new AmqpClientConn(client);
    },
  };
}
