/**
 * The publishes of one RecoveringChannel, each from the call to its single outcome, across as many channels as
 * recovery needs:
 *
 *   publish() --channel live, nothing waiting--> in flight --confirmed (or written, without confirms)--> resolved
 *       |                                          |   |
 *       | no channel (or others wait first)        |   +--nacked--> sent again after 0.25, 0.5, 1 s ... (nackRetries,
 *       v                                          |   |            within the deadline), then rejected `nacked`
 *     buffered, in call order <--channel lost------+   +--returned, past its deadline ...--> rejected
 *       |   (unconfirmed ones go back at the front: sent again with the same message_id)
 *       +--flush() after recovery: sent in order;  past its deadline: rejected `timeout`
 *
 * The buffer is bounded (bufferMessages, bufferBytes): when full, the new publish fails (`reject-new`) or the oldest
 * waiting one does (`drop-oldest`), and the connection emits buffer-overflow. Each channel a publish is written on
 * is a new generation: an outcome reported by an older channel, lost since, is ignored, so the publish settles only
 * once. After the application closed the channel nothing is sent, retried or buffered any more.
 */
import type { Channel } from './channel.js';
import { BY_APP, ChannelError, PublishError } from './errors.js';
import type { MessageProperties } from './properties.js';
import type { Body } from './publisher.js';

/** The recovery options the buffer follows (RecoveringConnection.options). */
export interface BufferOptions {
  readonly bufferMessages: number;
  readonly bufferBytes: number;
  readonly overflow: 'reject-new' | 'drop-oldest';
  readonly nackRetries: number;
}

/** One publish from the call to its single outcome. */
interface Pending {
  exchange: string;
  routingKey: string;
  body: Body;
  bytes: number;
  properties: MessageProperties;
  mandatory: boolean;
  deadline: number;
  /** The channel generation it was last written on (-1: waiting in the buffer). */
  gen: number;
  nacks: number;
  settled: boolean;
  resolve(): void;
  reject(e: Error): void;
}

/** Nacks in a row after which the channel may be stuck in a refusal the broker no longer means (see stuck). */
const STUCK_NACKS = 3;

export class PublishBuffer {
  /** Incremented with every channel attached or lost. */
  #gen = 0;
  #closed = false;
  #inflight = new Set<Pending>();
  #buffer: Pending[] = [];
  #bufferBytes = 0;
  #sweep: ReturnType<typeof setInterval> | null = null;
  readonly #options: BufferOptions;
  readonly #live: () => Channel | null;
  readonly #overflowed: (policy: 'reject-new' | 'drop-oldest') => void;
  /** Nacks since the last confirm: `stuck` is told at STUCK_NACKS. */
  #nacksInARow = 0;
  /** Told when the broker has nacked STUCK_NACKS publishes in a row. */
  stuck: (() => void) | undefined;

  /** `live`: the channel to write on now, or null; `overflowed`: a full buffer failed a publish. */
  constructor(
    options: BufferOptions,
    live: () => Channel | null,
    overflowed: (policy: 'reject-new' | 'drop-oldest') => void,
  ) {
    this.#options = options;
    this.#live = live;
    this.#overflowed = overflowed;
  }

  /** Publishes waiting for a channel. */
  get buffered(): number {
    return this.#buffer.length;
  }

  /** Publishes written and not yet confirmed. */
  get inflight(): number {
    return this.#inflight.size;
  }

