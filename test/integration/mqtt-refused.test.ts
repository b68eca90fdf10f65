/**
 * Sends the broker refuses in its PUBACK, against throw-away Mosquittos (own ports, own temp folders, stopped at the
 * end): one with `message_size_limit`, which answers a larger PUBLISH with PUBACK 0x95 (a code MQTT 5 does not list
 * for a PUBACK, which MQTT.js's parser used to fail on, leaving the send unanswered and the connection out of step),
 * and one whose ACL denies the dead-letter topic (0x87). A refused send fails at once with its code, the connection
 * goes on, and a delivery whose dead letter is refused is settled all the same: nothing of the peer's waits behind it.
 */
import { randomUUID } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Connector } from '../../src/bus/index.js';
import { EbTime, type Message } from '../../src/codec/index.js';
import { type MqttTransport, mqttBus, PubackError } from '../../src/mqtt/index.js';
import { until, withDeadline } from '../helpers/deadline.js';
import { Mosquitto } from '../helpers/mosquitto.js';

const MS = 10_000;
const LIMIT = 100_000;
const run = randomUUID().slice(0, 8);

const s = suite('mqtt refused in the PUBACK');
let limited: Mosquitto | undefined;
let denied: Mosquitto | undefined;

s.before(async () => {
  limited = await Mosquitto.start({ config: () => [`message_size_limit ${LIMIT}`] });
  denied = await Mosquitto.start({
    files: { acl: 'topic readwrite #\ntopic deny dead-letter/#\n' },
    config: (dir) => [`acl_file ${dir}/acl`],
  });
});

s.after(async () => {
  await Promise.all([limited?.close(), denied?.close()]);
});

async function raw(url: string, clientId: string): Promise<MqttClient> {
  return withDeadline(
    mqtt.connectAsync(url, {
      clientId,
      clean: false,
      protocolVersion: 5,
      properties: { sessionExpiryInterval: 600 },
      reconnectPeriod: 0,
    }),
    MS,
    'connect',
  );
}

const getReport = (signals: number): Message<'get_report'> => ({
  msg: 'get_report',
  request_id: randomUUID(),
  from: EbTime.parse('2026-12-04T22:00:00Z'),
  to: EbTime.parse('2026-12-04T23:00:00Z'),
  resolution: 900,
  signals: Array.from({ length: signals }, (_, i) => `dev${i}.p`),
});

s('a send over message_size_limit rejects at once with 0x95, is never sent again, and the next one goes', async () => {
  const url = (limited as Mosquitto).url;
  const me = `agg-${run}`;
  const peerName = `heh-${run}`;
  // The peer's session exists, so that a send to it is not answered 0x10 (no subscriber).
  const peer = await raw(url, peerName);
  const got: number[] = [];
  peer.on('message', (_t, payload) => got.push(payload.length));
  await peer.subscribeAsync(`+/+/${peerName}/#`, { qos: 1 });
  const agg = mqttBus({ name: me, peers: [peerName], url, reconnectDelay: 20 });
  const downs: string[] = [];
  agg.transport.on('down', (e) => downs.push(String(e)));
  const bigSends: number[] = [];
  try {
    await withDeadline(agg.start(), MS, 'start');
    const client = agg.transport.client as MqttClient;
    client.on('packetsend', (p) => {
      if (p.cmd === 'publish' && p.payload.length > LIMIT) bigSends.push(p.payload.length);
    });
    const t0 = Date.now();
    // 12,000 signals: about 145 KB of body.
    const refused = await withDeadline(
      agg.publish(peerName, getReport(12_000)).then(
        () => undefined,
        (e: unknown) => e,
      ),
      3_000,
      'the refused send',
    );
    assert.ok(Date.now() - t0 < 2_000, `rejected at once (${Date.now() - t0} ms)`);
    assert.instance(refused, PubackError);
    assert.is((refused as PubackError).code, 0x95);
    assert.match((refused as Error).message, 'refused the message on ');
    assert.match((refused as Error).message, 'as too large (PUBACK 0x95, Packet too large; a body of ');
    // The same connection goes on: the next send is answered, nothing was lost on the way.
    await withDeadline(agg.publish(peerName, getReport(1)), 3_000, 'the next send');
    await until(() => got.length === 1, 'the small one delivered', MS);
    assert.equal(downs, [], 'the connection stayed up');
    // A new connection does not send the refused one again (MQTT.js removed it from its store).
    const recovered = new Promise<void>((resolve) => agg.transport.once('recovered', () => resolve()));
    client.stream.destroy();
    await withDeadline(recovered, MS, 'recovered');
    await withDeadline(agg.publish(peerName, getReport(2)), 3_000, 'a send after the reconnect');
    await until(() => got.length === 2, 'the one after the reconnect delivered', MS);
    assert.equal(bigSends.length, 1, `the big one was sent once (${bigSends.join(', ')})`);
  } finally {
    await Promise.allSettled([agg.close(500), peer.endAsync()]);
    await cleanSessions(url, [me, peerName]);
  }
});

