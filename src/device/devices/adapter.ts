/**
 * What every meter and actuator implements, and what they share: DeviceError for the device's failures (a bad
 * config is a TypeError), the serial queue of actuator commands and the check of their shape.
 */

import { EbTime } from '../../codec/time.js';
import { EbadgeError, throwTypeError } from '../../core/errors.js';

/**
 * Exactly the meter's `signals` as keys; null means "no value for this signal at this time". Power is in kW: a
 * generator (PV) reports its generation as positive power of the generator device, and the hub, not the adapter,
 * decides that it counts against the household's consumption.
 */
export type Reading = Record<string, number | null>;

/**
 * Time is epoch milliseconds (`Date.now()` scale); times of day are UTC: the simulated site lies on the Greenwich
 * meridian and a seconds-of-day CSV counts from UTC midnight (a CSV with ISO times and an offset gives local time).
 * The device's failures reject with a DeviceError, a bad config with a TypeError. No adapter throws synchronously,
 * emits 'error' or leaves a child process behind (child-process.ts).
 */
export interface Meter {
  readonly signals: readonly string[];
  read(t: number): Promise<Reading>;
  close(): Promise<void>;
}

export type ActuatorCommand =
  | { action: 'activate'; id: string; device: string; quantity: number; from: number; to: number }
  | { action: 'end'; id: string; device: string };

/** Drives one relay or setpoint; the commands to it are applied one at a time, in order. */
export interface Actuator {
  apply(cmd: ActuatorCommand): Promise<void>;
  close(): Promise<void>;
}

export type DeviceErrorCode = 'TIMEOUT' | 'EXIT' | 'NOT_FOUND' | 'BAD_OUTPUT' | 'IO' | 'BAD_FILE';

export class DeviceError extends EbadgeError<DeviceErrorCode> {
  override name = 'DeviceError';
}

export function closedError(label: string): DeviceError {
  return new DeviceError('IO', `${label}: closed`);
}

export function errCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : err instanceof Error ? err.message : String(err);
}

export { shown as shortText } from '../../core/shown.js';

/** A decimal number as a device writes it (a CSV cell, a sysfs value): no hex, no Infinity, no NaN. */
export const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** Runs commands strictly one after another, so an activation's end can never overtake its start. */
export class Serial {
  #tail: Promise<unknown> = Promise.resolve();
  run<T>(task: () => Promise<T>): Promise<T> {
    const next = this.#tail.then(task, task);
    this.#tail = next.then(
      () => {},
      () => {},
    );
    return next;
  }
  drain(): Promise<void> {
    return this.#tail.then(() => {});
  }
}

export function checkCommandShape(cmd: ActuatorCommand): void {
  if (typeof cmd !== 'object' || cmd === null) throwTypeError('actuator command must be an object');
  if (typeof cmd.id !== 'string' || typeof cmd.device !== 'string')
    throwTypeError('actuator command id and device must be strings');
  if (cmd.action === 'activate') {
    if (typeof cmd.quantity !== 'number' || !Number.isFinite(cmd.quantity))
      throwTypeError('activate quantity must be a finite number');
    EbTime.fromEpochMs(cmd.from);
    EbTime.fromEpochMs(cmd.to);
  } else if (cmd.action !== 'end') {
    throwTypeError(`unknown actuator action ${JSON.stringify((cmd as { action?: unknown }).action)}`);
  }
}
