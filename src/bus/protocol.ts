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

/**
 * How far into a refused body its msg_id is looked for. Our writer puts `msg` and `msg_id` first, and so do the
 * peers we know; a body refused for its size or its shape must not be read, or parsed, whole a second time.
 */
export const MSG_ID_PREFIX = 4096;

/**
 * The msg_id of a body the codec refused, if it can still be read from its first MSG_ID_PREFIX bytes: the sender
 * deserves its error response. Only the top-level `msg_id` counts, and only when a top-level `msg` other than
 * `response` was seen too (a response's msg_id names the message it answers; answering it could loop).
 */
export function msgIdOf(body: Uint8Array): string | undefined {
  const n = Math.min(body.length, MSG_ID_PREFIX);
  const text = (from: number, to: number): string =>
    Buffer.from(body.buffer, body.byteOffset, body.length).toString('latin1', from, to);
  let depth = 0;
  let key: string | undefined; // the top-level key whose value comes next
  let msg: string | undefined;
  let id: string | undefined;
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
      // Escaped strings are never a msg, a msg_id or one of their keys as any writer emits them: skipped.
      const s = escaped ? undefined : text(i + 1, end);
      let next = end + 1;
      while (next < n && (body[next] === 0x20 || body[next] === 0x0a || body[next] === 0x0d || body[next] === 0x09))
        next++;
      if (body[next] === 0x3a) {
        key = s;
        i = next + 1;
        continue;
      }
      if (key === 'msg') msg = s;
      else if (key === 'msg_id') id = s;
      key = undefined;
    }
    i = end + 1;
  }
  return msg !== undefined && msg !== 'response' && id !== undefined && /^[0-9a-fA-F-]{36}$/.test(id)
    ? id.toLowerCase()
    : undefined;
}
