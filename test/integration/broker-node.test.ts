/**
 * Proves the extra-node fixture: a second RabbitMQ node with a TLS listener
 * starts, speaks AMQP on both ports, enforces the CA, and is fully cleaned up.
 *
 * The node is started in the first test rather than in `test.before`: uvu 0.5
 * swallows errors thrown by hooks (its runner `return`s from a `finally`), so a
 * failed start in a hook would look like a green run.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { type BrokerNode, rabbitmqctl, startBrokerNode } from '../helpers/broker-node.js';
import { withDeadline } from '../helpers/deadline.js';

const AMQP_0_9_1_HEADER = Buffer.from('AMQP\x00\x00\x09\x01', 'latin1');
const FRAME_METHOD = 0x01;
/** Frame header (7) + class id (2) + method id (2). */
const START_FRAME_PREFIX = 11;

let node: BrokerNode | undefined;

function requireNode(): BrokerNode {
  if (node === undefined) throw new Error('the broker node did not start (see the first test)');
  return node;
}

interface ProbeResult {
  /** TLS handshake (or TCP connect for plain probes) completed. */
  connected: boolean;
  data: Buffer;
  error?: NodeJS.ErrnoException;
}

/**
 * Connects, sends the AMQP protocol header once connected and collects the
 * first bytes of the answer. Never rejects: errors are part of the result.
 */
function amqpProbe(connect: () => net.Socket, connectEvent: 'connect' | 'secureConnect'): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const result: ProbeResult = { connected: false, data: Buffer.alloc(0) };
    const socket = connect();
    const finish = (): void => {
      socket.destroy();
      resolve(result);
    };
    socket.once(connectEvent, () => {
      result.connected = true;
      socket.write(AMQP_0_9_1_HEADER);
    });
    socket.on('data', (chunk: Buffer) => {
      result.data = Buffer.concat([result.data, chunk]);
      if (result.data.length >= START_FRAME_PREFIX) finish();
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      result.error = err;
      finish();
    });
    socket.once('close', finish);
  });
}

function assertConnectionStart(data: Buffer, what: string): void {
  assert.ok(data.length >= START_FRAME_PREFIX, `${what}: expected a frame, got ${data.length} bytes`);
  assert.is(data[0], FRAME_METHOD, `${what}: first byte must be the method frame type`);
  assert.is(data.readUInt16BE(1), 0, `${what}: channel 0`);
  assert.is(data.readUInt16BE(7), 10, `${what}: class connection`);
  assert.is(data.readUInt16BE(9), 10, `${what}: method start`);
}

function tlsProbe(options: tls.ConnectionOptions): Promise<ProbeResult> {
  const n = requireNode();
  return amqpProbe(() => tls.connect({ host: '127.0.0.1', port: n.tlsPort, ...options }), 'secureConnect');
}

/** Resolves with the connect error code, or 'connected'. */
function tcpConnectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

test('startBrokerNode starts a second node with a TLS listener', async () => {
  const t0 = Date.now();
  node = await withDeadline(startBrokerNode({ name: 'tlstest', tls: true }), 90_000, 'startBrokerNode');
  console.log(
    `    [broker-node] start took ${Date.now() - t0} ms (${node.nodeName}, amqp ${node.amqpPort}, amqps ${node.tlsPort}, dist ${node.distPort})`,
  );

  assert.match(node.nodeName, new RegExp(`^tlstest-${process.pid}@localhost$`));
  assert.type(node.tlsPort, 'number');
  assert.ok(node.tls !== undefined);
  assert.ok(fs.existsSync(node.dataDir));
  for (const file of [
    node.tls.caFile,
    node.tls.clientCertFile,
    node.tls.clientKeyFile,
    node.tls.untrustedCertFile,
    node.tls.untrustedKeyFile,
  ]) {
    assert.ok(fs.existsSync(file), file);
  }
  for (const port of [node.amqpPort, node.distPort, node.tlsPort]) {
    assert.is.not(port, 5672);
    assert.is.not(port, 25672);
  }
});

test('the plain AMQP port answers the protocol header with connection.start', async () => {
  const n = requireNode();
  const result = await withDeadline(
    amqpProbe(() => net.connect({ host: '127.0.0.1', port: n.amqpPort }), 'connect'),
    10_000,
    'plain AMQP probe',
  );
  assert.is(result.error, undefined);
  assertConnectionStart(result.data, 'plain');
});

