/**
 * Mutated eBADGE deliveries for the fuzz campaign against the real hub (test/integration/hub-fuzz.test.ts, issue 15
 * item 8). Each case starts from a valid message of a random type (codec-messages.ts) and is mutated in one of
 * several ways: its JSON structure, a field's type, its bytes, its size, its routing key, its AMQP properties, or, for
 * the sealed peer, its envelope. Everything is drawn from one seeded Random, ids included, so a seed names the
 * campaign: the same seed gives the same cases in the same order, byte for byte (but the AMQP timestamp; a sealed
 * body's bytes still differ run to run: keys and nonces are fresh).
 *
 * What the hub must do with a case is not predicted here beyond what the codec and the bus's rules say of its body
 * (`codec`): whether the codec accepts it, its type, and the msg_id a `response` must carry (the decoded msg_id of an
 * accepted request, msgIdOf's of a refused body).
 */
import { randomUUID } from 'node:crypto';
import type { MessageProperties } from '../../src/amqp/index.js';
import { CONTENT_TYPE_JSON, CONTENT_TYPE_SEALED, DM_HEADER, DM_VERSION, msgIdOf } from '../../src/bus/protocol.js';
import { DecodeError, decode, type MessageType, SCHEMAS } from '../../src/codec/index.js';
import { generate } from './codec-messages.js';
import type { Random } from './random.js';

export const TYPES = Object.keys(SCHEMAS) as MessageType[];

/** How a case was made: one of these, recorded per case for the campaign's tally. */
export const MUTATIONS = [
  'valid',
  'structure',
  'type',
  'bytes',
  'size',
  'routing-key',
  'properties',
  'envelope',
  'clear-from-sealed-peer',
  'sealed-via-other-peer',
  'replay',
] as const;
export type Mutation = (typeof MUTATIONS)[number];

/** One delivery to publish, before sealing: `seal` says whether (and as which type) the sealed peer seals `body`. */
export interface FuzzCase {
  mutation: Mutation;
  /** Which of the two peers publishes it: the one with keys (`sealed`) or the clear-text one. */
  peer: 'sealed' | 'clear';
  /** Seal the body with the sealed peer's key as this type before publishing (undefined: publish as it is). */
  seal: string | undefined;
  /** Flip or cut the envelope after sealing: [offset (negative from the end), xor] or the length to keep. */
  envelope?: { flip?: [number, number]; keep?: number };
  routingKey: string;
  properties: MessageProperties;
  body: Buffer;
  /** What our codec says of the body (for a sealed case: of the payload inside the envelope). */
  codec: Verdict;
  /** The bytes published (sealed, mutated envelope), set by the publisher: what a replay sends again. */
  wire?: Buffer;
}

const WEIGHTS: [Mutation, number][] = [
  ['valid', 10],
  ['structure', 14],
  ['type', 14],
  ['bytes', 14],
  ['size', 4],
  ['routing-key', 10],
  ['properties', 10],
  ['envelope', 8],
  ['clear-from-sealed-peer', 4],
  ['sealed-via-other-peer', 4],
  ['replay', 4],
];
const TOTAL = WEIGHTS.reduce((a, [, w]) => a + w, 0);

function pickMutation(r: Random): Mutation {
  let x = r.int(TOTAL);
  for (const [m, w] of WEIGHTS) {
    if (x < w) return m;
    x -= w;
  }
  return 'valid';
}

