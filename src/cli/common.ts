/** What the command modules share: the output sink, usage errors (exit 2) and small flag readers. */
import { UsageError } from '../core/io.js';

// Io and UsageError live in src/core/io.ts, shared with the hub's commands; the CLI's modules keep importing them here.
export { type Io, UsageError } from '../core/io.js';

export type BackendChoice = 'auto' | 'node' | 'noble';

export function backendOption(v: string | undefined): BackendChoice {
  if (v === undefined) return 'auto';
  if (v !== 'auto' && v !== 'node' && v !== 'noble')
    throw new UsageError(`--backend: expected auto, node or noble, found "${v}"`);
  return v;
}

export function need(v: string | undefined, flag: string): string {
  if (v === undefined || v === '') throw new UsageError(`${flag} is required`);
  return v;
}
