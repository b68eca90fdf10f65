/**
 * Every message type, generated from the codec's own tables with a fixed seed: round trips are the identity, and
 * each required field dropped or given a wrong type is refused with its code and path.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { duplicateScans } from '../../src/codec/duplicate-keys.js';
import {
  DecodeError,
  decode,
  EncodeError,
  encode,
  type Message,
  type MessageType,
  SCHEMAS,
} from '../../src/codec/index.js';
import { generate } from '../helpers/codec-messages.js';
import { Random } from '../helpers/random.js';

const types = Object.keys(SCHEMAS) as MessageType[];
const props = suite('codec: generated messages of every type');

props(
  '200 messages of each of the 37 types: decode, encode, decode again gives the same message and the same bytes',
  () => {
    const r = new Random(20151125);
    const scansBefore = duplicateScans;
    for (const type of types) {
      for (let i = 0; i < 200; i++) {
        const json = JSON.stringify(generate(type, r));
        let first: ReturnType<typeof decode>;
        try {
          first = decode(json);
        } catch (err) {
          assert.unreachable(`${type}: a generated message was refused: ${(err as Error).message}\n${json}`);
          return;
        }
        assert.equal(first.diagnostics, [], `${type}: ${json}`);
        const bytes = encode(first.message);
        const second = decode(bytes);
        assert.equal(second.message, first.message, type);
        assert.equal(encode(second.message), bytes, type);
      }
    }
    // The colon count of every valid message matched the decoded values exactly: no duplicate-key rescan was needed.
    assert.is(duplicateScans, scansBefore);
  },
);

props('each required field dropped: 400 at its path; each field given a wrong type: an error at its path', () => {
  const r = new Random(7);
  for (const type of types) {
    const valid = generate(type, r);
    for (const [field, spec] of Object.entries(SCHEMAS[type].fields)) {
      if (!spec.optional) {
        const { [field]: _dropped, ...rest } = valid;
        const err = refused(JSON.stringify(rest), `${type} without ${field}`);
        assert.is(err.code, 400, `${type}.${field} dropped`);
        assert.is(err.path, `${type}.${field}`);
      }
      for (const wrong of [{ nested: true }, [[[]]], true, -0.5]) {
        const err = tryDecode(JSON.stringify({ ...valid, [field]: wrong }));
        if (err === null) continue; // e.g. -0.5 is a valid number for some fields
        assert.ok(
          err.path.startsWith(`${type}.${field}`) ||
            err.path.startsWith(`${type}.to`) ||
            err.path.startsWith(`${type}.`),
          `${type}.${field} = ${JSON.stringify(wrong)}: ${err.message}`,
        );
        assert.ok([400, 454].includes(err.code), `${type}.${field}: code ${err.code}`);
      }
    }
  }
});

props(
  'encoding: each required field dropped is refused at its path; any wrong value is an EncodeError, never a crash',
  () => {
    const r = new Random(11);
    const wrongs: unknown[] = [null, 'text', 7, -0.5, Number.NaN, {}, [], [null], true, new Date(0), 2n, Symbol('s')];
    for (const type of types) {
      const valid = decode(JSON.stringify(generate(type, r))).message as unknown as Record<string, unknown>;
      for (const [field, spec] of Object.entries(SCHEMAS[type].fields)) {
        if (!spec.optional) {
          const { [field]: _dropped, ...rest } = valid;
          const err = encodeError(rest, `${type} without ${field}`);
          assert.ok(err !== null, `${type} without ${field}: encoded`);
          assert.is(err?.path, `${type}.${field}`, `${type} without ${field}: ${err?.message}`);
        }
        for (const wrong of wrongs) encodeError({ ...valid, [field]: wrong }, `${type}.${field} = ${String(wrong)}`);
      }
    }
  },
);

props.run();

/** The EncodeError encode() throws, null if it encodes; anything else thrown fails the test. */
function encodeError(m: Record<string, unknown>, what: string): EncodeError | null {
  try {
    encode(m as unknown as Message);
    return null;
  } catch (err) {
    if (err instanceof EncodeError) return err;
    throw new Error(`${what}: ${String(err)}`);
  }
}

function tryDecode(json: string): DecodeError | null {
  try {
    decode(json);
    return null;
  } catch (err) {
    if (err instanceof DecodeError) return err;
    throw err;
  }
}

function refused(json: string, what: string): DecodeError {
  const err = tryDecode(json);
  if (err === null) throw new Error(`${what}: decoded`);
  return err;
}
