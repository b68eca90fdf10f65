/** What is wrong with a parties file: the file, the JSON path of the value, and a sentence about it. */
import { EbadgeError } from '../core/errors.js';

export class ProvisionError extends EbadgeError<'PARTIES' | 'APPLY'> {
  override name = 'ProvisionError';
  constructor(
    code: 'PARTIES' | 'APPLY',
    message: string,
    /** JSON path of the offending value (`$.parties[2].name`), for a PARTIES error. */
    readonly path?: string,
  ) {
    super(code, message);
  }
}
