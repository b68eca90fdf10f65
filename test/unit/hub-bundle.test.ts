/**
 * dist/hub.js, the AMQP hub, holds not a byte of MQTT.js (issue 16, item 5). The layers test keeps src/device from
 * importing src/mqtt, but src/bin may (hub-mqtt.ts does), so this test bundles the entries the way build/bundle.ts
 * does, in memory, and reads esbuild's metafile: no input of hub.js may come from src/mqtt or from a package of
 * MQTT.js's dependency closure (from package-lock.json), while hub-mqtt.js must have both, which shows that the check
 * sees them when they are there.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BUNDLES, bundleCode } from '../../build/bundle.js';
import { repoRoot } from '../helpers/oracle.js';

/** `mqtt` and every package it pulls in, by package-lock.json. */
function mqttClosure(): Set<string> {
  const lock = JSON.parse(readFileSync(path.join(repoRoot(), 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dependencies?: Record<string, string> }>;
  };
  const seen = new Set<string>();
  const todo = ['mqtt'];
  for (let name = todo.pop(); name !== undefined; name = todo.pop()) {
    if (seen.has(name)) continue;
    seen.add(name);
    todo.push(...Object.keys(lock.packages[`node_modules/${name}`]?.dependencies ?? {}));
  }
  return seen;
}

/** The inputs of a bundle that belong to MQTT: files of src/mqtt, and files of the packages in `closure`. */
async function mqttInputs(out: string, closure: Set<string>): Promise<string[]> {
  const entry = BUNDLES[out];
  if (entry === undefined) throw new Error(`build/bundle.ts has no ${out}`);
  const { metafile } = await bundleCode(entry, path.join(repoRoot(), out));
  return Object.keys(metafile.inputs).filter((input) => {
    const pkg = /node_modules\/(@[^/]+\/[^/]+|[^/]+)/.exec(input)?.[1];
    return pkg !== undefined ? closure.has(pkg) : /(^|\/)src\/mqtt\//.test(input);
  });
}

const s = suite('hub bundle');

s('dist/hub.js holds no file of src/mqtt or of MQTT.js and its dependencies; dist/hub-mqtt.js holds both', async () => {
  const closure = mqttClosure();
  assert.ok(closure.has('mqtt-packet'), 'the lock file lists MQTT.js with its dependencies');
  assert.equal(await mqttInputs('dist/hub.js', closure), []);
  const inMqttHub = await mqttInputs('dist/hub-mqtt.js', closure);
  assert.ok(
    inMqttHub.some((i) => i.includes('node_modules/mqtt/')),
    'hub-mqtt.js bundles MQTT.js',
  );
  assert.ok(
    inMqttHub.some((i) => /(^|\/)src\/mqtt\//.test(i)),
    'hub-mqtt.js bundles src/mqtt',
  );
});

s('the hubs leave out the sharing of shards among instances (a hub is one process); the CLI keeps it', async () => {
  const inputs = async (out: string): Promise<string[]> => {
    const entry = BUNDLES[out] as string;
    const { metafile } = await bundleCode(entry, path.join(repoRoot(), out));
    return Object.keys(metafile.inputs);
  };
  const instances = (files: string[]) =>
    files.filter((f) => /src\/bus\/amqp-(instances|shards|ledger|instances-absent)\.ts$/.test(f));
  for (const hub of ['dist/hub.js', 'dist/hub-mqtt.js']) {
    assert.equal(instances(await inputs(hub)), ['src/bus/amqp-instances-absent.ts'], hub);
  }
  assert.equal(instances(await inputs('dist/ebadge.js')).sort(), [
    'src/bus/amqp-instances.ts',
    'src/bus/amqp-ledger.ts',
    'src/bus/amqp-shards.ts',
  ]);
});

s(
  '--version runs the entry alone; the rest is the hub, loaded by its import() and run from the same file',
  async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hub-bundle-'));
    try {
      for (const out of ['dist/hub.js', 'dist/hub-mqtt.js']) {
        const file = path.join(dir, path.basename(out));
        const { code } = await bundleCode(BUNDLES[out] as string, file);
        writeFileSync(file, code);
        // The entry is everything before the function that holds the hub: the version line, the import() and its
        // error handler, none of the hub's modules.
        const entry = code.slice(0, code.indexOf('function ebadgeLoadLazyModule('));
        assert.ok(entry.length > 0 && entry.length < 1_500, `${out}: the entry is ${entry.length} B`);
        assert.not.match(entry, /node:|require\(/, `${out}: the entry loads no module`);
        const version = spawnSync(process.execPath, [file, '--version'], { encoding: 'utf8' });
        assert.match(version.stdout, /^ebadge-hub \d+\.\d+\.\d+ \(node v/, out);
        const run = spawnSync(process.execPath, [file, '--config', path.join(dir, 'missing.json')], {
          encoding: 'utf8',
        });
        assert.is(run.status, 78, `${out}: the hub ran and refused the missing config (${run.stderr})`);
        assert.match(run.stderr, /missing\.json: \$: expected a readable JSON file, found no file/);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

s.run();