s(
  'a refused message whose dead letter is over message_size_limit is settled, dead-lettered without its body, and the next ones of its peer are handled',
  async () => {
    const url = (limited as Mosquitto).url;
    const hubName = `heh-dl-${run}`;
    const vppName = `vpp-dl-${run}`;
    const vpp = await raw(url, vppName);
    const answers: string[] = [];
    const dead: Record<string, unknown>[] = [];
    vpp.on('message', (t, payload) => {
      if (t.startsWith('dead-letter/')) dead.push(JSON.parse(payload.toString()));
      else answers.push(`${t.split('/')[0]} ${JSON.parse(payload.toString()).response_code ?? ''}`);
    });
    await vpp.subscribeAsync([`dead-letter/${hubName}`, `+/${hubName}/${vppName}/#`], { qos: 1 });
    const hub = mqttBus({ name: hubName, peers: [vppName], url });
    const handled: number[] = [];
    hub.onSetClock((m) => {
      handled.push(m.offset ?? 0);
    });
    const refusals: string[] = [];
    hub.on('dead-letter', (_r, code, d) => refusals.push(`${code} ${d.body.length}`));
    const downs: string[] = [];
    hub.transport.on('down', (e) => downs.push(String(e)));
    const topic = `set_clock/${vppName}/${hubName}`;
    const setClock = (offset: number): string => JSON.stringify({ msg: 'set_clock', offset, msg_id: randomUUID() });
    try {
      await withDeadline(hub.start(), MS, 'start');
      // 80 KB under the broker's 100,000 B, refused by the codec (a bad escape): its dead letter, the body in base64
      // (about 107 KB), is over the limit.
      const bad = `${setClock(1).slice(0, -1)},"x":"${'a'.repeat(80_000)}\\q"}`;
      await vpp.publishAsync(topic, bad, { qos: 1 });
      await vpp.publishAsync(topic, setClock(2), { qos: 1 });
      await vpp.publishAsync(topic, setClock(3), { qos: 1 });
      // Handled in well under the keep-alive (30 s) that used to end the connection out of step.
      await until(
        () => handled.length === 2,
        () => `the next two handled (${handled.join(', ')})`,
        5_000,
      );
      assert.equal(handled, [2, 3]);
      assert.equal(refusals, [`DECODE_400 ${Buffer.byteLength(bad)}`]);
      await until(() => dead.length === 1, 'the dead letter without its body', MS);
      const record = dead[0] as Record<string, unknown>;
      assert.is(record['code'], 'DECODE_400');
      assert.is(record['from'], vppName);
      assert.is(record['topic'], topic);
      assert.is(record['body_bytes'], Buffer.byteLength(bad));
      assert.is(record['body_base64'], undefined);
      assert.match(String(record['body_omitted']), 'as too large (PUBACK 0x95');
      await until(
        () => answers.includes('response 400'),
        () => `the 400 answered (${answers.join('; ')})`,
        MS,
      );
      await until(() => hub.transport.unsettled === 0, 'every delivery settled', MS);
      assert.equal(downs, [], 'the connection stayed up');
      // Settled: nothing comes again when the hub comes back.
      await hub.close();
      const again = mqttBus({ name: hubName, peers: [vppName], url });
      const later: string[] = [];
      again.onSetClock((m) => {
        later.push(`set_clock ${m.offset}`);
      });
      again.on('dead-letter', (_r, code) => later.push(code));
      try {
        await withDeadline(again.start(), MS, 'start again');
        await vpp.publishAsync(topic, setClock(4), { qos: 1 });
        await until(() => later.length > 0, 'the next one handled', MS);
        await new Promise((resolve) => setTimeout(resolve, 300));
        assert.equal(later, ['set_clock 4'], 'nothing of before came again');
      } finally {
        await again.close();
      }
    } finally {
      await Promise.allSettled([hub.close(), vpp.endAsync()]);
      await cleanSessions(url, [hubName, vppName]);
    }
  },
);

