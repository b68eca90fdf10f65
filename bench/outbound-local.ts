/**
 * The second half of bench/outbound.ts: the same outbound path without the broker, to price what changed without
 * the noise of a round trip. For each tree, what src/device/hub.ts, src/bus/connector.ts (#send) and the AMQP client
 * (Publisher#prepare, publish-frames.ts writeMessage) do with a report, as that tree does it: into the outbox (on a
 * tmpfs) and out of it, or straight to the frame, sealed or not, the frames written into the connection's output
 * buffer and handed to a sink that drops them. CPU µs per report, rounds of ~200 ms alternating between the trees.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Output } from '../src/amqp/output.js';
import type { MessageProperties } from '../src/amqp/properties.js';
import type { OutgoingMessage } from '../src/amqp/publish-frames.js';
import type { Message } from '../src/codec/index.js';
import type { BodyWriter } from '../src/core/body-writer.js';
import type { Sealer } from '../src/crypto/index.js';
import type { Outbox } from '../src/device/outbox.js';
import { fixedSealer, type Lib, report, type Sealing, zeroCopy } from '../test/helpers/outbound.js';
import { fmt, median, ratio } from './stats.js';

export interface LocalTree {
  readonly name: 'before' | 'after';
  readonly lib: Lib;
}

interface Frames {
  writeMessage(out: Output, id: number, frameMax: number, msg: OutgoingMessage): void;
  Output: new (sink: (chunks: Buffer[]) => void) => Output;
  propertiesSize(p: MessageProperties | undefined): number;
}

async function framesOf(lib: Lib): Promise<Frames> {
  const load = (p: string): Promise<Record<string, unknown>> => import(pathToFileURL(path.join(lib.root, p)).href);
  const [pf, o, pr] = await Promise.all([
    load('amqp/publish-frames.js'),
    load('amqp/output.js'),
    load('amqp/properties.js'),
  ]);
  return { writeMessage: pf['writeMessage'], Output: o['Output'], propertiesSize: pr['propertiesSize'] } as Frames;
}

const PEER = 'vpp-local';
const FRAME_MAX = 131_072;

/** One tree's outbound path, down to the frames. */
class LocalPath {
  readonly #lib: Lib;
  readonly #frames: Frames;
  readonly #out: Output;
  readonly #sealer: Sealer | undefined;
  readonly #outbox: Outbox;

  constructor(lib: Lib, frames: Frames, outbox: Outbox, sealing: Sealing) {
    this.#lib = lib;
    this.#frames = frames;
    this.#out = new frames.Output(() => undefined);
    this.#outbox = outbox;
    const c = lib.crypto;
    this.#sealer =
      sealing === 'clear' ? undefined : fixedSealer(lib, sealing === 'noble' ? c.nobleBackend : c.nodeBackend, PEER);
  }

  async send(m: Message, viaOutbox: boolean): Promise<void> {
    const { codec } = this.#lib;
    const now = zeroCopy(this.#lib);
    let payload: Uint8Array | BodyWriter;
    let id = -1;
    const meta = { messageId: '0b5d1f57-6c1e-4a39-9a5e-3f1c2d4e5f60', type: m.msg, routingKey: m.msg };
    if (viaOutbox && now) {
      id = await this.#outbox.append(PEER, codec.bodyWriter(m), meta);
      payload = this.#outbox.get(id)?.body as Buffer;
    } else if (viaOutbox) {
      payload = codec.encode(m);
      id = await this.#outbox.append(PEER, payload, meta);
    } else {
      payload = now ? codec.bodyWriter(m) : codec.encode(m);
    }
    let body: Uint8Array | BodyWriter = payload;
    if (this.#sealer !== undefined)
      body = now
        ? await this.#sealer.envelope({ peer: PEER }, m.msg, payload)
        : await this.#sealer.seal({ peer: PEER }, m.msg, payload as Uint8Array);
    const properties: MessageProperties = {
      messageId: meta.messageId,
      type: m.msg,
      contentType: this.#sealer === undefined ? 'application/json' : 'application/vnd.ebadge.heh-e2e',
      timestamp: new Date(),
      appId: 'heh-local',
      headers: { 'x-ebadge-dm': '3.1' },
      deliveryMode: 2,
    };
    // As Publisher#prepare hands it on: bytes as a Buffer view, a writer at its maxBytes.
    const [frameBody, bodyLen] =
      body instanceof Uint8Array
        ? [Buffer.from(body.buffer, body.byteOffset, body.length), body.length]
        : [body, body.maxBytes];
    this.#frames.writeMessage(this.#out, 1, FRAME_MAX, {
      exchange: `heh-local-to-${PEER}`,
      routingKey: m.msg,
      body: frameBody,
      bodyLen,
      properties,
      propsSize: this.#frames.propertiesSize(properties),
      mandatory: true,
    });
    this.#out.flush();
    if (id >= 0) this.#outbox.ack(id);
  }
}

