/**
 * End-to-end sealing through the bus: with a keyring on both sides, messages between peers that have keys are
 * sealed and opened transparently (the broker sees no JSON), requests still correlate, an unsealed message from
 * a peer with keys is refused and dead-lettered, a replayed envelope is dropped as a duplicate.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CONTENT_TYPE_SEALED } from '../../src/bus/index.js';
import { EbTime } from '../../src/codec/index.js';
import {
  generateIdentity,
  Keyring,
  nodeBackend,
  type PrivateKeyFile,
  type PublicEntry,
  ReplayWindow,
  Sealer,
  SequenceReserver,
} from '../../src/crypto/index.js';
import { timed } from '../helpers/amqp.js';
import { BusFixture, entity, rawOf, until } from '../helpers/bus.js';

const s = suite('bus with end-to-end sealing');

interface Party {
  name: string;
  privateKey: PrivateKeyFile;
  entry: PublicEntry;
}

const party = (name: string): Party => {
  const { privateKey, publicEntry } = generateIdentity(name, nodeBackend, Date.now() - 60_000);
  return { name, privateKey, entry: publicEntry };
};

async function sealerFor(
  me: Party,
  peer: Party,
  maySend: string[],
  mayReceive: string[],
  dir: string,
): Promise<Sealer> {
  const entry = {
    ed25519: peer.entry.ed25519,
    x25519: peer.entry.x25519.map(({ pub, notBefore }) => ({ pub, notBefore })),
    maySend,
    mayReceive,
  };
  return new Sealer({
    keyring: new Keyring(nodeBackend, {
      keyring: { format: 'heh-keyring/1', peers: { [peer.name]: entry } },
      privateKey: me.privateKey,
    }),
    backend: nodeBackend,
    sequence: await SequenceReserver.open(path.join(dir, `${me.name}.seq`)),
    replay: await ReplayWindow.open(path.join(dir, `${me.name}.replay`)),
  });
}

s(
  'sealed both ways: request/response works, the body on the wire is an envelope, clear text and replays are refused',
  timed(async () => {
    const f = new BusFixture();
    const dir = mkdtempSync(path.join(tmpdir(), 'bus-sealed-'));
    try {
      const hub = party(entity('heh'));
      const vpp = party(entity('vpp'));
      const hubBus = f.create({
        name: hub.name,
        peers: [vpp.name],
        sealer: await sealerFor(hub, vpp, ['get_report'], ['report'], dir),
      });
      const vppBus = await f.connector({
        name: vpp.name,
        peers: [hub.name],
        sealer: await sealerFor(vpp, hub, ['report'], ['get_report'], dir),
      });
      const seen: { sealed: boolean; contentType: string | undefined; body: string }[] = [];
      hubBus.onGetReport(async (m, ctx) => {
        seen.push({
          sealed: ctx.sealed,
          contentType: ctx.delivery.contentType,
          body: rawOf(ctx).body.toString('latin1'),
        });
        await ctx.reply({
          msg: 'report',
          from: m.from,
          to: m.to,
          resolution: m.resolution,
          values: { 'total.p': [1, 2] },
        });
      });
      await f.start();
      const from = EbTime.parse('2026-11-26T10:00:00Z');
      const reply = await vppBus.request(hub.name, {
        msg: 'get_report',
        from,
        to: from.plusSeconds(1800),
        resolution: 900,
        signals: ['total.p'],
      });
      assert.is(reply.msg, 'report');
      assert.equal((reply as { values: unknown }).values, { 'total.p': [1, 2] });
      assert.is(seen.length, 1);
      assert.ok(seen[0]?.sealed);
      assert.is(seen[0]?.contentType, CONTENT_TYPE_SEALED);
      assert.not.ok(seen[0]?.body.includes('get_report'), 'the broker sees no JSON');

      const refusedTypes: string[] = [];
      hubBus.on('dead-letter', (_reason, code) => refusedTypes.push(code));
      // A clear-text message from the VPP, which has keys: refused and dead-lettered, never handled.
      const ch = await f.channel();
      ch.publish(
        `${vpp.name}-to-${hub.name}`,
        'get_report',
        Buffer.from(
          JSON.stringify({
            msg: 'get_report',
            from: from.toString(),
            to: from.plusSeconds(900).toString(),
            resolution: 900,
            signals: ['total.p'],
          }),
        ),
        { contentType: 'application/json' },
      );
      await until(() => refusedTypes.includes('NOT_SEALED'), 'the clear-text message refused');
      // A replayed envelope (a copy of one the hub already handled): acked and dropped as a duplicate.
      const duplicates: string[] = [];
      hubBus.on('duplicate', (id) => duplicates.push(id));
      const envelope = Buffer.from(seen[0]?.body ?? '', 'latin1');
      ch.publish(`${vpp.name}-to-${hub.name}`, 'get_report', envelope, { contentType: CONTENT_TYPE_SEALED });
      await until(() => duplicates.length === 1, 'the replay dropped');
      assert.is(seen.length, 1, 'neither reached the handler');
      assert.ok(
        (await f.drain(`private-${hub.name}-dead`)).some(
          (m) => m.properties.headers?.['x-ebadge-error-code'] === 'NOT_SEALED',
        ),
      );
      await ch.close();
    } finally {
      await f.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000),
);

s.run();