s('a dead letter the broker refuses even without its body: the delivery is settled and the loss told', async () => {
  const url = (denied as Mosquitto).url;
  const hubName = `heh-acl-${run}`;
  const vppName = `vpp-acl-${run}`;
  const vpp = await raw(url, vppName);
  await vpp.subscribeAsync(`+/${hubName}/${vppName}/#`, { qos: 1 });
  const hub = mqttBus({ name: hubName, peers: [vppName], url });
  const handled: number[] = [];
  hub.onSetClock((m) => {
    handled.push(m.offset ?? 0);
  });
  const degraded: string[] = [];
  hub.transport.on('degraded', (what) => degraded.push(what));
  const topic = `set_clock/${vppName}/${hubName}`;
  try {
    await withDeadline(hub.start(), MS, 'start');
    // A routing mistake (the topic names get_report), refused 400 and dead-lettered: the ACL denies dead-letter/#.
    const msgId = randomUUID();
    await vpp.publishAsync(
      `get_report/${vppName}/${hubName}`,
      JSON.stringify({ msg: 'set_clock', offset: 1, msg_id: msgId }),
      { qos: 1 },
    );
    await vpp.publishAsync(topic, JSON.stringify({ msg: 'set_clock', offset: 2, msg_id: randomUUID() }), { qos: 1 });
    await until(() => handled.length === 1, 'the next one handled', MS);
    await until(() => degraded.length === 1, 'the lost dead letter told', MS);
    assert.match(degraded[0] as string, 'a dead letter was lost (ROUTING_KEY_MISMATCH');
    assert.match(degraded[0] as string, 'as not authorized (PUBACK 0x87, Not authorized)');
    await until(() => hub.transport.unsettled === 0, 'every delivery settled', MS);
  } finally {
    await Promise.allSettled([hub.close(), vpp.endAsync()]);
    await cleanSessions(url, [hubName, vppName]);
  }
});

s('a message_id property over 255 bytes is taken as absent; a QoS 0 body refused is told with its size', async () => {
  const url = (limited as Mosquitto).url;
  const hubName = `heh-id-${run}`;
  const vppName = `vpp-id-${run}`;
  const vpp = await raw(url, vppName);
  const replies: { msg: string; correlation: number | undefined }[] = [];
  vpp.on('message', (_t, payload, packet) =>
    replies.push({
      msg: String(JSON.parse(payload.toString()).msg),
      correlation: packet.properties?.correlationData?.length,
    }),
  );
  await vpp.subscribeAsync(`+/${hubName}/${vppName}/#`, { qos: 1 });
  const hub = mqttBus({ name: hubName, peers: [vppName], url });
  const ids: (string | undefined)[] = [];
  hub.onGetReport(async (q, ctx) => {
    ids.push(ctx.delivery.messageId);
    await ctx.reply({
      msg: 'report',
      from: q.from,
      to: q.to,
      resolution: q.resolution,
      values: { 'total.p': [1, 2, 3, 4] },
    });
  });
  const refusals: string[] = [];
  hub.on('dead-letter', (_r, code, d) => refusals.push(`${code} ${d.body.length}`));
  try {
    await withDeadline(hub.start(), MS, 'start');
    const q = { ...getReport(1), from: '2026-12-04T22:00:00Z', to: '2026-12-04T23:00:00Z' };
    await vpp.publishAsync(`get_report/${vppName}/${hubName}`, JSON.stringify(q), {
      qos: 1,
      properties: { userProperties: { message_id: 'm'.repeat(60_000) } },
    });
    await until(() => replies.length === 1, 'the report', MS);
    assert.equal(
      ids.map((id) => id?.length),
      [undefined],
      'the message id is taken as absent',
    );
    // Not the 60,000 B id: the answer is correlated by the request_id it answers instead (data model §3.8).
    assert.equal(replies, [{ msg: 'report', correlation: 36 }], 'no correlation data of 60,000 B');
    const qos0 = JSON.stringify({ msg: 'set_clock', offset: 1, msg_id: randomUUID() });
    await vpp.publishAsync(`set_clock/${vppName}/${hubName}`, qos0, { qos: 0 });
    await until(() => refusals.length === 1, 'the QoS 0 one refused', MS);
    assert.equal(refusals, [`QOS_0 ${Buffer.byteLength(qos0)}`]);
  } finally {
    await Promise.allSettled([hub.close(), vpp.endAsync()]);
    await cleanSessions(url, [hubName, vppName]);
  }
});

async function cleanSessions(url: string, clientIds: string[]): Promise<void> {
  for (const clientId of clientIds) {
    const c = await mqtt.connectAsync(url, { clientId, clean: true, protocolVersion: 4, reconnectPeriod: 0 });
    await c.endAsync();
  }
}

export type { Connector, MqttTransport };

s.run();