/** A version 4 UUID drawn from `r`, so that a seed gives the same ids (and bodies) every run. */
export function seededUuid(r: Random): string {
  const hex = [r.u32(), r.u32(), r.u32(), r.u32()].map((x) => x.toString(16).padStart(8, '0')).join('');
  const variant = '89ab'[Number.parseInt(hex[16] as string, 16) & 3] as string;
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20)}`;
}

/** The properties our own bus sets on a message of `type`. */
export function busProperties(
  type: string,
  sealed: boolean,
  from: string,
  id: string = randomUUID(),
): MessageProperties {
  return {
    contentType: sealed ? CONTENT_TYPE_SEALED : CONTENT_TYPE_JSON,
    messageId: id,
    type,
    timestamp: new Date(),
    appId: from,
    deliveryMode: 2,
    headers: { [DM_HEADER]: DM_VERSION },
  };
}

/** A valid message of a random type, with a fresh msg_id when its type has one. */
export function validMessage(r: Random, type: MessageType = r.pick(TYPES)): Record<string, unknown> {
  const m = generate(type, r);
  if (Object.hasOwn(SCHEMAS[type].fields, 'msg_id') && type !== 'response') m['msg_id'] = seededUuid(r);
  return m;
}

const WRONG_VALUES: unknown[] = [
  null,
  true,
  0,
  -1,
  1.5,
  2 ** 60,
  -0,
  1e308,
  '',
  'x',
  '2015-13-45T99:99:99Z',
  [],
  [[[]]],
  {},
  { nested: { deeper: [1, 2, 3] } },
  'é€🐇',
  '\u0000',
];

function mutateStructure(m: Record<string, unknown>, r: Random): string {
  const keys = Object.keys(m);
  switch (r.int(9)) {
    case 0: {
      const k = r.pick(keys);
      delete m[k];
      return JSON.stringify(m);
    }
    case 1:
      m[`unknown_${r.int(100)}`] = r.pick(WRONG_VALUES);
      return JSON.stringify(m);
    case 2: {
      // A key written twice: the second value differs.
      const k = r.pick(keys);
      const json = JSON.stringify(m);
      return `${json.slice(0, -1)},${JSON.stringify(k)}:${JSON.stringify(r.pick(WRONG_VALUES))}}`;
    }
    case 3:
      return JSON.stringify([m]);
    case 4:
      return JSON.stringify(r.pick([null, 42, 'get_report', true, [], {}]));
    case 5: {
      // Deep nesting inside a field, well past any sane depth.
      const depth = r.pick([10, 64, 65, 200, 5000]);
      const k = r.pick(keys);
      const json = JSON.stringify(m);
      return `${json.slice(0, -1)},${JSON.stringify(`${k}_deep`)}:${'['.repeat(depth)}${']'.repeat(depth)}}`;
    }
    case 6:
      m['msg'] = r.pick([...TYPES, 'unknown_type', '', 'RESPONSE', 'get_report ', null, 7]);
      return JSON.stringify(m);
    case 7:
      m['msg_id'] = r.pick([null, '', 'not-a-uuid', 42, seededUuid(r).toUpperCase(), `${seededUuid(r)}x`]);
      return JSON.stringify(m);
    default: {
      // Many members: the value-count bound.
      const n = r.pick([100, 1000, 60_000]);
      const extra = Array.from({ length: n }, (_, i) => `"k${i}":${i}`).join(',');
      return `${JSON.stringify(m).slice(0, -1)},"ext":{${extra}}}`;
    }
  }
}

function mutateType(m: Record<string, unknown>, r: Random): string {
  const keys = Object.keys(m).filter((k) => k !== 'msg');
  if (keys.length === 0) return JSON.stringify({ ...m, msg_id: r.pick(WRONG_VALUES) });
  const k = r.pick(keys);
  const v = m[k];
  if (Array.isArray(v) && v.length > 0 && r.bool()) v[r.int(v.length)] = r.pick(WRONG_VALUES);
  else m[k] = r.pick(WRONG_VALUES);
  return JSON.stringify(m);
}

const BAD_UTF8: number[][] = [[0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0x80]];

function mutateBytes(json: string, r: Random): Buffer {
  const b = Buffer.from(json);
  switch (r.int(6)) {
    case 0: {
      for (let i = 0, n = 1 + r.int(4); i < n; i++) {
        const at = r.int(b.length);
        b[at] = (b[at] as number) ^ (1 << r.int(8));
      }
      return b;
    }
    case 1:
      return b.subarray(0, r.int(b.length));
    case 2: {
      // Invalid UTF-8 inside a string value, where a lenient decoder would silently replace it.
      const at = json.lastIndexOf('"', json.length - 2);
      const cut = at > 0 ? Buffer.byteLength(json.slice(0, at)) : r.int(b.length);
      return Buffer.concat([b.subarray(0, cut), Buffer.from(r.pick(BAD_UTF8)), b.subarray(cut)]);
    }
    case 3:
      return Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), b]);
    case 4:
      return r.bytes(r.int(300));
    default: {
      const at = r.int(b.length + 1);
      return Buffer.concat([b.subarray(0, at), Buffer.from(r.pick(['\u0000', '}', '{', '"', ',', '\\', ' ']))]);
    }
  }
}

const MB = 1024 * 1024;

/** Sizes around the limit (1 MiB body, 1 MiB + 140 B envelope) and the trivial ones. */
function mutateSize(m: Record<string, unknown>, r: Random): Buffer {
  const json = JSON.stringify(m);
  const target = r.pick([0, 1, 2, 4095, 4096, 4097, 100_000, MB - 1, MB, MB + 1, MB + 140, MB + 141, 1_500_000]);
  if (target <= 2) return Buffer.from(['', '{', '{}'][target] as string);
  if (target <= json.length + 12) return Buffer.from(json.slice(0, target));
  // Padding inside an unknown string member keeps it valid JSON of exactly `target` bytes.
  const head = `${json.slice(0, -1)},"pad":"`;
  const b = Buffer.alloc(target, 0x61);
  b.write(head);
  b.write('"}', target - 2);
  return b;
}

const ROUTING_KEYS = ['', '#', '*', 'report', 'load_price', 'activate', 'response', 'report.heh-x', 'a.b.c.d.e'];

