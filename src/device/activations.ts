/**
 * Activations (data model §3.5 rules 4 and 5) and contingencies: the decision for each (id, modification_count),
 * the capacity the actuators have, and the timers that start and end what was accepted. A decision is stored before
 * it is sent, so that the same (id, count) gets the same decision again, after a restart too; what runs when the
 * hub stops is resumed by the next start (nothing is ended on the devices by a stop).
 */
import type { HandlerContext } from '../bus/index.js';
import type { Message } from '../codec/index.js';
import type { Timer } from '../core/clock.js';
import type { HubContext } from './hub-context.js';
import { hehOf, refuse } from './replies.js';
import type { Activation } from './state.js';

/** An activation arriving this late after its start is not executed (data model §3.5 rule 5). */
const LATE_MS = 15 * 60_000;

export class Activations {
  readonly #h: HubContext;
  readonly #timers = new Map<string, Timer[]>();

  constructor(hub: HubContext) {
    this.#h = hub;
  }

  /** Schedules again what survived a restart. */
  resume(): void {
    for (const a of this.#h.store.state.activations)
      if (a.phase !== 'ended' && a.decision !== 'rejected') this.#schedule(a);
  }

  /** Stops the timers; nothing is ended on the devices (a restart resumes the activations). */
  stop(): void {
    for (const list of this.#timers.values()) for (const t of list) t.cancel();
    this.#timers.clear();
  }

  /** Ends every activation not ended yet (smart mode off, or a reset). */
  async endAll(): Promise<void> {
    for (const a of this.#h.store.state.activations) if (a.phase !== 'ended') await this.end(a.id);
  }

  async activate(m: Message<'activate'>, ctx: HandlerContext): Promise<void> {
    const h = this.#h;
    const known = h.store.state.activations.find((a) => a.id === m.id);
    if (known !== undefined && m.modification_count < known.modificationCount) {
      return refuse(ctx, m, 450, `modification_count ${m.modification_count} is older than ${known.modificationCount}`);
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
      if (known !== undefined && known.phase === 'running' && decision !== 'rejected') await this.end(m.id, false);
      await h.store.update((s) => {
        s.activations = s.activations.filter(
          (x) => x.id !== m.id && !(x.phase === 'ended' && x.to < h.now() - 86_400_000),
        );
        s.activations.push(a);
      });
      await ctx.reply(message as Message);
      if (decision !== 'rejected') this.#schedule(a);
    };
    const base = { id: m.id, modification_count: m.modification_count, ...hehOf(m) };
    const reject = (code: number, reason: string): Promise<void> =>
      decide('rejected', { msg: 'reject_activation', ...base, code, reason });
    const now = h.now();
    if (m.quantity === 0 && known !== undefined) {
      // A cancellation (the same id, a higher count, quantity 0) is accepted in any mode: stopping is always allowed.
      await this.end(m.id);
      return decide('accepted', { msg: 'accept_activation', ...base });
    }
    if (h.store.state.mode !== 'normal') return reject(451, `the hub is in ${h.store.state.mode} mode`);
    if (m.to.epochMs <= now || m.from.epochMs < now - LATE_MS)
      return reject(454, 'the activation has expired or arrived too late');
    if (m.device !== null && !h.config.devices.some((d) => d.name === m.device))
      return reject(462, `no device "${m.device}"`);
    if (m.quantity === 0) return decide('accepted', { msg: 'accept_activation', ...base }); // nothing to do
    const [pos, neg] = this.capacity(m.device);
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
  capacity(device: string | null): [number, number] {
    const h = this.#h;
    let total = 0;
    for (const d of h.config.devices) {
      if (device !== null && d.name !== device) continue;
      if (!h.actuators.has(d.name)) continue;
      total += d.maxPowerKw ?? 0;
    }
    const running = h.store.state.activations
      .filter((a) => a.phase === 'running' && (device === null || a.device === device))
      .reduce((s, a) => s + Math.abs(a.quantity), 0);
    const free = Math.max(0, Math.round((total - running) * 1000) / 1000);
    return [free, free];
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
          { unref: true },
        ),
      );
    };
    if (a.phase === 'scheduled') at(a.from, () => this.#begin(a.id));
    at(a.to, () => this.end(a.id));
    this.#timers.set(a.id, timers);
  }

  async #begin(id: string): Promise<void> {
    const h = this.#h;
    const a = h.store.state.activations.find((x) => x.id === id);
    if (a === undefined || a.phase !== 'scheduled') return;
    for (const [device, act] of h.actuators) {
      if (a.device !== null && a.device !== device) continue;
      try {
        await act.apply({ action: 'activate', id, device, quantity: a.quantity, from: a.from, to: a.to });
      } catch (err) {
        h.log.error('actuator failed', { device, id, error: err });
        await h.event('actuator_fault');
      }
    }
    await h.store.update(() => {
      a.phase = 'running';
    });
    await h.event('activation_start');
  }

  /** Ends an activation: its timers, the actuators if it runs, its phase; `record`: an activation_end event. */
  async end(id: string, record = true): Promise<void> {
    const h = this.#h;
    for (const t of this.#timers.get(id) ?? []) t.cancel();
    this.#timers.delete(id);
    const a = h.store.state.activations.find((x) => x.id === id);
    if (a === undefined || a.phase === 'ended') return;
    if (a.phase === 'running') {
      for (const [device, act] of h.actuators) {
        if (a.device !== null && a.device !== device) continue;
        await act
          .apply({ action: 'end', id, device })
          .catch((err: unknown) => h.log.error('actuator failed', { device, id, error: err }));
      }
    }
    await h.store.update(() => {
      a.phase = 'ended';
    });
    if (record) await h.event('activation_end');
  }
}
