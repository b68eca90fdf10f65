/**
 * A counting TCP proxy on 127.0.0.1: every byte a client writes to the broker (and back) passes through it, so
 * "wire bytes" are measured the same way for every client, whatever it does with its socket.
 */
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';

export interface CountingProxy {
  readonly port: number;
  /** Bytes client -> broker so far. */
  readonly up: number;
  /** Bytes broker -> client so far. */
  readonly down: number;
  close(): Promise<void>;
}

export async function startProxy(targetPort: number): Promise<CountingProxy> {
  let up = 0;
  let down = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const broker = connect({ host: '127.0.0.1', port: targetPort });
    for (const s of [client, broker]) {
      s.setNoDelay(true); // the proxy must not add Nagle delays of its own
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        broker.destroy();
      });
    }
    client.on('data', (d: Buffer) => {
      up += d.length;
    });
    broker.on('data', (d: Buffer) => {
      down += d.length;
    });
    client.pipe(broker);
    broker.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    get up() {
      return up;
    },
    get down() {
      return down;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
