/**
 * The hub's link to its broker: the bus is started in the background, after the hub already measures and executes
 * (a Pi that boots without network must still record and end activations), and its start is retried for as long as
 * it fails, whatever the broker says. Only the hub's own configuration may stop it (exit 78, at load); the broker's
 * state never does: an unreachable broker, refused credentials, a missing virtual host, a permission the broker user
 * lacks (403) or an exchange its peer has not declared yet (404) are each logged, at error level for those an
 * operator must fix, with what to fix (`fix`), then retried with backoff. Once the bus is up the hub registers and
 * sends what its outbox kept; later losses and recoveries of the connection are the hub's events.
 */
import type { ConnectionFailure, Connector } from '../bus/index.js';
import { BusError } from '../bus/index.js';
import { type Clock, systemClock, type Timer } from '../core/clock.js';
import type { HubConfig } from './config/index.js';
import type { Logger } from './log.js';

/** What the link needs of the Hub (hub.ts). */
export interface LinkedHub {
  /** The bus is up for the first time. */
  connected(): Promise<void>;
  /** Later losses and recoveries of the connection. */
  connectionChanged(up: boolean): Promise<void>;
}

export interface BrokerLinkOptions {
  config: HubConfig;
  bus: Connector;
  hub: LinkedHub;
  log: Logger;
  /** The broker user the hub logs in as, for the messages. */
  user: string;
  /** The retries' delays (default the system clock; tests move a ManualClock). */
  clock?: Clock;
}

/** Why a start failed, in the operator's words: `level` error when a person must act, `fix` what to do. */
interface Diagnosis {
  level: 'warn' | 'error';
  message: string;
  fix?: string;
}

export class BrokerLink {
  readonly #o: BrokerLinkOptions;
  readonly #clock: Clock;
  #closed = false;
  #up = false;
  #timer: Timer | undefined;
  #wake: (() => void) | undefined;
  #started: Promise<void> | undefined;

