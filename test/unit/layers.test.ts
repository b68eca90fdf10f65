/**
 * Dependencies point down. Each folder of src/ may import only the folders listed for it below, so the AMQP client,
 * the codec and the crypto stay usable alone, the bus stays free of any one transport above its transport modules,
 * and the hub cannot reach into the CLI or the AMQP client. The test reads the import statements of every source file
 * (type-only imports count too: they couple the code as much).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { repoRoot } from '../helpers/oracle.js';

const src = path.join(repoRoot(), 'src');

/** What each layer may import, besides itself and node: built-ins; the npm packages are listed too. */
const ALLOWED: Record<string, readonly string[]> = {
  core: [],
  store: ['core'],
  amqp: ['core'],
  codec: ['core'],
  crypto: ['core', 'store', '@noble'],
  bus: ['core', 'codec', 'crypto', 'amqp'],
  // The MQTT transport is a layer above the bus: the AMQP hub (device, dist/hub.js) cannot reach MQTT.js.
  mqtt: ['core', 'bus'],
  provision: ['core', 'codec'],
  cli: ['core', 'store', 'codec', 'crypto', 'bus', 'amqp', 'provision'],
  device: ['core', 'store', 'codec', 'crypto', 'bus'],
  bin: ['core', 'cli', 'device', 'mqtt'],
};

/** Inside the bus, only the modules that implement a transport may name one. */
const TRANSPORT_MODULES =
  /^bus\/(amqp-transport|amqp-republish|amqp-shards|amqp-ledger|amqp-instances|transports\/amqp[^/]*|amqp\/.*)\.ts$/;

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const f = path.join(dir, name);
    return statSync(f).isDirectory() ? files(f) : f.endsWith('.ts') ? [f] : [];
  });
}

/** The layer of a file: its first folder under src/ (src/cli.ts belongs to cli). */
function layerOf(file: string): string {
  const rel = path.relative(src, file);
  return /^cli\.(ts|js)$/.test(rel) ? 'cli' : (rel.split(path.sep)[0] as string);
}

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [
    ...text.matchAll(/^\s*(?:import|export)\s[^;]*?\sfrom\s+'([^']+)'/gms),
    ...text.matchAll(/import\('([^']+)'\)/g),
  ].map((m) => m[1] as string);
}

const test = suite('layers');

test('every import in src/ points to a layer its layer may use', () => {
  const all = files(src);
  assert.ok(all.length > 40, `${all.length} source files`);
  const wrong: string[] = [];
  for (const file of all) {
    const layer = layerOf(file);
    const allowed = ALLOWED[layer];
    if (allowed === undefined) {
      wrong.push(`${path.relative(src, file)}: the folder ${layer} has no rule in test/unit/layers.test.ts`);
      continue;
    }
    for (const spec of imports(file)) {
      let target: string;
      if (spec.startsWith('.')) target = layerOf(path.resolve(path.dirname(file), spec));
      else if (spec.startsWith('node:')) continue;
      else target = spec.split('/')[0] as string;
      if (target === layer) continue;
      if (!allowed.includes(target)) wrong.push(`${path.relative(src, file)} imports ${spec} (${layer} -> ${target})`);
      else if (layer === 'bus' && target === 'amqp' && !TRANSPORT_MODULES.test(path.relative(src, file)))
        wrong.push(`${path.relative(src, file)} imports ${spec}: only a transport module of the bus may name AMQP`);
    }
  }
  assert.equal(wrong, []);
});

test.run();
