/**
 * The message tables (data model §3.3). Each table is the single definition of a message type: its TypeScript type
 * is inferred from it (`Message<'activate'>`), and decode, encode and validation read it.
 *
 * HEH level (§3.3, 25 types and `availability`), the pilot extension `ext_si_xlab_led_signal`, the market level
 * (§3.4) and the first version's `get_load_report` / `load_report` (D3.2.1, decision 6 of §3.9).
 *
 * It stays one file (over 500 lines): it is the catalogue itself, one table per type in the data model's order, read
 * side by side with the specification; split, a type's table would be harder to find and the registry less obvious.
 */
import type { ResponseCode } from './errors.js';
import {
  arrayOf,
  arrayOfNullable,
  boolean,
  encodedKeys,
  type Fields,
  type Infer,
  integer,
  mapOf,
  name,
  nullable,
  number,
  object,
  oneOf,
  optional,
  optionalNullable,
  required,
  string,
  time,
  uuid,
} from './schema.js';
import type { EbTime } from './time.js';

/** A failed cross-field rule: the response code, the field, and the reason. */
export type Violation = readonly [ResponseCode, string, string];

export interface MessageSchema<M extends string = string, F extends Fields = Fields> {
  readonly msg: M;
  readonly fields: F;
  readonly keys: Readonly<Record<string, Buffer>>;
  /** Rules across fields, on both decode and encode. `strict` is true when emitting. */
  readonly check:
    | ((m: Infer<F>, strict: boolean, note: (diagnostic: string) => void) => Violation | undefined)
    | undefined;
}

function message<const M extends string, F extends Fields>(
  msg: M,
  fields: F,
  check?: (m: Infer<F>, strict: boolean, note: (d: string) => void) => Violation | undefined,
): MessageSchema<M, F> {
  // Every table with a required from and to (fromTo) has its period checked first, under its own name.
  const timed: MessageSchema<M, F>['check'] =
    fields['from'] === fromTo.from ? (m, strict, note) => period(m as never, msg) ?? check?.(m, strict, note) : check;
  return { msg, fields, keys: encodedKeys(fields), check: timed };
}

// Fields every HEH-level message may carry (§3.2): heh_id addresses an HEH through its operator; request_id
// correlates a get_* with its reply; msg_id asks for exactly one `response`. A heh_id (a MAC address in the pilot, a
// UUID in the examples) ends every routing key its answers carry, `<msg>.<heh_id>`, whose "."-separated words are
// the levels of their MQTT topic: printable ASCII without space, "/", "+", "#" or an empty word, at most 200
// characters, so that the key fits in AMQP's 255 bytes and each level is one without wildcards. A longer or stranger
// one was taken, then its answer failed: an activation accepted and stored, and answered 500.
const hehId = optionalNullable(
  string({
    max: 200,
    pattern: /^[!"$-*,\-0-~]+(?:\.[!"$-*,\-0-~]+)*$/,
    what: 'an HEH id (printable ASCII without space, "/", "+", "#" or an empty "."-separated word)',
  }),
);
const requestId = optional(uuid());
// On every HEH-level type (§3.2), but contingency_activate, never acked (§3.5), and the first version's
// get_load_report and load_report, which carry no ids.
const msgId = optional(uuid());
/** The ids as most types carry them, last: heh_id, request_id and msg_id, or heh_id and msg_id. */
const hehMsg = { heh_id: hehId, msg_id: msgId };
const hehRequestMsg = { heh_id: hehId, request_id: requestId, msg_id: msgId };

/** The field types and fields several tables share (a field is a description: one object serves them all). */
const text255 = string({ max: 255 });
const text1024 = string({ max: 1024 });
const device = text255;
const fromTo = { from: required(time()), to: required(time()) };
const activation = { id: required(uuid()), modification_count: required(integer({ min: 0 })) };
const eurPerKWh = number({ what: 'a price in EUR/kWh' });
const eurPerMWh = number({ what: 'a price in EUR/MWh' });
const kWAtLeast0 = number({ min: 0, what: 'a power in kW' });
const smartMode = oneOf(['normal', 'passive', 'off']);
const statusCode = integer({ min: 100, max: 599 });
/**
 * A resolution or an interval: whole seconds, at most 366 days. Nothing in the data model is sampled or reported
 * less often, and a larger one put the periods it makes past year 9999, where no time can be written (an answer
 * that failed 500, a subscription stored that no report could ever carry).
 */
