/**
 * The publish pipeline of one channel: each publish from the call to its single outcome.
 *
 *   publish() --checked, sized--> Job --may it go now?--yes--> frames written --confirm mode--> ConfirmTracker
 *                                        | no                       | no confirms: resolved     ack: resolved
 *                                        v                                                    nack, return, channel
 *                                    waiting, in call order --resume()--> written             closed, deadline:
 *                                    (bounded by publishQueueBytes)                           PublishError
 *
 * A publish may go while the channel is open, the broker neither blocked the connection nor sent channel.flow(false),
 * the write buffer holds less than writeBufferBytes, and fewer than maxUnconfirmed publishes wait for their confirm.
 * The channel calls resume() when one of these changes (socket drain, unblocked, flow on, confirms). A synchronous
 * call made while publishes wait is queued behind them (defer()): a tx.commit or a passive declare must see every
 * publish made before it. One sweep per channel fails the publishes, waiting or unconfirmed, whose deadline passed.
 *
 * The frames of a message are encoded by publish-frames.ts.
 */
import { type BodyWriter, isBodyWriter } from '../core/body-writer.js';
import type { ChannelHost } from './channel.js';
import { ConfirmTracker, type PendingConfirm } from './confirms.js';
import { channelFrameError, FrameError, PublishError } from './errors.js';
import { type MessageProperties, propertiesSize } from './properties.js';
import { writeMessage } from './publish-frames.js';
import { ArgumentError, checkInt, shortstrSize } from './wire.js';

/**
 * A body written straight into the frame buffer (e.g. JSON encoded in place, no intermediate copy): `writeTo` writes
 * at most `maxBytes` at `offset` and returns the offset after the last byte written. One with a `sizeHint` is offered
 * the room the output buffer has (at least the hint) and may ask for more (src/core/body-writer.ts).
 */
export type { BodyWriter } from '../core/body-writer.js';

export type Body = Buffer | Uint8Array | string | BodyWriter;

/** Where a publish's outcome goes when it is not a promise (the recovery layer); called once, either one. */
export interface PublishSink {
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
}

export interface PublishOptions {
  /** Return the message (and fail the publish) when no queue is bound to take it. */
  mandatory?: boolean;
  /**
   * Deadline in ms for buffer waits and the confirm (default: the connection's publishTimeout). One shorter than the
   * negotiated heartbeat timeout is refused (ArgumentError, ARGUMENT_INVALID): it would fail publishes that a live
   * connection can still confirm.
   */
  timeout?: number;
  /** false: fail with `buffer-full` instead of waiting when publishing must pause. */
  wait?: boolean;
}

/** What the pipeline needs to know of its channel. */
export interface PublishingChannel {
  readonly id: number;
  readonly isOpen: boolean;
}

/**
 * One publish from the call to its outcome: the same object waits in the queue (when publishing must pause), and
 * then is the pending confirm, so a publish costs one allocation besides its promise. The body is dropped once
 * written: the tracker must not keep 20,000 bodies alive until their confirms.
 */
class Job implements PendingConfirm {
  declare readonly exchange: string;
  declare readonly routingKey: string;
  declare body: Buffer | string | BodyWriter | null;
  declare readonly bodyLen: number;
  declare readonly properties: MessageProperties | undefined;
  declare readonly propsSize: number;
  declare readonly mandatory: boolean;
  declare readonly timeout: number;
  declare readonly deadline: number;
  declare resolve: () => void;
  declare reject: (e: Error) => void;
  declare returned: PendingConfirm['returned'];
  declare messageId: string | undefined;
  declare cost: number;
  constructor(
    exchange: string,
    routingKey: string,
    body: Buffer | string | BodyWriter | null,
    bodyLen: number,
    properties: MessageProperties | undefined,
    propsSize: number,
    mandatory: boolean,
    timeout: number,
    deadline: number,
  ) {
    this.exchange = exchange;
    this.routingKey = routingKey;
    this.body = body;
    this.bodyLen = bodyLen;
    this.properties = properties;
    this.propsSize = propsSize;
    this.mandatory = mandatory;
    this.timeout = timeout;
    this.deadline = deadline;
    this.resolve = noop;
    this.reject = noop;
    this.returned = undefined;
    this.messageId = properties?.messageId;
    this.cost = 0;
  }
}

