/**
 * An AMQP party whose peers include MQTT parties on the same RabbitMQ (the mixed deployment of issue 16, through
 * `rabbitmq_mqtt`; docs/bus.md, "MQTT", and `ebadge provision` for the bindings). The D3.2.3 topology is unchanged:
 * we publish to `<me>-to-<peer>` and consume `private-<me>-in`, bound to `<peer>-to-<me>`. Two things differ for a
 * peer marked MQTT, because the plugin publishes every MQTT message to one exchange (`amq.topic`) with the topic's
 * `/` turned into `.`, and an MQTT party's subscription (`+/+/<me>/#`) is a binding of the plugin's queue to it:
 *
 * - To it, the routing key is `<msg>.<me>.<peer>[.<heh_id>]`, still on `<me>-to-<peer>`: provisioning binds that
 *   exchange to `amq.topic` with `*.<me>.<peer>.#`, so the message reaches the peer's subscription as the topic
 *   `<msg>/<me>/<peer>[/<heh_id>]`, whose levels name the type, the sender and the recipient. The binding's key is
 *   what makes the sender level true: only we may write `<me>-to-<peer>`, and only keys with our name pass it.
 * - From it, a delivery comes from `amq.topic` (RabbitMQ names the exchange a message was published to, not the
 *   exchange-to-exchange bindings it went through) with the key `<msg>.<peer>.<me>[.<heh_id>]`. It reached our
 *   inbox through `<peer>-to-<me>`, which provisioning binds from `amq.topic` with `*.<peer>.<me>.#` only, so the
 *   second word is that exchange's sender, and the broker's topic permission on `amq.topic` lets the MQTT party
 *   publish only keys whose second word is its own name. The Connector gets the peer as the sender and the D3.2.3
 *   key `<msg>[.<heh_id>]`; under MQTT 3.1.1 no property travels, so the type is the key's first word and the content
 *   type is told by the body's first byte (a HEH-E2E v1 envelope begins with 0x01), as the MQTT transport does.
 *
 * A delivery from `amq.topic` whose key does not name a peer marked MQTT and us has no sender: the Connector
 * dead-letters it UNKNOWN_SENDER, as any other.
 */
import { type AmqpBusOptions, AmqpTransport, type AmqpTransportOptions } from './amqp-transport.js';
import { busOver, type Connector } from './connector.js';
import { fail } from './errors.js';
import { CONTENT_TYPE_JSON, CONTENT_TYPE_SEALED } from './protocol.js';
import type { Outgoing, StartOptions } from './transport.js';

/** A delivery as the AMQP transport hands it over (its raw message names the exchange it was published to). */
type Delivery = Parameters<Parameters<AmqpTransport['start']>[0]>[0];

/** One MQTT topic level and one AMQP word: what src/mqtt/topics.ts accepts as a party name. */
const LEVEL = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

export interface MqttPeersOptions extends AmqpTransportOptions {
  /** The peers that are MQTT parties on this broker's MQTT plugin (each also in `peers`). */
  mqttPeers: readonly string[];
  /** The plugin's exchange (`mqtt.exchange`, default `amq.topic`). */
  mqttExchange?: string;
}

/** `<msg>.<from>.<to>[.<rest>]`: the AMQP form of the MQTT topic `<msg>/<from>/<to>[/<rest>]`. */
export function mqttRoutingKey(from: string, to: string, routingKey: string): string {
  const [type, ...rest] = routingKey.split('.');
  return [type, from, to, ...rest].join('.');
}

export class AmqpMqttPeersTransport extends AmqpTransport {
  readonly #mqtt: ReadonlySet<string>;
  readonly #exchange: string;

  constructor(options: MqttPeersOptions) {
    super(options);
    for (const p of options.mqttPeers) {
      if (!options.peers.includes(p)) fail('CONFIG', `the MQTT peer "${p}" is not one of the peers`);
      if (!LEVEL.test(p))
        fail(
          'CONFIG',
          `the MQTT peer name "${p}" cannot be an MQTT topic level (1 to 64 letters, digits, "_" and "-")`,
        );
    }
    if (options.mqttPeers.length > 0 && !LEVEL.test(options.name))
      fail(
        'CONFIG',
        `the entity name "${options.name}" cannot be an MQTT topic level, as its MQTT peers see it (1 to 64 letters, digits, "_" and "-")`,
      );
    this.#mqtt = new Set(options.mqttPeers);
    this.#exchange = options.mqttExchange ?? 'amq.topic';
  }

  override send(m: Outgoing): Promise<void> {
    return super.send(this.#mqtt.has(m.to) ? { ...m, routingKey: mqttRoutingKey(this.entity, m.to, m.routingKey) } : m);
  }

  override start(onMessage: (message: Delivery) => Promise<void>, options?: StartOptions): Promise<void> {
    return super.start((m) => onMessage(this.#fromMqtt(m)), options);
  }

  #fromMqtt(m: Delivery): Delivery {
    if (m.from !== undefined || m.raw.exchange !== this.#exchange) return m;
    const [type, from, to, ...rest] = m.routingKey.split('.');
    if (type === undefined || from === undefined || to !== this.entity || !this.#mqtt.has(from)) return m;
    return {
      ...m,
      from,
      routingKey: [type, ...rest].join('.'),
      type: m.type ?? type,
      contentType: m.contentType ?? (m.body[0] === 0x01 ? CONTENT_TYPE_SEALED : CONTENT_TYPE_JSON),
    };
  }
}

export interface AmqpMqttPeersBusOptions extends AmqpBusOptions, MqttPeersOptions {}

/** `amqpBus` for a party with MQTT peers: the same Connector over an AmqpMqttPeersTransport. */
export function amqpMqttPeersBus(options: AmqpMqttPeersBusOptions): Connector<AmqpMqttPeersTransport> {
  return busOver(options, (transport) => new AmqpMqttPeersTransport(transport));
}