export const MAX_SPAN_S = 366 * 86_400;
const span = integer({ min: 1, max: MAX_SPAN_S });
const kW = (what = 'a power in kW'): ReturnType<typeof number> => number({ what });

/** D3.1.3 §4: a signal is `device.signal`. The 2015 example joins several in one string: split, with a diagnostic. */
const signals = required(arrayOf(text255));

function period(m: { from: EbTime; to: EbTime }, type: string): Violation | undefined {
  if (m.from.epochMs >= m.to.epochMs)
    return [454, `${type}.to`, `to (${m.to.toString()}) is not after from (${m.from.toString()})`];
  return undefined;
}

export const GetReport = message(
  'get_report',
  {
    ...fromTo,
    resolution: required(span),
    signals,
    ...hehRequestMsg,
  },
  (m, strict, note) => splitSignals(m.signals, 'get_report.signals', strict, note),
);

export const Report = message(
  'report',
  {
    ...fromTo,
    resolution: required(span),
    values: required(mapOf(arrayOfNullable(number()))),
    ...hehRequestMsg,
  },
  (m) => {
    // D3.1.3 §5.1.3: n = (to - from) / resolution. When a request's period is not a multiple of the resolution, the
    // hub extends the report's `to`, so a report's own period always is one.
    const periodS = (m.to.epochMs - m.from.epochMs) / 1000;
    const n = periodS / m.resolution;
    if (!Number.isInteger(n))
      return [454, 'report.to', `the period of ${periodS} s is not a multiple of the resolution ${m.resolution} s`];
    for (const [signal, values] of Object.entries(m.values)) {
      if (values.length !== n)
        return [454, `report.values.${signal}`, `${values.length} values, expected ${n} ((to - from) / resolution)`];
    }
    return undefined;
  },
);

export const Activate = message('activate', {
  ...activation,
  ...fromTo,
  quantity: required(kW()),
  device: nullable(device),
  ...hehMsg,
});

export const AcceptActivation = message('accept_activation', {
  ...activation,
  ...hehMsg,
});

export const RejectActivation = message('reject_activation', {
  ...activation,
  heh_id: hehId,
  reason: optional(text1024),
  code: optional(statusCode),
  msg_id: msgId,
});

export const ModifyActivation = message('modify_activation', {
  ...activation,
  ...fromTo,
  quantity: required(kW()),
  device: nullable(text255),
  ...hehMsg,
});

export const Response = message('response', {
  msg_id: nullable(uuid()),
  response_code: required(statusCode),
  response_subcode: optional(integer()),
  response_desc: required(text1024),
  ref_msg: optional(name()),
  request_id: requestId,
  id: optional(uuid()),
});

const severity = integer({ min: 0 });

export const GetPeriodicReport = message(
  'get_periodic_report',
  {
    interval: required(integer({ min: -1, max: MAX_SPAN_S })),
    first_from: nullable(time()),
    resolution: required(span),
    signals,
    ...hehRequestMsg,
  },
  (m, strict, note) =>
    m.interval === 0
      ? [454, 'get_periodic_report.interval', 'an interval of 0 s; use -1 to cancel the subscription']
      : splitSignals(m.signals, 'get_periodic_report.signals', strict, note),
);

export const GetEnergyEvents = message('get_energy_events', {
  ...fromTo,
  severity: required(severity),
  ...hehRequestMsg,
});

export const GetEnergyEventsRealtime = message('get_energy_events_realtime', {
  severity: required(severity),
  ...hehMsg,
});

export const EnergyEvents = message('energy_events', {
  // type: voltage_low, voltage_high, frequency_low, frequency_high, "more may follow" (D3.1.3): any name.
  events: required(
    arrayOf(
      object({
        severity: required(severity),
        type: required(name()),
        start_time: required(time()),
        end_time: optionalNullable(time()),
      }),
    ),
  ),
  ...hehRequestMsg,
});

export const GetActivationCapacity = message('get_activation_capacity', {
  device: optionalNullable(device),
  ...hehRequestMsg,
});

export const ActivationCapacity = message('activation_capacity', {
  pos_capacity: required(kWAtLeast0),
  neg_capacity: required(kWAtLeast0),
  device: optionalNullable(device),
  ...hehRequestMsg,
});

