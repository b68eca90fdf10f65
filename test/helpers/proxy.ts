/**
 * A fault-injecting TCP proxy for tests, built on node:net only.
 *
 *   client ──► 127.0.0.1:proxy.port ──► FaultProxy ──► target (default AMQP_URL's host and port)
 *
 *   const proxy = await FaultProxy.start();                       // random free port on 127.0.0.1
 *   const conn = await connect({ port: proxy.port, ... });
 *   proxy.reslice(slicers.fixed(1), 's2c');                       // 1-byte writes towards the client
 *   proxy.delay(200);                                             // 200 ms each way
 *   proxy.blackhole();                                            // a dead NAT: sockets stay open, bytes vanish
 *   proxy.resume();
 *   proxy.cutAfterBytes(12_345, { direction: 's2c' });           // cut at an exact point of the stream
 *   proxy.cutAll({ reset: true });                                // RST every connection now
 *   proxy.corruptServerToClient((chunk) => hostileBytes);        // replace what the client receives
 *   await proxy.close();                                          // idempotent
 *
 * Directions: `'c2s'` is client -> server (towards the target), `'s2c'` is server -> client. Every control takes a
 * direction, default `'both'`, and applies to connections that are already open as well as to later ones.
 *
 * Per direction, each chunk read from the source goes through, in order:
 *
 *   blackhole?  -> dropped (counted in `dropped`)
 *   transform   -> the hook may replace the chunk (an empty Buffer drops it)
 *   reslice     -> the chunk is cut into pieces, each written with its own socket.write()
 *   delay       -> each piece waits until (arrival + delay); order is always preserved
 *   cut point   -> `cutAfterBytes` lets exactly N more bytes out, then cuts every connection
 *   write       -> to the destination, with backpressure (the source is paused while the queue is large)
 *
 * Details worth knowing:
 *
 * - Re-sliced pieces are paced (by default each piece is written from its own setImmediate, see
 *   `ResliceOptions.pace`): without pacing the kernel would coalesce them again, and a receiver in the same process
 *   would read them as one chunk. With pacing, a receiver in this process reads exactly one piece per 'data' event.
 *   Slicers may be stateful (`slicers.random`, `slicers.switchAfter`); one slicer instance is shared by every
 *   connection of that direction.
 * - The transform sees the chunks as read from the source (before re-slicing), with their offset in the stream.
 * - A blackholed direction forwards neither bytes nor a FIN or a close from its source: the peer learns nothing
 *   until resume() (which forwards a pending FIN / close). A socket the client closes during a blackhole therefore
 *   leaves its target socket open until close().
 * - resume() on a connection that outlived its blackhole (shorter than the heartbeat timeout) continues a stream with
 *   a hole in it, which real TCP never delivers (it retransmits, or the connection dies). AMQP then loses whole
 *   frames silently: a publish the broker never saw, and publisher confirms counted one off, so the lost publish is
 *   taken as confirmed by the next one's ack. To model a real outage, cutAll() before or right after resume().
 * - cutAll() stops all pipes at once. Without `reset` the sockets are destroyed (a FIN, or an RST if unread bytes
 *   remain in the kernel); with `reset` an RST is sent. Note that a peer busy writing when the RST arrives may
 *   still see a plain EOF (the write consumes the ECONNRESET), so tests should accept both outcomes of a cut.
 * - cutAfterBytes counts the bytes written in one direction over all connections from the moment it is armed, so
 *   `cutAfterBytes(randomInt(rng, a, b))` cuts a long stream at a reproducible, usually mid-frame, point.
 * - setAcceptMode('close' | 'reset' | 'hold') simulates a port that accepts and then hangs up, resets, or stalls.
 * - A refused or failing target connection closes the client socket (a FIN).
 *
 * The proxy never throws into the event loop: every socket has an 'error' listener (errors are recorded in
 * `socketErrors`), and a throwing hook is recorded in `hookErrors` (the chunk then passes unchanged). It never emits
 * an 'error' event. Only connect it to loopback targets in this project's tests.
 */
