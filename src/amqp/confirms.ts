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

export class ConfirmTracker {
  nextSeq = 1;
  readonly #pending = new Map<number, PendingConfirm>();
  #mandatoryCount = 0;

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
        new PublishError('returned', `publish ${seq} was returned as unroutable: ${replyCode} ${replyText}`, {
          replyCode,
          replyText,
        }),
      );
    } else {
      p.resolve();
    }
  }

  /**
   * Marks the publish a basic.return refers to. The return carries no sequence number; RabbitMQ sends it before the
   * publish's ack, in publish order, so it belongs to the oldest pending mandatory publish with the same exchange,
   * routing key and message id. Returns false when none matches (e.g. it already timed out).
   */
  markReturned(
    exchange: string,
    routingKey: string,
    messageId: string | undefined,
    replyCode: number,
    replyText: string,
  ): boolean {
    if (this.#mandatoryCount === 0) return false;
    for (const p of this.#pending.values()) {
      if (!p.mandatory || p.returned !== undefined) continue;
      if (p.exchange === exchange && p.routingKey === routingKey && p.messageId === messageId) {
        p.returned = { replyCode, replyText };
        return true;
      }
    }
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
