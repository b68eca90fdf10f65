/**
 * Nothing lost over MQTT through RabbitMQ's MQTT plugin when the broker node dies (issue 16, item 4; RabbitMQ's
 * side of docs/RELIABILITY.md's MQTT rows): a throw-away RabbitMQ 3.10 node with `rabbitmq_mqtt` (own name, ports
 * and data folder; stopped at the end), a receiver bus with its persistent session (a durable queue in the plugin)
 * and a sender bus streaming set_clocks, each with its own msg_id, up to 50 unacknowledged at once. Mid-stream the
 * node is killed (SIGKILL to the whole process group: no goodbye, no flush beyond what it confirmed) or stopped
 * cleanly, then started again on the same ports and data. A send that fails is sent again, as the hub's outbox does,
 * until it resolves; at the end every message was handled once: a PUBACK from the plugin is a publisher confirm
 * (docs/bus.md, "PUBACK on RabbitMQ"), so what it acknowledged into the durable session queue survives the kill,
 * and copies (a send repeated after a lost PUBACK) are dropped by the receiver's dedupe.
 */
import { randomUUID } from 'node:crypto';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Connector } from '../../src/bus/index.js';
import type { Message } from '../../src/codec/index.js';
import { mqttBus } from '../../src/mqtt/index.js';
import { timed } from '../helpers/amqp.js';
import { type BrokerNode, freePort, startBrokerNode } from '../helpers/broker-node.js';
import { until, withDeadline } from '../helpers/deadline.js';

const COUNT = Number(process.env['MQTT_RMQ_FAULT_MESSAGES'] ?? 2000);
const WINDOW = 50;
const MS = 60_000;

const s = suite('mqtt fault: RabbitMQ node');
let node: BrokerNode | undefined;
let port = 0;
const buses: Connector[] = [];

s.after(async () => {
  await Promise.allSettled(buses.map((b) => b.close(1000)));
  await node?.stop();
});

const bus = (name: string, peer: string): Connector => {
  const b = mqttBus({
    name,
    peers: [peer],
    url: `mqtt://127.0.0.1:${port}`,
    username: 'guest',
    password: 'guest',
    protocolVersion: 4,
    reconnectDelay: 200,
    maxReconnectDelay: 1000,
    budget: false,
  });
  buses.push(b);
  return b;
};

for (const how of ['killed (SIGKILL)', 'stopped cleanly'] as const) {
  s(
    `the node ${how} mid-stream of ${COUNT}: every message handled once, copies dropped by id`,
    timed(async () => {
      if (node === undefined) {
        port = await freePort();
        node = await startBrokerNode({
          name: 'mqtt-faults',
          plugins: ['rabbitmq_mqtt'],
          extraConfig: `mqtt.listeners.tcp.default = 127.0.0.1:${port}`,
        });
      }
      const broker = node;
      const id = randomUUID().slice(0, 8);
      const rxName = `vpp-rmqf${id}`;
      const txName = `heh-rmqf${id}`;
      const rx = bus(rxName, txName);
      const handled = new Map<string, number>();
      let copies = 0;
      rx.onSetClock((m) => {
        handled.set(m.msg_id ?? '', (handled.get(m.msg_id ?? '') ?? 0) + 1);
      });
      rx.on('duplicate', () => copies++);
      await withDeadline(rx.start(), MS, 'receiver start');
      const tx = bus(txName, rxName);
      await withDeadline(tx.start(), MS, 'sender start');
      const ids = Array.from({ length: COUNT }, () => randomUUID());
      let next = 0;
      let acked = 0;
      let failed = 0;
      let faulted: Promise<void> | undefined;
      const fault = async (): Promise<void> => {
        if (how === 'killed (SIGKILL)') await broker.kill9();
        await broker.restart();
      };
      await withDeadline(
        Promise.all(
          Array.from({ length: WINDOW }, async () => {
            while (next < COUNT) {
              const msgId = ids[next++] as string;
              for (;;) {
                try {
                  await tx.publish(rxName, { msg: 'set_clock', offset: 1, msg_id: msgId } as Message<'set_clock'>);
                  break;
                } catch {
                  failed++; // as the outbox: the same message, the same id, again
                  await new Promise((r) => setTimeout(r, 200));
                }
              }
              if (++acked === Math.floor(COUNT / 3)) faulted = fault();
            }
          }),
        ),
        MS * 2,
        'every send acknowledged',
      );
      await withDeadline(faulted ?? Promise.resolve(), MS, 'the node back');
      await until(
        () => handled.size === COUNT,
        () => `all ${COUNT} handled (${handled.size})`,
        MS,
      );
      assert.equal(
        [...handled.values()].filter((n) => n !== 1),
        [],
        'each handled once',
      );
      console.log(`  RabbitMQ node ${how}: ${COUNT} handled, ${failed} sends repeated, ${copies} copies dropped`);
    }, 240_000),
  );
}

s.run();
