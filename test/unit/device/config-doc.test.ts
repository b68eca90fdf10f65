/**
 * docs/hub.md's "hub.json" table names every key the parser takes, and no other: the parser's refusal of an unknown
 * key lists the keys it takes at that place, asked of each object of a valid config (each meter and actuator kind).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, exampleConfig, parseConfig } from '../../../src/device/config/index.js';
import { repoRoot } from '../../helpers/oracle.js';

type Obj = Record<string, unknown>;
type Config = Obj & { broker: Obj; peers: Obj[]; devices: Obj[] };
/** Sets `o[key]` to `value` (in an array of one with `inArray`) and returns `value`. */
function put(o: Obj, key: string, value: Obj, inArray = false): Obj {
  o[key] = inArray ? [value] : value;
  return value;
}
const device = (c: Config): Obj => c.devices[0] as Obj;
const OBJECTS: [string, (c: Config) => Obj][] = [
  ['', (c) => c],
  ['broker.', (c) => c.broker],
  ['broker.tls.', (c) => put(c.broker, 'tls', {})],
  ['peers[].', (c) => c.peers[0] as Obj],
  ['devices[].', device],
  ['devices[].signals[].', (c) => put(device(c), 'signals', { name: 'p' }, true)],
  ...['simulated', 'csv', 'command', 'file'].map((kind): [string, (c: Config) => Obj] => [
    'devices[].meter.',
    (c) => put(device(c), 'meter', { kind }),
  ]),
  ...['simulated', 'command', 'file'].map((kind): [string, (c: Config) => Obj] => [
    'devices[].actuator.',
    (c) => put(device(c), 'actuator', { kind }),
  ]),
  ['crypto.', (c) => put(c, 'crypto', {})],
  ['budget.', (c) => put(c, 'budget', {})],
  ['log.', (c) => put(c, 'log', {})],
];

function taken(prefix: string, at: (c: Config) => Obj): string[] {
  const config = exampleConfig('/tmp/unused') as Config;
  at(config)['zzz'] = 1;
  try {
    parseConfig(config);
  } catch (err) {
    const keys = err instanceof ConfigError ? /^one of the keys (.+)$/.exec(err.expected)?.[1] : undefined;
    if (keys !== undefined) return keys.split(', ').map((k) => `${prefix}${k}`);
    throw err;
  }
  throw new Error(`an unknown key was taken at ${prefix}`);
}

const test = suite('docs/hub.md: hub.json');

test('every key the parser takes is in the table, and every key in the table is taken', () => {
  const doc = readFileSync(path.join(repoRoot(), 'docs', 'hub.md'), 'utf8');
  const section = doc.slice(doc.indexOf('\n## hub.json\n'), doc.indexOf('\n## ', doc.indexOf('\n## hub.json\n') + 1));
  const rows = [...section.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1] as string);
  const keys = new Set(OBJECTS.flatMap(([prefix, at]) => taken(prefix, at)));
  assert.ok(keys.size > 50 && rows.length > 50, `${keys.size} keys, ${rows.length} rows`);
  for (const k of keys)
    assert.ok(
      rows.some((r) => r === k || r.startsWith(`${k}.`) || r.startsWith(`${k}[]`)),
      k,
    );
  assert.equal(
    rows.filter((r) => !keys.has(r)),
    [],
    'rows naming keys hub.json does not take',
  );
});

test.run();
