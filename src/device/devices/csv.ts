/** A meter that replays a CSV file: a day profile, or a recording with absolute times. */
import * as path from 'node:path';
import { EbTime } from '../../codec/time.js';
import { throwRangeError, throwTypeError } from '../../core/errors.js';
import { readFileBounded } from '../../core/read-bounded.js';
import type { CsvMeterConfig } from '../config/types.js';
import { DeviceError, errCode, type Meter, NUMBER, type Reading, shortText } from './adapter.js';

const DAY_MS = 86_400_000;
const SECONDS = /^\d+(?:\.\d+)?$/;

/**
 * `{ kind, path, loop }`. Header `t,<signal>,...`; then one row per reading, numbers only (no quoting), an empty cell
 * meaning null; blank lines and lines starting with `#` are skipped. `t` is either seconds since UTC midnight
 * (0 <= t < 86400: a day profile, replayed every day) or an ISO 8601 time with an offset (absolute times); one form
 * per file, strictly increasing. A row holds from its time until the next row's; the last row holds for as long as
 * the interval before it (one row alone: forever). Outside the covered times the reading is all null, unless `loop`:
 * then the position is taken modulo the file's span (start of the first row to end of the last), counted from the
 * first row, so a file of whole days keeps the time of day. A malformed file rejects at open with BAD_FILE naming
 * line and column. The file is read once, at open.
 */
/**
 * The largest CSV replayed: it is read whole into memory, and a 27 MB one (a year at 30 s) ran the hub out of the
 * 64 MB heap its unit gives it on a Pi.
 */
const MAX_CSV_BYTES = 8 << 20;

export class CsvMeter implements Meter {
  declare readonly signals: readonly string[];
  /** Seconds of each row: since UTC midnight (seconds form) or since the epoch (ISO form). */
  readonly #times: Float64Array;
  /** Row-major values of the requested signals; NaN for an empty cell. */
  readonly #values: Float64Array;
  readonly #end: number;
  readonly #isoForm: boolean;
  readonly #loop: boolean;

  private constructor(
    signals: readonly string[],
    times: Float64Array,
    values: Float64Array,
    isoForm: boolean,
    loop: boolean,
  ) {
    this.signals = Object.freeze([...signals]);
    this.#times = times;
    this.#values = values;
    this.#isoForm = isoForm;
    this.#loop = loop;
    const n = times.length;
    this.#end = n === 1 ? Infinity : (times[n - 1] ?? 0) * 2 - (times[n - 2] ?? 0);
  }

