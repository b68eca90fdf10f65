/**
 * The bus over MQTT against the real Mosquitto on 127.0.0.1:1883 (src/mqtt): two parties' connectors exchange
 * request and response through typed handlers, under MQTT 5 and under 3.1.1 (where no property travels), and a raw
 * MQTT.js client plays a peer that repeats a msg_id, sends a body the codec refuses, or pretends to be someone
 * else. A hub that was offline gets, from its persistent session, the commands sent meanwhile; a delivery whose
 * connection is cut before it was settled comes back. Entity names are unique per run, so nothing collides on the
 * shared broker; sessions are removed at the end (a clean connect with the same client id).
 */
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import mqtt, { type MqttClient } from 'mqtt';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CONTENT_TYPE_JSON, type Connector, settle } from '../../src/bus/index.js';
import type { Message } from '../../src/codec/index.js';
import { type MqttBusOptions, type MqttTransport, mqttBus } from '../../src/mqtt/index.js';
import { until, withDeadline } from '../helpers/deadline.js';

const URL = 'mqtt://127.0.0.1:1883';
const MS = 10_000;
const run = randomUUID().slice(0, 8);
let n = 0;
const name = (role: string): string => `${role}-mq${run}-${n++}`;
const used: string[] = [];

function bus(o: Partial<MqttBusOptions> & { name: string; peers: string[] }): Connector<MqttTransport> {
  used.push(o.name);
  return mqttBus({ url: URL, reconnectDelay: 100, maxReconnectDelay: 500, ...o });
}

/** A plain MQTT.js client, as an independent peer (3.1.1 unless told). */
async function raw(version: 4 | 5 = 4): Promise<MqttClient> {
  return withDeadline(
    mqtt.connectAsync(URL, { clientId: `raw-mq${run}-${n++}`, protocolVersion: version, reconnectPeriod: 0 }),
    MS,
    'raw client connect',
  );
}

const uuid = (): string => randomUUID();
const setClock = (id = uuid(), offset = 3): Message<'set_clock'> => ({ msg: 'set_clock', offset, msg_id: id });

const s = suite('mqtt bus');

for (const version of [5, 4] as const) {
  s(`MQTT ${version === 5 ? '5' : '3.1.1'}: request and response through typed handlers`, async () => {
    const hubName = name('heh');
    const vppName = name('vpp');
    const hub = bus({ name: hubName, peers: [vppName], protocolVersion: version });
    const vpp = bus({ name: vppName, peers: [hubName], protocolVersion: version });
    const got: { m: Message<'set_clock'>; sender: string; id: string | undefined; ct: string | undefined }[] = [];
    hub.onSetClock((m, ctx) => {
      got.push({ m, sender: ctx.sender, id: ctx.delivery.messageId, ct: ctx.delivery.contentType });
    });
    const caps = hub.onGetCapabilities(async (_m, ctx) => {
      await ctx.reply({ msg: 'capabilities', device: null, devices: [] } as unknown as Message);
    });
    void caps;
    try {
      await withDeadline(Promise.all([hub.start(), vpp.start()]), MS, 'start');
      assert.is(hub.transport.protocolVersion, version);
      const sent = setClock();
      const answer = (await withDeadline(vpp.request(hubName, sent), MS, 'request')) as Message<'response'>;
      assert.is(answer.msg, 'response');
      assert.is(answer.response_code, 200);
      assert.is((answer as { msg_id?: string }).msg_id, sent.msg_id);
      assert.is(got.length, 1);
      assert.equal(got[0]?.m, sent);
      assert.is(got[0]?.sender, vppName);
      // MQTT 5 carries the message id as a user property; 3.1.1 has none, and the content type is told by the body.
      assert.is(got[0]?.id, version === 5 ? sent.msg_id : undefined);
      assert.is(got[0]?.ct, CONTENT_TYPE_JSON);
    } finally {
      await Promise.all([hub.close(), vpp.close()]);
    }
  });
}

