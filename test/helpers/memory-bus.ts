/**
 * Broker-free bus tests (test/unit/bus, test/unit/device/hub-*): two connectors over the in-memory transport with a
 * ManualClock, what they sent read back as JSON, injected raw deliveries, and sealers with in-memory sequence and
 * replay state. Nothing here waits on wall-clock time except MemoryNetwork.idle()'s bound.
 */
import {
  Connector,
  type ConnectorOptions,
  ManualClock,
  MemoryNetwork,
  type MemoryTransport,
  type Settlement,
  settle,
} from '../../src/bus/index.js';
import { encode, type Message } from '../../src/codec/index.js';
import {
  generateIdentity,
  Keyring,
  nodeBackend,
  type ReplayGuard,
  Sealer,
  type SealerOptions,
} from '../../src/crypto/index.js';

export const HUB = 'heh-unit';
export const VPP = 'vpp-unit';

export interface Pair {
  clock: ManualClock;
  network: MemoryNetwork;
  hub: Connector<MemoryTransport>;
  vpp: Connector<MemoryTransport>;
}

type BusOptions = Omit<ConnectorOptions, 'transport' | 'clock'>;

/** A hub and a VPP connector over one memory network and one clock, not started (handlers first). */
export function pair(
  options: { hub?: BusOptions; vpp?: BusOptions; countDeliveries?: boolean; messageTtlMs?: number } = {},
): Pair {
  const clock = new ManualClock();
  const network = new MemoryNetwork({ clock });
  const extra = {
    ...(options.countDeliveries === undefined ? {} : { countDeliveries: options.countDeliveries }),
    ...(options.messageTtlMs === undefined ? {} : { messageTtlMs: options.messageTtlMs }),
  };
  const hub = new Connector({
    ...options.hub,
    clock,
    transport: network.transport({ name: HUB, peers: [VPP], ...extra }),
  });
  const vpp = new Connector({
    ...options.vpp,
    clock,
    transport: network.transport({ name: VPP, peers: [HUB], ...extra }),
  });
  return { clock, network, hub, vpp };
}

/** The JSON of what a transport sent (sealed bodies are not JSON: use `sent` directly). */
export function sentJson(t: MemoryTransport): Record<string, unknown>[] {
  return t.sent.map((o) => json(o));
}

export function json(o: { body: Uint8Array }): Record<string, unknown> {
  return JSON.parse(Buffer.from(o.body).toString('utf8')) as Record<string, unknown>;
}

/** [response_code, msg_id] of every `response` a transport sent. */
export function responses(t: MemoryTransport): [unknown, unknown][] {
  return sentJson(t)
    .filter((m) => m['msg'] === 'response')
    .map((m) => [m['response_code'], m['msg_id']]);
}

/** Puts a message into the transport's queue as the peer would send it (JSON, properties as the Connector sets). */
export function deliver(
  t: MemoryTransport,
  message: Message | Record<string, unknown>,
  options: { messageId?: string; from?: string | undefined; headers?: Record<string, unknown>; raw?: string } = {},
): Promise<Settlement> {
  const type = String((message as { msg?: unknown }).msg);
  const body = options.raw ?? Buffer.from(encode(message as Message)).toString('utf8');
  return t.inject({
    ...('from' in options ? { from: options.from } : {}),
    body,
    properties: {
      ...(options.messageId === undefined ? {} : { messageId: options.messageId }),
      type,
      contentType: 'application/json',
      appId: t.peers[0] as string,
      headers: options.headers ?? { 'x-ebadge-dm': '3.1' },
    },
  });
}

/** A gate a handler can wait on, opened by the test. */
export function gate(): { wait: Promise<void>; open(): void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { wait, open };
}

/** Replay state in memory: a sequence number seen twice from one sender is a duplicate. */
export function memoryReplay(): ReplayGuard {
  const seen = new Set<string>();
  return {
    check: (sender, seq) => (seen.has(`${sender}:${seq}`) ? 'duplicate' : 'new'),
    accept: (sender, seq) => {
      seen.add(`${sender}:${seq}`);
    },
    persist: async () => undefined,
  };
}

/**
 * Two sealers that know each other: `a` may send `aSends` to `b`, `b` may send `bSends` to `a`. Identities are made
 * a minute before `now` so that their keys are in force.
 */
export function sealers(
  a: string,
  b: string,
  aSends: string[],
  bSends: string[],
  now: () => number,
  bOptions: Pick<SealerOptions, 'onKeyLearned'> = {},
  aOptions: Partial<Pick<SealerOptions, 'replay'>> = {},
): { a: Sealer; b: Sealer } {
  const x = generateIdentity(a, nodeBackend, now() - 60_000);
  const y = generateIdentity(b, nodeBackend, now() - 60_000);
  const entry = (e: typeof x.publicEntry, maySend: string[], mayReceive: string[]): Record<string, unknown> => ({
    ed25519: e.ed25519,
    x25519: e.x25519.map(({ pub, notBefore }) => ({ pub, notBefore })),
    maySend,
    mayReceive,
  });
  let seqA = 0n;
  let seqB = 0n;
  return {
    a: new Sealer({
      backend: nodeBackend,
      now,
      sequence: { take: async () => ++seqA },
      replay: aOptions.replay ?? memoryReplay(),
      keyring: new Keyring(nodeBackend, {
        keyring: { format: 'heh-keyring/1', peers: { [b]: entry(y.publicEntry, bSends, aSends) } },
        privateKey: x.privateKey,
      }),
    }),
    b: new Sealer({
      ...bOptions,
      backend: nodeBackend,
      now,
      sequence: { take: async () => ++seqB },
      replay: memoryReplay(),
      keyring: new Keyring(nodeBackend, {
        keyring: { format: 'heh-keyring/1', peers: { [a]: entry(x.publicEntry, aSends, bSends) } },
        privateKey: y.privateKey,
      }),
    }),
  };
}

/** Turns the event loop until `cond` holds (at most `turns` setImmediate turns: no wall-clock wait). */
export async function until(cond: () => boolean, turns = 200): Promise<void> {
  for (let i = 0; i < turns; i++) {
    if (cond()) return;
    await settle(1);
  }
  throw new Error(`not reached after ${turns} turns: ${cond.toString()}`);
}

/**
 * `p`, which must settle within `turns` event-loop turns: a reply that never comes fails the test at once instead of
 * waiting for a timeout the ManualClock would never reach.
 */
export async function soon<T>(p: Promise<T>, turns = 500): Promise<T> {
  let done = false;
  const watched = p.finally(() => {
    done = true;
  });
  watched.catch(() => undefined);
  await until(() => done, turns).catch(() => {
    throw new Error(`not settled after ${turns} turns`);
  });
  return watched;
}

export const uuid = (n: number): string => `6f1c2e9a-1111-4222-8333-${n.toString(16).padStart(12, '0')}`;
