/**
 * The hub without a broker (test/unit/device/hub-*.test.ts): a Hub on its connector and a VPP connector over the
 * in-memory transport, one ManualClock for both and for the hub's history, the example configuration (a meter and
 * a 2 kW boiler with an actuator) at a resolution of 60 s, meters whose readings the test sets, an actuator that
 * records its commands, and the state and history in a temporary directory. `restart()` builds a new Hub on the same
 * directory and queues, as a new process would. The hub starts as main.ts starts it: the Hub first, then its
 * BrokerLink; `offline` holds the connector's start (no broker) until `online()`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import {
  Connector,
  ManualClock,
  MemoryNetwork,
  type MemoryTransport,
  type MemoryTransportOptions,
} from '../../src/bus/index.js';
import type { Message, MessageType } from '../../src/codec/index.js';
import { SCHEMAS } from '../../src/codec/index.js';
import type { Sealer } from '../../src/crypto/index.js';
import { exampleConfig, type HubConfig, parseConfig } from '../../src/device/config/index.js';
import type { Actuator, ActuatorCommand, Meter } from '../../src/device/devices/index.js';
import { History } from '../../src/device/history.js';
import { Hub } from '../../src/device/hub.js';
import { BrokerLink } from '../../src/device/link.js';
import { createLogger, type Level, type Logger } from '../../src/device/log.js';
import { Outbox } from '../../src/device/outbox.js';
import { StateStore } from '../../src/device/state.js';

export const HEH = 'heh-example';
export const AGG = 'vpp-example';
/** 2026-01-01 12:00:00 UTC: a whole hour, so that slots and periods start at round times. */
export const T0 = Date.UTC(2026, 0, 1, 12);

export interface LogLine {
  level: string;
  msg: string;
  fields: Record<string, unknown>;
}

export interface HubRig {
  dir: string;
  config: HubConfig;
  clock: ManualClock;
  network: MemoryNetwork;
  hub: Hub;
  bus: Connector<MemoryTransport>;
  vpp: Connector<MemoryTransport>;
  /** What reached the VPP's handlers (replies to its requests do not: they settle the request). */
  got: Message[];
  /** Every command the boiler's actuator was given. */
  commands: ActuatorCommand[];
  /** The next readings, per device (a value, an Error to throw, or 'hang' for a read that never answers). */
  readings: Map<string, number | Error | 'hang'>;
  logs: LogLine[];
  store: StateStore;
  history: History;
  outbox: Outbox | undefined;
  /** The hub's link to the "broker" (src/device/link.ts), as main.ts makes it. */
  link: BrokerLink;
  /** Stops the hub and closes its connector and stores, then a new hub on the same directory and queues. */
  restart(options?: { offline?: boolean; whileStopped?: () => Promise<void> }): Promise<void>;
  /** An offline hub's broker comes: its connector's start goes through, and the link tells the hub. */
  online(): Promise<void>;
  close(): Promise<void>;
}

export interface RigOptions {
  config?: Record<string, unknown>;
  outbox?: boolean;
  /** Start the hub (registration, sampling, resumed timers); default true. */
  start?: boolean;
  transport?: Omit<MemoryTransportOptions, 'name' | 'peers'>;
  /** The hub starts without its broker (its connector's start is held until online()). */
  offline?: boolean;
  /** The hub logs through createLogger at this level (its JSON lines parsed into `logs`); default every call kept. */
  logLevel?: Level;
  /** The VPP's dedupe window (default the bus's 15 minutes). */
  vppDedupeTtlMs?: number;
  /** Awaited by the boiler's actuator before it takes a command: an actuator that is slow to start or stop. */
  actuatorGate?: (cmd: ActuatorCommand) => Promise<void>;
  /** Sealing: the hub's sealer, made afresh at every (re)start as main.ts makes it (its state store given), and the VPP's. */
  sealing?: { hub: (store: StateStore, log: Logger) => Promise<Sealer>; vpp: Sealer };
}

function meter(readings: Map<string, number | Error | 'hang'>, device: string): Meter {
  return {
    signals: ['p'],
    read: async () => {
      const v = readings.get(device) ?? 0;
      if (v instanceof Error) throw v;
      if (v === 'hang') return new Promise<never>(() => undefined);
      return { p: v };
    },
    close: async () => undefined,
  };
}

