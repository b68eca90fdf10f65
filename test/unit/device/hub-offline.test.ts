/**
 * The hub without its broker (issue 14, items 1 and 2), on the in-memory transport and a ManualClock: started as
 * main.ts starts it (the Hub, then its BrokerLink), with the connector's start held back for two minutes it samples
 * every slot into the history, starts and ends a saved activation on time, keeps the periodic reports it owes in the
 * outbox without trying to send them, and sends them, in order, once the broker is there. A broker that refuses the
 * hub's declarations (403, 404) is logged as an error with what to fix and retried with backoff until it takes them.
 * test/integration/hub-offline.test.ts proves the same with a hub process and RabbitMQ.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ChannelError } from '../../../src/amqp/index.js';
import { BusError } from '../../../src/bus/index.js';
import { EbTime, type Message } from '../../../src/codec/index.js';
import { uuid } from '../../helpers/memory-bus.js';
import { AGG, HEH, hubRig, ofType, T0, within } from '../../helpers/memory-hub.js';

const ts = (ms: number): EbTime => EbTime.fromEpochMs(ms);
const S = 1000;

async function eventually(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

const s = suite('hub offline');

s(
  'two minutes without a broker: every slot in the history, a saved activation started and ended on time, the reports owed sent once it comes',
  async () => {
    const r = await hubRig({ outbox: true, config: { resolutionS: 10 } });
    try {
      const rid = uuid(9);
      const A = uuid(1);
      const ack = await within(
        r.vpp.request(HEH, {
          msg: 'get_periodic_report',
          interval: 10,
          first_from: null,
          resolution: 10,
          signals: ['meter.p', 'boiler.p'],
          request_id: rid,
          msg_id: uuid(8),
        }),
      );
      assert.is((ack as Message<'response'>).response_code, 200);
      const decision = await within(
        r.vpp.request(HEH, {
          msg: 'activate',
          id: A,
          modification_count: 0,
          from: ts(T0 + 60 * S),
          to: ts(T0 + 100 * S),
          quantity: 1,
          device: 'boiler',
        }),
      );
      assert.is(decision.msg, 'accept_activation');

      // The hub restarts where no broker answers: its connector's start does not finish.
      await r.restart({ offline: true });
      assert.not.ok(r.link.up);
      // The period [T0 + 10k, +10 s) is reported at +20 s (once over, plus a slot). Each lands in the outbox (a file,
      // real time) and the subscription moves on before the clock does: the next period's timer is set only then.
      const owed = (t: number): number => Math.max(0, Math.floor((t - T0 - 20 * S) / (10 * S)) + 1);
      const pending = (): number => r.outbox?.pending().filter((p) => p.type === 'report').length ?? 0;
      const advanceTo = async (t: number): Promise<void> => {
        while (r.clock.now() < t) {
          await r.clock.advanceTo(Math.min(t, Math.floor(r.clock.now() / (10 * S)) * 10 * S + 10 * S));
          const n = owed(r.clock.now());
          await eventually(
            () => pending() === n && r.store.state.subscriptions[0]?.next === T0 + n * 10 * S,
            `the reports owed at ${r.clock.now() - T0} ms`,
          );
        }
      };
      await advanceTo(T0 + 60 * S - 1);
      assert.equal(r.commands, [], 'nothing before from');
      await advanceTo(T0 + 60 * S);
      await eventually(() => r.commands.length === 1, 'the activation started at from, offline');
      assert.equal(r.commands[0], {
        action: 'activate',
        id: A,
        device: 'boiler',
        quantity: 1,
        from: T0 + 60 * S,
        to: T0 + 100 * S,
      });
      await advanceTo(T0 + 100 * S - 1);
      assert.is(r.commands.length, 1, 'not ended before to');
      await advanceTo(T0 + 100 * S);
      await eventually(() => r.commands.length === 2, 'the activation ended at to, offline');
      assert.equal([r.commands[1]?.action, r.commands[1]?.id], ['end', A]);
      assert.is(r.store.state.activations.find((a) => a.id === A)?.phase, 'ended');
      await advanceTo(T0 + 120 * S);

      // Every slot of the two minutes is in the history (the slot of [t, t + 10 s) is read at t + 10 s).
      const h = r.history.query(T0, T0 + 120 * S, 10, ['meter.p', 'boiler.p']);
      assert.equal(h.missing, []);
      assert.equal(h.values['meter.p'], Array(12).fill(1.5));
      assert.equal(h.values['boiler.p'], Array(12).fill(2));

      // The reports owed wait in the outbox; nothing was tried on the bus (no failed publish per message).
      assert.equal(r.bus.transport.sent, []);
      assert.is(pending(), 11, 'the periods over, kept in the outbox');
      assert.not.ok(r.logs.some((l) => l.msg === 'send failed'));
      assert.equal(ofType(r.got, 'report'), []);

      await r.online();
      await eventually(() => ofType(r.got, 'report').length === 11, 'the reports owed, once the broker is there');
      const reports = ofType(r.got, 'report');
      assert.equal(
        reports.map((m) => m.from.epochMs),
        Array.from({ length: 11 }, (_, i) => T0 + i * 10 * S),
        'every period, in order',
      );
      assert.ok(reports.every((m) => m.request_id === rid && m.values['meter.p']?.[0] === 1.5));
      assert.is(r.outbox?.pending().length, 0);
      assert.equal(
        ofType(r.got, 'capabilities').map((m) => m.msg),
        ['capabilities', 'capabilities'],
        'registered at each start once the broker was reached',
      );
    } finally {
      await r.close();
    }
  },
);

const refusal = (code: number, text: string): BusError =>
  new BusError('TOPOLOGY', `declaring private-${HEH}-in: the broker answered ${code} ${text}`, {
    cause: new ChannelError(1, { replyCode: code, replyText: text, classId: 50, methodId: 10 }),
  });

s(
  'a broker that refuses the declarations (403, 404, then 406): errors that say what to fix, retried with backoff, never an exit',
  async () => {
    const r = await hubRig({ start: false, config: { broker: { url: 'amqp://127.0.0.1:5672/site' } } });
    try {
      const refusals = [
        refusal(403, "ACCESS_REFUSED - access to queue 'private-heh-example-in' in vhost 'site' refused"),
        refusal(404, "NOT_FOUND - no exchange 'vpp-example-to-heh-example' in vhost 'site'"),
        // An inbox declared by hand with other arguments: the client's ChannelError itself, not wrapped.
        new ChannelError(4, {
          replyCode: 406,
          replyText:
            "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'private-heh-example-in:vpp-example' " +
            "in vhost 'site': received '900000' but current is none",
          classId: 50,
          methodId: 10,
        }),
      ];
      const start = r.bus.transport.start.bind(r.bus.transport);
      let attempts = 0;
      r.bus.transport.start = async (onMessage) => {
        const e = refusals[attempts++];
        if (e !== undefined) throw e;
        return start(onMessage);
      };
      await within(r.hub.start());
      const up = r.link.start();
      await eventually(() => attempts === 1 && r.logs.some((l) => l.level === 'error'), 'the first refusal');
      const first = r.logs.find((l) => l.level === 'error');
      assert.is(first?.msg, 'the broker refused a declaration (403 ACCESS_REFUSED); retrying');
      assert.is(first?.fields['retryInS'], 5, 'reconnectDelayS');
      assert.match(
        String(first?.fields['fix']),
        `give the broker user ${HEH} its permissions on the vhost site: rabbitmqctl set_permissions -p 'site' '${HEH}' ` +
          `'^(private-${HEH}-(in|dead|dlx|in:(${AGG}))|${HEH}-to-(${AGG})|(${AGG})-to-${HEH})$' ` +
          `'^(private-${HEH}-(in|dead|dlx|in:(${AGG}))|${HEH}-to-(${AGG}))$' '^(private-${HEH}-(in|dead|dlx|in:(${AGG}))|(${AGG})-to-${HEH})$'`,
      );
      await r.clock.advance(5 * S - 1);
      assert.is(attempts, 1, 'not before the delay');
      await r.clock.advance(1);
      await eventually(() => r.logs.filter((l) => l.level === 'error').length === 2, 'the second refusal');
      const second = r.logs.filter((l) => l.level === 'error')[1];
      assert.is(second?.msg, 'an exchange the hub only checks does not exist (404 NOT_FOUND); retrying');
      assert.is(second?.fields['retryInS'], 10, 'doubled');
      assert.match(String(second?.fields['fix']), 'the peer that owns it has not declared it yet');
      await r.clock.advance(10 * S);
      await eventually(() => r.logs.filter((l) => l.level === 'error').length === 3, 'the third refusal');
      const third = r.logs.filter((l) => l.level === 'error')[2];
      assert.is(
        third?.msg,
        'a queue or exchange exists on the broker with other settings (406 PRECONDITION_FAILED); retrying',
      );
      assert.match(
        String(third?.fields['fix']),
        'rabbitmqctl delete_queue -p site private-heh-example-in:vpp-example, with the messages it holds',
      );
      await r.clock.advance(20 * S);
      await within(up, 5000, 'the link up after the refusals');
      assert.is(attempts, 4);
      assert.ok(r.link.up);
      assert.ok(r.logs.some((l) => l.msg === 'hub running' && l.fields['attempts'] === 4));
      await eventually(() => ofType(r.got, 'get_all_prices').length === 1, 'the registration');
      assert.ok(r.got.length >= 4);
    } finally {
      await r.close();
    }
  },
);

s('a 403 for a hub whose name is not its broker user: the fix names the mismatch before the permissions', async () => {
  // A typo in hub.json's name (or broker.username): granting the user another hub's names is seldom the fix.
  const r = await hubRig({ config: { name: 'heh-exampel' } });
  try {
    const refused = new ChannelError(1, {
      replyCode: 403,
      replyText: 'ACCESS_REFUSED - access refused',
      classId: 40,
      methodId: 10,
    });
    r.bus.transport.simulate('restore-failed', refused, 'exchange private-heh-exampel-dlx');
    const line = r.logs.find((l) => l.msg === 're-declaring after recovery failed');
    assert.match(
      String(line?.fields['fix']),
      `the hub's name heh-exampel is not its broker user ${HEH}: if one is a typo, fix it in hub.json; else give`,
    );
  } finally {
    await r.close();
  }
});

s('a declaration refused at a recovery (406, 403): said with what to fix, as at the start', async () => {
  const r = await hubRig();
  try {
    // What the AMQP client reports: the ChannelError itself.
    const closed = (code: number, text: string): ChannelError =>
      new ChannelError(1, { replyCode: code, replyText: text, classId: 50, methodId: 10 });
    r.bus.transport.simulate(
      'restore-failed',
      closed(406, "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'private-heh-example-in:x'"),
      `queue private-${HEH}-in:x`,
    );
    r.bus.transport.simulate('restore-failed', closed(403, 'ACCESS_REFUSED - access refused'), 'exchange x');
    r.bus.transport.simulate(
      'restore-failed',
      closed(406, "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'heh-example-to-x' in vhost '/'"),
      'exchange heh-example-to-x',
    );
    r.bus.transport.simulate('restore-failed', new Error('socket closed'), 'binding y');
    const lines = r.logs.filter((l) => l.msg === 're-declaring after recovery failed');
    assert.equal(
      lines.map((l) => [l.fields['what'], l.fields['reason']]),
      [
        [
          `queue private-${HEH}-in:x`,
          'a queue or exchange exists on the broker with other settings (406 PRECONDITION_FAILED)',
        ],
        ['exchange x', 'the broker refused a declaration (403 ACCESS_REFUSED)'],
        [
          'exchange heh-example-to-x',
          'a queue or exchange exists on the broker with other settings (406 PRECONDITION_FAILED)',
        ],
        ['binding y', undefined],
      ],
    );
    assert.match(String(lines[0]?.fields['fix']), 'rabbitmqctl delete_queue -p / private-heh-example-in:x');
    assert.match(String(lines[2]?.fields['fix']), 'rabbitmqadmin -V / delete exchange name=heh-example-to-x');
    assert.match(String(lines[1]?.fields['fix']), `rabbitmqctl set_permissions -p '/' '${HEH}'`);
    // A reconnection that reached the broker and had a declaration refused is not "cannot reach the broker".
    const at = { attempt: 2, endpoint: '127.0.0.1:5672', authentication: false };
    r.bus.transport.simulate('failed', closed(403, 'ACCESS_REFUSED - access refused'), at);
    r.bus.transport.simulate('failed', new Error('connect ECONNREFUSED'), at);
    r.bus.transport.simulate('failed', new Error('403 ACCESS_REFUSED - Login was refused'), {
      ...at,
      authentication: true,
    });
    const after = r.logs.slice(-3);
    assert.equal(
      after.map((l) => l.msg),
      [
        'the broker refused a declaration (403 ACCESS_REFUSED); retrying',
        'cannot reach the broker',
        'the broker refused our credentials; retrying slowly',
      ],
    );
    assert.match(String(after[2]?.fields['fix']), 'restart it after changing the password');
  } finally {
    await r.close();
  }
});

s.run();
