/**
 * Reads a JSON file written by a person (the hub's configuration, the keyring and private key files): a key written
 * twice is refused, and a syntax error is reported by line and column. No message quotes the file's text, so the
 * same reader serves files that hold secrets.
 */
import { EbadgeError } from '../core/errors.js';
import { scanJson } from '../core/json-scan.js';
import { MAX_INPUT_BYTES, readFileBounded } from '../core/read-bounded.js';
import { shown } from '../core/shown.js';

export type JsonFileFault =
  /** `errno` is the system's code: ENOENT, EISDIR, EACCES... */
  | { readonly code: 'UNREADABLE'; readonly errno: string }
  /** More than `limit` bytes: read no further (/dev/zero, a log named by mistake). */
  | { readonly code: 'TOO_LARGE'; readonly limit: number }
  /** 1-based; `endsEarly` when the text stops before the document does (a truncated file). */
  | {
      readonly code: 'SYNTAX';
      readonly line: number;
      readonly column: number;
      readonly endsEarly: boolean;
      /** What was expected there (`a comma or }`), the usual slip named; never the text itself. Not when it ends early. */
      readonly expected?: string;
    }
  /** `path` names the second occurrence, e.g. `$.devices[1].name`. */
  | { readonly code: 'DUPLICATE_KEY'; readonly path: string; readonly key: string };

export class JsonFileError extends EbadgeError<JsonFileFault['code']> {
  override name = 'JsonFileError';
  /** The message without the file name: `invalid JSON at line 3 column 1`. */
  declare readonly detail: string;
  declare readonly file: string;
  declare readonly fault: JsonFileFault;

  constructor(file: string, fault: JsonFileFault) {
    const detail = describe(fault);
    super(fault.code, `${file}: ${detail}`);
    this.file = file;
    this.fault = fault;
    this.detail = detail;
  }
}

function describe(fault: JsonFileFault): string {
  switch (fault.code) {
    case 'UNREADABLE':
      return `cannot read (${fault.errno})`;
    case 'TOO_LARGE':
      return `more than ${fault.limit >> 20} MiB, not read (a JSON file here is kilobytes)`;
    case 'SYNTAX': {
      const where = `invalid JSON at line ${fault.line} column ${fault.column}`;
      if (fault.endsEarly) return `${where} (the text ends too early)`;
      return fault.expected === undefined ? where : `${where}: expected ${fault.expected}`;
    }
    case 'DUPLICATE_KEY': {
      return `${fault.path}: the key ${shown(fault.key, 60)} a second time`;
    }
  }
}

/** The most bytes read of one file (../core/read-bounded.ts). */
export const MAX_JSON_FILE_BYTES = MAX_INPUT_BYTES;

/** The parsed content of `file`; every failure, reading included, is a JsonFileError. */
export function readJsonFile(file: string): unknown {
  let text = readText(file);
  // Editors on Windows may save with a byte order mark, which JSON.parse refuses although the text is fine.
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let value: unknown;
  let parsed = true;
  try {
    value = JSON.parse(text);
  } catch {
    // Its message is not used: it quotes the text near the error, and only some Node versions give a position.
    parsed = false;
  }
  const scan = scanJson(text, '$');
  if (!parsed) {
    // The two grammars are the same; should they ever disagree, the error is still reported, at the end.
    const offset = scan.errorAt ?? text.length;
    throw new JsonFileError(file, {
      code: 'SYNTAX',
      ...lineColumn(text, offset),
      endsEarly: offset >= text.length,
      ...(scan.expected === undefined || offset >= text.length ? {} : { expected: scan.expected }),
    });
  }
  if (scan.duplicate !== undefined) throw new JsonFileError(file, { code: 'DUPLICATE_KEY', ...scan.duplicate });
  return value;
}

function readText(file: string): string {
  try {
    return readFileBounded(file, MAX_JSON_FILE_BYTES).toString('utf8');
  } catch (err) {
    const errno = (err as NodeJS.ErrnoException).code ?? 'error';
    if (errno === 'EFBIG') throw new JsonFileError(file, { code: 'TOO_LARGE', limit: MAX_JSON_FILE_BYTES });
    throw new JsonFileError(file, { code: 'UNREADABLE', errno });
  }
}

function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let start = 0;
  for (let i = text.indexOf('\n'); i >= 0 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    start = i + 1;
  }
  return { line, column: offset - start + 1 };
}
