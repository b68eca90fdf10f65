/**
 * The reconnection delays of the MQTT transport. MQTT.js only knows a fixed `reconnectPeriod`: 5,000 hubs that lost
 * their broker together would all come back in step, every period, for as long as it is down. So the transport
 * turns MQTT.js's own reconnection off and schedules each attempt itself: exponential from `reconnectDelay`, capped
 * at `maxReconnectDelay`, then up to +50% jitter applied after the cap (as src/amqp's RecoveringConnection does),
 * so that a fleet that reached the cap in a long outage still spreads out.
 */

export interface BackoffOptions {
  /** The first delay, ms (default 2000). */
  reconnectDelay?: number;
  /** The cap before the jitter, ms (default 60,000). */
  maxReconnectDelay?: number;
  /** Uniform numbers in [0, 1) (default Math.random); a seeded source makes the delays reproducible. */
  random?: () => number;
}

/** The delay before attempt `attempt` (1 for the first retry). */
export function backoffDelay(attempt: number, o: BackoffOptions = {}): number {
  const base = o.reconnectDelay ?? 2000;
  const cap = o.maxReconnectDelay ?? 60_000;
  const d = Math.min(cap, base * 2 ** Math.min(Math.max(attempt, 1) - 1, 30));
  return Math.round(d * (1 + (o.random ?? Math.random)() / 2));
}
