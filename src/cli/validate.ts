/**
 * `validate [FILE|-]`: one JSON document per line, each checked by the codec: `ok TYPE` or
 * `error CODE PATH: sentence` per line (blank lines skipped); exit status 1 when any failed.
 */
import { DecodeError, decode } from '../codec/index.js';
import { readFileBounded } from '../core/read-bounded.js';
import { type Io, UsageError } from './common.js';

export async function validate(args: string[], io: Io): Promise<number> {
  if (args.length > 1) throw new UsageError('validate takes one FILE (or - for standard input)');
  const file = args[0] ?? '-';
  let text: string;
  if (file === '-') {
    if (io.stdin === undefined) throw new UsageError('no standard input');
    text = await io.stdin();
  } else {
    try {
      text = readFileBounded(file).toString('utf8');
    } catch (err) {
      throw new UsageError(`${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  }
  let failed = 0;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).trim();
    if (line === '') continue;
    try {
      const { message, diagnostics } = decode(line);
      io.out(`ok ${message.msg}${diagnostics.length > 0 ? ` (${diagnostics.join('; ')})` : ''}`);
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      failed++;
      io.out(`error ${err.code} ${err.path}: ${err.reason}`);
    }
  }
  return failed > 0 ? 1 : 0;
}