s('the same msg_id twice is handled once: from our bus (MQTT 5) and from a 3.1.1 peer with no properties', async () => {
  const hubName = name('heh');
  const vppName = name('vpp');
  const hub = bus({ name: hubName, peers: [vppName] });
  const vpp = bus({ name: vppName, peers: [hubName] });
  const handled: string[] = [];
  const dups: string[] = [];
  hub.onSetClock((m) => {
    handled.push(m.msg_id ?? '');
  });
  hub.on('duplicate', (id) => dups.push(id));
  const peer = await raw(4);
  try {
    await withDeadline(Promise.all([hub.start(), vpp.start()]), MS, 'start');
    const a = setClock();
    await vpp.publish(hubName, a);
    await vpp.publish(hubName, a);
    await until(() => handled.length + dups.length === 2, 'two deliveries seen', MS);
    const b = setClock();
    const body = JSON.stringify(b);
    await peer.publishAsync(`set_clock/${vppName}/${hubName}`, body, { qos: 1 });
    await peer.publishAsync(`set_clock/${vppName}/${hubName}`, body, { qos: 1 });
    await until(() => handled.length + dups.length === 4, 'four deliveries seen', MS);
    assert.equal(handled, [a.msg_id, b.msg_id]);
    assert.equal(dups, [a.msg_id, b.msg_id]);
  } finally {
    await Promise.all([hub.close(), vpp.close(), peer.endAsync()]);
  }
});

s(
  'a body the codec refuses is answered with its code and dead-lettered; a non-peer sender is dead-lettered',
  async () => {
    const hubName = name('heh');
    const vppName = name('vpp');
    const hub = bus({ name: hubName, peers: [vppName] });
    const handled: unknown[] = [];
    hub.onSetClock((m) => {
      handled.push(m);
    });
    const peer = await raw(5);
    const answers: { topic: string; body: Record<string, unknown> }[] = [];
    const dead: Record<string, unknown>[] = [];
    peer.on('message', (topic, payload) => {
      if (topic.startsWith('dead-letter/')) dead.push(JSON.parse(payload.toString()));
      else answers.push({ topic, body: JSON.parse(payload.toString()) });
    });
    try {
      await peer.subscribeAsync([`+/${hubName}/${vppName}/#`, `dead-letter/${hubName}`], { qos: 1 });
      await withDeadline(hub.start(), MS, 'start');
      const id = uuid();
      await peer.publishAsync(
        `set_clock/${vppName}/${hubName}`,
        JSON.stringify({ msg: 'set_clock', msg_id: id, offset: 'x' }),
        {
          qos: 1,
        },
      );
      await until(() => answers.length === 1 && dead.length === 1, 'the answer and the dead letter', MS);
      assert.is(answers[0]?.topic, `response/${hubName}/${vppName}`);
      assert.is(answers[0]?.body['msg_id'], id);
      assert.is(answers[0]?.body['response_code'], 400);
      assert.is(dead[0]?.['code'], 'DECODE_400');
      assert.is(dead[0]?.['from'], vppName);
      assert.is(dead[0]?.['topic'], `set_clock/${vppName}/${hubName}`);
      assert.match(String(dead[0]?.['reason']), /offset/);
      assert.is(
        Buffer.from(String(dead[0]?.['body_base64']), 'base64').toString(),
        JSON.stringify({ msg: 'set_clock', msg_id: id, offset: 'x' }),
      );
      // A sender that is not a peer: refused before the codec, not answered.
      const stranger = name('vpp');
      await peer.publishAsync(`set_clock/${stranger}/${hubName}`, JSON.stringify(setClock()), { qos: 1 });
      await until(() => dead.length === 2, 'the stranger dead-lettered', MS);
      assert.is(dead[1]?.['code'], 'UNKNOWN_SENDER');
      assert.is(dead[1]?.['from'], null);
      assert.is(answers.length, 1, 'the stranger is not answered');
      assert.equal(handled, []);
    } finally {
      await Promise.all([hub.close(), peer.endAsync()]);
    }
  },
);

s('a persistent session: commands sent while the hub was offline are delivered when it returns', async () => {
  const hubName = name('heh');
  const vppName = name('vpp');
  const first = bus({ name: hubName, peers: [vppName] });
  first.onSetClock(() => undefined);
  await withDeadline(first.start(), MS, 'first start');
  await first.close();
  const vpp = bus({ name: vppName, peers: [hubName] });
  const sent = [setClock(), setClock(), setClock()];
  const hub = bus({ name: hubName, peers: [vppName] });
  const got: string[] = [];
  hub.onSetClock((m) => {
    got.push(m.msg_id ?? '');
  });
  try {
    await withDeadline(vpp.start(), MS, 'vpp start');
    // Each resolves on Mosquitto's PUBACK while nobody is connected as the hub.
    for (const m of sent) await withDeadline(vpp.publish(hubName, m), MS, 'publish while the hub is away');
    await withDeadline(hub.start(), MS, 'hub start');
    await until(
      () => got.length === 3,
      () => `the 3 commands (got ${got.length})`,
      MS,
    );
    assert.equal(
      got,
      sent.map((m) => m.msg_id),
    );
  } finally {
    await Promise.all([hub.close(), vpp.close()]);
  }
});

