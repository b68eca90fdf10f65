/**
 * The synchronous calls of a channel (spec §2.2.2): requests the broker answers with a reply method (declare /
 * declare-ok ...). One is in flight at a time, the rest wait in call order, and each reply must answer the call in
 * flight: any other is a protocol error (505 UNEXPECTED_FRAME), as the broker never reorders them.
 *
 *   call() --encoded (arguments checked before anything is queued)--> queued --at the head: written--> in flight
 *   reply() --resolves the call in flight, writes the next one
 *
 * A call made while publishes wait goes out behind them (the publish pipeline's defer()).
 */

import { channelFrameError } from './errors.js';
import type { Message } from './message.js';
import { encodeMethodFrame } from './methods.js';
import type { Output } from './output.js';
import type { Method, MethodName } from './spec.js';

export interface Rpc {
  readonly name: MethodName;
  readonly frame: Buffer;
  readonly args: Record<string, unknown>;
  readonly expects: readonly MethodName[];
  readonly onSend: (() => void) | undefined;
  resolve(m: Method | Message | null): void;
  reject(e: Error): void;
}

export class RpcQueue {
  #rpcs: Rpc[] = [];
  readonly #id: number;
  readonly #out: Output;
  readonly #defer: (rpc: Rpc) => boolean;
  readonly #watch: (waiting: MethodName | undefined) => void;

  /**
   * `defer` queues a call behind waiting publishes and says whether it did (else the call is written now). `watch`
   * is told the call the broker now owes an answer to, when one is written, and undefined when none is owed.
   */
  constructor(
    channelId: number,
    out: Output,
    defer: (rpc: Rpc) => boolean,
    watch: (waiting: MethodName | undefined) => void = () => undefined,
  ) {
    this.#id = channelId;
    this.#out = out;
    this.#defer = defer;
    this.#watch = watch;
  }

  /** The call in flight, if any. */
  get current(): Rpc | undefined {
    return this.#rpcs[0];
  }

  /**
   * Queues a call; resolves with the reply (or what `onReply` makes of it, run as the reply is processed, before any
   * frame that follows it). `onSend` runs when the request is written.
   */
  call(
    name: MethodName,
    args: Record<string, unknown>,
    expects: readonly MethodName[],
    onReply?: (m: Method) => unknown,
    onSend?: () => void,
  ): Promise<Method> {
    let frame: Buffer;
    try {
      frame = encodeMethodFrame(this.#id, name, args);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<Method>((resolve, reject) => {
      const rpc: Rpc = {
        name,
        frame,
        args,
        expects,
        onSend,
        resolve: onReply === undefined ? (resolve as Rpc['resolve']) : (m) => resolve(onReply(m as Method) as Method),
        reject,
      };
      this.#rpcs.push(rpc);
      if (this.#rpcs.length === 1) this.#send(rpc);
    });
  }

  /** A reply from the broker: it must answer the call in flight, which fails with `error` when one is given. */
  reply(m: Method | Message | null, name: MethodName, error?: Error): void {
    const rpc = this.#rpcs[0];
    if (rpc === undefined || !rpc.expects.includes(name)) {
      throw channelFrameError(
        this.#id,
        `unexpected ${name}${rpc ? ` while waiting for ${rpc.expects.join(' or ')}` : ''}`,
      );
    }
    this.#rpcs.shift();
    this.#watch(undefined);
    const next = this.#rpcs[0];
    if (next !== undefined) this.#send(next);
    if (error === undefined) rpc.resolve(m);
    else rpc.reject(error);
  }

  /** A call that waited behind publishes is due: written if it is still the one in flight. */
  writeDeferred(rpc: Rpc): void {
    if (this.#rpcs[0] === rpc) this.#write(rpc);
  }

  /** Nothing more will be answered: every call fails with `err`. */
  failAll(err: Error): void {
    const rpcs = this.#rpcs;
    this.#rpcs = [];
    this.#watch(undefined);
    for (const r of rpcs) r.reject(err);
  }

  #send(rpc: Rpc): void {
    if (!this.#defer(rpc)) this.#write(rpc);
  }

  #write(rpc: Rpc): void {
    this.#out.write(rpc.frame);
    this.#watch(rpc.name);
    rpc.onSend?.();
  }
}