/** Bookkeeping per waiting publish, counted against publishQueueBytes. */
const WAIT_OVERHEAD = 256;
const RESOLVED: Promise<void> = Promise.resolve();
const noop = (): void => {};

/** `Call`: the channel's synchronous calls, which wait behind publishes and are written by `writeCall`. */
export class Publisher<Call extends object> {
  #confirms: ConfirmTracker | null = null;
  #flowActive = true;
  /** Publishes waiting to be written, in call order, and the synchronous calls made after them. */
  #waiting: (Job | Call)[] = [];
  #waitingHead = 0;
  #waitingBytes = 0;
  #timer: ReturnType<typeof setInterval> | null = null;
  #sweepEvery = Infinity;
  readonly #id: number;
  readonly #channel: PublishingChannel;
  readonly #host: ChannelHost;
  readonly #writeCall: (call: Call) => void;

  constructor(channel: PublishingChannel, host: ChannelHost, writeCall: (call: Call) => void) {
    this.#id = channel.id;
    this.#channel = channel;
    this.#host = host;
    this.#writeCall = writeCall;
  }

  /** In confirm mode (confirm.select was written). */
  get confirming(): boolean {
    return this.#confirms !== null;
  }

  /** In confirm mode: publishes not yet acked or nacked. */
  get unconfirmed(): number {
    return this.#confirms?.size ?? 0;
  }

  /** confirm.select was written: publishes written after it are numbered by the broker from 1, even before select-ok. */
  selectConfirms(): void {
    this.#confirms ??= new ConfirmTracker();
  }

