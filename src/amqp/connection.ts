/**
 * The connection: socket, channel 0 and the channel table. Opening it (socket, TLS, the handshake's negotiation) is
 * in handshake.ts; its state goes connecting --socket--> handshake --open-ok--> open --close()--> closing --> closed.
 *
 * Every way a connection can end (our close, the broker's close, a socket error, a heartbeat timeout, a protocol
 * violation by the peer, a handshake timeout) goes through finish(), which fails every pending call, publish and
 * consumer exactly once and emits 'close' once. Nothing here throws into the event loop: the library never causes
 * an uncaught exception or an unhandled rejection, whatever the broker or the network does.
 *
 * It stays one file (over 500 lines): the handshake is already apart, and what is left is one state machine whose
 * every path ends in finish(), which is easiest to check when those paths sit next to it.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { TypedEmitter } from '../core/emitter.js';
import { saslResponse } from './auth.js';
import { Channel, type ChannelHost } from './channel.js';
import { AmqpError, AuthenticationError, BY_APP, ConnectionError, FrameError, replyCodeName } from './errors.js';
import { FRAME_HEARTBEAT, FRAME_METHOD, FrameReader, HEARTBEAT_FRAME, PROTOCOL_HEADER } from './frame.js';
import { checkStart, clientProperties, negotiate, openSocket } from './handshake.js';
import { Heartbeat } from './heartbeat.js';
import { decodeMethod, encodeMethodFrame } from './methods.js';
import { type ConnectOptions, parseUrl, type ResolvedOptions, resolveOptions } from './options.js';
import { Output } from './output.js';
import type { Method, MethodArgs, MethodName } from './spec.js';
import type { FieldTable } from './table.js';

type State = 'connecting' | 'handshake' | 'open' | 'closing' | 'closed';

export interface ConnectionEvents {
  /** The connection ended; `error` is undefined after our own clean close. */
  close: [error: Error | undefined];
  /** The broker stopped reading publishes (resource alarm): https://www.rabbitmq.com/docs/connection-blocked */
  blocked: [reason: string];
  unblocked: [];
  /** A user handler or listener threw; the connection carries on. */
  'handler-error': [error: unknown, where: string];
  /** The event loop stalled for `ms` beyond a heartbeat tick (a long synchronous handler). */
  lag: [ms: number];
}

export class Connection extends TypedEmitter<ConnectionEvents> implements ChannelHost {
  readonly options: ResolvedOptions;
  readonly out: Output;
  /** Negotiated at tune; until then, what we offer. */
  frameMax: number;
  channelMax = 0;
  /** Negotiated heartbeat timeout in seconds (0: none). */
  heartbeat = 0;
  blocked = false;
  serverProperties: FieldTable = {};
  /** Resolves (never rejects) when the connection has ended, with the reason (undefined after our clean close). */
  readonly closed: Promise<Error | undefined>;

  #state: State = 'connecting';
  #socket: Socket | TLSSocket | null = null;
  readonly #reader: FrameReader;
  readonly #channels = new Map<number, Channel>();
  #lastChannelId = 0;
  #beat: Heartbeat | null = null;
  #sentStartOk = false;
  #tuned = false;
  #handshake: { resolve(): void; reject(e: Error): void } | null = null;
  #timers: ReturnType<typeof setTimeout>[] = [];
  #blockedTimer: ReturnType<typeof setTimeout> | null = null;
  #socketError: Error | null = null;
  #closeError: Error | undefined;
  #resolveClosed!: (e: Error | undefined) => void;
  #secretUpdate: { resolve(): void; reject(e: Error): void } | null = null;

  constructor(options: ResolvedOptions) {
    super();
    this.options = options;
    this.frameMax = options.frameMax;
    this.out = new Output((chunks) => this.#writeChunks(chunks));
    // Before tune the peer may only send small frames (spec: up to FRAME-MIN-SIZE); accept up to 128 KiB for
    // brokers with large server properties, never what a huge frameMax option would allow.
    this.#reader = new FrameReader(
      (type, channel, payload) => this.#frame(type, channel, payload),
      Math.min(options.frameMax, 131072),
    );
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
  }

  /** True between open-ok and the start of closing. */
  get isOpen(): boolean {
    return this.#state === 'open';
  }

