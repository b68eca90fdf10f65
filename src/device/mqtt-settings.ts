/**
 * The MQTT hub's bus settings from hub.json (src/bin/hub-mqtt.ts hands them to src/mqtt's mqttBus). Apart from
 * src/device/main.ts, which dist/hub.js shares: the AMQP hub never builds an MQTT bus.
 */
import type { BudgetOptions } from '../bus/index.js';
import type { Sealer } from '../crypto/index.js';
import type { HubConfig } from './config/index.js';
import { brokerSettings, budgetOf } from './main.js';

/** What the hub's config gives an MQTT bus; the factory lives above the hub, so that dist/hub.js has no MQTT.js. */
export interface MqttBusSettings {
  name: string;
  peers: string[];
  url: string;
  /** Absent with `broker.external`: the broker takes the identity from the client certificate. */
  username?: string;
  password?: string;
  /** For mqtts:, from `broker.tls` (the files' contents): the CA to verify the broker with, our certificate. */
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer; servername?: string };
  prefetch: number;
  /** MQTT keep-alive from `broker.heartbeatS`; absent (its 0, the broker's value under AMQP): the transport's 30 s. */
  keepaliveSeconds?: number;
  reconnectDelay: number;
  maxReconnectDelay: number;
  sealer?: Sealer;
  /** Each peer's budget (hub.json `budget`); absent: the Connector's default. */
  budget?: BudgetOptions | false;
}
/** The MQTT bus's settings from the config: the same credentials (a password only from its file) and delays. */
export function mqttSettings(c: HubConfig, sealer: Sealer | undefined): MqttBusSettings {
  const s = brokerSettings(c);
  // MQTT has no SASL: with broker.external the broker takes our name from the certificate (Mosquitto's
  // use_identity_as_username, RabbitMQ's mqtt.ssl_cert_login), and no username or password is sent.
  const login = c.broker.external
    ? {}
    : { username: s.username, password: typeof s.password === 'string' ? s.password : '' };
  return {
    name: c.name,
    peers: c.peers.map((p) => p.name),
    url: c.broker.url,
    ...login,
    ...(typeof s.tls === 'object' ? { tls: s.tls as NonNullable<MqttBusSettings['tls']> } : {}),
    prefetch: c.broker.prefetch,
    ...(c.broker.heartbeatS === 0 ? {} : { keepaliveSeconds: c.broker.heartbeatS }),
    reconnectDelay: Math.round(c.broker.reconnectDelayS * 1000),
    maxReconnectDelay: Math.round(c.broker.maxReconnectDelayS * 1000),
    ...(sealer === undefined ? {} : { sealer }),
    ...budgetOf(c),
  };
}
