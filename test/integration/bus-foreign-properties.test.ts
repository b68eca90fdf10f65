/**
 * Properties another client sets on a message we refuse, against the real RabbitMQ: the dead letter we publish
 * must not copy what the broker refuses from us or acts on. A `user_id` of the sender's login closed our publishing
 * channel (406: it is not ours) on every reopening, so that nothing else of ours went out; an `expiration` expired
 * the dead letter unread; a timestamp or a header value our encoder cannot write again made the dead letter fail and
 * the message come back for ever. The hub logs in as a broker user of its own here, as a provisioned one does.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import type { Channel as AmqplibChannel, ConsumeMessage } from 'amqplib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { amqpBus } from '../../src/bus/index.js';
import { AMQP_URL, timed } from '../helpers/amqp.js';
import { entity, NET_MS, until, withBus } from '../helpers/bus.js';

const run = promisify(execFile);
const ctl = async (...args: string[]): Promise<string> => (await run('rabbitmqctl', args, { timeout: 30_000 })).stdout;
const canCtl =
  process.getuid?.() === 0 &&
  (await ctl('status').then(
    () => true,
    () => false,
  ));

const s = suite('bus-foreign-properties');

s(
  'a refused message with user_id, expiration, a timestamp past any Date, or a header we cannot write: dead-lettered, answered, and the next one handled',
  timed(async () => {
    if (!canCtl) return console.log('  (skipped: needs root and rabbitmqctl)');
    await withBus(async (f) => {
      const me = entity('heh');
      const peer = entity('vpp');
      const password = randomUUID();
      await ctl('add_user', me, password);
      try {
        await ctl('set_permissions', '-p', '/', me, '.*', '.*', '.*');
        f.queues.add(`private-${me}-in`).add(`private-${me}-dead`);
        f.exchanges.add(`private-${me}-dlx`).add(`${me}-to-${peer}`).add(`${peer}-to-${me}`);
        const hub = amqpBus({
          name: me,
          peers: [peer],
          url: 'amqp://127.0.0.1:5672',
          connectOptions: { username: me, password },
          role: 'hub',
        });
        f.connectors.push(hub);
        const handled: string[] = [];
        hub.onGetCapabilities((_m, ctx) => {
          handled.push(ctx.sender);
        });
        await hub.start();
        // The peer, as guest: reads what the hub sends it, and publishes with properties of its own.
        const ch: AmqplibChannel = await f.channel();
        const { queue } = await ch.assertQueue('', { exclusive: true });
        await ch.bindQueue(queue, `${me}-to-${peer}`, '#');
        const answers: ConsumeMessage[] = [];
        await ch.consume(queue, (m) => m !== null && answers.push(m), { noAck: true });
        const bad = (id: string): Buffer => Buffer.from(JSON.stringify({ msg: 'get_report', msg_id: id }));
        const ids: [string, string] = [randomUUID(), randomUUID()];
        ch.publish(`${peer}-to-${me}`, 'get_report', bad(ids[0]), {
          messageId: ids[0],
          userId: 'guest',
          expiration: '600000',
          timestamp: Number.MAX_SAFE_INTEGER,
          headers: { 'x-ebadge-dm': '3.1' },
        });
        ch.publish(`${peer}-to-${me}`, 'get_report', bad(ids[1]), {
          messageId: ids[1],
          headers: { 'x-ebadge-dm': '3.1', when: { '!': 'timestamp', value: Number.MAX_SAFE_INTEGER } },
        });
        const good = randomUUID();
        ch.publish(
          `${peer}-to-${me}`,
          'get_capabilities',
          Buffer.from(JSON.stringify({ msg: 'get_capabilities', msg_id: good, device: null })),
          { messageId: good, headers: { 'x-ebadge-dm': '3.1' } },
        );
        await until(
          () => answers.length >= 3 && handled.length === 1,
          'two refusals answered, one request handled',
          NET_MS,
        );
        const codes = answers.map((m) => JSON.parse(m.content.toString('utf8')) as Record<string, unknown>);
        assert.equal(
          codes
            .filter((m) => m['msg'] === 'response' && m['response_code'] !== 200)
            .map((m) => m['msg_id'])
            .sort(),
          [...ids].sort(),
        );
        await until(async () => (await f.depth(`private-${me}-dead`)) === 2, 'two dead letters', NET_MS);
        const dead = await f.drain(`private-${me}-dead`);
        const byId = new Map(dead.map((m) => [m.properties.messageId as string, m]));
        const first = byId.get(ids[0]);
        assert.ok(first, 'the dead letter of the message with user_id and expiration');
        assert.is(first.properties.userId, undefined);
        assert.is(first.properties.expiration, undefined);
        assert.is(first.properties.headers?.['x-ebadge-user-id'], 'guest');
        assert.is(first.properties.headers?.['x-ebadge-expiration'], '600000');
        assert.ok(Math.abs(first.properties.timestamp * 1000 - Date.now()) < 60_000, 'a timestamp of now');
        const second = byId.get(ids[1]);
        assert.ok(second, 'the dead letter of the message with a header we cannot write');
        assert.match(String(second.properties.headers?.['x-ebadge-headers-dropped']), /timestamp|Date/i);
        assert.ok(second.properties.headers?.['x-ebadge-error'], 'still says why it was refused');
      } finally {
        await ctl('delete_user', me).catch(() => undefined);
      }
    });
  }, 60_000),
);

s(
  'a message whose header table is nested deeper than we read: that message dead-lettered MALFORMED, the connection and the next one go on',
  timed(async () => {
    await withBus(async (f) => {
      const me = entity('heh');
      const peer = entity('vpp');
      f.queues.add(`private-${me}-in`).add(`private-${me}-dead`);
      f.exchanges.add(`private-${me}-dlx`).add(`${me}-to-${peer}`).add(`${peer}-to-${me}`);
      const hub = amqpBus({ name: me, peers: [peer], url: AMQP_URL, role: 'hub' });
      f.connectors.push(hub);
      const handled: string[] = [];
      hub.onGetCapabilities((_m, ctx) => {
        handled.push(ctx.sender);
      });
      const dead: string[] = [];
      hub.on('dead-letter', (reason, code) => dead.push(`${code}: ${reason}`));
      let downs = 0;
      hub.transport.on('down', () => downs++);
      await hub.start();
      // Another client's message, as any peer that may publish to us could send: 40 tables deep in its headers.
      let deep: Record<string, unknown> = {};
      for (let i = 0; i < 40; i++) deep = { a: deep };
      const ch: AmqplibChannel = await f.channel();
      const caps = (): Buffer => Buffer.from(JSON.stringify({ msg: 'get_capabilities', device: null }));
      ch.publish(`${peer}-to-${me}`, 'get_capabilities', caps(), {
        messageId: randomUUID(),
        headers: { 'x-ebadge-dm': '3.1', deep },
      });
      ch.publish(`${peer}-to-${me}`, 'get_capabilities', caps(), {
        messageId: randomUUID(),
        headers: { 'x-ebadge-dm': '3.1' },
      });
      await until(() => handled.length === 1, 'the next message handled', NET_MS);
      assert.equal(dead, ['MALFORMED: its properties cannot be read: field table nested deeper than 32']);
      assert.is(downs, 0, 'the connection never went down');
      await until(async () => (await f.depth(`private-${me}-dead`)) === 1, 'its dead letter', NET_MS);
    });
  }, 60_000),
);

s.run();
