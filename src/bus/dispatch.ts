/**
 * The handler's turn (the last step of receive.ts): the context it gets, and what its outcome leads to. The message is
 * acked only after the handler succeeded. A handler that throws gets the message again, until the delivery limit,
 * then it is dead-lettered with the error. A `msg_id` is answered exactly once: by the handler (ctx.respond, or a
 * `response` reply) or by the connector (200, 453 for a type nobody handles here, 500 after the last failed attempt;
 * one the broker refuses is owed to the message's next copy, receive.ts).
 * A message without one gets only an error (500, a handler's 4xx), with msg_id null and its request_id or id echoed
 * (§3.5 rule 3), and only when it carries one of those.
 */
import { EncodeError, type Message } from '../codec/index.js';
import { fieldText } from '../core/utf8.js';
import type { Opened } from '../crypto/index.js';
import { Recent, type SeenIds } from './dedupe.js';
import { BusError } from './errors.js';
import type { ConnectorEvents, HandlerContext, StoredHandler } from './handler.js';
import { correlatedTo, has, identityOf, response } from './protocol.js';
import type { Incoming, RawOf, Transport } from './transport.js';

type Events<T extends Transport> = ConnectorEvents<RawOf<T>>;

export interface DispatchDeps<T extends Transport> {
  readonly name: string;
  readonly transport: T;
  readonly handlers: ReadonlyMap<string, StoredHandler<T>>;
  readonly deliveryLimit: number;
  readonly seen: SeenIds;
  readonly failures: FailureCounts;
  publish(peer: string, message: Message, options: { correlationId?: string }): Promise<void>;
  /**
   * Sends one of the connector's own answers (200, 453, 500) to `d`: one the broker refuses is told, not thrown, and
   * is owed to the next copy of the message `key` names (receive.ts).
   */
  answer(peer: string, answer: Message<'response'>, d: Incoming<RawOf<T>>, key: string | undefined): Promise<void>;
  /**
   * Keeps `answer` for the next copy of the message `key` names (receive.ts sends it then); false when it is too
   * large to keep.
   */
  owe(key: string | undefined, answer: Message): boolean;
  emit<K extends keyof Events<T> & string>(event: K, ...args: Events<T>[K]): void;
  /** false: the delivery was lost with its connection and nothing was done (it comes again). */
  deadLetter(d: Incoming<RawOf<T>>, reason: string, code: string): Promise<boolean>;
}

