/**
 * The message tables (data model §3.3). Each table is the single definition of a message type: its TypeScript type
 * is inferred from it (`Message<'activate'>`), and decode, encode and validation read it.
 *
 * Started with the request/report and activation core of the HEH level plus `response`; the rest of §3.3, the
 * market level (§3.4), `availability`, the pilot extension and the v1 names follow the same pattern.
 */
import type { ResponseCode } from './errors.js';
import {
  arrayOf, arrayOfNullable, encodedKeys, integer, mapOf, name, nullable, number, optional, optionalNullable, required,
  string, time, uuid, type Fields, type Infer,
} from './schema.js';
import type { EbTime } from './time.js';

/** A failed cross-field rule: the response code, the field, and the reason. */
export type Violation = readonly [ResponseCode, string, string];

export interface MessageSchema<M extends string = string, F extends Fields = Fields> {
  readonly msg: M;
  readonly fields: F;
  readonly keys: Readonly<Record<string, Buffer>>;
  /** Rules across fields, on both decode and encode. `strict` is true when emitting. */
  readonly check: ((m: Infer<F>, strict: boolean, note: (diagnostic: string) => void) => Violation | undefined) | undefined;
}

function message<const M extends string, F extends Fields>(msg: M, fields: F,
  check?: (m: Infer<F>, strict: boolean, note: (d: string) => void) => Violation | undefined): MessageSchema<M, F> {
  return { msg, fields, keys: encodedKeys(fields), check };
}

// Fields every HEH-level message may carry (§3.2): heh_id addresses an HEH through its operator; request_id
// correlates a get_* with its reply; msg_id asks for exactly one `response`.
const hehId = optionalNullable(string({ max: 255 }));
const requestId = optional(uuid());
const msgId = optional(uuid());

/** D3.1.3 §4: a signal is `device.signal`. The 2015 example joins several in one string: split, with a diagnostic. */
const signals = required(arrayOf(string({ max: 255 })));

function period(m: { from: EbTime; to: EbTime }, type: string): Violation | undefined {
  if (m.from.epochMs >= m.to.epochMs) return [454, `${type}.to`, `to (${m.to.toString()}) is not after from (${m.from.toString()})`];
  return undefined;
}

export const GetReport = message('get_report', {
  from: required(time()), to: required(time()), resolution: required(integer({ min: 1 })), signals,
  heh_id: hehId, request_id: requestId, msg_id: msgId,
}, (m, strict, note) => period(m, 'get_report') ?? splitSignals(m.signals, 'get_report.signals', strict, note));

export const Report = message('report', {
  from: required(time()), to: required(time()), resolution: required(integer({ min: 1 })),
  values: required(mapOf(arrayOfNullable(number()))), heh_id: hehId, request_id: requestId,
}, (m) => {
  const bad = period(m, 'report');
  if (bad !== undefined) return bad;
  // D3.1.3 §5.1.3: n = (to - from) / resolution. When a request's period is not a multiple of the resolution, the
  // hub extends the report's `to`, so a report's own period always is one.
  const periodS = (m.to.epochMs - m.from.epochMs) / 1000;
  const n = periodS / m.resolution;
  if (!Number.isInteger(n)) return [454, 'report.to', `the period of ${periodS} s is not a multiple of the resolution ${m.resolution} s`];
  for (const [signal, values] of Object.entries(m.values)) {
    if (values.length !== n) return [454, `report.values.${signal}`, `${values.length} values, expected ${n} ((to - from) / resolution)`];
  }
  return undefined;
});

export const Activate = message('activate', {
  id: required(uuid()), modification_count: required(integer({ min: 0 })), from: required(time()), to: required(time()),
  quantity: required(number({ what: 'a power in kW' })), device: nullable(string({ max: 255 })), heh_id: hehId, msg_id: msgId,
}, (m) => period(m, 'activate'));

export const AcceptActivation = message('accept_activation', {
  id: required(uuid()), modification_count: required(integer({ min: 0 })), heh_id: hehId,
});

export const RejectActivation = message('reject_activation', {
  id: required(uuid()), modification_count: required(integer({ min: 0 })), heh_id: hehId,
  reason: optional(string({ max: 1024 })), code: optional(integer({ min: 100, max: 599 })),
});

export const ModifyActivation = message('modify_activation', {
  id: required(uuid()), modification_count: required(integer({ min: 0 })), from: required(time()), to: required(time()),
  quantity: required(number({ what: 'a power in kW' })), device: nullable(string({ max: 255 })), heh_id: hehId,
}, (m) => period(m, 'modify_activation'));

export const Response = message('response', {
  msg_id: nullable(uuid()), response_code: required(integer({ min: 100, max: 599 })), response_subcode: optional(integer()),
  response_desc: required(string({ max: 1024 })), ref_msg: optional(name()), request_id: requestId, id: optional(uuid()),
});

/** Every type this codec knows, by `msg`. */
export const SCHEMAS = {
  get_report: GetReport,
  report: Report,
  activate: Activate,
  accept_activation: AcceptActivation,
  reject_activation: RejectActivation,
  modify_activation: ModifyActivation,
  response: Response,
} as const;

export type MessageType = keyof typeof SCHEMAS;

/** A message of one type: `{ msg: 'activate', id, modification_count, ... }` plus any `ext_*` fields. */
export type Message<T extends MessageType = MessageType> = T extends MessageType
  ? { msg: T } & Infer<(typeof SCHEMAS)[T]['fields']> & { [ext: `ext_${string}`]: unknown }
  : never;

function splitSignals(list: string[], path: string, strict: boolean, note: (d: string) => void): Violation | undefined {
  for (let i = 0; i < list.length; i++) {
    if (!(list[i] as string).includes(',')) continue;
    if (strict) return [454, `${path}[${i}]`, 'one signal name per array element (no comma-joined names)'];
    // The 2015 get_report example: ["total.ua, total.ub, total.uc, WaterHeater01.p"]. Split in place.
    note(`${path}[${i}]: comma-joined signal names split into separate elements`);
    const parts = (list[i] as string).split(',').map((s) => s.trim()).filter((s) => s !== '');
    list.splice(i, 1, ...parts);
    i += parts.length - 1;
  }
  return undefined;
}
