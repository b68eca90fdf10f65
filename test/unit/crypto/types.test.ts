/** The envelope's type codes: a frozen wire registry that covers every message type the codec knows. */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { SCHEMAS } from '../../../src/codec/index.js';
import { CryptoError, KEY_UPDATE, KNOWN_TYPES, typeCode, typeName } from '../../../src/crypto/index.js';

const s = suite('envelope type codes');

s('every codec message type has a code, codes are unique and map back', () => {
  for (const t of Object.keys(SCHEMAS)) assert.is(typeName(typeCode(t)), t, t);
  const codes = KNOWN_TYPES.map(typeCode);
  assert.is(new Set(codes).size, codes.length);
  assert.ok(codes.every((c) => c > 0 && c <= 0xffff));
});

s('the registry is append-only: the first codes never move', () => {
  assert.equal(
    [
      typeCode('get_report'),
      typeCode('report'),
      typeCode('activate'),
      typeCode('response'),
      typeCode('load_report'),
      typeCode(KEY_UPDATE),
    ],
    [1, 3, 7, 25, 37, 0xff00],
  );
  assert.is(typeName(0), undefined);
  assert.is(typeName(0xfffe), undefined);
  assert.throws(
    () => typeCode('launch_rockets'),
    (e: unknown) => e instanceof CryptoError && e.code === 'UNKNOWN_TYPE',
  );
});

s.run();