/** CPU µs per call of `fn`, called until about `ms` of CPU went by. */
async function cpuPerCall(fn: () => Promise<void>, ms: number): Promise<number> {
  const t0 = process.cpuUsage();
  let n = 0;
  let used = 0;
  while (used < ms * 1000) {
    for (let i = 0; i < 20; i++) await fn();
    n += 20;
    const d = process.cpuUsage(t0);
    used = d.user + d.system;
  }
  return used / n;
}

export interface LocalCell {
  size: string;
  bytes: number;
  sealing: Sealing;
  path: 'viaOutbox' | 'direct';
  before: number[];
  after: number[];
}

export async function localCells(
  trees: readonly LocalTree[],
  sizes: readonly { name: string; signals: number; values: number }[],
  sealings: readonly Sealing[],
  rounds: number,
  ms: number,
  run: <T>(tree: LocalTree, fn: () => Promise<T>) => Promise<T>,
): Promise<LocalCell[]> {
  const cells: LocalCell[] = [];
  const dir = mkdtempSync(path.join(process.platform === 'linux' ? '/dev/shm' : tmpdir(), 'outbound-local-'));
  try {
    for (const sealing of sealings) {
      const paths = new Map<LocalTree, LocalPath>();
      const boxes: Outbox[] = [];
      for (const tree of trees) {
        const box = await tree.lib.outbox.Outbox.open(path.join(dir, `${tree.name}-${sealing}`), {
          fsyncIntervalMs: 60_000,
        });
        boxes.push(box);
        paths.set(tree, new LocalPath(tree.lib, await framesOf(tree.lib), box, sealing));
      }
      try {
        for (const size of sizes) {
          for (const p of ['viaOutbox', 'direct'] as const) {
            const cell: LocalCell = { size: size.name, bytes: 0, sealing, path: p, before: [], after: [] };
            for (const tree of trees) {
              const m = report(tree.lib, size.signals, size.values);
              cell.bytes = tree.lib.codec.encode(m).length;
              await run(tree, () =>
                cpuPerCall(() => (paths.get(tree) as LocalPath).send(m, p === 'viaOutbox'), ms / 2),
              );
            }
            for (let r = 0; r < rounds; r++) {
              for (const tree of r % 2 === 0 ? trees : [...trees].reverse()) {
                const m = report(tree.lib, size.signals, size.values);
                const us = await run(tree, () =>
                  cpuPerCall(() => (paths.get(tree) as LocalPath).send(m, p === 'viaOutbox'), ms),
                );
                cell[tree.name].push(us);
              }
            }
            cells.push(cell);
            console.log(
              `local: ${sealing}, ${size.name}, ${p}: CPU µs/report ${fmt(median(cell.before))} -> ${fmt(median(cell.after))}`,
            );
          }
        }
      } finally {
        for (const b of boxes) await b.close();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return cells;
}

export function localTable(
  cells: readonly LocalCell[],
  names: { sealing: Record<Sealing, string>; path: Record<LocalCell['path'], string> },
): string[] {
  return [
    '| report | sealing | path | CPU µs before | CPU µs after | after / before (per round) |',
    '| :-- | :-- | :-- | --: | --: | --: |',
    ...cells.map((c) => {
      const [b, a] = [median(c.before), median(c.after)];
      const paired = c.after.map((x, i) => x / (c.before[i] as number)).sort((x, y) => x - y);
      const spread = `${(paired[0] as number).toFixed(2)}-${(paired[paired.length - 1] as number).toFixed(2)}`;
      return `| ${c.size}, ${c.bytes.toLocaleString('en-US')} B | ${names.sealing[c.sealing]} | ${names.path[c.path]} | ${fmt(b)} | ${fmt(a)} | ${ratio(a, b)} (${spread}) |`;
    }),
  ];
}
