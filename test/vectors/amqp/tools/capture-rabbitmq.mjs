// Captures the frames a real RabbitMQ sends to a client and writes them, annotated, to ../rabbitmq-3.10.json.
//
//   node test/vectors/amqp/tools/capture-rabbitmq.mjs        (AMQP_URL defaults to the integration tests' broker)
//
// The client side is amqplib's generated encoder (lib/defs.js), so neither direction of the conversation passes
// through our codec. Every broker frame is recorded byte for byte as it came off the socket.
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { annotateFrame, amqplibDefs as defs, splitFrames } from './annotate.mjs';

const require = createRequire(import.meta.url);
const frameLib = require('../../../../node_modules/amqplib/lib/frame.js');

const url = new URL(process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672');
const user = decodeURIComponent(url.username);
const pass = decodeURIComponent(url.password);

const socket = connect(Number(url.port || 5672), url.hostname);
let acc = Buffer.alloc(0);
const queue = [];
let waiter = null;
socket.on('data', (d) => {
  acc = Buffer.concat([acc, d]);
  const { frames, rest } = splitFrames(acc);
  acc = Buffer.from(rest);
  queue.push(...frames);
  if (waiter !== null && queue.length > 0) {
    const w = waiter;
    waiter = null;
    w();
  }
});
socket.on('error', (e) => {
  console.error(e);
  process.exit(1);
});

const captured = [];
/** Takes the next broker frame; `expect` ("basic.ack", "header", "body") guards against a misread conversation. */
async function recv(expect, note) {
  while (queue.length === 0)
    await new Promise((r) => {
      waiter = r;
    });
  const v = annotateFrame(queue.shift());
  const got = v.kind === 'method' ? v.expect.name : v.kind;
  if (expect !== undefined && got !== expect) throw new Error(`expected ${expect}, got ${got}`);
  v.name = note === undefined ? got : `${got} (${note})`;
  captured.push(v);
  return v;
}
const send = (name, channel, fields) => socket.write(defs.encodeMethod(defs[name], channel, fields));

await new Promise((r) => socket.once('connect', r));
socket.write(Buffer.from('AMQP\x00\x00\x09\x01', 'latin1'));
await recv('connection.start');
send('ConnectionStartOk', 0, {
  clientProperties: { product: 'vector-capture' },
  mechanism: 'PLAIN',
  response: Buffer.from(`\u0000${user}\u0000${pass}`),
  locale: 'en_US',
});
await recv('connection.tune');
send('ConnectionTuneOk', 0, { channelMax: 16, frameMax: 4096, heartbeat: 0 });
send('ConnectionOpen', 0, {
  virtualHost: decodeURIComponent(url.pathname.slice(1)) || '/',
  capabilities: '',
  insist: false,
});
await recv('connection.open-ok');
send('ChannelOpen', 1, { outOfBand: '' });
await recv('channel.open-ok');
send('ConfirmSelect', 1, { nowait: false });
await recv('confirm.select-ok');
send('QueueDeclare', 1, {
  queue: '',
  passive: false,
  durable: false,
  exclusive: true,
  autoDelete: true,
  nowait: false,
  arguments: {},
});
const declared = await recv('queue.declare-ok');
const q = declared.expect.args.queue;

const headers = {
  s: 'text',
  yes: true,
  no: false,
  i8: { '!': 'int8', value: -5 },
  u8: { '!': 'uint8', value: 200 },
  i16: { '!': 'int16', value: -300 },
  u16: { '!': 'uint16', value: 65000 },
  i32: -70000,
  u32: { '!': 'uint32', value: 4000000000 },
  i64: { '!': 'int64', value: 2 ** 40 },
  f: { '!': 'float', value: 1.5 },
  d: 2.25,
  dec: { '!': 'decimal', value: { places: 2, digits: 12345 } },
  ts: { '!': 'timestamp', value: 1700000000 },
  bin: Buffer.from([0, 1, 254, 255]),
  nil: null,
  arr: ['a', 1, true, { k: 'v' }],
  nested: { deeper: { key: 'value' } },
};
const props = {
  contentType: 'application/json',
  contentEncoding: 'utf-8',
  headers,
  deliveryMode: 2,
  priority: 5,
  correlationId: 'corr-1',
  replyTo: 'reply.queue',
  expiration: '60000',
  messageId: 'msg-1',
  timestamp: 1700000001,
  type: 'report',
  userId: user,
  appId: 'capture',
  clusterId: 'c1',
};
function publish(exchange, routingKey, mandatory, body, p) {
  socket.write(defs.encodeMethod(defs.BasicPublish, 1, { exchange, routingKey, mandatory, immediate: false }));
  socket.write(defs.encodeProperties(60, 1, body.length, p));
  for (let i = 0; i < body.length; i += 4088) socket.write(frameLib.makeBodyFrame(1, body.subarray(i, i + 4088)));
}

// 1. a message with all 14 properties, confirmed
publish('', q, false, Buffer.from('{"hello":"world"}'), props);
await recv('basic.ack', 'confirm of delivery-tag 1');
// 2. mandatory and unroutable: basic.return, its header and body, then the confirm
publish('amq.direct', 'no-such-binding', true, Buffer.from('unroutable'), { contentType: 'text/plain' });
await recv('basic.return', '312 NO_ROUTE');
await recv('header', 'of the returned message');
await recv('body', 'of the returned message');
await recv('basic.ack', 'confirm of delivery-tag 2');
// 3. basic.get of message 1, then an empty get
send('BasicGet', 1, { queue: q, noAck: false });
await recv('basic.get-ok');
await recv('header', 'all 14 properties, headers of every field type');
await recv('body', 'of the got message');
send('BasicAck', 1, { deliveryTag: 1, multiple: false });
send('BasicGet', 1, { queue: q, noAck: true });
await recv('basic.get-empty');
// 4. a consumer receiving a 4,200-byte body in two body frames (frame_max 4096)
send('BasicQos', 1, { prefetchSize: 0, prefetchCount: 10, global: false });
await recv('basic.qos-ok');
send('BasicConsume', 1, {
  queue: q,
  consumerTag: 'vector-consumer',
  noLocal: false,
  noAck: false,
  exclusive: false,
  nowait: false,
  arguments: {},
});
await recv('basic.consume-ok');
const big = Buffer.alloc(4200);
for (let i = 0; i < big.length; i++) big[i] = i % 251;
publish('', q, false, big, { deliveryMode: 1, timestamp: 0, headers: {} });
// The confirm and the delivery race: take the four frames of the delivery and the ack in whatever order they come.
for (let i = 0; i < 5; i++) await recv();
const seen = captured
  .slice(-5)
  .map((v) => v.name)
  .sort()
  .join();
if (seen !== 'basic.ack,basic.deliver,body,body,header') throw new Error(`unexpected frames: ${seen}`);
send('BasicCancel', 1, { consumerTag: 'vector-consumer', nowait: false });
await recv('basic.cancel-ok');
// 5. a channel error: passive declare of a queue that does not exist
send('QueueDeclare', 1, {
  queue: 'no-such-queue-for-vectors',
  passive: true,
  durable: false,
  exclusive: false,
  autoDelete: false,
  nowait: false,
  arguments: {},
});
await recv('channel.close', '404 NOT_FOUND');
send('ChannelCloseOk', 1, {});
// 6. the connection close handshake
send('ConnectionClose', 0, { replyCode: 200, replyText: 'bye', classId: 0, methodId: 0 });
await recv('connection.close-ok');
socket.removeAllListeners('error');
socket.destroy(); // the broker closes its side after close-ok; a reset then is expected

const version = captured[0].expect.args.serverProperties.version;
const out = {
  source:
    `RabbitMQ ${version} on ${url.hostname}:${url.port || 5672}, captured ${new Date().toISOString().slice(0, 10)} by tools/capture-rabbitmq.mjs ` +
    '(client frames encoded by amqplib 2.3.1; broker frames recorded byte for byte)',
  vectors: captured,
};
writeFileSync(new URL('../rabbitmq-3.10.json', import.meta.url), `${JSON.stringify(out, null, 1)}\n`);
console.log(`wrote ${captured.length} frames from RabbitMQ ${version}`);
