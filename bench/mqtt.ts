/**
 * AMQP against MQTT for the hub's report (issue 16, item 6), side by side in one run, each contender a pair of
 * clients (a hub and an aggregator) in one child process per repetition, interleaved (A B C ... A B C ...):
 *
 *  - `amqp`: our bus, amqpBus, on the RabbitMQ at 127.0.0.1:5672 (the Connector's defaults: quorum inboxes,
 *    publisher confirms, manual acks);
 *  - `mqtt-rabbitmq`: our bus, mqttBus, MQTT 3.1.1 through RabbitMQ's MQTT plugin on a throw-away node (rabbitmq_mqtt,
 *    own ports, names and data folder; started here, stopped at the end), both parties on MQTT;
 *  - `mqtt5-mosquitto`, `mqtt311-mosquitto`: our bus, mqttBus, MQTT 5 (the default 'auto') and 3.1.1 on the Mosquitto
 *    at 127.0.0.1:1883;
 *  - `mqttjs-mosquitto`, `mqttjs-rabbitmq`: MQTT.js used directly with its defaults (MQTT 3.1.1, clean session), QoS 1
 *    both ways (its default QoS 0 would not be the same promise), JSON.stringify and JSON.parse for the bodies and no
 *    validation: the baseline for what our transport and bus add on the same broker.
 *
 * Each run: (1) wire bytes through two counting TCP proxies in the child (one per client, untimed): per report sent
 * from hub to aggregator, and per get_report round trip; (2) a stream of STREAM reports from the hub, all published
 * at once (our transports bound themselves by their windows; MQTT.js, which has none, through a window of 100
 * unacknowledged publishes: see WINDOW), until every send is
 * acknowledged by the broker and every report was received and settled: reports/s and process CPU per report (both
 * clients, user + system, process.cpuUsage); (3) RT sequential round trips, the aggregator's get_report answered by
 * the hub's report (request(), ctx.reply()): p50 / p99 and CPU per round trip. Warm-up passes before (2) and (3).
 * Every run validates what it times: every report is received once, with its index and its values, none beyond N;
 * every answer carries its request's request_id and period and the values; the broker acknowledged every send. A
 * pre-flight run of each contender with small N must pass before anything is timed.
 *
 *   npx tsc -p tsconfig.json && node .out/bench/mqtt.js            (npm run bench:mqtt; "MQTT" section of RESULTS.md)
 *
 * Knobs: MQTT_BENCH_REPS (3), MQTT_BENCH_STREAM (5000), MQTT_BENCH_RT (300), MQTT_BENCH_WIRE (500),
 * MQTT_BENCH_ONLY (contender ids, comma list), MQTT_BENCH_RESULTS (bench/RESULTS.md; `-` for nowhere).
 * Entity names carry a per-run suffix; the AMQP queues and exchanges and the Mosquitto sessions of the run are
 * removed at the end.
 */
