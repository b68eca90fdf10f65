/**
 * The hub's configuration and the keyring files under hostile and careless edits, drawn from a seeded PRNG: a valid
 * hub.json, keyring and private key file, each changed at a random place (a value replaced by another JSON value of
 * any kind, deep nesting, a huge number or string, `__proto__` and `constructor` keys, a key removed or added), and
 * hub.json's text cut, flipped or spliced. Each must be read into a value or refused with the project's typed
 * error (an EbadgeError with its code, a message naming where), never another exception; and a `__proto__` key
 * pollutes no prototype.
 * FUZZ_ITERATIONS=n runs n cases of each (default 400), FUZZ_SEED=s replays one.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EbadgeError } from '../../src/core/errors.js';
import { generateIdentity, Keyring, nodeBackend } from '../../src/crypto/index.js';
import { exampleConfig, loadConfig, parseConfig } from '../../src/device/config/index.js';
import { Random } from '../helpers/random.js';

const cases = Number(process.env['FUZZ_ITERATIONS'] ?? 400);
const firstSeed = Number(process.env['FUZZ_SEED'] ?? 20_261_204);

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function hostile(rnd: Random, depth = 0): Json {
  switch (rnd.int(14)) {
    case 0:
      return null;
    case 1:
      return rnd.bool();
    case 2:
      return [0, -0, -1, 1e308, -1e308, 2 ** 53 + 1, 0.5, 4294967296, 1e-320][rnd.int(9)] as number;
    case 3:
      return rnd.range(-10, 100_000);
    case 4:
      return '';
    case 5:
      return 'x'.repeat(rnd.int(2) === 0 ? 100_000 : rnd.range(1, 40));
    case 6:
      return ['../../etc/passwd', 'amqp://u:p@127.0.0.1:1', '\u0000', '\ud800', 'é', '1970-01-01T00:00:00Z', '-1'][
        rnd.int(7)
      ] as string;
    case 7: {
      // Deep, but within what JSON.stringify itself can write on every Node (the text test nests far deeper).
      let v: Json = [];
      for (let i = rnd.range(1, 200); i > 0; i--) v = [v];
      return v;
    }
    case 8:
      return depth > 2
        ? {}
        : { [['__proto__', 'constructor', 'prototype', 'a'][rnd.int(4)] as string]: hostile(rnd, depth + 1) };
    case 9:
      return depth > 2 ? [] : Array.from({ length: rnd.range(0, 4) }, () => hostile(rnd, depth + 1));
    default:
      return rnd.range(0, 3);
  }
}

/** Every place in `v` a value sits, down to 20 levels: [parent, key] pairs. */
function places(v: Json): [Json[] | { [k: string]: Json }, string | number][] {
  const out: [Json[] | { [k: string]: Json }, string | number][] = [];
  const todo: [Json, number][] = [[v, 0]];
  for (let next = todo.pop(); next !== undefined; next = todo.pop()) {
    const [x, depth] = next;
    if (depth > 20 || x === null || typeof x !== 'object') continue;
    for (const [k, y] of Array.isArray(x) ? x.entries() : Object.entries(x)) {
      out.push([x, k]);
      todo.push([y, depth + 1]);
    }
  }
  return out;
}

/** `value` changed at one to three random places. */
function mutate(rnd: Random, value: Json): Json {
  const copy = JSON.parse(JSON.stringify(value)) as Json;
  for (let n = rnd.range(1, 3); n > 0; n--) {
    const all = places(copy);
    if (all.length === 0) break;
    const [parent, key] = all[rnd.int(all.length)] as (typeof all)[number];
    const op = rnd.int(4);
    if (Array.isArray(parent)) {
      if (op === 0) parent.splice(key as number, 1);
      else parent[key as number] = hostile(rnd);
    } else if (op === 0) delete parent[key as string];
    else if (op === 1)
      parent[['__proto__', 'constructor', 'extra', `${String(key)}x`][rnd.int(4)] as string] = hostile(rnd);
    else parent[key as string] = hostile(rnd);
  }
  return copy;
}

/** A JSON text with a __proto__ key is parsed into an own property: what a file would give. */
function reparse(v: Json): unknown {
  return JSON.parse(JSON.stringify(v));
}