  /** Settles exactly once; `deadline` (ms since the epoch) counts from the application's call. */
  publish(
    exchange: string,
    routingKey: string,
    body: Body,
    properties: MessageProperties,
    mandatory: boolean,
    deadline: number,
  ): Promise<void> {
    let resolve!: () => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    promise.catch(noop);
    const p: Pending = {
      exchange,
      routingKey,
      body,
      properties,
      mandatory,
      deadline,
      bytes:
        typeof body === 'string'
          ? Buffer.byteLength(body)
          : body instanceof Uint8Array
            ? body.length
            : // A writer with a hint (JSON) would count its maxBytes, the most it may ever need, against bufferBytes.
              (body.sizeHint ?? body.maxBytes),
      gen: -1,
      nacks: 0,
      settled: false,
      resolve,
      reject,
    };
    p.resolve = () => {
      if (!p.settled) {
        p.settled = true;
        resolve();
      }
    };
    p.reject = (e) => {
      if (!p.settled) {
        p.settled = true;
        reject(e);
      }
    };
    const ch = this.#live();
    if (ch !== null && this.#buffer.length === 0) this.#send(ch, p);
    else this.#enqueue(p);
    return promise;
  }

  /** A new channel is attached: what older channels report from now on is stale. */
  attached(): void {
    this.#gen++;
  }

  /** Sends what waited, in call order (unconfirmed re-sends first: they were put at the front). */
  flush(): void {
    while (this.#buffer.length > 0) {
      const ch = this.#live();
      if (ch === null) return;
      const p = this.#buffer.shift() as Pending;
      this.#bufferBytes -= p.bytes;
      this.#send(ch, p);
    }
  }

  /**
   * The channel underneath ended: its unconfirmed publishes go back to the front of the buffer (or fail, if closed).
   * Those the broker closed it over (`err`: 403 or 404 in reply to basic.publish, naming the exchange; 406 naming a
   * user_id that is not the login) fail instead: sent again, they would only close the channel again, taking the
   * others' confirms with it, until their deadline.
   */
  lost(err?: Error): void {
    this.#gen++;
    if (this.#closed) {
      for (const p of this.#inflight) p.reject(channelClosed());
      this.#inflight.clear();
      return;
    }
    const refused = refusedPublish(err);
    if (refused !== undefined) {
      for (const p of this.#inflight) {
        if (
          refused.userId !== undefined
            ? p.properties.userId !== refused.userId
            : p.exchange !== refused.exchange ||
              (refused.routingKey !== undefined && p.routingKey !== refused.routingKey)
        )
          continue;
        this.#inflight.delete(p);
        p.reject(new PublishError('refused', `the broker refused the publish: ${refused.text}`, { cause: err }));
      }
    }
    const back = [...this.#inflight];
    this.#inflight.clear();
    for (const p of back) p.gen = -1;
    this.#buffer = back.concat(this.#buffer);
    for (const p of back) this.#bufferBytes += p.bytes;
    if (back.length > 0) this.#sweep ??= setInterval(() => this.#expire(), 1000);
  }

  /** The application closed the connection or the channel: what waits fails, nothing is sent or retried any more. */
  shutdown(): void {
    this.#closed = true;
    const err = new PublishError('closed', `the connection ${BY_APP} before the publish was confirmed`);
    for (const p of this.#buffer) p.reject(err);
    this.#buffer = [];
    this.#bufferBytes = 0;
    if (this.#sweep !== null) clearInterval(this.#sweep);
    this.#sweep = null;
  }

  #send(ch: Channel, p: Pending): void {
    const gen = this.#gen;
    p.gen = gen;
    this.#inflight.add(p);
    // The channel's callback form: no promise of its own per publish (this record is the only one that matters).
    ch._publish(
      {
        resolve: () => {
          this.#inflight.delete(p);
          this.#nacksInARow = 0;
          p.resolve();
        },
        reject: (err: Error) => this.#failed(p, gen, err),
      },
      p.exchange,
      p.routingKey,
      p.body,
      p.properties,
      p.mandatory,
      p.deadline,
    );
  }

  #failed(p: Pending, gen: number, err: Error): void {
    // Lost with its channel: lost() puts it back in the buffer (this can run before or after it).
    if (p.gen !== gen || (err instanceof PublishError && err.failure === 'closed' && !this.#closed)) return;
    this.#inflight.delete(p);
    if (err instanceof PublishError && err.failure === 'nacked' && ++this.#nacksInARow >= STUCK_NACKS) {
      this.#nacksInARow = 0;
      this.stuck?.();
    }
    const delay = 250 * 2 ** p.nacks;
    if (
      err instanceof PublishError &&
      err.failure === 'nacked' &&
      !this.#closed &&
      p.nacks < this.#options.nackRetries &&
      Date.now() + delay < p.deadline
    ) {
      p.nacks++;
      setTimeout(() => this.#retry(p), delay);
      return;
    }
    p.reject(err);
  }

  /** Sends a nacked publish again (or buffers it, ahead of newer ones, while recovering). */
  #retry(p: Pending): void {
    if (p.settled) return;
    if (this.#closed) return p.reject(channelClosed());
    const ch = this.#live();
    if (ch !== null) return this.#send(ch, p);
    p.gen = -1;
    this.#buffer.unshift(p);
    this.#bufferBytes += p.bytes;
    this.#sweep ??= setInterval(() => this.#expire(), 1000);
  }

  #enqueue(p: Pending): void {
    const o = this.#options;
    while (this.#buffer.length >= o.bufferMessages || this.#bufferBytes + p.bytes > o.bufferBytes) {
      const oldest = this.#buffer[0];
      if (o.overflow === 'reject-new' || oldest === undefined) {
        this.#overflowed('reject-new');
        return p.reject(
          new PublishError(
            'buffer-full',
            `the publish buffer is full (${this.#buffer.length} messages, ${this.#bufferBytes} bytes) while the connection recovers`,
          ),
        );
      }
      this.#buffer.shift();
      this.#bufferBytes -= oldest.bytes;
      this.#overflowed('drop-oldest');
      oldest.reject(
        new PublishError(
          'buffer-full',
          'dropped from the full publish buffer to make room for a newer one (overflow: drop-oldest)',
        ),
      );
    }
    p.gen = -1;
    this.#buffer.push(p);
    this.#bufferBytes += p.bytes;
    // Kept referenced: waiting publishes are pending work, and their deadlines must fire.
    this.#sweep ??= setInterval(() => this.#expire(), 1000);
  }

  #expire(): void {
    const now = Date.now();
    const keep: Pending[] = [];
    for (const p of this.#buffer) {
      if (p.deadline > now) keep.push(p);
      else {
        this.#bufferBytes -= p.bytes;
        p.reject(new PublishError('timeout', 'the publish waited past its deadline for the connection to recover'));
      }
    }
    this.#buffer = keep;
    if (keep.length === 0 && this.#sweep !== null) {
      clearInterval(this.#sweep);
      this.#sweep = null;
    }
  }
}

/**
 * What a channel closed in reply to basic.publish names: the exchange (and, for a topic permission, the routing key)
 * RabbitMQ refused. Its texts: `ACCESS_REFUSED - access to exchange 'x' in vhost 'v' refused for user 'u'`,
 * `ACCESS_REFUSED - write access to topic 'k' in exchange 'x' in vhost 'v' refused for user 'u'`,
 * `NOT_FOUND - no exchange 'x' in vhost 'v'`; the default exchange is named `amq.default`.
 */
export function refusedPublish(
  err: Error | undefined,
): { exchange?: string; routingKey?: string; userId?: string; text: string } | undefined {
  if (!(err instanceof ChannelError) || err.classId !== 60 || err.methodId !== 40) return undefined;
  if (err.replyCode === 406) {
    // RabbitMQ takes a user_id only when it is the login: the publishes that carry the one it names are refused.
    const id = /user_id property set to '((?:[^']|'(?! but ))*)' but/.exec(err.replyText)?.[1];
    return id === undefined ? undefined : { userId: id, text: `${err.replyCode} ${err.replyText}` };
  }
  if (err.replyCode !== 403 && err.replyCode !== 404) return undefined;
  const x = /exchange '((?:[^']|'(?! in vhost))*)' in vhost/.exec(err.replyText)?.[1];
  if (x === undefined) return undefined;
  const key = /topic '((?:[^']|'(?! in exchange))*)' in exchange/.exec(err.replyText)?.[1];
  return {
    exchange: x === 'amq.default' ? '' : x,
    ...(key === undefined ? {} : { routingKey: key }),
    text: `${err.replyCode} ${err.replyText}`,
  };
}

function channelClosed(): PublishError {
  return new PublishError('closed', `the channel ${BY_APP} before the publish was confirmed`);
}

function noop(): void {
  /* a rejection is observed by the caller */
}