import { execFileSync, fork, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { connect } from '../src/amqp/index.js';
import { amqpBus, type Connector } from '../src/bus/index.js';
import { EbTime, encode, type Message } from '../src/codec/index.js';
import { mqttBus } from '../src/mqtt/index.js';
import { type BrokerNode, freePort, startBrokerNode } from '../test/helpers/broker-node.js';
import { envInt } from './knobs.js';
import { type CountingProxy, startProxy } from './proxy.js';
import { replaceSection, resultsPath } from './results-file.js';
import { fmt, median, percentile, ratio } from './stats.js';

const env = (k: string, d: number): number => envInt(k, d);
const REPS = env('MQTT_BENCH_REPS', 3);
const STREAM = env('MQTT_BENCH_STREAM', 5000);
const RT = env('MQTT_BENCH_RT', 300);
const WIRE = env('MQTT_BENCH_WIRE', 500);
const SECTION = '## MQTT against AMQP (bench/mqtt.ts)';
/** Unacknowledged publishes the MQTT.js baseline keeps at most (our MQTT transport's default inFlight). */
const WINDOW = 100;
const AMQP_PORT = 5672;
const MOSQUITTO_PORT = 1883;

type Broker = 'rabbitmq' | 'rabbitmq-mqtt' | 'mosquitto' | 'mosquitto-nodelay';
type Kind = 'bus-amqp' | 'bus-mqtt' | 'mqttjs';
interface ContenderDef {
  readonly id: string;
  readonly label: string;
  readonly kind: Kind;
  readonly broker: Broker;
  readonly version?: 4 | 5 | 'auto';
  /** TCP_NODELAY forced on the clients' sockets (neither our MQTT transport nor MQTT.js sets it). */
  readonly nodelay?: boolean;
  /** The MQTT.js row on the same broker: the baseline of the ratios. */
  readonly baseline?: string;
}
const RABBIT_MQTT = 'RabbitMQ MQTT plugin';
const MOSQ_ND = 'throw-away Mosquitto with set_tcp_nodelay true';
const CONTENDERS: readonly ContenderDef[] = [
  { id: 'amqp', label: 'ours, AMQP 0-9-1, RabbitMQ (TCP_NODELAY always)', kind: 'bus-amqp', broker: 'rabbitmq' },
  {
    id: 'mqtt-rabbitmq',
    label: `ours, MQTT 3.1.1 (protocolVersion 4), ${RABBIT_MQTT}`,
    kind: 'bus-mqtt',
    broker: 'rabbitmq-mqtt',
    version: 4,
    baseline: 'mqttjs-rabbitmq',
  },
  { id: 'mqttjs-rabbitmq', label: `MQTT.js alone, ${RABBIT_MQTT}`, kind: 'mqttjs', broker: 'rabbitmq-mqtt' },
  {
    id: 'mqtt5-mosquitto',
    label: "ours, MQTT (default 'auto'), Mosquitto 1883",
    kind: 'bus-mqtt',
    broker: 'mosquitto',
    version: 'auto',
    baseline: 'mqttjs-mosquitto',
  },
  {
    id: 'mqtt311-mosquitto',
    label: 'ours, MQTT 3.1.1 (protocolVersion 4), Mosquitto 1883',
    kind: 'bus-mqtt',
    broker: 'mosquitto',
    version: 4,
    baseline: 'mqttjs-mosquitto',
  },
  { id: 'mqttjs-mosquitto', label: 'MQTT.js alone, Mosquitto 1883', kind: 'mqttjs', broker: 'mosquitto' },
  {
    id: 'mqtt-rabbitmq-nd',
    label: `ours, MQTT 3.1.1, ${RABBIT_MQTT}, TCP_NODELAY`,
    kind: 'bus-mqtt',
    broker: 'rabbitmq-mqtt',
    version: 4,
    nodelay: true,
    baseline: 'mqttjs-rabbitmq-nd',
  },
  {
    id: 'mqttjs-rabbitmq-nd',
    label: `MQTT.js alone, ${RABBIT_MQTT}, TCP_NODELAY`,
    kind: 'mqttjs',
    broker: 'rabbitmq-mqtt',
    nodelay: true,
  },
  {
    id: 'mqtt5-mosquitto-nd',
    label: `ours, MQTT (default 'auto'), ${MOSQ_ND}, TCP_NODELAY`,
    kind: 'bus-mqtt',
    broker: 'mosquitto-nodelay',
    version: 'auto',
    nodelay: true,
    baseline: 'mqttjs-mosquitto-nd',
  },
  {
    id: 'mqttjs-mosquitto-nd',
    label: `MQTT.js alone, ${MOSQ_ND}, TCP_NODELAY`,
    kind: 'mqttjs',
    broker: 'mosquitto-nodelay',
    nodelay: true,
  },
];

// ---- the messages -------------------------------------------------------------------------------------------------

/** 2026-01-01 12:00:00 UTC; report i covers [T0 + i s, T0 + i s + 1 s). */
const T0 = Date.UTC(2026, 0, 1, 12);
/** The hub's 1 s report of bench/hub.ts's four signals, one value each: 179 B of JSON. */
const VALUES: Record<string, number[]> = {
  'meter.p': [1.25],
  'meter.q': [2.25],
  'meter.e': [3.125],
  'boiler.p': [4.125],
};
const SIGNALS = Object.keys(VALUES);
const REQUEST_ID = (i: number): string => `6f1c2d3e-4b5a-4c7d-8e9f-${i.toString(16).padStart(12, '0')}`;

function report(i: number): Message<'report'> {
  return {
    msg: 'report',
    from: EbTime.fromEpochMs(T0 + i * 1000),
    to: EbTime.fromEpochMs(T0 + i * 1000 + 1000),
    resolution: 1,
    values: VALUES,
  };
}
function getReport(i: number): Message<'get_report'> {
  return {
    msg: 'get_report',
    from: EbTime.fromEpochMs(T0 + i * 1000),
    to: EbTime.fromEpochMs(T0 + i * 1000 + 1000),
    resolution: 1,
    signals: SIGNALS,
    request_id: REQUEST_ID(i),
  };
}
/** The same messages as plain objects for the MQTT.js baseline (JSON.stringify gives the same bytes). */
const iso = (ms: number): string => new Date(ms).toISOString();
const plainReport = (i: number, requestId?: string): object => ({
  msg: 'report',
  from: iso(T0 + i * 1000),
  to: iso(T0 + i * 1000 + 1000),
  resolution: 1,
  values: VALUES,
  ...(requestId === undefined ? {} : { request_id: requestId }),
});
const plainGetReport = (i: number): object => ({
  msg: 'get_report',
  from: iso(T0 + i * 1000),
  to: iso(T0 + i * 1000 + 1000),
  resolution: 1,
  signals: SIGNALS,
  request_id: REQUEST_ID(i),
});
const REPORT_BYTES = encode(report(0)).length;
const GET_REPORT_BYTES = encode(getReport(0)).length;
const ANSWER_BYTES = encode({ ...report(0), request_id: REQUEST_ID(0) }).length;

// ---- one contender's pair of clients ------------------------------------------------------------------------------

interface Pair {
  /** MQTT version in use, or 'AMQP'. */
  readonly protocol: string;
  /** Publishes reports [from, from + n) at once; resolves when all are acknowledged and received. */
  stream(from: number, n: number): Promise<void>;
  /** One get_report round trip for index i, validated. */
  roundTrip(i: number): Promise<void>;
  /** Reports received (by index) so far, and the problems seen. */
  readonly received: Map<number, number>;
  readonly problems: string[];
  close(): Promise<void>;
}

interface Endpoint {
  readonly port: number;
  readonly credentials: boolean;
}

/** A report as received: its index, or a problem when it is not what was sent. */
function checkReport(from: string, values: unknown, problems: string[]): number {
  const i = (Date.parse(from) - T0) / 1000;
  if (!Number.isInteger(i) || i < 0) problems.push(`a report with an unexpected period ${from}`);
  if (!isDeepStrictEqual(values, VALUES)) problems.push(`report ${i}: values ${JSON.stringify(values)}`);
  return i;
}

/** Resolves when `count()` reaches `n`, checked whenever `poke` is called; fails after 60 s without reaching it. */
class Waiter {
  #target = Number.POSITIVE_INFINITY;
  #resolve: (() => void) | undefined;
  constructor(private readonly count: () => number) {}
  wait(n: number): Promise<void> {
    this.#target = n;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${this.count()} of ${n} reports within 60 s`)), 60_000);
      this.#resolve = () => {
        clearTimeout(timer);
        resolve();
      };
      this.poke();
    });
  }
  poke(): void {
    if (this.count() >= this.#target) {
      this.#target = Number.POSITIVE_INFINITY;
      this.#resolve?.();
    }
  }
}

