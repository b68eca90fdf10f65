/**
 * The eBADGE connector: what a hub, a VPP, a DSO or a TSO uses to exchange typed messages with its peers (D3.2.1
 * §4.2's `Connector` and `AbstractConsumer`, in TypeScript idiom).
 *
 *   const bus = new Connector({ name: 'vpp-acme', peers: ['heh-b827ebea02c1'] });
 *   bus.onReport(async (report, ctx) => { store(ctx.sender, report); });
 *   await bus.start();
 *   const report = await bus.request('heh-b827ebea02c1', { msg: 'get_report', ... });   // resolves with the report
 *
 * What happens to an incoming message, in order (data model §3.5, §3.8):
 *  1. sealed (HEH-E2E) bodies are opened; a peer with keys that sends in the clear is refused;
 *  2. decoded and validated by the codec: a failure never reaches a handler, is dead-lettered, and is answered
 *     with a `response` carrying the codec's code when the message had a `msg_id`;
 *  3. duplicates (the same message id within the queue TTL) are acked and dropped;
 *  4. a reply to one of our `request`s settles it; anything else goes to the handler of its type. Handlers are
 *     fixed before `start()` (handle() throws after it), so a type without a handler is one this connector does not
 *     handle at all: it is answered 453 and acked (data model §3.6), never a message that came too early;
 *  5. the message is acked only after the handler succeeded. A handler that throws gets the message again,
 *     until the delivery limit, then it is dead-lettered with the error in a header. A `msg_id` is answered
 *     exactly once: by the handler (ctx.respond / a `response` reply) or by the connector (200, or 500 after the
 *     last failed attempt).
 */
import { randomUUID } from 'node:crypto';
import type { RecoveringConnection, RecoveryOptions } from '../amqp/index.js';
import {
  DecodeError,
  type DecodeLimits,
  decode,
  encode,
  type Message,
  type MessageType,
  SCHEMAS,
} from '../codec/index.js';
import { TypedEmitter } from '../core/emitter.js';
import { CryptoError, type Opened, type Sealer } from '../crypto/index.js';
import { AmqpTransport, type Topology } from './amqp-transport.js';
import { SeenIds } from './dedupe.js';
import { BusError } from './errors.js';
import type { Incoming, Transport } from './transport.js';

export const CONTENT_TYPE_JSON = 'application/json';
export const CONTENT_TYPE_SEALED = 'application/vnd.ebadge.heh-e2e';
/** The data model version we speak (§3.7): 3.1, this project's catalogue; a peer without the header is 3.0. */
export const DM_VERSION = '3.1';

export interface HandlerContext {
  /** The peer that sent the message (vouched for by the transport, and by the signature when sealed). */
  readonly sender: string;
  /** The delivery as the transport gave it; `delivery.raw` is the AMQP Message. */
  readonly delivery: Incoming;
  /** The transport underneath (an AmqpTransport exposes `connection` and `channel`). */
  readonly transport: Transport;
  /** What the codec tolerated in this message (errata, unknown fields). */
  readonly diagnostics: readonly string[];
  /** True when the message came sealed end to end. */
  readonly sealed: boolean;
  /** Sends `message` to the sender, correlated: `request_id` echoed, `msg_id` answered, correlation_id set. */
  reply(message: Message): Promise<void>;
  /** The `response` to the message's `msg_id` (at most one is ever sent). */
  respond(code: number, description?: string, subcode?: number): Promise<void>;
  /** Decide yourself: ack now (the connector then does nothing more), or give it back / drop it. */
  ack(): void;
  nack(requeue?: boolean): void;
}

export type Handler<T extends MessageType> = (message: Message<T>, ctx: HandlerContext) => void | Promise<void>;

type Pascal<S extends string> = S extends `${infer H}_${infer T}` ? `${Capitalize<H>}${Pascal<T>}` : Capitalize<S>;
/** `onGetReport(handler)`, `onActivate(handler)` ...: one typed method per message type. */
export type TypedHandlerMethods = { [K in MessageType as `on${Pascal<K>}`]: (handler: Handler<K>) => Connector };