export const ContingencyActivate = message('contingency_activate', {
  id: required(uuid()),
  ...fromTo,
  max_quantity: nullable(kWAtLeast0),
  heh_id: hehId,
});

export const ContingencyEnd = message('contingency_end', {
  id: required(uuid()),
  end: required(time()),
  ...hehMsg,
});

export const LoadPrice = message('load_price', {
  ...fromTo,
  price: required(eurPerKWh),
  ...hehMsg,
});

export const GenerationPrice = message('generation_price', {
  ...fromTo,
  price: required(eurPerKWh),
  device: required(device),
  ...hehMsg,
});

export const GetAllPrices = message('get_all_prices', { ...hehRequestMsg });

export const GetStatusReport = message('get_status_report', {
  ...fromTo,
  severity_threshold: required(severity),
  ...hehRequestMsg,
});

export const StatusReport = message('status_report', {
  // D3.1.3 leaves status open ("not sure what we need here", example "OK"); §3.3 proposes ok, degraded, error,
  // shutting_down. Any short string is read, so 2015 peers interoperate.
  status: required(text255),
  clock: required(time()),
  events: required(arrayOf(object({ time: required(time()), severity: required(severity), type: required(name()) }))),
  mode: optional(smartMode),
  ...hehRequestMsg,
});

export const SetClock = message('set_clock', {
  offset: nullable(number({ what: 'seconds to add' })),
  ...hehMsg,
});

export const SetSmartMode = message('set_smart_mode', {
  mode: required(smartMode),
  reset: required(boolean()),
  ...hehMsg,
});

export const GetCapabilities = message('get_capabilities', {
  device: nullable(device),
  ...hehRequestMsg,
});

export const Capabilities = message('capabilities', {
  device_name: required(text255),
  device_version: required(text255),
  devices: required(arrayOf(device)),
  device_sn: optional(text255),
  device_ip: optional(text255),
  device_mac: optional(text255),
  dm_version: optional(string({ max: 16, pattern: /^\d+\.\d+$/, what: 'a MAJOR.MINOR version' })),
  supported_msgs: optional(arrayOf(name())),
  ...hehRequestMsg,
});

export const DeviceCapabilities = message(
  'device_capabilities',
  {
    device: required(device),
    classes: required(arrayOf(oneOf(['consumer', 'generator', 'storage']))),
    type: required(text255),
    device_name: required(text255),
    version: required(text255),
    signals: required(
      arrayOf(
        object({
          name: required(text255),
          desc: required(text1024),
          unit: required(string({ max: 32 })),
          range: optional(arrayOf(number())),
        }),
      ),
    ),
    can_predict_profile: required(boolean()),
    can_predict_curtailment_capacity: required(boolean()),
    ...hehRequestMsg,
  },
  (m) => {
    for (let i = 0; i < m.signals.length; i++) {
      const r = m.signals[i]?.range;
      if (r !== undefined && (r.length !== 2 || (r[0] as number) > (r[1] as number))) {
        return [454, `device_capabilities.signals[${i}].range`, 'a range is [min, max] with min <= max'];
      }
    }
    return undefined;
  },
);

export const Availability = message('availability', {
  ...fromTo,
  available: required(boolean()),
  device: optionalNullable(device),
  reason: optional(text1024),
  ...hehMsg,
});

/** The pilot's LED extension (D3.1.3 §4.2.5 example); optional to support. */
export const ExtSiXlabLedSignal = message('ext_si_xlab_led_signal', {
  duration: required(integer({ min: 0 })),
  ...hehMsg,
});

// ---- market level (§3.4): quantities in MW, prices in EUR/MWh ----------------------------------------------------

const product = object({ positive: required(boolean()), start: required(time()), end: required(time()) });
const bidId = required(text255);
const marketMsgId = required(uuid());
const MW = number({ what: 'a power in MW' });

function productPeriod(p: { start: EbTime; end: EbTime }, path: string): Violation | undefined {
  return p.start.epochMs >= p.end.epochMs ? [454, `${path}.end`, 'the product ends before it starts'] : undefined;
}

export const BalancingReserveBid = message(
  'balancing_reserve_bid',
  {
    msg_id: marketMsgId,
    bid_id: bidId,
    product: required(product),
    quantity: required(number({ min: 0, what: 'a power in MW' })),
    divisible: optional(boolean()),
    reserve_price: required(eurPerMWh),
    energy_price: required(eurPerMWh),
  },
  (m) => productPeriod(m.product, 'balancing_reserve_bid.product'),
);

