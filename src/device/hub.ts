/**
 * The HEH side of the eBADGE HEH-level catalogue (data model §3.3, D3.1.3 §5), on top of the bus.
 *
 * On every start the hub registers (`capabilities`, then `device_capabilities` per device, to every peer) and asks
 * for the prices in force (`get_all_prices`). It samples its meters once per resolution into the history, answers
 * reports from it, keeps periodic report and realtime event subscriptions, decides and executes activations
 * through the actuators, and keeps prices, the smart mode and its events. Everything it must remember across a
 * restart is in the state file (state.ts); measurements are in the history (history.ts).
 *
 * Errors are answered as §3.6 says: a `response` with the code, the type answered (`ref_msg`) and the request's
 * `request_id` or activation `id`; activations are answered with accept / reject / modify for their
 * (id, modification_count), never with a bare 200.
 */
import { createHash, randomUUID } from 'node:crypto';
import { type Connector, type HandlerContext, routingKeyOf } from '../bus/index.js';
import { EbTime, encode, type Message, type MessageType } from '../codec/index.js';
import { HUB_VERSION } from './about.js';
import type { HubConfig } from './config/index.js';
import type { Actuator, Meter } from './devices/index.js';
import { type History, HistoryError } from './history.js';
import type { Logger } from './log.js';
import type { Outbox } from './outbox.js';
import type { Activation, HubEvent, StateStore } from './state.js';

export { HUB_VERSION };

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

/** An activation arriving this late after its start is not executed (data model §3.5 rule 5). */
const LATE_MS = 15 * 60_000;

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
  now?: () => number;
}

/** How often messages still in the outbox (the broker did not confirm them) are sent again. */
const OUTBOX_RETRY_MS = 60_000;

export class Hub {
  readonly #d: HubDeps;
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #activationTimers = new Map<string, NodeJS.Timeout[]>();
  #sampler: NodeJS.Timeout | undefined;
  #faulty = new Set<string>();
  #stopping = false;
  /** Outbox records being sent now, so that a retry round does not send them twice. */
  readonly #sending = new Set<number>();

  constructor(deps: HubDeps) {
    this.#d = deps;
    this.#register();
  }