import { EventEmitter } from 'node:events';
import { type AddressInfo, createServer, type Server, Socket } from 'node:net';
import { BROKER } from './amqp.js';

export type Direction = 'c2s' | 's2c';
export type DirectionArg = Direction | 'both';

/** Cuts a chunk of `length` bytes into pieces; returns their sizes (a short sum gets the rest as a last piece). */
export type Slicer = (length: number) => number[];

export interface ChunkInfo {
  /** The proxied connection (1, 2, ... in accept order). */
  connectionId: number;
  direction: Direction;
  /** Bytes of this direction read on this connection before this chunk. */
  offset: number;
}

/** Returns replacement bytes (an empty Buffer drops the chunk), or undefined / null to pass the chunk unchanged. */
export type Transform = (chunk: Buffer, info: ChunkInfo) => Buffer | Uint8Array | undefined | null;

export interface ResliceOptions {
  /**
   * What happens between two pieces: `'immediate'` (default) waits one event-loop turn (setImmediate), so a reader
   * in this process reads each piece separately; `'none'` writes them back to back (the kernel may coalesce them);
   * a number waits that many milliseconds.
   */
  pace?: 'immediate' | 'none' | number;
}

/** What the proxy does with a newly accepted client socket. */
export type AcceptMode =
  /** Connect to the target and forward (default). */
  | 'forward'
  /** Close (FIN) the client socket right after accepting it; the target is never contacted. */
  | 'close'
  /** Reset (RST) the client socket right after accepting it. */
  | 'reset'
  /** Keep the client socket open and read nothing back: the target is never contacted. */
  | 'hold';

export interface DirectionStats {
  /** Bytes read from the source. */
  read: number;
  /** Bytes written to the destination. */
  written: number;
  /** Bytes thrown away (blackhole, transform replacing with fewer bytes, cut, destination gone). */
  dropped: number;
  /** socket.write() calls on the destination. */
  writes: number;
}

export interface ProxyStats {
  /** Client sockets accepted. */
  accepted: number;
  /** Client sockets still open. */
  clientSocketsOpen: number;
  /** Target sockets still open. */
  serverSocketsOpen: number;
  /** Connections destroyed by cutAll() / cutAfterBytes(). */
  cut: number;
  c2s: DirectionStats;
  s2c: DirectionStats;
}

export interface ProxiedConnection {
  readonly id: number;
  readonly client: Socket;
  /** null in accept modes that never contact the target. */
  readonly server: Socket | null;
  readonly bytes: Record<Direction, DirectionStats>;
  /** True until both sockets closed. */
  readonly open: boolean;
}

export interface ProxyOptions {
  /** Default: AMQP_URL's host and port (127.0.0.1:5672). */
  target?: { host?: string; port?: number };
  /** Queued bytes per direction and connection above which the source is paused (default 4 MiB). */
  highWaterMark?: number;
}

export interface ProxyEvents {
  connection: [conn: ProxiedConnection];
  cut: [count: number];
  closed: [];
}

interface Piece {
  data: Buffer;
  due: number;
}

interface DirectionConfig {
  delay: number;
  blackholed: boolean;
  transform: Transform | null;
  slicer: Slicer | null;
  pace: 'immediate' | 'none' | number;
}

interface CutPoint {
  remaining: number;
  reset: boolean;
}

function emptyStats(): DirectionStats {
  return { read: 0, written: 0, dropped: 0, writes: 0 };
}

function directions(d: DirectionArg): Direction[] {
  return d === 'both' ? ['c2s', 's2c'] : [d];
}

/** One direction of one connection: source socket -> queue -> destination socket. */
class Pipe {
  private queue: Piece[] = [];
  private queueHead = 0;
  private queuedBytes = 0;
  private sourceEnded = false;
  private sourceClosed = false;
  private endSent = false;
  private waitingDrain = false;
  private sourcePaused = false;
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private readOffset = 0;
  private dead = false;
  /** True while pump() runs from a setImmediate callback (re-sliced writes happen only there, see pump). */
  private inImmediate = false;

