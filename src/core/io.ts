/**
 * What a command-line program of this project writes to and how it says "you used me wrongly": shared by the
 * operator's CLI (src/cli) and the hub's own commands (src/device/main.ts), which sit side by side, so it lives
 * below both. Each program maps UsageError to its own exit status (the CLI 2, the hub 64).
 */
import { EbadgeError } from './errors.js';

export interface Io {
  out(line: string): void;
  err(line: string): void;
  /** Standard input as text (validate -); absent when there is none. */
  stdin?: () => Promise<string>;
}

/** A mistake on the command line: reported with the usage, or with `hint` when the mistake is not in how it was called. */
export class UsageError extends EbadgeError<'USAGE'> {
  override name = 'UsageError';
  declare readonly hint: string | undefined;
  constructor(message: string, hint?: string) {
    super('USAGE', message);
    this.hint = hint;
  }
}