  static async open(config: CsvMeterConfig, wanted: readonly string[], cwd: string): Promise<CsvMeter> {
    if (typeof config.path !== 'string' || config.path === '')
      throwTypeError('csv meter path must be a non-empty string');
    if (typeof config.loop !== 'boolean') throwTypeError('csv meter loop must be true or false');
    const file = path.resolve(cwd, config.path);
    let text: string;
    try {
      text = readFileBounded(file, MAX_CSV_BYTES).toString('utf8');
    } catch (err) {
      if (errCode(err) === 'EFBIG')
        throw new DeviceError(
          'BAD_FILE',
          `csv ${file}: more than ${MAX_CSV_BYTES >> 20} MiB, not read (a year at 5 minutes is about 3 MiB: use a coarser step, or loop a shorter file)`,
        );
      throw new DeviceError('IO', `csv ${file}: cannot read (${errCode(err)})`, { cause: err });
    }
    const bad = (line: number, column: number, what: string): DeviceError =>
      new DeviceError('BAD_FILE', `csv ${file} line ${line}, column ${column}: ${what}`);

    // Spreadsheet programs start their CSV export with a byte-order mark, which would hide the "t" of the header.
    const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
    let header: string[] | undefined;
    let headerLine = 0;
    let columns: number[] = [];
    let signals: readonly string[] = wanted;
    const times: number[] = [];
    const values: number[] = [];
    let isoForm: boolean | undefined;
    for (let i = 0; i < lines.length; i++) {
      const raw = lines[i] ?? '';
      const lineNo = i + 1;
      if (raw.trim() === '' || raw.trimStart().startsWith('#')) continue;
      const cells = raw.split(',').map((c) => c.trim());
      if (header === undefined) {
        header = cells;
        headerLine = lineNo;
        if (cells[0] !== 't') throw bad(lineNo, 1, `the header must start with "t", not ${shortText(cells[0] ?? '')}`);
        const seen = new Set<string>();
        for (let c = 1; c < cells.length; c++) {
          const name = cells[c] ?? '';
          if (name === '') throw bad(lineNo, c + 1, 'empty signal name in the header');
          if (seen.has(name)) throw bad(lineNo, c + 1, `signal ${shortText(name)} appears twice in the header`);
          seen.add(name);
        }
        if (cells.length < 2) throw bad(lineNo, 2, 'the header names no signal');
        if (signals.length === 0) signals = cells.slice(1);
        columns = signals.map((s) => {
          const c = cells.indexOf(s, 1);
          if (c < 0) throw bad(lineNo, cells.length + 1, `no column for signal ${shortText(s)}`);
          return c;
        });
        continue;
      }
      if (cells.length !== header.length) {
        throw bad(
          lineNo,
          Math.min(cells.length, header.length) + 1,
          `${cells.length} columns where the header has ${header.length}`,
        );
      }
      const tCell = cells[0] ?? '';
      let seconds: number;
      const rowIso = !SECONDS.test(tCell);
      if (rowIso) {
        try {
          seconds = EbTime.parse(tCell, 't').epochMs / 1000;
        } catch {
          throw bad(
            lineNo,
            1,
            `t must be seconds since midnight or an ISO time with an offset, not ${shortText(tCell)}`,
          );
        }
      } else {
        seconds = Number(tCell);
        if (seconds >= 86_400) throw bad(lineNo, 1, `t ${tCell} is beyond one day: use ISO times for longer files`);
      }
      if (isoForm !== undefined && isoForm !== rowIso) {
        throw bad(lineNo, 1, `t mixes ISO times and seconds (this row: ${rowIso ? 'ISO' : 'seconds'})`);
      }
      isoForm = rowIso;
      const previous = times[times.length - 1];
      if (previous !== undefined && !(seconds > previous)) throw bad(lineNo, 1, `t ${tCell} does not increase`);
      for (let c = 1; c < cells.length; c++) {
        const cell = cells[c] ?? '';
        if (cell !== '' && (!NUMBER.test(cell) || !Number.isFinite(Number(cell)))) {
          throw bad(lineNo, c + 1, `${header[c] ?? ''}: not a number: ${shortText(cell)}`);
        }
      }
      times.push(seconds);
      for (const c of columns) {
        const cell = cells[c] ?? '';
        values.push(cell === '' ? NaN : Number(cell));
      }
    }
    if (header === undefined) throw bad(1, 1, 'empty file: expected a header "t,<signal>,..."');
    if (times.length === 0) throw bad(headerLine + 1, 1, 'no rows after the header');
    return new CsvMeter(signals, Float64Array.from(times), Float64Array.from(values), isoForm === true, config.loop);
  }

  async read(t: number): Promise<Reading> {
    if (typeof t !== 'number' || !Number.isFinite(t)) throwRangeError(`csv meter: invalid time ${String(t)}`);
    const first = this.#times[0] ?? 0;
    let pos = this.#isoForm ? t / 1000 : (((t % DAY_MS) + DAY_MS) % DAY_MS) / 1000;
    if (this.#loop && Number.isFinite(this.#end)) {
      const span = this.#end - first;
      pos = first + ((((pos - first) % span) + span) % span);
    }
    const out: Reading = {};
    const row = pos >= first && pos < this.#end ? lastAtOrBefore(this.#times, pos) : -1;
    const width = this.signals.length;
    this.signals.forEach((s, i) => {
      const v = row < 0 ? NaN : (this.#values[row * width + i] ?? NaN);
      out[s] = Number.isNaN(v) ? null : v;
    });
    return out;
  }

  async close(): Promise<void> {}
}

function lastAtOrBefore(times: Float64Array, x: number): number {
  let lo = 0;
  let hi = times.length - 1;
  if (hi < 0 || (times[0] ?? Infinity) > x) return -1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((times[mid] ?? Infinity) <= x) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
