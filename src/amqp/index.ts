/**
 * A small AMQP 0-9-1 client for RabbitMQ, with no dependencies: hand-rolled framing, publisher confirms that always
 * settle, manual acks by default, bounded buffers, heartbeats, TLS and PLAIN / AMQPLAIN / EXTERNAL authentication.
 *
 *   const conn = await connect('amqp://guest:guest@127.0.0.1:5672');
 *   const ch = await conn.createConfirmChannel();
 *   await ch.queueDeclare('jobs', { durable: true });
 *   await ch.basicPublish('', 'jobs', Buffer.from('hello'), { deliveryMode: 2 });
 *   await ch.basicConsume('jobs', (msg) => { console.log(msg.text()); msg.ack(); }, { prefetch: 10 });
 */

export type { Mechanism } from './auth.js';
export {
  Channel,
  type ChannelEvents,
  type ConsumeOptions,
  type ExchangeOptions,
  type QueueDeclareOk,
  type QueueOptions,
} from './channel.js';
export { Connection, type ConnectionEvents, connect } from './connection.js';
export {
  AmqpError,
  AuthenticationError,
  ChannelError,
  type CloseReason,
  ConnectionError,
  FrameError,
  PublishError,
  type PublishFailure,
} from './errors.js';
export { CLIENT_VERSION } from './handshake.js';
export { Consumer, Message, type MessageHandler } from './message.js';
export { type ConnectOptions, parseUrl } from './options.js';
export type { DeliveredProperties, MessageProperties } from './properties.js';
export type { Body, BodyWriter, PublishOptions } from './publisher.js';
export {
  type ChannelSetup,
  RecoveringChannel,
  type RecoveringChannelEvents,
  RecoveringConsumer,
} from './recovering-channel.js';
export { type Endpoint, RecoveringConnection, type RecoveryEvents, type RecoveryOptions } from './recovery.js';
export { Decimal, Field, type FieldTable, type FieldTag, type FieldValue, field } from './table.js';
export { ArgumentError } from './wire.js';