export async function dispatch<T extends Transport>(
  c: DispatchDeps<T>,
  d: Incoming<RawOf<T>>,
  sender: string,
  message: Message,
  diagnostics: string[],
  opened: Opened | undefined,
  /** What tells this message from its copies (receive.ts): its sender, id and body; undefined without an id. */
  dedupeKey: string | undefined,
): Promise<void> {
  const x = message as { msg_id?: string | null; request_id?: string; id?: string };
  // A `response` is never answered: its msg_id names the message it answers (answering it would ping-pong).
  const msgId = message.msg !== 'response' && typeof x.msg_id === 'string' ? x.msg_id : undefined;
  const correlated = correlatedTo(d.messageId, { msg_id: msgId, request_id: x.request_id });
  let settled = false;
  let responded = false;
  /** This message's one response with `code`: undefined when it was answered already, or cannot be (§3.5 rule 3). */
  const answerWith = (code: number, description: string, subcode?: number): Message<'response'> | undefined => {
    // Without a msg_id only an error is answered (§3.5 rule 3), and only when the message can be identified.
    const about = msgId === undefined && code >= 400 ? identityOf(message) : undefined;
    if ((msgId === undefined && about === undefined) || responded) return undefined;
    responded = true;
    return response(msgId ?? null, code, description, subcode, about ?? message);
  };
  /**
   * The handler's own answer that could not be sent (the broker refused it, or the link went), and the error: the
   * handler ran all the same. Only the first: a copy of the message is owed one answer.
   */
  let undelivered: { err: unknown; answer: Message } | undefined;
  const send = async (r: Message): Promise<void> => {
    try {
      await c.publish(sender, r, correlated);
    } catch (err) {
      // An answer that is not a valid message is the handler's own failure. Anything else (the broker, the link, the
      // connector closed, a keyring that will not seal it for this peer) is not mended by running the handler again.
      const invalid =
        (err instanceof BusError && err.code === 'INVALID_MESSAGE') ||
        err instanceof EncodeError ||
        err instanceof TypeError ||
        err instanceof RangeError;
      if (!invalid) undelivered ??= { err, answer: r };
      throw err;
    }
  };
  /** The connector's own answer; `key`: owed to the next copy if the broker refuses it. */
  const own = async (code: number, description: string, key: string | undefined): Promise<void> => {
    const r = answerWith(code, description);
    if (r !== undefined) await c.answer(sender, r, d, key);
  };
  const ctx: HandlerContext<T> = {
    sender,
    delivery: d,
    transport: c.transport,
    diagnostics,
    sealed: opened !== undefined,
    reply: async (reply) => {
      const r = { ...reply } as Record<string, unknown> & Message;
      if (x.request_id !== undefined && has(r.msg, 'request_id') && r['request_id'] === undefined)
        r['request_id'] = x.request_id;
      if (r.msg === 'response' && msgId !== undefined && r['msg_id'] === undefined) r['msg_id'] = msgId;
      // A response to the msg_id, or (no msg_id) the §3.5 rule 3 error response: either is the one answer.
      if (r.msg === 'response' && (r['msg_id'] === msgId || (msgId === undefined && r['msg_id'] === null))) {
        if (responded) return;
        responded = true;
      }
      await send(r);
    },
    respond: async (code, description, subcode) => {
      const r = answerWith(code, description ?? (code < 400 ? 'OK' : 'error'), subcode);
      if (r !== undefined) await send(r);
    },
    ack: () => {
      settled = true;
      d.ack();
    },
    nack: (requeue = true) => {
      settled = true;
      if (requeue) d.retry();
      else
        void d
          .deadLetter('nacked by the handler', 'NACKED')
          .catch((err: unknown) => c.emit('handler-error', err, message.msg, true));
    },
  };
  const handler = c.handlers.get(message.msg);
  // Handlers cannot change after start(), so no handler means "not handled here" (§3.6), not "not registered yet".
  if (handler === undefined) {
    c.emit('unhandled', message, sender);
    await opened?.commit();
    // Only to a msg_id: without one this may be a reply that came after its request gave up, and a reply is not
    // answered. Not remembered either: a copy is answered 453 again, nothing is owed.
    if (msgId !== undefined) await own(453, `${message.msg} is not handled by ${c.name}`, undefined);
    d.ack();
    return;
  }
  try {
    await handler(message, ctx);
  } catch (err) {
    const lost = undelivered;
    if (!settled && lost !== undefined && causedBy(err, lost.err)) {
      // It failed only because its answer could not be sent: what it did is done, and running it again would do it
      // again (a set_clock moved the clock by 5 times its offset when the peer's inbox was unbound). Handled, then,
      // with the answer owed to the peer's retry.
      await handled(c, d, opened, dedupeKey, lost);
      return;
    }
    const failures = Math.max(d.deliveryCount, c.failures.get(dedupeKey)) + 1;
    const final = failures >= c.deliveryLimit;
    c.emit('handler-error', err, message.msg, final);
    opened?.release();
    if (settled) return;
    if (!final) {
      c.failures.add(dedupeKey);
      d.retry();
      return;
    }
    // Dead-lettered before it is answered or counted as seen: a delivery lost with its connection meanwhile is
    // delivered again, and must then go through this again (its failures kept, so its next one is the last),
    // not be dropped as a duplicate of a message that was neither handled nor dead-lettered.
    const kept = await c.deadLetter(
      d,
      `the handler failed ${failures} times: ${(err as Error)?.stack ?? String(err)}`,
      'HANDLER_FAILED',
    );
    if (!kept) return;
    c.failures.delete(dedupeKey);
    await own(
      500,
      fieldText(`${message.msg} failed ${failures} times: ${(err as Error)?.message ?? String(err)}`, 1024),
      dedupeKey,
    );
    if (dedupeKey !== undefined) c.seen.add(dedupeKey);
    return;
  }
  if (settled) {
    c.failures.delete(dedupeKey);
    return;
  }
  if (undelivered !== undefined) {
    // It went on after its answer failed: handled, with that answer owed all the same.
    await handled(c, d, opened, dedupeKey, undelivered);
    return;
  }
  c.failures.delete(dedupeKey);
  await opened?.commit();
  // Handled, so acked and remembered whatever becomes of its 200: the handler must not run again for an answer the
  // broker would not take (the peer's inbox unbound, NO_ROUTE; full, a nack). Thrown from here, it went back to the
  // queue uncounted and ran again as fast as the broker redelivered (1,411 times in 5 s without a delivery limit).
  // The peer's retry of it then gets the 200 (c.answer).
  if (msgId !== undefined) await own(200, 'OK', dedupeKey);
  if (dedupeKey !== undefined) {
    c.seen.add(dedupeKey);
    d.remember?.(dedupeKey);
  }
  d.ack();
}

/** A message its handler handled, whose answer could not be sent: acked and remembered, the answer owed and told. */
async function handled<T extends Transport>(
  c: DispatchDeps<T>,
  d: Incoming<RawOf<T>>,
  opened: Opened | undefined,
  dedupeKey: string | undefined,
  undelivered: { err: unknown; answer: Message },
): Promise<void> {
  c.failures.delete(dedupeKey);
  await opened?.commit();
  c.emit('handler-error', undelivered.err, undelivered.answer.msg, false);
  // An answer too large to keep (a day's report) is not owed: the message is then not remembered either, so the
  // peer's retry runs the handler again and gets it, rather than being dropped as a duplicate with no answer.
  if (c.owe(dedupeKey, undelivered.answer) && dedupeKey !== undefined) {
    c.seen.add(dedupeKey);
    d.remember?.(dedupeKey);
  }
  d.ack();
}

/** Whether `err` is `cause`, or wraps it (a handler that rethrows its answer's failure with a message of its own). */
function causedBy(err: unknown, cause: unknown): boolean {
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    if (e === cause) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/**
 * Failed deliveries per message id, for transports whose broker does not count them (classic queues, MQTT). Bounded:
 * past 10,000 ids the oldest is forgotten.
 */
export class FailureCounts {
  readonly #counts = new Recent<number>(10_000);
  get(key: string | undefined): number {
    return key === undefined ? 0 : (this.#counts.get(key) ?? 0);
  }
  add(key: string | undefined): void {
    if (key !== undefined) this.#counts.put(key, this.get(key) + 1);
  }
  delete(key: string | undefined): void {
    if (key !== undefined) this.#counts.delete(key);
  }
}
