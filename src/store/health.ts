/**
 * How the stores tell the operator about their disk: a full disk, a read-only file system or a vanished directory is
 * one episode, told in one line when it starts, one when it is over, and at most one in between every `repeatMs`
 * (with the count of failed writes), however many writes fail: each store retries on its own and would otherwise
 * log every attempt. An episode is over once every store that failed has written again (what it kept in memory
 * included) and `settleMs` passed without a new failure, so a disk that flaps makes one episode, not one per flap.
 * Data that could not be kept at all (`lost`) is told at once, then at most once per `repeatMs` per kind, summed.
 */

export interface StorageReporter {
  /** A write (or create, sync, delete) failed; the store keeps what it could not write in memory and retries. */
  failed(area: string, what: string, err: unknown): void;
  /** The store wrote everything again; `caughtUp` says what it wrote late, if anything. */
  ok(area: string, caughtUp?: string): void;
  /** Data that could not be stored at all: `count` units of `what` (e.g. "outbox messages dropped"). */
  lost(area: string, count: number, what: string): void;
}

export type StorageReport =
  | { kind: 'fault'; message: string; area: string; path: string; code: string; reason: string }
  | { kind: 'still'; message: string; failures: number; areas: string[]; sinceMs: number }
  | { kind: 'recovered'; message: string; failures: number; durationMs: number; caughtUp: string[] }
  | { kind: 'lost'; message: string; area: string; count: number; what: string; total: number };

export interface StorageHealthOptions {
  onReport: (report: StorageReport) => void;
  now?: () => number;
  /** Least time between two lines of one kind while an episode lasts (default 10 minutes). */
  repeatMs?: number;
  /** Quiet time after the last failure before an episode counts as over (default 1 minute). */
  settleMs?: number;
}

/** The system's error code (ENOSPC, EROFS...) of `err` or of what it wraps. */
function errnoOf(err: unknown): string | undefined {
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 5; e = (e as Error).cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return code;
  }
  return undefined;
}

/** The reason an operator can act on, from the system's error code. */
export function describeFault(err: unknown): { code: string; reason: string } {
  const code = errnoOf(err);
  const reason: Record<string, string> = {
    ENOSPC: 'the disk is full',
    EDQUOT: 'the disk quota is used up',
    EROFS: 'the file system is read-only',
    ENOENT: 'the directory vanished',
    EACCES: 'permission denied',
    EPERM: 'permission denied',
    EIO: 'an I/O error (a failing card?)',
  };
  if (code === undefined) return { code: 'ERROR', reason: (err as Error | undefined)?.message ?? String(err) };
  return { code, reason: reason[code] ?? (err as Error).message };
}

const DISK_FAULTS = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EIO', 'ENOENT']);

/**
 * Whether `err` is the disk's state (full, read-only, failing, the directory gone), which a store outlives, rather
 * than a mistake of the installation (permissions, a file where a directory should be) that stops it at open.
 */
export const isDiskFault = (err: unknown): boolean => DISK_FAULTS.has(errnoOf(err) ?? '');

/** The path a Node fs error (or what it wraps) names, if any. */
function pathOf(err: unknown, fallback: string): string {
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 5; e = (e as Error).cause, depth++) {
    const p = (e as NodeJS.ErrnoException).path;
    if (typeof p === 'string') return p;
  }
  return fallback;
}

export class StorageHealth implements StorageReporter {
  readonly #onReport: (r: StorageReport) => void;
  readonly #now: () => number;
  readonly #repeatMs: number;
  readonly #settleMs: number;
  /** Areas whose last attempt failed. */
  readonly #failing = new Set<string>();
  #episode: { since: number; failures: number; told: number; lastLine: number; caughtUp: string[] } | undefined;
  #settle: NodeJS.Timeout | undefined;
  readonly #lost = new Map<string, { area: string; what: string; unsaid: number; total: number; lastLine: number }>();
  readonly #lostTimers = new Set<NodeJS.Timeout>();
  /** Failed writes since the start (for a status figure). */
  failures = 0;
  /** Units of data that could not be stored at all, since the start. */
  lostTotal = 0;
  /** Episodes since the start. */
  episodes = 0;

  constructor(options: StorageHealthOptions) {
    this.#onReport = options.onReport;
    this.#now = options.now ?? Date.now;
    this.#repeatMs = options.repeatMs ?? 10 * 60_000;
    this.#settleMs = options.settleMs ?? 60_000;
  }

