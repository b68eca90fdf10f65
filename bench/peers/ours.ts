/** Our client (src/amqp) behind the bench interface. TCP_NODELAY is always on; `noDelay` changes nothing. */
import { type Channel, CLIENT_VERSION, type Connection, connect } from '../../src/amqp/index.js';
import { type Chan, type Conn, type ConnectSpec, type Contender, describeError, type Received } from './types.js';

class OursChan implements Chan {
  readonly errors: string[] = [];
  private readonly record = (err: unknown): void => {
    this.errors.push(describeError(err));
  };

  constructor(private readonly ch: Channel) {
    ch.on('close', (err) => {
      if (err !== undefined) this.record(err);
    });
  }

  async declare(queue: string): Promise<void> {
    await this.ch.queueDeclare(queue, { durable: true });
  }

  async messageCount(queue: string): Promise<number> {
    return (await this.ch.queueDeclare(queue, { passive: true })).messageCount;
  }

  async deleteQueue(queue: string): Promise<void> {
    await this.ch.queueDelete(queue);
  }

  async get(queue: string): Promise<Received | null> {
    const m = await this.ch.basicGet(queue, { noAck: true });
    return m === null ? null : { body: m.body, deliveryMode: m.properties.deliveryMode };
  }

  async publishAll(queue: string, body: (i: number) => Buffer, n: number, persistent: boolean): Promise<void> {
    const props = persistent ? { deliveryMode: 2 } : undefined;
    const all: Promise<void>[] = new Array(n);
    // Everything at once: the client itself bounds what is in flight (maxUnconfirmed, writeBufferBytes).
    for (let i = 0; i < n; i++) all[i] = this.ch.basicPublish('', queue, body(i), props);
    await Promise.all(all);
  }

  publishOne(queue: string, body: Buffer, persistent: boolean): void {
    this.ch.basicPublish('', queue, body, persistent ? { deliveryMode: 2 } : undefined).catch(this.record);
  }

  async consume(
    queue: string,
    prefetch: number,
    onMessage: (m: Received) => void,
  ): Promise<{ cancel(): Promise<void> }> {
    const consumer = await this.ch.basicConsume(
      queue,
      (msg) => {
        onMessage({ body: msg.body, deliveryMode: msg.properties.deliveryMode });
        msg.ack();
      },
      { prefetch },
    );
    return { cancel: () => consumer.cancel() };
  }

  close(): Promise<void> {
    return this.ch.close();
  }
}

class OursConn implements Conn {
  constructor(private readonly conn: Connection) {}

  async channel(confirm: boolean): Promise<Chan> {
    return new OursChan(confirm ? await this.conn.createConfirmChannel() : await this.conn.createChannel());
  }

  close(): Promise<void> {
    return this.conn.close();
  }
}

export const ours: Contender = {
  name: 'ours',
  label: `ours ${CLIENT_VERSION}`,
  noDelayByDefault: true,
  async connect(spec: ConnectSpec): Promise<Conn> {
    // The scenarios put up to 100 MiB of publishes in flight at once. The peers hold any amount in memory; ours
    // refuses a burst past publishQueueBytes (64 MiB by default) with buffer-full, by design, so the bench raises it.
    const conn = await connect({
      hostname: '127.0.0.1',
      port: spec.port,
      username: 'guest',
      password: 'guest',
      connectionName: 'bench',
      publishQueueBytes: 1 << 30,
    });
    return new OursConn(conn);
  },
};
