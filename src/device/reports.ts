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
/** Why there is no answer: the §3.6 code and the reason, in words the peer can act on. */
type NoAnswer = { code: 454 | 460 | 461; desc: string };

/**
 * The body every peer's bus refuses above (the codec's default DecodeLimits.maxBytes): a report must fit, sealed.
 * test/unit/device/hub-limits.test.ts encodes the largest report allowed and decodes it with the default limits.
 */
export const BODY_LIMIT = 1 << 20;
/** The last instant a message can carry (EbTime: years 0000 to 9999). */
const LAST_MS = Date.UTC(10_000, 0, 1) - 1;
/**
 * Values a report may hold (steps x signals): what fits BODY_LIMIT whatever the values are, JSON writing the longest
 * number in 24 characters (-2.2250738585072014e-308) and a comma, after the signals' names and 2 KiB for the rest
 * (msg, times, ids, a sealed envelope's header, signature and tag). About 41,800 values.
 */
export function maxReportValues(signals: readonly string[]): number {
  const names = signals.reduce((n, s) => n + s.length + 8, 0);
  return Math.floor((BODY_LIMIT - 2048 - names) / 25);
}
/** Periods a subscription catches up at most (a first_from further back, or a longer outage, starts at the last of them). */
export const MAX_CATCH_UP_PERIODS = 1000;
/** Catch-up reports go out one per this (10 a second), not back to back: the outbox and the peer take them in stride. */
export const CATCH_UP_MS = 100;

export class Reports {
  readonly #h: HubContext;
  readonly #periodic = new Map<string, Timer>();
  readonly #maxValues: number;