export const BidAccepted = message('bid_accepted', { msg_id: marketMsgId, bid_id: bidId, quantity: required(MW) });

export const MarketCleared = message('market_cleared', { product: required(product) }, (m) =>
  productPeriod(m.product, 'market_cleared.product'),
);

export const BalancingEnergyBid = message(
  'balancing_energy_bid',
  {
    msg_id: marketMsgId,
    bid_id: bidId,
    product: required(product),
    quantity: required(number({ min: 0, what: 'an energy in MWh' })),
    divisible: optional(boolean()),
    energy_price: required(eurPerMWh),
  },
  (m) => productPeriod(m.product, 'balancing_energy_bid.product'),
);

function openPeriod(m: { from: EbTime | null; to: EbTime | null }, type: string): Violation | undefined {
  return m.from !== null && m.to !== null ? period({ from: m.from, to: m.to }, type) : undefined;
}

export const ActivateBid = message(
  'activate_bid',
  {
    msg_id: marketMsgId,
    bid_id: bidId,
    quantity: required(MW),
    from: nullable(time()),
    to: nullable(time()),
  },
  (m) => openPeriod(m, 'activate_bid'),
);

export const RequestBalancing = message(
  'request_balancing',
  {
    msg_id: marketMsgId,
    quantity: required(MW),
    from: nullable(time()),
    to: nullable(time()),
  },
  (m) => openPeriod(m, 'request_balancing'),
);

export const BalancingActivated = message('balancing_activated', {
  quantity: required(MW),
  ...fromTo,
  originating_tso: required(text255),
  bid_id: nullable(text255),
});

export const BalancingUnachievable = message('balancing_unachievable', {
  msg_id: marketMsgId,
  request_id: required(uuid()),
});

// ---- the first version (D3.2.1): answered in kind when a peer uses these names ------------------------------------

export const GetLoadReport = message('get_load_report', {
  ...fromTo,
  resolution: required(span),
  device: optionalNullable(device),
  heh_id: hehId,
});

export const LoadReport = message(
  'load_report',
  {
    ...fromTo,
    resolution: required(span),
    device: optionalNullable(device),
    values: required(arrayOfNullable(number())),
    heh_id: hehId,
  },
  (m) => {
    const n = (m.to.epochMs - m.from.epochMs) / 1000 / m.resolution;
    if (!Number.isInteger(n)) return [454, 'load_report.to', 'the period is not a multiple of the resolution'];
    return m.values.length === n ? undefined : [454, 'load_report.values', `${m.values.length} values, expected ${n}`];
  },
);

/** Every type this codec knows, by `msg`. */
export const SCHEMAS = {
  get_report: GetReport,
  get_periodic_report: GetPeriodicReport,
  report: Report,
  get_energy_events: GetEnergyEvents,
  get_energy_events_realtime: GetEnergyEventsRealtime,
  energy_events: EnergyEvents,
  activate: Activate,
  accept_activation: AcceptActivation,
  reject_activation: RejectActivation,
  modify_activation: ModifyActivation,
  get_activation_capacity: GetActivationCapacity,
  activation_capacity: ActivationCapacity,
  contingency_activate: ContingencyActivate,
  contingency_end: ContingencyEnd,
  load_price: LoadPrice,
  generation_price: GenerationPrice,
  get_all_prices: GetAllPrices,
  get_status_report: GetStatusReport,
  status_report: StatusReport,
  set_clock: SetClock,
  set_smart_mode: SetSmartMode,
  get_capabilities: GetCapabilities,
  capabilities: Capabilities,
  device_capabilities: DeviceCapabilities,
  response: Response,
  availability: Availability,
  ext_si_xlab_led_signal: ExtSiXlabLedSignal,
  balancing_reserve_bid: BalancingReserveBid,
  bid_accepted: BidAccepted,
  market_cleared: MarketCleared,
  balancing_energy_bid: BalancingEnergyBid,
  activate_bid: ActivateBid,
  request_balancing: RequestBalancing,
  balancing_activated: BalancingActivated,
  balancing_unachievable: BalancingUnachievable,
  get_load_report: GetLoadReport,
  load_report: LoadReport,
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
    const parts = (list[i] as string)
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    list.splice(i, 1, ...parts);
    i += parts.length - 1;
  }
  return undefined;
}