  constructor(options: BrokerLinkOptions) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    this.#follow();
  }

  /** True once the bus started and the hub was told. */
  get up(): boolean {
    return this.#up;
  }

  /**
   * Starts connecting in the background and resolves once the bus is up and the hub registered, which may be never
   * (a broker that never comes) or not at all if close() comes first. Never rejects.
   */
  start(): Promise<void> {
    this.#started ??= this.#run();
    return this.#started;
  }

  /** No more attempts (the caller closes the bus, which ends an attempt in progress). */
  close(): void {
    this.#closed = true;
    this.#timer?.cancel();
    this.#wake?.();
  }

  async #run(): Promise<void> {
    const { bus, config, hub, log } = this.#o;
    for (let attempt = 1; !this.#closed; attempt++) {
      try {
        await bus.start();
      } catch (err) {
        if (this.#closed) return;
        const delayMs = this.#delay(attempt);
        // Said by the transport's `failed` event, with the fix (#follow); start() waits for the next attempt again.
        if (err instanceof BusError && err.code === 'ACCESS_REFUSED') {
          await this.#sleep(delayMs);
          continue;
        }
        const d = this.#diagnose(err);
        log[d.level](d.message, {
          attempt,
          retryInS: delayMs / 1000,
          ...(d.fix === undefined ? {} : { fix: d.fix }),
          error: err,
        });
        await this.#sleep(delayMs);
        continue;
      }
      if (this.#closed) return;
      this.#up = true;
      await hub.connected();
      log.info('hub running', {
        name: config.name,
        peers: config.peers.map((p) => p.name),
        devices: config.devices.map((d) => d.name),
        ...(attempt > 1 ? { attempts: attempt } : {}),
      });
      return;
    }
  }

  /** reconnectDelayS doubled per failed attempt, up to maxReconnectDelayS: the connection's own backoff. */
  #delay(attempt: number): number {
    const b = this.#o.config.broker;
    return Math.round(Math.min(b.maxReconnectDelayS, b.reconnectDelayS * 2 ** Math.min(attempt - 1, 20)) * 1000);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.#wake = resolve;
      this.#timer = this.#clock.setTimeout(resolve, ms, { unref: true });
    });
  }

  #diagnose(err: unknown): Diagnosis {
    if (err instanceof BusError && err.code === 'TOPOLOGY') {
      return (
        this.#refused(err.cause) ?? {
          level: 'error',
          message: 'the broker refused the queues or exchanges of the hub; retrying',
        }
      );
    }
    // The broker's refusal as it closed the channel (an inbox declared with other arguments: a ChannelError 406).
    const refused = this.#refused(err);
    if (refused !== undefined) return refused;
    // The connection went while declaring: the connection recovers by itself and the next attempt waits for it.
    return { level: 'warn', message: 'starting the bus failed; retrying' };
  }

  /**
   * What a refused declaration (403, 404, 406: the `replyCode` of `err`, a ChannelError) means and how to fix it; at
   * the start and at each recovery alike.
   */
  #refused(err: unknown): Diagnosis | undefined {
    const { replyCode: code, message } = (err ?? {}) as { replyCode?: unknown; message?: unknown };
    const { config, user } = this.#o;
    const vhost = vhostOf(config.broker.url);
    if (code === 403)
      return {
        level: 'error',
        message: 'the broker refused a declaration (403 ACCESS_REFUSED); retrying',
        fix: `${user === config.name ? '' : `the hub's name ${config.name} is not its broker user ${user}: if one is a typo, fix it in hub.json; else `}give the broker user ${user} its permissions on the vhost ${vhost}: ${permissions(config, user)}`,
      };
    if (code === 404)
      return {
        level: 'error',
        message: 'an exchange the hub only checks does not exist (404 NOT_FOUND); retrying',
        fix:
          'the peer that owns it has not declared it yet (declareExchanges is false): start the peer once, or ' +
          'declare the exchange on the broker, or set declareExchanges to true if the hub may configure it',
      };
    if (code === 406) {
      // RabbitMQ names it: "inequivalent arg 'x-message-ttl' for queue 'private-heh-1-in' in vhost '/'".
      const [, kind, name = 'NAME'] = /for (queue|exchange) '([^']*)'/.exec(String(message)) ?? [];
      return {
        level: 'error',
        message: 'a queue or exchange exists on the broker with other settings (406 PRECONDITION_FAILED); retrying',
        fix:
          kind === 'exchange'
            ? `delete the exchange ${name} on the broker (rabbitmqadmin -V ${vhost} delete exchange name=${name}) ` +
              'or align its settings (topology, exchange type)'
            : `delete it on the broker (rabbitmqctl delete_queue -p ${vhost} ${name}, with the messages it holds) or ` +
              'align the settings (topology, queue type)',
      };
    }
    return undefined;
  }

  /** The transport's events in the log, with what to fix; losses and recoveries after the first start to the hub. */
  #follow(): void {
    const { bus, log, hub, user, config } = this.#o;
    const t = bus.transport;
    t.on('failed', (error, i: ConnectionFailure) => {
      if (i.authentication) {
        log.error('the broker refused our credentials; retrying slowly', {
          user,
          endpoint: i.endpoint,
          fix:
            `check the user ${user} and its password (broker.passwordFile) against the broker's users (rabbitmqctl ` +
            'list_users); the hub reads its password file when it starts: restart it after changing the password',
          error,
        });
        return;
      }
      if ((error as { code?: unknown }).code === 'NOT_ALLOWED') {
        const vhost = vhostOf(config.broker.url);
        const d = notAllowed(error.message, vhost, user);
        log.error(d.message, { vhost, user, endpoint: i.endpoint, fix: d.fix, error });
        return;
      }
      // Reached, but the broker refused what a recovery declares again (permissions revoked since the start).
      const d = this.#refused(error);
      if (d !== undefined) {
        log.error(d.message, { endpoint: i.endpoint, attempt: i.attempt, fix: d.fix, error });
        return;
      }
      const fix = unreachable(String((error as Error | undefined)?.message), i.endpoint, config.broker.url);
      log.warn('cannot reach the broker', {
        endpoint: i.endpoint,
        attempt: i.attempt,
        ...(fix === undefined ? {} : { fix }),
        error,
      });
    });
    t.on('reconnecting', (i) => log.info('reconnecting', { inMs: i.delayMs, endpoint: i.endpoint }));
    t.on('down', (error) => {
      log.warn('connection to the broker lost; recovering', { error });
      if (this.#up) void hub.connectionChanged(false);
    });
    t.on('recovered', (i) => {
      log.info('connection to the broker recovered', { endpoint: i.endpoint, downtimeMs: i.downtimeMs });
      if (this.#up) void hub.connectionChanged(true);
    });
    t.on('blocked', (reason) => log.warn('the broker blocked publishing (resource alarm)', { reason }));
    t.on('unblocked', () => log.info('the broker unblocked publishing'));
    t.on('restore-failed', (error, what) => {
      const d = this.#refused(error);
      log.error('re-declaring after recovery failed', {
        what,
        ...(d === undefined ? {} : { reason: d.message.replace(/; retrying$/, ''), fix: d.fix }),
        error,
      });
    });
    // The broker closed a channel alone (a refused declaration, the consumer timeout): said, as it may repeat.
    t.on('resumed', (error) => log.warn('a channel the broker closed was reopened', { error }));
    t.on('source-cancelled', (queue, error) =>
      log.warn('the broker cancelled our consumer; consuming again', { queue, error }),
    );
    t.on('degraded', (what, fix) => log.warn(what, { fix }));
    t.on('settle-overdue', (ageMs, queue) => log.warn('a delivery is still unacknowledged', { ageMs, queue }));
    t.on('internal-error', (error, where) =>
      log.error(`internal error in the ${t.name.toUpperCase()} client`, { where, error }),
    );
  }
}