async function busPair(job: Job, names: Names, hub: Endpoint, agg: Endpoint): Promise<Pair> {
  const make = (name: string, peer: string, e: Endpoint): Connector =>
    (job.kind === 'bus-amqp'
      ? amqpBus({ name, peers: [peer], url: `amqp://guest:guest@127.0.0.1:${e.port}`, budget: false })
      : mqttBus({
          name,
          peers: [peer],
          url: `mqtt://127.0.0.1:${e.port}`,
          ...(e.credentials ? { username: 'guest', password: 'guest' } : {}),
          protocolVersion: job.version ?? 'auto',
          budget: false,
        })) as unknown as Connector;
  const h = make(names.hub, names.agg, hub);
  const a = make(names.agg, names.hub, agg);
  const received = new Map<number, number>();
  const problems: string[] = [];
  let total = 0;
  const waiter = new Waiter(() => total);
  h.onGetReport(async (m, ctx) => {
    await ctx.reply({ msg: 'report', from: m.from, to: m.to, resolution: 1, values: VALUES });
  });
  a.onReport((m) => {
    const i = checkReport(m.from.toString(), m.values, problems);
    received.set(i, (received.get(i) ?? 0) + 1);
    total++;
    waiter.poke();
  });
  for (const c of [h, a]) c.on('handler-error', (err: unknown) => problems.push(`handler: ${String(err)}`));
  await Promise.all([h.start(), a.start()]);
  if (job.nodelay) for (const c of [h, a]) noDelay((c.transport as unknown as { client?: MqttClient }).client);
  const t = a.transport as unknown as { protocolVersion?: number };
  return {
    protocol: job.kind === 'bus-amqp' ? 'AMQP 0-9-1' : t.protocolVersion === 5 ? 'MQTT 5' : 'MQTT 3.1.1',
    received,
    problems,
    async stream(from, n) {
      const target = total + n;
      await Promise.all([
        waiter.wait(target),
        ...Array.from({ length: n }, (_, k) => h.publish(names.agg, report(from + k))),
      ]);
    },
    async roundTrip(i) {
      const r = (await a.request(names.hub, getReport(i))) as Message<'report'>;
      if (r.msg !== 'report' || r.request_id !== REQUEST_ID(i) || r.from.epochMs !== T0 + i * 1000)
        problems.push(`round trip ${i}: answered by ${r.msg} ${String(r.request_id)} ${r.from.toString()}`);
      else checkReport(r.from.toString(), r.values, problems);
    },
    async close() {
      await Promise.all([h.close(), a.close()]);
    },
  };
}

/** TCP_NODELAY on an MQTT.js client's socket (its stream is a net.Socket over mqtt:). */
function noDelay(client: MqttClient | undefined): void {
  const socket = client?.stream as { setNoDelay?: (on: boolean) => void } | undefined;
  if (typeof socket?.setNoDelay !== 'function') throw new Error('no socket to set TCP_NODELAY on');
  socket.setNoDelay(true);
}