function typed(err: unknown, what: string): void {
  if (err instanceof EbadgeError && typeof err.message === 'string' && err.message.length > 0) return;
  throw new Error(`${what}: not a typed refusal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
}

function unpolluted(what: string): void {
  assert.is(({} as Record<string, unknown>)['polluted'], undefined, `${what}: Object.prototype polluted`);
  assert.is(Object.getPrototypeOf({}), Object.prototype, what);
}

test(`hub.json changed at random places: a config or a ConfigError (${cases} cases)`, () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'config-fuzz-'));
  try {
    const valid = exampleConfig(path.join(dir, 'state')) as Json;
    parseConfig(valid); // the starting point is valid
    for (let i = 0; i < cases; i++) {
      const rnd = new Random(firstSeed + i);
      const what = `seed ${firstSeed + i}`;
      try {
        parseConfig(reparse(mutate(rnd, valid)));
      } catch (err) {
        typed(err, what);
      }
      unpolluted(what);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test(`hub.json's text cut, flipped or spliced: loadConfig gives a config or a ConfigError (${cases} cases)`, () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'config-fuzz-'));
  try {
    const text = JSON.stringify(exampleConfig(path.join(dir, 'state')), null, 2);
    const file = path.join(dir, 'hub.json');
    for (let i = 0; i < cases; i++) {
      const rnd = new Random(firstSeed + i);
      const bytes = Buffer.from(text);
      let out: Buffer;
      switch (rnd.int(5)) {
        case 0:
          out = bytes.subarray(0, rnd.int(bytes.length));
          break;
        case 1:
          out = Buffer.from(bytes);
          for (let n = rnd.range(1, 8); n > 0; n--) out[rnd.int(out.length)] = rnd.int(256);
          break;
        case 2: {
          const at = rnd.int(bytes.length);
          out = Buffer.concat([bytes.subarray(0, at), rnd.bytes(rnd.range(1, 20)), bytes.subarray(at)]);
          break;
        }
        case 3: {
          // Nesting far past any stack: the parser must not overflow (a syntax error or a ConfigError, never a crash).
          const at = rnd.int(bytes.length);
          const n = rnd.range(1, 100_000);
          out = Buffer.concat([bytes.subarray(0, at), Buffer.from('['.repeat(n) + ']'.repeat(n)), bytes.subarray(at)]);
          break;
        }
        default: {
          const at = rnd.int(bytes.length);
          out = Buffer.concat([bytes.subarray(0, at), Buffer.from(JSON.stringify(hostile(rnd))), bytes.subarray(at)]);
        }
      }
      writeFileSync(file, out, { mode: 0o600 });
      try {
        loadConfig(file);
      } catch (err) {
        typed(err, `seed ${firstSeed + i}`);
      }
      unpolluted(`seed ${firstSeed + i}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test(`the keyring and the private key file changed at random places: a Keyring or a typed error (${cases} cases)`, () => {
  const me = generateIdentity('heh-fuzz', nodeBackend);
  const peer = generateIdentity('vpp-fuzz', nodeBackend);
  const keyring = {
    format: 'heh-keyring/1',
    peers: {
      'vpp-fuzz': {
        ed25519: peer.publicEntry.ed25519,
        x25519: peer.publicEntry.x25519.map(({ pub, notBefore }) => ({ pub, notBefore })),
        maySend: ['activate', 'get_report'],
        mayReceive: ['report', 'accept_activation'],
      },
    },
  } as unknown as Json;
  const privateKey = me.privateKey as unknown as Json;
  new Keyring(nodeBackend, { keyring, privateKey }); // the starting point is valid
  for (let i = 0; i < cases; i++) {
    const rnd = new Random(firstSeed + i);
    const which = rnd.int(3);
    const sources = {
      keyring: reparse(which !== 1 ? mutate(rnd, keyring) : keyring),
      privateKey: reparse(which !== 0 ? mutate(rnd, privateKey) : privateKey),
    };
    try {
      new Keyring(nodeBackend, sources);
    } catch (err) {
      typed(err, `seed ${firstSeed + i}`);
    }
    unpolluted(`seed ${firstSeed + i}`);
  }
});

test.run();
