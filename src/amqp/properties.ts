/**
 * The 14 basic content properties and the content header frame payload (spec §4.2.6.1):
 *
 *   0          2        4                    12               14
 *   +----------+--------+--------------------+----------------+---------------------+
 *   | class-id | weight |     body-size      | property-flags | property list ...   |
 *   |  (60)    |  (0)   |    (longlong)      |   (short)      | (only flagged ones) |
 *   +----------+--------+--------------------+----------------+---------------------+
 *
 * Flag bit 15 is content-type, down to bit 2 for cluster-id (the order of BASIC_PROPERTIES in spec.ts); bit 0 would
 * announce a further flags word, which basic never needs. Hand-written because it runs for every message.
 */
import { FrameError } from './errors.js';
import { type FieldTable, readTable, tableSize, writeTable } from './table.js';
import { ArgumentError, checkInt, describe, Reader, shortstrSize, writeShortstr, writeU64 } from './wire.js';

export interface MessageProperties {
  contentType?: string;
  contentEncoding?: string;
  headers?: FieldTable;
  /** 1 transient, 2 persistent (written to disk by durable queues). */
  deliveryMode?: number;
  priority?: number;
  correlationId?: string;
  replyTo?: string;
  /** Per-message TTL in milliseconds, as a decimal string (RabbitMQ's convention). */
  expiration?: string;
  messageId?: string;
  /** Seconds since 1970 on the wire; a Date is accepted and returned. */
  timestamp?: Date | number;
  type?: string;
  userId?: string;
  appId?: string;
  clusterId?: string;
}

/** The properties as decoded from a delivery: timestamp is always a Date. */
export interface DeliveredProperties extends MessageProperties {
  timestamp?: Date;
}

const F_CONTENT_TYPE = 0x8000;
const F_CONTENT_ENCODING = 0x4000;
const F_HEADERS = 0x2000;
const F_DELIVERY_MODE = 0x1000;
const F_PRIORITY = 0x0800;
const F_CORRELATION_ID = 0x0400;
const F_REPLY_TO = 0x0200;
const F_EXPIRATION = 0x0100;
const F_MESSAGE_ID = 0x0080;
const F_TIMESTAMP = 0x0040;
const F_TYPE = 0x0020;
const F_USER_ID = 0x0010;
const F_APP_ID = 0x0008;
const F_CLUSTER_ID = 0x0004;

/** Size of the property flags and list (not the 12 bytes before them). Validates every property. */
export function propertiesSize(p: MessageProperties | undefined): number {
  let n = 2;
  if (p === undefined) return n;
  if (p === null || typeof p !== 'object')
    throw new ArgumentError(`properties: expected an object, got ${describe(p)}`);
  if (p.contentType !== undefined) n += shortstrSize(p.contentType, 'contentType');
  if (p.contentEncoding !== undefined) n += shortstrSize(p.contentEncoding, 'contentEncoding');
  if (p.headers !== undefined) n += tableSize(p.headers, 'headers');
  // RabbitMQ closes the channel (406) for any delivery mode but 1 (transient) and 2 (persistent).
  if (p.deliveryMode !== undefined) {
    checkInt(p.deliveryMode, 1, 2, 'deliveryMode');
    n += 1;
  }
  if (p.priority !== undefined) {
    checkInt(p.priority, 0, 255, 'priority');
    n += 1;
  }
  if (p.correlationId !== undefined) n += shortstrSize(p.correlationId, 'correlationId');
  if (p.replyTo !== undefined) n += shortstrSize(p.replyTo, 'replyTo');
  if (p.expiration !== undefined) n += shortstrSize(p.expiration, 'expiration');
  if (p.messageId !== undefined) n += shortstrSize(p.messageId, 'messageId');
  if (p.timestamp !== undefined) {
    const t = p.timestamp;
    if (t instanceof Date ? Number.isNaN(t.getTime()) || t.getTime() < 0 : !Number.isSafeInteger(t) || t < 0) {
      throw new ArgumentError(`timestamp: expected a Date or seconds since 1970, got ${describe(t)}`);
    }
    n += 8;
  }
  if (p.type !== undefined) n += shortstrSize(p.type, 'type');
  if (p.userId !== undefined) n += shortstrSize(p.userId, 'userId');
  if (p.appId !== undefined) n += shortstrSize(p.appId, 'appId');
  if (p.clusterId !== undefined) n += shortstrSize(p.clusterId, 'clusterId');
  return n;
}

