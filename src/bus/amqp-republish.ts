/**
 * What a message we publish again (a dead letter, a hand-over to another instance) carries of the sender's
 * properties. The sender's client set them, and some the broker would refuse from us or act on: `user_id` must be
 * the publisher's own login (a copy closes our channel, 406, and the buffered publish closed it again on every
 * reopening), an `expiration` would expire the dead letter unread, and a string or a time the sender's client could
 * encode but we cannot (a short string over 255 bytes once its invalid UTF-8 was decoded, a timestamp no Date holds)
 * would fail the publish. Those travel in `x-ebadge-*` headers instead; what remains is sent as it came.
 */
import { ArgumentError, type DeliveredProperties, type FieldTable, type MessageProperties } from '../amqp/index.js';

const SHORT_STRINGS = [
  'contentType',
  'contentEncoding',
  'correlationId',
  'replyTo',
  'messageId',
  'type',
  'appId',
  'clusterId',
] as const;

/** The properties to publish `p` again with, `headers` (ours added to the sender's) in place of its own. */
export function republished(p: DeliveredProperties, headers: FieldTable): MessageProperties {
  const h: Record<string, unknown> = { ...headers };
  const out: MessageProperties = { deliveryMode: 2 };
  for (const name of SHORT_STRINGS) {
    const v = p[name];
    if (v === undefined) continue;
    if (Buffer.byteLength(v) <= 255) out[name] = v;
    else h[`x-ebadge-${name}`] = v;
  }
  if (p.priority !== undefined) out.priority = p.priority;
  if (p.userId !== undefined) h['x-ebadge-user-id'] = p.userId;
  if (p.expiration !== undefined) h['x-ebadge-expiration'] = p.expiration;
  out.timestamp = p.timestamp !== undefined && Number.isFinite(p.timestamp.getTime()) ? p.timestamp : new Date();
  out.headers = h as FieldTable;
  return out;
}

/** A routing key we can publish with: one over 255 bytes (invalid UTF-8 decoded) is replaced by '' and kept in a header. */
export function routingKeyFor(routingKey: string, headers: Record<string, unknown>): string {
  if (Buffer.byteLength(routingKey) <= 255) return routingKey;
  headers['x-ebadge-routing-key'] = routingKey;
  return '';
}

/**
 * Publishes with the sender's headers, and when they cannot be encoded again (a field-table value our encoder
 * refuses, or properties that no longer fit in one frame once ours are added) with ours alone, the reason in
 * `x-ebadge-headers-dropped`. Only an ArgumentError (refused before anything was written) is tried again.
 */
export async function publishWithHeaders(
  publish: (properties: MessageProperties) => Promise<unknown>,
  p: DeliveredProperties,
  ours: Record<string, unknown>,
): Promise<void> {
  try {
    await publish(republished(p, { ...(p.headers ?? {}), ...ours } as FieldTable));
  } catch (err) {
    if (!(err instanceof ArgumentError)) throw err;
    await publish(republished(p, { ...ours, 'x-ebadge-headers-dropped': err.message.slice(0, 200) } as FieldTable));
  }
}
