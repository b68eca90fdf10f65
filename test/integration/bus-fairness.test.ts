/**
 * Fairness through RabbitMQ (issue 15, item 5; docs/bus.md, "Fairness"): a hub started by amqpBus with a budget of 3
 * messages (refilling one in 100 s, so that none comes back during the test) answers a peer's fourth and later
 * set_clocks 503 by their msg_id, which its request() sees as REJECTED with the 503 attached; none is handled or
 * dead-lettered, and once the hub is closed nothing is back in its inbox (each was acked); another peer's get_report
 * is still handled and answered.
 */
import { randomUUID } from 'node:crypto';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BusError } from '../../src/bus/index.js';
import { EbTime, type Message } from '../../src/codec/index.js';
import { timed } from '../helpers/amqp.js';
import { entity, NET_MS, withBus } from '../helpers/bus.js';
import { withDeadline } from '../helpers/deadline.js';

const s = suite('bus-fairness');

s(
  'over its budget a peer is answered 503 by msg_id, acked, never handled; another peer is served',
  timed(
    () =>
      withBus(async (f) => {
        const hubName = entity('heh');
        const floodName = entity('vpp-flood');
        const quietName = entity('vpp-quiet');
        const hub = f.create({
          name: hubName,
          peers: [floodName, quietName],
          budget: { messages: { rate: 0.01, burst: 3 } },
        });
        const handled: string[] = [];
        const busy: string[] = [];
        hub.onSetClock((m, ctx) => {
          handled.push(`${ctx.sender} ${m.msg_id}`);
        });
        hub.onGetReport(async (q, ctx) => {
          handled.push(`${ctx.sender} get_report`);
          await ctx.reply({
            msg: 'report',
            from: q.from,
            to: q.to,
            resolution: q.resolution,
            values: { 'total.p': [1] },
          });
        });
        const deadLetters: string[] = [];
        hub.on('dead-letter', (reason, code) => deadLetters.push(`${code}: ${reason}`));
        hub.on('over-budget', (sender, type, id) => busy.push(`${sender} ${type} ${id}`));
        const flood = f.create({ name: floodName, peers: [hubName] });
        const quiet = f.create({ name: quietName, peers: [hubName] });
        await f.start();
        const ids = Array.from({ length: 10 }, () => randomUUID());
        const outcomes = await withDeadline(
          Promise.allSettled(
            ids.map((msg_id) =>
              flood.request(hubName, { msg: 'set_clock', offset: 1, msg_id } as Message<'set_clock'>),
            ),
          ),
          NET_MS,
          'the answers to 10 set_clocks',
        );
        const codes = outcomes.map((o) =>
          o.status === 'fulfilled'
            ? (o.value as { response_code?: unknown }).response_code
            : o.reason instanceof BusError && o.reason.code === 'REJECTED'
              ? (o.reason.reply as { response_code?: unknown } | undefined)?.response_code
              : String(o.reason),
        );
        // Published in order on one channel to one queue: the first three are the burst.
        assert.equal(codes, [200, 200, 200, 503, 503, 503, 503, 503, 503, 503]);
        assert.equal(
          handled,
          ids.slice(0, 3).map((id) => `${floodName} ${id}`),
        );
        assert.equal(
          busy,
          ids.slice(3).map((id) => `${floodName} set_clock ${id}`),
        );
        const from = EbTime.parse('2026-11-26T10:00:00Z');
        const report = await withDeadline(
          quiet.request(hubName, {
            msg: 'get_report',
            from,
            to: from.plusSeconds(900),
            resolution: 900,
            signals: ['total.p'],
          }),
          NET_MS,
          "the quiet peer's get_report",
        );
        assert.is(report.msg, 'report');
        assert.is(handled[3], `${quietName} get_report`);
        assert.equal(deadLetters, []);
        // Closed, anything it left unsettled would be ready in its inbox again: nothing is, every copy was acked.
        await withDeadline(hub.close(), NET_MS, 'closing the hub');
        assert.is(await f.depth(`private-${hubName}-in`), 0, 'the inbox is empty');
        assert.is(await f.depth(`private-${hubName}-dead`), 0, 'nothing dead-lettered');
      }),
    60_000,
  ),
);

s.run();
