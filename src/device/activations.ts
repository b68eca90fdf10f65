/**
 * Activations (data model §3.5 rules 4 and 5) and contingencies: the decision for each (id, modification_count),
 * the capacity the actuators have, and the timers that start and end what was accepted. A decision is stored before
 * it is sent, so that the same (id, count) gets the same decision again, after a restart too; what runs when the
 * hub stops is resumed by the next start (nothing is ended on the devices by a stop).
 */
import type { HandlerContext } from '../bus/index.js';
import type { Message } from '../codec/index.js';
import type { Timer } from '../core/clock.js';
import type { Actuator, ActuatorCommand } from './devices/index.js';
import type { HubContext } from './hub-context.js';
import { hehOf, refuse } from './replies.js';
import type { Activation } from './state.js';

/** An activation arriving this late after its start is not executed (data model §3.5 rule 5). */
const LATE_MS = 15 * 60_000;
/** An ended or rejected activation is kept this long after its `to`: the same (id, count) gets its decision again. */
const KEEP_DECIDED_MS = 86_400_000;
/**
 * The most activations the state keeps (to come, running, or decided within KEEP_DECIDED_MS). A hub has a few a
 * day; without a bound, a peer that sends new ids without end (each rejected, or accepted far ahead) would grow the
 * state file that every decision rewrites and fsyncs, until the disk or the Pi's memory gives out.
 */
export const MAX_ACTIVATIONS = 1_000;

const stale = (a: Activation, now: number): boolean =>
  (a.phase === 'ended' || a.decision === 'rejected') && a.to < now - KEEP_DECIDED_MS;

const addKw = (used: Map<string, number>, device: string, q: number): void => {
  used.set(device, (used.get(device) ?? 0) + Math.abs(q));
};

export class Activations {
  readonly #h: HubContext;
  readonly #timers = new Map<string, Timer[]>();
  /** The end of the last turn taken: decisions, starts and ends run one at a time (see exclusive()). */
  #turn: Promise<unknown> = Promise.resolve();
  #stopped = false;

  constructor(hub: HubContext) {
    this.#h = hub;
  }

