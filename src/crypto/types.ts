/**
 * The message type codes of the envelope header (2 bytes). A wire registry: append only, a code is never reused
 * or renumbered, so this list is written out rather than derived from the codec's tables (whose order may change).
 * The tests check that every codec message type has a code.
 */
import { refuse } from './errors.js';

const EBADGE = [
  // HEH level (data model §3.3), in the order of D3.1.3 §5
  'get_report',
  'get_periodic_report',
  'report',
  'get_energy_events',
  'get_energy_events_realtime',
  'energy_events',
  'activate',
  'accept_activation',
  'reject_activation',
  'modify_activation',
  'get_activation_capacity',
  'activation_capacity',
  'contingency_activate',
  'contingency_end',
  'load_price',
  'generation_price',
  'get_all_prices',
  'get_status_report',
  'status_report',
  'set_clock',
  'set_smart_mode',
  'get_capabilities',
  'capabilities',
  'device_capabilities',
  'response',
  'availability',
  'ext_si_xlab_led_signal',
  // market level (§3.4)
  'balancing_reserve_bid',
  'bid_accepted',
  'market_cleared',
  'balancing_energy_bid',
  'activate_bid',
  'request_balancing',
  'balancing_activated',
  'balancing_unachievable',
  // the first version (D3.2.1)
  'get_load_report',
  'load_report',
] as const;

/** Control messages of the envelope itself, from 0xff00: never handed to the bus's handlers. */
export const KEY_UPDATE = 'key_update';

const CODES = new Map<string, number>(EBADGE.map((t, i) => [t, i + 1]));
CODES.set(KEY_UPDATE, 0xff00);
const NAMES = new Map<number, string>([...CODES].map(([t, c]) => [c, t]));

export function typeCode(type: string): number {
  const code = CODES.get(type);
  if (code === undefined) refuse('UNKNOWN_TYPE', `message type "${type}" has no envelope type code`);
  return code;
}

/** The type name of a header code, or undefined for a code this version does not know. */
export function typeName(code: number): string | undefined {
  return NAMES.get(code);
}

export const KNOWN_TYPES: readonly string[] = [...CODES.keys()];
