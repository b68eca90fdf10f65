/**
 * Loads the contenders by name. Peers are imported lazily, so a machine without them (the Pi, BENCH_PEERS=ours)
 * runs ours alone; a peer that fails to load is reported as skipped, never silently dropped.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { ours } from './ours.js';
import type { Contender, ContenderName } from './types.js';

export * from './types.js';

const require = createRequire(import.meta.url);

/** The installed version of a package (its exports map may hide package.json, so walk up from its entry). */
export function packageVersion(name: string): string {
  let dir = dirname(require.resolve(name));
  for (let i = 0; i < 6; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === name && pkg.version !== undefined) return pkg.version;
    } catch {
      /* not here */
    }
    dir = dirname(dir);
  }
  return '?';
}

export async function loadContender(name: ContenderName): Promise<Contender> {
  switch (name) {
    case 'ours':
      return ours;
    case 'amqplib':
      return (await import('./amqplib.js')).amqplibContender(packageVersion('amqplib'));
    case 'amqp-client':
      return (await import('./amqp-client.js')).amqpClientContender(packageVersion('@cloudamqp/amqp-client'));
  }
}

export interface Loaded {
  contenders: Contender[];
  skipped: { name: ContenderName; reason: string }[];
}

export async function loadContenders(names: readonly ContenderName[]): Promise<Loaded> {
  const out: Loaded = { contenders: [], skipped: [] };
  for (const name of names) {
    try {
      out.contenders.push(await loadContender(name));
    } catch (err) {
      out.skipped.push({ name, reason: err instanceof Error ? err.message : String(err) });
    }
  }
  return out;
}
