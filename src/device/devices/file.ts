/** Devices that are a value file: a sysfs or IIO reading for a meter, a GPIO value for a relay. */
import { constants } from 'node:fs';
import { open, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { throwTypeError } from '../../core/errors.js';
import type { FileActuatorConfig, FileMeterConfig } from '../config/types.js';
import {
  type Actuator,
  type ActuatorCommand,
  checkCommandShape,
  closedError,
  DeviceError,
  errCode,
  type Meter,
  NUMBER,
  type Reading,
  Serial,
  shortText,
} from './adapter.js';

/** A value file is one line; sysfs gives at most a page. */
const MAX_VALUE_BYTES = 4096;

/**
 * The file's trimmed text, read once per reading and at most a page of it: a path that names /dev/zero, a log or a
 * growing file by mistake must fail the reading, not fill the Pi's memory.
 */
async function readValue(file: string): Promise<string> {
  // O_NONBLOCK: a FIFO nobody writes to held the open (and a thread of libuv's pool) for ever.
  const fh = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const stat = await fh.stat();
    if (stat.isFIFO() || stat.isSocket())
      throw new DeviceError('BAD_FILE', `file ${file}: a ${stat.isFIFO() ? 'FIFO' : 'socket'}, not a value file`);
    const buf = Buffer.alloc(MAX_VALUE_BYTES + 1);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      n += bytesRead;
      if (bytesRead === 0 || n === buf.length) break;
    }
    if (n > MAX_VALUE_BYTES)
      throw new DeviceError('BAD_FILE', `file ${file}: more than ${MAX_VALUE_BYTES} bytes, not a value file`);
    return buf.toString('utf8', 0, n).trim();
  } finally {
    await fh.close();
  }
}

/**
 * `{ kind, path, scale, signal? }`. Reads a sysfs-style file (an IIO or hwmon value) at each read: trimmed text, a
 * decimal number, times scale, for `signal` (default 'p').
 */
export class FileMeter implements Meter {
  declare readonly signals: readonly string[];
  readonly #file: string;
  readonly #scale: number;
  #closed = false;

  constructor(config: FileMeterConfig, signals: readonly string[], cwd: string) {
    if (typeof config.path !== 'string' || config.path === '')
      throwTypeError('file meter path must be a non-empty string');
    if (typeof config.scale !== 'number' || !Number.isFinite(config.scale))
      throwTypeError('file meter scale must be a finite number');
    const signal = config.signal ?? 'p';
    if (typeof signal !== 'string' || signal === '') throwTypeError('file meter signal must be a non-empty string');
    if (signals.some((s) => s !== signal)) {
      throwTypeError(`a file meter gives one signal, ${JSON.stringify(signal)}; asked for ${signals.join(',')}`);
    }
    this.signals = Object.freeze([signal]);
    this.#file = path.resolve(cwd, config.path);
    this.#scale = config.scale;
  }

  async read(): Promise<Reading> {
    if (this.#closed) throw closedError(`file ${this.#file}`);
    let text: string;
    try {
      text = await readValue(this.#file);
    } catch (err) {
      if (err instanceof DeviceError) throw err;
      throw new DeviceError('IO', `file ${this.#file}: cannot read (${errCode(err)})`, { cause: err });
    }
    if (!NUMBER.test(text) || !Number.isFinite(Number(text))) {
      throw new DeviceError('BAD_FILE', `file ${this.#file} line 1, column 1: not a number: ${shortText(text)}`);
    }
    return { [this.signals[0] ?? 'p']: Number(text) * this.#scale };
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}

/**
 * `{ kind, path, on, off }`. Writes `on` when an activation with quantity > 0 starts (a positive quantity asks a
 * consumer to consume more: switch it on), `off` for quantity <= 0 and when the activation ends, e.g. to
 * /sys/class/gpio/gpioN/value. An `end` for an activation other than the one in force writes nothing, so a superseded
 * activation's end cannot switch off its successor; an `end` with none known (after a restart) writes `off`, the safe
 * state.
 */
export class FileActuator implements Actuator {
  readonly #file: string;
  readonly #on: string;
  readonly #off: string;
  readonly #serial = new Serial();
  #current: string | undefined;
  #closed = false;

  constructor(config: FileActuatorConfig) {
    this.#file = config.path;
    this.#on = config.on;
    this.#off = config.off;
  }

  async apply(cmd: ActuatorCommand): Promise<void> {
    if (this.#closed) throw closedError(`file ${this.#file}`);
    checkCommandShape(cmd);
    await this.#serial.run(async () => {
      if (cmd.action === 'activate') {
        await this.#write(cmd.quantity > 0 ? this.#on : this.#off);
        this.#current = cmd.id;
      } else if (this.#current === undefined || this.#current === cmd.id) {
        await this.#write(this.#off);
        this.#current = undefined;
      }
    });
  }

  async #write(text: string): Promise<void> {
    try {
      await writeFile(this.#file, text);
    } catch (err) {
      throw new DeviceError('IO', `file ${this.#file}: cannot write (${errCode(err)})`, { cause: err });
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#serial.drain();
  }
}
