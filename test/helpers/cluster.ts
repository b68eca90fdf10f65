/**
 * Test fixture: a throw-away RabbitMQ cluster of extra nodes on this machine
 * (see broker-node.ts for what every node gets: own name, ports, data dir).
 *
 * The cluster forms by config-based peer discovery (classic_config), not by
 * stop_app / join_cluster / start_app, which would cost two app restarts per
 * joining node. The seed (node 1) lists no peers, so it initialises a fresh
 * cluster at once (a seed listing unreachable peers first retries them for
 * 5 s); once it is up, the others boot in parallel, list only the seed, and
 * join it during their boot.
 *
 * Why not boot all three at once? It mostly works (the joiners retry while the
 * seed answers `tables_not_present`) and takes about 11 s instead of 14-16 s,
 * but one run in about twenty ended in BOOT FAILED (the log was not kept; the
 * likely cause is joining a seed that is itself still booting, a path
 * RabbitMQ does not promise to handle). Seed-first has not failed in 15 runs.
 *
 * The default node (rabbit@localhost) is never listed, so it never joins.
 */
import { type BrokerNode, brokerNodeName, startBrokerNode } from './broker-node.js';

export interface ClusterOptions {
  /** Stem ([A-Za-z0-9_-]); nodes are `${name}-1-${pid}@localhost` ... */
  name: string;
  /** Number of nodes; default 3. */
  size?: number;
  /** Raw rabbitmq.conf lines for every node (after the cluster formation keys). */
  extraConfig?: string;
  /** Erlang terms for every node's advanced.config. */
  advancedConfig?: string;
  /** Upper bound for the whole start (boots + waiting for all members); default 120 s. */
  startTimeoutMs?: number;
}

export interface ClusterEndpoint {
  hostname: string;
  port: number;
}

/** What `rabbitmqctl list_queues` reports about a quorum queue. */
export interface QuorumQueueInfo {
  name: string;
  type: string;
  /** Node of the Raft leader as recorded in the queue record (the old one until an election has finished). */
  leader: string;
  members: string[];
  /** Members whose Raft server runs. */
  online: string[];
}

export interface Cluster {
  /** In start order; nodes[0] is the seed the others joined. */
  nodes: BrokerNode[];
  /** The AMQP listeners, in the order of `nodes`. */
  endpoints: ClusterEndpoint[];
  /** SIGKILLs that node's process tree (see BrokerNode.kill9); the others carry on. */
  kill9(node: BrokerNode): Promise<void>;
  /**
   * Boots a killed (or running) member again with its data, so it rejoins,
   * and waits until every member is running in the cluster again.
   */
  restart(node: BrokerNode, timeoutMs?: number): Promise<void>;
  /**
   * Resolves once `cluster_status` on `via` shows `expected` nodes running
   * (default: the whole cluster); rejects after `timeoutMs` (default 30 s).
   */
  awaitRunning(options?: { via?: BrokerNode; expected?: number; timeoutMs?: number }): Promise<string[]>;
  /** The queue (vhost /) as `via` (default: a running member) lists it; rejects if it is not listed. */
  quorumQueue(queue: string, via?: BrokerNode): Promise<QuorumQueueInfo>;
  /**
   * Resolves once the queue's leader is a running node and `online` members
   * (default: a majority) run. After kill9 of the leader, publishing before
   * this may be nacked: the queue has no leader during the election.
   */
  awaitQuorumLeader(
    queue: string,
    options?: { via?: BrokerNode; online?: number; timeoutMs?: number },
  ): Promise<QuorumQueueInfo>;
  /** Idempotent and bounded: kills every node (no graceful shutdown: the data is thrown away) and removes the folders. */
  stop(): Promise<void>;
}

