/**
 * Publisher confirms (https://www.rabbitmq.com/docs/confirms#publisher-confirms). After confirm.select every publish
 * on the channel gets a sequence number, starting at 1; the broker acks or nacks them by number, possibly with
 * `multiple` (everything up to and including the tag), and in any order. A Map keeps insertion (= sequence) order,
 * so `multiple` walks only the entries it settles.
 *
 * Each pending publish settles exactly once: ack, nack, returned (a basic.return arrived for it before its ack),
 * closed (the channel went away first: outcome unknown) or timeout (deadline passed: outcome unknown).
 */
import { PublishError } from './errors.js';

export interface PendingConfirm {
  resolve(): void;
  reject(err: PublishError): void;
  deadline: number;
  /** Mandatory publishes are matched to a basic.return by exchange, routing key and message id. */
  mandatory: boolean;
  exchange: string;
  routingKey: string;
  messageId: string | undefined;
  returned: { replyCode: number; replyText: string } | undefined;
}

interface Returned {
  /** The next sequence number when it came: it is for a publish sent before, never for a later one. */
  readonly before: number;
  readonly exchange: string;
  readonly routingKey: string;
  readonly messageId: string | undefined;
  readonly replyCode: number;
  readonly replyText: string;
}

export class ConfirmTracker {
  nextSeq = 1;
  readonly #pending = new Map<number, PendingConfirm>();
  #mandatoryCount = 0;
  /** basic.returns not yet given to a publish: each goes to the one the next ack settles (see markReturned). */
  #returns: Returned[] = [];

  get size(): number {
    return this.#pending.size;
  }

  add(seq: number, p: PendingConfirm): void {
    this.#pending.set(seq, p);
    if (p.mandatory) this.#mandatoryCount++;
  }

  ack(tag: number, multiple: boolean): void {
    this.#settle(tag, multiple, true);
  }

  nack(tag: number, multiple: boolean): void {
    this.#settle(tag, multiple, false);
  }

  #settle(tag: number, multiple: boolean, ok: boolean): void {
    if (this.#returns.length > 0) this.#attribute(tag, multiple);
    if (!multiple) {
      const p = this.#pending.get(tag);
      if (p !== undefined) this.#finish(tag, p, ok);
      return;
    }
    for (const [seq, p] of this.#pending) {
      if (seq > tag) break;
      this.#finish(seq, p, ok);
    }
  }

  #finish(seq: number, p: PendingConfirm, ok: boolean): void {
    this.#pending.delete(seq);
    if (p.mandatory) this.#mandatoryCount--;
    if (!ok) {
      p.reject(
        new PublishError('nacked', `the broker nacked publish ${seq}: it did not take responsibility for the message`),
      );
    } else if (p.returned !== undefined) {
      const { replyCode, replyText } = p.returned;
      p.reject(
        // Named: "NO_ROUTE" alone does not say which exchange has no queue bound for which key.
        new PublishError(
          'returned',
          `publish ${seq} to '${p.exchange}' with routing key '${p.routingKey}' was returned as unroutable: ${replyCode} ${replyText}`,
          {
            replyCode,
            replyText,
          },
        ),
      );
    } else {
      p.resolve();
    }
  }

  /**
   * A basic.return arrived. It carries no sequence number, and the exchange, routing key and message id it does
   * carry may fit several pending publishes (no message ids, and a headers exchange, or a binding gone between two
   * publishes): the oldest of them may well be routed and wait for its queue's confirm. RabbitMQ's channel sends the
   * return and, in the same turn, the ack that settles the returned publish, whose tag is that publish's own (a
   * multiple ack ends at it), before anything else. So the return waits for the next ack or nack, and goes to the
   * publish at its tag, or else to the oldest fitting publish that frame settles. Returns false when no pending
   * publish fits (it timed out, say): then the return is only reported.
   */
  markReturned(
    exchange: string,
    routingKey: string,
    messageId: string | undefined,
    replyCode: number,
    replyText: string,
  ): boolean {
    const r: Returned = { before: this.nextSeq, exchange, routingKey, messageId, replyCode, replyText };
    if (this.#mandatoryCount === 0 || !this.#fitsAny(r)) return false;
    // At most one waiting return per waiting mandatory publish: a broker that sends more cannot grow this.
    if (this.#returns.length >= this.#mandatoryCount) this.#returns.shift();
    this.#returns.push(r);
    return true;
  }

  /** Gives each waiting return to the publish the ack or nack of `tag` settles, where one fits. */
  #attribute(tag: number, multiple: boolean): void {
    const own = this.#pending.get(tag);
    this.#returns = this.#returns.filter((r) => {
      let p = own !== undefined && fits(tag, own, r) ? own : undefined;
      if (p === undefined && multiple) {
        for (const [seq, q] of this.#pending) {
          if (seq > tag) break;
          if (fits(seq, q, r)) {
            p = q;
            break;
          }
        }
      }
      if (p !== undefined) p.returned = { replyCode: r.replyCode, replyText: r.replyText };
      // Kept for a later frame only while some publish still fits it.
      return p === undefined && this.#fitsAny(r);
    });
  }

  #fitsAny(r: Returned): boolean {
    for (const [seq, p] of this.#pending) if (fits(seq, p, r)) return true;
    return false;
  }

  /** Rejects publishes whose deadline passed. Returns the earliest remaining deadline (or Infinity). */
  expire(now: number): number {
    let next = Infinity;
    for (const [seq, p] of this.#pending) {
      if (p.deadline <= now) {
        this.#pending.delete(seq);
        if (p.mandatory) this.#mandatoryCount--;
        p.reject(
          new PublishError('timeout', `no confirm for publish ${seq} before its deadline: the outcome is unknown`),
        );
      } else if (p.deadline < next) {
        next = p.deadline;
      }
    }
    return next;
  }

  /** The channel is gone: every pending publish has an unknown outcome. */
  failAll(cause: Error): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    this.#mandatoryCount = 0;
    this.#returns = [];
    for (const p of pending) {
      p.reject(
        new PublishError(
          'closed',
          `the channel closed before the broker confirmed the publish: the outcome is unknown (${cause.message})`,
          { cause },
        ),
      );
    }
  }
}

/** Whether `r` may be the return of publish `seq`: sent before it, mandatory, not returned yet, the same exchange,
 * routing key and message id. */
function fits(seq: number, p: PendingConfirm, r: Returned): boolean {
  return (
    seq < r.before &&
    p.mandatory &&
    p.returned === undefined &&
    p.exchange === r.exchange &&
    p.routingKey === r.routingKey &&
    p.messageId === r.messageId
  );
}
