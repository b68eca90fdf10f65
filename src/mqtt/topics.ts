/**
 * The MQTT topic scheme (docs/bus.md, "MQTT"). A message from `<from>` to `<to>` with the D3.2.3 routing key
 * `<msg>[.<heh_id>]` is published on
 *
 *   <msg>/<from>/<to>[/<heh_id>]
 *
 * and a party subscribes to `+/+/<me>/#`. The order is chosen for RabbitMQ's MQTT plugin (issue 16, the mixed
 * deployment), which publishes an MQTT message to `amq.topic` with the topic's `/` turned into `.`: the AMQP side
 * then sees the routing key `<msg>.<from>.<to>[.<heh_id>]`, whose first word is the message type, and an
 * exchange-to-exchange binding from `amq.topic` with `*.<from>.<to>.#` can feed the D3.2.3 exchange `<from>-to-<to>`,
 * which names the sender and the recipient as the AMQP topology does. For that mapping to hold, every level must be
 * one AMQP word and one MQTT level: the plugin turns a `.` in a topic into `/`, so a party name with a `.` would
 * split into two words there. Party names are therefore refused here, at configuration time, unless they are
 * letters, digits, `_` and `-` (at most 64, so that the longest key stays under AMQP's 255 bytes).
 *
 * Dead letters go to `dead-letter/<me>`: two levels, so no party's `+/+/<me>/#` ever matches it, and
 * `dead-letter.<me>` on amq.topic can be bound to the AMQP dead-letter exchange later.
 */
import { BusError } from '../bus/index.js';

/** A party name that is one MQTT topic level and one AMQP routing key word. */
const PARTY = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
/**
 * A routing key word: never empty, never an MQTT separator or wildcard, no control character (Mosquitto closes the
 * connection of a client whose topic holds one).
 */
const WORD = /^[^/+#.]+$/;
const CONTROL = /[\p{Cc}]/u;

export const DEAD_LETTER_LEVEL = 'dead-letter';

/** Throws BusError CONFIG with the sentence an operator needs when `name` cannot be a topic level. */
export function checkPartyName(name: string, role: string): void {
  if (PARTY.test(name)) return;
  let why: string;
  if (name === '') why = 'it is empty';
  else if (name.length > 64) why = `it has ${name.length} characters, more than 64`;
  else if (/[/+#]/.test(name))
    why = `"${/[/+#]/.exec(name)?.[0]}" is MQTT's level separator or a wildcard, so it cannot be in a topic level`;
  else if (name.includes('.'))
    why = `RabbitMQ's MQTT plugin turns "." into "/" between MQTT topics and AMQP routing keys, so it would split the name in two levels`;
  else if (/^[_-]/.test(name)) why = 'it must begin with a letter or a digit';
  else why = `"${/[^A-Za-z0-9_-]/.exec(name)?.[0] ?? name}" is not a letter, a digit, "_" or "-"`;
  throw new BusError(
    'CONFIG',
    `the ${role} name "${name}" cannot be an MQTT topic level: ${why}. Over MQTT, party names are 1 to 64 letters, digits, "_" and "-", beginning with a letter or a digit`,
  );
}

/** The topic a message to `to` with `routingKey` goes on. */
export function topicOf(from: string, to: string, routingKey: string): string {
  const [msg, ...rest] = routingKey.split('.');
  for (const w of [msg, ...rest]) {
    if (w === undefined || !WORD.test(w) || CONTROL.test(w))
      throw new BusError(
        'CONFIG',
        `the routing key "${routingKey}" cannot be an MQTT topic: each "."-separated word must be non-empty and hold no "/", "+", "#" or control character`,
      );
  }
  return [msg, from, to, ...rest].join('/');
}

/** The subscription that takes every message to `me`. */
export function inboxFilter(me: string): string {
  return `+/+/${me}/#`;
}

export function deadLetterTopic(me: string): string {
  return `${DEAD_LETTER_LEVEL}/${me}`;
}

export interface ParsedTopic {
  readonly type: string;
  readonly from: string;
  readonly to: string;
  /** `<msg>[.<heh_id>]`, as the sender's bus made it. */
  readonly routingKey: string;
}

/** The parts of a message topic; undefined for a topic outside the scheme (fewer than three levels). */
export function parseTopic(topic: string): ParsedTopic | undefined {
  const levels = topic.split('/');
  const [type, from, to, ...rest] = levels;
  if (type === undefined || from === undefined || to === undefined || type === '' || from === '') return undefined;
  return { type, from, to, routingKey: [type, ...rest].join('.') };
}
