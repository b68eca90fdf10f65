/**
 * The outbound path of a hub's message, from its encoder to the socket, on a library tree given at run time: this
 * tree's src/, or another commit's compiled src/ (bench/outbound.ts loads the code before zero-copy next to this
 * one, to compare them in one process). A hub Connector over AMQP publishes to a VPP whose queue exists but is
 * never consumed (nothing received in this process mixes with what is measured), with fixed keys, nonce, sequence
 * number, clock and message ids, so that the bytes on the wire of two trees can be compared.
 *
 * `viaOutbox` is what the hub does with its reports and events (src/device/hub.ts #send and #deliver), in the
 * version of the tree: into the outbox, then published from it, acked on the broker's confirm. `direct` is
 * Connector.publish (replies, and a hub without an outbox).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type * as Amqp from '../../src/amqp/index.js';
import type * as Bus from '../../src/bus/index.js';
import type * as Codec from '../../src/codec/index.js';
import type * as Crypto from '../../src/crypto/index.js';
import type * as OutboxModule from '../../src/device/outbox.js';

export interface Lib {
  readonly root: string;
  readonly amqp: typeof Amqp;
  readonly bus: typeof Bus;
  readonly codec: typeof Codec;
  readonly crypto: typeof Crypto;
  readonly outbox: typeof OutboxModule;
}

export const THIS_TREE = fileURLToPath(new URL('../../src/', import.meta.url));

/** The modules of a compiled src/ folder (default: this tree's). */
export async function loadLib(root = THIS_TREE): Promise<Lib> {
  const load = (p: string): Promise<unknown> => import(pathToFileURL(path.join(root, p)).href);
  const [amqp, bus, codec, crypto, outbox] = await Promise.all([
    load('amqp/index.js'),
    load('bus/index.js'),
    load('codec/index.js'),
    load('crypto/index.js'),
    load('device/outbox.js'),
  ]);
  return { root, amqp, bus, codec, crypto, outbox } as Lib;
}

/** Whether the tree encodes in place (this change) or encodes first (before it). */
export const zeroCopy = (lib: Lib): boolean => 'bodyWriter' in lib.codec;

/** 2026-01-01 12:00:00 UTC. */
export const T0 = Date.UTC(2026, 0, 1, 12);
export const NONCE_BYTE = 7;
export const SEQUENCE = 1000n;
export const MESSAGE_ID = '0b5d1f57-6c1e-4a39-9a5e-3f1c2d4e5f60';

/** A report of `signals` signals x `values` values: 1.2 KiB of JSON for 4 x 30. */
export function report(lib: Lib, signals = 4, values = 30): Codec.Message<'report'> {
  const v: Record<string, number[]> = {};
  for (let s = 0; s < signals; s++) v[`dev${s}.p`] = Array.from({ length: values }, (_, i) => 1.25 + s + i / 8);
  return {
    msg: 'report',
    from: lib.codec.EbTime.fromEpochMs(T0),
    to: lib.codec.EbTime.fromEpochMs(T0 + values * 60_000),
    resolution: 60,
    values: v,
  } as Codec.Message<'report'>;
}

export type Sealing = 'clear' | 'node' | 'noble';

/** 32 fixed bytes per label: the same keys in every run and every tree. */
const fixed = (label: string): string =>
  Buffer.from(
    Array.from({ length: 32 }, (_, i) => (i * 31 + label.length * 7 + label.charCodeAt(i % label.length)) & 0xff),
  ).toString('base64url');

function keyFile(lib: Lib, id: string): Crypto.PrivateKeyFile {
  const { privateKey } = lib.crypto.generateIdentity(id, lib.crypto.nodeBackend, T0 - 86_400_000);
  const [epoch] = privateKey.x25519;
  return { ...privateKey, ed25519: fixed(`${id}/ed`), x25519: [{ ...epoch!, secret: fixed(`${id}/x`) }] };
}

