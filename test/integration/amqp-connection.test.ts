/** Connection life cycle against the local RabbitMQ: handshake, negotiation, auth failures, broker-initiated close. */
import { createHmac } from 'node:crypto';
import { type AddressInfo, createServer } from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  type AmqpError,
  AuthenticationError,
  CLIENT_VERSION,
  ConnectionError,
  connect,
  type Message,
  type PublishError,
} from '../../src/amqp/index.js';
import { AMQP_URL, rejection, timed, unique, withConnection } from '../helpers/amqp.js';
import { type BrokerNode, rabbitmqctl, startBrokerNode } from '../helpers/broker-node.js';
import { until, withDeadline } from '../helpers/deadline.js';

/** A local server that answers any connection with `reply` (not a broker), and its port; closed by the caller. */
async function answering(reply: Buffer): Promise<{ port: number; close(): Promise<void> }> {
  const server = createServer((s) => {
    s.on('error', () => undefined);
    s.once('data', () => s.end(reply));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

test('a server that answers another protocol: PROTOCOL_MISMATCH saying which, not a frame error', async () => {
  const cases: [Buffer, string][] = [
    [
      Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 1, 0, 0]),
      'the broker does not support AMQP 0-9-1 (it offered protocol 0-1-0-0)',
    ],
    [
      Buffer.from('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n'),
      'the server answered in HTTP, not AMQP: is the port an HTTP one (the management UI is 15672, AMQP 5672)?',
    ],
  ];
  for (const [reply, message] of cases) {
    const server = await answering(reply);
    try {
      const err = await rejection(connect({ port: server.port, connectTimeout: 5000 }));
      assert.instance(err, ConnectionError);
      assert.equal([(err as AmqpError).code, err.message], ['PROTOCOL_MISMATCH', message]);
    } finally {
      await server.close();
    }
  }
});

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
  'CAP-1: client properties: the broker shows our connection, and only it, under its connection_name, with our product, version and every capability we advertise',
  timed(async () => {
    const name = unique('conn-name');
    type Field = [name: string, type: string, value: unknown];
    await withConnection(
      async () => {
        // The shared broker has other clients, some of them this library: match our connection by its name alone.
        let ours: Field[][] = [];
        await until(
          async () => {
            const out = await rabbitmqctl(['list_connections', 'client_properties', '--formatter', 'json']);
            ours = (JSON.parse(out) as { client_properties: Field[] }[])
              .map((c) => c.client_properties)
              .filter((props) => props.some(([k, , v]) => k === 'connection_name' && v === name));
            return ours.length > 0;
          },
          'our connection in rabbitmqctl list_connections',
          10_000,
          250,
        );
        assert.is(ours.length, 1, 'one connection has our connection_name');
        const props = new Map((ours[0] as Field[]).map(([k, t, v]) => [k, [t, v]]));
        assert.equal(props.get('product'), ['longstr', 'ebadge-hub-bus']);
        assert.equal(props.get('version'), ['longstr', CLIENT_VERSION]);
        assert.equal(props.get('platform'), ['longstr', `Node.js ${process.version}`]);
        const [type, table] = props.get('capabilities') ?? [];
        assert.is(type, 'table', 'our connection has a capabilities table');
        assert.equal(
          Object.fromEntries((table as Field[]).map(([k, t, v]) => [k, [t, v]])),
          {
            publisher_confirms: ['bool', true],
            exchange_exchange_bindings: ['bool', true],
            'basic.nack': ['bool', true],
            consumer_cancel_notify: ['bool', true],
            'connection.blocked': ['bool', true],
            authentication_failure_close: ['bool', true],
            per_consumer_qos: ['bool', true],
          },
          'the capabilities table of our connection, entry by entry',
        );
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
  'connect to a port nobody listens on: ConnectionError SOCKET_ERROR, quickly; with TLS too (nothing of TLS was said)',
  timed(async () => {
    for (const url of ['amqp://127.0.0.1:1', 'amqps://127.0.0.1:1']) {
      const err = await rejection(connect(url));
      assert.is(err.code, 'SOCKET_ERROR', url);
      assert.match(err.message, /^socket error: /, url);
      assert.is((err.cause as NodeJS.ErrnoException).code, 'ECONNREFUSED', url);
    }
  }),
);

/** A JWT signed with HS256 (RFC 7519), the kind of token RabbitMQ's OAuth 2 backend takes as the password. */
function jwt(claims: Record<string, unknown>, key: string): string {
  const part = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  const signed = `${part({ alg: 'HS256', typ: 'JWT', kid: 'test-key' })}.${part(claims)}`;
  return `${signed}.${createHmac('sha256', key).update(signed).digest('base64url')}`;
}

test(
  'update-secret: a fresh token is accepted (update-secret-ok) and the connection carries on; a refused one closes the connection with 530 NOT_ALLOWED, a typed ConnectionError for the call and what follows',
  timed(async () => {
    // The default node's internal backend accepts any new secret without checking it (it has no expiring state),
    // so a node of its own checks tokens: the OAuth 2 backend, with a symmetric signing key.
    const key = 'update-secret-test-signing-key';
    let node: BrokerNode | undefined;
    try {
      node = await startBrokerNode({
        name: 'oauth',
        plugins: ['rabbitmq_auth_backend_oauth2'],
        extraConfig: 'auth_backends.1 = rabbit_auth_backend_oauth2',
        advancedConfig: `[{rabbitmq_auth_backend_oauth2, [{resource_server_id, <<"rabbitmq">>}, {key_config, [{default_key, <<"test-key">>}, {signing_keys, #{<<"test-key">> => {map, #{<<"kty">> => <<"oct">>, <<"alg">> => <<"HS256">>, <<"k">> => <<"${Buffer.from(key).toString('base64url')}">>}}}}]}]}].`,
      });
      const now = Math.floor(Date.now() / 1000);
      const claims = {
        sub: 'hub-1',
        aud: ['rabbitmq'],
        scope: ['rabbitmq.configure:*/*', 'rabbitmq.read:*/*', 'rabbitmq.write:*/*'],
        exp: now + 600,
      };
      const conn = await connect({ port: node.amqpPort, username: 'hub-1', password: jwt(claims, key) });
      try {
        await withDeadline(
          conn.updateSecret(jwt({ ...claims, exp: now + 1200 }, key), 'token refresh'),
          5000,
          'update-secret-ok',
        );
        // Still usable: a publish and its delivery, on the same connection.
        const ch = await conn.createConfirmChannel();
        const { queue } = await ch.queueDeclare('', { exclusive: true });
        const got = new Promise<Message>((resolve) => void ch.basicConsume(queue, resolve, { noAck: true }));
        await ch.basicPublish('', queue, 'after the refresh');
        assert.is((await withDeadline(got, 5000, 'the delivery')).text(), 'after the refresh');

        // A token signed with another key: the broker refuses it by closing the connection.
        const err = await rejection(
          withDeadline(conn.updateSecret(jwt(claims, 'not the signing key'), 'forged'), 5000, 'the refusal'),
        );
        assert.instance(err, ConnectionError, `${err.name}: ${err.message}`);
        assert.not.instance(err, AuthenticationError);
        assert.is(err.code, 'NOT_ALLOWED');
        assert.is((err as ConnectionError).replyCode, 530);
        assert.match(err.message, 'refused');
        assert.is(await withDeadline(conn.closed, 5000, 'closed'), err, 'the connection ended with that error');
        assert.not.ok(conn.isOpen);
        assert.is(((await rejection(ch.basicPublish('', queue, 'late'))) as PublishError).failure, 'closed');
        assert.is((await rejection(conn.createChannel())).code, 'NOT_ALLOWED');
      } finally {
        await conn.close();
      }
    } finally {
      await node?.stop();
    }
  }, 90_000),
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
    await until(
      async () => {
        const list = await rabbitmqctl(['list_connections', 'pid', 'client_properties', '-q', '--no-table-headers']);
        pid =
          list
            .split('\n')
            .find((line) => line.includes(name))
            ?.split('\t')[0] ?? '';
        return pid !== '';
      },
      'our connection in rabbitmqctl list_connections',
      10_000,
      250,
    );
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

test(
  'closes crossed: a channel closed as the broker closes it (a publish to a missing exchange) leaves the connection open',
  timed(async () => {
    // RabbitMQ sends its channel.close 404, then answers our channel.close with a close-ok: that close-ok closed the
    // connection (504, a frame for a channel not open) when the channel gave up its id at the broker's close.
    await withConnection(async (conn) => {
      for (let i = 0; i < 3; i++) {
        const ch = await conn.createConfirmChannel();
        const published = rejection(ch.basicPublish(unique('no-such-exchange'), 'k', 'x'));
        await ch.close();
        assert.is(((await published) as PublishError).failure, 'closed');
        // The broker's close-ok follows its close within a round trip: a queue.declare on a new channel is after it.
        const probe = await conn.createChannel();
        await probe.queueDeclare('', { exclusive: true });
        await probe.close();
        assert.ok(
          conn.isOpen,
          `round ${i}: the connection is still open (closed with ${String(await Promise.race([conn.closed, 'open']))})`,
        );
      }
    });
  }),
);

test.run();
