/** What the command modules share: the output sink, usage errors (exit 2) and small flag readers. */
import { EbadgeError } from '../core/errors.js';

export interface Io {
  out(line: string): void;
  err(line: string): void;
  /** Standard input as text (validate -); absent when there is none. */
  stdin?: () => Promise<string>;
}

/** A mistake on the command line: reported with the usage, exit status 2. */
export class UsageError extends EbadgeError<'USAGE'> {
  override name = 'UsageError';
  constructor(message: string) {
    super('USAGE', message);
  }
}

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
