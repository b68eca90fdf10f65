/**
 * What the hub says about itself (data model §3.3): `capabilities` (the hub, its devices, the messages it handles)
 * and `device_capabilities` (one device, its signals). Sent at registration and as replies to get_capabilities.
 */
import type { Message } from '../codec/index.js';
import { HUB_VERSION } from './about.js';
import type { HubConfig } from './config/index.js';
import { echo } from './replies.js';

/** Messages this hub handles (capabilities.supported_msgs). */
const SUPPORTED = [
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
  'get_load_report',
  'response',
];

export function capabilities(c: HubConfig, request: Message | undefined): Message<'capabilities'> {
  return {
    msg: 'capabilities',
    device_name: 'ebadge-hub',
    device_version: HUB_VERSION,
    devices: c.devices.map((d) => d.name),
    dm_version: '3.1',
    supported_msgs: SUPPORTED,
    ...echo(request),
  };
}

export function deviceCapabilities(
  c: HubConfig,
  name: string,
  request: Message | undefined,
): Message<'device_capabilities'> {
  const d = c.devices.find((x) => x.name === name);
  if (d === undefined) throw new Error(`no device ${name}`);
  return {
    msg: 'device_capabilities',
    device: d.name,
    classes: d.classes,
    type: d.type,
    device_name: d.name,
    version: d.version,
    signals: d.signals.map((s) => ({
      name: s.name,
      desc: s.desc,
      unit: s.unit,
      ...(s.range === undefined ? {} : { range: s.range }),
    })),
    can_predict_profile: false,
    can_predict_curtailment_capacity: false,
    ...echo(request),
  } as Message<'device_capabilities'>;
}
