/**
 * Zero-copy on the outbound path (issue 13, item 5), against RabbitMQ, with the real Connector, AmqpTransport,
 * Outbox, Sealer and Hub (test/helpers/outbound.ts builds them):
 *
 *  - the bytes on the wire (the basic.publish method, header and body frames) of a report sent directly
 *    (Connector.publish) and through the outbox (the hub's path), clear and sealed on both backends, are the bytes
 *    the code before zero-copy sent (test/vectors/bus/outbound-wire.json, recorded by bench/outbound.ts from commit
 *    29f15af with the same keys, nonce, sequence number, clock and message id), but for the routing key, which names
 *    the sender since (senderKeyed());
 *  - the copies of the report's body from its encoder to the socket (test/helpers/copy-counter.ts) are exactly
 *    those docs/bus.md lists, for each path, sealing and backend, and the hub's own periodic report (src/device/hub.ts
 *    through its outbox) makes the same copies as the outbox path: one more copy anywhere fails this test.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { EbTime, encode } from '../../src/codec/index.js';
import { nobleBackend, nodeBackend } from '../../src/crypto/index.js';
import { exampleConfig } from '../../src/device/config/example.js';
import { parseConfig } from '../../src/device/config/index.js';
import { History } from '../../src/device/history.js';
import { Hub } from '../../src/device/hub.js';
import type { Logger } from '../../src/device/log.js';
import { StateStore } from '../../src/device/state.js';
import { timed } from '../helpers/amqp.js';
import { CopyCounter, type CopyEvent } from '../helpers/copy-counter.js';
import { repoRoot } from '../helpers/oracle.js';
import {
  bodyOf,
  canonical,
  fixedSealer,
  type Lib,
  loadLib,
  OutboundRig,
  publishFrames,
  report,
  type Sealing,
  suffix,
  T0,
} from '../helpers/outbound.js';

const VECTORS = JSON.parse(readFileSync(path.join(repoRoot(), 'test/vectors/bus/outbound-wire.json'), 'utf8')) as {
  cases: Record<string, string>;
};
const SEALINGS: Sealing[] = ['clear', 'node', 'noble'];
const PATHS = ['direct', 'viaOutbox'] as const;

/** `op @ file` of each copy; noble's own copies apart (inherent to the library, listed in docs/bus.md). */
function summary(events: CopyEvent[]): { ours: string[]; disk: string[]; noble: number } {
  const where = (e: CopyEvent): string => `${e.op} @ ${/\((.*)\)$/.exec(e.site)?.[1] ?? e.site}`;
  const noble = events.filter((e) => e.site.includes('node_modules/@noble/'));
  // The outbox's files: outbox.ts and its record format (outbox-format.ts).
  const disk = events.filter((e) => /src\/device\/outbox[.-]/.test(e.site));
  return {
    ours: events.filter((e) => !noble.includes(e) && !disk.includes(e)).map(where),
    disk: disk.map(where),
    noble: noble.length,
  };
}

/** What docs/bus.md ("Copies of a body") says stays, per sealing and path. */
const EXPECTED: Record<string, string[]> = {
  'clear direct': [],
  'clear viaOutbox': ['set @ src/amqp/publish-frames.js'],
  'node direct': ['cipher @ src/crypto/node-backend.js', 'set @ src/crypto/node-backend.js'],
  'node viaOutbox': [
    'set @ src/crypto/envelope.js',
    'cipher @ src/crypto/node-backend.js',
    'set @ src/crypto/node-backend.js',
  ],
  'noble direct': [],
  'noble viaOutbox': ['set @ src/crypto/envelope.js'],
};

/** The payload a body on the wire carries: itself, or what the VPP opens. */
function payloadOf(lib: Lib, sealing: Sealing, rig: OutboundRig, wire: Buffer): Buffer {
  if (sealing === 'clear') return wire;
  const vpp = fixedSealer(lib, sealing === 'noble' ? nobleBackend : nodeBackend, rig.names.hub, 'vpp');
  return Buffer.from(vpp.open(wire).payload);
}

