/** Connection life cycle against the local RabbitMQ: handshake, negotiation, auth failures, broker-initiated close. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AuthenticationError, connect, ConnectionError, PublishError, type AmqpError } from '../../src/amqp/index.js';
import { rabbitmqctl } from '../helpers/broker-node.js';
import { sleep, withDeadline } from '../helpers/deadline.js';
import { AMQP_URL, rejection, timed, unique, withConnection } from '../helpers/amqp.js';

test(
  'handshake: server properties, capabilities we rely on, negotiated limits',
  timed(() =>
    withConnection(async (conn) => {
      assert.is(conn.serverProperties['product'], 'RabbitMQ');
      const caps = conn.serverProperties['capabilities'] as Record<string, unknown>;
      for (const c of [
        'publisher_confirms',
        'consumer_cancel_notify',
        'connection.blocked',
        'basic.nack',
        'authentication_failure_close',
        'per_consumer_qos',
      ]) {
        assert.is(caps[c], true, c);
      }
      assert.is(conn.frameMax, 131072);
      assert.is(conn.channelMax, 2047);
      assert.is(conn.heartbeat, 20, "our default heartbeat, lower than the broker's 60");
    }),
  ),
);

test(
  "HB-1: heartbeat negotiation: 0 on our side takes the broker's value; otherwise the smaller wins; never below 5 s",
  timed(async () => {
    await withConnection(async (c) => assert.is(c.heartbeat, 60), { heartbeat: 0 });
    await withConnection(async (c) => assert.is(c.heartbeat, 5), { heartbeat: 5 });
    for (const heartbeat of [1, 2, 4]) {
      const err = await rejection(connect(AMQP_URL, { heartbeat }));
      assert.is((err as AmqpError).code, 'OPTION_INVALID');
      assert.match(err.message, 'below 5 s');
    }
    await withConnection(async (c) => assert.is(c.heartbeat, 7), { heartbeat: 7 });
    await withConnection(async (c) => assert.is(c.heartbeat, 60), { heartbeat: 600 });
  }),
);

test(
  'URL query parameters reach the handshake',
  timed(async () => {
    const conn = await connect(`${AMQP_URL}/%2f?heartbeat=9&frame_max=16384&channel_max=5&connection_timeout=5000`);
    try {
      assert.is(conn.heartbeat, 9);
      assert.is(conn.frameMax, 16384);
      assert.is(conn.channelMax, 5);
    } finally {
      await conn.close();
    }
  }),
);

test(
  'CAP-1: client properties: connection_name and capabilities are visible to the broker',
  timed(async () => {
    const name = unique('conn-name');
    await withConnection(
      async () => {
        const out = await rabbitmqctl(['list_connections', 'client_properties', '--formatter', 'json']);
        const all = JSON.stringify(JSON.parse(out));
        assert.ok(all.includes(name), 'connection_name listed');
        assert.ok(all.includes('exchange_exchange_bindings'));
      },
      { connectionName: name },
    );
  }),
);

test(
  'wrong password: AuthenticationError (ACCESS_REFUSED), for PLAIN and AMQPLAIN',
  timed(async () => {
    for (const mechanism of ['PLAIN', 'AMQPLAIN'] as const) {
      const err = await rejection(connect(AMQP_URL, { password: 'wrong', mechanism }));
      assert.instance(err, AuthenticationError, mechanism);
      assert.is(err.code, 'ACCESS_REFUSED');
      assert.not.match(err.message, 'wrong', 'the password never appears in an error');
    }
    // AMQPLAIN with the right credentials works.
    await withConnection(async (c) => assert.ok(c.isOpen), { mechanism: 'AMQPLAIN' });
  }),
);

test(
  'unknown vhost: ConnectionError NOT_ALLOWED (530), not an authentication error',
  timed(async () => {
    const err = await rejection(connect(AMQP_URL, { vhost: unique('no-such-vhost') }));
    assert.instance(err, ConnectionError);
    assert.not.instance(err, AuthenticationError);
    assert.is(err.code, 'NOT_ALLOWED');
    assert.is((err as ConnectionError).replyCode, 530);
  }),
);

test('EXTERNAL without TLS and bad options are refused before connecting', async () => {
  const bad: [Record<string, unknown>, string][] = [
    [{ mechanism: 'EXTERNAL' }, 'EXTERNAL'],
    [{ heartbeat: -1 }, 'heartbeat'],
    [{ frameMax: 4096 }, 'frameMax'],
    [{ channelMax: 0 }, 'channelMax'],
    [{ port: 70000 }, 'port'],
  ];
  for (const [o, what] of bad) {
    const err = await rejection(connect(AMQP_URL, o as never));
    assert.is((err as AmqpError).code, 'OPTION_INVALID', what);
    assert.match(err.message, what);
  }
});

test(
  'connect to a port nobody listens on: ConnectionError SOCKET_ERROR, quickly',
  timed(async () => {
    const err = await rejection(connect('amqp://127.0.0.1:1'));
    assert.is(err.code, 'SOCKET_ERROR');
    assert.is((err.cause as NodeJS.ErrnoException).code, 'ECONNREFUSED');
  }),
);

test(
  'update-secret on a live connection',
  timed(() =>
    withConnection(async (conn) => {
      await conn.updateSecret('guest', 'token refresh');
      const ch = await conn.createChannel();
      await ch.queueDeclare('', { exclusive: true });
    }),
  ),
);

test(
  'broker-initiated close (rabbitmqctl close_connection): typed error everywhere, nothing hangs',
  timed(async () => {
    const name = unique('forced');
    const conn = await connect(AMQP_URL, { connectionName: name });
    const ch = await conn.createConfirmChannel();
    const { queue } = await ch.queueDeclare('', { exclusive: true });
    const consumer = await ch.basicConsume(queue, null);
    const iterating = (async () => {
      for await (const _ of consumer) {
        /* none */
      }
    })();
    iterating.catch(() => undefined);
    const chClosed = new Promise<Error | undefined>((resolve) => ch.once('close', resolve));
    // Find our connection's pid by its name (tabular output: the JSON formatter prints pids rabbitmqctl cannot parse).
    let pid = '';
    for (let i = 0; i < 20 && pid === ''; i++) {
      const list = await rabbitmqctl(['list_connections', 'pid', 'client_properties', '-q', '--no-table-headers']);
      pid =
        list
          .split('\n')
          .find((line) => line.includes(name))
          ?.split('\t')[0] ?? '';
      if (pid === '') await sleep(250);
    }
    assert.ok(pid !== '', 'connection listed');
    await rabbitmqctl(['close_connection', pid, 'maintenance by test']);
    const err = await withDeadline(conn.closed, 10_000, 'closed');
    assert.instance(err, ConnectionError);
    assert.is((err as ConnectionError).code, 'CONNECTION_FORCED');
    assert.is((err as ConnectionError).replyCode, 320);
    assert.match(err?.message ?? '', 'maintenance by test');
    assert.is(await chClosed, err);
    const iterErr = await rejection(iterating);
    assert.is(iterErr, err);
    const pub = await rejection(ch.basicPublish('', queue, 'late'));
    assert.is((pub as PublishError).failure, 'closed');
    assert.is((await rejection(conn.createChannel())).code, 'CONNECTION_FORCED');
    await conn.close(); // a no-op after the broker closed it
  }, 30_000),
);

test(
  'close is idempotent and fails what is pending with CLOSED',
  timed(async () => {
    const conn = await connect(AMQP_URL);
    const ch = await conn.createChannel();
    const closing = conn.close();
    const again = conn.close();
    const err = await rejection(ch.queueDeclare(''));
    assert.ok(err.code === 'CLOSED' || err.code === 'CHANNEL_CLOSED', err.code);
    await closing;
    await again;
    assert.is(await conn.closed, undefined);
    assert.not.ok(conn.isOpen);
  }),
);

test.run();
