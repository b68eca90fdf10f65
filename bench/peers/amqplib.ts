/**
 * amqplib (promise API) behind the bench interface. Its own flow-control mechanism is the boolean that publish
 * returns: when false we wait for 'drain' before the next publish, as its documentation asks. Confirms are taken with
 * the per-publish callback plus waitForConfirms(). Note that amqplib always sends a `headers` table (empty here).
 */
import { once } from 'node:events';
import type { Channel, ChannelModel, ConfirmChannel, Options } from 'amqplib';
import amqplib from 'amqplib';
import { type Chan, type Conn, type ConnectSpec, type Contender, describeError, type Received } from './types.js';

class AmqplibChan implements Chan {
  readonly errors: string[] = [];
  private readonly record = (err: unknown): void => {
    this.errors.push(describeError(err));
  };

  constructor(
    private readonly ch: Channel | ConfirmChannel,
    private readonly confirm: boolean,
  ) {
    ch.on('error', this.record);
  }

  async declare(queue: string): Promise<void> {
    await this.ch.assertQueue(queue, { durable: true, exclusive: false, autoDelete: false });
  }

  async messageCount(queue: string): Promise<number> {
    return (await this.ch.checkQueue(queue)).messageCount;
  }

  async deleteQueue(queue: string): Promise<void> {
    await this.ch.deleteQueue(queue);
  }

  async get(queue: string): Promise<Received | null> {
    const m = await this.ch.get(queue, { noAck: true });
    return m === false ? null : { body: m.content, deliveryMode: m.properties.deliveryMode as number | undefined };
  }

  async publishAll(queue: string, body: (i: number) => Buffer, n: number, persistent: boolean): Promise<void> {
    const opts: Options.Publish = persistent ? { deliveryMode: 2 } : {};
    let failure: unknown = null;
    const ch = this.ch;
    if (this.confirm) {
      const cch = ch as ConfirmChannel;
      const cb = (err: unknown): void => {
        if (err !== null && err !== undefined) failure ??= err;
      };
      for (let i = 0; i < n; i++) {
        if (!cch.sendToQueue(queue, body(i), opts, cb)) await once(cch, 'drain');
      }
      await cch.waitForConfirms();
    } else {
      for (let i = 0; i < n; i++) {
        if (!ch.sendToQueue(queue, body(i), opts)) await once(ch, 'drain');
      }
    }
    if (failure !== null) throw failure;
  }

  publishOne(queue: string, body: Buffer, persistent: boolean): void {
    try {
      this.ch.sendToQueue(queue, body, persistent ? { deliveryMode: 2 } : {});
    } catch (err) {
      this.record(err);
    }
  }

  async consume(
    queue: string,
    prefetch: number,
    onMessage: (m: Received) => void,
  ): Promise<{ cancel(): Promise<void> }> {
    const ch = this.ch;
    await ch.prefetch(prefetch);
    const ok = await ch.consume(
      queue,
      (msg) => {
        if (msg === null) return this.record(new Error('consumer cancelled by the broker'));
        onMessage({ body: msg.content, deliveryMode: msg.properties.deliveryMode as number | undefined });
        ch.ack(msg);
      },
      { noAck: false },
    );
    return {
      cancel: async () => {
        await ch.cancel(ok.consumerTag);
      },
    };
  }

  close(): Promise<void> {
    return this.ch.close();
  }
}

class AmqplibConn implements Conn {
  constructor(private readonly model: ChannelModel) {
    model.on('error', () => {
      /* reported through the channels; an unhandled 'error' event would throw */
    });
  }

  async channel(confirm: boolean): Promise<Chan> {
    return new AmqplibChan(
      confirm ? await this.model.createConfirmChannel() : await this.model.createChannel(),
      confirm,
    );
  }

  close(): Promise<void> {
    return this.model.close();
  }
}

export function amqplibContender(version: string): Contender {
  return {
    name: 'amqplib',
    label: `amqplib ${version}`,
    noDelayByDefault: false,
    async connect(spec: ConnectSpec): Promise<Conn> {
      // socketOptions.noDelay is amqplib's documented switch (it calls socket.setNoDelay(noDelay) on connect).
      const model = await amqplib.connect(
        `amqp://guest:guest@127.0.0.1:${spec.port}`,
        spec.noDelay ? { noDelay: true } : {},
      );
      return new AmqplibConn(model);
    },
  };
}