async function counted(fn: () => Promise<void>): Promise<CopyCounter> {
  const c = new CopyCounter();
  c.start();
  try {
    await fn();
  } finally {
    c.stop();
  }
  return c;
}

/**
 * A recorded publish with the routing key D3.2.3 gives a message without a heh_id, `<msg>.<sender>` (data model
 * §3.8; the vectors were recorded when it was `<msg>`): the method frame's key and size change, every other byte
 * stays as recorded. The sender is the hub, its name blanked as canonical() does.
 */
function senderKeyed(hex: string | undefined): string | undefined {
  if (hex === undefined) return undefined;
  const b = Buffer.from(hex, 'hex');
  const size = b.readUInt32BE(3);
  const exchangeAt = 7 + 6;
  const keyAt = exchangeAt + 1 + (b[exchangeAt] as number);
  const key = b.subarray(keyAt + 1, keyAt + 1 + (b[keyAt] as number)).toString();
  const exchange = b.subarray(exchangeAt + 1, keyAt).toString();
  const sender = exchange.slice(0, exchange.indexOf('-to-'));
  const newKey = Buffer.from(`${key}.${sender}`);
  const method = Buffer.concat([
    b.subarray(7, keyAt),
    Buffer.from([newKey.length]),
    newKey,
    b.subarray(keyAt + 1 + key.length, 7 + size),
  ]);
  const head = Buffer.from([1, b[1] as number, b[2] as number, 0, 0, 0, 0]);
  head.writeUInt32BE(method.length, 3);
  return Buffer.concat([head, method, b.subarray(7 + size)]).toString('hex');
}

const wire = suite('outbound: the bytes on the wire');

wire(
  'direct and through the outbox, clear and sealed on both backends: the bytes sent before zero-copy',
  timed(async () => {
    const lib = await loadLib();
    const seen: Record<string, string> = {};
    for (const sealing of SEALINGS) {
      const sfx = suffix();
      const rig = await OutboundRig.open(lib, { sealing, suffix: sfx });
      try {
        for (const p of PATHS) {
          const c = await counted(() => rig[p](report(lib)));
          const frames = publishFrames(Buffer.concat(c.socketWrites), 'report');
          assert.ok(frames !== undefined, `${sealing} ${p}: a publish on the wire`);
          seen[`${sealing} ${p}`] = canonical(frames, sfx).toString('hex');
          assert.is(seen[`${sealing} ${p}`], senderKeyed(VECTORS.cases[`${sealing} ${p}`]), `${sealing} ${p}`);
        }
      } finally {
        await rig.close();
      }
    }
    assert.is(seen['node direct'], seen['noble direct'], 'both backends seal the same bytes');
  }, 60_000),
);

wire.run();

const copies = suite("outbound: the copies of a report's body, encoder to socket");

copies(
  'direct and through the outbox, clear and sealed on both backends',
  timed(async () => {
    const lib = await loadLib();
    const rows: string[] = [];
    for (const sealing of SEALINGS) {
      const rig = await OutboundRig.open(lib, { sealing, suffix: suffix() });
      try {
        for (const p of PATHS) {
          const m = report(lib);
          await rig[p](m); // warm: the codec's size hint, a tombstone waiting, as in a running hub
          const c = await counted(() => rig[p](m));
          const frames = publishFrames(Buffer.concat(c.socketWrites), 'report') as Buffer;
          const body = bodyOf(frames);
          const payload = payloadOf(lib, sealing, rig, body);
          assert.equal(payload, encode(m), `${sealing} ${p}: the report arrives`);
          const s = summary(c.bodyCopies(payload, body));
          rows.push(`${sealing} ${p}: ${JSON.stringify(s)}`);
          assert.equal(s.ours, EXPECTED[`${sealing} ${p}`], `${sealing} ${p}: copies on the way to the socket`);
          assert.equal(s.disk, p === 'viaOutbox' ? ['concat @ src/device/outbox.js'] : [], `${sealing} ${p}: disk`);
          if (sealing !== 'noble') assert.is(s.noble, 0);
        }
      } finally {
        await rig.close();
      }
    }
    console.log(rows.join('\n'));
  }, 60_000),
);