  /** Schedules again what survived a restart. */
  resume(): void {
    this.#stopped = false;
    for (const a of this.#h.store.state.activations)
      if (a.phase !== 'ended' && a.decision !== 'rejected') this.#schedule(a);
  }

  /** Stops the timers; nothing is ended on the devices (a restart resumes the activations). */
  stop(): void {
    this.#stopped = true;
    for (const list of this.#timers.values()) for (const t of list) t.cancel();
    this.#timers.clear();
  }

  /**
   * Runs `fn` when no other decision, start or end is under way, and none begins until it is done. Each of them
   * reads the state, awaits the disk or an actuator, and writes the state back: two activate messages handled at
   * once both saw the capacity free and together booked more than the devices have, a cancellation that came while
   * the actuator was being started left it running, and smart mode off ended everything but a decision in flight.
   * Never call it from inside a turn (it would wait for itself).
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#turn.then(fn);
    this.#turn = run.catch(() => undefined);
    return run;
  }

  /** Ends every activation not ended yet (smart mode off, or a reset); within a turn (exclusive()). */
  async endAll(): Promise<void> {
    for (const a of this.#h.store.state.activations) if (a.phase !== 'ended') await this.end(a.id);
  }

  /**
   * Decides within a turn (the decision stored), answers after it: the answer waits for the broker's confirm, and a
   * broker that went away at that moment held every start and end behind it until it came back (an activation
   * started after its own `to`). An answer that fails is sent again from the stored decision when the message comes
   * again.
   */
  async activate(m: Message<'activate'>, ctx: HandlerContext): Promise<void> {
    const answer = await this.exclusive(() => this.#activate(m, ctx));
    await answer();
  }

  /** The decision, stored; what it returns sends the answer. */
  async #activate(m: Message<'activate'>, ctx: HandlerContext): Promise<() => Promise<void>> {
    const h = this.#h;
    const known = h.store.state.activations.find((a) => a.id === m.id);
    // As it was before this decision (a cancellation ends it first), for the log.
    const prior = known === undefined ? undefined : { ...known };
    const latest = Math.max(known?.modificationCount ?? -1, known?.refused?.modificationCount ?? -1);
    if (known !== undefined && m.modification_count < latest) {
      return () => refuse(ctx, m, 450, `modification_count ${m.modification_count} is older than ${latest}`);
    }
    // Idempotent: the same (id, count) gets the decision already sent, a refused modification's too.
    const sent =
      m.modification_count === known?.modificationCount
        ? known.decisionMessage
        : m.modification_count === known?.refused?.modificationCount
          ? known.refused.decisionMessage
          : undefined;
    if (sent !== undefined) return () => ctx.reply(sent as Message);
    const decide = async (
      decision: Activation['decision'],
      message: Record<string, unknown>,
      phase: Activation['phase'] = 'scheduled',
    ): Promise<() => Promise<void>> => {
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
        phase,
      };
      // A refused modification leaves the version in force as it is (running or to come): only the refusal is kept.
      const inForce = known !== undefined && known.decision !== 'rejected' && known.phase !== 'ended';
      if (decision === 'rejected' && inForce) {
        await h.store.update(() => {
          known.refused = { modificationCount: m.modification_count, decisionMessage: message };
        });
        this.#log(a, m.quantity, prior);
        return () => ctx.reply(message as Message);
      }
      if (known !== undefined && known.phase === 'running') await this.end(m.id, false);
      // The version replaced takes its timers with it, scheduled or ended: left, its start would run the new version
      // at the old from (or run a rejected one), and its end cut the new one short.
      this.#cancel(m.id);
      await h.store.update((s) => {
        s.activations = s.activations.filter((x) => x.id !== m.id && !stale(x, h.now()));
        s.activations.push(a);
      });
      this.#log(a, m.quantity, prior);
      if (decision !== 'rejected' && phase === 'scheduled') this.#schedule(a);
      return () => ctx.reply(message as Message);
    };
    const base = { id: m.id, modification_count: m.modification_count, ...hehOf(m) };
    const reject = (code: number, reason: string): Promise<() => Promise<void>> =>
      decide('rejected', { msg: 'reject_activation', ...base, code, reason });
    const accept = (phase?: Activation['phase']): Promise<() => Promise<void>> =>
      decide('accepted', { msg: 'accept_activation', ...base }, phase);
    const now = h.now();
    if (m.quantity === 0 && known !== undefined) {
      // A cancellation (the same id, a higher count, quantity 0) is accepted in any mode: stopping is always allowed.
      // It ends what runs, and nothing is left to start (it was kept as a 0 kW activation sent to the actuator at from).
      await this.end(m.id);
      return accept('ended');
    }
    if (known === undefined && h.store.state.activations.filter((x) => !stale(x, now)).length >= MAX_ACTIVATIONS) {
      // Not stored (there is no room): while the hub is full, the same (id, count) is refused the same way again.
      const refusal = {
        msg: 'reject_activation',
        ...base,
        code: 469,
        reason: `the hub keeps at most ${MAX_ACTIVATIONS} activations (to come, running, or decided in the last day)`,
      };
      h.log.warn('activation rejected: too many kept', { id: m.id, requester: ctx.sender, max: MAX_ACTIVATIONS });
      return () => ctx.reply(refusal as Message);
    }
    if (h.store.state.mode !== 'normal') return reject(451, `the hub is in ${h.store.state.mode} mode`);
    if (m.to.epochMs <= now || m.from.epochMs < now - LATE_MS)
      return reject(454, 'the activation has expired or arrived too late');
    if (m.device !== null && !h.config.devices.some((d) => d.name === m.device))
      return reject(462, `no device "${m.device}"`);
    if (m.quantity === 0) return accept('ended'); // nothing to do
    // What is left between from and to once every other accepted activation overlapping it is counted (this one's
    // earlier version is not: it is replaced).
    const { free, capacity } = this.#free(m.device, m.from.epochMs, m.to.epochMs, m.id);
    const limit = free;
    if (capacity === 0) return reject(451, 'no controllable capacity for this activation');
    if (limit === 0)
      return reject(
        451,
        `no capacity left between from and to: the ${capacity} kW of ${m.device ?? 'the hub'} are taken by accepted activations`,
      );
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
    return accept();
  }

  /** The decision in the log with its figures: what the hub agreed to, and what it replaced. */
  #log(a: Activation, asked: number, before: Activation | undefined): void {
    const m = a.decisionMessage;
    const replaced = before !== undefined && before.decision !== 'rejected' && before.phase !== 'ended';
    const what =
      a.decision === 'rejected'
        ? 'rejected'
        : asked === 0 && before !== undefined
          ? 'cancelled'
          : a.decision === 'modified'
            ? 'modified'
            : 'accepted';
    this.#h.log.info(`activation ${what}`, {
      id: a.id,
      count: a.modificationCount,
      requester: a.requester,
      device: a.device,
      quantity: a.decision === 'rejected' ? asked : a.quantity,
      ...(a.decision === 'modified' ? { asked } : {}),
      from: new Date(a.from).toISOString(),
      to: new Date(a.to).toISOString(),
      ...(a.decision === 'rejected' ? { code: m['code'], reason: m['reason'] } : {}),
      ...(replaced ? { replaces: before.modificationCount, was: before.phase } : {}),
    });
  }

  /** [pos, neg] kW: what the controllable devices can still add or shed now, every accepted activation counted. */
  capacity(device: string | null): [number, number] {
    const now = this.#h.now();
    const { free } = this.#free(device, now, now + 1);
    return [free, free];
  }

  /**
   * The capacity of `device` (null: the hub) and what is free of it at every instant of [from, to): the least, over
   * that span, of its maxPowerKw less the accepted activations on it, and of the hub's total less all of them (an
   * activation for the hub as a whole takes from the total). Power is counted either way (|quantity|): a relay that
   * sheds 2 kW cannot also add 2 kW. `except`: the activation being replaced. docs/hub.md, "Activations".
   */
  #free(device: string | null, from: number, to: number, except?: string): { free: number; capacity: number } {
    const h = this.#h;
    const capOf = (name: string): number =>
      h.actuators.has(name) ? (h.config.devices.find((d) => d.name === name)?.maxPowerKw ?? 0) : 0;
    const total = h.config.devices.reduce((n, d) => n + capOf(d.name), 0);
    const capacity = device === null ? total : capOf(device);
    const booked = h.store.state.activations.filter(
      (a) => a.id !== except && a.decision !== 'rejected' && a.phase !== 'ended' && a.from < to && a.to > from,
    );
    // Bookings only start within the span at their from: the least headroom is at one of those instants, or at from.
    const instants = [from, ...booked.map((a) => a.from).filter((t) => t > from)];
    let free = capacity;
    for (const t of instants) {
      const now = booked.filter((a) => a.from <= t && t < a.to);
      const all = now.reduce((n, a) => n + Math.abs(a.quantity), 0);
      const mine =
        device === null ? all : now.filter((a) => a.device === device).reduce((n, a) => n + Math.abs(a.quantity), 0);
      free = Math.min(free, capacity - mine, total - all);
    }
    return { free: Math.max(0, Math.round(free * 1000) / 1000), capacity };
  }

  /** Sheds every controllable load until the contingency ends; nothing is sent back (the spec wants no ack). */
  async contingencyActivate(m: Message<'contingency_activate'>): Promise<void> {
    const h = this.#h;
    await h.event('contingency_start', null);
    for (const [device, act] of h.actuators) {
      await act
        .apply({
          action: 'activate',
          id: m.id,
          device,
          quantity: -(m.max_quantity ?? 0),
          from: m.from.epochMs,
          to: m.to.epochMs,
        })
        .catch((err: unknown) => h.log.warn('actuator failed', { device, error: err }));
    }
  }

  async contingencyEnd(m: Message<'contingency_end'>): Promise<void> {
    const h = this.#h;
    for (const [device, act] of h.actuators) {
      await act
        .apply({ action: 'end', id: m.id, device })
        .catch((err: unknown) => h.log.warn('actuator failed', { device, error: err }));
    }
    // The contingency is over: its start event stops reading "still going on" (end_time null) in energy_events.
    await h.store.update((s) => {
      for (const e of s.events) if (e.type === 'contingency_start' && e.end === null) e.end = m.end.epochMs;
    });
    await h.event('contingency_end');
  }

  #schedule(a: Activation): void {
    const h = this.#h;
    const timers: Timer[] = [];
    const at = (ms: number, fn: () => Promise<void>): void => {
      timers.push(
        h.clock.setTimeout(
          () => void fn().catch((err: unknown) => h.log.error('activation step failed', { id: a.id, error: err })),
          Math.max(0, ms - h.now()),
          // `from` and `to` are wall-clock times: a clock stepped by NTP (a Pi that booted offline on a stale time)
          // must not leave a device running for the size of the step.
          { unref: true, wall: true },
        ),
      );
    };
    const turn = (fn: () => Promise<void>) => () => this.exclusive(() => (this.#stopped ? Promise.resolve() : fn()));
    if (a.phase === 'scheduled')
      at(
        a.from,
        turn(() => this.#begin(a.id)),
      );
    at(
      a.to,
      turn(() => this.end(a.id)),
    );
    this.#timers.set(a.id, timers);
  }

  #cancel(id: string): void {
    for (const t of this.#timers.get(id) ?? []) t.cancel();
    this.#timers.delete(id);
  }

  async #begin(id: string): Promise<void> {
    const h = this.#h;
    const a = h.store.state.activations.find((x) => x.id === id);
    if (a === undefined || a.phase !== 'scheduled' || a.decision === 'rejected') return;
    if (a.to <= h.now()) {
      // Its whole window passed while the hub was stopped: started now, it would run after its to.
      await h.store.update(() => {
        a.phase = 'ended';
      });
      h.log.warn('activation not started: its window passed while the hub was stopped', {
        id,
        count: a.modificationCount,
        to: new Date(a.to).toISOString(),
      });
      return;
    }
    if (a.device !== null) await this.#reshare(a.device, a.quantity);
    const shares = a.device === null ? this.#split(a, this.#running(a.id)) : new Map([[a.device, a.quantity]]);
    for (const [device, act] of h.actuators) {
      const quantity = shares.get(device);
      if (quantity !== undefined)
        await this.#apply(act, { action: 'activate', id, device, quantity, from: a.from, to: a.to });
    }
    await h.store.update(() => {
      a.phase = 'running';
      if (a.device === null) a.shares = Object.fromEntries(shares);
    });
    h.log.info('activation_start', { id, count: a.modificationCount, device: a.device, quantity: a.quantity });
    await h.event('activation_start');
  }

  /** kW per device of what runs, but `except`: device activations on their device, whole-hub ones by their shares. */
  #running(except: string): Map<string, number> {
    const used = new Map<string, number>();
    for (const x of this.#h.store.state.activations) {
      if (x.phase !== 'running' || x.id === except) continue;
      if (x.device !== null) addKw(used, x.device, x.quantity);
      else for (const [device, q] of Object.entries(x.shares ?? {})) addKw(used, device, q);
    }
    return used;
  }

  /**
   * A whole-hub activation's quantity shared out over the devices with an actuator, in the configuration's order, each
   * up to its maxPowerKw less what `used` has on it: every actuator was given the whole quantity, so 0.5 kW accepted
   * ran 1.5 kW on two devices, and a 2 kW boiler was told to run 2.5 kW.
   */
  #split(a: Activation, used: Map<string, number>): Map<string, number> {
    const h = this.#h;
    const shares = new Map<string, number>();
    let left = Math.abs(a.quantity);
    for (const d of h.config.devices) {
      if (!h.actuators.has(d.name) || left <= 0) continue;
      const take = Math.min(left, Math.max(0, (d.maxPowerKw ?? 0) - (used.get(d.name) ?? 0)));
      if (take <= 0) continue;
      shares.set(d.name, (Math.sign(a.quantity) * Math.round(take * 1000)) / 1000);
      left -= take;
    }
    if (left > 0.0005)
      h.log.warn('activation runs short: the devices have less room than accepted', { id: a.id, short: left });
    return shares;
  }

  /**
   * A device's own activation about to start takes its room from the whole-hub activations that run: their shares are
   * worked out again with it counted, and what changes is told to the actuators first, decreases before increases.
   * Fixed at their start, a whole-hub activation's 2 kW on a 2 kW boiler stayed when the boiler's own 1.5 kW started
   * (3.5 kW told to it), while the room the acceptance counted on was on another device.
   */
  async #reshare(device: string, quantity: number): Promise<void> {
    const h = this.#h;
    const hubWide = h.store.state.activations.filter((x) => x.phase === 'running' && x.device === null);
    if (hubWide.length === 0) return;
    const used = new Map<string, number>();
    addKw(used, device, quantity);
    for (const x of h.store.state.activations)
      if (x.phase === 'running' && x.device !== null) addKw(used, x.device, x.quantity);
    for (const x of hubWide) {
      const before = x.shares ?? {};
      const after = this.#split(x, used);
      for (const [d, q] of after) addKw(used, d, q);
      const changed = [...h.actuators.keys()].filter((d) => after.get(d) !== before[d]);
      if (changed.length === 0) continue;
      const less = (d: string): boolean => Math.abs(after.get(d) ?? 0) < Math.abs(before[d] ?? 0);
      for (const d of [...changed.filter(less), ...changed.filter((d) => !less(d))]) {
        const q = after.get(d);
        await this.#apply(
          h.actuators.get(d) as Actuator,
          q === undefined
            ? { action: 'end', id: x.id, device: d }
            : { action: 'activate', id: x.id, device: d, quantity: q, from: x.from, to: x.to },
        );
      }
      await h.store.update(() => {
        x.shares = Object.fromEntries(after);
      });
      h.log.info('activation shared out again', { id: x.id, shares: x.shares, for: device });
    }
  }

  /** Ends an activation: its timers, the actuators if it runs, its phase; `record`: an activation_end event. */
  /** Has an actuator start or end its part of an activation; a failure is logged and an actuator_fault event. */
  async #apply(act: Actuator, command: ActuatorCommand): Promise<void> {
    try {
      await act.apply(command);
    } catch (err) {
      this.#h.log.error('actuator failed', { device: command.device, id: command.id, error: err });
      await this.#h.event('actuator_fault');
    }
  }

  async end(id: string, record = true): Promise<void> {
    const h = this.#h;
    this.#cancel(id);
    const a = h.store.state.activations.find((x) => x.id === id);
    if (a === undefined || a.phase === 'ended') return;
    if (a.phase === 'running') {
      for (const [device, act] of h.actuators) {
        if (a.device !== null && a.device !== device) continue;
        if (a.device === null && a.shares !== undefined && !Object.hasOwn(a.shares, device)) continue;
        // As a failed start: the device may still run what it was told (a relay stuck on).
        await this.#apply(act, { action: 'end', id, device });
      }
    }
    const ran = a.phase === 'running';
    await h.store.update(() => {
      a.phase = 'ended';
    });
    h.log.info(ran ? 'activation_end' : 'activation ended before it started', {
      id,
      count: a.modificationCount,
      device: a.device,
      quantity: a.quantity,
      ...(record ? {} : { why: 'replaced by a modification' }),
    });
    if (record) await h.event('activation_end');
  }
}
