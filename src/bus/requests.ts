/**
 * request() / reply matching (data model §3.5): which incoming message answers which of our requests. A request is
 * filed under every key its reply may carry, and the first incoming message that carries one settles it:
 *   - `req:` the request_id (set when absent) of the get_* family and balancing_unachievable;
 *   - `act:` (id, modification_count) for activate / modify_activation, answered by accept or reject_activation;
 *     `id:` the activation id alone, for a `response` refusing it (450 ...) with msg_id null;
 *   - `msg:` the msg_id (set when absent) for everything else that has one, answered by its `response`;
 *   - `v1:` period and device for the first version's get_load_report, which has no ids at all (rule 1);
 *   - `cor:` the transport's correlation_id, which our own peers set to the request's message id, whatever the type.
 * Keys are per peer: another entity cannot settle our request to this one. The keys that name one request are tried
 * before `id:` and `v1:`, which several requests waiting at once may share: those settle the oldest of them.
 * A request with a functional reply (an activation's decision, a report ...) that also carries a msg_id is not
 * settled by the `response` 200 to that msg_id, only by its reply or an error response (§3.5 rules 1 and 2: the msg_id
 * asks for a transport-level ack, which a peer may send before the reply).
 */
import { randomUUID } from 'node:crypto';
import type { Message, MessageType } from '../codec/index.js';
import type { Clock, Timer } from '../core/clock.js';
import { BusError, fail } from './errors.js';
import { has, READ_REQUESTS } from './protocol.js';

const REQUEST_REPLIES = new Set([...READ_REQUESTS, 'balancing_unachievable']);

const ACTIVATION_REPLIES = ['accept_activation', 'reject_activation', 'modify_activation'] as const;

/**
 * The types that answer a request (data model §3.3, §3.4), besides an error `response`, which rejects it; a type not
 * listed is answered by a `response`. A message of another type that carries the request's ids is not its answer.
 */
const REPLIES = {
  get_report: ['report'],
  // Its msg_id's ack, or the first periodic report if that comes first.
  get_periodic_report: ['response', 'report'],
  get_energy_events: ['energy_events'],
  get_activation_capacity: ['activation_capacity'],
  get_all_prices: ['load_price', 'generation_price'],
  get_status_report: ['status_report'],
  get_capabilities: ['capabilities', 'device_capabilities'],
  activate: ACTIVATION_REPLIES,
  modify_activation: ACTIVATION_REPLIES,
  get_load_report: ['load_report'],
} as const satisfies Partial<Record<MessageType, readonly MessageType[]>>;

/** The type of the message a request of type K resolves with (a `response` only for requests without a reply type). */
export type ReplyType<K extends MessageType> = K extends keyof typeof REPLIES
  ? (typeof REPLIES)[K][number]
  : 'response';

const RESPONSE_ONLY: readonly string[] = ['response'];

/** One request waiting for its reply. */
export interface PendingRequest {
  readonly keys: string[];
  readonly reply: Promise<Message>;
  resolve(m: Message): void;
  reject(e: Error): void;
  timer: Timer | undefined;
  done: boolean;
  /** It waits for a functional reply: a success `response` (the ack of its msg_id) does not settle it. */
  readonly functional: boolean;
  /** What it asks, for a copy that would join it (sameAsk). */
  readonly ask: string;
  /** Its type, and the types that answer it (REPLIES). */
  readonly type: string;
  readonly replies: readonly string[];
}

/** A request as it goes out: its ids filled in, and the promise of its reply. */
export interface OpenedRequest {
  message: Message;
  messageId: string;
  reply: Promise<Message>;
  /** Sending failed: the request fails with that error (if nothing settled it meanwhile). */
  fail(err: Error): void;
}

/** The keys several requests waiting at once may share; each is answered oldest first. */
const SHARED = /^(id|v1):/;

export class PendingRequests {
  readonly #pending = new Map<string, PendingRequest>();
  readonly #shared = new Map<string, PendingRequest[]>();

  declare readonly clock: Clock;
  declare readonly tag: string | undefined;
  /** `tag`: this instance's (Transport.instanceTag), written into the ids it makes (see tagOf). */
  constructor(clock: Clock, tag?: string) {
    this.clock = clock;
    this.tag = tag;
  }

