/**
 * Properties of the AMQP codecs (style guideline 13): the round trip is the identity; parsing is invariant under any
 * partitioning of the input; random and mutated bytes give a value or a FrameError, never a RangeError or TypeError,
 * never a hang, never an allocation beyond frame_max.
 *
 *   FUZZ_ITERATIONS=1000000 (npm run fuzz) runs a long mutation fuzz; FUZZ_SEED=<n> replays a reported failure.
 */

import { Worker } from 'node:worker_threads';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FrameError } from '../../src/amqp/errors.js';
import { FRAME_HEADER, FRAME_METHOD, FrameReader, HEADER_SLACK } from '../../src/amqp/frame.js';
import { decodeMethod } from '../../src/amqp/methods.js';
import { readContentHeader } from '../../src/amqp/properties.js';
import { METHODS } from '../../src/amqp/spec.js';
import { decodeTable, encodeTable } from '../../src/amqp/table.js';
import { equalExact, returnsOrThrows } from '../helpers/codec-assert.js';
import {
  bodyFrame,
  encodeHeader,
  encodeMethod,
  frame,
  frameSummary,
  heartbeatFrame,
  methodFrame,
  randomArgs,
  randomCuts,
  randomProperties,
  randomTable,
  readFrames,
  splitAt,
} from '../helpers/codec-gen.js';
import { fuzzIterations, fuzzSeed, Random } from '../helpers/random.js';
import type { FuzzMessage, FuzzRequest } from './amqp-fuzz.worker.js';

const SEED = fuzzSeed(0x5eed);
const ONLY_FRAME_ERRORS = [FrameError] as const;

// ---- round trips ---------------------------------------------------------------------------------------------------

const trips = suite('property: the round trip is the identity');

trips('2,000 random methods of the whole spec', () => {
  const rng = new Random(SEED);
  for (let i = 0; i < 2000; i++) {
    const m = rng.pick(METHODS);
    const { args, expected } = randomArgs(rng, m);
    const decoded = decodeMethod(encodeMethod(m.name, args));
    equalExact({ ...decoded, args: { ...decoded.args } }, expected, `seed ${SEED} #${i} ${m.name}`);
  }
});

trips('600 random field tables', () => {
  const rng = new Random(SEED + 1);
  for (let i = 0; i < 600; i++) {
    const { table, expected } = randomTable(rng, 4);
    equalExact(decodeTable(encodeTable(table)), expected, `seed ${SEED + 1} #${i}`);
  }
});

trips('600 random content headers', () => {
  const rng = new Random(SEED + 2);
  for (let i = 0; i < 600; i++) {
    const { props, expected } = randomProperties(rng, rng.int(1 << 14));
    const bodySize = rng.safeInt();
    equalExact(
      readContentHeader(encodeHeader(bodySize, props)),
      { classId: 60, bodySize, properties: expected },
      `seed ${SEED + 2} #${i}`,
    );
  }
});

// ---- partitioning --------------------------------------------------------------------------------------------------

const parts = suite('property: parsing is invariant under partitioning');

/** A random stream of 1-12 frames of every kind, and the frames it holds. */
function randomStream(rng: Random): Buffer {
  const out: Buffer[] = [];
  const n = 1 + rng.int(12);
  for (let i = 0; i < n; i++) {
    switch (rng.int(4)) {
      case 0: {
        const m = rng.pick(METHODS);
        out.push(methodFrame(rng.range(0, 65535), m.name, randomArgs(rng, m).args));
        break;
      }
      case 1:
        out.push(
          frame(
            FRAME_HEADER,
            rng.range(1, 65535),
            encodeHeader(rng.safeInt(), randomProperties(rng, rng.int(1 << 14)).props),
          ),
        );
        break;
      case 2:
        out.push(bodyFrame(rng.range(1, 65535), rng.bytes(rng.bool(0.95) ? rng.int(64) : rng.int(5000))));
        break;
      default:
        out.push(heartbeatFrame());
    }
  }
  return Buffer.concat(out);
}

parts('150 random streams, each fed whole and in 8 random partitions', () => {
  const rng = new Random(SEED + 3);
  for (let i = 0; i < 150; i++) {
    const stream = randomStream(rng);
    const whole = readFrames([stream]);
    const expected = frameSummary(whole);
    for (const f of whole) {
      if (f.type === FRAME_METHOD) decodeMethod(f.payload);
      if (f.type === FRAME_HEADER) readContentHeader(f.payload);
    }
    for (let k = 0; k < 8; k++) {
      const cuts = randomCuts(rng, stream.length, k === 0 ? Math.min(stream.length, 300) : 1 + rng.int(20));
      assert.equal(
        frameSummary(readFrames(splitAt(stream, cuts))),
        expected,
        `seed ${SEED + 3} #${i}: cuts ${cuts.join(',')}`,
      );
    }
  }
});

// ---- random bytes --------------------------------------------------------------------------------------------------

const noise = suite('property: random bytes give a value or a FrameError');