  constructor(
    private readonly proxy: FaultProxy,
    private readonly pair: Pair,
    readonly direction: Direction,
    private readonly source: Socket,
    private readonly dest: Socket,
    private readonly stats: DirectionStats,
    private readonly connStats: DirectionStats,
  ) {
    source.on('data', (chunk: Buffer) => this.onData(chunk));
    source.on('end', () => {
      this.sourceEnded = true;
      this.pump();
    });
    source.on('close', () => {
      this.sourceClosed = true;
      this.pump();
    });
  }

  private get config(): DirectionConfig {
    return this.proxy._config(this.direction);
  }

  private count(field: keyof DirectionStats, n: number): void {
    this.stats[field] += n;
    this.connStats[field] += n;
  }

  private onData(chunk: Buffer): void {
    const offset = this.readOffset;
    this.readOffset += chunk.length;
    this.count('read', chunk.length);
    if (this.dead) return this.count('dropped', chunk.length);
    const cfg = this.config;
    if (cfg.blackholed) return this.count('dropped', chunk.length);
    let data = chunk;
    if (cfg.transform !== null) {
      try {
        const r = cfg.transform(chunk, { connectionId: this.pair.id, direction: this.direction, offset });
        if (r !== undefined && r !== null) {
          data = Buffer.isBuffer(r) ? r : Buffer.from(r.buffer, r.byteOffset, r.byteLength);
          if (data.length < chunk.length) this.count('dropped', chunk.length - data.length);
        }
      } catch (err) {
        this.proxy._hookError(err, `transform (${this.direction})`);
      }
    }
    if (data.length === 0) return;
    const due = Date.now() + cfg.delay;
    for (const piece of this.slice(data, cfg.slicer)) this.queue.push({ data: piece, due });
    this.queuedBytes += data.length;
    if (this.queuedBytes > this.proxy.highWaterMark && !this.sourcePaused) {
      this.sourcePaused = true;
      this.source.pause();
    }
    this.pump();
  }

  private slice(data: Buffer, slicer: Slicer | null): Buffer[] {
    if (slicer === null) return [data];
    let sizes: number[];
    try {
      sizes = slicer(data.length);
    } catch (err) {
      this.proxy._hookError(err, `slicer (${this.direction})`);
      return [data];
    }
    const pieces: Buffer[] = [];
    let at = 0;
    for (const s of sizes) {
      if (at >= data.length) break;
      const n = Math.max(1, Math.min(Math.floor(s) || 1, data.length - at));
      pieces.push(data.subarray(at, at + n));
      at += n;
    }
    if (at < data.length) pieces.push(data.subarray(at));
    return pieces;
  }

  /** Drops everything queued (blackhole, cut). */
  dropQueued(): void {
    for (let i = this.queueHead; i < this.queue.length; i++)
      this.count('dropped', (this.queue[i] as Piece).data.length);
    this.queue = [];
    this.queueHead = 0;
    this.queuedBytes = 0;
    this.unpauseSource();
  }

  private unpauseSource(): void {
    if (this.sourcePaused && this.queuedBytes <= this.proxy.highWaterMark / 2) {
      this.sourcePaused = false;
      if (!this.source.destroyed) this.source.resume();
    }
  }

