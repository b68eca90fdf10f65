/**
 * The eBADGE conventions every connector applies whatever the transport (data model §3.5, §3.6, §3.8): content
 * types, the data model version header, routing keys, and the `response` a msg_id gets. Kept apart from the
 * Connector so that the receive pipeline, the request matcher and the Connector share one definition.
 */
import { type Message, SCHEMAS } from '../codec/index.js';

export const CONTENT_TYPE_JSON = 'application/json';
export const CONTENT_TYPE_SEALED = 'application/vnd.ebadge.heh-e2e';
/** The data model version we speak (§3.7): 3.1, this project's catalogue; a peer without the header is 3.0. */
export const DM_VERSION = '3.1';
/** The header that carries DM_VERSION. */
export const DM_HEADER = 'x-ebadge-dm';

/**
 * The read requests (data model §3.3 and §3.4), each answered by a functional reply: the requests a sender may retry
 * unchanged (budget.ts) and those a request() waits on for their reply (requests.ts) both start from them.
 */
export const READ_REQUESTS = [
  'get_report',
  'get_periodic_report',
  'get_energy_events',
  'get_activation_capacity',
  'get_all_prices',
  'get_status_report',
  'get_capabilities',
];

/** Whether the schema of `type` has the field `field`. */
export const has = (type: string, field: string): boolean =>
  Object.hasOwn((SCHEMAS as Record<string, { fields: object }>)[type]?.fields ?? {}, field);

/** `<msg>` or `<msg>.<heh_id>` (D3.2.3); over AMQP the transport names the sender second when there is no heh_id. */
export function routingKeyOf(message: Message): string {
  const h = (message as { heh_id?: unknown }).heh_id;
  return typeof h === 'string' && h !== '' ? `${message.msg}.${h}` : message.msg;
}

/**
 * The `response` to `msgId`; `about`, the message answered, gives `ref_msg` and its `request_id`, and with no msg_id
 * (msgId null, §3.5 rule 3) its `id` too, so that the sender can tell which request or activation was refused.
 */
export function response(
  msgId: string | null,
  code: number,
  desc: string,
  subcode: number | undefined,
  about: Identity | Message | undefined,
): Message<'response'> {
  const r: Record<string, unknown> = { msg: 'response', msg_id: msgId, response_code: code, response_desc: desc };
  if (subcode !== undefined) r['response_subcode'] = subcode;
  if (about !== undefined) {
    const a = about as { msg: string; request_id?: unknown; id?: unknown };
    if (NAME.test(a.msg)) r['ref_msg'] = a.msg;
    if (typeof a.request_id === 'string' && UUID.test(a.request_id)) r['request_id'] = a.request_id;
    if (msgId === null && typeof a.id === 'string' && UUID.test(a.id)) r['id'] = a.id;
  }
  return r as Message<'response'>;
}

const NAME = /^[A-Za-z][A-Za-z0-9_]{0,254}$/;
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/**
 * What identifies a message to its sender (§3.5): its type and the ids a `response` can carry back. A refusal is
 * answered only when one of the ids is known: a `response` nobody can match is noise, and one with msg_id null and no
 * echo would answer every anonymous message.
 */
export interface Identity {
  readonly msg: string;
  readonly msg_id?: string;
  readonly request_id?: string;
  readonly id?: string;
}

/**
 * The identity of a decoded message, when it can be answered: never a `response` (its msg_id names the message it
 * answers; answering it could loop), and only with a msg_id, a request_id or an id.
 */
export function identityOf(message: Message): Identity | undefined {
  const x = message as { msg_id?: unknown; request_id?: unknown; id?: unknown };
  return answerable(message.msg, x.msg_id, x.request_id, x.id);
}

