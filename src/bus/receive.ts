/**
 * What happens to an incoming message before any handler sees it, in order (data model §3.5, §3.8):
 *  0. a body the transport refused unread for its size is only reported (it is dead-lettered already); the sender
 *     must be a peer the transport vouches for; a copy of a message still being handled waits for that outcome; a
 *     data model version we do not speak is refused 459;
 *  1. sealed (HEH-E2E) bodies are opened; a peer with keys that sends in the clear is refused, a replay is dropped;
 *  2. decoded and validated by the codec: a failure never reaches a handler, is dead-lettered, and is answered with a
 *     `response` carrying the codec's code when the message had a `msg_id`;
 *  3. duplicates (the same message id within the dedupe window) are acked and dropped;
 *  4. a reply to one of our `request`s settles it;
 *  5. anything else goes to its handler (dispatch.ts), which decides the ack, the retry or the dead letter.
 * The dead letters and refusals of every step go through one place, which also emits the 'dead-letter' event.
 */
import { DecodeError, type DecodeLimits, decode, type Message } from '../codec/index.js';
import { CryptoError, type Opened, type Sealer } from '../crypto/index.js';
import type { SeenIds } from './dedupe.js';
import { dispatch, FailureCounts } from './dispatch.js';
import type { ConnectorEvents, StoredHandler } from './handler.js';
import { CONTENT_TYPE_SEALED, DM_HEADER, DM_VERSION, msgIdOf, response } from './protocol.js';
import type { PendingRequests } from './requests.js';
import type { Incoming, RawOf, Transport } from './transport.js';

type Events<T extends Transport> = ConnectorEvents<RawOf<T>>;

/** What the pipeline needs from its connector. */
export interface ReceiverDeps<T extends Transport> {
  readonly name: string;
  readonly transport: T;
  readonly handlers: ReadonlyMap<string, StoredHandler<T>>;
  readonly sealer: Sealer | undefined;
  readonly limits: DecodeLimits | undefined;
  /** Deliveries of one message (its first included) before a failing handler's message is dead-lettered. */
  readonly deliveryLimit: number;
  /** The largest body the transport was told to hand over (Connector.maxBodyBytes). */
  readonly maxBodyBytes: number;
  readonly seen: SeenIds;
  readonly requests: PendingRequests;
  publish(peer: string, message: Message, options: { correlationId?: string }): Promise<void>;
  emit<K extends keyof Events<T> & string>(event: K, ...args: Events<T>[K]): void;
}

export class Receiver<T extends Transport> {
  readonly #d: ReceiverDeps<T>;
  /** Messages being handled, by `<sender>:<id>`: a copy that arrives meanwhile waits for the first one's outcome. */
  readonly #inFlight = new Map<string, Promise<void>>();
  readonly #failures = new FailureCounts();

  constructor(deps: ReceiverDeps<T>) {
    this.#d = deps;
  }

  get maxBodyBytes(): number {
    return this.#d.maxBodyBytes;
  }