  /** Writes what is due; reschedules itself for delays, pacing and backpressure. */
  pump(): void {
    if (this.dead || this.timer !== null || this.immediate !== null || this.waitingDrain) return;
    const cfg = this.config;
    if (cfg.blackholed) {
      // A dead middlebox forwards neither bytes nor the FIN; both wait for resume().
      this.dropQueued();
      return;
    }
    while (this.queueHead < this.queue.length) {
      if (this.dest.destroyed) return this.dropQueued();
      const piece = this.queue[this.queueHead] as Piece;
      const wait = piece.due - Date.now();
      if (wait > 0) {
        this.timer = setTimeout(() => {
          this.timer = null;
          this.pump();
        }, wait);
        return;
      }
      if (cfg.slicer !== null && cfg.pace === 'immediate' && !this.inImmediate) {
        // One piece per check phase, so a poll phase (where the receiver reads) separates any two pieces. A piece
        // written right away from a 'data' callback (poll phase) could be followed by the next one in the check
        // phase of the same turn, before the receiver read the first: the kernel would merge them.
        this.schedulePaced();
        return;
      }
      this.queue[this.queueHead++] = undefined as unknown as Piece;
      this.queuedBytes -= piece.data.length;
      if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.queueHead);
        this.queueHead = 0;
      }
      const cut = this.proxy._cutPoint(this.direction);
      let data = piece.data;
      let cutNow = false;
      if (cut !== null && data.length >= cut.remaining) {
        this.count('dropped', data.length - cut.remaining);
        data = data.subarray(0, cut.remaining);
        cutNow = true;
      } else if (cut !== null) {
        cut.remaining -= data.length;
      }
      if (cutNow) {
        // Every pipe stops at once; the sockets go after the prefix was handed to the kernel, so the peer really
        // receives exactly these bytes.
        this.proxy._cutReached(this.direction, (flushed) => {
          if (data.length === 0 || this.dest.destroyed) return flushed();
          this.count('written', data.length);
          this.count('writes', 1);
          this.dest.write(data, () => flushed());
        });
        return;
      }
      let ok = true;
      if (data.length > 0) {
        ok = this.dest.write(data);
        this.count('written', data.length);
        this.count('writes', 1);
      }
      this.unpauseSource();
      if (!ok) {
        this.waitingDrain = true;
        this.dest.once('drain', () => {
          this.waitingDrain = false;
          this.pump();
        });
        return;
      }
      if (cfg.slicer !== null && this.queueHead < this.queue.length) {
        if (cfg.pace === 'immediate') {
          this.schedulePaced();
          return;
        }
        if (typeof cfg.pace === 'number') {
          this.timer = setTimeout(() => {
            this.timer = null;
            this.pump();
          }, cfg.pace);
          return;
        }
      }
    }
    if (this.queueHead > 0) {
      this.queue = [];
      this.queueHead = 0;
    }
    if (this.endSent || this.dest.destroyed) return;
    if (this.sourceEnded) {
      // A graceful FIN, forwarded after the queued bytes.
      this.endSent = true;
      this.dest.end();
    } else if (this.sourceClosed) {
      // The source went without a FIN (reset, error, destroy): so does the destination.
      this.endSent = true;
      this.dest.destroy();
    }
  }

  private schedulePaced(): void {
    this.immediate = setImmediate(() => {
      this.immediate = null;
      this.inImmediate = true;
      try {
        this.pump();
      } finally {
        this.inImmediate = false;
      }
    });
  }

  /** Stops for good: timers cleared, queue dropped. */
  kill(): void {
    this.dead = true;
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.immediate !== null) clearImmediate(this.immediate);
    this.timer = null;
    this.immediate = null;
    this.dropQueued();
  }
}

class Pair implements ProxiedConnection {
  server: Socket | null = null;
  readonly bytes: Record<Direction, DirectionStats> = { c2s: emptyStats(), s2c: emptyStats() };
  pipes: Pipe[] = [];
  clientOpen = true;
  serverOpen = false;

  constructor(
    readonly id: number,
    readonly client: Socket,
  ) {}

  get open(): boolean {
    return this.clientOpen || this.serverOpen;
  }
}

export class FaultProxy extends EventEmitter {
  /** The port the proxy listens on (127.0.0.1). */
  readonly port: number;
  readonly target: { host: string; port: number };
  readonly highWaterMark: number;
  /** Socket errors seen (ECONNRESET ... are normal when cutting); never thrown. */
  readonly socketErrors: { connectionId: number; side: 'client' | 'server'; code: string; message: string }[] = [];
  /** Hooks (transform, slicer) that threw; the chunk then passed unchanged. */
  readonly hookErrors: { where: string; error: unknown }[] = [];

