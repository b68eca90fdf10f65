/**
 * Counts the copies of a message body made in this process between `start()` and `stop()`: every call, from
 * JavaScript, that copies bytes from one buffer into another (TypedArray#set, #slice, #copyWithin, Uint8Array.from,
 * Buffer#copy, Buffer.concat, Buffer.from of bytes) or encrypts them into a new buffer (node:crypto's Cipher#update),
 * of at least MIN_BYTES, is recorded with a snapshot of what it copied and the function that called it. What
 * was written to sockets is recorded too (net.Socket#write).
 *
 * Afterwards `bodyCopies(payload, wire)` keeps the events whose bytes hold a piece of the body: of the JSON payload,
 * or of the envelope as it went on the wire (a ciphertext). The encoder's own writing (JsonWriter, straight into its
 * target) is not a copy and is not seen; neither are copies made inside Node's C++ (the kernel's socket and file
 * writes) nor by a typed-array constructor given another array (none is on the outbound path: checked by reading it).
 */

import * as crypto from 'node:crypto';
import { Socket } from 'node:net';

/**
 * Smaller copies are not recorded: the envelope's header (60 B), a signature (64 B), the SHA-512 block buffer of
 * noble's hashes (a message's tail of up to 127 B, hashed where it lies otherwise). The bodies tested are 1 KiB+.
 */
export const MIN_BYTES = 128;

export interface CopyEvent {
  /** `set`, `set onto itself` (source and target the same bytes), `slice`, `copyWithin`, `from`, `copy`, `concat`, `Buffer.from`, `cipher`. */
  readonly op: string;
  readonly bytes: number;
  /** The first caller outside this file: `function (file)`. */
  readonly site: string;
  readonly data: Buffer;
}

type Fn = (...args: never[]) => unknown;
const TypedArray = Object.getPrototypeOf(Uint8Array) as {
  prototype: Record<string, Fn>;
  from: Fn;
};

/** One slot per method patched: where it lives, its name, the original. */
interface Patch {
  readonly owner: Record<string, unknown>;
  readonly name: string;
  readonly original: Fn;
}

const isBytes = (x: unknown): x is Uint8Array => x instanceof Uint8Array;

export class CopyCounter {
  readonly events: CopyEvent[] = [];
  readonly socketWrites: Buffer[] = [];
  #patches: Patch[] = [];
  #inside = false;

