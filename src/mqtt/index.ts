/**
 * The bus over MQTT: `mqttBus({ name, peers, url: 'mqtt://127.0.0.1:1883' })` is a Connector over an MqttTransport,
 * and `busFor(options)` picks the transport from the URL's scheme (mqtt:, mqtts: here; amqp:, amqps: amqpBus).
 * A layer of its own above src/bus, so that nothing that imports only the bus (the AMQP hub, dist/hub.js) carries
 * MQTT.js.
 */
import {
  type AmqpBusOptions,
  type AmqpTransport,
  amqpBus,
  BusError,
  busOver,
  type Connector,
  type ConnectorOptions,
} from '../bus/index.js';
import { MqttTransport, type MqttTransportOptions } from './transport.js';

export { type BackoffOptions, backoffDelay } from './backoff.js';
export { checkPartyName, deadLetterTopic, inboxFilter, type ParsedTopic, parseTopic, topicOf } from './topics.js';
export { type MqttMessage, MqttTransport, type MqttTransportOptions, PubackError } from './transport.js';

/** A Connector over MQTT, from the transport's options and the bus's in one object. */
export interface MqttBusOptions extends MqttTransportOptions, Omit<ConnectorOptions<MqttTransport>, 'transport'> {}

export function mqttBus(options: MqttBusOptions): Connector<MqttTransport> {
  return busOver(options, (transport) => new MqttTransport(transport));
}

/** Whether `url` names an MQTT broker (mqtt:, mqtts:). */
export function isMqttUrl(url: string): boolean {
  return /^mqtts?:/i.test(url);
}

/**
 * The bus for a broker URL: over MQTT for mqtt: and mqtts:, over AMQP for amqp: and amqps:. The options are those of
 * the transport the scheme picks.
 */
export function busFor(options: MqttBusOptions & { url: string }): Connector<MqttTransport>;
export function busFor(options: AmqpBusOptions & { url: string }): Connector<AmqpTransport>;
export function busFor(
  options: (MqttBusOptions | AmqpBusOptions) & { url: string },
): Connector<MqttTransport> | Connector<AmqpTransport> {
  if (isMqttUrl(options.url)) return mqttBus(options as MqttBusOptions);
  if (/^amqps?:/i.test(options.url)) return amqpBus(options as AmqpBusOptions);
  throw new BusError(
    'CONFIG',
    `the broker URL must begin with mqtt:, mqtts:, amqp: or amqps: (got "${options.url.split(':')[0]}:")`,
  );
}