  /** Hub time: the system clock plus the offset a set_clock allowed us to take. */
  now(): number {
    return (this.#d.now ?? Date.now)() + this.#d.store.state.clockOffsetS * 1000;
  }

  get signals(): string[] {
    return this.#d.config.devices.flatMap((d) => d.signals.map((s) => `${d.name}.${s.name}`));
  }

  /** Registration, sampling, the subscriptions and activations that survived a restart. */
  async start(): Promise<void> {
    await this.event('started');
    await Promise.all(this.#d.config.peers.map((peer) => this.#registerWith(peer.name, 0)));
    this.#scheduleSampling();
    if (this.#d.outbox !== undefined) {
      await this.#resendOutbox();
      const t = setInterval(() => void this.#resendOutbox(), OUTBOX_RETRY_MS);
      t.unref();
      this.#timers.add(t);
    }
    for (const s of this.#d.store.state.subscriptions) this.#schedulePeriodic(s.requester);
    for (const a of this.#d.store.state.activations)
      if (a.phase !== 'ended' && a.decision !== 'rejected') this.#scheduleActivation(a);
  }

  /**
   * The eBADGE registration with one peer: capabilities, device_capabilities, get_all_prices. A peer whose queue
   * is not bound yet (it never ran: the broker returns the message) or a failed publish is retried later, with a
   * growing delay; the hub works meanwhile.
   */
  async #registerWith(peer: string, attempt: number): Promise<void> {
    try {
      await this.#d.bus.publish(peer, this.#capabilities(undefined));
      for (const device of this.#d.config.devices)
        await this.#d.bus.publish(peer, this.#deviceCapabilities(device.name, undefined));
      await this.#d.bus.publish(peer, { msg: 'get_all_prices' });
      this.#d.log.info('registered', { peer });
    } catch (err) {
      if (this.#stopping) return;
      const delay = Math.min(600_000, 15_000 * 2 ** attempt);
      this.#d.log.warn('registration not delivered; retrying', { peer, inSeconds: delay / 1000, error: err });
      const t = setTimeout(() => {
        this.#timers.delete(t);
        void this.#registerWith(peer, attempt + 1);
      }, delay);
      t.unref();
      this.#timers.add(t);
    }
  }

  /** Stops timers, ends nothing on the devices (a restart resumes the activations), and writes the state. */
  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#sampler !== undefined) clearTimeout(this.#sampler);
    for (const t of this.#timers) clearTimeout(t);
    for (const list of this.#activationTimers.values()) for (const t of list) clearTimeout(t);
    await this.event('stopping');
    await this.#d.store.flush();
  }

  /**
   * The broker connection went down or came back (the client recovers by itself). Back up, what the outbox kept
   * goes now rather than at the next minute.
   */
  async connectionChanged(up: boolean): Promise<void> {
    try {
      if (!up) return await this.event('network_down');
      await this.event('network_up');
      await this.event('broker_reconnect');
      await this.#resendOutbox();
    } catch (err) {
      this.#d.log.warn('recording a connection event failed', { error: err });
    }
  }

  /** Records an event (status_report, energy_events) and pushes it to realtime subscribers. */
  async event(type: EventType, end?: number | null): Promise<void> {
    const e: HubEvent = { time: this.now(), severity: EVENTS[type], type, ...(end === undefined ? {} : { end }) };
    // Information events need no fsync of their own; warnings and worse are written at once.
    await this.#d.store.update(
      (s) => {
        s.events.push(e);
      },
      { lazy: e.severity === 0 },
    );
    this.#d.log.info('event', { type, severity: e.severity });
    for (const r of this.#d.store.state.realtime) {
      if (e.severity < r.severity) continue;
      void this.#send(r.requester, {
        msg: 'energy_events',
        events: [toEnergyEvent(e)],
        ...(r.hehId === undefined ? {} : { heh_id: r.hehId }),
      });
    }
  }

  // ---- sampling ------------------------------------------------------------------------------------------------

  #scheduleSampling(): void {
    const res = this.#d.config.resolutionS * 1000;
    const wait = res - (this.now() % res);
    this.#sampler = setTimeout(() => {
      void this.sample(Math.floor(this.now() / res) * res - res)
        .catch((err: unknown) => this.#d.log.error('sampling failed', { error: err }))
        .finally(() => {
          if (!this.#stopping) this.#scheduleSampling();
        });
    }, wait);
    this.#sampler.unref();
  }

  /** Reads every meter for the slot starting at `t`; a failing meter gives nulls and a meter_fault event. */
  async sample(t: number): Promise<void> {
    const values: Record<string, number | null> = {};
    for (const device of this.#d.config.devices) {
      const meter = this.#d.meters.get(device.name);
      if (meter === undefined) continue;
      try {
        const r = await meter.read(t);
        for (const s of device.signals) values[`${device.name}.${s.name}`] = r[s.name] ?? null;
        if (this.#faulty.delete(device.name)) await this.event('meter_ok');
      } catch (err) {
        for (const s of device.signals) values[`${device.name}.${s.name}`] = null;
        if (!this.#faulty.has(device.name)) {
          this.#faulty.add(device.name);
          this.#d.log.warn('meter read failed', { device: device.name, error: err });
          await this.event('meter_fault');
        }
      }
    }
    this.#d.history.record(t, values);
  }

  // ---- handlers ------------------------------------------------------------------------------------------------

  #register(): void {
    const bus = this.#d.bus;
    bus.onGetReport((m, ctx) => this.#getReport(m, ctx));
    bus.onGetLoadReport((m, ctx) => this.#getLoadReport(m, ctx));
    bus.onGetPeriodicReport((m, ctx) => this.#getPeriodicReport(m, ctx));
    bus.onGetEnergyEvents((m, ctx) =>
      ctx.reply({
        msg: 'energy_events',
        events: this.#events(m.from.epochMs, m.to.epochMs, m.severity).map(toEnergyEvent),
        ...hehOf(m),
      }),
    );
    bus.onGetEnergyEventsRealtime((m, ctx) =>
      this.#d.store.update((s) => {
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
        status: this.#faulty.size > 0 ? 'degraded' : 'ok',
        clock: EbTime.fromEpochMs(this.now()),
        events: this.#events(m.from.epochMs, m.to.epochMs, m.severity_threshold).map((e) => ({
          time: EbTime.fromEpochMs(e.time),
          severity: e.severity,
          type: e.type,
        })),
        mode: this.#d.store.state.mode,
        ...hehOf(m),
      }),
    );
    bus.onGetCapabilities((m, ctx) => {
      if (m.device === null) return ctx.reply(this.#capabilities(m));
      if (!this.#d.config.devices.some((d) => d.name === m.device))
        return this.#error(ctx, m, 462, `no device "${m.device}"`);
      return ctx.reply(this.#deviceCapabilities(m.device, m));
    });
    bus.onSetClock(async (m, ctx) => {
      await this.event('clock_set');
      if (!this.#d.config.allowClockChange)
        return this.#error(ctx, m, 451, 'this hub does not change its clock (allowClockChange is false)');
      await this.#d.store.update((s) => {
        s.clockOffsetS += m.offset ?? 0;
      });
      return ctx.respond(200, 'OK');
    });
    bus.onSetSmartMode(async (m, ctx) => {
      await this.#d.store.update((s) => {
        s.mode = m.mode;
      });
      if (m.reset || m.mode === 'off')
        for (const a of this.#d.store.state.activations) if (a.phase !== 'ended') await this.#end(a.id);
      await this.event('mode_changed');
      return ctx.respond(200, 'OK');
    });
    bus.onLoadPrice((m, ctx) => this.#price('load', m.from, m.to, m.price, undefined, ctx));
    bus.onGenerationPrice((m, ctx) => this.#price('generation', m.from, m.to, m.price, m.device, ctx));
    bus.onActivate((m, ctx) => this.#activate(m, ctx));
    bus.onGetActivationCapacity((m, ctx) => {
      if (m.device != null && !this.#d.config.devices.some((d) => d.name === m.device))
        return this.#error(ctx, m, 462, `no device "${m.device}"`);
      const [pos, neg] = this.#capacity(m.device ?? null);
      return ctx.reply({
        msg: 'activation_capacity',
        pos_capacity: pos,
        neg_capacity: neg,
        device: m.device ?? null,
        ...hehOf(m),
      });
    });
    bus.onContingencyActivate(async (m) => {
      await this.event('contingency_start', null);
      // Shed every controllable load until the contingency ends; nothing is sent back (the spec wants no ack).
      for (const [device, act] of this.#d.actuators) {
        await act
          .apply({
            action: 'activate',
            id: m.id,
            device,
            quantity: -(m.max_quantity ?? 0),
            from: m.from.epochMs,
            to: m.to.epochMs,
          })
          .catch((err: unknown) => this.#d.log.warn('actuator failed', { device, error: err }));
      }
    });
    bus.onContingencyEnd(async (m) => {
      for (const [device, act] of this.#d.actuators) {
        await act
          .apply({ action: 'end', id: m.id, device })
          .catch((err: unknown) => this.#d.log.warn('actuator failed', { device, error: err }));
      }
      // The contingency is over: its start event stops reading "still going on" (end_time null) in energy_events.
      await this.#d.store.update((s) => {
        for (const e of s.events) if (e.type === 'contingency_start' && e.end === null) e.end = m.end.epochMs;
      });
      await this.event('contingency_end');
    });
    bus.onResponse((m, ctx) => {
      if (m.response_code >= 400)
        this.#d.log.warn('a peer refused a message', {
          peer: ctx.sender,
          code: m.response_code,
          desc: m.response_desc,
          ref: m.ref_msg,
        });
    });
  }

  async #getReport(m: Message<'get_report'>, ctx: HandlerContext): Promise<void> {
    const r = this.#query(m.from.epochMs, m.to.epochMs, m.resolution, m.signals);
    if (typeof r === 'string') return this.#errorCode(ctx, m, r);
    await ctx.reply({
      msg: 'report',
      from: EbTime.fromEpochMs(r.from),
      to: EbTime.fromEpochMs(r.to),
      resolution: m.resolution,
      values: r.values,
      ...hehOf(m),
    });
  }

  async #getLoadReport(m: Message<'get_load_report'>, ctx: HandlerContext): Promise<void> {
    // The first version reports one load curve: the device's power, or the sum of every device's.
    const devices =
      m.device == null ? this.#d.config.devices : this.#d.config.devices.filter((d) => d.name === m.device);
    if (devices.length === 0) return this.#error(ctx, m, 462, `no device "${String(m.device)}"`);
    const signals = devices.map((d) => `${d.name}.${d.signals[0]?.name ?? 'p'}`);
    const r = this.#query(m.from.epochMs, m.to.epochMs, m.resolution, signals);
    if (typeof r === 'string') return this.#errorCode(ctx, m, r);
    const n = Math.round((r.to - r.from) / (m.resolution * 1000));
    const values = Array.from({ length: n }, (_, i) => {
      const xs = signals.map((s) => r.values[s]?.[i] ?? null).filter((x): x is number => x !== null);
      return xs.length === 0 ? null : Math.round(xs.reduce((a, b) => a + b, 0) * 1000) / 1000;
    });
    await ctx.reply({
      msg: 'load_report',
      from: EbTime.fromEpochMs(r.from),
      to: EbTime.fromEpochMs(r.to),
      resolution: m.resolution,
      device: m.device ?? null,
      values,
      ...hehOf(m),
    });
  }

  /** The history's answer, or the §3.6 code explaining why there is none. */
  #query(
    from: number,
    to: number,
    resolution: number,
    signals: string[],
  ): { from: number; to: number; values: Record<string, (number | null)[]> } | '460' | '461' | '454' {
    if (from >= to) return '454';
    try {
      const r = this.#d.history.query(from, to, resolution, signals);
      if (r.missing.length > 0) return '460';
      return r;
    } catch (err) {
      if (err instanceof HistoryError && err.code === 'RESOLUTION') return '461';
      throw err;
    }
  }

  #errorCode(ctx: HandlerContext, m: Message, code: '460' | '461' | '454'): Promise<void> {
    const why = {
      460: 'a requested signal is not measured by this hub',
      461: `the resolution must be a multiple of ${this.#d.config.resolutionS} s`,
      454: 'from is not before to',
    };
    return this.#error(ctx, m, Number(code), why[code]);
  }

