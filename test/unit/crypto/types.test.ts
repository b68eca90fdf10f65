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

s('the registry is append-only: every code is the one docs/crypto.md publishes ("Type codes")', () => {
  // Written out, not derived: two types swapped in src/crypto/types.ts would pass every other test and break every
  // foreign implementation (test/interop/python/heh_e2e.py takes the codes from the project, so it would not see it).
  const published = [
    'get_report',
    'get_periodic_report',
    'report',
    'get_energy_events',
    'get_energy_events_realtime',
    'energy_events',
    'activate',
    'accept_activation',
    'reject_activation',
    'modify_activation',
    'get_activation_capacity',
    'activation_capacity',
    'contingency_activate',
    'contingency_end',
    'load_price',
    'generation_price',
    'get_all_prices',
    'get_status_report',
    'status_report',
    'set_clock',
    'set_smart_mode',
    'get_capabilities',
    'capabilities',
    'device_capabilities',
    'response',
    'availability',
    'ext_si_xlab_led_signal',
    'balancing_reserve_bid',
    'bid_accepted',
    'market_cleared',
    'balancing_energy_bid',
    'activate_bid',
    'request_balancing',
    'balancing_activated',
    'balancing_unachievable',
    'get_load_report',
    'load_report',
  ];
  assert.equal(
    published.map((t) => [t, typeCode(t)]),
    published.map((t, i) => [t, i + 1]),
  );
  assert.is(KNOWN_TYPES.length, published.length + 1, 'a new type is appended here and in the doc');
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
