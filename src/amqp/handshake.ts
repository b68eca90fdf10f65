/**
 * Opening a connection: the socket (TCP, or TLS with verification on), then the AMQP handshake. Connection drives
 * it; what is decided here (who we say we are, what we accept of the broker's offer) is kept free of state.
 *
 *   client                                   broker
 *   "AMQP" 0 0 9 1          ------------->
 *                           <-------------   connection.start   (version, mechanisms, server properties)
 *   connection.start-ok     ------------->   (client properties + capabilities, mechanism, SASL response)
 *                           <-------------   connection.tune    (channel_max, frame_max, heartbeat)
 *   connection.tune-ok      ------------->   (negotiated values)
 *   connection.open         ------------->   (vhost)
 *                           <-------------   connection.open-ok                        => state "open"
 *   ...
 *   connection.close        ------------->   (or the broker sends close: we answer close-ok)
 *                           <-------------   connection.close-ok                       => state "closed"
 */
import { isIP, connect as netConnect, type Socket } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { AuthenticationError, FrameError } from './errors.js';
import { FRAME_MIN_SIZE } from './frame.js';
import { MIN_HEARTBEAT, type ResolvedOptions } from './options.js';
import type { MethodArgs } from './spec.js';
import type { FieldTable } from './table.js';

export const CLIENT_VERSION = '0.2.0';

/** Bytes a plain TCP socket reads at once (libuv's own read size). */
const READ_BYTES = 65_536;

/**
 * Opens the socket; `connected` runs once it is ready for the protocol header (after the TLS handshake), `data` gets
 * each chunk read and says whether its memory may be read into again (no view of it was kept). A plain TCP socket
 * then reads into the same few buffers instead of a new one per read, which would wait for the garbage collector
 * (node:net's onread); node:tls has no such option, its chunks are new each time.
 */
export function openSocket(
  o: ResolvedOptions,
  connected: () => void,
  data: (chunk: Buffer) => boolean,
): Socket | TLSSocket {
  let socket: Socket | TLSSocket;
  if (o.tls !== undefined) {
    // Verification stays on unless the caller explicitly turned it off; SNI must be a name, never an IP address.
    socket = tlsConnect({
      host: o.hostname,
      port: o.port,
      ...o.tls,
      rejectUnauthorized: o.tls.rejectUnauthorized ?? true,
      ...(o.tls.servername === undefined && isIP(o.hostname) === 0 ? { servername: o.hostname } : {}),
    });
    socket.once('secureConnect', connected);
    socket.on('data', data);
  } else {
    const free: Buffer[] = [];
    socket = netConnect({
      host: o.hostname,
      port: o.port,
      onread: {
        buffer: () => free.pop() ?? Buffer.allocUnsafeSlow(READ_BYTES),
        callback: (n: number, buf: Uint8Array) => {
          if (data((buf as Buffer).subarray(0, n)) && free.length < 2) free.push(buf as Buffer);
          return true;
        },
      },
    });
    socket.once('connect', connected);
  }
  return socket;
}

/**
 * Checks connection.start: a broker speaking another version is a protocol error (thrown); one that does not offer
 * our SASL mechanism gives the AuthenticationError to end the connection with (else undefined).
 */
export function checkStart(a: MethodArgs['connection.start'], o: ResolvedOptions): AuthenticationError | undefined {
  if (a.versionMajor !== 0 || a.versionMinor !== 9) {
    throw new FrameError(`the broker speaks AMQP ${a.versionMajor}-${a.versionMinor}, not 0-9`, 505);
  }
  const offered = a.mechanisms.toString().split(' ');
  if (offered.includes(o.mechanism)) return undefined;
  return new AuthenticationError(
    'MECHANISM_UNAVAILABLE',
    `the broker does not offer SASL ${o.mechanism} (it offers ${offered.join(', ')})`,
  );
}

/** connection.start-ok's client properties: who we are, and every capability RabbitMQ asks clients to announce. */
export function clientProperties(o: ResolvedOptions): FieldTable {
  return {
    product: 'ebadge-hub-bus',
    version: CLIENT_VERSION,
    platform: `Node.js ${process.version}`,
    capabilities: {
      publisher_confirms: true,
      exchange_exchange_bindings: true,
      'basic.nack': true,
      consumer_cancel_notify: true,
      'connection.blocked': true,
      authentication_failure_close: true,
      per_consumer_qos: true,
    },
    ...(o.connectionName !== undefined ? { connection_name: o.connectionName } : {}),
    ...o.clientProperties,
  };
}

export interface Tuning {
  frameMax: number;
  channelMax: number;
  /** Seconds; 0: no heartbeats. */
  heartbeat: number;
}

/** What we answer to connection.tune. A frame_max below the spec's minimum is a protocol error (thrown). */
export function negotiate(a: MethodArgs['connection.tune'], o: ResolvedOptions): Tuning {
  // frame_max and channel_max: 0 means "no limit", otherwise the smaller wins.
  const frameMax = a.frameMax === 0 ? o.frameMax : Math.min(a.frameMax, o.frameMax);
  if (frameMax < FRAME_MIN_SIZE)
    throw new FrameError(`the broker tuned frame_max to ${a.frameMax}, below the minimum ${FRAME_MIN_SIZE}`, 503);
  const channelMax = a.channelMax === 0 ? o.channelMax : Math.min(a.channelMax, o.channelMax);
  // Heartbeat: 0 on one side takes the other's value; otherwise the smaller (as the official clients do), but never
  // below 5 s, even when the broker proposes less: a slow Pi would then be declared dead while it is only busy.
  const hb =
    a.heartbeat === 0 || o.heartbeat === 0 ? Math.max(a.heartbeat, o.heartbeat) : Math.min(a.heartbeat, o.heartbeat);
  return { frameMax, channelMax, heartbeat: hb === 0 ? 0 : Math.max(hb, MIN_HEARTBEAT) };
}