export async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  const size = opts.size ?? 3;
  if (!Number.isInteger(size) || size < 1 || size > 9) throw new Error(`startCluster: size must be 1..9, got ${size}`);
  const deadlineAt = Date.now() + (opts.startTimeoutMs ?? 120_000);
  const stems = Array.from({ length: size }, (_unused, i) => `${opts.name}-${i + 1}`);
  const seedName = brokerNodeName(stems[0] as string);
  // The seed lists no peers, so it boots standalone at once instead of
  // retrying unreachable peers for 5 s (3.10: 10 x 500 ms) first.
  const seedConfig = opts.extraConfig ?? '';
  const joinerConfig = [
    'cluster_formation.peer_discovery_backend = classic_config',
    `cluster_formation.classic_config.nodes.1 = ${seedName}`,
    // Only a safety margin now that the seed is up before they boot.
    `cluster_formation.discovery_retry_limit = ${JOIN_RETRY_LIMIT}`,
    `cluster_formation.discovery_retry_interval = ${JOIN_RETRY_INTERVAL_MS}`,
    opts.extraConfig ?? '',
  ].join('\n');

  const nodes: BrokerNode[] = [];
  const stopAll = async (): Promise<void> => {
    // Kill first, all at once: a graceful stop of a cluster member waits for
    // its peers (quorum queue leadership hand-over, mnesia), and the data is
    // thrown away anyway. stop() then only sweeps and removes the folders.
    await Promise.all(nodes.map((n) => n.kill9()));
    await Promise.all(nodes.map((n) => n.stop()));
  };

  const start = (stem: string): Promise<BrokerNode> =>
    startBrokerNode({
      name: stem,
      extraConfig: stem === stems[0] ? seedConfig : joinerConfig,
      ...(opts.advancedConfig !== undefined ? { advancedConfig: opts.advancedConfig } : {}),
      startTimeoutMs: Math.max(10_000, deadlineAt - Date.now()),
    }).then((node) => {
      nodes.push(node);
      return node;
    });

  try {
    const [seedStem, ...joinerStems] = stems as [string, ...string[]];
    const seed = await start(seedStem);
    // allSettled, not all: a failing boot must not leave a sibling's start
    // running unobserved (its node would escape stopAll below).
    const started = await Promise.allSettled(joinerStems.map(start));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    // Keep start order: pushes above happen in boot order.
    nodes.sort((a, b) => stems.indexOf(stemOf(a)) - stems.indexOf(stemOf(b)));

    const anyRunning = (): BrokerNode => nodes.find((n) => n.running) ?? seed;

    const awaitRunning: Cluster['awaitRunning'] = async (options = {}) => {
      const via = options.via ?? anyRunning();
      const expected = options.expected ?? size;
      const timeoutMs = options.timeoutMs ?? 30_000;
      const until = Date.now() + timeoutMs;
      let last = '';
      for (;;) {
        try {
          const running = await runningNodes(via, Math.max(1_000, until - Date.now()));
          if (running.length === expected) return running;
          last = `running: ${running.join(', ')}`;
        } catch (err) {
          last = err instanceof Error ? err.message : String(err);
        }
        if (Date.now() >= until) {
          throw new Error(`cluster ${opts.name}: not ${expected} running nodes within ${timeoutMs} ms (${last})`);
        }
        await new Promise((resolve) => setTimeout(resolve, 300)); // the poll interval: each poll runs rabbitmqctl
      }
    };

    await awaitRunning({ via: seed, timeoutMs: Math.max(5_000, deadlineAt - Date.now()) });

    const quorumQueue: Cluster['quorumQueue'] = async (queue, via = anyRunning()) => {
      const out = await via.ctl(
        ['list_queues', 'name', 'type', 'leader', 'members', 'online', '--formatter', 'json'],
        15_000,
      );
      const rows = JSON.parse(out) as QuorumQueueInfo[];
      const row = rows.find((r) => r.name === queue);
      if (row === undefined) throw new Error(`queue ${queue} is not listed by ${via.nodeName}`);
      return row;
    };
    const awaitQuorumLeader: Cluster['awaitQuorumLeader'] = async (queue, options = {}) => {
      const via = options.via ?? anyRunning();
      const online = options.online ?? Math.floor(size / 2) + 1;
      const timeoutMs = options.timeoutMs ?? 30_000;
      const until = Date.now() + timeoutMs;
      let last = '';
      for (;;) {
        try {
          const [info, running] = await Promise.all([quorumQueue(queue, via), runningNodes(via, 15_000)]);
          if (running.includes(info.leader) && info.online.length >= online) return info;
          last = `leader ${info.leader}, online ${info.online.join(', ')}, running ${running.join(', ')}`;
        } catch (err) {
          last = err instanceof Error ? err.message : String(err);
        }
        if (Date.now() >= until)
          throw new Error(`queue ${queue}: no leader on a running node within ${timeoutMs} ms (${last})`);
        await new Promise((resolve) => setTimeout(resolve, 300)); // the poll interval: each poll runs rabbitmqctl
      }
    };

    const member = (node: BrokerNode): BrokerNode => {
      if (!nodes.includes(node)) throw new Error(`${node.nodeName} is not a member of cluster ${opts.name}`);
      return node;
    };
    let stopping: Promise<void> | undefined;
    return {
      nodes: [...nodes],
      endpoints: nodes.map((n) => ({ hostname: '127.0.0.1', port: n.amqpPort })),
      kill9: (node) => member(node).kill9(),
      restart: async (node, timeoutMs = 60_000) => {
        const until = Date.now() + timeoutMs;
        await member(node).restart(timeoutMs);
        await awaitRunning({ via: node, timeoutMs: Math.max(5_000, until - Date.now()) });
      },
      awaitRunning,
      quorumQueue,
      awaitQuorumLeader,
      stop: () => (stopping ??= stopAll()),
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

const JOIN_RETRY_INTERVAL_MS = 500;
/** 20 x 500 ms: the seed is up, so this only covers a slow answer from it under load. */
const JOIN_RETRY_LIMIT = 20;

function stemOf(node: BrokerNode): string {
  // `${stem}-${pid}@localhost`
  return node.nodeName.slice(0, node.nodeName.lastIndexOf('-'));
}

/** Names of the running cluster members as `via` sees them. */
async function runningNodes(via: BrokerNode, timeoutMs: number): Promise<string[]> {
  const out = await via.ctl(['cluster_status', '--formatter', 'json'], Math.min(timeoutMs, 15_000));
  const parsed: unknown = JSON.parse(out);
  if (typeof parsed !== 'object' || parsed === null || !('running_nodes' in parsed)) {
    throw new Error(`unexpected cluster_status output: ${out.slice(0, 300)}`);
  }
  const running: unknown = parsed.running_nodes;
  if (!Array.isArray(running) || !running.every((n): n is string => typeof n === 'string')) {
    throw new Error(`unexpected running_nodes: ${JSON.stringify(running)}`);
  }
  return running;
}