/** Writes flags and list (sized by propertiesSize). Returns the offset after them. */
export function writeProperties(buf: Buffer, off: number, p: MessageProperties | undefined): number {
  const flagsAt = off;
  off += 2;
  let flags = 0;
  if (p !== undefined) {
    if (p.contentType !== undefined) {
      flags |= F_CONTENT_TYPE;
      off = writeShortstr(buf, off, p.contentType);
    }
    if (p.contentEncoding !== undefined) {
      flags |= F_CONTENT_ENCODING;
      off = writeShortstr(buf, off, p.contentEncoding);
    }
    if (p.headers !== undefined) {
      flags |= F_HEADERS;
      off = writeTable(buf, off, p.headers);
    }
    if (p.deliveryMode !== undefined) {
      flags |= F_DELIVERY_MODE;
      buf[off++] = p.deliveryMode;
    }
    if (p.priority !== undefined) {
      flags |= F_PRIORITY;
      buf[off++] = p.priority;
    }
    if (p.correlationId !== undefined) {
      flags |= F_CORRELATION_ID;
      off = writeShortstr(buf, off, p.correlationId);
    }
    if (p.replyTo !== undefined) {
      flags |= F_REPLY_TO;
      off = writeShortstr(buf, off, p.replyTo);
    }
    if (p.expiration !== undefined) {
      flags |= F_EXPIRATION;
      off = writeShortstr(buf, off, p.expiration);
    }
    if (p.messageId !== undefined) {
      flags |= F_MESSAGE_ID;
      off = writeShortstr(buf, off, p.messageId);
    }
    if (p.timestamp !== undefined) {
      flags |= F_TIMESTAMP;
      const t = p.timestamp;
      off = writeU64(buf, off, t instanceof Date ? Math.floor(t.getTime() / 1000) : t);
    }
    if (p.type !== undefined) {
      flags |= F_TYPE;
      off = writeShortstr(buf, off, p.type);
    }
    if (p.userId !== undefined) {
      flags |= F_USER_ID;
      off = writeShortstr(buf, off, p.userId);
    }
    if (p.appId !== undefined) {
      flags |= F_APP_ID;
      off = writeShortstr(buf, off, p.appId);
    }
    if (p.clusterId !== undefined) {
      flags |= F_CLUSTER_ID;
      off = writeShortstr(buf, off, p.clusterId);
    }
  }
  buf.writeUInt16BE(flags, flagsAt);
  return off;
}

/** A decoded content header. */
export interface ContentHeader {
  classId: number;
  bodySize: number;
  properties: DeliveredProperties;
}

/** Decodes a content header frame payload. */
export function readContentHeader(payload: Buffer): ContentHeader {
  const r = new Reader(payload);
  const classId = r.u16('content class-id');
  r.u16('content weight');
  const bodySize = r.u64('body size');
  const flags = r.u16('property flags');
  if ((flags & 0x0003) !== 0) throw new FrameError(`property flags 0x${flags.toString(16)}: reserved bits set`, 502);
  const p: DeliveredProperties = {};
  if (flags !== 0) {
    if (flags & F_CONTENT_TYPE) p.contentType = r.shortstr('contentType');
    if (flags & F_CONTENT_ENCODING) p.contentEncoding = r.shortstr('contentEncoding');
    if (flags & F_HEADERS) p.headers = readTable(r);
    if (flags & F_DELIVERY_MODE) p.deliveryMode = r.u8('deliveryMode');
    if (flags & F_PRIORITY) p.priority = r.u8('priority');
    if (flags & F_CORRELATION_ID) p.correlationId = r.shortstr('correlationId');
    if (flags & F_REPLY_TO) p.replyTo = r.shortstr('replyTo');
    if (flags & F_EXPIRATION) p.expiration = r.shortstr('expiration');
    if (flags & F_MESSAGE_ID) p.messageId = r.shortstr('messageId');
    if (flags & F_TIMESTAMP) p.timestamp = new Date(r.u64Lossy('timestamp') * 1000);
    if (flags & F_TYPE) p.type = r.shortstr('type');
    if (flags & F_USER_ID) p.userId = r.shortstr('userId');
    if (flags & F_APP_ID) p.appId = r.shortstr('appId');
    if (flags & F_CLUSTER_ID) p.clusterId = r.shortstr('clusterId');
  }
  if (r.left !== 0) throw new FrameError(`content header: ${r.left} unexpected bytes after the properties`, 501);
  return { classId, bodySize, properties: p };
}
