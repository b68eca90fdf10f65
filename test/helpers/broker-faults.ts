/**
 * Broker-side faults for a throw-away node from broker-node.ts (never the
 * default node: these stop it, block its publishers or close its channels).
 *
 *   await stopApp(node);                  // every client connection is closed, the port refuses
 *   await startApp(node);                 // back in service
 *   await raiseMemoryAlarm(node);         // publishing connections get connection.blocked
 *   await clearMemoryAlarm(node);         // ... and connection.unblocked
 *   startBrokerNode({ name, ...consumerTimeoutOptions({ timeoutMs: 5000 }) });
 *
 * Each helper is one rabbitmqctl call, bounded by its timeout.
 */
import type { BrokerNode } from './broker-node.js';

/**
 * `rabbitmqctl stop_app`: the rabbit application stops, the Erlang VM stays.
 * The broker closes every client connection first (connection.close 320
 * CONNECTION_FORCED, "broker forced connection closure with reason
 * 'shutdown'"), then its listeners, so new connections are refused.
 */
export async function stopApp(node: BrokerNode, timeoutMs = 30_000): Promise<void> {
  await node.ctl(['stop_app'], timeoutMs);
}

/** `rabbitmqctl start_app`: returns once the app (and with it the AMQP listener) is up again. */
export async function startApp(node: BrokerNode, timeoutMs = 60_000): Promise<void> {
  await node.ctl(['start_app'], timeoutMs);
}

/**
 * Raises the memory resource alarm by setting the memory high watermark to 0
 * (the documented way; "0" makes the alarm go off at once). RabbitMQ then
 * sends connection.blocked to each connection that publishes (or has
 * published) and stops reading from it; connections that only consume are
 * not blocked. On a cluster, every node's publishers are blocked.
 *
 * The watermark before the call is remembered, and clearMemoryAlarm() restores
 * it. (Equivalent, and also working on 3.10.8: `rabbitmqctl eval
 * 'rabbit_alarm:set_alarm({{resource_limit, memory, node()}, []}).'` and
 * clear_alarm; that pokes an internal module, so the CLI is preferred.)
 */
export async function raiseMemoryAlarm(node: BrokerNode, timeoutMs = 15_000): Promise<void> {
  if (!savedWatermarks.has(node)) {
    const current = await node.ctl(['eval', 'vm_memory_monitor:get_vm_memory_high_watermark().'], timeoutMs);
    savedWatermarks.set(node, parseWatermark(current));
  }
  await node.ctl(['set_vm_memory_high_watermark', '0'], timeoutMs);
}

/**
 * Restores the watermark saved by raiseMemoryAlarm() (0.4, the default, if
 * there is none): the alarm clears at once and blocked connections get
 * connection.unblocked. Safe to call when no alarm is raised.
 */
export async function clearMemoryAlarm(node: BrokerNode, timeoutMs = 15_000): Promise<void> {
  const saved = savedWatermarks.get(node) ?? ['0.4'];
  await node.ctl(['set_vm_memory_high_watermark', ...saved], timeoutMs);
  savedWatermarks.delete(node);
}

/** Whether a memory alarm is raised on `node` or a cluster peer (rabbit_alarm:get_alarms/0), for assertions. */
export async function memoryAlarmRaised(node: BrokerNode, timeoutMs = 15_000): Promise<boolean> {
  const alarms = await node.ctl(['eval', 'rabbit_alarm:get_alarms().'], timeoutMs);
  return /resource_limit,\s*memory/.test(alarms);
}

export interface ConsumerTimeoutOptions {
  /** consumer_timeout: how long a delivery may stay unacknowledged; default 5000 ms. */
  timeoutMs?: number;
  /**
   * channel_tick_interval: how often each channel checks its oldest
   * unacknowledged delivery against the timeout; default 1000 ms. RabbitMQ's
   * default is 60000 ms, so a 5 s timeout would fire after 5 to 65 s.
   */
  tickMs?: number;
}

/**
 * Options for startBrokerNode()/startCluster() that give a node a short
 * consumer acknowledgement timeout: a channel holding a delivery unacked for
 * longer is closed with 406 PRECONDITION_FAILED ("delivery acknowledgement on
 * channel N timed out. Timeout value used: 5000 ms ...") and its unacked
 * messages are requeued (redelivered = true to the next consumer).
 *
 * rabbitmq.conf has a key for the timeout (consumer_timeout) but none for the
 * check interval: channel_tick_interval is a plain rabbit application
 * setting, hence advanced.config. Both are read when a channel opens, so on a
 * running node `setConsumerTimeout()` does the same for channels opened later.
 */
export function consumerTimeoutOptions(options: ConsumerTimeoutOptions = {}): {
  extraConfig: string;
  advancedConfig: string;
} {
  const { timeoutMs, tickMs } = consumerTimeoutValues(options);
  return {
    extraConfig: `consumer_timeout = ${timeoutMs}`,
    advancedConfig: `[{rabbit, [{channel_tick_interval, ${tickMs}}]}].`,
  };
}

/**
 * The same at runtime (application:set_env on the node): applies to channels
 * opened afterwards; a channel that is already open keeps its timeout and
 * checks next after the tick interval it had (up to 60 s by default).
 */
export async function setConsumerTimeout(
  node: BrokerNode,
  options: ConsumerTimeoutOptions = {},
  timeoutMs = 15_000,
): Promise<void> {
  const v = consumerTimeoutValues(options);
  await node.ctl(
    [
      'eval',
      `ok = application:set_env(rabbit, consumer_timeout, ${v.timeoutMs}), ok = application:set_env(rabbit, channel_tick_interval, ${v.tickMs}).`,
    ],
    timeoutMs,
  );
}

// ---------------------------------------------------------------------------

/** Arguments for `set_vm_memory_high_watermark` that restore a node's watermark. */
const savedWatermarks = new WeakMap<BrokerNode, string[]>();

/**
 * `0.4` (relative) or `{absolute,1073741824}` as printed by vm_memory_monitor, as arguments that restore it. A
 * watermark of 0 is never restored: it is an alarm some earlier run left raised (a test process killed inside
 * withMemoryAlarm), and restoring it would leave the shared broker blocking every publisher for the runs after.
 */
export function parseWatermark(printed: string): string[] {
  const text = printed.trim();
  const absolute = /\{absolute,\s*(\d+)\}/.exec(text);
  if (absolute !== null) return ['absolute', absolute[1] as string];
  if (/^\d+(\.\d+)?$/.test(text) && Number(text) > 0) return [text];
  // Unexpected or already 0 (an alarm raised outside this module): the default.
  return ['0.4'];
}

function consumerTimeoutValues(options: ConsumerTimeoutOptions): { timeoutMs: number; tickMs: number } {
  const timeoutMs = options.timeoutMs ?? 5_000;
  const tickMs = options.tickMs ?? 1_000;
  for (const [key, value] of [
    ['timeoutMs', timeoutMs],
    ['tickMs', tickMs],
  ] as const) {
    // Written verbatim into config files and Erlang expressions.
    if (!Number.isSafeInteger(value) || value <= 0)
      throw new Error(`consumer timeout: ${key} must be a positive integer, got ${value}`);
  }
  return { timeoutMs, tickMs };
}