test('TLS with the CA and the client certificate: handshake, then connection.start', async () => {
  const material = requireNode().tls!;
  const result = await withDeadline(
    tlsProbe({
      servername: material.serverName,
      ca: fs.readFileSync(material.caFile),
      cert: fs.readFileSync(material.clientCertFile),
      key: fs.readFileSync(material.clientKeyFile),
    }),
    10_000,
    'TLS probe',
  );
  assert.is(result.error, undefined);
  assert.ok(result.connected, 'TLS handshake completed');
  assertConnectionStart(result.data, 'amqps');
});

test('TLS also works without a client certificate (PLAIN over TLS)', async () => {
  const material = requireNode().tls!;
  const result = await withDeadline(
    tlsProbe({ servername: material.serverName, ca: fs.readFileSync(material.caFile) }),
    10_000,
    'TLS probe without client cert',
  );
  assert.is(result.error, undefined);
  assertConnectionStart(result.data, 'amqps without client cert');
});

test('TLS without trusting the CA fails server verification', async () => {
  const material = requireNode().tls!;
  const result = await withDeadline(
    tlsProbe({
      servername: material.serverName,
      cert: fs.readFileSync(material.clientCertFile),
      key: fs.readFileSync(material.clientKeyFile),
    }),
    10_000,
    'untrusting TLS probe',
  );
  assert.not.ok(result.connected, 'handshake must not complete');
  assert.ok(
    ['SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY'].includes(
      result.error?.code ?? '',
    ),
    `unexpected error: ${result.error?.code} ${result.error?.message}`,
  );
});

test('a client certificate from another CA is rejected by the broker', async () => {
  const material = requireNode().tls!;
  const result = await withDeadline(
    tlsProbe({
      servername: material.serverName,
      ca: fs.readFileSync(material.caFile),
      cert: fs.readFileSync(material.untrustedCertFile),
      key: fs.readFileSync(material.untrustedKeyFile),
    }),
    10_000,
    'untrusted client cert probe',
  );
  // With TLS 1.3 the client sees the handshake complete and only then the
  // server's alert, so judge by the outcome: no connection.start, an alert.
  assert.not.ok(result.data.length > 0 && result.data[0] === FRAME_METHOD, 'must not get connection.start');
  assert.ok(result.error !== undefined, 'expected a TLS alert');
  assert.match(result.error.code ?? result.error.message, /UNKNOWN_CA|CERTIFICATE|ALERT/i);
});

test('ctl reaches the node; the EXTERNAL user exists; rabbitmqctl reaches the default node', async () => {
  const n = requireNode();
  const status = await withDeadline(n.ctl(['status']), 35_000, 'ctl status');
  assert.ok(status.includes(n.nodeName), 'status names the node');
  const users = await withDeadline(n.ctl(['-q', 'list_users']), 35_000, 'ctl list_users');
  assert.match(users, new RegExp(`^${n.tls!.clientCn}\\s`, 'm'));
  const plugins = await withDeadline(n.ctl(['-q', 'eval', 'rabbit_plugins:active().']), 35_000, 'ctl eval');
  assert.ok(plugins.includes('rabbitmq_auth_mechanism_ssl'), plugins);

  const defaultStatus = await withDeadline(rabbitmqctl(['status']), 35_000, 'rabbitmqctl status');
  assert.ok(defaultStatus.includes('rabbit@localhost'), 'default node status');
});

test('stop() stops the node, frees its ports, removes the temp folder, and is idempotent', async () => {
  const n = requireNode();
  const t0 = Date.now();
  await withDeadline(n.stop(), 45_000, 'stop');
  console.log(`    [broker-node] stop took ${Date.now() - t0} ms`);

  assert.is(await withDeadline(tcpConnectOutcome(n.amqpPort), 5_000, 'amqp connect'), 'ECONNREFUSED');
  assert.is(await withDeadline(tcpConnectOutcome(n.tlsPort!), 5_000, 'amqps connect'), 'ECONNREFUSED');
  assert.not.ok(fs.existsSync(n.dataDir), 'temp folder removed');

  const t1 = Date.now();
  await withDeadline(n.stop(), 1_000, 'second stop');
  assert.ok(Date.now() - t1 < 1_000);
});

test.after(async () => {
  // Only matters when a test above failed before stop(); stop() is idempotent.
  await withDeadline(node?.stop() ?? Promise.resolve(), 45_000, 'cleanup stop');
});

test.run();