noise('2,000 random buffers through every decoder and the FrameReader', () => {
  const rng = new Random(SEED + 4);
  const outcomes = { ok: 0, error: 0 };
  const count = (r: { ok: boolean }): void => {
    outcomes[r.ok ? 'ok' : 'error']++;
  };
  for (let i = 0; i < 2000; i++) {
    const bytes = rng.bytes(rng.int(rng.bool(0.8) ? 40 : 400));
    const what = `seed ${SEED + 4} #${i} ${bytes.subarray(0, 64).toString('hex')}`;
    count(returnsOrThrows(() => decodeMethod(bytes), ONLY_FRAME_ERRORS, `decodeMethod ${what}`));
    count(returnsOrThrows(() => readContentHeader(bytes), ONLY_FRAME_ERRORS, `readContentHeader ${what}`));
    count(returnsOrThrows(() => decodeTable(bytes), ONLY_FRAME_ERRORS, `decodeTable ${what}`));
    // With a plausible method id in front, random arguments reach the argument decoders.
    const m = rng.pick(METHODS);
    const withId = Buffer.concat([Buffer.from([0, m.classId, 0, m.methodId]), bytes]);
    count(returnsOrThrows(() => decodeMethod(withId), ONLY_FRAME_ERRORS, `decodeMethod(${m.name}) ${what}`));
    const reader = new FrameReader(() => undefined, 4096);
    count(returnsOrThrows(() => reader.push(bytes), ONLY_FRAME_ERRORS, `FrameReader ${what}`));
  }
  assert.ok(outcomes.ok > 100 && outcomes.error > 1000, JSON.stringify(outcomes));
});

// ---- mutation fuzz -------------------------------------------------------------------------------------------------

const fuzz = suite('property: mutation fuzz');

/** Silence longer than this between progress reports (every 2,000 iterations) means a hang. */
const STALL_MS = 20_000;

fuzz(
  `mutated frames and tables (FUZZ_ITERATIONS=${fuzzIterations()}, seed ${SEED}): a value or a FrameError, never a hang`,
  async () => {
    const request: FuzzRequest = { iterations: fuzzIterations(), seed: SEED, frameMax: 131072 };
    const worker = new Worker(new URL('./amqp-fuzz.worker.js', import.meta.url), {
      workerData: request,
      // A decoder that allocated from a hostile length would die here rather than take the machine with it.
      resourceLimits: { maxOldGenerationSizeMb: 512 },
    });
    let lastProgress = 0;
    const result = await new Promise<Extract<FuzzMessage, { type: 'done' }>>((resolve, reject) => {
      let timer = setTimeout(stalled, STALL_MS);
      function stalled(): void {
        void worker.terminate();
        reject(
          new Error(
            `the fuzzer made no progress for ${STALL_MS} ms after iteration ${lastProgress} (seed ${SEED}): a decoder hangs`,
          ),
        );
      }
      worker.on('message', (msg: FuzzMessage) => {
        clearTimeout(timer);
        if (msg.type === 'progress') {
          lastProgress = msg.done;
          timer = setTimeout(stalled, STALL_MS);
          return;
        }
        resolve(msg);
      });
      worker.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      worker.on('exit', (code) => {
        clearTimeout(timer);
        if (code !== 0) reject(new Error(`the fuzz worker exited with ${code}`));
      });
    });
    await worker.terminate();
    const { stats, failures } = result;
    if (failures.length > 0) {
      assert.unreachable(
        `${failures.length} failure(s), seed ${SEED}:\n` +
          failures.map((f) => `#${f.iteration} ${f.stage}\n  input ${f.input}\n  ${f.error}`).join('\n\n'),
      );
    }
    assert.is(stats.iterations, request.iterations, 'iterations that ran their checks to the end');
    // The fuzzer must have exercised both outcomes and the re-encoding, or it is not testing anything.
    assert.ok(stats.decoded > request.iterations / 10, `decoded ${stats.decoded}`);
    assert.ok(stats.frameErrors > request.iterations / 10, `frame errors ${stats.frameErrors}`);
    assert.ok(stats.reencoded > request.iterations / 20, `re-encoded ${stats.reencoded}`);
    // A content header may exceed frame_max by HEADER_SLACK (frame.ts), nothing else may.
    assert.ok(
      stats.maxAllocation <= request.frameMax + HEADER_SLACK,
      `largest allocation ${stats.maxAllocation} > frame_max + HEADER_SLACK`,
    );
    // The bound above proves nothing unless the spy saw the large allocations that lengths near frame_max cause.
    assert.ok(
      stats.maxAllocation > request.frameMax / 4,
      `the allocation spy saw at most ${stats.maxAllocation} bytes: is it measuring anything?`,
    );
    for (const code of ['FRAME_ERROR', 'SYNTAX_ERROR', 'NOT_IMPLEMENTED'])
      assert.ok((stats.errorCodes[code] ?? 0) > 0, `saw ${code}`);
    assert.ok(
      Object.keys(stats.errorCodes).every((c) => ['FRAME_ERROR', 'SYNTAX_ERROR', 'NOT_IMPLEMENTED'].includes(c)),
      JSON.stringify(stats.errorCodes),
    );
  },
);

trips.run();
parts.run();
noise.run();
fuzz.run();
