/**
 * Which message types a party of each role sends to a party of another role: the direction columns of the data
 * model's catalogue (§3.3 HEH level, §3.4 market level). Provisioning turns them into the routing keys each party may
 * publish on its `<me>-to-<peer>` exchanges (RabbitMQ topic permissions), so that the broker itself refuses, say, an
 * `activate` from a hub or a `report` from an aggregator. A party's `sends` in the parties file replaces its row.
 */

export const ROLES = ['hub', 'aggregator', 'dso', 'tso', 'market', 'operator'] as const;
export type Role = (typeof ROLES)[number];

/** HEH → controlling entity (§3.3 "HEH→CE"), with the first version's `load_report`. */
const HUB_TO_CE = [
  'report',
  'energy_events',
  'accept_activation',
  'reject_activation',
  'modify_activation',
  'activation_capacity',
  'get_all_prices',
  'status_report',
  'capabilities',
  'device_capabilities',
  'availability',
  'load_report',
] as const;

/** Controlling entity → HEH (§3.3 "CE→HEH"), with the known pilot extension and the first version's request. */
const CE_TO_HUB = [
  'get_report',
  'get_periodic_report',
  'get_energy_events',
  'get_energy_events_realtime',
  'activate',
  'get_activation_capacity',
  'contingency_activate',
  'contingency_end',
  'load_price',
  'generation_price',
  'get_status_report',
  'set_clock',
  'set_smart_mode',
  'get_capabilities',
  'ext_si_xlab_led_signal',
  'get_load_report',
] as const;

/** §3.4: the VPP as balancing service provider bids to its TSO; the TSO accepts, clears and activates. */
const BSP_TO_TSO = ['balancing_reserve_bid', 'balancing_energy_bid'] as const;
const TSO_TO_BSP = ['bid_accepted', 'market_cleared', 'activate_bid'] as const;
/** §3.4: a TSO forwards energy bids and asks for balancing; the super-TSO (the market) activates or gives up. */
const TSO_TO_MARKET = ['balancing_energy_bid', 'request_balancing'] as const;
const MARKET_TO_TSO = ['activate_bid', 'balancing_activated', 'balancing_unachievable'] as const;

/**
 * Sender role → receiver role → types. Hubs talk to the controlling entities (aggregator, DSO, the HEH operator); a
 * DSO also reaches hubs through an aggregator acting as their operator, with `heh_id` set (§1.4, the heh_id rule).
 * A pair of roles missing here has nothing to say to each other unless the parties file says so (`sends`).
 */
export const SENDS: { readonly [S in Role]: { readonly [R in Role]?: readonly string[] } } = {
  hub: { aggregator: HUB_TO_CE, dso: HUB_TO_CE, operator: HUB_TO_CE },
  aggregator: { hub: CE_TO_HUB, dso: HUB_TO_CE, tso: BSP_TO_TSO },
  dso: { hub: CE_TO_HUB, aggregator: CE_TO_HUB },
  operator: { hub: CE_TO_HUB },
  tso: { aggregator: TSO_TO_BSP, market: TSO_TO_MARKET },
  market: { tso: MARKET_TO_TSO },
};

/**
 * Sent on every link whatever the table or a party's `sends` say: every message with a `msg_id` is answered with a
 * `response` (§3.5), and a party that seals announces a new key of its own with a `key_update` (docs/crypto.md).
 */
export const ALWAYS = ['response', 'key_update'] as const;