export async function hubRig(options: RigOptions = {}): Promise<HubRig> {
  const dir = mkdtempSync(path.join(tmpdir(), 'heh-unit-hub-'));
  const stateDir = path.join(dir, 'state');
  const config = parseConfig({ ...(exampleConfig(stateDir) as object), resolutionS: 60, ...options.config });
  const clock = new ManualClock(T0);
  const network = new MemoryNetwork({ clock });
  const commands: ActuatorCommand[] = [];
  const readings = new Map<string, number | Error | 'hang'>([
    ['meter', 1.5],
    ['boiler', 2],
  ]);
  const logs: LogLine[] = [];
  const log: Logger =
    options.logLevel === undefined
      ? (Object.fromEntries(
          (['debug', 'info', 'warn', 'error'] as const).map((level) => [
            level,
            (msg: string, fields: Record<string, unknown> = {}) => logs.push({ level, msg, fields }),
          ]),
        ) as unknown as Logger)
      : createLogger(options.logLevel, (line) => {
          const { level, msg, time: _, ...fields } = JSON.parse(line) as Record<string, unknown>;
          logs.push({ level: String(level), msg: String(msg), fields });
        });
  const actuator: Actuator = {
    apply: async (cmd) => {
      await options.actuatorGate?.(cmd);
      commands.push(cmd);
    },
    close: async () => undefined,
  };
  const vpp = new Connector({
    clock,
    ...(options.sealing === undefined ? {} : { sealer: options.sealing.vpp }),
    transport: network.transport({ name: AGG, peers: [HEH], ...options.transport }),
    ...(options.vppDedupeTtlMs === undefined ? {} : { dedupe: { ttlMs: options.vppDedupeTtlMs } }),
  });
  const got: Message[] = [];
  for (const type of Object.keys(SCHEMAS) as MessageType[])
    vpp.handle(type, (m) => {
      got.push(m as Message);
    });
  await vpp.start();

  const rig = { dir, config, clock, network, vpp, got, commands, readings, logs } as HubRig;
  const open = async (offline = options.offline === true): Promise<void> => {
    const history = await History.open(path.join(stateDir, 'history'), {
      resolutionS: config.resolutionS,
      signals: config.devices.flatMap((d) => d.signals.map((s) => `${d.name}.${s.name}`)),
      retentionHours: config.historyHours,
      now: () => clock.now(),
      fsyncIntervalMs: 3_600_000,
    });
    const store = StateStore.open(stateDir);
    const outbox = options.outbox === true ? await Outbox.open(path.join(stateDir, 'outbox')) : undefined;
    const sealer = await options.sealing?.hub(store, log);
    const bus = new Connector({
      clock,
      ...(sealer === undefined ? {} : { sealer }),
      transport: network.transport({ name: HEH, peers: [AGG], ...options.transport }),
    });
    const hub = new Hub({
      config,
      bus,
      history,
      // One per device of the configuration (the example's: a meter, and a boiler with an actuator).
      meters: new Map(config.devices.map((d) => [d.name, meter(readings, d.name)])),
      actuators: new Map(config.devices.filter((d) => d.actuator !== undefined).map((d) => [d.name, actuator])),
      store,
      log,
      clock,
      ...(outbox === undefined ? {} : { outbox }),
    });
    const link = new BrokerLink({ config, bus, hub, log, user: HEH, clock });
    Object.assign(rig, { hub, bus, store, history, outbox, link });
    if (offline) bus.transport.holdStart();
    if (options.start === false) return;
    // As main.ts: the hub first, whether or not the broker is there, then the link.
    await hub.start();
    const up = link.start();
    if (!offline) await within(up, 5000, 'the link up');
  };
  const shut = async (): Promise<void> => {
    rig.link.close();
    await rig.hub.stop();
    await rig.bus.close();
    await rig.history.close();
    await rig.outbox?.close();
  };
  rig.restart = async (o = {}) => {
    await shut();
    await o.whileStopped?.();
    await open(o.offline);
  };
  rig.online = async () => {
    rig.bus.transport.releaseStart();
    await within(rig.link.start(), 5000, 'the link up');
  };
  rig.close = async () => {
    await shut();
    await vpp.close();
    rmSync(dir, { recursive: true, force: true });
  };
  await open();
  await network.idle();
  return rig;
}

/**
 * `p`, which must settle within `ms` of real time (the hub's handlers write files, and fsync them: seconds on a
 * disk that a CI run's broker keeps busy). Only a failing test waits that long.
 */
export async function within<T>(p: Promise<T>, ms = 15_000, what = 'the reply'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not come within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The messages of one type the VPP's handlers got. */
export function ofType<T extends MessageType>(got: readonly Message[], type: T): Message<T>[] {
  return got.filter((m): m is Message<T> => m.msg === type);
}