  /** @internal opens the socket and runs the handshake. */
  _start(): Promise<void> {
    const o = this.options;
    const p = new Promise<void>((resolve, reject) => {
      this.#handshake = { resolve, reject };
    });
    this.#timers.push(
      setTimeout(() => {
        this.#fail(
          new ConnectionError(
            'CONNECT_TIMEOUT',
            `no open connection to ${o.hostname}:${o.port} within ${o.connectTimeout} ms`,
          ),
        );
      }, o.connectTimeout),
    );
    let socket: Socket | TLSSocket;
    try {
      socket = openSocket(
        o,
        () => this.#sendProtocolHeader(),
        (chunk) => this.#data(chunk),
      );
    } catch (err) {
      // node:net and node:tls throw synchronously for invalid socket options (a bad key, a bad CA ...).
      this.#fail(
        new ConnectionError(
          o.tls ? 'TLS_ERROR' : 'SOCKET_ERROR',
          `cannot open the socket: ${(err as Error).message}`,
          undefined,
          { cause: err },
        ),
      );
      return p;
    }
    this.#socket = socket;
    // Nagle plus delayed ACK costs ~40 ms per round trip when publisher and consumer share a connection.
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    socket.on('error', (err) => {
      this.#socketError ??= err;
    });
    socket.on('close', () => this.#socketClosed());
    socket.on('drain', () => this.#resumeChannels());
    return p;
  }

  #sendProtocolHeader(): void {
    this.#state = 'handshake';
    this.#socket?.write(PROTOCOL_HEADER);
  }

  /** Opens a channel. */
  async createChannel(): Promise<Channel> {
    if (this.#state !== 'open') throw this.#notOpen();
    const id = this.#allocateChannelId();
    const ch = new Channel(id, this);
    this.#channels.set(id, ch);
    await ch._open();
    return ch;
  }

  /** Opens a channel in confirm mode: every publish on it resolves only when the broker has confirmed it. */
  async createConfirmChannel(): Promise<Channel> {
    const ch = await this.createChannel();
    await ch.confirmSelect();
    return ch;
  }

  /** Replaces the credentials of a live connection (OAuth 2 token refresh): connection.update-secret. */
  updateSecret(newSecret: string, reason: string): Promise<void> {
    if (this.#state !== 'open') return Promise.reject(this.#notOpen());
    if (this.#secretUpdate !== null)
      return Promise.reject(new AmqpError('BUSY', 'a secret update is already in flight'));
    try {
      this.out.write(encodeMethodFrame(0, 'connection.update-secret', { newSecret, reason }));
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) => {
      this.#secretUpdate = { resolve, reject };
    });
  }

  /** Closes cleanly: connection.close, then close-ok (or the closeTimeout) before the socket goes. */
  close(): Promise<void> {
    if (this.#state === 'closed') return Promise.resolve();
    if (this.#state === 'open') {
      this.#state = 'closing';
      this.#sendMethod('connection.close', { replyCode: 200, replyText: 'Goodbye', classId: 0, methodId: 0 });
      this.out.flush();
      this.#timers.push(setTimeout(() => this.#finish(undefined), this.options.closeTimeout));
    } else if (this.#state !== 'closing') {
      this.#fail(new ConnectionError('CLOSED', `the connection ${BY_APP} during the handshake`));
    }
    // Every way in (opening, open, already closing) waits for the same end.
    return this.closed.then(() => undefined);
  }

  // ---- ChannelHost ------------------------------------------------------------------------------------------------

  backlog(): number {
    return this.out.queued + (this.#socket?.writableLength ?? 0);
  }

  channelClosed(ch: Channel): void {
    if (this.#channels.get(ch.id) === ch) this.#channels.delete(ch.id);
  }

  handlerError(err: unknown, where: string): void {
    this.reportError(err, where, 'AmqpHandlerWarning');
  }

  /** @internal a channel's call went unanswered past rpcTimeout (ChannelHost.unanswered). */
  unanswered(channel: number, what: string, ms: number): void {
    this.#fail(
      new ConnectionError(
        'RPC_TIMEOUT',
        `the broker did not answer ${what} on channel ${channel} within ${ms} ms (rpcTimeout): a broker that ` +
          'answers heartbeats but not a method is broken, so the connection is closed',
      ),
    );
  }

  // ---- reading ----------------------------------------------------------------------------------------------------

  /** @internal the body frame being handed out is kept as it lies (content.ts): its chunk is not read into again. */
  keepFrame(): void {
    this.#reader.keep();
  }

  /** A chunk from the socket; true when no view of it was kept (the socket may read into it again). */
  #data(chunk: Buffer): boolean {
    if (this.#state === 'closed') return false;
    if (this.#beat !== null) this.#beat.received = true;
    if (this.#state === 'handshake' && !this.#sentStartOk && !this.#reader.pending) {
      // The broker answered our protocol header with its own: it does not speak 0-9-1.
      if (chunk[0] === 0x41) {
        const version = chunk.length >= 8 ? [...chunk.subarray(4, 8)].join('-') : '?';
        this.#fail(
          new ConnectionError(
            'PROTOCOL_MISMATCH',
            `the broker does not support AMQP 0-9-1 (it offered protocol ${version})`,
          ),
        );
        return false;
      }
      // Not a broker at all (read as a frame, "HTTP" was a frame of over a gigabyte).
      if (chunk.toString('latin1', 0, 5) === 'HTTP/') {
        this.#fail(
          new ConnectionError(
            'PROTOCOL_MISMATCH',
            'the server answered in HTTP, not AMQP: is the port an HTTP one (the management UI is 15672, AMQP 5672)?',
          ),
        );
        return false;
      }
    }
    try {
      this.#reader.push(chunk);
      return !this.#reader.chunkKept;
    } catch (err) {
      this.#fail(err);
      return false;
    }
  }

  #frame(type: number, channel: number, payload: Buffer): void {
    if (this.#state === 'closed') return;
    if (this.#beat !== null) this.#beat.framed = true;
    if (type === FRAME_HEARTBEAT) {
      if (channel !== 0) throw new FrameError(`heartbeat frame on channel ${channel}`, 501);
      return;
    }
    if (channel === 0) {
      if (type !== FRAME_METHOD) throw new FrameError(`frame type ${type} on channel 0`, 505);
      return this.#connectionMethod(decodeMethod(payload));
    }
    const ch = this.#channels.get(channel);
    if (ch === undefined) throw new FrameError(`frame for channel ${channel}, which is not open`, 504);
    ch._frame(type, payload);
  }

  #connectionMethod(m: Method): void {
    switch (m.name) {
      case 'connection.start':
        return this.#onStart(m.args);
      case 'connection.secure':
        // PLAIN, AMQPLAIN and EXTERNAL need no challenge; answer with the same response as start-ok.
        return this.#sendMethod('connection.secure-ok', { response: this.#saslResponse() });
      case 'connection.tune':
        return this.#onTune(m.args);
      case 'connection.open-ok':
        if (this.#state !== 'handshake') throw new FrameError('connection.open-ok outside the handshake', 505);
        this.#state = 'open';
        this.#clearTimers();
        this.#handshake?.resolve();
        this.#handshake = null;
        return;
      case 'connection.close':
        return this.#onClose(m.args);
      case 'connection.close-ok':
        if (this.#state !== 'closing') throw new FrameError('connection.close-ok without close', 505);
        return this.#finish(this.#closeError);
      case 'connection.blocked':
        return this.#onBlocked(m.args.reason);
      case 'connection.unblocked':
        return this.#onUnblocked();
      case 'connection.update-secret-ok': {
        const u = this.#secretUpdate;
        if (u === null) throw new FrameError('connection.update-secret-ok without update-secret', 505);
        this.#secretUpdate = null;
        return u.resolve();
      }
      default:
        throw new FrameError(`${m.name} is not valid on channel 0 from the broker`, 503);
    }
  }

  #onStart(a: MethodArgs['connection.start']): void {
    if (this.#state !== 'handshake' || this.#sentStartOk) throw new FrameError('unexpected connection.start', 505);
    const refused = checkStart(a, this.options);
    this.serverProperties = a.serverProperties;
    if (refused !== undefined) return this.#fail(refused);
    this.#sendMethod('connection.start-ok', {
      clientProperties: clientProperties(this.options),
      mechanism: this.options.mechanism,
      response: this.#saslResponse(),
      locale: 'en_US',
    });
    this.#sentStartOk = true;
  }

  #saslResponse(): Buffer {
    return saslResponse(this.options.mechanism, this.options.username, this.options.password);
  }

  #onTune(a: MethodArgs['connection.tune']): void {
    if (this.#state !== 'handshake' || !this.#sentStartOk || this.#tuned)
      throw new FrameError('unexpected connection.tune', 505);
    this.#tuned = true;
    const o = this.options;
    const { frameMax, channelMax, heartbeat } = negotiate(a, o);
    this.frameMax = frameMax;
    this.channelMax = channelMax;
    this.heartbeat = heartbeat;
    this.#reader.frameMax = frameMax;
    this.#sendMethod('connection.tune-ok', { channelMax: this.channelMax, frameMax, heartbeat: this.heartbeat });
    this.#sendMethod('connection.open', { virtualHost: o.vhost, capabilities: '', insist: false });
    if (this.heartbeat > 0) {
      this.#beat = new Heartbeat(this.heartbeat, {
        send: () => this.out.write(HEARTBEAT_FRAME),
        dead: (ms, partial) =>
          this.#fail(
            new ConnectionError(
              'HEARTBEAT_TIMEOUT',
              partial
                ? `bytes but no whole frame from the broker for ${ms} ms (heartbeat ${this.heartbeat} s): a frame ` +
                    'trickling in holds no connection alive'
                : `no bytes from the broker for ${ms} ms (heartbeat ${this.heartbeat} s): the peer is gone`,
            ),
          ),
        lag: (ms) => this.emitSafe('lag', ms),
      });
    }
  }

  #onClose(a: MethodArgs['connection.close']): void {
    this.#sendMethod('connection.close-ok', {});
    this.out.flush();
    const name = replyCodeName(a.replyCode);
    const text = `the broker closed the connection: ${a.replyCode} ${a.replyText}`;
    const err =
      this.#state === 'handshake' && a.replyCode === 403
        ? new AuthenticationError(name, text, a)
        : new ConnectionError(name, text, a);
    this.#finish(this.#state === 'closing' && this.#closeError === undefined ? undefined : err);
  }

  #onBlocked(reason: string): void {
    this.blocked = true;
    this.emitSafe('blocked', reason);
    const t = this.options.blockedTimeout;
    if (t > 0 && this.#blockedTimer === null) {
      this.#blockedTimer = setTimeout(() => {
        this.#fail(
          new ConnectionError('BLOCKED_TIMEOUT', `the broker kept the connection blocked for ${t} ms (${reason})`),
        );
      }, t);
    }
  }

  #onUnblocked(): void {
    this.blocked = false;
    if (this.#blockedTimer !== null) clearTimeout(this.#blockedTimer);
    this.#blockedTimer = null;
    this.emitSafe('unblocked');
    this.#resumeChannels();
  }

  // ---- writing ----------------------------------------------------------------------------------------------------

  #sendMethod<K extends MethodName>(name: K, args: Partial<MethodArgs[K]>): void {
    this.out.write(encodeMethodFrame(0, name, args as Record<string, unknown>));
  }

  #writeChunks(chunks: Buffer[]): void {
    const s = this.#socket;
    if (s === null || s.destroyed) return;
    if (this.#beat !== null) this.#beat.sent = true;
    let ok: boolean;
    if (chunks.length === 1) {
      ok = s.write(chunks[0] as Buffer);
    } else {
      s.cork();
      for (const c of chunks) s.write(c);
      ok = s.writableLength < s.writableHighWaterMark;
      s.uncork();
    }
    // Publishes that waited only for our own queue can go now; otherwise 'drain' resumes them.
    if (ok) this.#resumeChannels();
  }

  #resumeChannels(): void {
    for (const ch of this.#channels.values()) ch._resume();
  }

  // ---- ending -----------------------------------------------------------------------------------------------------

  /** A fatal problem: tell the broker when it is a protocol error we detected, then end everything. */
  #fail(err: unknown): void {
    if (this.#state === 'closed') return;
    let error: Error;
    if (err instanceof FrameError) {
      // Spec §2.2.4: on a protocol violation send connection.close with the reply code, then drop the socket.
      try {
        this.#sendMethod('connection.close', {
          replyCode: err.replyCode,
          replyText: err.message.slice(0, 255),
          classId: 0,
          methodId: 0,
        });
        this.out.flush();
      } catch {
        /* the socket may be gone already */
      }
      error = new ConnectionError(
        err.code,
        `protocol error from the broker: ${err.message}`,
        { replyCode: err.replyCode },
        { cause: err },
      );
    } else if (err instanceof AmqpError) {
      error = err;
    } else {
      error = new ConnectionError(
        'INTERNAL_ERROR',
        `unexpected failure: ${err instanceof Error ? err.message : String(err)}`,
        undefined,
        { cause: err },
      );
    }
    this.#finish(error);
  }

  #socketClosed(): void {
    if (this.#state === 'closed') return;
    if (this.#state === 'closing' && this.#closeError === undefined) return this.#finish(undefined);
    const se = this.#socketError;
    let err: Error;
    // A broker that promised authentication_failure_close reports refused credentials with close 403; only an older
    // one signals them by dropping the socket right after start-ok.
    const caps = this.serverProperties['capabilities'];
    const closesOnAuthFailure =
      typeof caps === 'object' && caps !== null && (caps as FieldTable)['authentication_failure_close'] === true;
    if (this.#state === 'handshake' && this.#sentStartOk && !this.#tuned && se === null && !closesOnAuthFailure) {
      err = new AuthenticationError(
        'ACCESS_REFUSED',
        'the broker closed the connection after start-ok: the credentials were probably refused',
      );
    } else if (se !== null) {
      // A TCP failure (ECONNREFUSED, ETIMEDOUT ..., which name their syscall) comes before TLS has said a word.
      const tlsFailure = this.options.tls !== undefined && this.#state === 'connecting' && !('syscall' in se);
      err = new ConnectionError(
        tlsFailure ? 'TLS_ERROR' : 'SOCKET_ERROR',
        `${tlsFailure ? 'TLS' : 'socket'} error: ${se.message}`,
        undefined,
        { cause: se },
      );
    } else {
      err = new ConnectionError(
        'SOCKET_CLOSED',
        'the socket closed without a connection.close (network failure or broker crash)',
      );
    }
    this.#finish(err);
  }

  #finish(err: Error | undefined): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#closeError = err;
    this.#clearTimers();
    if (this.#blockedTimer !== null) clearTimeout(this.#blockedTimer);
    this.#beat?.stop();
    this.out.flush();
    this.out.close();
    const s = this.#socket;
    if (s !== null) {
      // A clean close lets queued bytes (close-ok) leave; a failure drops the socket at once.
      if (err === undefined) s.end();
      else s.destroy();
      setTimeout(() => s.destroy(), 1000).unref();
    }
    const cause = err ?? new ConnectionError('CLOSED', `the connection ${BY_APP}`);
    for (const ch of [...this.#channels.values()]) ch._lost(cause);
    this.#channels.clear();
    this.#handshake?.reject(cause);
    this.#handshake = null;
    this.#secretUpdate?.reject(cause);
    this.#secretUpdate = null;
    this.#resolveClosed(err);
    this.emitSafe('close', err);
  }

  #clearTimers(): void {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers = [];
  }

  #allocateChannelId(): number {
    const max = this.channelMax;
    for (let i = 0; i < max; i++) {
      const id = ((this.#lastChannelId + i) % max) + 1;
      if (!this.#channels.has(id)) {
        this.#lastChannelId = id;
        return id;
      }
    }
    throw new AmqpError('CHANNEL_MAX', `all ${max} channels are in use`);
  }

  #notOpen(): AmqpError {
    return this.#closeError instanceof AmqpError
      ? this.#closeError
      : new ConnectionError('CLOSED', `the connection is ${this.#state}`);
  }

  protected listenerFailed(err: unknown, event: string): void {
    this.handlerError(err, `connection '${event}' listener`);
  }
}

/**
 * Opens a connection: `connect('amqp://guest:guest@127.0.0.1:5672/?heartbeat=20')`, or options, or both (options
 * override the URL). Resolves when the broker has opened the virtual host.
 */
export async function connect(url?: string | URL | ConnectOptions, options: ConnectOptions = {}): Promise<Connection> {
  const fromUrl = typeof url === 'string' || url instanceof URL ? parseUrl(url) : (url ?? {});
  const { conn, opened } = startConnection({ ...fromUrl, ...options });
  await opened;
  return conn;
}

/**
 * @internal a connection whose handshake has started, for the recovery loop: it holds the connection before it opens,
 * so that its close() ends a handshake a silent broker would otherwise hold until the connect timeout.
 */
export function startConnection(options: ConnectOptions): { conn: Connection; opened: Promise<void> } {
  const conn = new Connection(resolveOptions(options));
  return { conn, opened: conn._start() };
}
