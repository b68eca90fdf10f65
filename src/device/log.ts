/**
 * Logs as JSON lines on stdout (journald keeps them, `journalctl -o cat` shows them, jq reads them): one object per
 * line with `time`, `level`, `msg` and fields. Fields whose name says secret (password, key, secret, token) are
 * replaced, so a careless call cannot leak one; keys and passwords are never passed to the logger anyway.
 */
export type Level = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const SECRET = /pass|secret|token|private|^key$|seed/i;

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
    const safe: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(fields))
      safe[k] = SECRET.test(k) ? '[redacted]' : v instanceof Error ? errorFields(v) : v;
    write(JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...safe }));
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