  private readonly server: Server;
  private readonly pairs = new Set<Pair>();
  private readonly config: Record<Direction, DirectionConfig> = {
    c2s: { delay: 0, blackholed: false, transform: null, slicer: null, pace: 'immediate' },
    s2c: { delay: 0, blackholed: false, transform: null, slicer: null, pace: 'immediate' },
  };
  private readonly cuts: Record<Direction, CutPoint | null> = { c2s: null, s2c: null };
  private readonly totals: ProxyStats = {
    accepted: 0,
    clientSocketsOpen: 0,
    serverSocketsOpen: 0,
    cut: 0,
    c2s: emptyStats(),
    s2c: emptyStats(),
  };
  private acceptMode: AcceptMode = 'forward';
  private nextId = 1;
  private closing: Promise<void> | null = null;

  private constructor(server: Server, options: ProxyOptions) {
    super();
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    this.target = { host: options.target?.host ?? BROKER.hostname, port: options.target?.port ?? BROKER.port };
    this.highWaterMark = options.highWaterMark ?? 4 << 20;
    server.on('connection', (socket) => this.accept(socket));
    server.on('error', () => {
      /* listening already succeeded; nothing to do but not crash */
    });
  }

  /** Listens on 127.0.0.1 on a random free port. */
  static start(options: ProxyOptions = {}): Promise<FaultProxy> {
    return new Promise((resolve, reject) => {
      const server = createServer({ pauseOnConnect: true });
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve(new FaultProxy(server, options));
      });
    });
  }

  override on<K extends keyof ProxyEvents>(event: K, listener: (...args: ProxyEvents[K]) => void): this {
    return super.on(event, listener as (...args: unknown[]) => void);
  }

  override once<K extends keyof ProxyEvents>(event: K, listener: (...args: ProxyEvents[K]) => void): this {
    return super.once(event, listener as (...args: unknown[]) => void);
  }

  // ---- controls -----------------------------------------------------------------------------------------------------

  /** Adds latency: every chunk is forwarded `ms` after it was read (0 turns it off). Order is preserved. */
  delay(ms: number, direction: DirectionArg = 'both'): this {
    for (const d of directions(direction)) this.config[d].delay = Math.max(0, ms);
    return this;
  }

  /**
   * Silently drops every byte (queued ones included) while keeping all sockets open, and stops forwarding FINs:
   * the stall a dead NAT or a pulled cable causes. Bytes are still read, so the senders see no backpressure.
   */
  blackhole(direction: DirectionArg = 'both'): this {
    for (const d of directions(direction)) this.config[d].blackholed = true;
    for (const p of this.pairs)
      for (const pipe of p.pipes) if (directions(direction).includes(pipe.direction)) pipe.dropQueued();
    return this;
  }

  /**
   * Ends a blackhole: later bytes flow again (dropped ones are lost; a FIN seen meanwhile is forwarded now). A
   * connection still open continues with a hole in its stream, which real TCP never delivers: cut it (top comment).
   */
  resume(direction: DirectionArg = 'both'): this {
    for (const d of directions(direction)) this.config[d].blackholed = false;
    this.pumpAll();
    return this;
  }

  /** Re-chunks the byte stream: each piece of `slicer(chunk.length)` is a separate write. null restores pass-through. */
  reslice(slicer: Slicer | null, direction: DirectionArg = 'both', options: ResliceOptions = {}): this {
    for (const d of directions(direction)) {
      this.config[d].slicer = slicer;
      this.config[d].pace = options.pace ?? 'immediate';
    }
    return this;
  }

  /** Installs a hook that may replace chunks (see Transform). null removes it. */
  transform(fn: Transform | null, direction: DirectionArg = 'both'): this {
    for (const d of directions(direction)) this.config[d].transform = fn;
    return this;
  }

  /** A transform on server -> client bytes: the hook may replace what the client receives. */
  corruptServerToClient(fn: Transform | null): this {
    return this.transform(fn, 's2c');
  }

  /** What to do with clients accepted from now on (see AcceptMode). */
  setAcceptMode(mode: AcceptMode): this {
    this.acceptMode = mode;
    return this;
  }

  /**
   * Destroys every client/server socket pair now, as a network failure. `reset: true` sends a TCP RST
   * (the peers see ECONNRESET); otherwise the sockets are destroyed, which usually sends a FIN.
   * Returns how many connections were cut. Later connections are accepted and forwarded as usual.
   */
  cutAll(options: { reset?: boolean } = {}): number {
    let n = 0;
    for (const p of [...this.pairs]) {
      if (this.destroyPair(p, options.reset ?? false)) n++;
    }
    this.totals.cut += n;
    this.emit('cut', n);
    return n;
  }

  /**
   * Arms a one-shot cut point: the next `bytes` bytes written in `direction` (counted over all connections) are
   * forwarded, the chunk that crosses the point is truncated there, and then every connection is cut (see cutAll).
   * Use it with a seeded PRNG to cut a stream at random but reproducible points. `bytes: 0` cuts before the next
   * byte would go out.
   */
  cutAfterBytes(bytes: number, options: { direction?: Direction; reset?: boolean } = {}): this {
    this.cuts[options.direction ?? 's2c'] = {
      remaining: Math.max(0, Math.floor(bytes)),
      reset: options.reset ?? false,
    };
    return this;
  }

  /** Disarms cutAfterBytes. */
  cancelCut(): this {
    this.cuts.c2s = null;
    this.cuts.s2c = null;
    return this;
  }

  /** Totals over all connections so far (a snapshot). */
  get stats(): ProxyStats {
    return { ...this.totals, c2s: { ...this.totals.c2s }, s2c: { ...this.totals.s2c } };
  }

  /** Connections not fully closed yet. */
  get connections(): readonly ProxiedConnection[] {
    return [...this.pairs];
  }

  /**
   * Stops listening and destroys every socket. Idempotent; resolves once the listening socket and every proxied
   * socket are closed (or after 2 s at most).
   */
  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    const waits: Promise<void>[] = [new Promise<void>((resolve) => this.server.close(() => resolve()))];
    for (const p of [...this.pairs]) {
      for (const s of [p.client, p.server]) {
        if (s !== null && !s.closed) waits.push(new Promise<void>((resolve) => s.once('close', () => resolve())));
      }
      this.destroyPair(p, false);
    }
    let timer: NodeJS.Timeout | undefined;
    const cap = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, 2000);
    });
    this.closing = Promise.race([Promise.all(waits).then(() => undefined), cap]).then(() => {
      clearTimeout(timer);
      this.emit('closed');
    });
    return this.closing;
  }

  // ---- internals (used by Pipe) ---------------------------------------------------------------------------------

  /** @internal */
  _config(d: Direction): DirectionConfig {
    return this.config[d];
  }

  /** @internal */
  _cutPoint(d: Direction): CutPoint | null {
    return this.cuts[d];
  }

  /**
   * @internal the armed cut point of `d` was reached: every pipe stops now, `writePrefix` writes the last bytes and
   * calls back once they left, then every connection is cut.
   */
  _cutReached(d: Direction, writePrefix: (flushed: () => void) => void): void {
    const reset = this.cuts[d]?.reset ?? false;
    this.cuts[d] = null;
    for (const p of this.pairs) for (const pipe of p.pipes) pipe.kill();
    let done = false;
    const go = (): void => {
      if (done) return;
      done = true;
      setImmediate(() => this.cutAll({ reset }));
    };
    writePrefix(go);
    // Whatever happens to the write, the cut happens.
    setTimeout(go, 100).unref();
  }

  /** @internal */
  _hookError(error: unknown, where: string): void {
    this.hookErrors.push({ where, error });
  }

  // ---- connections -------------------------------------------------------------------------------------------------

  private accept(client: Socket): void {
    this.totals.accepted++;
    this.totals.clientSocketsOpen++;
    const pair = new Pair(this.nextId++, client);
    this.pairs.add(pair);
    client.on('error', (err: NodeJS.ErrnoException) => this.recordError(pair, 'client', err));
    client.on('close', () => {
      pair.clientOpen = false;
      this.totals.clientSocketsOpen--;
      this.sideClosed(pair);
    });
    if (this.closing !== null) {
      client.destroy();
      return;
    }
    switch (this.acceptMode) {
      case 'close':
        client.destroy();
        return;
      case 'reset':
        resetSocket(client);
        return;
      case 'hold':
        client.resume(); // read and ignore
        this.emit('connection', pair);
        return;
      case 'forward':
        break;
    }
    client.setNoDelay(true);
    const server = new Socket();
    pair.server = server;
    pair.serverOpen = true;
    this.totals.serverSocketsOpen++;
    server.on('error', (err: NodeJS.ErrnoException) => this.recordError(pair, 'server', err));
    server.on('close', () => {
      pair.serverOpen = false;
      this.totals.serverSocketsOpen--;
      this.sideClosed(pair);
    });
    server.setNoDelay(true);
    pair.pipes = [
      new Pipe(this, pair, 'c2s', client, server, this.totals.c2s, pair.bytes.c2s),
      new Pipe(this, pair, 's2c', server, client, this.totals.s2c, pair.bytes.s2c),
    ];
    server.connect({ host: this.target.host, port: this.target.port }, () => {
      // The client was accepted paused: nothing is read before the target can take it.
      if (!client.destroyed) client.resume();
    });
    this.emit('connection', pair);
  }

  /** One side closed: the pipes forward the FIN or the abrupt close to the peer (see Pipe.pump). */
  private sideClosed(pair: Pair): void {
    if (pair.open) return;
    for (const pipe of pair.pipes) pipe.kill();
    this.pairs.delete(pair);
  }

  private destroyPair(pair: Pair, reset: boolean): boolean {
    const wasOpen = pair.open;
    for (const pipe of pair.pipes) pipe.kill();
    for (const s of [pair.client, pair.server]) {
      if (s === null || s.destroyed) continue;
      if (reset) resetSocket(s);
      else s.destroy();
    }
    return wasOpen;
  }

  private pumpAll(): void {
    for (const p of this.pairs) for (const pipe of p.pipes) pipe.pump();
  }

  private recordError(pair: Pair, side: 'client' | 'server', err: NodeJS.ErrnoException): void {
    this.socketErrors.push({ connectionId: pair.id, side, code: err.code ?? 'UNKNOWN', message: err.message });
  }
}