/**
 * What the hub needs, as a rabbitmqctl command (configure, write, read), with its own names and its peers' (not
 * D3.2.3's prefix patterns, which would also match another entity whose name starts with ours): its inbox and
 * dead letters (its inbox per peer as well), the pair exchanges (configure only when it declares them), publishing to `<me>-to-<peer>`, binding
 * from `<peer>-to-<me>`.
 */
export function permissions(config: HubConfig, user: string): string {
  const x = (name: string): string => name.replace(/[.\\^$|?*+()[\]{}]/g, '\\$&');
  const me = x(config.name);
  const peers = config.peers.map((p) => x(p.name)).join('|');
  // With one inbox per peer (broker.inboxes, the default), those inboxes too: `private-<me>-in:<peer>`.
  const perPeer = config.topology !== 'queues' && config.broker.inboxes === 'per-peer';
  const own = `private-${me}-(in|dead|dlx${perPeer ? `|in:(${peers})` : ''})`;
  const vhost = vhostOf(config.broker.url);
  const [configure, write, read] =
    config.topology === 'queues'
      ? Array<string>(3).fill(`^(${own}|${me}-up|${me}-down)$`) // the same for configure, write and read
      : [
          config.declareExchanges ? `^(${own}|${me}-to-(${peers})|(${peers})-to-${me})$` : `^${own}$`,
          `^(${own}|${me}-to-(${peers}))$`,
          `^(${own}|(${peers})-to-${me})$`,
        ];
  return `rabbitmqctl set_permissions -p '${vhost}' '${user}' '${configure}' '${write}' '${read}'`;
}

/**
 * What a 530 NOT_ALLOWED as the connection opens means: RabbitMQ sends it for a missing vhost, for no access to it,
 * and for a max-connections limit reached (of the vhost: "connection limit (0) is reached"; of the user: "user
 * connection limit (0) is reached"), where creating the vhost or granting access would fix nothing.
 */