export interface ConnectorOptions {
  /** Our entity name: the RabbitMQ user (`heh-<mac>`, `vpp-acme` ...). */
  name: string;
  /** The entities we talk to. */
  peers: readonly string[];
  /** A transport of your own; otherwise an AmqpTransport is made from the options below. */
  transport?: Transport;
  /** How to connect; the connection recovers by itself (RecoveryOptions: endpoints, backoff, publish buffer). */
  url?: string | RecoveryOptions;
  connection?: RecoveringConnection;
  topology?: Topology;
  role?: 'hub' | 'controller';
  declareExchanges?: boolean;
  prefetch?: number;
  queueTtlMs?: number;
  queueType?: 'quorum' | 'classic';
  /** false: send only, never consume (see AmqpTransportOptions.consume). */
  consume?: boolean;
  /** End-to-end sealing with the peers that have keys in its keyring. */
  sealer?: Sealer;
  limits?: DecodeLimits;
  /** Deliveries of one message (its first included) before a failing handler's message is dead-lettered (default 5). */
  deliveryLimit?: number;
  /** Message ids remembered for dropping duplicates (default 10,000 for 15 minutes). */
  dedupe?: { capacity?: number; ttlMs?: number };
  /** Default timeout of `request` (default 5,000 ms: the data model's 5 s for acks and activation decisions). */
  requestTimeoutMs?: number;
}

export interface ConnectorEvents {
  /** A message went to the dead-letter queue: why, and the code (a codec, crypto or bus code). */
  'dead-letter': [reason: string, code: string, delivery: Incoming];
  /** A handler threw; `final` when the message was dead-lettered for it. */
  'handler-error': [error: unknown, type: string, final: boolean];
  /** A valid message nobody handles (no handler for its type, or a reply that came after its request gave up). */
  unhandled: [message: Message, sender: string];
  /** A duplicate was dropped. */
  duplicate: [messageId: string, sender: string];
}

interface Pending {
  resolve(m: Message): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
  keys: string[];
}

const has = (type: string, field: string): boolean =>
  Object.hasOwn((SCHEMAS as Record<string, { fields: object }>)[type]?.fields ?? {}, field);

const REQUEST_REPLIES = new Set([
  'get_report',
  'get_periodic_report',
  'get_energy_events',
  'get_activation_capacity',
  'get_all_prices',
  'get_status_report',
  'get_capabilities',
  'balancing_unachievable',
]);

// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the merged interface only types the onX methods defined on the prototype below
export class Connector extends TypedEmitter<ConnectorEvents> {
  readonly name: string;
  readonly transport: Transport;
  readonly #o: ConnectorOptions;
  readonly #handlers = new Map<string, Handler<MessageType>>();
  readonly #peers: ReadonlySet<string>;
  readonly #pending = new Map<string, Pending>();
  readonly #seen: SeenIds;
  /** Messages being handled, by `<sender>:<id>`: a copy that arrives meanwhile waits for the first one's outcome. */
  readonly #inFlight = new Map<string, Promise<void>>();
  readonly #failures = new SeenIdsCounter();
  #started = false;
  #closed = false;
  #closing: Promise<void> | undefined;
  #active = 0;