/** The Sealer of the hub (or of the VPP) for its one peer, with everything that varies between runs fixed. */
export function fixedSealer(
  lib: Lib,
  backend: Crypto.CryptoBackend,
  peer: string,
  me: 'hub' | 'vpp' = 'hub',
): Crypto.Sealer {
  const c = lib.crypto;
  const mine = keyFile(lib, me);
  const theirs = c.publicEntry(keyFile(lib, me === 'hub' ? 'vpp' : 'hub'), backend);
  const keyring = new c.Keyring(backend, {
    keyring: {
      format: 'heh-keyring/1',
      peers: {
        [peer]: {
          ed25519: theirs.ed25519,
          x25519: theirs.x25519.map(({ pub, notBefore }) => ({ pub, notBefore })),
          maySend: me === 'hub' ? ['get_report'] : ['report'],
          mayReceive: me === 'hub' ? ['report'] : ['get_report'],
        },
      },
    },
    privateKey: mine,
  });
  const options = {
    keyring,
    backend,
    sequence: { take: async () => SEQUENCE },
    replay: { check: () => 'new' as const, accept: () => undefined, persist: async () => undefined },
    now: () => T0,
    // Read by the tree after this change; the tree before it draws its nonce from randomBytes (fixedRandomBytes).
    random: (nonce: Uint8Array) => nonce.fill(NONCE_BYTE),
  };
  return new c.Sealer(options);
}

export interface RigOptions {
  sealing: Sealing;
  /** Makes entity names unique on a shared broker; same length always (the wire bytes are compared). */
  suffix: string;
  url?: string;
  /** false: the hub's connector is not started, so that a Hub can register its handlers first. */
  start?: boolean;
}

export class OutboundRig {
  readonly lib: Lib;
  readonly hub: Bus.Connector<Bus.AmqpTransport>;
  readonly vpp: Bus.AmqpTransport;
  readonly outbox: OutboxModule.Outbox;
  readonly names: { hub: string; vpp: string };
  /** The hub connector's clock (message timestamps), for a Hub built on this rig. */
  readonly clock: Bus.ManualClock;
  /** Where the outbox is; a Hub built on this rig may keep its state and history next to it. */
  readonly dir: string;

  private constructor(
    lib: Lib,
    hub: Bus.Connector<Bus.AmqpTransport>,
    vpp: Bus.AmqpTransport,
    outbox: OutboxModule.Outbox,
    dir: string,
    names: { hub: string; vpp: string },
    clock: Bus.ManualClock,
  ) {
    this.lib = lib;
    this.hub = hub;
    this.vpp = vpp;
    this.outbox = outbox;
    this.dir = dir;
    this.names = names;
    this.clock = clock;
  }

  static async open(lib: Lib, o: RigOptions): Promise<OutboundRig> {
    const names = { hub: `heh-zc-${o.suffix}`, vpp: `vpp-zc-${o.suffix}` };
    const url = o.url ?? 'amqp://guest:guest@127.0.0.1:5672';
    const backend = o.sealing === 'noble' ? lib.crypto.nobleBackend : lib.crypto.nodeBackend;
    // The VPP's side of the topology (its inbox bound to the hub's exchange), never consumed.
    // Classic queues, as bench/hub.ts has them: a quorum queue's disk writes would load the broker for nothing here.
    const vpp = new lib.bus.AmqpTransport({
      name: names.vpp,
      peers: [names.hub],
      url,
      consume: false,
      queueType: 'classic',
    });
    await vpp.start(async () => undefined);
    const clock = new lib.bus.ManualClock(T0);
    const hub = lib.bus.amqpBus({
      name: names.hub,
      peers: [names.vpp],
      url,
      queueType: 'classic',
      clock,
      ...(o.sealing === 'clear' ? {} : { sealer: fixedSealer(lib, backend, names.vpp) }),
    });
    if (o.start !== false) await hub.start();
    const dir = mkdtempSync(path.join(tmpdir(), 'outbound-'));
    // The hub's setting (hub.json fsyncIntervalS, a minute): no fdatasync per report.
    const outbox = await lib.outbox.Outbox.open(path.join(dir, 'outbox'), { fsyncIntervalMs: 60_000 });
    return new OutboundRig(lib, hub, vpp, outbox, dir, names, clock);
  }

  /** src/device/hub.ts #send then #deliver, as the tree has them. */
  async viaOutbox(message: Codec.Message, messageId = MESSAGE_ID): Promise<void> {
    const { codec, bus } = this.lib;
    const peer = this.names.vpp;
    const meta = { messageId, type: message.msg, routingKey: bus.routingKeyOf(message) };
    let r: { id: number; body: Uint8Array };
    if (zeroCopy(this.lib)) {
      const id = await this.outbox.append(peer, codec.bodyWriter(message), meta);
      r = this.outbox.get(id) as OutboxModule.OutboxRecord;
    } else {
      const body = codec.encode(message);
      r = { id: await this.outbox.append(peer, body, meta), body };
    }
    await this.hub.publishEncoded(peer, message.msg, r.body, { routingKey: meta.routingKey, messageId });
    this.outbox.ack(r.id);
  }

