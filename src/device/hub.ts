/**
 * The HEH side of the eBADGE HEH-level catalogue (data model §3.3, D3.1.3 §5), on top of the bus.
 *
 * On every start the hub registers (its keys when it seals, `capabilities`, then `device_capabilities` per device, to
 * every peer) and asks for the prices in force (`get_all_prices`). It samples its meters once per resolution into the
 * history, answers reports from it and keeps periodic report subscriptions (reports.ts), keeps realtime event
 * subscriptions, decides and executes activations through the actuators (activations.ts), and keeps prices, the smart
 * mode and its events.
 * Everything it must remember across a restart is in the state file (state.ts); measurements are in the history
 * (history.ts). This file holds the lifecycle, the handlers' wiring and the small handlers, events, and the way the
 * hub's own messages go out (through the outbox).
 *
 * Errors are answered as §3.6 says (replies.ts): a `response` with the code, the type answered (`ref_msg`) and the
 * request's `request_id` or activation `id`; activations are answered with accept / reject / modify for their
 * (id, modification_count), never with a bare 200. Time and timers come from an injectable clock, so that the
 * handlers, activations and periodic reports are tested without waiting (test/unit/device/hub-*.test.ts).
 *
 * About 500 lines, kept whole: the larger handlers already live apart, and what stays is the wiring they share.
 */
import { randomUUID } from 'node:crypto';
import { type Connector, type Handler, type HandlerContext, routingKeyOf } from '../bus/index.js';
import { bodyWriter, EbTime, type Message, type MessageType } from '../codec/index.js';
import { type Clock, systemClock, type Timer } from '../core/clock.js';
import { EbadgeError } from '../core/errors.js';
import { shown } from '../core/shown.js';
import { HUB_VERSION } from './about.js';
import { Activations } from './activations.js';
import { capabilities, deviceCapabilities } from './capabilities.js';
import type { HubConfig } from './config/index.js';
import type { Actuator, Meter } from './devices/index.js';
import type { History } from './history.js';
import type { HubContext } from './hub-context.js';
import type { Logger } from './log.js';
import type { Outbox } from './outbox.js';
import { hehOf, refuse, toEnergyEvent } from './replies.js';
import { Reports } from './reports.js';
import { requestLogged } from './request-log.js';
import type { HubEvent, Price, StateStore } from './state.js';

export { derivedUuid } from './reports.js';
export { HUB_VERSION };

/** Event types and severities (status_report and energy_events share them; 0 = information ... 3 = critical). */
export const EVENTS = {
  started: 0,
  stopping: 0,
  network_up: 1,
  network_down: 2,
  broker_reconnect: 1,
  meter_fault: 2,
  meter_ok: 1,
  actuator_fault: 3,
  activation_start: 0,
  activation_end: 0,
  contingency_start: 2,
  contingency_end: 1,
  clock_set: 1,
  mode_changed: 1,
  // The disk under stateDir (src/device/storage.ts): refusing writes (end_time null until storage_ok), writing
  // again, data that could not be kept at all, the state file repaired at start.
  storage_fault: 2,
  storage_ok: 1,
  storage_lost: 3,
  state_damaged: 3,
} as const;
export type EventType = keyof typeof EVENTS;

export interface HubDeps {
  config: HubConfig;
  bus: Connector;
  history: History;
  meters: ReadonlyMap<string, Meter>;
  actuators: ReadonlyMap<string, Actuator>;
  store: StateStore;
  log: Logger;
  /** Where the hub's own messages (reports, events) wait for the broker's confirm; replayed after a restart. */
  outbox?: Outbox;
  /** Time and timers (default the system clock; tests move a ManualClock). */
  clock?: Clock;
}

/** How often messages still in the outbox (the broker did not confirm them) are sent again. */
const OUTBOX_RETRY_MS = 60_000;

/** The most prices kept (in force or to come); the next is refused 469. */
export const MAX_PRICES = 1_000;

