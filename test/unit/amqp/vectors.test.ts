/**
 * The annotated byte vectors of test/vectors/amqp (provenance in its README), each run as parse, generate, mirror and
 * split by checkVector, plus each capture replayed as one conversation in random partitions.
 */

import { readdirSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FRAME_HEADER, FRAME_METHOD } from '../../../src/amqp/frame.js';
import { decodeMethod } from '../../../src/amqp/methods.js';
import { readContentHeader } from '../../../src/amqp/properties.js';
import { METHODS } from '../../../src/amqp/spec.js';
import { frameSummary, randomCuts, readFrames, splitAt } from '../../helpers/codec-gen.js';
import { Random } from '../../helpers/random.js';
import { checkVector, hexBytes, loadVectors, VECTOR_DIR } from '../../helpers/vectors.js';

const FILES = ['rabbitmq-3.10.json', 'amqplib-2.3.1.json', 'hand-written.json'];

const files = suite('vectors: files');

files('every vector file in the directory is run here and names its source', () => {
  const onDisk = readdirSync(VECTOR_DIR)
    .filter((f) => f.endsWith('.json'))
    .sort();
  assert.equal(onDisk, [...FILES].sort());
  for (const f of FILES) {
    const v = loadVectors(f);
    assert.ok(v.source.length > 20, `${f}: source`);
    assert.ok(v.vectors.length > 0, `${f}: vectors`);
  }
});

files('the RabbitMQ capture covers the frames a client must understand', () => {
  const names = loadVectors('rabbitmq-3.10.json').vectors.map((v) => v.name.replace(/ \(.*$/, ''));
  for (const n of [
    'connection.start',
    'connection.tune',
    'connection.open-ok',
    'channel.open-ok',
    'confirm.select-ok',
    'queue.declare-ok',
    'basic.ack',
    'basic.return',
    'basic.get-ok',
    'basic.get-empty',
    'basic.qos-ok',
    'basic.consume-ok',
    'basic.deliver',
    'header',
    'body',
    'basic.cancel-ok',
    'channel.close',
    'connection.close-ok',
  ])
    assert.ok(names.includes(n), n);
});

files('the amqplib vectors hold one frame of every method and tables of every tag', () => {
  const v = loadVectors('amqplib-2.3.1.json').vectors;
  const methods = v
    .filter((x) => x.kind === 'method')
    .map((x) => (x.expect as { name: string }).name)
    .sort();
  assert.equal(methods, METHODS.map((m) => m.name).sort());
  // The annotation names the tag of every value; each of the 17 must appear in some table vector.
  for (const tag of 'tbBsuIilfdDSxATFV')
    assert.ok(
      v.some((x) => x.kind === 'table' && x.bytes.some((l) => l.includes(`# `) && l.includes(`'${tag}'`))),
      tag,
    );
});

files('the hand-written vectors have an error for every class of hostile input', () => {
  const v = loadVectors('hand-written.json').vectors;
  const errors = v.filter((x) => x.error !== undefined);
  assert.ok(errors.length >= 20);
  for (const kind of ['stream', 'method', 'header', 'table'])
    assert.ok(
      errors.some((x) => x.kind === kind),
      kind,
    );
  for (const code of ['FRAME_ERROR', 'SYNTAX_ERROR', 'NOT_IMPLEMENTED'])
    assert.ok(
      errors.some((x) => x.error?.code === code),
      code,
    );
});

for (const file of FILES) {
  const s = suite(`vectors: ${file}`);
  for (const v of loadVectors(file).vectors) {
    s(
      `${v.name}: ${v.error === undefined ? 'parse, generate, mirror, split' : `${v.error.class} ${v.error.code}, whole and split`}`,
      () => checkVector(v),
    );
  }
  s.run();
}

const conversation = suite('vectors: the RabbitMQ capture as one byte stream');

conversation('the captured conversation reads identically in any partition', () => {
  const vectors = loadVectors('rabbitmq-3.10.json').vectors;
  const stream = Buffer.concat(vectors.map((v) => hexBytes(v.bytes)));
  const whole = readFrames([stream]);
  assert.is(whole.length, vectors.length);
  for (const f of whole) {
    if (f.type === FRAME_METHOD) decodeMethod(f.payload);
    if (f.type === FRAME_HEADER) readContentHeader(f.payload);
  }
  const expected = frameSummary(whole);
  const rng = new Random(0xc0ffee);
  for (let i = 0; i < 150; i++) {
    const cuts = randomCuts(rng, stream.length, 1 + rng.int(40));
    assert.equal(frameSummary(readFrames(splitAt(stream, cuts))), expected, `cuts ${cuts.join(',')}`);
  }
  assert.equal(
    frameSummary(
      readFrames(
        splitAt(
          stream,
          Array.from({ length: stream.length }, (_, i) => i),
        ),
      ),
    ),
    expected,
    'byte by byte',
  );
});

files.run();
conversation.run();