  start(): void {
    if (this.#patches.length > 0) throw new Error('the copy counter is already started');
    // The originals, captured before anything is patched: recording uses them, so it never records itself.
    const copyOf = Buffer.from.bind(Buffer) as (b: Uint8Array) => Buffer;
    const snapshot = (b: Uint8Array): Buffer => copyOf(b);
    const record = (op: string, data: Uint8Array): void => {
      if (data.length < MIN_BYTES) return;
      this.events.push({ op, bytes: data.length, site: callerSite(), data: snapshot(data) });
    };
    const wrap = (owner: Record<string, unknown>, name: string, before: (self: unknown, args: unknown[]) => void) => {
      const original = owner[name] as Fn;
      const counter = this;
      owner[name] = function (this: unknown, ...args: unknown[]) {
        if (!counter.#inside) {
          counter.#inside = true;
          try {
            before(this, args);
          } finally {
            counter.#inside = false;
          }
        }
        return Reflect.apply(original, this, args);
      };
      this.#patches.push({ owner, name, original });
    };
    const proto = TypedArray.prototype as unknown as Record<string, unknown>;
    wrap(proto, 'set', (self, [source, offset]) => {
      if (!isBytes(source) || !isBytes(self)) return;
      const at = (self as Uint8Array).byteOffset + Number(offset ?? 0);
      const onto = source.buffer === (self as Uint8Array).buffer && source.byteOffset === at;
      record(onto ? 'set onto itself' : 'set', source);
    });
    wrap(proto, 'slice', (self, [start, end]) => {
      if (isBytes(self) && !Buffer.isBuffer(self)) record('slice', self.subarray(start as number, end as number));
    });
    wrap(proto, 'copyWithin', (self, [, start, end]) => {
      if (isBytes(self)) record('copyWithin', self.subarray(start as number, end as number));
    });
    wrap(TypedArray as unknown as Record<string, unknown>, 'from', (_self, [source]) => {
      if (isBytes(source)) record('from', source);
    });
    const bufProto = Buffer.prototype as unknown as Record<string, unknown>;
    wrap(bufProto, 'copy', (self, [, , sourceStart, sourceEnd]) => {
      const b = self as Buffer;
      record('copy', b.subarray((sourceStart as number) ?? 0, (sourceEnd as number) ?? b.length));
    });
    const buf = Buffer as unknown as Record<string, unknown>;
    wrap(buf, 'concat', (_self, [list]) => {
      for (const b of list as Uint8Array[]) record('concat', b);
    });
    wrap(buf, 'from', (_self, [value, offset]) => {
      // Buffer.from(arrayBuffer, ...) is a view; Buffer.from(string) encodes: neither copies a body.
      if (isBytes(value) && offset === undefined) record('Buffer.from', value);
    });
    const cipher = Object.getPrototypeOf(
      crypto.createCipheriv('chacha20-poly1305', Buffer.alloc(32), Buffer.alloc(12), { authTagLength: 16 }),
    ) as Record<string, unknown>;
    const updateOwner = ownerOf(cipher, 'update');
    const originalUpdate = updateOwner['update'] as Fn;
    const counter = this;
    updateOwner['update'] = function (this: unknown, ...args: unknown[]) {
      const out = Reflect.apply(originalUpdate, this, args) as Buffer;
      if (!counter.#inside) {
        counter.#inside = true;
        try {
          record('cipher', out);
        } finally {
          counter.#inside = false;
        }
      }
      return out;
    };
    this.#patches.push({ owner: updateOwner, name: 'update', original: originalUpdate });
    wrap(Socket.prototype as unknown as Record<string, unknown>, 'write', (_self, [chunk]) => {
      if (isBytes(chunk)) this.socketWrites.push(snapshot(chunk));
    });
  }

  /** Runs `fn` unrecorded: the test's own copies while it watches (e.g. joining socketWrites) are not the body's. */
  quietly<T>(fn: () => T): T {
    const was = this.#inside;
    this.#inside = true;
    try {
      return fn();
    } finally {
      this.#inside = was;
    }
  }

  stop(): void {
    for (const p of this.#patches.reverse()) p.owner[p.name] = p.original;
    this.#patches = [];
  }

  /** The events that copied some of the body: of `payload` (the JSON) or of `wire` (the body as sent). */
  bodyCopies(payload: Uint8Array, wire: Uint8Array): CopyEvent[] {
    const pieces = [...samples(payload), ...samples(wire)];
    return this.events.filter((e) => pieces.some((p) => e.data.indexOf(p) !== -1));
  }
}

/** 32-byte windows of `b`, every 32 bytes: a copy of MIN_BYTES or more of it holds at least one whole window. */
function samples(b: Uint8Array): Buffer[] {
  const out: Buffer[] = [];
  const buf = Buffer.from(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i + 32 <= buf.length; i += 32) out.push(buf.subarray(i, i + 32));
  return out;
}

function ownerOf(o: Record<string, unknown>, name: string): Record<string, unknown> {
  let p: Record<string, unknown> | null = o;
  while (p !== null && !Object.hasOwn(p, name)) p = Object.getPrototypeOf(p) as Record<string, unknown> | null;
  if (p === null) throw new Error(`no ${name} on the prototype chain`);
  return p;
}

/** `function (file)` of the first frame outside this file and outside Node's own modules. */
function callerSite(): string {
  const stack = new Error().stack?.split('\n').slice(1) ?? [];
  for (const line of stack) {
    if (line.includes('copy-counter') || line.includes('node:')) continue;
    const m = /at (?:(\S+) )?\(?(?:file:\/\/)?([^():]+):\d+:\d+\)?$/.exec(line.trim());
    if (m === null) continue;
    const file = (m[2] as string).replace(/^.*\/(node_modules\/)/, '$1').replace(/^.*\/(src|test|bench)\//, '$1/');
    return `${m[1] ?? '<anonymous>'} (${file})`;
  }
  return '<unknown>';
}
