/**
 * One log line per request the hub handles, so that an operator can follow what its peers asked and what it
 * answered: `request` at info with the type, the peer, the request's ids (request_id, msg_id, an activation's id and
 * count), the outcome (the code answered, 200 when the message was simply acked; the reply's type), what the codec
 * read leniently (`diagnostics`) and the time the handler took. At debug the message and the reply are added, whole. A handler that throws is `request failed`
 * (the bus retries it, then answers 500).
 *
 * Installed by registering the hub's handlers through requestLogged(bus): every handler given to it, by handle() or
 * an onX() method, is wrapped; the connector itself is unchanged.
 */
import { performance } from 'node:perf_hooks';
import type { Connector, Handler, HandlerContext } from '../bus/index.js';
import type { Message, MessageType } from '../codec/index.js';
import type { Logger } from './log.js';

/** What was answered: the code, and the reply's type when there was one. */
interface Outcome {
  code: number;
  reply?: string;
  desc?: string;
}

/** The connector as seen by the code that registers handlers: each handler is logged (see the top comment). */
export function requestLogged<C extends Connector>(bus: C, log: Logger): C {
  return new Proxy(bus, {
    get(target, prop, receiver) {
      // onX() calls this.handle(), so through the proxy it lands here too. The connector's private fields need the
      // connector itself as `this`.
      if (prop === 'handle')
        return (type: MessageType, handler: Handler<MessageType>) => target.handle(type, logged(type, handler, log));
      return Reflect.get(target, prop, receiver);
    },
  });
}

function logged<K extends MessageType>(type: K, handler: Handler<K>, log: Logger): Handler<K> {
  return async (message, ctx) => {
    const started = performance.now();
    let outcome: Outcome | undefined;
    const watched: HandlerContext = {
      ...ctx,
      reply: (reply: Message) => {
        outcome ??= outcomeOf(reply);
        log.debug('reply', { type: reply.msg, peer: ctx.sender, message: reply });
        return ctx.reply(reply);
      },
      respond: (code: number, description?: string, subcode?: number) => {
        outcome ??= { code, ...(description === undefined ? {} : { desc: description }) };
        return ctx.respond(code, description, subcode);
      },
    };
    log.debug('request body', { type, peer: ctx.sender, message });
    const ids = idsOf(message);
    try {
      await handler(message, watched);
    } catch (err) {
      log.warn('request failed', { type, peer: ctx.sender, ...ids, ms: elapsed(started), error: err });
      throw err;
    }
    const o = outcome ?? { code: 200 };
    // What the codec read leniently (a number written as a string, a comma-joined signal list: codec.md), so that
    // the peer's operator can be told what to fix.
    const lenient = ctx.diagnostics.length > 0 ? { diagnostics: ctx.diagnostics } : {};
    log.info('request', { type, peer: ctx.sender, ...ids, ...o, ...lenient, ms: elapsed(started) });
  };
}

function outcomeOf(reply: Message): Outcome {
  const r = reply as { msg: string; response_code?: number; response_desc?: string; code?: number };
  if (r.msg === 'response') return { code: r.response_code ?? 200, reply: r.msg, desc: r.response_desc ?? '' };
  if (r.msg === 'reject_activation') return { code: r.code ?? 400, reply: r.msg };
  return { code: 200, reply: r.msg };
}

/** The ids a peer would look for in the log: request_id, msg_id, an activation's id and modification_count. */
function idsOf(message: Message): Record<string, unknown> {
  const m = message as { request_id?: string; msg_id?: string | null; id?: string; modification_count?: number };
  return {
    ...(m.request_id === undefined ? {} : { request_id: m.request_id }),
    ...(typeof m.msg_id === 'string' ? { msg_id: m.msg_id } : {}),
    ...(m.id === undefined ? {} : { id: m.id }),
    ...(m.modification_count === undefined ? {} : { count: m.modification_count }),
  };
}

const elapsed = (t0: number): number => Math.round((performance.now() - t0) * 10) / 10;
