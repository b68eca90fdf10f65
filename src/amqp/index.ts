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
export { connect, Connection, CLIENT_VERSION, type ConnectionEvents } from './connection.js';
export {
  Channel,
  type Body,
  type BodyWriter,
  type ChannelEvents,
  type ConsumeOptions,
  type ExchangeOptions,
  type PublishOptions,
  type QueueDeclareOk,
  type QueueOptions,
} from './channel.js';
export { Consumer, Message, type MessageHandler } from './message.js';
export { parseUrl, type ConnectOptions } from './options.js';
export {
  RecoveringChannel,
  RecoveringConnection,
  RecoveringConsumer,
  type ChannelSetup,
  type Endpoint,
  type RecoveringChannelEvents,
  type RecoveryEvents,
  type RecoveryOptions,
} from './recovery.js';
export type { Mechanism } from './auth.js';
export type { DeliveredProperties, MessageProperties } from './properties.js';
export { Decimal, Field, field, type FieldTable, type FieldTag, type FieldValue } from './table.js';
export {
  AmqpError,
  AuthenticationError,
  ChannelError,
  ConnectionError,
  FrameError,
  PublishError,
  type CloseReason,
  type PublishFailure,
} from './errors.js';
export { EncodeError } from './wire.js';
