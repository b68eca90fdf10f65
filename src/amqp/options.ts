/**
 * Connection options and `amqp://` / `amqps://` URLs (https://www.rabbitmq.com/docs/uri-spec and uri-query-parameters):
 *
 *   amqps://user:pass@host:5671/vhost?heartbeat=20&frame_max=131072&channel_max=2047&connection_timeout=10000
 *          &auth_mechanism=external&cacertfile=/etc/ca.pem&certfile=/etc/me.pem&keyfile=/etc/me.key
 *          &server_name_indication=broker.example&verify=verify_peer
 *
 * An unknown query parameter or an out-of-range value is an error naming it, never silently ignored.
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions as TlsOptions } from 'node:tls';
import { MECHANISMS, type Mechanism } from './auth.js';
import { AmqpError } from './errors.js';
import type { FieldTable } from './table.js';

export interface ConnectOptions {
  hostname?: string;
  port?: number;
  vhost?: string;
  username?: string;
  password?: string;
  /** SASL mechanism; default PLAIN (EXTERNAL needs a TLS client certificate). */
  mechanism?: Mechanism;
  /** TLS: true for defaults, or node:tls options (ca, cert, key, servername ...). Verification stays on unless
   *  `rejectUnauthorized: false` is given explicitly. */
  tls?: boolean | TlsOptions;
  /** Heartbeat timeout in seconds (default 20; 0 takes the broker's value; never below 5, which false-alarms). */
  heartbeat?: number;
  /** Largest frame we accept and send, in bytes (default 131072, 8192 to 64 MiB). */
  frameMax?: number;
  /** Most channels we open (default 2047). */
  channelMax?: number;
  /** Shown in the management UI and logs. */
  connectionName?: string;
  /** Extra client properties (merged over ours). */
  clientProperties?: FieldTable;
  /** TCP connect + TLS + AMQP handshake deadline in ms (default 20000). */
  connectTimeout?: number;
  /** Bytes of encoded frames waiting for the socket before publishes wait (default 1 MiB). */
  writeBufferBytes?: number;
  /**
   * Largest message body accepted from the broker (default 64 MiB; a consumer may set a lower one). A larger one is
   * dropped unread as it arrives, rejected without requeue and reported (Channel event `oversized`).
   */
  maxMessageBytes?: number;
  /** Body bytes of publishes waiting per channel (blocked, flow, full buffer) before publishes fail with buffer-full
   *  (default 64 MiB). */
  publishQueueBytes?: number;
  /** Unconfirmed publishes per channel before further publishes wait (default 10000). */
  maxUnconfirmed?: number;
  /** Default publish deadline in ms (default 60000). Raised to the heartbeat timeout when shorter (PUB-7). */
  publishTimeout?: number;
  /** Close the connection when the broker keeps it blocked this long (ms, default 0: never). */
  blockedTimeout?: number;
  /** Deadline for the close handshake in ms (default 5000); then the socket is destroyed. */
  closeTimeout?: number;
  /**
   * Deadline in ms for the broker's answer to a channel's synchronous call (declare, bind, consume, qos,
   * confirm.select, channel.open, channel.close ...; default 60000), counted from when the call is written. Past it
   * the connection is closed, `RPC_TIMEOUT`: a broker that answers heartbeats but not a method (a broken broker or
   * proxy) would otherwise hold the call, and everything behind it, for ever. RabbitMQ answers within its own
   * channel_operation_timeout (15 s).
   */
  rpcTimeout?: number;
}

export interface ResolvedOptions {
  hostname: string;
  port: number;
  vhost: string;
  username: string;
  password: string;
  mechanism: Mechanism;
  tls: TlsOptions | undefined;
  heartbeat: number;
  frameMax: number;
  channelMax: number;
  connectionName: string | undefined;
  clientProperties: FieldTable;
  connectTimeout: number;
  writeBufferBytes: number;
  maxMessageBytes: number;
  publishQueueBytes: number;
  maxUnconfirmed: number;
  publishTimeout: number;
  blockedTimeout: number;
  closeTimeout: number;
  rpcTimeout: number;
}

/** The shortest heartbeat timeout we accept or negotiate, in seconds. */
export const MIN_HEARTBEAT = 5;

function invalid(what: string, detail: string): AmqpError {
  return new AmqpError('OPTION_INVALID', `${what}: ${detail}`);
}

function unknownMechanism(what: string, got: string): AmqpError {
  return invalid(what, `expected one of ${MECHANISMS.join(', ')}, got ${JSON.stringify(got)}`);
}