export function notAllowed(text: string, vhost: string, user: string): { message: string; fix: string } {
  const limit = /(user )?connection limit/.exec(text);
  if (limit === null)
    return {
      message: 'the broker refused our virtual host; retrying',
      // "/" is there on every broker: a URL that names no vhost, for a user provisioned on another, is the usual cause.
      fix:
        vhost === '/'
          ? `name the vhost in broker.url (amqps://broker/ebadge for a provisioned broker: a URL without one means "/"), or give ${user} access to "/" (rabbitmqctl set_permissions -p / ${user} ...)`
          : `create the vhost or give ${user} access to it (rabbitmqctl add_vhost ${vhost}; rabbitmqctl set_permissions -p ${vhost} ${user} ...), or fix the vhost in broker.url`,
    };
  const u = limit[1] !== undefined;
  const [what, k, of] = u ? ['user', 'user', user] : ['virtual host', 'vhost', `-p ${vhost}`];
  return {
    message: `the broker's connection limit for the ${what} is reached; retrying`,
    // clear_vhost_limits takes no limit's name; clear_user_limits needs one.
    fix: `close connections or raise the limit (rabbitmqctl set_${k}_limits ${of} '{"max-connections": N}', or rabbitmqctl clear_${k}_limits ${of}${u ? ' max-connections' : ''})`,
  };
}

/**
 * What to check when the broker cannot be reached, from the socket's or TLS's error text (the hub retries whatever
 * it is; the usual causes are a broker not started, a port that is not AMQP's, and a URL's scheme that does not match).
 */
export function unreachable(text: string, endpoint: string, url: string): string | undefined {
  if (text.includes('ECONNREFUSED'))
    return `nothing listens at ${endpoint}: start the broker, or fix the port in broker.url (AMQP 5672, AMQPS 5671)`;
  if (text.includes('ECONNRESET'))
    return `${endpoint} closed the connection at the AMQP greeting: is it an AMQP port (5672, 5671 for amqps://)? An MQTT broker (1883) does this: hub-mqtt.js is the MQTT hub`;
  if (/ENOTFOUND|EAI_AGAIN/.test(text)) return `the host name in broker.url does not resolve (a typo, or no DNS yet)`;
  if (/wrong version number|packet length too long/.test(text) && url.startsWith('amqps:'))
    return `${endpoint} does not speak TLS: use amqp:// for that port, or the broker's TLS port (5671)`;
  if (/ETIMEDOUT|EHOSTUNREACH|ENETUNREACH/.test(text))
    return `no answer from ${endpoint}: the network, a firewall, or the host is down`;
  // Node's texts for OpenSSL's verify errors (X509_V_ERR_*), and its own for a name not in the certificate.
  if (/not yet valid|has expired/.test(text))
    return `the broker's certificate is outside its dates by the hub's clock: check the clock (\`date\`; a Pi has no real-time clock, so is NTP synced?), then the certificate's dates (openssl x509 -noout -dates)`;
  if (/self.signed|local issuer|verify the first certificate/.test(text))
    return `the broker's certificate is not signed by a CA the hub trusts: set broker.tls.ca to the PEM file of the CA that signed it (verification stays on)`;
  // The name checked is broker.tls.servername when set: the fix blamed broker.url's host, which was not checked.
  if (text.includes('does not match certificate'))
    return `the name checked (broker.tls.servername, else the host in broker.url) is not in the broker's certificate: use one it carries (the error lists them)`;
  if (/alert (unknown ca|bad certificate|certificate required|certificate unknown)/.test(text))
    return `the broker refused the hub's client certificate: is broker.tls.cert signed by a CA in the broker's cacertfile, and within its dates?`;
  return undefined;
}

/** The virtual host a broker URL names (`/` when it names none), as the AMQP client reads it. */
export function vhostOf(url: string): string {
  const p = new URL(url).pathname;
  return p === '' || p === '/' ? '/' : decodeURIComponent(p.slice(1));
}