async function mqttjsPair(job: Job, names: Names, hub: Endpoint, agg: Endpoint): Promise<Pair> {
  const open = (e: Endpoint): Promise<MqttClient> =>
    mqtt.connectAsync(`mqtt://127.0.0.1:${e.port}`, e.credentials ? { username: 'guest', password: 'guest' } : {});
  const [h, a] = await Promise.all([open(hub), open(agg)]);
  if (job.nodelay) for (const c of [h, a]) noDelay(c);
  const toAgg = `report/${names.hub}/${names.agg}`;
  const toHub = `get_report/${names.agg}/${names.hub}`;
  const received = new Map<number, number>();
  const problems: string[] = [];
  const pending = new Map<string, (m: { from: string; values: unknown }) => void>();
  let total = 0;
  const waiter = new Waiter(() => total);
  h.on('message', (_topic, payload) => {
    const q = JSON.parse(payload.toString()) as { from: string; request_id: string };
    h.publish(toAgg, JSON.stringify(plainReport((Date.parse(q.from) - T0) / 1000, q.request_id)), { qos: 1 });
  });
  a.on('message', (_topic, payload) => {
    const m = JSON.parse(payload.toString()) as { from: string; values: unknown; request_id?: string };
    if (m.request_id !== undefined) {
      const p = pending.get(m.request_id);
      pending.delete(m.request_id);
      if (p === undefined) problems.push(`an answer to no request: ${m.request_id}`);
      else p(m);
      return;
    }
    const i = checkReport(m.from, m.values, problems);
    received.set(i, (received.get(i) ?? 0) + 1);
    total++;
    waiter.poke();
  });
  await Promise.all([h.subscribeAsync(toHub, { qos: 1 }), a.subscribeAsync(toAgg, { qos: 1 })]);
  return {
    protocol: 'MQTT 3.1.1',
    received,
    problems,
    async stream(from, n) {
      const target = total + n;
      // MQTT.js bounds nothing itself: 5,000 QoS 1 publishes at once overflowed Mosquitto's queue for the subscriber
      // (max_queued_messages, 1,000 by default), which dropped 340 of them in a first run. So the baseline keeps at
      // most WINDOW unacknowledged, as our transport's inFlight does by default.
      let next = 0;
      const lane = async (): Promise<void> => {
        while (next < n) {
          const k = next++;
          await h.publishAsync(toAgg, JSON.stringify(plainReport(from + k)), { qos: 1 });
        }
      };
      await Promise.all([waiter.wait(target), ...Array.from({ length: Math.min(WINDOW, n) }, lane)]);
    },
    async roundTrip(i) {
      const answer = new Promise<{ from: string; values: unknown }>((resolve) => pending.set(REQUEST_ID(i), resolve));
      await a.publishAsync(toHub, JSON.stringify(plainGetReport(i)), { qos: 1 });
      const r = await answer;
      if (Date.parse(r.from) !== T0 + i * 1000) problems.push(`round trip ${i}: answered for ${r.from}`);
      checkReport(r.from, r.values, problems);
    },
    async close() {
      await Promise.all([h.endAsync(), a.endAsync()]);
    },
  };
}

// ---- the child: one run of one contender --------------------------------------------------------------------------

interface Names {
  hub: string;
  agg: string;
}
interface Job {
  id: string;
  kind: Kind;
  version?: 4 | 5 | 'auto';
  nodelay: boolean;
  port: number;
  credentials: boolean;
  wireNames: Names;
  timedNames: Names;
  stream: number;
  rt: number;
  wire: number;
}
interface Wire {
  hubOut: number;
  hubIn: number;
  aggIn: number;
  aggOut: number;
}
export interface RunResult {
  protocol: string;
  /** Bytes per report (hub -> aggregator) and per round trip, each client's socket. */
  wireReport: Wire;
  wireRt: Wire;
  streamMs: number;
  streamCpuUs: number;
  rtCpuUs: number;
  rtMs: number;
  p50: number;
  p99: number;
  problems: string[];
}

