/**
 * Logs as JSON lines on stdout (journald keeps them, `journalctl -o cat` shows them, jq reads them): one object per
 * line with `time`, `level`, `msg` and fields. Fields whose name says secret (password, key, secret, token) are
 * replaced, so a careless call cannot leak one; keys and passwords are never passed to the logger anyway. A field
 * named like one of the line's own keys is kept as `field.<name>` instead of overwriting it, and logging never
 * throws: a value JSON cannot write (a bigint, a cycle) is written as text.
 */
export type Level = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const SECRET = /pass|secret|token|private|^key$|seed/i;
const RESERVED = new Set(['time', 'level', 'msg']);

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export function createLogger(
  level: Level = 'info',
  write: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
): Logger {
  const min = RANK[level];
  const log = (lvl: Level, msg: string, fields: Record<string, unknown> = {}): void => {
    if (RANK[lvl] < min) return;
    const line: Record<string, unknown> = { time: new Date().toISOString(), level: lvl, msg };
    for (const [k, v] of Object.entries(fields))
      line[RESERVED.has(k) ? `field.${k}` : k] = SECRET.test(k)
        ? '[redacted]'
        : v instanceof Error
          ? errorFields(v)
          : v;
    write(serialize(line));
  };
  return {
    debug: (m, f) => log('debug', m, f),
    info: (m, f) => log('info', m, f),
    warn: (m, f) => log('warn', m, f),
    error: (m, f) => log('error', m, f),
  };
}

function errorFields(err: Error): Record<string, unknown> {
  const code = (err as { code?: unknown }).code;
  return { name: err.name, message: err.message, ...(code === undefined ? {} : { code }) };
}

function serialize(line: Record<string, unknown>): string {
  try {
    return JSON.stringify(line, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  } catch {
    // A cycle: each field on its own, the ones that cannot be written as their text.
    const flat: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(line)) {
      try {
        JSON.stringify(v);
        flat[k] = v;
      } catch {
        flat[k] = String(v);
      }
    }
    return JSON.stringify(flat);
  }
}