function wrongRoutingKey(type: string, r: Random): string {
  switch (r.int(4)) {
    case 0:
      return r.pick(ROUTING_KEYS);
    case 1:
      return r.pick(TYPES.filter((t) => t !== type));
    case 2:
      return `${type}.${r.pick(['heh-other', '', 'x'.repeat(200)])}`;
    default:
      return `${type}x`;
  }
}

function mutateProperties(p: MessageProperties, r: Random): MessageProperties {
  const q: MessageProperties = { ...p, headers: { ...(p.headers ?? {}) } };
  const headers = q.headers as Record<string, unknown>;
  switch (r.int(10)) {
    case 0:
      q.contentType = r.pick(['text/plain', '', 'application/json; charset=latin1', CONTENT_TYPE_SEALED]);
      break;
    case 1:
      delete q.contentType;
      break;
    case 2:
      q.type = r.pick([...TYPES, '', 'x'.repeat(255)]);
      break;
    case 3:
      headers[DM_HEADER] = r.pick(['2.0', '3.9', '4.0', '', 'x']);
      break;
    case 4:
      delete headers[DM_HEADER];
      break;
    case 5:
      q.appId = r.pick(['', 'heh-someone-else', 'x'.repeat(255)]);
      break;
    case 6:
      q.correlationId = r.pick([seededUuid(r), '', 'x'.repeat(255)]);
      break;
    case 7:
      q.timestamp = r.pick([0, 2 ** 40, 1]);
      break;
    case 8:
      q.deliveryMode = 1;
      q.priority = r.int(256);
      break;
    default:
      q.replyTo = 'private-someone-else-in';
      headers['x-ebadge-error'] = 'forged';
      headers['x-death'] = 'forged';
      break;
  }
  return q;
}

/** Whether the codec accepts a body, its type if so, and the msg_id its `response` must carry, if any. */
export interface Verdict {
  accepted: boolean;
  type: string | undefined;
  answerId: string | undefined;
}

export function verdict(body: Buffer): Verdict {
  try {
    const { message } = decode(body);
    const id = (message as { msg_id?: unknown }).msg_id;
    return {
      accepted: true,
      type: message.msg,
      answerId: message.msg !== 'response' && typeof id === 'string' ? id : undefined,
    };
  } catch (err) {
    if (err instanceof DecodeError) return { accepted: false, type: undefined, answerId: msgIdOf(body) };
    throw err;
  }
}

/**
 * The next case. `names` are the two peers' entity names; `previous` is an earlier case that was published (a
 * replay sends its bytes again, under its message id or a new one).
 */
export function nextCase(
  r: Random,
  names: { sealed: string; clear: string },
  previous: FuzzCase | undefined,
): FuzzCase {
  let mutation = pickMutation(r);
  if (mutation === 'replay' && previous === undefined) mutation = 'valid';
  if (mutation === 'replay' && previous !== undefined) {
    return {
      ...previous,
      mutation,
      properties: {
        ...previous.properties,
        messageId: r.bool() ? (previous.properties.messageId as string) : seededUuid(r),
      },
    };
  }
  const type = r.pick(TYPES);
  const m = validMessage(r, type);
  // Sealed-via-other-peer: sealed with the sealed peer's key, published through the clear peer's exchange.
  let peer: 'sealed' | 'clear' = r.bool(0.3) ? 'sealed' : 'clear';
  if (mutation === 'envelope' || mutation === 'clear-from-sealed-peer') peer = 'sealed';
  if (mutation === 'sealed-via-other-peer') peer = 'clear';
  let body: Buffer;
  switch (mutation) {
    case 'structure':
      body = Buffer.from(mutateStructure(m, r));
      break;
    case 'type':
      body = Buffer.from(mutateType(m, r));
      break;
    case 'bytes':
      body = mutateBytes(JSON.stringify(m), r);
      break;
    case 'size':
      body = mutateSize(m, r);
      break;
    default:
      body = Buffer.from(JSON.stringify(m));
  }
  const wantsSeal =
    mutation === 'sealed-via-other-peer' || (peer === 'sealed' && mutation !== 'clear-from-sealed-peer');
  let seal: string | undefined;
  if (wantsSeal) seal = mutation === 'envelope' && r.bool(0.3) ? r.pick(TYPES) : type;
  const c: FuzzCase = {
    mutation,
    peer,
    seal,
    routingKey: mutation === 'routing-key' ? wrongRoutingKey(type, r) : type,
    properties: busProperties(type, seal !== undefined, names[peer], seededUuid(r)),
    body,
    codec: verdict(body),
  };
  if (mutation === 'envelope' && seal === type)
    c.envelope = r.bool()
      ? { flip: [-1 - r.int(body.length + 140), 1 << r.int(8)] }
      : { keep: r.int(body.length + 140) };
  if (mutation === 'properties') c.properties = mutateProperties(c.properties, r);
  return c;
}