function intOption(v: unknown, what: string, min: number, max: number): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    throw invalid(what, `expected an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
  }
  return n;
}

/** A URL part's percent-decoding; a malformed one (`%zz`) is named, never quoted: it may be the password. */
function unescaped(part: string, what: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw invalid('url', `${what} is not valid percent-encoding (a "%" must start %XX of UTF-8)`);
  }
}

/** The URL's integer parameters: the option each one sets and its bounds. */
const URL_INTS: Record<string, readonly [UrlIntOption, number, number]> = {
  heartbeat: ['heartbeat', 0, 65535],
  frame_max: ['frameMax', 8192, 64 << 20],
  channel_max: ['channelMax', 1, 65535],
  connection_timeout: ['connectTimeout', 1, 3600_000],
};
type UrlIntOption = 'heartbeat' | 'frameMax' | 'channelMax' | 'connectTimeout';

/** The URL's TLS files: the TLS option each one is read into. */
const URL_FILES = { cacertfile: 'ca', certfile: 'cert', keyfile: 'key' } as const;

/** Parses a URL into options. Query parameters follow RabbitMQ's URI query parameter names. */
export function parseUrl(url: string | URL): ConnectOptions {
  let u: URL;
  try {
    u = typeof url === 'string' ? new URL(url) : url;
  } catch {
    throw invalid('url', `not a URL: ${JSON.stringify(String(url).replace(/\/\/[^@/]*@/, '//***@'))}`);
  }
  if (u.protocol !== 'amqp:' && u.protocol !== 'amqps:')
    throw invalid('url', `scheme must be amqp: or amqps:, got ${u.protocol}`);
  const secure = u.protocol === 'amqps:';
  const o: ConnectOptions = {
    hostname: u.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    port: u.port === '' ? (secure ? 5671 : 5672) : Number(u.port),
  };
  if (o.port === 0) throw invalid('url', 'port 0: expected a port from 1 to 65535');
  if (u.username !== '') o.username = unescaped(u.username, 'the user name');
  if (u.password !== '') o.password = unescaped(u.password, 'the password');
  // amqp://host and amqp://host/ both mean the default vhost "/"; "/%2f" spells it explicitly.
  if (u.pathname.length > 1) o.vhost = unescaped(u.pathname.slice(1), 'the vhost');
  const tls: TlsOptions = {};
  for (const [key, value] of u.searchParams) {
    if (Object.hasOwn(URL_INTS, key)) {
      const [option, min, max] = URL_INTS[key] as (typeof URL_INTS)[string];
      o[option] = intOption(value, key, min, max);
      continue;
    }
    if (Object.hasOwn(URL_FILES, key)) {
      tls[URL_FILES[key as keyof typeof URL_FILES]] = readFileSync(value);
      continue;
    }
    switch (key) {
      case 'auth_mechanism': {
        const m = value.toUpperCase();
        if (!(MECHANISMS as readonly string[]).includes(m)) throw unknownMechanism('auth_mechanism', value);
        o.mechanism = m as Mechanism;
        break;
      }
      case 'server_name_indication':
        tls.servername = value;
        break;
      case 'verify':
        if (value !== 'verify_peer' && value !== 'verify_none')
          throw invalid('verify', `expected verify_peer or verify_none, got ${JSON.stringify(value)}`);
        tls.rejectUnauthorized = value === 'verify_peer';
        break;
      default:
        throw invalid('url', `unknown query parameter ${JSON.stringify(key)}`);
    }
  }
  if (secure) o.tls = tls;
  else if (Object.keys(tls).length > 0) throw invalid('url', 'TLS parameters need an amqps: URL');
  return o;
}

/** Applies defaults and checks every option. */
/** The options that are integers, each checked by its name. */
type IntegerOption =
  | 'heartbeat'
  | 'publishTimeout'
  | 'port'
  | 'frameMax'
  | 'channelMax'
  | 'connectTimeout'
  | 'writeBufferBytes'
  | 'maxMessageBytes'
  | 'publishQueueBytes'
  | 'maxUnconfirmed'
  | 'blockedTimeout'
  | 'closeTimeout'
  | 'rpcTimeout';

export function resolveOptions(o: ConnectOptions): ResolvedOptions {
  /** Option `k` (`d` when absent): an integer from `min` to `max` (by default 2^31 - 1 ms, the longest timer). */
  const int = (k: IntegerOption, d: number, min: number, max = 2 ** 31 - 1): number =>
    intOption(o[k] ?? d, k, min, max);
  const heartbeat = int('heartbeat', 20, 0, 65535);
  // https://www.rabbitmq.com/docs/heartbeats: below 5 s false positives are "fairly likely".
  if (heartbeat > 0 && heartbeat < MIN_HEARTBEAT)
    throw invalid(
      'heartbeat',
      `${heartbeat} s is below ${MIN_HEARTBEAT} s, where heartbeats raise false alarms (0 takes the broker's value)`,
    );
  const mechanism = o.mechanism ?? 'PLAIN';
  if (!MECHANISMS.includes(mechanism)) throw unknownMechanism('mechanism', mechanism);
  let tls: TlsOptions | undefined;
  if (o.tls === true) tls = {};
  else if (o.tls !== undefined && o.tls !== false) tls = o.tls;
  if (mechanism === 'EXTERNAL' && tls === undefined)
    throw invalid('mechanism', 'EXTERNAL needs TLS with a client certificate');
  const publishTimeout = int('publishTimeout', 60_000, 1);
  return {
    hostname: o.hostname ?? '127.0.0.1',
    port: int('port', tls ? 5671 : 5672, 1, 65535),
    vhost: o.vhost ?? '/',
    username: o.username ?? 'guest',
    password: o.password ?? 'guest',
    mechanism,
    tls,
    heartbeat,
    frameMax: int('frameMax', 131072, 8192, 64 << 20),
    channelMax: int('channelMax', 2047, 1, 65535),
    connectionName: o.connectionName,
    clientProperties: o.clientProperties ?? {},
    connectTimeout: int('connectTimeout', 20_000, 1),
    writeBufferBytes: int('writeBufferBytes', 1 << 20, 1024),
    maxMessageBytes: int('maxMessageBytes', 64 << 20, 0),
    publishQueueBytes: int('publishQueueBytes', 64 << 20, 0),
    maxUnconfirmed: int('maxUnconfirmed', 10_000, 1),
    // A deadline shorter than the heartbeat timeout would fail publishes that a live connection can still confirm.
    // Raised here to the heartbeat asked for; a channel raises it again to the negotiated one (0 takes the broker's).
    publishTimeout: Math.max(publishTimeout, heartbeat * 1000),
    blockedTimeout: int('blockedTimeout', 0, 0),
    closeTimeout: int('closeTimeout', 5000, 1),
    rpcTimeout: int('rpcTimeout', 60_000, 1),
  };
}
