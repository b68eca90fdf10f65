/**
 * The hub's storage as it runs: the state, the history and the outbox under stateDir, sharing one StorageHealth
 * whose lines go to the JSON log and whose episodes become events (storage_fault while the disk refuses writes,
 * storage_ok when it takes them again, storage_lost with the count of what could not be kept, state_damaged when
 * the state file was repaired at start). docs/hub.md, "Storage faults", is the operator's side of it.
 */
import { mkdirSync, renameSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { isDiskFault, StorageHealth, type StorageReport } from '../store/health.js';
import { ConfigError, type HubConfig } from './config/index.js';
import { History } from './history.js';
import type { EventType, Hub } from './hub.js';
import type { Logger } from './log.js';
import { Outbox } from './outbox.js';
import { StateStore } from './state.js';
import { lockStateDir } from './state-lock.js';

export interface Storage {
  readonly store: StateStore;
  readonly history: History;
  readonly outbox: Outbox;
  readonly health: StorageHealth;
  /** From now on the storage's episodes are the hub's events too (those of the start included), and a fault its status. */
  attach(hub: Hub): void;
  /** Closes the history and the outbox (after hub.stop(), which writes the state) and tells what is still untold. */
  close(): Promise<void>;
}

/**
 * A store's directory that is something else (a file, a FIFO, a link that loops: it stopped the hub with a stack)
 * is renamed `<dir>.not-a-directory-<UTC time>`, kept for the operator, and the store starts afresh beside it. One
 * that cannot be moved is the operator's to fix: a configuration error naming it.
 */
function clearForDirectory(dir: string, log: Logger): void {
  let found: string;
  try {
    const stat = statSync(dir);
    if (stat.isDirectory()) return;
    found = stat.isFIFO() ? 'a FIFO' : stat.isFile() ? 'a file' : 'not a directory';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ELOOP') return; // missing (created by its store), or a disk fault its store reports
    found = 'a symbolic link that loops';
  }
  const aside = `${dir}.not-a-directory-${new Date().toISOString().replace(/[-:]|\.\d+/g, '')}`;
  try {
    renameSync(dir, aside);
  } catch (err) {
    throw new ConfigError(
      dir,
      '$',
      'a directory of the hub state',
      `${found}, which cannot be moved away (${(err as NodeJS.ErrnoException).code}): move it`,
    );
  }
  log.error('a store directory was something else: moved aside, the store starts afresh', {
    path: dir,
    found,
    moved: aside,
  });
}

export async function openStorage(
  config: HubConfig,
  log: Logger,
  /** Tests shorten the health's timing. */
  timing: { settleMs?: number; repeatMs?: number } = {},
): Promise<Storage> {
  let hub: Hub | undefined;
  let closing = false;
  const waiting: Array<(h: Hub) => Promise<void>> = [];
  const record = (step: (h: Hub) => Promise<void>): void => {
    if (closing) return;
    if (hub === undefined) waiting.push(step);
    else step(hub).catch((err: unknown) => log.warn('recording a storage event failed', { error: err }));
  };
  let store: StateStore | undefined;
  /** An event with how many units it is about: the count is kept in the state (an energy event has no field for it). */
  const counted = async (h: Hub, type: EventType, count: number): Promise<void> => {
    await h.event(type);
    await store?.update(
      (s) => {
        for (let i = s.events.length - 1; i >= 0; i--) {
          const e = s.events[i]!;
          if (e.type !== type) continue;
          e.count = count;
          break;
        }
      },
      { lazy: true },
    );
  };
  const report = (r: StorageReport): void => {
    switch (r.kind) {
      case 'fault':
        log.error(r.message, { area: r.area, path: r.path, code: r.code });
        record((h) => h.event('storage_fault', null));
        return;
      case 'still':
        log.warn(r.message, { failures: r.failures, areas: r.areas });
        return;
      case 'recovered':
        log.info(r.message, { failures: r.failures, durationMs: r.durationMs });
        record(async (h) => {
          const now = h.now();
          // The fault's event said "still going on" (end_time null): it ends now.
          await store?.update((s) => {
            for (const e of s.events) if (e.type === 'storage_fault' && e.end === null) e.end = now;
          });
          await h.event('storage_ok');
        });
        return;
      case 'lost':
        log.error(r.message, { area: r.area, count: r.count, total: r.total });
        record((h) => counted(h, 'storage_lost', r.count));
    }
  };
  const health = new StorageHealth({ onReport: report, ...timing });
  try {
    mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
  } catch (err) {
    // A read-only disk without the directory: the stores start in memory and keep trying to create it.
    if (!isDiskFault(err)) throw err;
    health.failed('state', `create the state directory ${config.stateDir}`, err);
  }
  const lock = lockStateDir(config.stateDir, log);
  const warn = (w: Error & { code?: unknown }): void => log.warn(w.message, { code: w.code });
  for (const dir of ['history', 'outbox']) clearForDirectory(path.join(config.stateDir, dir), log);
  const history = await History.open(path.join(config.stateDir, 'history'), {
    resolutionS: config.resolutionS,
    signals: config.devices.flatMap((d) => d.signals.map((s) => `${d.name}.${s.name}`)),
    retentionHours: config.historyHours,
    fsyncIntervalMs: config.fsyncIntervalS * 1000,
    reporter: health,
    onWarning: warn,
  });
  store = StateStore.open(config.stateDir, { reporter: health });
  const damage = store.damage;
  if (damage !== undefined) {
    log.error(
      damage.reset
        ? 'the hub state file was unreadable: the hub starts afresh (subscriptions, activations, prices and events forgotten); the damaged file is kept'
        : 'the hub state file was damaged: the entries named were dropped, the rest kept; the damaged file is kept',
      { file: store.file, copy: damage.copy, problems: damage.problems.slice(0, 20), count: damage.problems.length },
    );
    record((h) => counted(h, 'state_damaged', damage.problems.length));
  }
  // One fsync per fsyncIntervalS at most (default a minute): the SD card's wear budget, shared with the history.
  const outbox = await Outbox.open(path.join(config.stateDir, 'outbox'), {
    fsyncIntervalMs: config.fsyncIntervalS * 1000,
    reporter: health,
    onWarning: warn,
  });
  const opened = store;
  return {
    store: opened,
    history,
    outbox,
    health,
    attach(h) {
      hub = h;
      h.watchStorage(health);
      for (const step of waiting.splice(0))
        step(h).catch((err: unknown) => log.warn('recording a storage event failed', { error: err }));
    },
    async close() {
      // The state was written by hub.stop(): what is told from here on is told in the log only.
      closing = true;
      await history.close();
      await outbox.close();
      health.close();
      lock.release();
    },
  };
}