  /** A `response` with an error code: to the msg_id when there is one, else with msg_id null and the echoes (§3.5 rule 3). */
  async #error(ctx: HandlerContext, m: Message, code: number, desc: string): Promise<void> {
    const x = m as { msg_id?: string; request_id?: string; id?: string };
    if (x.msg_id !== undefined) return ctx.respond(code, desc);
    await ctx.reply({
      msg: 'response',
      msg_id: null,
      response_code: code,
      response_desc: desc,
      ref_msg: m.msg,
      ...(x.request_id === undefined ? {} : { request_id: x.request_id }),
      ...(x.id === undefined ? {} : { id: x.id }),
    });
  }

  async #getPeriodicReport(m: Message<'get_periodic_report'>, ctx: HandlerContext): Promise<void> {
    const requester = ctx.sender;
    if (m.interval === -1) {
      await this.#d.store.update((s) => {
        s.subscriptions = s.subscriptions.filter((x) => x.requester !== requester);
      });
      this.#clearPeriodic(requester);
      return;
    }
    const res = this.#d.config.resolutionS;
    if (m.interval <= 0 || m.resolution % res !== 0 || m.interval % m.resolution !== 0) {
      return this.#error(
        ctx,
        m,
        461,
        `interval must be a positive multiple of the resolution, itself a multiple of ${res} s`,
      );
    }
    const missing = m.signals.filter((s) => !this.signals.includes(s));
    if (missing.length > 0) return this.#error(ctx, m, 460, `signals not measured here: ${missing.join(', ')}`);
    const step = m.interval * 1000;
    const first = m.first_from?.epochMs ?? Math.floor(this.now() / step) * step;
    // One subscription per requester: a new one replaces the old.
    await this.#d.store.update((s) => {
      s.subscriptions = s.subscriptions.filter((x) => x.requester !== requester);
      s.subscriptions.push({
        requester,
        interval: m.interval,
        resolution: m.resolution,
        signals: m.signals,
        next: first,
        ...(m.request_id === undefined ? {} : { requestId: m.request_id }),
        ...(m.heh_id === undefined ? {} : { hehId: m.heh_id }),
      });
    });
    this.#schedulePeriodic(requester);
  }

  #periodic = new Map<string, NodeJS.Timeout>();

  #clearPeriodic(requester: string): void {
    const t = this.#periodic.get(requester);
    if (t !== undefined) {
      clearTimeout(t);
      this.#timers.delete(t);
      this.#periodic.delete(requester);
    }
  }

  /** Sends each period once it is over (plus one sample's time for the last reading to land). */
  #schedulePeriodic(requester: string): void {
    this.#clearPeriodic(requester);
    const sub = this.#d.store.state.subscriptions.find((s) => s.requester === requester);
    if (sub === undefined || this.#stopping) return;
    const due = sub.next + sub.interval * 1000 + this.#d.config.resolutionS * 1000;
    const t = setTimeout(
      () => {
        this.#timers.delete(t);
        void this.#sendPeriodic(requester)
          .catch((err: unknown) => this.#d.log.error('periodic report failed', { requester, error: err }))
          .finally(() => this.#schedulePeriodic(requester));
      },
      Math.max(0, due - this.now()),
    );
    t.unref();
    this.#timers.add(t);
    this.#periodic.set(requester, t);
  }

  async #sendPeriodic(requester: string): Promise<void> {
    const sub = this.#d.store.state.subscriptions.find((s) => s.requester === requester);
    if (sub === undefined) return;
    const from = sub.next;
    const to = from + sub.interval * 1000;
    const r = this.#query(from, to, sub.resolution, sub.signals);
    if (typeof r !== 'string') {
      // The period's progress is saved lazily: after a crash the same period may be reported again, and its
      // message id, derived from the period, lets the peer drop the copy (as it drops any re-sent message).
      const id = derivedUuid(
        `${this.#d.config.name}|periodic|${requester}|${sub.requestId ?? ''}|${sub.interval}|${sub.resolution}|${from}`,
      );
      await this.#send(
        requester,
        {
          msg: 'report',
          from: EbTime.fromEpochMs(r.from),
          to: EbTime.fromEpochMs(r.to),
          resolution: sub.resolution,
          values: r.values,
          ...(sub.requestId === undefined ? {} : { request_id: sub.requestId }),
          ...(sub.hehId === undefined ? {} : { heh_id: sub.hehId }),
        },
        id,
      );
    }
    // Catch up at most one day of missed periods after a long outage, instead of flooding the peer.
    const next = Math.max(to, Math.floor((this.now() - 86_400_000) / (sub.interval * 1000)) * sub.interval * 1000);
    await this.#d.store.update(
      (s) => {
        const x = s.subscriptions.find((y) => y.requester === requester);
        if (x !== undefined) x.next = next;
      },
      { lazy: true },
    );
  }

  // ---- activations (data model §3.5 rules 4 and 5) -------------------------------------------------------------

  async #activate(m: Message<'activate'>, ctx: HandlerContext): Promise<void> {
    const known = this.#d.store.state.activations.find((a) => a.id === m.id);
    if (known !== undefined && m.modification_count < known.modificationCount) {
      return this.#error(
        ctx,
        m,
        450,
        `modification_count ${m.modification_count} is older than ${known.modificationCount}`,
      );
    }
    if (known !== undefined && m.modification_count === known.modificationCount) {
      await ctx.reply(known.decisionMessage as Message); // idempotent: the same decision again
      return;
    }
    const decide = async (decision: Activation['decision'], message: Record<string, unknown>): Promise<void> => {
      const a: Activation = {
        id: m.id,
        requester: ctx.sender,
        modificationCount: m.modification_count,
        from: m.from.epochMs,
        to: m.to.epochMs,
        quantity: (message['quantity'] as number | undefined) ?? m.quantity,
        device: m.device,
        decision,
        decisionMessage: message,
        phase: 'scheduled',
      };
      if (known !== undefined && known.phase === 'running' && decision !== 'rejected') await this.#end(m.id, false);
      await this.#d.store.update((s) => {
        s.activations = s.activations.filter(
          (x) => x.id !== m.id && !(x.phase === 'ended' && x.to < this.now() - 86_400_000),
        );
        s.activations.push(a);
      });
      await ctx.reply(message as Message);
      if (decision !== 'rejected') this.#scheduleActivation(a);
    };
    const base = { id: m.id, modification_count: m.modification_count, ...hehOf(m) };
    const reject = (code: number, reason: string): Promise<void> =>
      decide('rejected', { msg: 'reject_activation', ...base, code, reason });
    const now = this.now();
    if (m.quantity === 0 && known !== undefined) {
      // A cancellation (the same id, a higher count, quantity 0) is accepted in any mode: stopping is always allowed.
      await this.#end(m.id);
      return decide('accepted', { msg: 'accept_activation', ...base });
    }
    if (this.#d.store.state.mode !== 'normal') return reject(451, `the hub is in ${this.#d.store.state.mode} mode`);
    if (m.to.epochMs <= now || m.from.epochMs < now - LATE_MS)
      return reject(454, 'the activation has expired or arrived too late');
    if (m.device !== null && !this.#d.config.devices.some((d) => d.name === m.device))
      return reject(462, `no device "${m.device}"`);
    if (m.quantity === 0) return decide('accepted', { msg: 'accept_activation', ...base }); // nothing to do
    const [pos, neg] = this.#capacity(m.device);
    const limit = m.quantity > 0 ? pos : neg;
    if (limit === 0) return reject(451, 'no controllable capacity for this activation');
    if (Math.abs(m.quantity) > limit) {
      // What the hub can do instead: the same period with the quantity it has.
      const quantity = Math.sign(m.quantity) * limit;
      return decide('modified', {
        msg: 'modify_activation',
        ...base,
        from: m.from,
        to: m.to,
        quantity,
        device: m.device,
      });
    }
    return decide('accepted', { msg: 'accept_activation', ...base });
  }

  /** [pos, neg] kW: what the controllable devices can add or shed now. */
  #capacity(device: string | null): [number, number] {
    let total = 0;
    for (const d of this.#d.config.devices) {
      if (device !== null && d.name !== device) continue;
      if (!this.#d.actuators.has(d.name)) continue;
      total += d.maxPowerKw ?? 0;
    }
    const running = this.#d.store.state.activations
      .filter((a) => a.phase === 'running' && (device === null || a.device === device))
      .reduce((s, a) => s + Math.abs(a.quantity), 0);
    const free = Math.max(0, Math.round((total - running) * 1000) / 1000);
    return [free, free];
  }

  #scheduleActivation(a: Activation): void {
    const timers: NodeJS.Timeout[] = [];
    const at = (ms: number, fn: () => Promise<void>): void => {
      const t = setTimeout(
        () => void fn().catch((err: unknown) => this.#d.log.error('activation step failed', { id: a.id, error: err })),
        Math.max(0, ms - this.now()),
      );
      t.unref();
      timers.push(t);
    };
    if (a.phase === 'scheduled') at(a.from, () => this.#begin(a.id));
    at(a.to, () => this.#end(a.id));
    this.#activationTimers.set(a.id, timers);
  }

  async #begin(id: string): Promise<void> {
    const a = this.#d.store.state.activations.find((x) => x.id === id);
    if (a === undefined || a.phase !== 'scheduled') return;
    for (const [device, act] of this.#d.actuators) {
      if (a.device !== null && a.device !== device) continue;
      try {
        await act.apply({ action: 'activate', id, device, quantity: a.quantity, from: a.from, to: a.to });
      } catch (err) {
        this.#d.log.error('actuator failed', { device, id, error: err });
        await this.event('actuator_fault');
      }
    }
    await this.#d.store.update(() => {
      a.phase = 'running';
    });
    await this.event('activation_start');
  }

  async #end(id: string, record = true): Promise<void> {
    for (const t of this.#activationTimers.get(id) ?? []) clearTimeout(t);
    this.#activationTimers.delete(id);
    const a = this.#d.store.state.activations.find((x) => x.id === id);
    if (a === undefined || a.phase === 'ended') return;
    if (a.phase === 'running') {
      for (const [device, act] of this.#d.actuators) {
        if (a.device !== null && a.device !== device) continue;
        await act
          .apply({ action: 'end', id, device })
          .catch((err: unknown) => this.#d.log.error('actuator failed', { device, id, error: err }));
      }
    }
    await this.#d.store.update(() => {
      a.phase = 'ended';
    });
    if (record) await this.event('activation_end');
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
    const now = this.now();
    await this.#d.store.update((s) => {
      // A new price replaces what it overlaps of the same kind and device; expired ones are dropped.
      s.prices = s.prices.filter(
        (p) => p.to > now && !(p.kind === kind && p.device === device && p.from < to.epochMs && p.to > from.epochMs),
      );
      s.prices.push({
        kind,
        from: from.epochMs,
        to: to.epochMs,
        price,
        ...(device === undefined ? {} : { device }),
        sender: ctx.sender,
      });
    });
    this.#d.log.info('price stored', { kind, price, from: from.toString(), to: to.toString() });
  }

  /** The price in force at `t` (load, or generation for a device), for whoever drives loads by price. */
  priceAt(kind: 'load' | 'generation', t: number, device?: string): number | undefined {
    return this.#d.store.state.prices.find(
      (p) => p.kind === kind && p.from <= t && t < p.to && (kind === 'load' || p.device === device),
    )?.price;
  }

  #events(from: number, to: number, minSeverity: number): HubEvent[] {
    return this.#d.store.state.events.filter((e) => e.time >= from && e.time < to && e.severity >= minSeverity);
  }

  #capabilities(request: Message | undefined): Message<'capabilities'> {
    const c = this.#d.config;
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

  #deviceCapabilities(name: string, request: Message | undefined): Message<'device_capabilities'> {
    const d = this.#d.config.devices.find((x) => x.name === name);
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

  /**
   * The hub's own messages (periodic reports, pushed events): into the outbox first, then to the broker, out of
   * the outbox once confirmed. One that fails stays there and goes again later, with the same message id.
   */
  async #send(peer: string, m: Record<string, unknown>, messageId: string = randomUUID()): Promise<void> {
    const message = m as Message;
    const outbox = this.#d.outbox;
    try {
      if (outbox === undefined) {
        await this.#d.bus.publish(peer, message, { messageId });
        return;
      }
      const body = encode(message);
      const meta = { messageId, type: message.msg, routingKey: routingKeyOf(message) };
      const id = await outbox.append(peer, body, meta);
      await this.#deliver({ id, peer, body, ...meta });
    } catch (err) {
      this.#d.log.warn('send failed', { peer, msg: m['msg'], error: err });
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
      await this.#d.bus.publishEncoded(r.peer, r.type as MessageType, r.body, {
        routingKey: r.routingKey,
        messageId: r.messageId,
      });
      this.#d.outbox?.ack(r.id);
    } finally {
      this.#sending.delete(r.id);
    }
  }

  async #resendOutbox(): Promise<void> {
    const pending = this.#d.outbox?.pending() ?? [];
    if (pending.length > 0) this.#d.log.info('sending messages kept in the outbox', { count: pending.length });
    for (const r of pending) {
      if (this.#stopping) return;
      try {
        await this.#deliver(r);
      } catch (err) {
        this.#d.log.warn('outbox message not delivered; kept for later', { peer: r.peer, msg: r.type, error: err });
        return; // the broker or the peer is not there: try the rest later, in order
      }
    }
  }
}