s('a delivery not settled when its connection is cut comes back (DUP), and is handled once', async () => {
  const hubName = name('heh');
  const vppName = name('vpp');
  const hub = bus({ name: hubName, peers: [vppName] });
  const vpp = bus({ name: vppName, peers: [hubName] });
  const handled: boolean[] = [];
  const dups: string[] = [];
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  hub.onSetClock(async (_m, ctx) => {
    handled.push(ctx.delivery.redelivered);
    await held;
  });
  hub.on('duplicate', (id) => dups.push(id));
  const events: string[] = [];
  hub.transport.on('down', () => events.push('down'));
  hub.transport.on('reconnecting', (i) => events.push(`reconnecting ${i.attempt}`));
  hub.transport.on('recovered', () => events.push('recovered'));
  try {
    await withDeadline(Promise.all([hub.start(), vpp.start()]), MS, 'start');
    const arrivals: [string, boolean][] = [];
    hub.transport.client?.on('message', (_t, payload, packet) =>
      arrivals.push([JSON.parse(payload.toString()).msg_id, packet.dup]),
    );
    const m = setClock();
    await vpp.publish(hubName, m);
    await until(() => handled.length === 1, 'the first delivery', MS);
    hub.transport.client?.stream.destroy();
    await until(
      () => events.includes('recovered'),
      () => `recovered (${events.join(', ')})`,
      MS,
    );
    // Mosquitto gives it again, marked DUP; the Connector holds the copy until the first one's outcome.
    await until(
      () => arrivals.length === 2,
      () => `the redelivery (arrivals ${arrivals.length})`,
      MS,
    );
    assert.equal(arrivals, [
      [m.msg_id, false],
      [m.msg_id, true],
    ]);
    assert.is(handled.length, 1);
    release();
    await until(() => dups.length === 1 && hub.transport.unsettled === 0, 'the copy acked as a duplicate', MS);
    assert.equal(dups, [m.msg_id]);
    assert.equal(events.slice(0, 3), ['down', 'reconnecting 1', 'recovered']);
    // The copy's PUBACK went out on the new connection: a third connection gets nothing more.
    hub.transport.client?.stream.destroy();
    await until(() => events.filter((e) => e === 'recovered').length === 2, 'recovered again', MS);
    const barrier = setClock();
    await vpp.publish(hubName, barrier);
    await until(() => handled.length === 2, 'the barrier handled', MS);
    assert.equal(arrivals.slice(2), [[barrier.msg_id, false]], 'nothing of the first message before the barrier');
  } finally {
    release();
    await Promise.all([hub.close(), vpp.close()]);
  }
});

s(
  'a handler that keeps failing: handed over again (no NACK in MQTT) up to deliveryLimit, then 500 and a dead letter',
  async () => {
    const hubName = name('heh');
    const vppName = name('vpp');
    const hub = bus({ name: hubName, peers: [vppName], deliveryLimit: 3 });
    let calls = 0;
    hub.onSetClock(() => {
      calls++;
      throw new Error('the actuator is stuck');
    });
    const peer = await raw(5);
    const answers: Record<string, unknown>[] = [];
    const dead: Record<string, unknown>[] = [];
    peer.on('message', (topic, payload) =>
      (topic.startsWith('dead-letter/') ? dead : answers).push(JSON.parse(payload.toString())),
    );
    try {
      await peer.subscribeAsync([`+/${hubName}/${vppName}/#`, `dead-letter/${hubName}`], { qos: 1 });
      await withDeadline(hub.start(), MS, 'start');
      const m = setClock();
      await peer.publishAsync(`set_clock/${vppName}/${hubName}`, JSON.stringify(m), { qos: 1 });
      await until(
        () => answers.length === 1 && dead.length === 1,
        () => `the 500 and the dead letter (calls ${calls}, ${JSON.stringify(answers)} ${JSON.stringify(dead)})`,
        MS,
      );
      assert.is(calls, 3);
      assert.is(answers[0]?.['msg_id'], m.msg_id);
      assert.is(answers[0]?.['response_code'], 500);
      assert.is(dead[0]?.['code'], 'HANDLER_FAILED');
      assert.match(String(dead[0]?.['reason']), /the actuator is stuck/);
      await until(() => hub.transport.unsettled === 0, 'settled', MS);
    } finally {
      await Promise.all([hub.close(), peer.endAsync()]);
    }
  },
);

/**
 * A broker front that speaks 3.1.1 only, as RabbitMQ 3.10's plugin: a CONNECT with protocol level 5 gets CONNACK
 * return code 1 (unacceptable protocol version) and the socket closed; anything else is piped to Mosquitto.
 */
