/**
 * Shared bits of the AMQP integration tests: the broker URL, unique names, a deadline per test, and a memory alarm
 * on the default node.
 */

import { type Connection, type ConnectOptions, connect } from '../../src/amqp/index.js';
import { parseWatermark } from './broker-faults.js';
import { rabbitmqctl } from './broker-node.js';
import { withDeadline } from './deadline.js';

export const AMQP_URL = process.env['AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672';
const parsed = new URL(AMQP_URL);
/** AMQP_URL's host, port and login, for the tests that take them apart (a proxy's target, RecoveringConnection). */
export const BROKER = {
  hostname: parsed.hostname,
  port: Number(parsed.port || 5672),
  username: decodeURIComponent(parsed.username) || 'guest',
  password: decodeURIComponent(parsed.password) || 'guest',
} as const;

let counter = 0;
/** A queue or exchange name no other test (or earlier run) uses. */
export function unique(prefix: string): string {
  return `test-${prefix}-${process.pid}-${Date.now().toString(36)}-${counter++}`;
}

/** uvu has no timeouts: wrap each test body so a hang fails the test instead of the whole run. */
export function timed(fn: () => Promise<void>, ms = 15_000): () => Promise<void> {
  return () => withDeadline(fn(), ms, 'test');
}

/** Runs `fn` with a fresh connection, always closed afterwards. */
export async function withConnection<T>(fn: (c: Connection) => Promise<T>, options: ConnectOptions = {}): Promise<T> {
  const conn = await connect(AMQP_URL, { connectionName: 'uvu-test', ...options });
  try {
    return await fn(conn);
  } finally {
    await conn.close();
  }
}

/** Resolves with the next value `register` hands to its callback. */
export function next<T>(register: (cb: (v: T) => void) => void): Promise<T> {
  return new Promise((resolve) => register(resolve));
}

/** A promise's rejection reason; fails if it resolves. */
export async function rejection(p: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await p;
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('expected a rejection, but the promise resolved');
}

/**
 * Runs `fn` while the default node has a memory alarm (watermark 0): RabbitMQ then sends connection.blocked to every
 * connection that publishes, and stops reading from it (https://www.rabbitmq.com/docs/connection-blocked). The
 * watermark is restored in any case. Every client of the shared broker is blocked meanwhile: keep `fn` short.
 */
export async function withMemoryAlarm(fn: () => Promise<void>): Promise<void> {
  const restore = parseWatermark(await rabbitmqctl(['eval', 'vm_memory_monitor:get_vm_memory_high_watermark().']));
  await rabbitmqctl(['set_vm_memory_high_watermark', '0']);
  try {
    await fn();
  } finally {
    await rabbitmqctl(['set_vm_memory_high_watermark', ...restore]);
  }
}