  /** Empties the VPP's queue (a benchmark sends thousands of reports nobody reads). */
  async purge(): Promise<void> {
    const ch = await this.vpp.connection.createChannel();
    try {
      await ch.queuePurge(`private-${this.names.vpp}-in`);
    } finally {
      await ch.close();
    }
  }

  /** Connector.publish. */
  async direct(message: Codec.Message, messageId = MESSAGE_ID): Promise<void> {
    await this.hub.publish(this.names.vpp, message, { messageId });
  }

  async close(): Promise<void> {
    await this.hub.close();
    const ch = await this.vpp.connection.createChannel();
    try {
      for (const e of [this.names.hub, this.names.vpp]) {
        await ch.queueDelete(`private-${e}-in`);
        await ch.queueDelete(`private-${e}-dead`);
        await ch.exchangeDelete(`private-${e}-dlx`);
      }
      await ch.exchangeDelete(`${this.names.hub}-to-${this.names.vpp}`);
      await ch.exchangeDelete(`${this.names.vpp}-to-${this.names.hub}`);
    } finally {
      await ch.close();
      await this.vpp.close();
      await this.outbox.close();
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

/**
 * The frames of one basic.publish (method, content header, body frames) in what a socket wrote: the first whose
 * routing key is `msg` or starts with `msg.` (the heh_id or the sender follows).
 */
export function publishFrames(stream: Buffer, msg: string): Buffer | undefined {
  let o = 0;
  while (o + 8 <= stream.length) {
    const type = stream[o] as number;
    const size = stream.readUInt32BE(o + 3);
    const next = o + 8 + size;
    // basic.publish: class 60, method 40
    if (type === 1 && stream.readUInt32BE(o + 7) === (60 << 16) + 40) {
      const rk = stream.subarray(o + 14 + (stream[o + 13] as number), next);
      const key = rk.subarray(1, 1 + (rk[0] as number)).toString();
      if (key === msg || key.startsWith(`${msg}.`)) {
        const bodySize = Number(stream.readBigUInt64BE(next + 7 + 4));
        let end = next + 8 + stream.readUInt32BE(next + 3);
        for (let got = 0; got < bodySize; ) {
          const n = stream.readUInt32BE(end + 3);
          got += n;
          end += 8 + n;
        }
        return stream.subarray(o, end);
      }
    }
    o = next;
  }
  return undefined;
}

/** The body of publish frames (publishFrames): the body frames' payloads, joined. */
export function bodyOf(frames: Buffer): Buffer {
  let o = 8 + frames.readUInt32BE(3);
  const size = Number(frames.readBigUInt64BE(o + 7 + 4));
  o += 8 + frames.readUInt32BE(o + 3);
  const parts: Buffer[] = [];
  for (let got = 0; got < size; ) {
    const n = frames.readUInt32BE(o + 3);
    parts.push(frames.subarray(o + 7, o + 7 + n));
    got += n;
    o += 8 + n;
  }
  return Buffer.concat(parts);
}

/** Removes a run's suffix from bytes (names of the same length in every run), for comparing runs. */
export function canonical(bytes: Buffer, suffix: string): Buffer {
  const out = Buffer.from(bytes);
  const s = Buffer.from(suffix);
  for (let at = out.indexOf(s); at !== -1; at = out.indexOf(s, at + 1)) out.fill(0x5f, at, at + s.length);
  return out;
}

/** Six characters that make this run's entity names unique on a shared broker. */
export const suffix = (): string =>
  randomBytes(6).toString('base64url').replace(/[-_]/g, 'x').slice(0, 6).toLowerCase();

/**
 * Runs `fn` with node:crypto's randomBytes giving NONCE_BYTE bytes, for a tree whose Sealer has no `random` option
 * (the tree before this change draws its nonces there). The ES module binding follows (syncBuiltinESMExports).
 */
export async function withFixedRandomBytes<T>(fn: () => Promise<T>): Promise<T> {
  const c = createRequire(import.meta.url)('node:crypto') as { randomBytes: unknown };
  const original = c.randomBytes;
  c.randomBytes = (n: number) => Buffer.alloc(n, NONCE_BYTE);
  syncBuiltinESMExports();
  try {
    return await fn();
  } finally {
    c.randomBytes = original;
    syncBuiltinESMExports();
  }
}
