/**
 * A systemd unit file read the way the deployment tests need it: sections with their settings in order (a key may
 * repeat, as Environment= does), plus the one thing they run, systemd-analyze verify.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from './oracle.js';

export const UNIT_FILE = path.join(repoRoot(), 'deploy', 'ebadge-hub.service');

export type Unit = Map<string, [key: string, value: string][]>;

/** Sections by name (`Unit`, `Service`, `Install`); comments and blank lines dropped. No line continuations. */
export function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: [string, string][] | undefined;
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    if (line.endsWith('\\')) throw new Error(`line ${i + 1}: a continued line, which this reader does not join`);
    const header = /^\[(\w+)\]$/.exec(line);
    if (header !== null) {
      section = [];
      unit.set(header[1] as string, section);
      continue;
    }
    const eq = line.indexOf('=');
    if (section === undefined || eq < 1) throw new Error(`line ${i + 1}: not a setting in a section: ${raw}`);
    section.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()]);
  }
  return unit;
}

export function readUnit(file = UNIT_FILE): Unit {
  return parseUnit(readFileSync(file, 'utf8'));
}

/** Every value of a key in a section, in order. */
export function values(unit: Unit, section: string, key: string): string[] {
  return (unit.get(section) ?? []).filter(([k]) => k === key).map(([, v]) => v);
}

/** The single value of a key (the last one wins, as in systemd), or undefined. */
export function value(unit: Unit, section: string, key: string): string | undefined {
  return values(unit, section, key).at(-1);
}

/** A command line of ours: plain words, no quoting and no systemd prefix (`-`, `@`, `+`, `!`), which we do not use. */
export function words(command: string): string[] {
  if (/["'\\$%]/.test(command) || /^[-@+!:]/.test(command))
    throw new Error(`a command line this reader does not split: ${command}`);
  return command.split(/\s+/).filter((w) => w !== '');
}

/** systemd-analyze's version line, or undefined when it is not installed. */
export function systemdAnalyze(): string | undefined {
  const r = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
  return r.error === undefined && r.status === 0 ? r.stdout.split('\n')[0] : undefined;
}

/**
 * `systemd-analyze verify FILE`: its exit status and what it said about FILE (a line naming it). It exits 0 even
 * when it ignores a setting, so the lines are what a test must look at; lines about other units are the machine's.
 */
export function verifyUnit(file: string): { status: number | null; about: string[]; other: string[] } {
  const r = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8', timeout: 60_000 });
  const lines = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => l.trim() !== '');
  const name = path.basename(file);
  return {
    status: r.status,
    about: lines.filter((l) => l.includes(name)),
    other: lines.filter((l) => !l.includes(name)),
  };
}