const cpuUs = (): number => {
  const c = process.cpuUsage();
  return c.user + c.system;
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function openPair(job: Job, names: Names, hub: Endpoint, agg: Endpoint): Promise<Pair> {
  return job.kind === 'mqttjs' ? mqttjsPair(job, names, hub, agg) : busPair(job, names, hub, agg);
}

/** Every index in [0, n) received exactly once, none other. */
function checkReceived(pair: Pair, n: number, what: string): void {
  let missing = 0;
  let twice = 0;
  for (let i = 0; i < n; i++) {
    const c = pair.received.get(i) ?? 0;
    if (c === 0) missing++;
    if (c > 1) twice++;
  }
  const beyond = [...pair.received.keys()].filter((i) => i >= n).length;
  if (missing + twice + beyond > 0)
    pair.problems.push(`${what}: ${missing} reports missing, ${twice} received twice, ${beyond} beyond the ${n} sent`);
}

async function runJob(job: Job): Promise<RunResult> {
  const problems: string[] = [];
  // 1. Wire bytes, through two counting proxies (one per client), untimed.
  const proxies: CountingProxy[] = [await startProxy(job.port), await startProxy(job.port)];
  const [ph, pa] = proxies as [CountingProxy, CountingProxy];
  const snap = (): Wire => ({ hubOut: ph.up, hubIn: ph.down, aggIn: pa.down, aggOut: pa.up });
  const per = (a: Wire, b: Wire, n: number): Wire => ({
    hubOut: (b.hubOut - a.hubOut) / n,
    hubIn: (b.hubIn - a.hubIn) / n,
    aggIn: (b.aggIn - a.aggIn) / n,
    aggOut: (b.aggOut - a.aggOut) / n,
  });
  let protocol = '?';
  let wireReport: Wire;
  let wireRt: Wire;
  {
    const p = await openPair(
      job,
      job.wireNames,
      { port: ph.port, credentials: job.credentials },
      {
        port: pa.port,
        credentials: job.credentials,
      },
    );
    try {
      protocol = p.protocol;
      const warm = Math.min(100, job.wire);
      await p.stream(0, warm);
      for (let i = 0; i < warm; i++) await p.roundTrip(i);
      await sleep(300); // the last acknowledgements reach the proxies
      const s0 = snap();
      await p.stream(warm, job.wire);
      await sleep(300);
      const s1 = snap();
      for (let i = warm; i < warm + job.wire; i++) await p.roundTrip(i);
      await sleep(300);
      const s2 = snap();
      wireReport = per(s0, s1, job.wire);
      wireRt = per(s1, s2, job.wire);
      checkReceived(p, warm + job.wire, 'wire pass');
      problems.push(...p.problems);
    } finally {
      await p.close();
      for (const x of proxies) await x.close();
    }
  }
  // 2 and 3. Timed, directly to the broker.
  const endpoint = { port: job.port, credentials: job.credentials };
  const p = await openPair(job, job.timedNames, endpoint, endpoint);
  try {
    const warm = Math.max(1, Math.floor(job.stream / 10));
    await p.stream(0, warm);
    const c0 = cpuUs();
    const t0 = performance.now();
    await p.stream(warm, job.stream);
    const streamMs = performance.now() - t0;
    const streamCpuUs = cpuUs() - c0;
    const rtWarm = Math.max(1, Math.floor(job.rt / 10));
    for (let i = 0; i < rtWarm; i++) await p.roundTrip(i);
    const lat = new Float64Array(job.rt);
    const c1 = cpuUs();
    const t1 = performance.now();
    for (let i = 0; i < job.rt; i++) {
      const t = performance.now();
      await p.roundTrip(rtWarm + i);
      lat[i] = (performance.now() - t) * 1000;
    }
    const rtMs = performance.now() - t1;
    const rtCpuUs = cpuUs() - c1;
    lat.sort();
    await sleep(300); // anything delivered beyond N would arrive now
    checkReceived(p, warm + job.stream, 'timed stream');
    problems.push(...p.problems);
    return {
      protocol,
      wireReport,
      wireRt,
      streamMs,
      streamCpuUs,
      rtCpuUs,
      rtMs,
      p50: percentile(lat, 50),
      p99: percentile(lat, 99),
      problems: problems.slice(0, 10),
    };
  } finally {
    await p.close();
  }
}

// ---- the parent ---------------------------------------------------------------------------------------------------

const log = (msg: string): void => {
  process.stderr.write(`[mqtt-bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
};
const load = (): string =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');

function runIsolated(job: Job, timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), ['--run', JSON.stringify(job)], {
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-2000);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    let result: RunResult | undefined;
    let error: string | undefined;
    child.on('message', (m: { result?: RunResult; error?: string }) => {
      result = m.result;
      error = m.error;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (result !== undefined) resolve(result);
      else reject(new Error(error ?? `the run exited (${signal ?? code}) without a result: ${stderr.trim()}`));
    });
  });
}

function gitState(): string {
  try {
    const git = (...a: string[]): string => execFileSync('git', a, { encoding: 'utf8', stdio: 'pipe' }).trim();
    const dirty = git('status', '--porcelain', '--', 'src', 'bench').split('\n').filter(Boolean).length;
    return `commit ${git('rev-parse', '--short', 'HEAD')}${dirty > 0 ? ` plus ${dirty} uncommitted file(s) in src/ or bench/` : ''}`;
  } catch {
    return 'no git';
  }
}

function mosquittoVersion(): string {
  try {
    execFileSync('mosquitto', ['-h'], { encoding: 'utf8', stdio: 'pipe' });
  } catch (err) {
    const out = String((err as { stdout?: string }).stdout ?? '');
    return /mosquitto version (\S+)/.exec(out)?.[1] ?? '?';
  }
  return '?';
}

/** A throw-away Mosquitto on `port` with set_tcp_nodelay (its own temp folder, no persistence), for the -nd rows. */
async function startMosquitto(port: number): Promise<{ stop(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'mqtt-bench-mosquitto-'));
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\npersistence false\n`);
  const child = spawn('mosquitto', ['-c', conf], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  for (let i = 0; ; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const s = createConnection({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (up) break;
    if (i >= 50 || child.exitCode !== null) {
      await stop();
      throw new Error(`mosquitto on ${port} did not start`);
    }
    await sleep(100);
  }
  log(`a throw-away mosquitto with set_tcp_nodelay true on 127.0.0.1:${port}`);
  return { stop };
}

/** Removes what the runs left: the AMQP entities' queues and exchanges, the Mosquitto sessions (clean connects). */
async function cleanup(amqpNames: Names[], mosquittoIds: string[]): Promise<string[]> {
  const failures: string[] = [];
  if (amqpNames.length > 0) {
    const conn = await connect(`amqp://guest:guest@127.0.0.1:${AMQP_PORT}`);
    try {
      for (const n of amqpNames) {
        for (const [e, other] of [
          [n.hub, n.agg],
          [n.agg, n.hub],
        ] as const) {
          const ch = await conn.createChannel();
          try {
            await ch.queueDelete(`private-${e}-in`);
            await ch.queueDelete(`private-${e}-dead`);
            await ch.exchangeDelete(`private-${e}-dlx`);
            await ch.exchangeDelete(`${e}-to-${other}`);
          } catch (err) {
            failures.push(`${e}: ${(err as Error).message}`);
          } finally {
            await ch.close().catch(() => undefined);
          }
        }
      }
    } finally {
      await conn.close();
    }
  }
  for (const clientId of mosquittoIds) {
    try {
      const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${MOSQUITTO_PORT}`, {
        clientId,
        clean: true,
        protocolVersion: 4,
        reconnectPeriod: 0,
      });
      await c.endAsync();
    } catch (err) {
      failures.push(`session ${clientId}: ${(err as Error).message}`);
    }
  }
  return failures;
}

interface Row {
  def: ContenderDef;
  results: RunResult[];
  problems: string[];
}

async function main(): Promise<void> {
  const started = new Date();
  const loadStart = load();
  const suffix = randomBytes(3).toString('hex');
  const only = process.env['MQTT_BENCH_ONLY']?.split(',').map((s) => s.trim());
  const defs = CONTENDERS.filter((c) => only === undefined || only.includes(c.id));
  const amqpNames: Names[] = [];
  const mosquittoIds: string[] = [];
  let node: BrokerNode | undefined;
  let mosquitto: { stop(): Promise<void> } | undefined;
  let nodeVersion = '?';
  const rows: Row[] = defs.map((def) => ({ def, results: [], problems: [] }));
  let cleanupFailures: string[] = [];
  const onSignal = (): void => {
    void Promise.allSettled([node?.stop(), mosquitto?.stop()]).finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    let mqttPort = 0;
    if (defs.some((d) => d.broker === 'rabbitmq-mqtt')) {
      mqttPort = await freePort();
      log(`starting a RabbitMQ node with rabbitmq_mqtt on 127.0.0.1:${mqttPort}`);
      node = await startBrokerNode({
        name: 'mqbench',
        plugins: ['rabbitmq_mqtt'],
        extraConfig: `mqtt.listeners.tcp.default = 127.0.0.1:${mqttPort}`,
      });
      nodeVersion = (await node.ctl(['version'])).trim();
    }
    let mosquittoNdPort = 0;
    if (defs.some((d) => d.broker === 'mosquitto-nodelay')) {
      mosquittoNdPort = await freePort();
      mosquitto = await startMosquitto(mosquittoNdPort);
    }
    const portOf = (b: Broker): number =>
      b === 'rabbitmq'
        ? AMQP_PORT
        : b === 'mosquitto'
          ? MOSQUITTO_PORT
          : b === 'mosquitto-nodelay'
            ? mosquittoNdPort
            : mqttPort;
    let seq = 0;
    const jobFor = (def: ContenderDef, quick: boolean): Job => {
      const tag = `${suffix}-${seq++}`;
      const names = (p: string): Names => ({ hub: `heh-mqb${p}${tag}`, agg: `vpp-mqb${p}${tag}` });
      const job: Job = {
        id: def.id,
        kind: def.kind,
        ...(def.version === undefined ? {} : { version: def.version }),
        nodelay: def.nodelay === true,
        port: portOf(def.broker),
        credentials: def.broker === 'rabbitmq-mqtt',
        wireNames: names('w'),
        timedNames: names('t'),
        stream: quick ? 50 : STREAM,
        rt: quick ? 20 : RT,
        wire: quick ? 20 : WIRE,
      };
      if (def.kind === 'bus-amqp') amqpNames.push(job.wireNames, job.timedNames);
      if (def.kind === 'bus-mqtt' && def.broker === 'mosquitto')
        for (const n of [job.wireNames, job.timedNames]) mosquittoIds.push(n.hub, n.agg);
      return job;
    };
    // Pre-flight: each contender must pass a small validated run before it is timed.
    for (const row of rows) {
      try {
        const r = await runIsolated(jobFor(row.def, true), 120_000);
        if (r.problems.length > 0) row.problems.push(`pre-flight: ${r.problems.join('; ')}`);
        else if (r.wireReport.hubOut < REPORT_BYTES || r.wireReport.aggIn < REPORT_BYTES)
          row.problems.push(`pre-flight: fewer bytes on the wire than the body (${JSON.stringify(r.wireReport)})`);
      } catch (err) {
        row.problems.push(`pre-flight: ${(err as Error).message}`);
      }
      log(`pre-flight ${row.def.id}: ${row.problems.length === 0 ? 'ok' : row.problems.join('; ')}`);
    }
    for (let rep = 1; rep <= REPS; rep++) {
      for (const row of rows) {
        if (row.problems.some((p) => p.startsWith('pre-flight'))) continue;
        try {
          const r = await runIsolated(jobFor(row.def, false), 600_000);
          if (r.problems.length > 0) row.problems.push(`rep ${rep}: ${r.problems.join('; ')}`);
          else row.results.push(r);
          log(
            `[${rep}/${REPS}] ${row.def.id.padEnd(18)} ${r.protocol}: ${fmt((STREAM / r.streamMs) * 1000, 0)} reports/s, ` +
              `${fmt(r.streamCpuUs / STREAM)} µs CPU/report, p50 ${fmt(r.p50, 0)} µs, p99 ${fmt(r.p99, 0)} µs, ` +
              `${fmt(r.rtCpuUs / RT)} µs CPU/round trip, ${fmt(r.wireReport.hubOut)} B/report out` +
              (r.problems.length > 0 ? `; INVALID: ${r.problems.join('; ')}` : ''),
          );
        } catch (err) {
          row.problems.push(`rep ${rep}: ${(err as Error).message}`);
          log(`[${rep}/${REPS}] ${row.def.id}: ${(err as Error).message}`);
        }
      }
    }
  } finally {
    cleanupFailures = await cleanup(amqpNames, mosquittoIds).catch((err: unknown) => [String(err)]);
    await node?.stop();
    await mosquitto?.stop();
  }
  const section = render(rows, {
    started,
    loadStart,
    loadEnd: load(),
    nodeVersion,
    suffix,
    cleanup: `${amqpNames.length * 2} AMQP entities' queues and exchanges and ${mosquittoIds.length} Mosquitto sessions removed${cleanupFailures.length > 0 ? `; failures: ${cleanupFailures.slice(0, 5).join('; ')}` : ''}`,
  });
  console.log(section);
  replaceSection(SECTION, section, resultsPath('MQTT_BENCH_RESULTS'));
  if (rows.some((r) => r.problems.length > 0) || cleanupFailures.length > 0) process.exitCode = 2;
}

interface Meta {
  started: Date;
  loadStart: string;
  loadEnd: string;
  nodeVersion: string;
  suffix: string;
  cleanup: string;
}

function render(rows: Row[], meta: Meta): string {
  const med = (r: Row, f: (x: RunResult) => number): number => median(r.results.map(f));
  const byId = new Map(rows.map((r) => [r.def.id, r]));
  const amqp = byId.get('amqp');
  const wireSum = (w: Wire): number => w.hubOut + w.hubIn + w.aggIn + w.aggOut;
  const cols = {
    rate: (r: Row) => med(r, (x) => (STREAM / x.streamMs) * 1000),
    cpu: (r: Row) => med(r, (x) => x.streamCpuUs / STREAM),
    p50: (r: Row) => med(r, (x) => x.p50),
    p99: (r: Row) => med(r, (x) => x.p99),
    rtCpu: (r: Row) => med(r, (x) => x.rtCpuUs / RT),
    wire: (r: Row) => med(r, (x) => wireSum(x.wireReport)),
    wireRt: (r: Row) => med(r, (x) => wireSum(x.wireRt)),
  };
  const valid = (r: Row): string => (r.results.length === REPS ? '' : ` (${r.results.length}/${REPS} valid)`);
  const lines = [
    SECTION,
    '',
    `Command: \`npx tsc -p tsconfig.json && node .out/bench/mqtt.js\` (\`npm run bench:mqtt\`), ${meta.started.toISOString()},`,
    `Node ${process.version}, ${gitState()}; ${cpus().length} shared vCPUs (${cpus()[0]?.model ?? '?'}). RabbitMQ on 127.0.0.1:5672,`,
    `a throw-away RabbitMQ ${meta.nodeVersion} node with rabbitmq_mqtt (started and stopped by the bench), Mosquitto ${mosquittoVersion()}`,
    `on 127.0.0.1:1883. Load average at the start ${meta.loadStart}, at the end ${meta.loadEnd}${Number(meta.loadStart.split(' ')[0]) > 1 || Number(meta.loadEnd.split(' ')[0]) > 1 ? ': **a loaded machine** (another benchmark ran beside this one), so read the ratios of this one run, not the absolute figures' : ''}.`,
    `Medians of ${REPS} interleaved repetitions, each contender in a child process of its own; entity suffix \`${meta.suffix}\`; ${meta.cleanup}.`,
    '',
    `The hub's report: bench/hub.ts's 1 s report of 4 signals x 1 value, ${REPORT_BYTES} B of JSON, hub -> aggregator (no reply).`,
    `Round trip: the aggregator's get_report (${GET_REPORT_BYTES} B) answered by that report with its request_id (${ANSWER_BYTES} B).`,
    `Stream: ${fmt(STREAM, 0)} reports published at once (after ${fmt(STREAM / 10, 0)} untimed), until every send is acknowledged by the broker`,
    `and every report received and settled. CPU: user + system of the one process holding both clients (process.cpuUsage),`,
    `per report or per round trip. Latency: ${fmt(RT, 0)} sequential round trips after ${fmt(RT / 10, 0)} untimed, nearest-rank percentiles.`,
    `Wire: bytes through a counting TCP proxy per client (untimed pass, ${fmt(WIRE, 0)} reports then ${fmt(WIRE, 0)} round trips after a`,
    'warm-up), both directions of both clients summed: the report (or request and answer) in, out, and every acknowledgement.',
    'Ratios: ours against MQTT.js alone on the same broker (what our transport and bus add; MQTT.js runs its defaults,',
    'MQTT 3.1.1 and a clean session, with QoS 1, JSON.stringify/parse and no validation), and against the AMQP row.',
    `MQTT.js bounds nothing: with ${fmt(STREAM, 0)} QoS 1 publishes at once, Mosquitto dropped 340 of them for the subscriber in a first run`,
    `(beyond its max_queued_messages, 1,000 by default; MQTT gives no error for that), so its stream keeps at most ${WINDOW} unacknowledged,`,
    "as our transport's `inFlight` does by default.",
    'TCP_NODELAY: neither our MQTT transport nor MQTT.js sets it, and Mosquitto leaves it off unless `set_tcp_nodelay true`',
    '(the shared 1883 runs without it), so a round trip there waits for delayed ACKs (~44 ms each); the `-nd` rows set it on',
    "the clients' sockets, and on a throw-away Mosquitto. Our AMQP client always sets it. The RabbitMQ rows use",
    'protocolVersion 4: RabbitMQ 3.10 speaks 3.1.1 only, and answers an MQTT 5 CONNECT by closing the connection (before',
    '23cd7b5 `auto` did not take that for a refusal and never connected; now it falls back to 3.1.1 on such a close).',
    '',
    '| contender | protocol | reports/s ↑ | CPU µs/report ↓ | round trip p50 µs ↓ | p99 µs ↓ | CPU µs/round trip ↓ | wire B/report ↓ | wire B/round trip ↓ |',
    '| :-- | :-- | --: | --: | --: | --: | --: | --: | --: |',
  ];
  for (const r of rows) {
    if (r.results.length === 0) {
      lines.push(`| ${r.def.id}: ${r.def.label} | - | INVALID | | | | | | |`);
      continue;
    }
    lines.push(
      `| ${r.def.id}: ${r.def.label}${valid(r)} | ${r.results[0]?.protocol ?? '?'} | ${fmt(cols.rate(r), 0)} | ${fmt(cols.cpu(r))} | ${fmt(cols.p50(r), 0)} | ${fmt(cols.p99(r), 0)} | ${fmt(cols.rtCpu(r))} | ${fmt(cols.wire(r), 0)} | ${fmt(cols.wireRt(r), 0)} |`,
    );
  }
  lines.push(
    '',
    '| ratio | CPU/report | p50 | p99 | CPU/round trip | wire B/report | wire B/round trip |',
    '| :-- | --: | --: | --: | --: | --: | --: |',
  );
  const ratioRow = (label: string, a: Row | undefined, b: Row | undefined): void => {
    if (a === undefined || b === undefined || a.results.length === 0 || b.results.length === 0) return;
    const keys = ['cpu', 'p50', 'p99', 'rtCpu', 'wire', 'wireRt'] as const;
    lines.push(`| ${label} | ${keys.map((k) => ratio(cols[k](a), cols[k](b))).join(' | ')} |`);
  };
  for (const r of rows)
    if (r.def.baseline !== undefined) ratioRow(`${r.def.id} / ${r.def.baseline}`, r, byId.get(r.def.baseline));
  for (const r of rows) if (r.def.kind === 'bus-mqtt') ratioRow(`${r.def.id} / amqp`, r, amqp);
  lines.push(
    '',
    '| contender | wire per report: hub out / hub in / aggregator in / aggregator out, B | per round trip, B |',
  );
  lines.push('| :-- | :-- | :-- |');
  const wcell = (r: Row, f: (x: RunResult) => Wire): string =>
    (['hubOut', 'hubIn', 'aggIn', 'aggOut'] as const)
      .map((k) =>
        fmt(
          med(r, (x) => f(x)[k]),
          0,
        ),
      )
      .join(' / ');
  for (const r of rows)
    if (r.results.length > 0)
      lines.push(`| ${r.def.id} | ${wcell(r, (x) => x.wireReport)} | ${wcell(r, (x) => x.wireRt)} |`);
  const problems = rows.flatMap((r) => r.problems.map((p) => `${r.def.id}: ${p}`));
  lines.push(
    '',
    problems.length === 0 ? 'Every run and pre-flight was valid.' : `Problems: ${problems.join('; ')}`,
    '',
  );
  return lines.join('\n');
}

if (process.argv[2] === '--run') {
  const job = JSON.parse(process.argv[3] as string) as Job;
  runJob(job).then(
    (result) => {
      process.send?.({ result }, () => process.exit(0));
    },
    (err: unknown) => {
      process.send?.({ error: (err as Error)?.stack ?? String(err) }, () => process.exit(1));
    },
  );
} else {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
