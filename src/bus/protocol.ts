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

/** Whether the schema of `type` has the field `field`. */
export const has = (type: string, field: string): boolean =>
  Object.hasOwn((SCHEMAS as Record<string, { fields: object }>)[type]?.fields ?? {}, field);

/** `<msg>` or `<msg>.<heh_id>` (D3.2.3). */
export function routingKeyOf(message: Message): string {
  const h = (message as { heh_id?: unknown }).heh_id;
  return typeof h === 'string' && h !== '' ? `${message.msg}.${h}` : message.msg;
}

/** The `response` to `msgId`; `about`, the message answered, gives `ref_msg` and its `request_id`. */
export function response(
  msgId: string | null,
  code: number,
  desc: string,
  subcode: number | undefined,
  about: Message | undefined,
): Message<'response'> {
  const r: Record<string, unknown> = { msg: 'response', msg_id: msgId, response_code: code, response_desc: desc };
  if (subcode !== undefined) r['response_subcode'] = subcode;
  if (about !== undefined) {
    r['ref_msg'] = about.msg;
    const a = about as { request_id?: string; id?: string };
    if (a.request_id !== undefined) r['request_id'] = a.request_id;
  }
  return r as Message<'response'>;
}

/** The msg_id of a body the codec refused, if it can still be read: the sender deserves its error response. */
export function msgIdOf(body: Uint8Array): string | undefined {
  try {
    const v = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.length).toString('utf8')) as {
      msg?: unknown;
      msg_id?: unknown;
    };
    return v.msg !== 'response' && typeof v.msg_id === 'string' && /^[0-9a-fA-F-]{36}$/.test(v.msg_id)
      ? v.msg_id.toLowerCase()
      : undefined;
  } catch {
    return undefined;
  }
}