  /** basicPublish on an open channel: see Channel.basicPublish. */
  publish(
    exchange: string,
    routingKey: string,
    body: Body,
    properties: MessageProperties | undefined,
    options: PublishOptions | undefined,
  ): Promise<void> {
    let job: Job;
    try {
      const timeout = this.#timeout(options?.timeout);
      job = this.#prepare(
        exchange,
        routingKey,
        body,
        properties,
        options?.mandatory ?? false,
        timeout,
        Date.now() + timeout,
      );
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.#confirms === null && this.#waitingHead === this.#waiting.length && this.#canPublish()) {
      try {
        this.#write(job);
      } catch (err) {
        return Promise.reject(err);
      }
      return RESOLVED;
    }
    const p = new Promise<void>((resolve, reject) => {
      job.resolve = resolve;
      job.reject = reject;
    });
    // The caller may drop the promise; a failure must never become an unhandled rejection that kills the process.
    p.catch(noop);
    this.#dispatch(job, options?.wait ?? true);
    return p;
  }

  /** Channel._publish on an open channel: the outcome goes to `sink`; `deadline` was set when the application called. */
  publishTo(
    sink: PublishSink,
    exchange: string,
    routingKey: string,
    body: Body,
    properties: MessageProperties | undefined,
    mandatory: boolean,
    deadline: number,
  ): void {
    let job: Job;
    try {
      job = this.#prepare(
        exchange,
        routingKey,
        body,
        properties,
        mandatory,
        Math.max(1, deadline - Date.now()),
        deadline,
      );
    } catch (err) {
      return sink.reject(err as Error);
    }
    job.resolve = sink.resolve;
    job.reject = sink.reject;
    this.#dispatch(job, true);
  }

  /** Queues a synchronous call behind the publishes that wait; false when none waits (write it now). */
  defer(call: Call): boolean {
    if (this.#waitingHead === this.#waiting.length) return false;
    this.#waiting.push(call);
    return true;
  }

  /** Conditions changed (drain, unblocked, flow on, confirms arrived): sends what waits, in order. */
  resume(): void {
    // Only here can the channel be other than open: publish() and publishTo() are called on an open channel.
    if (!this.#channel.isOpen) return;
    while (this.#waitingHead < this.#waiting.length) {
      const w = this.#waiting[this.#waitingHead] as Job | Call;
      if (w instanceof Job) {
        if (!this.#canPublish()) break;
        this.#waitingBytes -= w.cost;
        this.#waiting[this.#waitingHead++] = undefined as unknown as Job;
        this.#send(w);
      } else {
        this.#waiting[this.#waitingHead++] = undefined as unknown as Job;
        this.#writeCall(w);
      }
    }
    if (this.#waitingHead === this.#waiting.length && this.#waitingHead > 0) {
      this.#waiting = [];
      this.#waitingHead = 0;
    }
  }

  /** The broker sent channel.flow: publishing pauses while it is off (the channel resumes it once answered). */
  setFlow(active: boolean): void {
    this.#flowActive = active;
  }

  /** A basic.ack or basic.nack frame from the broker (payload of 13 bytes: method id, delivery-tag, bits). */
  confirm(p: Buffer, ack: boolean): void {
    if (p.length !== 13)
      throw new FrameError(`basic.${ack ? 'ack' : 'nack'}: expected 13 bytes of payload, got ${p.length}`, 501);
    const hi = p.readUInt32BE(4);
    if (hi > 0x1fffff) throw new FrameError('confirm delivery-tag beyond 2^53', 502);
    const tag = hi * 0x100000000 + p.readUInt32BE(8);
    const multiple = ((p[12] as number) & 1) !== 0;
    if (this.#confirms === null)
      throw channelFrameError(this.#id, `basic.${ack ? 'ack' : 'nack'} without confirm mode`);
    if (ack) this.#confirms.ack(tag, multiple);
    else this.#confirms.nack(tag, multiple);
    if (this.#waitingHead < this.#waiting.length) this.resume();
  }

  /** A basic.return arrived: its publish (if it still waits for its confirm) fails as `returned` at the ack. */
  returned(exchange: string, routingKey: string, messageId: string | undefined, code: number, text: string): void {
    this.#confirms?.markReturned(exchange, routingKey, messageId, code, text);
  }

  /** The channel is closing: nothing more is written; publishes already written can still be confirmed. */
  failWaiting(cause: Error): void {
    const waiting = this.#waiting.slice(this.#waitingHead);
    this.#waiting = [];
    this.#waitingHead = 0;
    this.#waitingBytes = 0;
    for (const w of waiting) {
      if (w instanceof Job)
        w.reject(new PublishError('closed', 'the channel closed before the publish was sent', { cause }));
    }
  }

  /** The channel closed: every publish still waiting or unconfirmed fails, as `closed`. */
  end(cause: Error): void {
    this.#stopSweep();
    this.failWaiting(cause);
    this.#confirms?.failAll(cause);
  }

  /** A publish's deadline in ms: the one asked for (see checkPublishTimeout) or the default, raised likewise. */
  #timeout(requested: number | undefined): number {
    const floor = this.#host.heartbeat * 1000;
    // Raised here as well as in resolveOptions: heartbeat 0 takes the broker's value, known only after tune.
    return requested === undefined
      ? Math.max(this.#host.options.publishTimeout, floor)
      : checkPublishTimeout(requested, floor);
  }

  /** Sends a publish whose outcome callbacks are set, or queues it when publishing must pause. */
  #dispatch(job: Job, wait: boolean): void {
    if (this.#waitingHead < this.#waiting.length || !this.#canPublish()) return this.#enqueue(job, wait);
    if (this.#confirms !== null) return this.#send(job);
    if (this.#written(job)) job.resolve();
  }

  #write(job: Job): void {
    writeMessage(this.#host.out, this.#id, this.#host.frameMax, job);
  }

  /** Writes a publish whose promise exists already; false, with the promise rejected, when that failed. */
  #written(job: Job): boolean {
    try {
      this.#write(job);
      return true;
    } catch (err) {
      // Nothing was committed to the output: the broker never sees this message, and the sequence is unchanged.
      job.reject(err as Error);
      return false;
    }
  }

  #prepare(
    exchange: string,
    routingKey: string,
    body: Body,
    properties: MessageProperties | undefined,
    mandatory: boolean,
    timeout: number,
    deadline: number,
  ): Job {
    shortstrSize(exchange, 'exchange');
    shortstrSize(routingKey, 'routingKey');
    const propsSize = propertiesSize(properties);
    if (12 + propsSize + 8 > this.#host.frameMax)
      throw new ArgumentError(
        `properties of ${propsSize} bytes do not fit in one frame (frame_max ${this.#host.frameMax})`,
      );
    let b: Buffer | string | BodyWriter;
    let bodyLen: number;
    if (typeof body === 'string') {
      bodyLen = Buffer.byteLength(body);
      // A string spanning several frames is converted once, so it can be cut at byte boundaries.
      b = bodyLen > this.#host.frameMax - 8 ? Buffer.from(body) : body;
    } else if (body instanceof Uint8Array) {
      b = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.length);
      bodyLen = body.length;
    } else if (isBodyWriter(body)) {
      b = body;
      bodyLen = body.maxBytes;
    } else {
      throw new ArgumentError('body: expected a Buffer, Uint8Array, string or BodyWriter');
    }
    return new Job(exchange, routingKey, b, bodyLen, properties, propsSize, mandatory, timeout, deadline);
  }

  /** Whether a publish may be written now, on an open channel. */
  #canPublish(): boolean {
    return (
      this.#flowActive &&
      !this.#host.blocked &&
      this.#host.backlog() < this.#host.options.writeBufferBytes &&
      (this.#confirms === null || this.#confirms.size < this.#host.options.maxUnconfirmed)
    );
  }

  /** Writes a publish whose promise exists already; settles it now (no confirms) or hands it to the tracker. */
  #send(job: Job): void {
    if (!this.#written(job)) return;
    job.body = null;
    if (this.#confirms === null) return job.resolve();
    this.#confirms.add(this.#confirms.nextSeq++, job);
    this.#armTimer(job.timeout);
  }

  #enqueue(job: Job, wait: boolean): void {
    const cost = (typeof job.body === 'string' || Buffer.isBuffer(job.body) ? job.bodyLen : 0) + WAIT_OVERHEAD;
    if (!wait || this.#waitingBytes + cost > this.#host.options.publishQueueBytes) {
      const why = this.#host.blocked
        ? 'the broker blocked the connection'
        : !this.#flowActive
          ? 'the broker paused the channel (flow)'
          : 'the write buffer is full';
      return job.reject(
        new PublishError('buffer-full', `cannot publish now: ${why}${wait ? ' and the publish queue is full' : ''}`),
      );
    }
    job.cost = cost;
    this.#waiting.push(job);
    this.#waitingBytes += cost;
    this.#armTimer(job.timeout);
  }

  /** Deadlines are checked by one sweep per channel, at a quarter of the shortest deadline in use (50 ms - 1 s). */
  #armTimer(timeout: number): void {
    const every = Math.max(50, Math.min(1000, timeout / 4));
    if (this.#timer !== null) {
      if (every >= this.#sweepEvery) return;
      clearInterval(this.#timer);
    }
    this.#sweepEvery = every;
    // Kept referenced: pending publishes are pending work, and the sweep stops when none is left.
    this.#timer = setInterval(() => this.#sweep(), every);
  }

  #sweep(): void {
    const now = Date.now();
    if (this.#confirms !== null) this.#confirms.expire(now);
    let live = 0;
    for (let i = this.#waitingHead; i < this.#waiting.length; i++) {
      const w = this.#waiting[i] as Job | Call;
      if (!(w instanceof Job) || w.deadline > now) {
        this.#waiting[this.#waitingHead + live++] = w;
        continue;
      }
      this.#waitingBytes -= w.cost;
      w.reject(
        new PublishError(
          'timeout',
          'the publish waited past its deadline without being sent' +
            (this.#host.blocked ? ' (the broker blocked the connection)' : ''),
        ),
      );
    }
    this.#waiting.length = this.#waitingHead + live;
    if ((this.#confirms === null || this.#confirms.size === 0) && live === 0) this.#stopSweep();
    this.resume();
  }

  #stopSweep(): void {
    if (this.#timer === null) return;
    clearInterval(this.#timer);
    this.#timer = null;
    this.#sweepEvery = Infinity;
  }
}

/**
 * A publish deadline asked for explicitly, in ms (PUB-7): an integer no shorter than the heartbeat timeout (`floorMs`,
 * 0: none), because until the heartbeat declares the connection dead, its confirm can still come. A shorter one is
 * refused rather than silently stretched: the caller would count on a deadline this client does not keep.
 */
export function checkPublishTimeout(timeout: unknown, floorMs: number): number {
  const t = checkInt(timeout, 1, 2 ** 31 - 1, 'timeout');
  if (t < floorMs)
    throw new ArgumentError(
      `timeout: ${t} ms is shorter than the heartbeat timeout of ${floorMs / 1000} s; expected at least ${floorMs} ms`,
    );
  return t;
}