/** A UUID (version 8, RFC 9562) that is a hash of `key`: the same key always gives the same id. */
export function derivedUuid(key: string): string {
  const h = createHash('sha256').update(key).digest();
  h[6] = ((h[6] as number) & 0x0f) | 0x80;
  h[8] = ((h[8] as number) & 0x3f) | 0x80;
  const x = h.toString('hex', 0, 16);
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

function hehOf(m: { heh_id?: string | null }): { heh_id?: string | null } {
  return m.heh_id === undefined ? {} : { heh_id: m.heh_id };
}

function echo(request: Message | undefined): { request_id?: string; heh_id?: string | null } {
  const r = request as { request_id?: string; heh_id?: string | null } | undefined;
  return {
    ...(r?.request_id === undefined ? {} : { request_id: r.request_id }),
    ...(r?.heh_id === undefined ? {} : { heh_id: r.heh_id }),
  };
}

function toEnergyEvent(e: HubEvent): { severity: number; type: string; start_time: EbTime; end_time: EbTime | null } {
  // An instant event ends when it starts; null means still going on (data model §3.3).
  const end = e.end === undefined ? EbTime.fromEpochMs(e.time) : e.end === null ? null : EbTime.fromEpochMs(e.end);
  return { severity: e.severity, type: e.type, start_time: EbTime.fromEpochMs(e.time), end_time: end };
}