  constructor(options: ConnectorOptions) {
    super();
    this.#o = options;
    this.name = options.name;
    this.#peers = new Set(options.peers);
    this.transport =
      options.transport ??
      new AmqpTransport({
        name: options.name,
        peers: options.peers,
        ...(options.url === undefined ? {} : { url: options.url }),
        ...(options.connection === undefined ? {} : { connection: options.connection }),
        ...(options.topology === undefined ? {} : { topology: options.topology }),
        ...(options.role === undefined ? {} : { role: options.role }),
        ...(options.declareExchanges === undefined ? {} : { declareExchanges: options.declareExchanges }),
        ...(options.prefetch === undefined ? {} : { prefetch: options.prefetch }),
        ...(options.queueTtlMs === undefined ? {} : { queueTtlMs: options.queueTtlMs }),
        ...(options.consume === undefined ? {} : { consume: options.consume }),
        ...(options.queueType === undefined ? {} : { queueType: options.queueType }),
      });
    this.#seen = new SeenIds(
      options.dedupe?.capacity ?? 10_000,
      options.dedupe?.ttlMs ?? options.queueTtlMs ?? 900_000,
    );
  }

  /**
   * Registers the handler of one message type (replacing an earlier one). Only before `start()`: consuming begins
   * there, and a message that arrives before its type has a handler is answered 453 and acked, so a handler added
   * later would silently miss (and lose) every message already waiting in the queue.
   */
  handle<T extends MessageType>(type: T, handler: Handler<T>): this {
    if (!Object.hasOwn(SCHEMAS, type)) throw new BusError('CONFIG', `unknown message type "${type}"`);
    if (this.#started)
      throw new BusError(
        'CONFIG',
        `${this.name}: the ${type} handler was registered after start(); handlers must be registered before start(), ` +
          'or the messages already waiting in the queue are answered 453 and acked without ever reaching them',
      );
    this.#handlers.set(type, handler as unknown as Handler<MessageType>);
    return this;
  }

  async start(): Promise<this> {
    if (this.#started) return this;
    this.#started = true;
    await this.transport.start(async (m) => {
      this.#active++;
      try {
        await this.#receive(m);
      } finally {
        this.#active--;
      }
    });
    return this;
  }

  /**
   * Stops: no new messages are taken, the handlers at work finish (up to `drainMs`, default 10 s), pending
   * requests fail with CLOSED, and the transport closes (anything still unsettled returns to the queue).
   */
  close(drainMs = 10_000): Promise<void> {
    this.#closing ??= this.#close(drainMs);
    return this.#closing;
  }

  async #close(drainMs: number): Promise<void> {
    if (this.#started) {
      await this.transport.stopConsuming().catch(() => undefined);
      // Handlers still at work may reply: publishing stays open until they are done.
      const deadline = Date.now() + drainMs;
      while (this.#active > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    }
    this.#closed = true;
    for (const p of new Set(this.#pending.values()))
      this.#settle(p, new BusError('CLOSED', 'the connector was closed'));
    await this.transport.close();
  }

  /**
   * Sends a typed message to a peer: validated and encoded (an EncodeError for an invalid message, before
   * anything is sent), sealed when the peer has keys, published with confirms. Resolves when the broker has it.
   */
  async publish(
    peer: string,
    message: Message,
    options: { correlationId?: string; messageId?: string } = {},
  ): Promise<void> {
    if (this.#closed) throw new BusError('CLOSED', 'the connector was closed');
    if (!this.#peers.has(peer))
      throw new BusError('UNKNOWN_PEER', `"${peer}" is not a configured peer of ${this.name}`);
    const m = message as { msg_id?: unknown };
    await this.publishEncoded(peer, message.msg, encode(message), {
      routingKey: routingKeyOf(message),
      // A response's msg_id names the message it answers, so it is never the response's own id.
      messageId:
        options.messageId ?? (message.msg !== 'response' && typeof m.msg_id === 'string' ? m.msg_id : randomUUID()),
      ...(options.correlationId === undefined ? {} : { correlationId: options.correlationId }),
    });
  }

  /**
   * Sends a message already encoded (and validated) by the codec, e.g. one kept in the hub's outbox: sealed when
   * the peer has keys, published with confirms.
   */
  async publishEncoded(
    peer: string,
    type: MessageType,
    encoded: Uint8Array,
    options: { routingKey: string; messageId: string; correlationId?: string },
  ): Promise<void> {
    if (this.#closed) throw new BusError('CLOSED', 'the connector was closed');
    if (!this.#peers.has(peer))
      throw new BusError('UNKNOWN_PEER', `"${peer}" is not a configured peer of ${this.name}`);
    let body: Uint8Array = encoded;
    // Sealed when we have keys for this peer.
    const sealer = this.#o.sealer?.keyring.peers.has(peer) ? this.#o.sealer : undefined;
    const sealed = sealer !== undefined;
    if (sealer !== undefined) body = await sealer.seal({ peer }, type, body);
    await this.transport.send({
      to: peer,
      routingKey: options.routingKey,
      body,
      properties: {
        messageId: options.messageId,
        ...(options.correlationId === undefined ? {} : { correlationId: options.correlationId }),
        type,
        contentType: sealed ? CONTENT_TYPE_SEALED : CONTENT_TYPE_JSON,
        timestamp: new Date(),
        appId: this.name,
        headers: { 'x-ebadge-dm': DM_VERSION },
      },
    });
  }

  /**
   * Sends a request and resolves with its reply (data model §3.5): by `request_id` (set when absent) for the
   * get_* family, by (`id`, `modification_count`) for activate and modify_activation (accept or reject), by
   * `msg_id` (set when absent) and its `response` otherwise, by period and device for the first version's
   * get_load_report, and always by the AMQP correlation_id our peers set. A `response` with an error code for the request
   * rejects with BusError REJECTED; no reply in time rejects with BusError TIMEOUT.
   */
  async request<T extends MessageType>(
    peer: string,
    message: Message<T>,
    options: { timeout?: number } = {},
  ): Promise<Message> {
    const m = { ...message } as Record<string, unknown> & Message;
    const type = m.msg;
    const keys: string[] = [];
    if (type === 'activate' || type === 'modify_activation') {
      keys.push(`act:${peer}:${String(m['id'])}:${String(m['modification_count'])}`, `id:${peer}:${String(m['id'])}`);
    } else if (REQUEST_REPLIES.has(type) && has(type, 'request_id')) {
      if (typeof m['request_id'] !== 'string') m['request_id'] = randomUUID();
      keys.push(`req:${peer}:${m['request_id'] as string}`);
    } else if (has(type, 'msg_id')) {
      if (typeof m['msg_id'] !== 'string') m['msg_id'] = randomUUID();
      keys.push(`msg:${peer}:${m['msg_id'] as string}`);
    } else if (type === 'get_load_report') {
      // The first version has no ids: its peers answer with the same period and device (data model §3.5 rule 1).
      keys.push(`v1:${peer}:${v1Key(m)}`);
    }
    if (typeof m['msg_id'] === 'string' && !keys.includes(`msg:${peer}:${m['msg_id']}`))
      keys.push(`msg:${peer}:${m['msg_id']}`);
    // Our own peers also set correlation_id to the request's message id, whatever the type.
    const messageId = type !== 'response' && typeof m['msg_id'] === 'string' ? m['msg_id'] : randomUUID();
    keys.push(`cor:${peer}:${messageId}`);
    const timeout = options.timeout ?? this.#o.requestTimeoutMs ?? 5000;
    const reply = new Promise<Message>((resolve, reject) => {
      const p: Pending = {
        resolve,
        reject,
        keys,
        timer: setTimeout(
          () => this.#settle(p, new BusError('TIMEOUT', `no reply to ${type} from ${peer} within ${timeout} ms`)),
          timeout,
        ),
      };
      for (const k of keys) this.#pending.set(k, p);
    });
    reply.catch(() => undefined);
    try {
      await this.publish(peer, m, { messageId });
    } catch (err) {
      const p = this.#pending.get(keys[0] as string);
      if (p !== undefined) this.#settle(p, err as Error);
    }
    return reply;
  }

  #settle(p: Pending, outcome: Message | Error): void {
    clearTimeout(p.timer);
    for (const k of p.keys) if (this.#pending.get(k) === p) this.#pending.delete(k);
    if (outcome instanceof Error) p.reject(outcome);
    else p.resolve(outcome);
  }

  /** The pending request this message answers, if any. */
  #pendingFor(sender: string, m: Message, correlationId: string | undefined): Pending | undefined {
    const x = m as Record<string, unknown>;
    const tries: string[] = [];
    if (m.msg === 'accept_activation' || m.msg === 'reject_activation')
      tries.push(`act:${sender}:${String(x['id'])}:${String(x['modification_count'])}`);
    if (typeof x['request_id'] === 'string') tries.push(`req:${sender}:${x['request_id']}`);
    if (m.msg === 'response') {
      if (typeof x['msg_id'] === 'string') tries.push(`msg:${sender}:${x['msg_id']}`);
      if (typeof x['id'] === 'string') tries.push(`id:${sender}:${x['id']}`);
    }
    if (m.msg === 'load_report') tries.push(`v1:${sender}:${v1Key(x)}`);
    if (correlationId !== undefined) tries.push(`cor:${sender}:${correlationId}`);
    for (const k of tries) {
      const p = this.#pending.get(k);
      if (p !== undefined) return p;
    }
    return undefined;
  }

  async #receive(d: Incoming): Promise<void> {
    const sender = d.from;
    if (sender === undefined) {
      await this.#deadLetter(d, 'the sender is not a configured peer', 'UNKNOWN_SENDER');
      return;
    }
    // A copy of a message still being handled (a redelivery after a reconnect or a consumer timeout, whose first
    // copy's ack can no longer reach the broker) waits for that outcome: acked as a duplicate if the first copy
    // was handled, handled itself if the first one failed. Acking it at once would lose the message.
    if (d.messageId !== undefined) await this.#afterInFlight(`${sender}:${d.messageId}`);
    const dm = d.headers['x-ebadge-dm'];
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
    const sealer = this.#o.sealer;
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
          this.emitSafe('duplicate', d.messageId ?? '', sender);
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
      ({ message, diagnostics } = decode(body, this.#o.limits));
      if (opened !== undefined && opened.type !== message.msg)
        throw new DecodeError(400, 'message.msg', `the envelope says ${opened.type}`);
    } catch (err) {
      opened?.release();
      if (!(err instanceof DecodeError)) throw err;
      await this.#refuse(d, sender, err.code, err.message, `DECODE_${err.code}`, msgIdOf(body));
      return;
    }
    // 3. Duplicates.
    // A response's msg_id names the message it answers (see publish), never the response itself.
    const id = d.messageId ?? (message.msg === 'response' ? undefined : (message as { msg_id?: string }).msg_id);
    const dedupeKey = id === undefined ? undefined : `${sender}:${id}`;
    if (dedupeKey !== undefined && this.#inFlight.has(dedupeKey)) {
      opened?.release();
      await this.#afterInFlight(dedupeKey);
      if (!this.#seen.has(dedupeKey)) return this.#receive(d); // the first copy failed: this one is the message now
    }
    if (dedupeKey !== undefined && this.#seen.has(dedupeKey)) {
      opened?.release();
      d.ack();
      this.emitSafe('duplicate', id as string, sender);
      return;
    }
    // 4. A reply we are waiting for.
    const pending = this.#pendingFor(sender, message, d.correlationId);
    if (pending !== undefined) {
      await opened?.commit();
      d.ack();
      if (dedupeKey !== undefined) this.#seen.add(dedupeKey);
      const x = message as { response_code?: number; response_desc?: string };
      if (message.msg === 'response' && typeof x.response_code === 'number' && x.response_code >= 400) {
        this.#settle(
          pending,
          new BusError('REJECTED', `${sender} answered ${x.response_code} ${x.response_desc ?? ''}`.trim(), {
            reply: message,
          }),
        );
      } else {
        this.#settle(pending, message);
      }
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
      await this.#dispatch(d, sender, message, diagnostics, opened);
    } finally {
      if (dedupeKey !== undefined) this.#inFlight.delete(dedupeKey);
      done?.();
    }
  }

  async #afterInFlight(key: string): Promise<void> {
    for (let going = this.#inFlight.get(key); going !== undefined; going = this.#inFlight.get(key)) await going;
  }

  async #dispatch(
    d: Incoming,
    sender: string,
    message: Message,
    diagnostics: string[],
    opened: Opened | undefined,
  ): Promise<void> {
    const x = message as { msg_id?: string | null; request_id?: string; id?: string };
    // A `response` is never answered: its msg_id names the message it answers (answering it would ping-pong).
    const msgId = message.msg !== 'response' && typeof x.msg_id === 'string' ? x.msg_id : undefined;
    const id = d.messageId ?? msgId;
    const dedupeKey = id === undefined ? undefined : `${sender}:${id}`;
    let settled = false;
    let responded = false;
    const ctx: HandlerContext = {
      sender,
      delivery: d,
      transport: this.transport,
      diagnostics,
      sealed: opened !== undefined,
      reply: async (reply) => {
        const r = { ...reply } as Record<string, unknown> & Message;
        if (x.request_id !== undefined && has(r.msg, 'request_id') && r['request_id'] === undefined)
          r['request_id'] = x.request_id;
        if (r.msg === 'response' && msgId !== undefined && r['msg_id'] === undefined) r['msg_id'] = msgId;
        if (r.msg === 'response' && r['msg_id'] === msgId) {
          if (responded) return;
          responded = true;
        }
        await this.publish(sender, r, d.messageId === undefined ? {} : { correlationId: d.messageId });
      },
      respond: async (code, description, subcode) => {
        if (msgId === undefined || responded) return;
        responded = true;
        await this.publish(
          sender,
          response(msgId, code, description ?? (code < 400 ? 'OK' : 'error'), subcode, message),
          d.messageId === undefined ? {} : { correlationId: d.messageId },
        );
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
            .catch((err: unknown) => this.emitSafe('handler-error', err, message.msg, true));
      },
    };
    const handler = this.#handlers.get(message.msg);
    // Handlers cannot change after start(), so no handler means "not handled here" (§3.6), not "not registered yet".
    if (handler === undefined) {
      this.emitSafe('unhandled', message, sender);
      await opened?.commit();
      if (msgId !== undefined) await ctx.respond(453, `${message.msg} is not handled by ${this.name}`);
      d.ack();
      return;
    }
    try {
      await handler(message, ctx);
    } catch (err) {
      const failures = Math.max(d.deliveryCount, this.#failures.get(dedupeKey)) + 1;
      const final = failures >= (this.#o.deliveryLimit ?? 5);
      this.emitSafe('handler-error', err, message.msg, final);
      opened?.release();
      if (settled) return;
      if (!final) {
        this.#failures.add(dedupeKey);
        d.retry();
        return;
      }
      this.#failures.delete(dedupeKey);
      await ctx.respond(
        500,
        `${message.msg} failed ${failures} times: ${(err as Error)?.message ?? String(err)}`.slice(0, 1024),
      );
      await this.#deadLetter(
        d,
        `the handler failed ${failures} times: ${(err as Error)?.stack ?? String(err)}`,
        'HANDLER_FAILED',
      );
      if (dedupeKey !== undefined) this.#seen.add(dedupeKey);
      return;
    }
    this.#failures.delete(dedupeKey);
    if (settled) return;
    await opened?.commit();
    if (msgId !== undefined) await ctx.respond(200, 'OK');
    if (dedupeKey !== undefined) this.#seen.add(dedupeKey);
    d.ack();
  }

  /** Dead-letters an invalid message and, when it carried a msg_id, answers it with the code. */
  async #refuse(
    d: Incoming,
    sender: string,
    code: number,
    reason: string,
    deadCode: string,
    msgId?: string,
  ): Promise<void> {
    if (msgId !== undefined) {
      await this.publish(
        sender,
        response(msgId, code, reason.slice(0, 1024), undefined, undefined),
        d.messageId === undefined ? {} : { correlationId: d.messageId },
      ).catch((err: unknown) => this.emitSafe('handler-error', err, 'response', false));
    }
    await this.#deadLetter(d, reason, deadCode);
  }

  async #deadLetter(d: Incoming, reason: string, code: string): Promise<void> {
    this.emitSafe('dead-letter', reason, code, d);
    await d.deadLetter(reason, code);
  }

  protected listenerFailed(err: unknown, event: string): void {
    process.emitWarning(`a listener of the connector's ${event} event threw: ${String(err)}`);
  }
}

/** Declaration merging: the typed per-type methods are added to the prototype below. */
export interface Connector extends TypedHandlerMethods {}

for (const type of Object.keys(SCHEMAS)) {
  const method = `on${type
    .split('_')
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join('')}`;
  Object.defineProperty(Connector.prototype, method, {
    value(this: Connector, handler: Handler<MessageType>) {
      return this.handle(type as MessageType, handler);
    },
    writable: true,
    configurable: true,
  });
}

function response(
  msgId: string | null,
  code: number,
  desc: string,
  subcode: number | undefined,
  about: Message | undefined,
): Message<'response'> {
  const r: Record<string, unknown> = { msg: 'response', msg_id: msgId, response_code: code, response_desc: desc };
  if (subcode !== undefined) r['response_subcode'] = subcode;
  if (about !== undefined) {
    r['ref_msg'] = about.msg;
    const a = about as { request_id?: string; id?: string };
    if (a.request_id !== undefined) r['request_id'] = a.request_id;
  }
  return r as Message<'response'>;
}

/** `<msg>` or `<msg>.<heh_id>` (D3.2.3). */
export function routingKeyOf(message: Message): string {
  const h = (message as { heh_id?: unknown }).heh_id;
  return typeof h === 'string' && h !== '' ? `${message.msg}.${h}` : message.msg;
}

function v1Key(m: Record<string, unknown>): string {
  return [String(m['from']), String(m['to']), String(m['resolution']), String(m['device'] ?? null)].join('|');
}

/** The msg_id of a body the codec refused, if it can still be read: the sender deserves its error response. */
function msgIdOf(body: Uint8Array): string | undefined {
  try {
    const v = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.length).toString('utf8')) as {
      msg?: unknown;
      msg_id?: unknown;
    };
    return v.msg !== 'response' && typeof v.msg_id === 'string' && /^[0-9a-fA-F-]{36}$/.test(v.msg_id)
      ? v.msg_id.toLowerCase()
      : undefined;
  } catch {
    return undefined;
  }
}

/** Failed deliveries per message id, for queues that do not count them (classic queues). Bounded like SeenIds. */
class SeenIdsCounter {
  readonly #counts = new Map<string, number>();
  get(key: string | undefined): number {
    return key === undefined ? 0 : (this.#counts.get(key) ?? 0);
  }
  add(key: string | undefined): void {
    if (key === undefined) return;
    this.#counts.set(key, this.get(key) + 1);
    if (this.#counts.size > 10_000) this.#counts.delete(this.#counts.keys().next().value as string);
  }
  delete(key: string | undefined): void {
    if (key !== undefined) this.#counts.delete(key);
  }
}