  /** Whether an episode is going on (it ends settleMs after the last store wrote again). */
  get faulty(): boolean {
    return this.#episode !== undefined;
  }

  failed(area: string, what: string, err: unknown): void {
    const now = this.#now();
    this.failures++;
    this.#failing.add(area);
    if (this.#settle !== undefined) clearTimeout(this.#settle);
    this.#settle = undefined;
    const e = this.#episode;
    if (e === undefined) {
      this.episodes++;
      this.#episode = { since: now, failures: 1, told: 1, lastLine: now, caughtUp: [] };
      const { code, reason } = describeFault(err);
      const file = pathOf(err, what);
      this.#report({
        kind: 'fault',
        message: `storage fault: cannot ${what}: ${reason} (${code}); the hub keeps running and keeps in memory what it could not write, retrying`,
        area,
        path: file,
        code,
        reason,
      });
      return;
    }
    e.failures++;
    if (now - e.lastLine >= this.#repeatMs) {
      const failures = e.failures - e.told;
      e.told = e.failures;
      e.lastLine = now;
      const areas = [...this.#failing].sort();
      this.#report({
        kind: 'still',
        message: `storage fault continues: ${failures} more failed write(s) of the ${areas.join(', ')} in ${Math.round((now - e.since) / 1000)} s since it began; still retrying`,
        failures,
        areas,
        sinceMs: e.since,
      });
    }
  }

  ok(area: string, caughtUp?: string): void {
    const e = this.#episode;
    if (caughtUp !== undefined && e !== undefined) e.caughtUp.push(caughtUp);
    if (!this.#failing.delete(area) || this.#failing.size > 0 || e === undefined) return;
    if (this.#settle !== undefined) clearTimeout(this.#settle);
    this.#settle = setTimeout(() => this.#over(), this.#settleMs);
    this.#settle.unref();
  }

  lost(area: string, count: number, what: string): void {
    if (!(count > 0)) return;
    const now = this.#now();
    this.lostTotal += count;
    const key = `${area}\0${what}`;
    let l = this.#lost.get(key);
    if (l === undefined) {
      l = { area, what, unsaid: 0, total: 0, lastLine: Number.NEGATIVE_INFINITY };
      this.#lost.set(key, l);
    }
    l.unsaid += count;
    l.total += count;
    if (now - l.lastLine >= this.#repeatMs) {
      this.#tellLost(l, now);
      return;
    }
    if (l.unsaid === count) {
      // The first loss kept back in this window: told when the window ends, or by close().
      const t = setTimeout(
        () => {
          this.#lostTimers.delete(t);
          if (l.unsaid > 0) this.#tellLost(l, this.#now());
        },
        l.lastLine + this.#repeatMs - now,
      );
      t.unref();
      this.#lostTimers.add(t);
    }
  }

  /** Tells what is still untold: losses kept back, and an episode whose end is waiting for its quiet time. */
  close(): void {
    for (const t of this.#lostTimers) clearTimeout(t);
    this.#lostTimers.clear();
    const now = this.#now();
    for (const l of this.#lost.values()) if (l.unsaid > 0) this.#tellLost(l, now);
    if (this.#settle !== undefined) {
      clearTimeout(this.#settle);
      this.#settle = undefined;
      this.#over();
    }
  }

  #over(): void {
    const e = this.#episode;
    this.#settle = undefined;
    if (e === undefined || this.#failing.size > 0) return;
    this.#episode = undefined;
    const durationMs = this.#now() - e.since;
    const caught = e.caughtUp.length > 0 ? `; written late: ${e.caughtUp.join('; ')}` : '';
    this.#report({
      kind: 'recovered',
      message: `storage writable again after ${Math.round(durationMs / 1000)} s and ${e.failures} failed write(s)${caught}`,
      failures: e.failures,
      durationMs,
      caughtUp: e.caughtUp,
    });
  }

  #tellLost(l: { area: string; what: string; unsaid: number; total: number; lastLine: number }, now: number): void {
    const count = l.unsaid;
    l.unsaid = 0;
    l.lastLine = now;
    this.#report({
      kind: 'lost',
      message: `data lost: ${count} ${l.what} (${l.total} since the start)`,
      area: l.area,
      count,
      what: l.what,
      total: l.total,
    });
  }

  #report(r: StorageReport): void {
    try {
      this.#onReport(r);
    } catch {
      /* a throwing listener must not break a store */
    }
  }
}