/** How long a stop waits for the hub's own sends under way before the connection closes under them. */
const STOP_SEND_WAIT_MS = 5_000;
/**
 * The largest reading taken, either way: far past any home's power or energy (1e9 kW), and small enough that sums
 * and averages of a day of them stay finite (1.7e308 was stored, and every report of it failed 500 on Infinity).
 */
const MAX_READING = 1e9;
/** How often our keys are announced again while a rotation runs (see #announceRotation). */
const ANNOUNCE_MS = 3_600_000;
/**
 * Why an outbox message can never be sent, whatever the broker does: its peer left hub.json, or the keyring no
 * longer lets it go to that peer (sealing refuses its type).
 */
const NEVER_SENDABLE = new Set(['UNKNOWN_PEER', 'INVALID_MESSAGE', 'TYPE_NOT_ALLOWED', 'UNKNOWN_TYPE']);
/**
 * How far set_clock may move the hub's time from its system clock in all: a year, far past any drift NTP leaves,
 * and well inside the years a message can carry (an offset of 1e300 s was taken and stored, and every status report
 * failed after it, restarts included).
 */
export const MAX_CLOCK_OFFSET_S = 366 * 86_400;

export class Hub {
  readonly #d: HubDeps;
  // The dependencies used most, at hand.
  readonly #config: HubConfig;
  readonly #bus: Connector;
  readonly #store: StateStore;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #timers = new Set<Timer>();
  readonly #reports: Reports;
  readonly #activations: Activations;
  #sampler: Timer | undefined;
  /** The start of the next slot to read (once it is over). */
  #slot: number | undefined;
  #faulty = new Set<string>();
  #stopping = false;
  /** The bus is started and its connection up: the hub's own messages are sent now, not only kept in the outbox. */
  #online = false;
  /** The disk under stateDir (storage.ts): faulty while the stores cannot write. */
  #storage: { readonly faulty: boolean } | undefined;
  /** Outbox records being sent now, so that a retry round does not send them twice. */
  readonly #sending = new Set<number>();
  /** The hub's own sends under way (never rejecting), which a stop lets finish. */
  readonly #sends = new Set<Promise<unknown>>();

  constructor(deps: HubDeps) {
    this.#d = deps;
    this.#config = deps.config;
    this.#bus = deps.bus;
    this.#store = deps.store;
    this.#log = deps.log;
    this.#clock = deps.clock ?? systemClock;
    const hub = this;
    const context: HubContext = {
      config: deps.config,
      bus: deps.bus,
      history: deps.history,
      actuators: deps.actuators,
      store: deps.store,
      log: deps.log,
      clock: this.#clock,
      now: () => this.now(),
      get stopping() {
        return hub.#stopping;
      },
      event: (type, end) => this.event(type, end),
      send: (peer, message, messageId) => this.#send(peer, message, messageId),
    };
    this.#reports = new Reports(context);
    this.#activations = new Activations(context);
    this.#register();
  }

  /** Hub time: the clock plus the offset a set_clock allowed us to take. */
  now(): number {
    return this.#clock.now() + this.#store.state.clockOffsetS * 1000;
  }

  /** From now on a storage fault makes the status `degraded` (storage.ts attach()). */
  watchStorage(health: { readonly faulty: boolean }): void {
    this.#storage = health;
  }

