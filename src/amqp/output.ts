/**
 * The outgoing byte queue of a connection. Frames are encoded straight into a large scratch buffer (bump allocation:
 * a region handed to the socket is never written again), large bodies are queued by reference instead of copied, and
 * everything written during one turn of the event loop leaves in one socket write (writev when there are several
 * regions). This is what keeps a publish from sitting in Nagle's buffer (TCP_NODELAY is set too) and makes 1,000
 * publishes in a loop one syscall instead of 1,000.
 */
export type Sink = (chunks: Buffer[]) => void;

const SCRATCH_BYTES = 64 * 1024;

export class Output {
  /** The current scratch buffer: write at `pos`, after reserve(). */
  buf: Buffer = Buffer.allocUnsafe(SCRATCH_BYTES);
  pos = 0;
  #start = 0;
  #chunks: Buffer[] = [];
  #chunkBytes = 0;
  #scheduled = false;
  #lazy: ReturnType<typeof setTimeout> | null = null;
  #closed = false;

  readonly #sink: Sink;
  constructor(sink: Sink) {
    this.#sink = sink;
  }

  /** Bytes queued here and not yet handed to the socket. */
  get queued(): number {
    return this.#chunkBytes + this.pos - this.#start;
  }

  /** Makes room for `n` contiguous bytes at `this.pos` in `this.buf`. Write there, then commit(newPos). */
  reserve(n: number): Buffer {
    if (this.buf.length - this.pos < n) {
      this.#seal();
      this.buf = Buffer.allocUnsafe(Math.max(n, SCRATCH_BYTES));
      this.#start = this.pos = 0;
    }
    return this.buf;
  }

  commit(end: number): void {
    this.pos = end;
    this.#schedule();
  }

  /**
   * Like commit, for frames nobody waits for (acks): they leave with the next urgent write, or within a millisecond.
   * A consumer acking each delivery would otherwise make one syscall per message; batched, a burst of acks costs one.
   */
  commitLazy(end: number): void {
    this.pos = end;
    if (!this.#scheduled && this.#lazy === null && !this.#closed) {
      this.#lazy = setTimeout(() => {
        this.#lazy = null;
        this.flush();
      }, 1);
    }
  }

  /** Copies small buffers into the scratch region. */
  write(bytes: Uint8Array): void {
    const buf = this.reserve(bytes.length);
    buf.set(bytes, this.pos);
    this.commit(this.pos + bytes.length);
  }

  /** Queues a buffer by reference (the caller must not modify it before it is written). */
  writeRef(bytes: Buffer): void {
    this.#seal();
    this.#chunks.push(bytes);
    this.#chunkBytes += bytes.length;
    this.#schedule();
  }

  /** Hands everything queued to the sink now. */
  flush(): void {
    this.#scheduled = false;
    if (this.#lazy !== null) {
      clearTimeout(this.#lazy);
      this.#lazy = null;
    }
    if (this.#closed) return;
    this.#seal();
    if (this.#chunks.length === 0) return;
    const chunks = this.#chunks;
    this.#chunks = [];
    this.#chunkBytes = 0;
    this.#sink(chunks);
  }

  /** Drops whatever is queued; later writes are ignored (the socket is gone). */
  close(): void {
    this.#closed = true;
    this.#chunks = [];
    this.#chunkBytes = 0;
    this.#start = this.pos;
  }

  #seal(): void {
    if (this.pos > this.#start) {
      this.#chunks.push(this.buf.subarray(this.#start, this.pos));
      this.#chunkBytes += this.pos - this.#start;
      this.#start = this.pos;
    }
  }

  #schedule(): void {
    if (!this.#scheduled && !this.#closed) {
      this.#scheduled = true;
      setImmediate(() => this.flush());
    }
  }
}
