/**
 * SASL mechanisms for connection.start-ok (spec §4.2.5; RabbitMQ https://www.rabbitmq.com/docs/access-control).
 *
 *   PLAIN     "\0" user "\0" password                      (RFC 4616)
 *   AMQPLAIN  a field table {LOGIN, PASSWORD} without its 4-byte length prefix (as RabbitMQ and amqplib send it)
 *   EXTERNAL  empty: the broker takes the identity from the TLS client certificate (rabbitmq_auth_mechanism_ssl)
 */
import { encodeTable } from './table.js';

export type Mechanism = 'PLAIN' | 'AMQPLAIN' | 'EXTERNAL';

export const MECHANISMS: readonly Mechanism[] = ['PLAIN', 'AMQPLAIN', 'EXTERNAL'];

export function saslResponse(mechanism: Mechanism, username: string, password: string): Buffer {
  switch (mechanism) {
    case 'PLAIN':
      return Buffer.concat([Buffer.from([0]), Buffer.from(username), Buffer.from([0]), Buffer.from(password)]);
    case 'AMQPLAIN':
      return encodeTable({ LOGIN: username, PASSWORD: password }).subarray(4);
    case 'EXTERNAL':
      return Buffer.alloc(0);
  }
}