  /**
   * status_report's status (data model: ok, degraded, error, shutting_down): degraded while a meter fails or the disk
   * refuses writes (the hub runs, but from memory or with gaps); shutting_down once stop() began.
   */
  get status(): 'ok' | 'degraded' | 'shutting_down' {
    if (this.#stopping) return 'shutting_down';
    return this.#faulty.size > 0 || this.#storage?.faulty === true ? 'degraded' : 'ok';
  }

  get signals(): string[] {
    return this.#reports.signals;
  }

  /**
   * What the hub does without a broker, from the first second: sampling, the subscriptions and activations that
   * survived a restart (their periods go into the outbox), the outbox's retry round. connected() follows once the
   * broker is reached, which may be never.
   */
  async start(): Promise<void> {
    await this.event('started');
    this.#scheduleSampling();
    if (this.#d.outbox !== undefined) this.#every(OUTBOX_RETRY_MS, () => this.#resendOutbox());
    this.#every(ANNOUNCE_MS, () => this.#announceRotation());
    this.#reports.resume();
    this.#activations.resume();
  }

  /** The bus is up for the first time: registration with every peer, then what the outbox kept meanwhile. */
  async connected(): Promise<void> {
    this.#online = true;
    await Promise.all(this.#config.peers.map((peer) => this.#registerWith(peer.name, 0)));
    await this.#resendOutbox();
  }

  /**
   * The eBADGE registration with one peer: capabilities, device_capabilities, get_all_prices. A peer whose queue
   * is not bound yet (it never ran: the broker returns the message) or a failed publish is retried later, with a
   * growing delay; the hub works meanwhile.
   */
  async #registerWith(peer: string, attempt: number): Promise<void> {
    try {
      // Our keys first (a no-op without sealing): a key we rotated to must reach the peer before we seal with it.
      await this.#bus.announceKeys([peer]);
      await this.#bus.publish(peer, capabilities(this.#config, undefined));
      for (const device of this.#config.devices)
        await this.#bus.publish(peer, deviceCapabilities(this.#config, device.name, undefined));
      await this.#bus.publish(peer, { msg: 'get_all_prices' });
      this.#log.info('registered', { peer });
    } catch (err) {
      if (this.#stopping) return;
      const delay = Math.min(600_000, 15_000 * 2 ** attempt);
      this.#log.warn('registration not delivered; retrying', { peer, inSeconds: delay / 1000, error: err });
      this.#after(delay, () => this.#registerWith(peer, attempt + 1));
    }
  }

  /**
   * While a rotation runs (several of our X25519 keys not ended), our keys again to every peer, hourly and after a
   * reconnection: a peer that was away when we registered (its queue's TTL took the first key_update) learns the new
   * key before the old one ends, when we start sealing with it.
   */
  async #announceRotation(): Promise<void> {
    const sealer = this.#bus.sealer;
    if (!this.#online || sealer === undefined) return;
    const now = this.#clock.now();
    if (sealer.keyring.own.filter((e) => e.notAfter === undefined || e.notAfter > now).length < 2) return;
    await this.#bus
      .announceKeys()
      .catch((err: unknown) => this.#log.warn('key announcement not delivered; again within the hour', { error: err }));
  }

  /** Runs `fn` once after `ms`, unless the hub stops first. */
  #after(ms: number, fn: () => Promise<void>): void {
    const t = this.#clock.setTimeout(
      () => {
        this.#timers.delete(t);
        void fn();
      },
      ms,
      { unref: true },
    );
    this.#timers.add(t);
  }

  /** Runs `fn` every `ms` until the hub stops. */
  #every(ms: number, fn: () => Promise<void>): void {
    this.#after(ms, async () => {
      if (this.#stopping) return;
      this.#every(ms, fn);
      await fn();
    });
  }

  /** Stops timers, ends nothing on the devices (a restart resumes the activations), and writes the state. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#sampler?.cancel();
    for (const t of this.#timers) t.cancel();
    this.#timers.clear();
    this.#reports.stop();
    this.#activations.stop();
    await this.event('stopping');
    await this.#store.flush();
    // The `stopping` event just pushed, a report, a retry round: each send under way finishes before the connection
    // closes under it, or it would stay in the outbox and go again (a duplicate) at the next start. Bounded, since a
    // broker that does not confirm must not hold the stop; offline there is nothing to wait for.
    if (this.#online && this.#sends.size > 0) await this.#sendsDone(STOP_SEND_WAIT_MS);
  }

  #sendsDone(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = this.#clock.setTimeout(resolve, ms);
      void Promise.allSettled([...this.#sends]).then(() => {
        t.cancel();
        resolve();
      });
    });
  }

  /** Tracks a send until it settles, for stop(). */
  #track<T>(p: Promise<T>): Promise<T> {
    const tracked = p.catch(() => undefined);
    this.#sends.add(tracked);
    void tracked.then(() => this.#sends.delete(tracked));
    return p;
  }

  /**
   * The broker connection went down or came back (the client recovers by itself). Back up, what the outbox kept
   * goes now rather than at the next minute.
   */
  async connectionChanged(up: boolean): Promise<void> {
    try {
      this.#online = up;
      if (!up) return await this.event('network_down');
      await this.event('network_up');
      await this.event('broker_reconnect');
      await this.#announceRotation();
      await this.#resendOutbox();
    } catch (err) {
      this.#log.warn('recording a connection event failed', { error: err });
    }
  }

  /** Records an event (status_report, energy_events) and pushes it to realtime subscribers. */
  async event(type: EventType, end?: number | null): Promise<void> {
    const e: HubEvent = { time: this.now(), severity: EVENTS[type], type, ...(end === undefined ? {} : { end }) };
    // Information events need no fsync of their own; warnings and worse are written at once.
    await this.#store.update(
      (s) => {
        s.events.push(e);
      },
      { lazy: e.severity === 0 },
    );
    this.#log.info('event', { type, severity: e.severity });
    for (const r of this.#store.state.realtime) {
      if (e.severity < r.severity) continue;
      void this.#send(r.requester, {
        msg: 'energy_events',
        events: [toEnergyEvent(e)],
        ...(r.hehId === undefined ? {} : { heh_id: r.hehId }),
      });
    }
  }

  // ---- sampling ------------------------------------------------------------------------------------------------

  /**
   * Each slot is read once it is over. The slot is kept, not derived from the time the timer fires: Node's timers
   * run on a clock that may be a millisecond apart from Date.now(), and a timer that fired early then one scheduled
   * exactly on the boundary skipped a slot (a gap in the history every minute or so at 1 s). A late timer still reads
   * each slot it passed, up to 3; after a longer stall (or a clock set forward) the slots missed stay empty rather
   * than all get the reading of now. A clock set back samples the slots it lives again, over what was read there.
   */
  #scheduleSampling(): void {
    const res = this.#config.resolutionS * 1000;
    const now = this.now();
    const current = Math.floor(now / res) * res;
    if (this.#slot === undefined) this.#slot = current;
    // A clock stepped back (NTP correcting a fast clock) samples again from the slot that just ended, as after a
    // stall: waiting for the clock to come back to our slot left the history empty for as long as the step.
    else if (current < this.#slot || current - this.#slot > 3 * res) {
      if (current < this.#slot) this.#reports.clockSteppedBack();
      this.#slot = current - res;
    }
    const slot = this.#slot;
    this.#sampler = this.#clock.setTimeout(
      () => {
        if (this.#stopping) return;
        if (this.now() < slot + res) return this.#scheduleSampling();
        this.#slot = slot + res;
        void this.sample(slot)
          .catch((err: unknown) => this.#log.error('sampling failed', { error: err }))
          .finally(() => {
            if (!this.#stopping) this.#scheduleSampling();
          });
      },
      Math.max(0, slot + res - now),
      { unref: true },
    );
  }

  /**
   * Reads every meter for the slot starting at `t`, side by side, each within half a resolution (10 s at most): a
   * meter that fails, answers late or gives a value out of range gives nulls and a meter_fault event. One slow meter
   * used to hold the others back (4 slots in 5 of a healthy meter lost behind a hanging command).
   */
  async sample(t: number): Promise<void> {
    const values: Record<string, number | null> = {};
    const limit = Math.min(10_000, (this.#config.resolutionS * 1000) / 2);
    const reads = this.#config.devices.map(async (device) => {
      const meter = this.#d.meters.get(device.name);
      if (meter === undefined) return;
      let timer: Timer | undefined;
      try {
        const late = new Promise<never>((_, reject) => {
          timer = this.#clock.setTimeout(() => reject(new Error(`no reading within ${limit} ms`)), limit);
        });
        const r = await Promise.race([meter.read(t), late]);
        for (const s of device.signals) {
          const v = r[s.name] ?? null;
          if (v !== null && !(Math.abs(v) <= MAX_READING))
            throw new Error(`${s.name}: ${v} is out of range (at most ${MAX_READING} either way)`);
        }
        for (const s of device.signals) values[`${device.name}.${s.name}`] = r[s.name] ?? null;
        if (this.#faulty.delete(device.name)) await this.event('meter_ok');
      } catch (err) {
        for (const s of device.signals) values[`${device.name}.${s.name}`] = null;
        if (!this.#faulty.has(device.name)) {
          this.#faulty.add(device.name);
          this.#log.warn('meter read failed', { device: device.name, error: err });
          await this.event('meter_fault');
        }
      } finally {
        timer?.cancel();
      }
    });
    await Promise.all(reads);
    this.#d.history.record(t, values);
  }

  // ---- handlers ------------------------------------------------------------------------------------------------

  #register(): void {
    // Every handler registered here logs one line per request it handles (request-log.ts), and never runs for a
    // message addressed to another HEH.
    const bus = ownHehOnly(requestLogged(this.#bus, this.#log));
    const reports = this.#reports;
    const activations = this.#activations;
    bus.onGetReport((m, ctx) => reports.getReport(m, ctx));
    bus.onGetLoadReport((m, ctx) => reports.getLoadReport(m, ctx));
    bus.onGetPeriodicReport((m, ctx) => reports.getPeriodicReport(m, ctx));
    bus.onGetEnergyEvents((m, ctx) =>
      ctx.reply({
        msg: 'energy_events',
        events: this.#events(m.from.epochMs, m.to.epochMs, m.severity).map(toEnergyEvent),
        ...hehOf(m),
      }),
    );
    bus.onGetEnergyEventsRealtime((m, ctx) =>
      this.#store.update((s) => {
        s.realtime = s.realtime.filter((r) => r.requester !== ctx.sender);
        s.realtime.push({
          requester: ctx.sender,
          severity: m.severity,
          ...(m.heh_id === undefined ? {} : { hehId: m.heh_id }),
        });
      }),
    );
    bus.onGetStatusReport((m, ctx) =>
      ctx.reply({
        msg: 'status_report',
        status: this.status,
        clock: EbTime.fromEpochMs(this.now()),
        events: this.#events(m.from.epochMs, m.to.epochMs, m.severity_threshold).map((e) => ({
          time: EbTime.fromEpochMs(e.time),
          severity: e.severity,
          type: e.type,
        })),
        mode: this.#store.state.mode,
        ...hehOf(m),
      }),
    );
    bus.onGetCapabilities((m, ctx) => {
      if (m.device === null) return ctx.reply(capabilities(this.#config, m));
      if (!this.#config.devices.some((d) => d.name === m.device)) return refuse(ctx, m, 462, `no device "${m.device}"`);
      return ctx.reply(deviceCapabilities(this.#config, m.device, m));
    });
    bus.onSetClock(async (m, ctx) => {
      // Recorded only when the clock changes: a refused set_clock flooded the events (1,000 kept) and wrote the state.
      if (!this.#config.allowClockChange)
        return refuse(ctx, m, 451, 'this hub does not change its clock (allowClockChange is false)');
      const offset = this.#store.state.clockOffsetS + (m.offset ?? 0);
      if (!(Math.abs(offset) <= MAX_CLOCK_OFFSET_S))
        return refuse(
          ctx,
          m,
          454,
          `an offset of ${offset} s from the system clock in all; at most ${MAX_CLOCK_OFFSET_S} s (a year) either way`,
        );
      // An offset of 0 (a peer's periodic sync) moves nothing: an event each time pushed the hub's outage history
      // out of the 1,000 kept, and wrote the state file.
      if (offset !== this.#store.state.clockOffsetS) {
        await this.#store.update((s) => {
          s.clockOffsetS = offset;
        });
        await this.event('clock_set');
      }
      return ctx.respond(200, 'OK');
    });
    bus.onSetSmartMode(async (m, ctx) => {
      // No activation decided in the old mode may land after the change (activations.exclusive()).
      await activations.exclusive(async () => {
        await this.#store.update((s) => {
          s.mode = m.mode;
        });
        if (m.reset || m.mode === 'off') await activations.endAll();
      });
      await this.event('mode_changed');
      return ctx.respond(200, 'OK');
    });
    bus.onLoadPrice((m, ctx) => this.#price('load', m.from, m.to, m.price, undefined, ctx));
    bus.onGenerationPrice((m, ctx) => this.#price('generation', m.from, m.to, m.price, m.device, ctx));
    bus.onActivate((m, ctx) => activations.activate(m, ctx));
    bus.onGetActivationCapacity((m, ctx) => {
      if (m.device != null && !this.#config.devices.some((d) => d.name === m.device))
        return refuse(ctx, m, 462, `no device "${m.device}"`);
      const [pos, neg] = activations.capacity(m.device ?? null);
      return ctx.reply({
        msg: 'activation_capacity',
        pos_capacity: pos,
        neg_capacity: neg,
        device: m.device ?? null,
        ...hehOf(m),
      });
    });
    bus.onContingencyActivate((m) => activations.contingencyActivate(m));
    bus.onContingencyEnd((m) => activations.contingencyEnd(m));
    bus.onResponse((m, ctx) => {
      if (m.response_code >= 400)
        this.#log.warn('a peer refused a message', {
          peer: ctx.sender,
          code: m.response_code,
          desc: m.response_desc,
          ref: m.ref_msg,
        });
    });
  }

  // ---- prices, capabilities, events ----------------------------------------------------------------------------

  async #price(
    kind: 'load' | 'generation',
    from: EbTime,
    to: EbTime,
    price: number,
    device: string | undefined,
    ctx: HandlerContext,
  ): Promise<void> {
    if (from.epochMs >= to.epochMs) {
      return ctx.respond(454, 'from is not before to');
    }
    // A price for a device this hub does not have would only take one of the slots below.
    if (device !== undefined && !this.#config.devices.some((d) => d.name === device))
      return ctx.respond(462, `no device ${shown(device)}`);
    const now = this.now();
    // A new price replaces what it overlaps of the same kind and device; expired ones are dropped.
    const kept = (prices: readonly Price[]): Price[] =>
      prices.filter(
        (p) => p.to > now && !(p.kind === kind && p.device === device && p.from < to.epochMs && p.to > from.epochMs),
      );
    // Bounded like the activations: a peer sending prices for ever further periods (or devices) must not grow the
    // state file every change rewrites.
    if (kept(this.#store.state.prices).length >= MAX_PRICES)
      return ctx.respond(469, `the hub keeps at most ${MAX_PRICES} prices to come; this one is not stored`);
    await this.#store.update((s) => {
      s.prices = kept(s.prices);
      s.prices.push({
        kind,
        from: from.epochMs,
        to: to.epochMs,
        price,
        ...(device === undefined ? {} : { device }),
        sender: ctx.sender,
      });
    });
    this.#log.info('price stored', { kind, price, from: from.toString(), to: to.toString() });
  }

  /** The price in force at `t` (load, or generation for a device), for whoever drives loads by price. */
  priceAt(kind: 'load' | 'generation', t: number, device?: string): number | undefined {
    return this.#store.state.prices.find(
      (p) => p.kind === kind && p.from <= t && t < p.to && (kind === 'load' || p.device === device),
    )?.price;
  }

  #events(from: number, to: number, minSeverity: number): HubEvent[] {
    return this.#store.state.events.filter((e) => e.time >= from && e.time < to && e.severity >= minSeverity);
  }

  // ---- the hub's own messages --------------------------------------------------------------------------------------

  /**
   * The hub's own messages (periodic reports, pushed events): into the outbox first, then to the broker, out of
   * the outbox once confirmed. One that fails stays there and goes again later, with the same message id.
   */
  #send(peer: string, m: Record<string, unknown>, messageId: string = randomUUID()): Promise<void> {
    return this.#track(this.#sendNow(peer, m as Message, messageId));
  }

  async #sendNow(peer: string, message: Message, messageId: string): Promise<void> {
    const outbox = this.#d.outbox;
    this.#log.debug('sending', { peer, type: message.msg, messageId, message });
    try {
      if (outbox === undefined) {
        await this.#bus.publish(peer, message, { messageId });
        return;
      }
      const meta = { messageId, type: message.msg, routingKey: routingKeyOf(message) };
      // Encoded once, straight into the outbox record; the body sent is a view of that record (docs/bus.md).
      const id = await outbox.append(peer, bodyWriter(message), meta);
      const record = outbox.get(id);
      // Offline it waits in the outbox, sent by connected() or the reconnection: no failed publish per message.
      if (this.#online && record !== undefined) await this.#deliver(record);
    } catch (err) {
      this.#log.warn('send failed', { peer, type: message.msg, error: err });
    }
  }

  async #deliver(r: {
    id: number;
    peer: string;
    body: Uint8Array;
    messageId: string;
    type: string;
    routingKey: string;
  }): Promise<void> {
    if (this.#sending.has(r.id)) return;
    this.#sending.add(r.id);
    try {
      await this.#bus.publishEncoded(r.peer, r.type as MessageType, r.body, {
        routingKey: r.routingKey,
        messageId: r.messageId,
      });
      this.#d.outbox?.ack(r.id);
    } finally {
      this.#sending.delete(r.id);
    }
  }

  async #resendOutbox(): Promise<void> {
    if (!this.#online) return;
    const pending = this.#d.outbox?.pending() ?? [];
    if (pending.length > 0) this.#log.info('sending messages kept in the outbox', { count: pending.length });
    // A peer whose message failed now gets no more of this round (its order kept); the others go on.
    const later = new Set<string>();
    for (const r of pending) {
      if (this.#stopping) return;
      if (later.has(r.peer)) continue;
      try {
        await this.#track(this.#deliver(r));
      } catch (err) {
        const code = err instanceof EbadgeError ? String(err.code) : undefined;
        if (code !== undefined && NEVER_SENDABLE.has(code)) {
          // Kept, it would fail at every round for ever, and it used to stop the round before every message after it.
          this.#d.outbox?.ack(r.id);
          this.#log.error('data lost: an outbox message that can never be sent was dropped', {
            peer: r.peer,
            type: r.type,
            id: r.messageId,
            code,
            error: err,
          });
          continue;
        }
        this.#log.warn('outbox message not delivered; kept for later', { peer: r.peer, type: r.type, error: err });
        later.add(r.peer); // the broker or the peer is not there: its messages are tried later, in order
      }
    }
  }
}

/**
 * A message whose heh_id names another HEH (data model §3.2: it is for the entity that serves that HEH) is refused
 * 452, unknown heh_id, before its handler runs: executed here, an activation meant for another home would run on
 * this one's devices while the VPP books it on the other. Our heh_id is our broker name (the same table).
 */
function ownHehOnly<C extends Connector>(bus: C): C {
  return new Proxy(bus, {
    get(target, prop, receiver) {
      if (prop !== 'handle') return Reflect.get(target, prop, receiver);
      return (type: MessageType, handler: Handler<MessageType>) =>
        target.handle(type, (m, ctx) => {
          const heh = (m as { heh_id?: unknown }).heh_id;
          return typeof heh === 'string' && heh !== target.name && m.msg !== 'response'
            ? refuse(ctx, m, 452, `heh_id ${shown(heh)} is not this HEH's (${target.name}): sent to the wrong HEH`)
            : handler(m, ctx);
        });
    },
  });
}