const silent: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

copies(
  "the hub's periodic report through its outbox: the copies of the outbox path",
  timed(async () => {
    const lib = await loadLib();
    for (const sealing of SEALINGS) {
      const rig = await OutboundRig.open(lib, { sealing, suffix: suffix(), start: false });
      const stateDir = path.join(rig.dir, 'state');
      const config = parseConfig({
        ...(exampleConfig(stateDir) as object),
        name: rig.names.hub,
        peers: [{ name: rig.names.vpp, role: 'aggregator' }],
        resolutionS: 60,
      });
      const signals = ['meter.p', 'boiler.p'];
      const history = await History.open(path.join(stateDir, 'history'), {
        resolutionS: 60,
        signals,
        retentionHours: config.historyHours,
        now: () => rig.clock.now(),
        fsyncIntervalMs: 3_600_000,
      });
      // Two hours of samples: a report of 2 x 120 values, about 1 KiB of JSON.
      const HOURS = 2;
      for (let t = T0 - HOURS * 3_600_000; t < T0; t += 60_000)
        history.record(t, { 'meter.p': 1.25 + (t % 7) / 8, 'boiler.p': 2 });
      const store = StateStore.open(stateDir);
      await store.update((s) => {
        s.subscriptions.push({
          requester: rig.names.vpp,
          interval: HOURS * 3600,
          resolution: 60,
          signals,
          next: T0 - HOURS * 3_600_000,
        });
      });
      const hub = new Hub({
        config,
        bus: rig.hub,
        history,
        meters: new Map(),
        actuators: new Map(),
        store,
        log: silent,
        clock: rig.clock,
        outbox: rig.outbox,
      });
      try {
        await rig.hub.start();
        await hub.start();
        await hub.connectionChanged(true);
        // The period is over at T0, its report due a sample's time later; counted until the broker confirmed it.
        const c = new CopyCounter();
        c.start();
        try {
          await rig.clock.advanceTo(T0 + 60_000);
          const deadline = Date.now() + 10_000;
          const sent = (): boolean =>
            c.quietly(() => publishFrames(Buffer.concat(c.socketWrites), 'report')) !== undefined;
          while (!sent() || rig.outbox.pending().length > 0) {
            if (Date.now() > deadline) throw new Error(`${sealing}: no report confirmed within 10 s`);
            await new Promise((r) => setTimeout(r, 5));
          }
        } finally {
          c.stop();
        }
        const body = bodyOf(publishFrames(Buffer.concat(c.socketWrites), 'report') as Buffer);
        const payload = payloadOf(lib, sealing, rig, body);
        const sent = JSON.parse(payload.toString()) as { values: Record<string, number[]>; from: string };
        assert.is(sent.values['meter.p']?.length, HOURS * 60, `${sealing}: the periodic report`);
        assert.is(sent.from, EbTime.fromEpochMs(T0 - HOURS * 3_600_000).toString());
        const s = summary(c.bodyCopies(payload, body));
        console.log(`hub ${sealing}: ${payload.length} B: ${JSON.stringify(s)}`);
        assert.equal(
          s.ours,
          EXPECTED[`${sealing} viaOutbox`],
          `${sealing}: the hub's report, on the way to the socket`,
        );
        assert.equal(s.disk, ['concat @ src/device/outbox.js'], `${sealing}: the hub's report, to the disk`);
      } finally {
        await hub.stop();
        await history.close();
        await rig.close();
      }
    }
  }, 90_000),
);

copies.run();