async function mqtt311Only(): Promise<{ url: string; levels: number[]; close(): Promise<void> }> {
  const levels: number[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.once('data', (first) => {
      let i = 1;
      while ((first[i] as number) & 0x80) i++;
      const level = first[i + 1 + 2 + 4] as number; // remaining length, then "\0\4MQTT", then the level
      levels.push(level);
      if (level === 5) {
        client.end(Buffer.from([0x20, 0x02, 0x00, 0x01]));
        return;
      }
      const upstream = net.connect(1883, '127.0.0.1');
      sockets.add(upstream);
      upstream.on('close', () => sockets.delete(upstream));
      upstream.write(first);
      client.pipe(upstream).pipe(client);
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `mqtt://127.0.0.1:${port}`,
    levels,
    close: async () => {
      for (const x of sockets) x.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

s('auto: a broker that refuses MQTT 5 gets 3.1.1 at once, and the bus works over it', async () => {
  const front = await mqtt311Only();
  const hubName = name('heh');
  const vppName = name('vpp');
  const hub = bus({ name: hubName, peers: [vppName], url: front.url });
  const vpp = bus({ name: vppName, peers: [hubName], url: front.url });
  const failed: string[] = [];
  hub.transport.on('failed', (e) => failed.push(e.message));
  hub.transport.on('reconnecting', (i) => failed.push(`reconnecting ${i.attempt}`));
  hub.onSetClock(() => undefined);
  try {
    await withDeadline(Promise.all([hub.start(), vpp.start()]), MS, 'start through the 3.1.1 front');
    assert.is(hub.transport.protocolVersion, 4);
    assert.is(vpp.transport.protocolVersion, 4);
    assert.equal(front.levels.slice(0, 2).sort(), [5, 5]);
    assert.equal(failed, [], 'the fallback is no failed attempt and waits no backoff');
    const answer = (await withDeadline(vpp.request(hubName, setClock()), MS, 'request')) as Message<'response'>;
    assert.is(answer.response_code, 200);
  } finally {
    await Promise.all([hub.close(), vpp.close()]);
    await front.close();
  }
});

s(
  'sends made while the connection is down: at most inFlight in MQTT.js, all sent after the reconnect, in order',
  async () => {
    const hubName = name('heh');
    const vppName = name('vpp');
    const hub = bus({ name: hubName, peers: [vppName] });
    const vpp = bus({ name: vppName, peers: [hubName], inFlight: 2, reconnectDelay: 400, maxReconnectDelay: 400 });
    const got: string[] = [];
    hub.onSetClock((m) => {
      got.push(m.msg_id ?? '');
    });
    try {
      await withDeadline(Promise.all([hub.start(), vpp.start()]), MS, 'start');
      const down = new Promise<void>((resolve) => vpp.transport.once('down', () => resolve()));
      vpp.transport.client?.stream.destroy();
      await withDeadline(down, MS, 'down');
      const t = vpp.transport;
      const send = t.send.bind(t);
      let entered = 0;
      t.send = (o) => {
        entered++;
        return send(o);
      };
      const sent = Array.from({ length: 10 }, () => setClock());
      const done = sent.map((m) => vpp.publish(hubName, m));
      await until(() => entered === 10, 'the 10 sends handed to the transport', MS);
      await settle(20);
      const outgoing = (): number => Object.keys((t.client as unknown as { outgoing: object }).outgoing).length;
      assert.is(outgoing(), 2, 'MQTT.js holds 2 sends; the window holds the other 8 back');
      await withDeadline(Promise.all(done), MS, 'every send confirmed after the reconnect');
      await until(
        () => got.length === 10,
        () => `the 10 handled (${got.length})`,
        MS,
      );
      assert.equal(
        got,
        sent.map((m) => m.msg_id),
      );
    } finally {
      await Promise.all([hub.close(), vpp.close()]);
    }
  },
);

s('a session the broker lost (taken over by a clean client) is subscribed again when the hub reconnects', async () => {
  const hubName = name('heh');
  const vppName = name('vpp');
  const hub = bus({ name: hubName, peers: [vppName] });
  const vpp = bus({ name: vppName, peers: [hubName] });
  const got: string[] = [];
  hub.onSetClock((m) => {
    got.push(m.msg_id ?? '');
  });
  const recovered: string[] = [];
  hub.transport.on('recovered', () => recovered.push('recovered'));
  try {
    await withDeadline(Promise.all([hub.start(), vpp.start()]), MS, 'start');
    // The same client id with a clean session: Mosquitto drops the hub's connection and, when this one leaves,
    // the session and its subscription.
    const thief = await withDeadline(
      mqtt.connectAsync(URL, { clientId: hubName, clean: true, protocolVersion: 4, reconnectPeriod: 0 }),
      MS,
      'take over',
    );
    await thief.endAsync();
    await until(() => recovered.length >= 1 && hub.transport.client?.connected === true, 'the hub back', MS);
    const m = setClock();
    await vpp.publish(hubName, m);
    await until(() => got.length === 1, 'the command after the lost session', MS);
    assert.equal(got, [m.msg_id]);
  } finally {
    await Promise.all([hub.close(), vpp.close()]);
  }
});

for (const version of [5, 4] as const) {
  s(
    `MQTT ${version === 5 ? '5' : '3.1.1'}: a body over the limit, a retained command and a QoS 0 one are refused, never handled, and the hub goes on`,
    async () => {
      const hubName = name('heh');
      const vppName = name('vpp');
      const peer = await raw(5);
      const topic = `set_clock/${vppName}/${hubName}`;
      // Left retained before the hub ever ran: a command from the past, which a start must not run again.
      await peer.publishAsync(topic, JSON.stringify(setClock()), { qos: 1, retain: true });
      const hub = bus({ name: hubName, peers: [vppName], protocolVersion: version });
      const handled: number[] = [];
      hub.onSetClock((m) => {
        handled.push(m.offset ?? 0);
      });
      const refused: string[] = [];
      hub.on('dead-letter', (_reason, code) => refused.push(code));
      const dead: Record<string, unknown>[] = [];
      peer.on('message', (t, payload) => {
        if (t.startsWith('dead-letter/')) dead.push(JSON.parse(payload.toString()));
      });
      try {
        // The VPP's side: its answers must have a subscriber (MQTT 5 tells the hub when none matched, and the hub
        // then keeps the request to answer it later).
        await peer.subscribeAsync([`dead-letter/${hubName}`, `+/${hubName}/${vppName}/#`], { qos: 1 });
        await withDeadline(hub.start(), MS, 'start');
        // 3 MB against the 1 MiB limit: MQTT 5 tells the broker our packet limit, so it never comes; 3.1.1 cannot,
        // so it comes, and goes no further than its size and 1 KiB of it in the dead letter.
        const big = Buffer.alloc(3 << 20, 0x20);
        big.write(JSON.stringify(setClock(uuid(), 7)));
        await peer.publishAsync(topic, big, { qos: 1 });
        await peer.publishAsync(topic, JSON.stringify(setClock(uuid(), 8)), { qos: 0 });
        await peer.publishAsync(topic, JSON.stringify(setClock(uuid(), 9)), { qos: 1 });
        await until(() => handled.length === 1, 'the last command handled', MS);
        await until(() => refused.length === (version === 5 ? 1 : 3), 'the refusals', MS);
        await until(() => dead.length === refused.length, 'their dead letters', MS);
        assert.equal(handled, [9]);
        assert.equal(refused, version === 5 ? ['QOS_0'] : ['RETAINED', 'TOO_LARGE', 'QOS_0']);
        const tooLarge = dead.find((d) => d['code'] === 'TOO_LARGE');
        if (version === 4) {
          assert.match(String(tooLarge?.['reason']), /a body of 3145728 bytes exceeds the limit/);
          assert.is(tooLarge?.['body_base64'], undefined);
          assert.is(Buffer.from(String(tooLarge?.['body_prefix_base64']), 'base64').length, 1024);
        } else assert.is(tooLarge, undefined);
        // Settled: nothing comes again when the hub comes back.
        await until(() => hub.transport.unsettled === 0, 'every delivery settled', MS);
        await hub.close();
        const again = bus({ name: hubName, peers: [vppName], protocolVersion: version });
        const later: unknown[] = [];
        again.onSetClock((m) => {
          later.push(m);
        });
        again.on('dead-letter', (_reason, code) => later.push(code));
        await withDeadline(again.start(), MS, 'start again');
        await settle(50);
        await new Promise((resolve) => setTimeout(resolve, 300));
        assert.equal(later, version === 5 ? [] : ['RETAINED'], 'only the retained one, which the broker keeps');
        await again.close();
      } finally {
        await peer.publishAsync(topic, '', { qos: 1, retain: true });
        await Promise.all([hub.close(), peer.endAsync()]);
      }
    },
  );
}

s('cleanup: the sessions of this run are removed', async () => {
  for (const clientId of used) {
    const c = await withDeadline(
      mqtt.connectAsync(URL, { clientId, clean: true, protocolVersion: 4, reconnectPeriod: 0 }),
      MS,
      'clean connect',
    );
    await c.endAsync();
  }
});

s.run();