  async receive(d: Incoming<RawOf<T>>): Promise<void> {
    const sender = d.from;
    if (d.oversized !== undefined) {
      // Refused and settled by the transport before its body arrived: only told, nothing left to read or settle.
      this.#d.emit(
        'dead-letter',
        `a body of ${d.oversized} bytes exceeds the limit of ${this.#d.maxBodyBytes} (refused unread)`,
        'TOO_LARGE',
        d,
      );
      return;
    }
    if (sender === undefined) {
      await this.#deadLetter(d, 'the sender is not a configured peer', 'UNKNOWN_SENDER');
      return;
    }
    // A copy of a message still being handled (a redelivery after a reconnect or a consumer timeout, whose first
    // copy's ack can no longer reach the broker) waits for that outcome: acked as a duplicate if the first copy
    // was handled, handled itself if the first one failed. Acking it at once would lose the message.
    if (d.messageId !== undefined) await this.#afterInFlight(`${sender}:${d.messageId}`);
    const dm = d.headers[DM_HEADER];
    if (typeof dm === 'string' && !dm.startsWith('3.')) {
      await this.#refuse(
        d,
        sender,
        459,
        `data model version ${dm} is not supported (this is ${DM_VERSION})`,
        'VERSION',
      );
      return;
    }
    // 1. Sealing.
    let body: Uint8Array = d.body;
    let opened: Opened | undefined;
    const sealer = this.#d.sealer;
    if (d.contentType === CONTENT_TYPE_SEALED) {
      if (sealer === undefined) {
        await this.#deadLetter(d, 'a sealed message, but no keyring is configured', 'NO_KEY');
        return;
      }
      try {
        opened = sealer.open(d.body);
      } catch (err) {
        if (err instanceof CryptoError && err.code === 'DUPLICATE') {
          d.ack();
          this.#d.emit('duplicate', d.messageId ?? '', sender);
          return;
        }
        await this.#deadLetter(
          d,
          `refused: ${(err as Error).message}`,
          err instanceof CryptoError ? err.code : 'CRYPTO',
        );
        return;
      }
      if (opened.sender.id !== sender) {
        opened.release();
        await this.#deadLetter(d, `sealed by ${opened.sender.id} but delivered from ${sender}`, 'WRONG_SENDER');
        return;
      }
      body = opened.payload;
    } else if (sealer?.keyring.peers.has(sender)) {
      await this.#deadLetter(d, `${sender} has keys in our keyring but sent in the clear`, 'NOT_SEALED');
      return;
    }
    // 2. The codec.
    let message: Message;
    let diagnostics: string[];
    try {
      ({ message, diagnostics } = decode(body, this.#d.limits));
      if (opened !== undefined && opened.type !== message.msg)
        throw new DecodeError(400, 'message.msg', `the envelope says ${opened.type}`);
    } catch (err) {
      opened?.release();
      if (!(err instanceof DecodeError)) throw err;
      await this.#refuse(d, sender, err.code, err.message, `DECODE_${err.code}`, msgIdOf(body));
      return;
    }
    // 3. Duplicates.
    // A response's msg_id names the message it answers (see Connector.publish), never the response itself.
    const id = d.messageId ?? (message.msg === 'response' ? undefined : (message as { msg_id?: string }).msg_id);
    const dedupeKey = id === undefined ? undefined : `${sender}:${id}`;
    if (dedupeKey !== undefined && this.#inFlight.has(dedupeKey)) {
      opened?.release();
      await this.#afterInFlight(dedupeKey);
      if (!this.#d.seen.has(dedupeKey)) return this.receive(d); // the first copy failed: this one is the message now
    }
    if (dedupeKey !== undefined && this.#d.seen.has(dedupeKey)) {
      opened?.release();
      d.ack();
      this.#d.emit('duplicate', id as string, sender);
      return;
    }
    // 4. A reply we are waiting for.
    const pending = this.#d.requests.find(sender, message, d.correlationId);
    if (pending !== undefined) {
      await opened?.commit();
      d.ack();
      if (dedupeKey !== undefined) this.#d.seen.add(dedupeKey);
      this.#d.requests.answer(pending, sender, message);
      return;
    }
    // 5. The handler.
    let done: (() => void) | undefined;
    if (dedupeKey !== undefined)
      this.#inFlight.set(
        dedupeKey,
        new Promise<void>((resolve) => {
          done = resolve;
        }),
      );
    try {
      await dispatch(
        {
          ...this.#d,
          failures: this.#failures,
          deadLetter: (x, reason, code) => this.#deadLetter(x, reason, code),
        },
        d,
        sender,
        message,
        diagnostics,
        opened,
      );
    } finally {
      if (dedupeKey !== undefined) this.#inFlight.delete(dedupeKey);
      done?.();
    }
  }

  async #afterInFlight(key: string): Promise<void> {
    for (let going = this.#inFlight.get(key); going !== undefined; going = this.#inFlight.get(key)) await going;
  }

  /** Dead-letters an invalid message and, when it carried a msg_id, answers it with the code. */
  async #refuse(
    d: Incoming<RawOf<T>>,
    sender: string,
    code: number,
    reason: string,
    deadCode: string,
    msgId?: string,
  ): Promise<void> {
    if (msgId !== undefined) {
      await this.#d
        .publish(
          sender,
          response(msgId, code, reason.slice(0, 1024), undefined, undefined),
          d.messageId === undefined ? {} : { correlationId: d.messageId },
        )
        .catch((err: unknown) => this.#d.emit('handler-error', err, 'response', false));
    }
    await this.#deadLetter(d, reason, deadCode);
  }

  async #deadLetter(d: Incoming<RawOf<T>>, reason: string, code: string): Promise<void> {
    this.#d.emit('dead-letter', reason, code, d);
    await d.deadLetter(reason, code);
  }
}