  /** A fresh UUID, whose last 4 hex digits are our instance tag when there is one (still a valid version 4 UUID). */
  #id(): string {
    const id = randomUUID();
    return this.tag === undefined ? id : `${id.slice(0, 32)}${this.tag}`;
  }

  /** Files a request to `peer` under the keys of its type; it fails with TIMEOUT after `timeoutMs`. */
  open(peer: string, message: Message, timeoutMs: number): OpenedRequest {
    const m = { ...message } as Record<string, unknown> & Message;
    const type = m.msg;
    const keys: string[] = [];
    if (type === 'activate' || type === 'modify_activation') {
      keys.push(`act:${peer}:${String(m['id'])}:${String(m['modification_count'])}`, `id:${peer}:${String(m['id'])}`);
    } else if (REQUEST_REPLIES.has(type) && has(type, 'request_id')) {
      if (typeof m['request_id'] !== 'string') m['request_id'] = this.#id();
      // Its answer is the 200 (its reports come an interval later), which a peer sends only to a msg_id: without one,
      // the request waited for the first period and timed out (the CLI's, the subscription taken all the same).
      if (type === 'get_periodic_report' && typeof m['msg_id'] !== 'string') m['msg_id'] = this.#id();
      keys.push(`req:${peer}:${m['request_id'] as string}`);
    } else if (has(type, 'msg_id')) {
      if (typeof m['msg_id'] !== 'string') m['msg_id'] = this.#id();
      keys.push(`msg:${peer}:${m['msg_id'] as string}`);
    } else if (type === 'get_load_report') {
      // The first version has no ids: its peers answer with the same period and device (data model §3.5 rule 1).
      keys.push(`v1:${peer}:${v1Key(m)}`);
    } else {
      // No id a reply could echo and no reply of its own (contingency_activate is never acked, §3.5; the others are
      // notifications): a peer that takes it answers nothing, so the request could only time out once it was acted on.
      fail(
        'INVALID_MESSAGE',
        `${type} to ${peer}: a ${type} is never answered (it carries no msg_id or request_id): send it with publish() ` +
          "(the CLI: ebadge send), which resolves on the broker's confirm",
      );
    }
    if (typeof m['msg_id'] === 'string' && !keys.includes(`msg:${peer}:${m['msg_id']}`))
      keys.push(`msg:${peer}:${m['msg_id']}`);
    // Our own peers also set correlation_id to the request's message id, whatever the type.
    const messageId = type !== 'response' && typeof m['msg_id'] === 'string' ? m['msg_id'] : this.#id();
    const cor = `cor:${peer}:${messageId}`;
    // The same request again while it waits (the same (id, count), request_id or msg_id: a retry, or the same
    // activation sent twice at once): one reply answers both, whichever copy the peer answers (it may drop the
    // other as a duplicate), so the copy joins the waiting request rather than replacing it under the shared key.
    const same = keys.map((k) => (SHARED.test(k) ? undefined : this.#pending.get(k))).find((q) => q !== undefined);
    // What the caller asked, before the ids filled in here (a request_id made afresh for each copy of a retry).
    const ask = askOf(message);
    // Another request under the same ids would get the first one's reply (a get_report at another resolution got
    // the report of the first), and its own reply would go unmatched: refused before it is sent.
    if (same !== undefined && same.ask !== ask)
      fail(
        'INVALID_MESSAGE',
        `${type} to ${peer}: a request with the same ids (${keys[0] ?? 'msg_id'}) waits for its reply, and asks ` +
          'something else: give this one its own request_id, id or msg_id',
      );
    if (same !== undefined) {
      same.keys.push(cor);
      this.#pending.set(cor, same);
      return { message: m, messageId, reply: same.reply, fail: () => undefined };
    }
    keys.push(cor);
    let resolve!: (m: Message) => void;
    let reject!: (e: Error) => void;
    const reply = new Promise<Message>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    reply.catch(() => undefined);
    // get_periodic_report's reports come later, period by period: the ack of its msg_id says the subscription is taken.
    const functional =
      type === 'activate' ||
      type === 'modify_activation' ||
      (REQUEST_REPLIES.has(type) && type !== 'get_periodic_report' && type !== 'balancing_unachievable');
    const replies = (REPLIES as Partial<Record<string, readonly string[]>>)[type] ?? RESPONSE_ONLY;
    const p: PendingRequest = {
      resolve,
      reject,
      keys,
      reply,
      timer: undefined,
      done: false,
      functional,
      ask,
      type,
      replies,
    };
    p.timer = this.clock.setTimeout(
      () => this.settle(p, new BusError('TIMEOUT', `no reply to ${type} from ${peer} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    for (const k of keys) {
      if (SHARED.test(k)) this.#shared.set(k, [...(this.#shared.get(k) ?? []), p]);
      else this.#pending.set(k, p);
    }
    return {
      message: m,
      messageId,
      reply,
      fail: (err) => {
        if (!p.done) this.settle(p, err);
      },
    };
  }

  /**
   * The instance tag in the ids a reply carries (request_id, a response's msg_id, the correlation id), if it looks
   * like an answer at all: the last 4 hex digits of the first such id. An id another made has a random "tag", which
   * names no instance, or names one that then handles the message as it would any.
   */
  static tagOf(m: Message, correlationId: string | undefined): string | undefined {
    const x = m as Record<string, unknown>;
    const id =
      (typeof x['request_id'] === 'string' ? x['request_id'] : undefined) ??
      (m.msg === 'response' && typeof x['msg_id'] === 'string' ? x['msg_id'] : undefined) ??
      correlationId;
    return id !== undefined && /^[0-9a-f-]{32}[0-9a-f]{4}$/i.test(id) ? id.slice(32).toLowerCase() : undefined;
  }

  /** The pending request `m` from `sender` answers, if any. */
  find(sender: string, m: Message, correlationId: string | undefined): PendingRequest | undefined {
    const x = m as Record<string, unknown>;
    const tries: string[] = [];
    if (m.msg === 'accept_activation' || m.msg === 'reject_activation' || m.msg === 'modify_activation')
      tries.push(`act:${sender}:${String(x['id'])}:${String(x['modification_count'])}`);
    if (typeof x['request_id'] === 'string') tries.push(`req:${sender}:${x['request_id']}`);
    if (m.msg === 'response' && typeof x['msg_id'] === 'string') tries.push(`msg:${sender}:${x['msg_id']}`);
    if (correlationId !== undefined) tries.push(`cor:${sender}:${correlationId}`);
    // Last, the keys two requests may share: a refusal naming only the activation's id would otherwise settle the
    // latest request for that id (count 2, say), not the one it answers (count 1), when both wait at once.
    if (m.msg === 'response' && typeof x['id'] === 'string') tries.push(`id:${sender}:${x['id']}`);
    if (m.msg === 'load_report') tries.push(`v1:${sender}:${v1Key(x)}`);
    for (const k of tries) {
      const p = SHARED.test(k) ? this.#shared.get(k)?.[0] : this.#pending.get(k);
      if (p !== undefined) return p;
    }
    return undefined;
  }

  /**
   * Settles `p` with its reply: a `response` with an error code rejects with REJECTED, the reply attached. A success
   * `response` to a request that waits for a functional reply is only the ack of its msg_id: it keeps waiting. A
   * message of a type that does not answer the request (a peer's bug: a status_report echoing a get_report's
   * request_id) rejects with INVALID_REPLY, the message attached: resolving with it would hand the caller a
   * message of another type than the one request() promises.
   */
  answer(p: PendingRequest, sender: string, message: Message): void {
    const x = message as { response_code?: number; response_desc?: string };
    const refused = message.msg === 'response' && typeof x.response_code === 'number' && x.response_code >= 400;
    if (message.msg === 'response' && !refused && p.functional) return;
    if (message.msg !== 'response' && !p.replies.includes(message.msg)) {
      this.settle(
        p,
        new BusError(
          'INVALID_REPLY',
          `${sender} answered ${p.type} with ${message.msg}: expected ${p.replies.join(' or ')}`,
          { reply: message },
        ),
      );
    } else if (refused) {
      this.settle(
        p,
        new BusError('REJECTED', `${sender} answered ${x.response_code} ${x.response_desc ?? ''}`.trim(), {
          reply: message,
        }),
      );
    } else {
      this.settle(p, message);
    }
  }

  settle(p: PendingRequest, outcome: Message | Error): void {
    p.done = true;
    p.timer?.cancel();
    for (const k of p.keys) {
      if (this.#pending.get(k) === p) this.#pending.delete(k);
      const shared = this.#shared.get(k)?.filter((q) => q !== p);
      if (shared === undefined) continue;
      if (shared.length === 0) this.#shared.delete(k);
      else this.#shared.set(k, shared);
    }
    if (outcome instanceof Error) p.reject(outcome);
    else p.resolve(outcome);
  }

  /** Fails every request still waiting (the connector is closing). */
  failAll(err: Error): void {
    for (const p of this.#all()) this.settle(p, err);
  }

  /** Requests waiting for a reply. */
  get size(): number {
    return this.#all().size;
  }

  #all(): Set<PendingRequest> {
    return new Set([...this.#pending.values(), ...[...this.#shared.values()].flat()]);
  }
}

function v1Key(m: Record<string, unknown>): string {
  return [String(m['from']), String(m['to']), String(m['resolution']), String(m['device'] ?? null)].join('|');
}

/** A request's fields but its message id, in one order: two copies of one ask compare equal, whatever their order. */
function askOf(m: Message): string {
  const x = m as Record<string, unknown>;
  return JSON.stringify(
    Object.keys(x)
      .filter((k) => k !== 'msg_id')
      .sort()
      .map((k) => [k, x[k]]),
  );
}