/** Sends a TCP RST where the platform supports it (Node >= 16.17 / 18.3), otherwise destroys. */
function resetSocket(s: Socket): void {
  const r = (s as Socket & { resetAndDestroy?: () => Socket }).resetAndDestroy;
  if (typeof r === 'function' && s.readyState !== 'opening') {
    try {
      r.call(s);
      return;
    } catch {
      /* fall through */
    }
  }
  s.destroy();
}

// ---- slicers and a seeded PRNG ------------------------------------------------------------------------------------

/** mulberry32: a tiny seeded PRNG returning floats in [0, 1). Same seed, same sequence. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in [min, max] from a PRNG. */
export function randomInt(rng: () => number, min: number, max: number): number {
  return min + Math.floor(rng() * (max - min + 1));
}

/** `size` bytes from a PRNG. */
export function randomBytes(rng: () => number, size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = Math.floor(rng() * 256);
  return b;
}

export const slicers = {
  /** Pieces of exactly `n` bytes (the last may be shorter): `fixed(1)` is one byte per write. */
  fixed(n: number): Slicer {
    const size = Math.max(1, Math.floor(n));
    return (length) => {
      const out: number[] = [];
      for (let at = 0; at < length; at += size) out.push(Math.min(size, length - at));
      return out;
    };
  },

  /** Random sizes in [min, max] from a seeded PRNG (reproducible for a given seed and byte stream). */
  random(seed: number, min = 1, max = 4096): Slicer {
    const rng = mulberry32(seed);
    return (length) => {
      const out: number[] = [];
      for (let at = 0; at < length; ) {
        const n = Math.min(randomInt(rng, min, max), length - at);
        out.push(n);
        at += n;
      }
      return out;
    };
  },

  /** `first` for the first `bytes` bytes of the stream (over all chunks), `then` afterwards; a chunk may be split. */
  switchAfter(bytes: number, first: Slicer, then: Slicer): Slicer {
    let seen = 0;
    return (length) => {
      const head = Math.max(0, Math.min(length, bytes - seen));
      seen += length;
      return [...(head > 0 ? first(head) : []), ...(length - head > 0 ? then(length - head) : [])];
    };
  },
};
