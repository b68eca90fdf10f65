/**
 * One instance of a sharded aggregator in a process of its own, so that a test can kill -9 it
 * (test/integration/instances-cluster.test.ts, bench/instances.ts). Forked with one JSON argument (InstanceSpec);
 * talks to its parent over IPC:
 *
 *   parent -> child  { activate: [hub, id] }            send an activation with request() and wait for its answer
 *                    { pause: true } / { resume: true }  hold the report handlers (deliveries wait, unsettled) / go on
 *                    { cpu: true }                       asks for { cpu: process.cpuUsage(), handled }
 *                    { status: true }                    asks for { status: { shards, events } }: shardStatus() and
 *                                                        the transport's connection events so far
 *                    { stop: true }                      closes the bus and exits
 *   child -> parent  { ready: true }                    started (subscribed, announced)
 *                    { r: [[hub, seq], ...] }           reports handled, batched per tick, sent from the handler
 *                    { a: [id, hub, ms] }               an activation of ours answered (our request settled)
 *                    { o: [id, hub] }                   an answer that reached us with no request of ours waiting
 *                    { f: [id, error] }                 our request failed
 *                    { dup: n }                         duplicates the Connector dropped so far
 *                    { at: 'host:port' }                 the node we are connected to (at start, after a recovery)
 *
 * A report's handler sends its line before the Connector records and acks it: what the parent counts is what the
 * application saw, including a copy handled again after a kill -9.
 */
import { amqpBus } from '../../src/bus/index.js';
import { EbTime, type Message } from '../../src/codec/index.js';

export interface InstanceSpec {
  name: string;
  peers: string[];
  shards: number;
  instance: string;
  endpoints: string[];
  presenceMs?: number;
  prefetch?: number;
  /** CPU a report's handler spends, in microseconds (default 0). */
  workUs?: number;
}

const spec = JSON.parse(process.argv[2] as string) as InstanceSpec;
const send = (m: unknown): void => {
  process.send?.(m);
};

const bus = amqpBus({
  name: spec.name,
  peers: spec.peers,
  url: {
    endpoints: spec.endpoints,
    username: 'guest',
    password: 'guest',
    reconnectDelay: 2000,
    maxReconnectDelay: 4000,
    heartbeat: 5,
    connectTimeout: 5000,
  },
  inboxes: { shards: spec.shards },
  instance: spec.instance,
  ...(spec.presenceMs === undefined ? {} : { presenceMs: spec.presenceMs }),
  prefetch: spec.prefetch ?? 50,
  budget: false,
  dedupe: { capacity: 200_000 },
});

let reports: [string, number | null][] = [];
let flushing = false;
const flush = (): void => {
  flushing = false;
  const batch = reports;
  reports = [];
  if (batch.length > 0) send({ r: batch });
};
let duplicates = 0;
bus.on('duplicate', () => {
  duplicates++;
});
setInterval(() => send({ dup: duplicates }), 500).unref();

let paused: Promise<void> | undefined;
let resume: () => void = () => undefined;
let handled = 0;

bus.onReport(async (m, ctx) => {
  if (paused !== undefined) await paused;
  handled++;
  const work = spec.workUs ?? 0;
  if (work > 0) {
    const end = process.hrtime.bigint() + BigInt(work * 1000);
    while (process.hrtime.bigint() < end) {
      // the CPU a real handler spends
    }
  }
  // The hubs' simulator numbers each hub's reports in the signal `seq`.
  reports.push([ctx.sender, m.values['seq']?.[0] ?? -1]);
  if (!flushing) {
    flushing = true;
    setImmediate(flush);
  }
});
bus.onAcceptActivation((m, ctx) => {
  send({ o: [m.id, ctx.sender] });
});
bus.on('handler-error', (err) => send({ error: String(err) }));
// The node we are connected to, so that a test can kill that one.
bus.transport.on('up', (endpoint) => send({ at: endpoint }));
bus.transport.on('recovered', (info) => send({ at: info.endpoint }));
// What went wrong underneath, for the test's log when an assertion fails.
const events: string[] = [];
for (const event of ['down', 'recovered', 'restore-failed', 'degraded', 'source-cancelled', 'resumed'] as const) {
  bus.transport.on(event, (...args: unknown[]) => {
    events.push(`${new Date().toISOString()} ${event} ${args.map((a) => String(a)).join(' ')}`.slice(0, 300));
  });
}

interface Command {
  activate?: [string, string];
  pause?: true;
  resume?: true;
  cpu?: true;
  status?: true;
  stop?: true;
}

process.on('message', (m: Command) => {
  if (m.pause === true) {
    paused ??= new Promise((r) => {
      resume = r;
    });
  }
  if (m.resume === true) {
    paused = undefined;
    resume();
  }
  if (m.cpu === true) send({ cpu: process.cpuUsage(), handled });
  if (m.status === true) send({ status: { shards: bus.transport.shardStatus(), events } });
  if (m.stop === true) void bus.close().then(() => process.exit(0));
  if (m.activate === undefined) return;
  const asked = performance.now();
  const [hub, id] = m.activate;
  const from = EbTime.fromEpochMs(Date.now() + 3_600_000);
  const activation: Message<'activate'> = {
    msg: 'activate',
    id,
    modification_count: 0,
    from,
    to: from.plusSeconds(900),
    quantity: -1.5,
    device: 'boiler',
    heh_id: hub,
  };
  bus.request(hub, activation, { timeout: 60_000 }).then(
    () => send({ a: [id, hub, performance.now() - asked] }),
    (err: unknown) => send({ f: [id, String(err)] }),
  );
});

await bus.start();
send({ ready: true });
