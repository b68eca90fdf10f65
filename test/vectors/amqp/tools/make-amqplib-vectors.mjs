// Writes ../amqplib-2.3.1.json: frames and field tables produced by amqplib 2.3.1's generated codec
// (node_modules/amqplib/lib/defs.js and lib/codec.js), an implementation independent of ours.
//
//   node test/vectors/amqp/tools/make-amqplib-vectors.mjs
//
// Every method of the spec gets one frame with non-default values of each argument (bits in an alternating pattern),
// plus content headers, a body, the heartbeat frame and field tables using every type tag through amqplib's
// {'!': type, value} notation.
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import {
  annotateFrame,
  amqplibCodec as codec,
  crossCheck,
  amqplibDefs as defs,
  specName,
  walkTable,
} from './annotate.mjs';

const require = createRequire(import.meta.url);
const frameLib = require('../../../../node_modules/amqplib/lib/frame.js');

const vectors = [];
const infos = Object.entries(defs)
  .filter(([k]) => k.startsWith('methodInfo'))
  .map(([, v]) => v);
const pick = (n) => (n % 5 === 0 ? 0 : n);
for (const info of infos) {
  const fields = {};
  let bit = 0;
  info.args.forEach((a, i) => {
    switch (a.type) {
      case 'octet':
        fields[a.name] = 7 + i;
        break;
      case 'short':
        fields[a.name] = 0x1234 + i;
        break;
      case 'long':
        fields[a.name] = 0x89abcdef - i;
        break;
      case 'longlong':
      case 'timestamp':
        fields[a.name] = 2 ** 40 + i;
        break;
      case 'shortstr':
        fields[a.name] = `${a.name}-${info.name}`.slice(0, 255);
        break;
      case 'longstr':
        fields[a.name] = Buffer.from(`longstr ${a.name}`);
        break;
      case 'bit':
        fields[a.name] = bit++ % 2 === 0;
        break;
      case 'table':
        fields[a.name] = { 'x-arg': 'v', n: pick(i) + 300, deep: { list: [1, 'two', false] } };
        break;
      default:
        throw new Error(a.type);
    }
  });
  const frame = defs.encodeMethod(info.id, 3, fields);
  vectors.push(annotateFrame(frame, `${specName(info)} (channel 3, every argument set)`));
}

const allProps = {
  contentType: 'text/plain',
  contentEncoding: 'gzip',
  headers: { 'x-first': 1, 'x-second': 'two' },
  deliveryMode: 1,
  priority: 9,
  correlationId: 'c',
  replyTo: 'amq.rabbitmq.reply-to',
  expiration: '1000',
  messageId: 'm',
  timestamp: 1234567890,
  type: 't',
  userId: 'u',
  appId: 'a',
  clusterId: 'cl',
};
vectors.push(annotateFrame(defs.encodeProperties(60, 2, 0, {}), 'header: no properties, empty body'));
vectors.push(
  annotateFrame(defs.encodeProperties(60, 2, 2 ** 40, allProps), 'header: all 14 properties, body of 2^40 bytes'),
);
vectors.push(annotateFrame(defs.encodeProperties(60, 2, 5, { deliveryMode: 2 }), 'header: deliveryMode only'));
vectors.push(
  annotateFrame(defs.encodeProperties(60, 2, 5, { clusterId: '' }), 'header: clusterId only (the last flag bit)'),
);
vectors.push(annotateFrame(frameLib.makeBodyFrame(2, Buffer.from('hello')), 'body "hello"'));
vectors.push(annotateFrame(frameLib.makeBodyFrame(2, Buffer.alloc(0)), 'empty body frame'));
vectors.push(annotateFrame(Buffer.from(frameLib.HEARTBEAT_BUF), 'heartbeat'));

const tables = {
  'every type tag': {
    t: true,
    b: { '!': 'int8', value: -128 },
    B: { '!': 'uint8', value: 255 },
    s: { '!': 'int16', value: -32768 },
    u: { '!': 'uint16', value: 65535 },
    I: { '!': 'int32', value: -2147483648 },
    i: { '!': 'uint32', value: 4294967295 },
    l: { '!': 'int64', value: -(2 ** 53 - 1) },
    f: { '!': 'float', value: -0.25 },
    d: { '!': 'double', value: 1e300 },
    D: { '!': 'decimal', value: { places: 3, digits: 1234567 } },
    S: 'longstr',
    x: Buffer.from('bytes'),
    A: [1, 'x'],
    T: { '!': 'timestamp', value: 4102444800 },
    F: { k: 'v' },
    V: null,
  },
  'integer boundaries': {
    i8max: { '!': 'int8', value: 127 },
    i16max: { '!': 'int16', value: 32767 },
    i32max: { '!': 'int32', value: 2147483647 },
    u8min: { '!': 'uint8', value: 0 },
    u16min: { '!': 'uint16', value: 0 },
    u32min: { '!': 'uint32', value: 0 },
    i64max: { '!': 'int64', value: 9223372036854775807n },
    i64min: { '!': 'int64', value: -9223372036854775808n },
  },
  'negative zero, integral doubles, float32 extremes': {
    negzero: { '!': 'double', value: -0 },
    one: { '!': 'double', value: 1 },
    fnegzero: { '!': 'float', value: -0 },
    fmax: { '!': 'float', value: 3.4028234663852886e38 },
    fmin: { '!': 'float', value: 1.401298464324817e-45 },
    dmax: { '!': 'double', value: Number.MAX_VALUE },
  },
  'NaN and the infinities': {
    nan: { '!': 'double', value: NaN },
    inf: { '!': 'double', value: Infinity },
    ninf: { '!': 'float', value: -Infinity },
    fnan: { '!': 'float', value: NaN },
  },
  'empty values': {
    emptyString: '',
    emptyBytes: Buffer.alloc(0),
    emptyArray: [],
    emptyTable: {},
    zeroTimestamp: { '!': 'timestamp', value: 0 },
  },
  'UTF-8 keys and values': { ключ: 'значение', 鍵: '値', 'emoji 🐇': '🥕', ['k'.repeat(255)]: 'a 255-byte key' },
  'nested arrays and tables': { a: [[[]], [{ b: [{ c: [null] }] }]], t: { t: { t: { t: {} } } } },
  'empty table': {},
};
for (const [name, t] of Object.entries(tables)) {
  const buf = Buffer.alloc(65536);
  const n = codec.encodeTable(buf, t, 0);
  const bytes = buf.subarray(0, n);
  const lines = [];
  const { value } = walkTable(bytes, 0, lines, 0, 'table');
  // amqplib decodes its own bytes to the same values (modulo representation) before the vector is kept.
  crossCheck(codec.decodeFields(bytes.subarray(4)), value);
  const v = { name: `table: ${name}`, kind: 'table', bytes: lines, expect: value };
  // Our encoder refuses these on purpose (RabbitMQ closes the connection on NaN or an infinity): decode only.
  if (name === 'NaN and the infinities') v.refuse = { class: 'ArgumentError', code: 'ARGUMENT_INVALID' };
  vectors.push(v);
}

const out = {
  source:
    'amqplib 2.3.1 (node_modules/amqplib: lib/defs.js encodeMethod/encodeProperties, lib/frame.js, lib/codec.js encodeTable), ' +
    'generated by tools/make-amqplib-vectors.mjs',
  vectors,
};
writeFileSync(new URL('../amqplib-2.3.1.json', import.meta.url), `${JSON.stringify(out, null, 1)}\n`);
console.log(`wrote ${vectors.length} vectors`);
