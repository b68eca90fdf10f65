/**
 * The cases of the hub fuzz campaign (test/helpers/hub-fuzz.ts) without a broker: a seed gives the same cases, each
 * kind of mutation is made, and what the helper says of a body is what the codec does with it.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { decode } from '../../src/codec/index.js';
import { type FuzzCase, MUTATIONS, nextCase, seededUuid, verdict } from '../helpers/hub-fuzz.js';
import { Random } from '../helpers/random.js';

const test = suite('hub fuzz cases');
const names = { sealed: 'vpp-sealed', clear: 'vpp-clear' };

function campaign(seed: number, n: number): FuzzCase[] {
  const r = new Random(seed);
  const out: FuzzCase[] = [];
  let previous: FuzzCase | undefined;
  for (let i = 0; i < n; i++) {
    const c = nextCase(r, names, previous);
    out.push(c);
    if (c.mutation !== 'replay') previous = c;
  }
  return out;
}

/** A case as bytes and strings, the AMQP timestamp left out (it is the time of the run). */
const shape = (c: FuzzCase): string => {
  const { timestamp: _t, ...props } = c.properties;
  return JSON.stringify([c.mutation, c.peer, c.seal, c.envelope, c.routingKey, props, c.body.toString('base64')]);
};

test('the same seed gives the same 2,000 cases, byte for byte; another seed does not', () => {
  const a = campaign(42, 2000).map(shape);
  assert.equal(campaign(42, 2000).map(shape), a);
  assert.not.equal(campaign(43, 2000).map(shape), a);
});

test('every kind of mutation is made, clear and sealed, through both peers', () => {
  const cases = campaign(7, 2000);
  for (const m of MUTATIONS)
    assert.ok(
      cases.some((c) => c.mutation === m),
      m,
    );
  assert.ok(cases.some((c) => c.peer === 'sealed' && c.seal !== undefined));
  assert.ok(cases.some((c) => c.peer === 'clear' && c.seal !== undefined)); // sealed via the other peer
  assert.ok(cases.some((c) => c.peer === 'sealed' && c.seal === undefined)); // clear text from the peer with keys
  assert.ok(cases.some((c) => c.body.length > 1024 * 1024));
});

test('valid cases decode, with the msg_id a response must carry; the verdict is what the codec says', () => {
  const cases = campaign(11, 2000);
  let refused = 0;
  for (const c of cases) {
    if (c.mutation === 'valid') {
      assert.ok(c.codec.accepted, `a valid case was refused: ${c.body.toString().slice(0, 200)}`);
      const m = decode(c.body).message as { msg: string; msg_id?: unknown };
      assert.is(c.codec.type, m.msg);
      assert.is(c.codec.answerId, m.msg !== 'response' && typeof m.msg_id === 'string' ? m.msg_id : undefined);
    }
    assert.equal(verdict(c.body), c.codec);
    if (!c.codec.accepted && ['structure', 'type', 'bytes'].includes(c.mutation)) refused++;
  }
  // Most mutated bodies are refused by the codec (some mutations leave a valid message: an optional field dropped).
  const mutated = cases.filter((c) => ['structure', 'type', 'bytes'].includes(c.mutation)).length;
  assert.ok(refused > mutated * 0.8, `${refused} of ${mutated} refused`);
});

test('seeded UUIDs are version 4, distinct, and the same for a seed', () => {
  const r = new Random(1);
  const ids = Array.from({ length: 10_000 }, () => seededUuid(r));
  for (const id of ids.slice(0, 100))
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.is(new Set(ids).size, ids.length);
  assert.is(seededUuid(new Random(1)), ids[0]);
});

test.run();
