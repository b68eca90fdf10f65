/**
 * The eBADGE message bus: connectors with typed handlers, request/response, both topologies of the data model
 * §3.8, over a transport: AMQP (amqpBus), or in memory for tests (MemoryNetwork, MemoryTransport.pair).
 */

export { type Clock, ManualClock, settle, systemClock, type Timer } from '../core/clock.js';
export { shardOf } from '../core/shard.js';
export {
  type AmqpBusOptions,
  type AmqpConnectOptions,
  AmqpTransport,
  type AmqpTransportOptions,
  amqpBus,
  type Topology,
} from './amqp-transport.js';
export { type Bucket, type BudgetOptions, DEFAULT_BUDGET, SenderBudget } from './budget.js';
export { type BusOptions, busOver, Connector, type ConnectorOptions } from './connector.js';
export { SeenIds } from './dedupe.js';
export { BusError, type BusErrorCode } from './errors.js';
export type { ConnectorEvents, Handler, HandlerContext, TypedHandlerMethods } from './handler.js';
export {
  type DeadLetter,
  type InjectedMessage,
  type MemoryMessage,
  MemoryNetwork,
  MemoryTransport,
  MemoryTransportError,
  type MemoryTransportOptions,
  type Outcome,
  type SentMessage,
  type Settlement,
} from './memory-transport.js';
export {
  type AmqpMqttPeersBusOptions,
  AmqpMqttPeersTransport,
  amqpMqttPeersBus,
  type MqttPeersOptions,
  mqttRoutingKey,
} from './mqtt-peers.js';
export { CONTENT_TYPE_JSON, CONTENT_TYPE_SEALED, DM_VERSION, routingKeyOf } from './protocol.js';
export type { ReplyType } from './requests.js';
export type {
  ConnectionFailure,
  Incoming,
  Loopback,
  Outgoing,
  OutgoingProperties,
  RawOf,
  StartOptions,
  Transport,
  TransportCapabilities,
  TransportEvents,
} from './transport.js';
export { type BodyWriter, bodyBytes } from './transport.js';
