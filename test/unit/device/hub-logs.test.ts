/**
 * What the hub's log lets an operator follow (issue 14, item 5): one `request` line per request handled (type, peer,
 * its ids, the code answered and the reply's type, the time taken), each decision on an activation with its figures,
 * activation_start and activation_end with id, device and quantity, and at `log.level: debug` the bodies of what
 * came, what was answered and what the hub sent of its own, which the info level leaves out. A field the hub passes
 * is never named like the line's own keys (`send failed` says `type`, not `msg`). In-memory transport, ManualClock.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BusError } from '../../../src/bus/index.js';
import { EbTime, type Message } from '../../../src/codec/index.js';
import { deliver, uuid } from '../../helpers/memory-bus.js';
import { AGG, HEH, type HubRig, hubRig, T0, within } from '../../helpers/memory-hub.js';

const ts = (ms: number): EbTime => EbTime.fromEpochMs(ms);

async function eventually(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

const ask = async (r: HubRig, m: Message): Promise<Message> => {
  try {
    return await within(r.vpp.request(HEH, m));
  } catch (err) {
    if (err instanceof BusError && err.code === 'REJECTED' && err.reply !== undefined) return err.reply;
    throw err;
  }
};

const lines = (r: HubRig, msg: string): Record<string, unknown>[] =>
  r.logs.filter((l) => l.msg === msg).map((l) => ({ level: l.level, ...l.fields }));

const s = suite('hub logs');

s(
  'what the codec read leniently is in the request line, for the peer to fix (a number written as a string)',
  async () => {
    const r = await hubRig({ logLevel: 'info' });
    try {
      const raw = JSON.stringify({
        msg: 'get_report',
        from: '2026-01-01T11:58:00Z',
        to: '2026-01-01T12:00:00Z',
        resolution: '60',
        signals: ['meter.p'],
        request_id: uuid(7),
      });
      await deliver(r.bus.transport, { msg: 'get_report' }, { raw });
      await r.network.idle();
      const [line] = lines(r, 'request');
      assert.equal([line?.['code'], line?.['request_id']], [200, uuid(7)]);
      assert.match(JSON.stringify(line?.['diagnostics']), 'resolution');
      // A strict message adds nothing.
      await ask(r, { msg: 'get_status_report', from: ts(T0 - 60_000), to: ts(T0), severity_threshold: 0 });
      assert.not.ok('diagnostics' in (lines(r, 'request')[1] ?? {}));
    } finally {
      await r.close();
    }
  },
);

s('one info line per request handled: type, peer, ids, the code answered, the reply, the time', async () => {
  const r = await hubRig({ logLevel: 'info' });
  try {
    await ask(r, {
      msg: 'get_report',
      from: ts(T0 - 120_000),
      to: ts(T0),
      resolution: 60,
      signals: ['meter.p'],
      request_id: uuid(1),
    });
    await ask(r, {
      msg: 'get_report',
      from: ts(T0 - 120_000),
      to: ts(T0),
      resolution: 60,
      signals: ['toaster.p'],
      request_id: uuid(2),
    });
    await ask(r, { msg: 'set_smart_mode', mode: 'normal', reset: false, msg_id: uuid(3) });
    await ask(r, { msg: 'set_clock', offset: 5, msg_id: uuid(4) });
    await r.network.idle();
    const requests = lines(r, 'request');
    assert.is(requests.length, 4, JSON.stringify(requests));
    const [report, unknown, mode, clock] = requests as Record<string, unknown>[];
    assert.equal(
      { ...report, ms: typeof report?.['ms'] },
      { level: 'info', type: 'get_report', peer: AGG, request_id: uuid(1), code: 200, reply: 'report', ms: 'number' },
    );
    assert.equal([unknown?.['code'], unknown?.['reply'], unknown?.['request_id']], [460, 'response', uuid(2)]);
    assert.match(String(unknown?.['desc']), 'signals not measured here: toaster.p');
    assert.equal([mode?.['type'], mode?.['msg_id'], mode?.['code']], ['set_smart_mode', uuid(3), 200]);
    assert.equal(
      [clock?.['type'], clock?.['code'], clock?.['desc']],
      ['set_clock', 451, 'this hub does not change its clock (allowClockChange is false)'],
    );
    assert.equal(lines(r, 'request body'), [], 'no bodies at info');
  } finally {
    await r.close();
  }
});

s(
  'decisions with their ids and figures; activation_start and activation_end with id, device and quantity',
  async () => {
    const r = await hubRig({ logLevel: 'info' });
    try {
      const act = (id: string, count: number, quantity: number, from: number, to: number): Promise<Message> =>
        ask(r, {
          msg: 'activate',
          id,
          modification_count: count,
          from: ts(from),
          to: ts(to),
          quantity,
          device: 'boiler',
        });
      await act(uuid(1), 0, 1.5, T0 + 60_000, T0 + 120_000);
      await act(uuid(2), 0, 5, T0 + 60_000, T0 + 120_000);
      await act(uuid(3), 0, 1, T0 - 3_600_000, T0 - 1_800_000);
      await act(uuid(2), 1, 0, T0 + 60_000, T0 + 120_000);
      const window = { from: new Date(T0 + 60_000).toISOString(), to: new Date(T0 + 120_000).toISOString() };
      assert.equal(lines(r, 'activation accepted'), [
        { level: 'info', id: uuid(1), count: 0, requester: AGG, device: 'boiler', quantity: 1.5, ...window },
      ]);
      assert.equal(lines(r, 'activation modified'), [
        { level: 'info', id: uuid(2), count: 0, requester: AGG, device: 'boiler', quantity: 0.5, asked: 5, ...window },
      ]);
      const [rejected] = lines(r, 'activation rejected');
      assert.equal(
        [rejected?.['id'], rejected?.['quantity'], rejected?.['code'], rejected?.['reason']],
        [uuid(3), 1, 454, 'the activation has expired or arrived too late'],
      );
      assert.equal(lines(r, 'activation cancelled'), [
        {
          level: 'info',
          id: uuid(2),
          count: 1,
          requester: AGG,
          device: 'boiler',
          quantity: 0,
          ...window,
          replaces: 0,
          was: 'scheduled',
        },
      ]);
      await r.clock.advance(60_000);
      await eventually(() => lines(r, 'activation_start').length === 1, 'activation_start');
      assert.equal(lines(r, 'activation_start'), [
        { level: 'info', id: uuid(1), count: 0, device: 'boiler', quantity: 1.5 },
      ]);
      await r.clock.advance(60_000);
      await eventually(() => lines(r, 'activation_end').length === 1, 'activation_end');
      assert.equal(lines(r, 'activation_end'), [
        { level: 'info', id: uuid(1), count: 0, device: 'boiler', quantity: 1.5 },
      ]);
    } finally {
      await r.close();
    }
  },
);

s('log.level debug adds the bodies: the request, the reply, the messages the hub sends of its own', async () => {
  const r = await hubRig({ logLevel: 'debug' });
  try {
    const get: Message<'get_report'> = {
      msg: 'get_report',
      from: ts(T0 - 120_000),
      to: ts(T0),
      resolution: 60,
      signals: ['meter.p'],
      request_id: uuid(1),
    };
    const report = await ask(r, get);
    await ask(r, { msg: 'get_energy_events_realtime', severity: 0 });
    await ask(r, { msg: 'set_smart_mode', mode: 'normal', reset: false, msg_id: uuid(2) });
    await r.network.idle();
    const [body] = lines(r, 'request body');
    assert.equal(JSON.parse(JSON.stringify(body?.['message'])), JSON.parse(JSON.stringify(get)));
    // The reply as the handler made it (the bus adds the request_id echo when it sends it).
    const { request_id: _, ...made } = JSON.parse(JSON.stringify(report)) as Record<string, unknown>;
    assert.equal(JSON.parse(JSON.stringify(lines(r, 'reply').find((l) => l['type'] === 'report')?.['message'])), made);
    // The event set_smart_mode records is pushed to the realtime subscriber: the hub's own message, in full.
    const sent = lines(r, 'sending').find((l) => l['type'] === 'energy_events');
    assert.equal([sent?.['level'], sent?.['peer']], ['debug', AGG]);
    assert.is((sent?.['message'] as { events?: { type: string }[] } | undefined)?.events?.[0]?.type, 'mode_changed');
  } finally {
    await r.close();
  }
});

s('a field named like the line’s own keys is not passed: send failed says type', async () => {
  const r = await hubRig({ logLevel: 'info', outbox: true });
  try {
    await ask(r, { msg: 'get_energy_events_realtime', severity: 0 });
    r.bus.transport.sendFailure = (o) => (o.properties.type === 'energy_events' ? new Error('nacked') : undefined);
    await ask(r, { msg: 'set_smart_mode', mode: 'normal', reset: false, msg_id: uuid(2) });
    await eventually(() => lines(r, 'send failed').length > 0, 'the failed send');
    const [failed] = lines(r, 'send failed');
    assert.equal([failed?.['type'], failed?.['peer'], failed?.['field.msg']], ['energy_events', AGG, undefined]);
    r.bus.transport.sendFailure = undefined;
  } finally {
    await r.close();
  }
});

s.run();
