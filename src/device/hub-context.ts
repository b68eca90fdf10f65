/**
 * What the parts of the hub (reports.ts, activations.ts) are given by the Hub that owns them (hub.ts): its
 * configuration and stores, its clock and time, its events, and the way its own messages go out (the outbox).
 * Kept apart so that the parts depend on this and not on the Hub class.
 */
import type { Connector } from '../bus/index.js';
import type { Message } from '../codec/index.js';
import type { Clock } from '../core/clock.js';
import type { HubConfig } from './config/index.js';
import type { Actuator } from './devices/index.js';
import type { History } from './history.js';
import type { EventType } from './hub.js';
import type { Logger } from './log.js';
import type { StateStore } from './state.js';

export interface HubContext {
  readonly config: HubConfig;
  readonly bus: Connector;
  readonly history: History;
  readonly actuators: ReadonlyMap<string, Actuator>;
  readonly store: StateStore;
  readonly log: Logger;
  /** For the timers of reports and activations (unref'd: they must not keep the process alive). */
  readonly clock: Clock;
  /** Hub time: the clock plus the offset a set_clock allowed us to take. */
  now(): number;
  /** True once stop() began: nothing new is scheduled. */
  readonly stopping: boolean;
  /** Records an event (status_report, energy_events) and pushes it to realtime subscribers. */
  event(type: EventType, end?: number | null): Promise<void>;
  /** Sends one of the hub's own messages through the outbox (kept until the broker confirms it); never throws. */
  send(peer: string, message: Message, messageId?: string): Promise<void>;
}
