/**
 * Reports from the history: get_report, the first version's get_load_report, and periodic report subscriptions
 * (get_periodic_report: one per requester, kept in the state, each period sent once it is over through the outbox,
 * with a message id derived from the period so that a period sent twice after a crash is dropped by the peer).
 * Why a query has no answer is a §3.6 code: 454 (from >= to), 460 (a signal not measured), 461 (resolution).
 */
import { createHash } from 'node:crypto';
import type { HandlerContext } from '../bus/index.js';
import { EbTime, type Message } from '../codec/index.js';
import type { Timer } from '../core/clock.js';
import { HistoryError } from './history.js';
import type { HubContext } from './hub-context.js';
import { hehOf, refuse } from './replies.js';

type Answer = { from: number; to: number; values: Record<string, (number | null)[]> };
type NoAnswer = '460' | '461' | '454';

export class Reports {
  readonly #h: HubContext;
  readonly #periodic = new Map<string, Timer>();

  constructor(hub: HubContext) {
    this.#h = hub;
  }

  get signals(): string[] {
    return this.#h.config.devices.flatMap((d) => d.signals.map((s) => `${d.name}.${s.name}`));
  }

  /** Schedules the subscriptions that survived a restart. */
  resume(): void {
    for (const s of this.#h.store.state.subscriptions) this.#schedulePeriodic(s.requester);
  }

  stop(): void {
    for (const requester of [...this.#periodic.keys()]) this.#clearPeriodic(requester);
  }

  async getReport(m: Message<'get_report'>, ctx: HandlerContext): Promise<void> {
    const r = this.#query(m.from.epochMs, m.to.epochMs, m.resolution, m.signals);
    if (typeof r === 'string') return this.#noAnswer(ctx, m, r);
    await ctx.reply({
      msg: 'report',
      from: EbTime.fromEpochMs(r.from),
      to: EbTime.fromEpochMs(r.to),
      resolution: m.resolution,
      values: r.values,
      ...hehOf(m),
    });
  }

  async getLoadReport(m: Message<'get_load_report'>, ctx: HandlerContext): Promise<void> {
    const config = this.#h.config;
    // The first version reports one load curve: the device's power, or the sum of every device's.
    const devices = m.device == null ? config.devices : config.devices.filter((d) => d.name === m.device);
    if (devices.length === 0) return refuse(ctx, m, 462, `no device "${String(m.device)}"`);
    const signals = devices.map((d) => `${d.name}.${d.signals[0]?.name ?? 'p'}`);
    const r = this.#query(m.from.epochMs, m.to.epochMs, m.resolution, signals);
    if (typeof r === 'string') return this.#noAnswer(ctx, m, r);
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

  async getPeriodicReport(m: Message<'get_periodic_report'>, ctx: HandlerContext): Promise<void> {
    const h = this.#h;
    const requester = ctx.sender;
    if (m.interval === -1) {
      await h.store.update((s) => {
        s.subscriptions = s.subscriptions.filter((x) => x.requester !== requester);
      });
      this.#clearPeriodic(requester);
      return;
    }
    const res = h.config.resolutionS;
    if (m.interval <= 0 || m.resolution % res !== 0 || m.interval % m.resolution !== 0) {
      return refuse(
        ctx,
        m,
        461,
        `interval must be a positive multiple of the resolution, itself a multiple of ${res} s`,
      );
    }
    const missing = m.signals.filter((s) => !this.signals.includes(s));
    if (missing.length > 0) return refuse(ctx, m, 460, `signals not measured here: ${missing.join(', ')}`);
    const step = m.interval * 1000;
    const first = m.first_from?.epochMs ?? Math.floor(h.now() / step) * step;
    // One subscription per requester: a new one replaces the old.
    await h.store.update((s) => {
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

  /** The history's answer, or the §3.6 code explaining why there is none. */
  #query(from: number, to: number, resolution: number, signals: string[]): Answer | NoAnswer {
    if (from >= to) return '454';
    try {
      const r = this.#h.history.query(from, to, resolution, signals);
      if (r.missing.length > 0) return '460';
      return r;
    } catch (err) {
      if (err instanceof HistoryError && err.code === 'RESOLUTION') return '461';
      throw err;
    }
  }

  #noAnswer(ctx: HandlerContext, m: Message, code: NoAnswer): Promise<void> {
    const why = {
      460: 'a requested signal is not measured by this hub',
      461: `the resolution must be a multiple of ${this.#h.config.resolutionS} s`,
      454: 'from is not before to',
    };
    return refuse(ctx, m, Number(code), why[code]);
  }

  #clearPeriodic(requester: string): void {
    this.#periodic.get(requester)?.cancel();
    this.#periodic.delete(requester);
  }

  /** Sends each period once it is over (plus one sample's time for the last reading to land). */
  #schedulePeriodic(requester: string): void {
    const h = this.#h;
    this.#clearPeriodic(requester);
    const sub = h.store.state.subscriptions.find((s) => s.requester === requester);
    if (sub === undefined || h.stopping) return;
    const due = sub.next + sub.interval * 1000 + h.config.resolutionS * 1000;
    const t = h.clock.setTimeout(
      () => {
        if (this.#periodic.get(requester) === t) this.#periodic.delete(requester);
        void this.#sendPeriodic(requester)
          .catch((err: unknown) => h.log.error('periodic report failed', { requester, error: err }))
          .finally(() => this.#schedulePeriodic(requester));
      },
      Math.max(0, due - h.now()),
      { unref: true },
    );
    this.#periodic.set(requester, t);
  }

  async #sendPeriodic(requester: string): Promise<void> {
    const h = this.#h;
    const sub = h.store.state.subscriptions.find((s) => s.requester === requester);
    if (sub === undefined) return;
    const from = sub.next;
    const to = from + sub.interval * 1000;
    const r = this.#query(from, to, sub.resolution, sub.signals);
    if (typeof r !== 'string') {
      // The period's progress is saved lazily: after a crash the same period may be reported again, and its
      // message id, derived from the period, lets the peer drop the copy (as it drops any re-sent message).
      const id = derivedUuid(
        `${h.config.name}|periodic|${requester}|${sub.requestId ?? ''}|${sub.interval}|${sub.resolution}|${from}`,
      );
      await h.send(
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
    const next = Math.max(to, Math.floor((h.now() - 86_400_000) / (sub.interval * 1000)) * sub.interval * 1000);
    await h.store.update(
      (s) => {
        const x = s.subscriptions.find((y) => y.requester === requester);
        if (x !== undefined) x.next = next;
      },
      { lazy: true },
    );
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
