/**
 * End-to-end sealing through the bus: with a keyring on both sides, messages between peers that have keys are
 * sealed and opened transparently (the broker sees no JSON), requests still correlate, an unsealed message from
 * a peer with keys is refused and dead-lettered, a replayed envelope is dropped as a duplicate, and one whose routing
 * key or AMQP type was changed on the way is refused with its own code.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CONTENT_TYPE_SEALED } from '../../src/bus/index.js';
import { EbTime, encode } from '../../src/codec/index.js';
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

s(
  'issue 15, item 4: a sealed message whose routing key or AMQP type was changed on the way is refused, each with its own code, unanswered; the genuine copy is handled',
  timed(async () => {
    const f = new BusFixture();
    const dir = mkdtempSync(path.join(tmpdir(), 'bus-sealed-'));
    try {
      const hub = party(entity('heh'));
      const vpp = party(entity('vpp'));
      const hubBus = f.create({
        name: hub.name,
        peers: [vpp.name],
        sealer: await sealerFor(hub, vpp, ['get_report'], ['report', 'response'], dir),
      });
      const vppSealer = await sealerFor(vpp, hub, ['report', 'response'], ['get_report'], dir);
      const vppBus = f.create({ name: vpp.name, peers: [hub.name], sealer: vppSealer });
      const handled: string[] = [];
      hubBus.onGetReport(async (m, ctx) => {
        handled.push(m.request_id ?? '');
        await ctx.reply({
          msg: 'report',
          from: m.from,
          to: m.to,
          resolution: m.resolution,
          values: { 'total.p': [1] },
        });
      });
      const atVpp: string[] = [];
      vppBus.onReport((m) => {
        atVpp.push(m.msg);
      });
      vppBus.onResponse((m) => {
        atVpp.push(m.msg);
      });
      const refused: [string, string][] = [];
      hubBus.on('dead-letter', (reason, code) => refused.push([code, reason]));
      await f.start();
      const from = EbTime.parse('2026-11-26T10:00:00Z');
      const requestId = '6f1c2e9a-1111-4222-8333-000000000001';
      const envelope = await vppSealer.seal(
        { peer: hub.name },
        'get_report',
        encode({
          msg: 'get_report',
          from,
          to: from.plusSeconds(900),
          resolution: 900,
          signals: ['total.p'],
          request_id: requestId,
        }),
      );
      const ch = await f.channel();
      const send = (key: string, type: string | undefined): boolean =>
        ch.publish(`${vpp.name}-to-${hub.name}`, key, envelope, {
          contentType: CONTENT_TYPE_SEALED,
          ...(type === undefined ? {} : { type }),
          headers: { 'x-ebadge-dm': '3.1' },
        });
      // What the broker (or a party writing to that exchange) could do to get round a topic permission.
      send('load_price', 'get_report');
      send('get_report', 'load_price');
      send('get_report', undefined);
      await until(() => refused.length === 3, 'three refusals');
      assert.equal(
        refused.map(([code]) => code),
        ['ROUTING_KEY_ALTERED', 'TYPE_ALTERED', 'TYPE_ALTERED'],
      );
      assert.match(refused[0]?.[1] ?? '', /the routing key 'load_price' does not name the sealed type get_report/);
      assert.equal(handled, []);
      // The genuine copy still counts (the refusals did not use its sequence), and its answer is the first the VPP gets.
      send('get_report.x', 'get_report');
      await until(() => atVpp.length === 1, 'the report at the VPP');
      assert.equal([handled, atVpp], [[requestId], ['report']]);
      const codes = (await f.drain(`private-${hub.name}-dead`)).map((m) =>
        String(m.properties.headers?.['x-ebadge-error-code']),
      );
      assert.equal(codes, ['ROUTING_KEY_ALTERED', 'TYPE_ALTERED', 'TYPE_ALTERED']);
      await ch.close();
    } finally {
      await f.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000),
);

s.run();