function answerable(msg: unknown, msgId: unknown, requestId: unknown, id: unknown): Identity | undefined {
  if (typeof msg !== 'string' || msg === 'response') return undefined;
  const uuid = (v: unknown): string | undefined =>
    typeof v === 'string' && UUID.test(v) ? v.toLowerCase() : undefined;
  const ids = { msg_id: uuid(msgId), request_id: uuid(requestId), id: uuid(id) };
  if (ids.msg_id === undefined && ids.request_id === undefined && ids.id === undefined) return undefined;
  return {
    msg,
    ...(ids.msg_id === undefined ? {} : { msg_id: ids.msg_id }),
    ...(ids.request_id === undefined ? {} : { request_id: ids.request_id }),
    ...(ids.id === undefined ? {} : { id: ids.id }),
  };
}

/** The first word of a routing key, `<msg>` of the data model's `<msg>.<heh_id or sender>` (§3.8). */
export function typeOfRoutingKey(routingKey: string): string {
  const dot = routingKey.indexOf('.');
  return dot < 0 ? routingKey : routingKey.slice(0, dot);
}

/**
 * How far into a refused body its msg_id is looked for. Our writer puts `msg` and `msg_id` first, and so do the
 * peers we know; a body refused for its size or its shape must not be read, or parsed, whole a second time.
 */
export const MSG_ID_PREFIX = 4096;

/**
 * The identity of a body the codec refused, if it can still be read from its first MSG_ID_PREFIX bytes: the sender
 * deserves its error response (§3.5 rule 3). Only top-level `msg`, `msg_id`, `request_id` and `id` count (see
 * identityOf): a byte scan, never a second parse.
 */
export function identify(body: Uint8Array): Identity | undefined {
  const found = scanIds(body);
  return answerable(found['msg'], found['msg_id'], found['request_id'], found['id']);
}

/**
 * The top-level `msg`, `msg_id`, `request_id` and `id` strings of a refused body, as identify() reads them, of any
 * type (a `response` too): what tells which of our requests a refused reply was meant for.
 */
export function scanIds(body: Uint8Array): Record<string, string | undefined> {
  const n = Math.min(body.length, MSG_ID_PREFIX);
  const text = (from: number, to: number): string =>
    Buffer.from(body.buffer, body.byteOffset, body.length).toString('latin1', from, to);
  let depth = 0;
  let key: string | undefined; // the top-level key whose value comes next
  const found: Record<string, string | undefined> = {};
  for (let i = 0; i < n; ) {
    const c = body[i] as number;
    if (c !== 0x22) {
      if (c === 0x7b || c === 0x5b) depth++;
      else if (c === 0x7d || c === 0x5d) depth--;
      else if (c === 0x2c && depth === 1) key = undefined;
      i++;
      continue;
    }
    let end = i + 1;
    let escaped = false;
    while (end < n && body[end] !== 0x22) {
      if (body[end] === 0x5c) {
        escaped = true;
        end++;
      }
      end++;
    }
    if (end >= n) break; // cut off by the prefix
    if (depth === 1) {
      // Escaped strings are never a type, an id or one of their keys as any writer emits them: skipped.
      const s = escaped ? undefined : text(i + 1, end);
      let next = end + 1;
      while (next < n && (body[next] === 0x20 || body[next] === 0x0a || body[next] === 0x0d || body[next] === 0x09))
        next++;
      if (body[next] === 0x3a) {
        key = s;
        i = next + 1;
        continue;
      }
      if (key === 'msg' || key === 'msg_id' || key === 'request_id' || key === 'id') found[key] = s;
      key = undefined;
    }
    i = end + 1;
  }
  return found;
}

/** The msg_id of a refused body, as identify() reads it. */
export function msgIdOf(body: Uint8Array): string | undefined {
  return identify(body)?.msg_id;
}

/**
 * The correlation_id of an answer: the message id property of what it answers, else (a peer that sets none) the
 * msg_id or request_id it answers, as data model §3.8 has it.
 */
export function correlatedTo(
  messageId: string | undefined,
  answered: { msg_id?: unknown; request_id?: unknown },
): { correlationId?: string } {
  const id = messageId ?? answered.msg_id ?? answered.request_id;
  return typeof id === 'string' ? { correlationId: id } : {};
}
