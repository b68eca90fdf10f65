/**
 * Meter and actuator adapters of the hub: a real installation connects its meter and relays by configuration, without
 * changing code. `createMeter` and `createActuator` take the JSON-shaped config and return the adapter. What every
 * adapter keeps to is in adapter.ts; each kind is described in its own file.
 */
import { throwTypeError } from '../../core/errors.js';
import type { ActuatorConfig, MeterConfig, SimulatedActuatorConfig } from '../config/types.js';
import type { Actuator, Meter } from './adapter.js';
import { CommandActuator, OneShotCommandMeter } from './command.js';
import { CsvMeter } from './csv.js';
import { FileActuator, FileMeter } from './file.js';
import { SimulatedActuator, SimulatedMeter } from './simulated.js';
import { LongRunningCommandMeter } from './supervised-command.js';

export type {
  ActuatorConfig,
  CommandActuatorConfig,
  CommandMeterConfig,
  CsvMeterConfig,
  FileActuatorConfig,
  FileMeterConfig,
  MeterConfig,
  MeterProfile,
  SimulatedActuatorConfig,
  SimulatedMeterConfig,
} from '../config/types.js';
export {
  type Actuator,
  type ActuatorCommand,
  DeviceError,
  type DeviceErrorCode,
  type Meter,
  type Reading,
} from './adapter.js';
export { type ActiveActivation, SimulatedActuator } from './simulated.js';
export { restartDelayMs } from './supervised-command.js';

/**
 * `signals` are the keys every reading will have; empty means the meter's own (simulated: `p`; csv: the header's;
 * file: its signal). A command meter needs them listed. `cwd` resolves relative paths and is the command's cwd.
 */
export async function createMeter(
  config: MeterConfig,
  signals: readonly string[],
  options?: { cwd?: string },
): Promise<Meter> {
  if (typeof config !== 'object' || config === null) throwTypeError('meter config must be an object');
  if (!Array.isArray(signals) || !signals.every((s) => typeof s === 'string' && s !== '')) {
    throwTypeError('meter signals must be non-empty strings');
  }
  if (new Set(signals).size !== signals.length) throwTypeError(`meter signals repeat: ${signals.join(',')}`);
  const cwd = options?.cwd ?? process.cwd();
  switch (config.kind) {
    case 'simulated':
      return new SimulatedMeter(config, signals);
    case 'csv':
      return CsvMeter.open(config, signals, cwd);
    case 'command': {
      checkCommand(config.command, config.timeoutMs, 'meter');
      if (signals.length === 0) throwTypeError('a command meter needs its signals listed');
      if (config.intervalS === undefined) return new OneShotCommandMeter(config, signals, cwd);
      if (!(typeof config.intervalS === 'number' && config.intervalS > 0 && Number.isFinite(config.intervalS))) {
        throwTypeError(`meter intervalS must be a positive number, not ${String(config.intervalS)}`);
      }
      return new LongRunningCommandMeter(config, config.intervalS, signals, cwd);
    }
    case 'file':
      return new FileMeter(config, signals, cwd);
    default:
      throwTypeError(`unknown meter kind ${JSON.stringify((config as { kind?: unknown }).kind)}`);
  }
}

export async function createActuator(config: SimulatedActuatorConfig): Promise<SimulatedActuator>;
export async function createActuator(config: ActuatorConfig): Promise<Actuator>;
export async function createActuator(config: ActuatorConfig): Promise<Actuator> {
  if (typeof config !== 'object' || config === null) throwTypeError('actuator config must be an object');
  switch (config.kind) {
    case 'simulated':
      return new SimulatedActuator();
    case 'command':
      checkCommand(config.command, config.timeoutMs, 'actuator');
      return new CommandActuator(config);
    case 'file':
      if (typeof config.path !== 'string' || config.path === '')
        throwTypeError('actuator path must be a non-empty string');
      if (typeof config.on !== 'string' || typeof config.off !== 'string')
        throwTypeError('actuator on and off must be strings');
      return new FileActuator(config);
    default:
      throwTypeError(`unknown actuator kind ${JSON.stringify((config as { kind?: unknown }).kind)}`);
  }
}

function checkCommand(command: unknown, timeoutMs: unknown, what: string): void {
  if (
    !Array.isArray(command) ||
    command.length === 0 ||
    !command.every((a) => typeof a === 'string') ||
    command[0] === ''
  ) {
    throwTypeError(`${what} command must be a non-empty array of strings (argv, no shell)`);
  }
  if (!(typeof timeoutMs === 'number' && timeoutMs > 0 && Number.isFinite(timeoutMs))) {
    throwTypeError(`${what} timeoutMs must be a positive number, not ${String(timeoutMs)}`);
  }
}
