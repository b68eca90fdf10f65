/**
 * How the hub words its answers (data model §3.5, §3.6), shared by its handlers (hub.ts), its reports (reports.ts)
 * and its activations (activations.ts): an error `response` with the code, the type answered and the request's
 * echoes; the heh_id and request_id echoes of a reply; an event as energy_events carries it.
 */
import type { HandlerContext } from '../bus/index.js';
import { EbTime, type Message } from '../codec/index.js';
import type { HubEvent } from './state.js';

/**
 * A `response` with an error code: to the msg_id when there is one, else with msg_id null and the echoes (§3.5 rule
 * 3); a message with none of them is not answered (ctx.respond sends nothing): nobody could tell what it is about.
 */
export async function refuse(ctx: HandlerContext, m: Message, code: number, desc: string): Promise<void> {
  const x = m as { msg_id?: string; request_id?: string; id?: string };
  if (x.msg_id !== undefined || (x.request_id === undefined && x.id === undefined)) return ctx.respond(code, desc);
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

export function hehOf(m: { heh_id?: string | null }): { heh_id?: string | null } {
  return m.heh_id === undefined ? {} : { heh_id: m.heh_id };
}

export function echo(request: Message | undefined): { request_id?: string; heh_id?: string | null } {
  const r = request as { request_id?: string; heh_id?: string | null } | undefined;
  return {
    ...(r?.request_id === undefined ? {} : { request_id: r.request_id }),
    ...(r?.heh_id === undefined ? {} : { heh_id: r.heh_id }),
  };
}

export function toEnergyEvent(e: HubEvent): {
  severity: number;
  type: string;
  start_time: EbTime;
  end_time: EbTime | null;
} {
  // An instant event ends when it starts; null means still going on (data model §3.3).
  const end = e.end === undefined ? EbTime.fromEpochMs(e.time) : e.end === null ? null : EbTime.fromEpochMs(e.end);
  return { severity: e.severity, type: e.type, start_time: EbTime.fromEpochMs(e.time), end_time: end };
}
