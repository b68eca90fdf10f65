/**
 * The eBADGE message bus: connectors with typed handlers, request/response, both topologies of the data model
 * §3.8, over a transport (AMQP now).
 */
export {
  Connector,
  routingKeyOf,
  CONTENT_TYPE_JSON,
  CONTENT_TYPE_SEALED,
  DM_VERSION,
  type ConnectorEvents,
  type ConnectorOptions,
  type Handler,
  type HandlerContext,
  type TypedHandlerMethods,
} from './connector.js';
export { AmqpTransport, type AmqpTransportOptions, type Topology } from './amqp-transport.js';
export { BusError, type BusErrorCode } from './errors.js';
export type { Incoming, Outgoing, OutgoingProperties, Transport } from './transport.js';
export { SeenIds } from './dedupe.js';
