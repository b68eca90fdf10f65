/**
 * The framing of a connection's incoming bytes (src/mqtt/acks.ts): a PUBACK or PUBREC with a reason code MQTT.js's
 * parser cannot take (Mosquitto's 0x95) is noted and rewritten to 0x80, wherever the chunks split, however many
 * packets a chunk holds, with remaining lengths of 1 to 4 bytes; nothing else is touched, and mqtt-packet's parser
 * then reads the stream in step.
 */
import mqttPacket from 'mqtt-packet';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { AckFramer, STAND_IN } from '../../../src/mqtt/acks.js';
import { Random } from '../../helpers/random.js';

const s = suite('mqtt ack framing');

/** The remaining length as MQTT's variable byte integer. */
function varint(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

const packet = (first: number, body: Uint8Array | number[]): Buffer =>
  Buffer.concat([Buffer.from([first, ...varint(body.length)]), Buffer.from(body)]);
/** A PUBACK (0x40) or PUBREC (0x50) of packet id `id` with `code`, and optionally a properties length of 0. */
const ack = (id: number, code: number, type = 0x40, props = false): Buffer =>
  packet(type, [id >> 8, id & 0xff, code, ...(props ? [0] : [])]);
/** A PUBLISH (QoS 1) whose payload is `size` bytes of 0x95 and 0x40 (what a careless framer would read as acks). */
function publish(id: number, size: number): Buffer {
  const topic = Buffer.from('a/b');
  const payload = Buffer.alloc(size);
  for (let i = 0; i < size; i++) payload[i] = i % 2 === 0 ? 0x40 : 0x95;
  return packet(0x32, [0, topic.length, ...topic, id >> 8, id & 0xff, 0, ...payload]);
}

/** Feeds `stream` in the given chunk sizes (the last takes the rest) to one framer; the rewritten bytes and notes. */
function frame(stream: Buffer, sizes: number[]): { out: Buffer; refused: [number, number][] } {
  const refused: [number, number][] = [];
  const f = new AckFramer((id, code) => refused.push([id, code]));
  const out: Buffer[] = [];
  let at = 0;
  for (const n of [...sizes, stream.length]) {
    if (at >= stream.length) break;
    const chunk = Buffer.from(stream.subarray(at, Math.min(stream.length, at + n)));
    f.feed(chunk);
    out.push(chunk);
    at += chunk.length;
  }
  return { out: Buffer.concat(out), refused };
}

/** What mqtt-packet's MQTT 5 parser reads from `bytes`: the packets, or the error it stopped at. */
function parse(bytes: Buffer): { packets: { cmd: string; messageId?: number; reasonCode?: number }[]; error?: string } {
  const p = mqttPacket.parser({ protocolVersion: 5 });
  const packets: { cmd: string; messageId?: number; reasonCode?: number }[] = [];
  let error: string | undefined;
  p.on('packet', (x) => packets.push(x as { cmd: string }));
  p.on('error', (e: Error) => {
    error ??= e.message;
  });
  p.parse(bytes);
  return { packets, ...(error === undefined ? {} : { error }) };
}

s('a PUBACK 0x95 is noted and rewritten to 0x80; mqtt-packet then reads the packets after it', () => {
  const stream = Buffer.concat([ack(7, 0x95), ack(8, 0), ack(9, 0x87, 0x40, true), ack(10, 0x10)]);
  assert.match(String(parse(Buffer.from(stream)).error), 'Invalid puback reason code', 'without the framer');
  const { out, refused } = frame(stream, []);
  assert.equal(refused, [[7, 0x95]]);
  const { packets, error } = parse(out);
  assert.is(error, undefined);
  assert.equal(
    packets.map((x) => [x.messageId, x.reasonCode]),
    [
      [7, STAND_IN],
      [8, 0],
      [9, 0x87],
      [10, 0x10],
    ],
  );
});

s('a PUBREC too; a 3.1.1 PUBACK (no code) and the codes mqtt-packet takes are left as they are', () => {
  const ok = [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
  const stream = Buffer.concat([
    packet(0x40, [0x12, 0x34]),
    ...ok.map((c, i) => ack(100 + i, c)),
    ack(0xfffe, 0x95, 0x50),
    ack(1, 0x01, 0x40),
  ]);
  const { out, refused } = frame(stream, []);
  assert.equal(refused, [
    [0xfffe, 0x95],
    [1, 0x01],
  ]);
  assert.equal(
    out.subarray(0, stream.length - 10),
    stream.subarray(0, stream.length - 10),
    'only the last two changed',
  );
  assert.is(parse(out).error, undefined);
});

s('payloads are skipped by their length (remaining lengths of 1 to 4 bytes), whatever bytes they hold', () => {
  // 10 B: a 1-byte length; 200 B: 2; 20,000 B: 3; 2,100,000 B: 4 bytes.
  const sizes = [10, 200, 20_000, 2_100_000];
  const parts: Buffer[] = [];
  sizes.forEach((n, i) => {
    parts.push(publish(i + 1, n), ack(i + 1, 0x95));
  });
  for (const [n, bytes] of [
    [127, 1],
    [128, 2],
    [16_383, 2],
    [16_384, 3],
    [2_097_151, 3],
    [2_097_152, 4],
  ] as const)
    assert.is(varint(n).length, bytes, `${n}`);
  const stream = Buffer.concat(parts);
  const { out, refused } = frame(stream, []);
  assert.equal(refused, [
    [1, 0x95],
    [2, 0x95],
    [3, 0x95],
    [4, 0x95],
  ]);
  const { packets, error } = parse(out);
  assert.is(error, undefined);
  assert.equal(
    packets.map((x) => x.cmd),
    ['publish', 'puback', 'publish', 'puback', 'publish', 'puback', 'publish', 'puback'],
  );
});

s('chunks split anywhere (every byte alone, and random splits) give the same bytes and notes', () => {
  const stream = Buffer.concat([
    publish(1, 300),
    ack(2, 0x95),
    Buffer.from([0xc0, 0x00]), // PINGREQ-like empty packet (remaining length 0)
    ack(3, 0x95, 0x50, true),
    publish(4, 20_000),
    ack(5, 0),
    ack(6, 0x95),
  ]);
  const whole = frame(stream, []);
  assert.equal(whole.refused, [
    [2, 0x95],
    [3, 0x95],
    [6, 0x95],
  ]);
  assert.equal(frame(stream, Array(stream.length).fill(1)).out, whole.out, 'a byte at a time');
  assert.equal(frame(stream, Array(stream.length).fill(1)).refused, whole.refused);
  const r = new Random(11);
  for (let round = 0; round < 200; round++) {
    const cuts: number[] = [];
    for (let left = stream.length; left > 0; ) {
      const n = 1 + Math.floor(r.next() * Math.min(left, round % 2 === 0 ? 8 : 4000));
      cuts.push(n);
      left -= n;
    }
    const split = frame(stream, cuts);
    assert.equal(split.refused, whole.refused, `round ${round}`);
    assert.ok(split.out.equals(whole.out), `round ${round}`);
  }
  assert.is(parse(whole.out).error, undefined);
});

s.run();