  constructor(hub: HubContext) {
    this.#h = hub;
    this.#maxValues = maxReportValues(this.signals);
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
    if ('code' in r) return refuse(ctx, m, r.code, r.desc);
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
    if ('code' in r) return refuse(ctx, m, r.code, r.desc);
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
    if (missing.length > 0) return refuse(ctx, m, 460, this.#unknownSignals(missing));
    const perReport = (m.interval / m.resolution) * new Set(m.signals).size;
    if (perReport > this.#maxValues)
      return refuse(ctx, m, 461, tooLarge(perReport, this.#maxValues, m.interval, m.resolution));
    const step = m.interval * 1000;
    const now = Math.floor(h.now() / step) * step;
    const asked = m.first_from?.epochMs ?? now;
    const first = Math.max(asked, this.#oldestCatchUp(step));
    if (first + step > LAST_MS)
      return refuse(
        ctx,
        m,
        454,
        'its first period would end after 9999-12-31T23:59:59Z, the last time a message can carry',
      );
    // One subscription per requester: a new one replaces the old.
    await h.store.update((s) => {
      s.subscriptions = s.subscriptions.filter((x) => x.requester !== requester);
      s.subscriptions.push({
        requester,
        interval: m.interval,
        resolution: m.resolution,
        signals: m.signals,
        next: first,
        ...(m.first_from !== null && first === asked ? { asked } : {}),
        ...(m.request_id === undefined ? {} : { requestId: m.request_id }),
        ...(m.heh_id === undefined ? {} : { hehId: m.heh_id }),
      });
    });
    this.#schedulePeriodic(requester);
    if (first > asked)
      await ctx.respond(
        200,
        `OK; the backlog is capped at ${MAX_CATCH_UP_PERIODS} periods within the history: reports start at ${EbTime.fromEpochMs(first).toString()}`,
      );
  }

  /** The earliest period a subscription catches up from: MAX_CATCH_UP_PERIODS back, within the history kept. */
  #oldestCatchUp(step: number): number {
    const h = this.#h;
    const periods = Math.floor(h.now() / step) * step - MAX_CATCH_UP_PERIODS * step;
    const retained = Math.ceil((h.now() - h.config.historyHours * 3_600_000) / step) * step;
    return Math.max(periods, retained);
  }

  /** The history's answer, or the §3.6 code and the reason why there is none. */
  #query(from: number, to: number, resolution: number, signals: string[]): Answer | NoAnswer {
    if (from >= to) return { code: 454, desc: 'from is not before to' };
    const res = this.#h.config.resolutionS;
    if (!Number.isInteger(resolution) || resolution < res || resolution % res !== 0)
      return { code: 461, desc: `the resolution must be a multiple of ${res} s, found ${resolution}` };
    const missing = [...new Set(signals)].filter((s) => !this.signals.includes(s));
    if (missing.length > 0) return { code: 460, desc: this.#unknownSignals(missing) };
    // Refused before the history is read: a report the peer's bus would refuse is no answer either.
    const values = Math.ceil((to - from) / (resolution * 1000)) * new Set(signals).size;
    if (values > this.#maxValues)
      return { code: 461, desc: tooLarge(values, this.#maxValues, (to - from) / 1000, resolution) };
    // The answer's end (`to` rounded up to a whole step) must be a time a message can carry.
    if (from + Math.ceil((to - from) / (resolution * 1000)) * resolution * 1000 > LAST_MS)
      return { code: 454, desc: 'the report would end after 9999-12-31T23:59:59Z, the last time a message can carry' };
    try {
      return this.#h.history.query(from, to, resolution, signals);
    } catch (err) {
      if (err instanceof HistoryError && err.code === 'RESOLUTION') return { code: 461, desc: err.message };
      throw err;
    }
  }

  /** 460's text: the signals not measured, and those that are, so the peer can correct its request. */
  #unknownSignals(missing: readonly string[]): string {
    return `signals not measured here: ${missing.join(', ')}; this hub measures: ${this.signals.join(', ')}`;
  }

  #clearPeriodic(requester: string): void {
    this.#periodic.get(requester)?.cancel();
    this.#periodic.delete(requester);
  }

  /** The clock was stepped back (the hub's sampling saw it): each subscription is scheduled again (#schedulePeriodic). */
  clockSteppedBack(): void {
    for (const s of this.#h.store.state.subscriptions) this.#schedulePeriodic(s.requester);
  }

  /** Sends each period once it is over (plus one sample's time for the last reading to land). */
  #schedulePeriodic(requester: string): void {
    const h = this.#h;
    this.#clearPeriodic(requester);
    const sub = h.store.state.subscriptions.find((s) => s.requester === requester);
    if (sub === undefined || h.stopping) return;
    const step = sub.interval * 1000;
    if (sub.next - h.now() > step && sub.next !== sub.asked) {
      // The clock went back (NTP correcting a clock that ran ahead: a Pi that booted two years on): the next period,
      // one of our clock's (not a first_from the peer asked for), lies more than an interval ahead, and waiting for
      // the clock to come back to it was a silence of that long. It goes on from the period under way, on its own
      // grid; what was sent for the periods ahead stays sent.
      const next = sub.next - Math.ceil((sub.next - h.now()) / step) * step;
      void h.store.update(
        () => {
          sub.next = next;
          delete sub.asked;
        },
        { lazy: true },
      );
      h.log.warn('the clock went back: periodic reports go on from the period under way', {
        requester,
        from: EbTime.fromEpochMs(next).toString(),
      });
    }
    const due = sub.next + step + h.config.resolutionS * 1000;
    // A period already due is a catch-up: paced, so that a backlog does not go out in one burst.
    const wait = due > h.now() ? due - h.now() : CATCH_UP_MS;
    const t = h.clock.setTimeout(
      () => {
        if (this.#periodic.get(requester) === t) this.#periodic.delete(requester);
        void this.#sendPeriodic(requester)
          .catch((err: unknown) => h.log.error('periodic report failed', { requester, error: err }))
          .finally(() => this.#schedulePeriodic(requester));
      },
      wait,
      { unref: true, wall: true },
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
    if ('code' in r) h.log.warn('periodic report not made', { requester, from, code: r.code, reason: r.desc });
    else {
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
    // After a long outage, catch up at most MAX_CATCH_UP_PERIODS within the history, instead of flooding the peer.
    const next = Math.max(to, this.#oldestCatchUp(sub.interval * 1000));
    // Only if it is still the subscription reported on: one that replaced it during the send starts at its own first
    // period, not at this one's progress.
    await h.store.update(
      (s) => {
        if (!s.subscriptions.includes(sub)) return;
        sub.next = next;
        delete sub.asked;
      },
      { lazy: true },
    );
  }
}

/** 461's text for a report larger than a peer's bus takes: the real reason, and what to ask instead. */
function tooLarge(values: number, max: number, spanS: number, resolution: number): string {
  return (
    `a report of ${values} values (${spanS} s at ${resolution} s, per signal) is more than the ${max} ` +
    `one report may hold (a bus refuses bodies over ${BODY_LIMIT} bytes): ask for a shorter span, a coarser ` +
    'resolution or fewer signals'
  );
}

/** A UUID (version 8, RFC 9562) that is a hash of `key`: the same key always gives the same id. */
export function derivedUuid(key: string): string {
  const h = createHash('sha256').update(key).digest();
  h[6] = ((h[6] as number) & 0x0f) | 0x80;
  h[8] = ((h[8] as number) & 0x3f) | 0x80;
  const x = h.toString('hex', 0, 16);
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}
