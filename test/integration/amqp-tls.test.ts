/**
 * TLS and SASL EXTERNAL against a second RabbitMQ node that the fixture starts (own node name, ports, data directory,
 * CA and certificates made by openssl in a temp folder) and stops afterwards.
 */

import { readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Connection, ConnectionError, connect } from '../../src/amqp/index.js';
import { unreachable } from '../../src/device/link.js';
import { rejection, timed } from '../helpers/amqp.js';
import { type BrokerNode, type BrokerTlsMaterial, startBrokerNode } from '../helpers/broker-node.js';
import { withDeadline } from '../helpers/deadline.js';

let node: BrokerNode | undefined;
test.after(async () => {
  await node?.stop();
});

function material(): BrokerTlsMaterial & { port: number } {
  if (node?.tls === undefined || node.tlsPort === undefined) throw new Error('the TLS node did not start');
  return { ...node.tls, port: node.tlsPort };
}

async function roundTrip(conn: Connection): Promise<void> {
  try {
    const ch = await conn.createConfirmChannel();
    const { queue } = await ch.queueDeclare('', { exclusive: true });
    await ch.basicPublish('', queue, 'over TLS');
    assert.is((await ch.basicGet(queue, { noAck: true }))?.text(), 'over TLS');
  } finally {
    await conn.close();
  }
}

// Started inside a test, not in a before hook: uvu 0.5 swallows errors thrown by hooks.
test(
  'the fixture starts a TLS node',
  timed(async () => {
    node = await startBrokerNode({ name: 'amqptls', tls: true });
    assert.ok(node.tlsPort);
  }, 120_000),
);

test(
  'amqps with certificate verification and PLAIN',
  timed(async () => {
    const m = material();
    const conn = await connect({ hostname: '127.0.0.1', port: m.port, tls: { ca: readFileSync(m.caFile) } });
    await roundTrip(conn);
  }),
);

test(
  "SASL EXTERNAL: the broker logs us in as the client certificate's CN",
  timed(async () => {
    const m = material();
    const conn = await connect({
      hostname: 'localhost',
      port: m.port,
      mechanism: 'EXTERNAL',
      username: 'ignored',
      password: 'ignored',
      tls: { ca: readFileSync(m.caFile), cert: readFileSync(m.clientCertFile), key: readFileSync(m.clientKeyFile) },
      connectionName: 'external-test',
    });
    const users = await (node as BrokerNode).ctl([
      'list_connections',
      'user',
      'auth_mechanism',
      '-q',
      '--no-table-headers',
    ]);
    assert.match(users, `${m.clientCn}\tEXTERNAL`);
    await roundTrip(conn);
  }),
);

test(
  "the same through an amqps URL with RabbitMQ's query parameters",
  timed(async () => {
    const m = material();
    const q = new URLSearchParams({
      auth_mechanism: 'external',
      cacertfile: m.caFile,
      certfile: m.clientCertFile,
      keyfile: m.clientKeyFile,
      server_name_indication: m.serverName,
      heartbeat: '10',
    });
    const conn = await connect(`amqps://127.0.0.1:${m.port}/?${q}`);
    assert.is(conn.heartbeat, 10);
    await roundTrip(conn);
  }),
);

test(
  'verification is on by default: a server signed by an unknown CA is refused',
  timed(async () => {
    const m = material();
    const err = await rejection(connect({ hostname: '127.0.0.1', port: m.port, tls: true }));
    assert.instance(err, ConnectionError);
    assert.is(err.code, 'TLS_ERROR');
    assert.is((err.cause as NodeJS.ErrnoException).code, 'SELF_SIGNED_CERT_IN_CHAIN');
    // What the hub's log then tells the operator (src/device/link.ts), from this real text.
    assert.match(unreachable(err.message, 'E', 'amqps://127.0.0.1') ?? '', 'set broker.tls.ca', err.message);
  }),
);

test(
  'a server name that does not match the certificate is refused',
  timed(async () => {
    const m = material();
    const err = await rejection(
      connect({
        hostname: '127.0.0.1',
        port: m.port,
        tls: { ca: readFileSync(m.caFile), servername: 'broker.invalid' },
      }),
    );
    assert.is(err.code, 'TLS_ERROR');
    assert.is((err.cause as NodeJS.ErrnoException).code, 'ERR_TLS_CERT_ALTNAME_INVALID');
    assert.match(unreachable(err.message, 'E', 'amqps://127.0.0.1') ?? '', 'broker.tls.servername', err.message);
  }),
);

test(
  'a client certificate from an untrusted CA is refused by the broker, with a typed error',
  timed(async () => {
    const m = material();
    const err = await rejection(
      withDeadline(
        connect({
          hostname: '127.0.0.1',
          port: m.port,
          mechanism: 'EXTERNAL',
          tls: {
            ca: readFileSync(m.caFile),
            cert: readFileSync(m.untrustedCertFile),
            key: readFileSync(m.untrustedKeyFile),
          },
        }),
        10_000,
        'connect',
      ),
    );
    assert.instance(err, ConnectionError);
    assert.ok(['TLS_ERROR', 'SOCKET_ERROR', 'SOCKET_CLOSED'].includes(err.code ?? ''), err.code);
    // Under TLS 1.3 the broker checks our certificate after the handshake: its alert ends the socket (here
    // "socket error: ...:tlsv1 alert unknown ca:..."), unless the socket closes first with no text at all.
    if (err.code !== 'SOCKET_CLOSED') {
      assert.match(unreachable(err.message, 'E', 'amqps://127.0.0.1') ?? '', "refused the hub's client certificate");
    }
  }),
);

test.run();
