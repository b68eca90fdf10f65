/**
 * The eBADGE message bus: connectors with typed handlers, request/response, both topologies of the data model
 * §3.8, over a transport (AMQP now).
 */

export { AmqpTransport, type AmqpTransportOptions, type Topology } from './amqp-transport.js';
export {
  CONTENT_TYPE_JSON,
  CONTENT_TYPE_SEALED,
  Connector,
  type ConnectorEvents,
  type ConnectorOptions,
  DM_VERSION,
  type Handler,
  type HandlerContext,
  routingKeyOf,
  type TypedHandlerMethods,
} from './connector.js';
export { SeenIds } from './dedupe.js';
export { BusError, type BusErrorCode } from './errors.js';
export type { Incoming, Outgoing, OutgoingProperties, Transport } from './transport.js';
