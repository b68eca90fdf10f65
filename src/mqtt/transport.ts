/**
 * The bus over MQTT (MQTT.js), for the MQTT-only deployment (Mosquitto) and later RabbitMQ's MQTT plugin: the topic
 * scheme is topics.ts, the reconnection delays backoff.ts, and docs/bus.md ("MQTT") says what it promises. About 540
 * lines, one concept: the Transport and the MQTT.js client it wraps share the session, the held PUBACKs and the send
 * window, which split apart would have to be passed back and forth.
 *
 * Nothing lost:
 * - QoS 1 both ways. A send resolves on the broker's PUBACK; a delivery's PUBACK is sent only when the Connector
 *   settles it (ack, or after its dead-letter copy has its own PUBACK). MQTT.js sends a PUBACK as soon as its
 *   `handleMessage` hook returns, and holding that hook back would stop it reading the connection (our own
 *   PUBACKs, the reply a handler waits for): so the hook returns at once, and the PUBACK MQTT.js then sends is
 *   kept back (its `_sendPacket`, wrapped per client) and sent at settlement. A PUBACK of an earlier connection is
 *   never sent: the broker delivers that message again, marked DUP, and the Connector's dedupe sees it.
 * - A persistent session: the client id is the entity (stable), clean session off, and under MQTT 5 a session
 *   expiry (a week by default), so what peers send while we are offline waits in the broker. The subscription is
 *   made at start and again only when the broker says it kept no session; it is never removed.
 * - MQTT has no negative acknowledgement: retry() hands the message to the Connector again itself (the PUBACK
 *   still held), which counts failures (capabilities.deliveryCount is false).
 * - Reconnection with exponential backoff, a cap and jitter (backoff.ts): MQTT.js's fixed reconnectPeriod is off,
 *   and each attempt is MQTT.js's reconnect() with the same message stores, so QoS 1 sends not yet acknowledged are
 *   sent again (same packet, DUP) on the new connection.
 * - A PUBACK with an error code fails the send at once, naming the code (PubackError), and MQTT.js forgets the
 *   message: never sent again. Mosquitto's 0x95 (over its `message_size_limit`), which MQTT.js's parser cannot take,
 *   is made one it takes first (acks.ts). A dead letter the broker refuses so is sent again without the body; if even
 *   that is refused, the delivery is settled all the same and the loss told (`degraded`): nothing waits behind it.
 * - A bounded window: at most `inFlight` sends wait for their PUBACK at once; a further send waits for room.
 *   Deliveries to us are bounded by MQTT 5's receive maximum (`prefetch`); under 3.1.1 by the broker's own setting
 *   (Mosquitto's max_inflight_messages, 20 by default).
 *
 * MQTT 5 where the broker offers it (`protocolVersion: 'auto'` tries 5, and falls back to 3.1.1 when the CONNACK
 * says the version is not supported): the eBADGE properties travel as content type, correlation data, message
 * expiry and user properties. Nothing the bus needs depends on them: the sender, the recipient and the message type
 * are topic levels, the message id is the body's `msg_id` (the Connector dedupes on it when no message id property
 * came), and a body without a content type property is told sealed or JSON by its first byte (HEH-E2E v1 begins
 * with 0x01, JSON with `{`); one with the property is what the property says.
 */
import { randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';
import mqtt, {
  type IClientOptions,
  type IConnackPacket,
  type IPublishPacket,
  type MqttClient,
  ReasonCodes,
} from 'mqtt';
import {
  BusError,
  bodyBytes,
  CONTENT_TYPE_JSON,
  CONTENT_TYPE_SEALED,
  type Incoming,
  type Loopback,
  type Outgoing,
  type StartOptions,
  type Transport,
  type TransportCapabilities,
  type TransportEvents,
} from '../bus/index.js';
import { TypedEmitter } from '../core/emitter.js';
import { AckFramer } from './acks.js';
import { type BackoffOptions, backoffDelay } from './backoff.js';
import { checkPartyName, deadLetterTopic, inboxFilter, parseTopic, topicOf } from './topics.js';

export interface MqttTransportOptions extends BackoffOptions {
  /** Our entity name: the client id, the `<to>` level of what we receive and the `<from>` level of what we send. */
  name: string;
  /** The entities we exchange messages with. */
  peers: readonly string[];
  /** `mqtt://host:1883` or `mqtts://host:8883` (default mqtt://127.0.0.1:1883); credentials may be given below. */
  url?: string;
  username?: string;
  password?: string;
  /** TLS settings for mqtts:, as node:tls takes them (PEM contents). */
  tls?: {
    ca?: string | Buffer;
    cert?: string | Buffer;
    key?: string | Buffer;
    /** The name the broker's certificate must have, when it is not the URL's host. */
    servername?: string;
    rejectUnauthorized?: boolean;
  };
  /** `auto` (default): MQTT 5, or 3.1.1 when the broker refuses 5; 5 or 4 (3.1.1) to insist. */
  protocolVersion?: 'auto' | 5 | 4;
  /** How long the broker keeps our session (and what waits in it) while we are offline, MQTT 5 (default a week). */
  sessionExpirySeconds?: number;
  /** MQTT 5 message expiry of what we send, ms (default 900,000: the AMQP inbox's TTL, D3.2.3). */
  messageTtlMs?: number;
  /** Deliveries in flight to us: MQTT 5's receive maximum (default 100). */
  prefetch?: number;
  /** Our sends waiting for their PUBACK at once (default 100). */
  inFlight?: number;
  /** MQTT keep-alive, s (default 30). */
  keepaliveSeconds?: number;
  /** A connection attempt with no CONNACK by then fails, ms (default 10,000). */
  connectTimeoutMs?: number;
  /**
   * false: send only, never take the entity's messages (a CLI's send): a throw-away client id and a clean session,
   * so that the entity's own session and what waits in it are left alone.
   */
  consume?: boolean;
}

/** What a delivery to us is in MQTT.js's terms: its PUBLISH packet. */
export type MqttMessage = IPublishPacket;

/** The user properties the transport writes (the rest of them are the message's headers). */
const P_MESSAGE_ID = 'message_id';
const P_TYPE = 'type';
const P_APP_ID = 'app_id';
const P_TIMESTAMP = 'timestamp';
const RESERVED = new Set([P_MESSAGE_ID, P_TYPE, P_APP_ID, P_TIMESTAMP]);

/** CONNACK codes for a protocol version the broker does not speak: 3.1.1's 1, MQTT 5's 0x84. */
const UNSUPPORTED_VERSION = new Set([1, 0x84]);
/** CONNACK codes for refused credentials: 3.1.1's 4 and 5, MQTT 5's 0x86 and 0x87. */
const AUTH_REFUSED = new Set([4, 5, 0x86, 0x87]);

/**
 * Mosquitto 2 closes the connection of a client whose UTF-8 strings hold control characters (the spec's SHOULD NOT),
 * and MQTT.js then sends the same packet again after each reconnect: a user property is made one printable line.
 */
function oneLine(v: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the control characters are what is replaced
  return v.replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ');
}

function printable(headers: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) out[oneLine(k)] = oneLine(v);
  return out;
}

/** A send the broker refused in its PUBACK (MQTT 5): `code` is the reason code (0x87 Not authorized, 0x95 ...). */
export class PubackError extends Error {
  override name = 'PubackError';
  constructor(
    message: string,
    readonly code: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** What a PUBACK error code says of the message, as words that follow "refused the message". */
const REFUSED_AS: Readonly<Record<number, string>> = {
  128: 'with an unspecified error', // 0x80
  131: 'with an error of its own', // 0x83
  135: 'as not authorized', // 0x87
  144: 'for its topic name', // 0x90
  145: 'as its packet identifier is in use', // 0x91
  149: 'as too large', // 0x95
  151: 'as over a quota', // 0x97
  153: 'for its payload format', // 0x99
};

/** The error of a send refused with PUBACK `code` (`cause`: MQTT.js's, which may name the code it was made into). */
function refusal(code: number, endpoint: string, topic: string, bytes: number, cause: Error): PubackError {
  const hex = `0x${code.toString(16).padStart(2, '0')}`;
  const name = (ReasonCodes as Record<number, string | undefined>)[code] ?? 'an unknown reason code';
  const size = code === 0x95 ? `; a body of ${bytes} bytes, over its message_size_limit` : '';
  return new PubackError(
    `the broker (${endpoint}) refused the message on ${topic} ${REFUSED_AS[code] ?? 'with an error'} (PUBACK ${hex}, ${name}${size})`,
    code,
    { cause },
  );
}

/** A message id or correlation id over 255 bytes is taken as absent, as over AMQP: no answer could echo it. */
const echoable = (id: string | undefined): string | undefined =>
  id === undefined || Buffer.byteLength(id) <= 255 ? id : undefined;

/**
 * An MQTT.js client whose connections' incoming bytes go through an AckFramer (acks.ts) before its parser: created
 * unconnected, its stream builder wrapped, then connected; reconnect() builds each stream through the same wrapper.
 * `codes` gets the true reason code of a PUBACK the framer rewrote, by packet id.
 */
function framedClient(url: string, options: IClientOptions, codes: Map<number, number>): MqttClient {
  const client = mqtt.connect(url, { ...options, manualConnect: true });
  const raw = client as unknown as { streamBuilder: (c: MqttClient) => Duplex };
  const build = raw.streamBuilder;
  raw.streamBuilder = (c) => {
    const stream = build(c);
    const framer = new AckFramer((id, code) => codes.set(id, code));
    // The first listener (MQTT.js pipes the stream into its parser right after): a chunk is framed, and rewritten
    // in place, before the parser sees it.
    stream.prependListener('data', (chunk: unknown) => {
      if (chunk instanceof Uint8Array) framer.feed(chunk);
    });
    return stream;
  };
  client.connect();
  return client;
}

interface Held {
  readonly packet: IPublishPacket;
  /** The connection it came on: a PUBACK goes back only on that one. */
  readonly generation: number;
  settled: boolean;
}

type PublishOptions = Parameters<MqttClient['publish']>[2];

type SendPacket = (packet: { cmd: string; messageId?: number }, cb?: (err?: Error) => void, ...rest: unknown[]) => void;

export class MqttTransport extends TypedEmitter<TransportEvents> implements Transport<MqttMessage> {
  readonly name = 'mqtt';
  readonly options: Readonly<MqttTransportOptions>;
  readonly capabilities: TransportCapabilities = {
    requeue: false,
    deliveryCount: false,
    // dead-letter/<me> is a topic: kept only for a subscriber with a persistent session (docs/bus.md, "MQTT").
    deadLetterQueue: false,
    confirmedSend: true,
    // Only a broker's per-party ACLs (write <msg>/<me>/#) make the <from> level trustworthy; none are assumed.
    authenticatedSender: false,
  };
  readonly #peers: ReadonlySet<string>;
  readonly #endpoint: string;
  #client: MqttClient | undefined;
  /** The MQTT.js method that writes packets, before we wrapped it. */
  #write: SendPacket | undefined;
  #version: 5 | 4;
  #generation = 0;
  #connected = false;
  #everUp = false;
  #downSince = 0;
  #attempt = 0;
  #timer: NodeJS.Timeout | undefined;
  #lastError: Error | undefined;
  /** An error (refused, reset, no CONNACK in time) was reported during the connection attempt of the moment. */
  #attemptFailed = false;
  #fallback = false;
  #closed = false;
  #consuming = false;
  #onMessage: ((m: Incoming<MqttMessage>) => Promise<void>) | undefined;
  /** Deliveries whose PUBACK we hold, by packet id, for the connection of the moment. */
  readonly #held = new Map<number, Held>();
  /** The largest body handed over (StartOptions.maxBodyBytes); announced to an MQTT 5 broker as our packet limit. */
  #maxBody = DEFAULT_MAX_BODY;
  /** Packet ids of our sends whose PUBACK said no subscription matched (MQTT 5, 0x10), until their callback. */
  readonly #unmatched = new Set<number>();
  /** The true reason code of a PUBACK rewritten for MQTT.js's parser (acks.ts), by packet id, until its callback. */
  readonly #ackCodes = new Map<number, number>();
  #sending = 0;
  readonly #room: (() => void)[] = [];
  readonly #whenUp: { resolve: () => void; reject: (e: Error) => void }[] = [];

  constructor(options: MqttTransportOptions) {
    super();
    checkPartyName(options.name, 'entity');
    for (const p of options.peers) checkPartyName(p, 'peer');
    const url = new URL(options.url ?? 'mqtt://127.0.0.1:1883');
    if (url.protocol !== 'mqtt:' && url.protocol !== 'mqtts:')
      throw new BusError('CONFIG', `the MQTT transport takes mqtt: or mqtts: URLs, not ${url.protocol}`);
    this.options = options;
    this.#peers = new Set(options.peers);
    this.#endpoint = `${url.hostname}:${url.port || (url.protocol === 'mqtts:' ? 8883 : 1883)}`;
    this.#version = options.protocolVersion === 4 ? 4 : 5;
  }

  get entity(): string {
    return this.options.name;
  }

  get peers(): readonly string[] {
    return this.options.peers;
  }

  get messageTtlMs(): number {
    return this.options.messageTtlMs ?? 900_000;
  }

  /** The protocol version of the connection (5, or 4 for 3.1.1 after a fallback). */
  get protocolVersion(): 5 | 4 {
    return this.#version;
  }

  /** The MQTT.js client underneath, once started. */
  get client(): MqttClient | undefined {
    return this.#client;
  }

  /** Deliveries handed over and not settled yet. */
  get unsettled(): number {
    return this.#held.size;
  }

  async start(onMessage: (m: Incoming<MqttMessage>) => Promise<void>, options: StartOptions = {}): Promise<void> {
    if (this.#closed) throw new BusError('CLOSED', 'the transport is closed');
    if (options.maxBodyBytes !== undefined) this.#maxBody = options.maxBodyBytes;
    if (this.options.consume !== false) {
      this.#onMessage = onMessage;
      this.#consuming = true;
    }
    await this.#up();
    if (this.options.consume === false) return;
    await this.#subscribe();
  }

  async send(o: Outgoing): Promise<void> {
    if (this.#closed) throw new BusError('CLOSED', 'the transport is closed');
    if (!this.#peers.has(o.to))
      throw new BusError('UNKNOWN_PEER', `"${o.to}" is not a configured peer of ${this.options.name}`);
    const topic = topicOf(this.options.name, o.to, o.routingKey);
    const client = this.#client;
    if (client === undefined) throw new BusError('NOT_STARTED', 'the transport is not started');
    // MQTT.js takes a Buffer: a writer is written once here (its packet copy is the one AMQP avoids).
    const body = bodyBytes(o.body);
    const p = o.properties;
    const options: PublishOptions = { qos: 1 };
    if (this.#version === 5) {
      options.properties = {
        contentType: p.contentType,
        messageExpiryInterval: Math.ceil(this.messageTtlMs / 1000),
        userProperties: {
          ...printable(p.headers),
          [P_MESSAGE_ID]: p.messageId,
          [P_TYPE]: p.type,
          [P_APP_ID]: p.appId,
          [P_TIMESTAMP]: p.timestamp.toISOString(),
        },
        ...(p.correlationId === undefined ? {} : { correlationData: Buffer.from(p.correlationId) }),
      };
    }
    await this.#acquire();
    let matched: boolean;
    try {
      matched = await this.#publish(client, topic, body, options);
    } finally {
      this.#release();
    }
    // MQTT 5: the broker's PUBACK says no subscription matched (0x10), so nobody gets it, as an AMQP message
    // returned unroutable: not sent (the hub's outbox keeps it and sends it again later). 3.1.1 has no such code.
    if (!matched)
      throw new BusError(
        'TOPOLOGY',
        `no session subscribes to ${topic} on ${this.#endpoint} (PUBACK 0x10, no matching subscribers): the broker ` +
          `dropped the message; ${o.to} subscribes when it connects for the first time`,
      );
  }

  /**
   * A QoS 1 publish, resolved on its PUBACK. MQTT.js queues a publish made while it re-sends its store after a
   * reconnect, and fails that queue with "Connection closed" if the connection is lost again meanwhile: such a
   * publish was never stored nor sent, so it is made again once connected (mqtt-faults.test.ts, fault 1, lost 74
   * sends so). A PUBACK error code rejects PubackError; any other error rejects as it is. Resolves false when the
   * PUBACK said no subscription matched (0x10).
   */
  async #publish(client: MqttClient, topic: string, body: Buffer | string, options: PublishOptions): Promise<boolean> {
    for (;;) {
      try {
        return await new Promise<boolean>((resolve, reject) =>
          client.publish(topic, body, options, (err, packet) => {
            const ack = packet as { cmd?: string; messageId?: number } | undefined;
            const id = ack?.messageId;
            const rewritten = id === undefined ? undefined : this.#ackCodes.get(id);
            if (id !== undefined) this.#ackCodes.delete(id);
            if (err) {
              const code = rewritten ?? (err as { code?: unknown }).code;
              // Refused in the PUBACK: MQTT.js removed it from its store, so it is never sent again.
              if ((ack?.cmd === 'puback' || ack?.cmd === 'pubrec') && typeof code === 'number')
                return reject(refusal(code, this.#endpoint, topic, Buffer.byteLength(body), err));
              return reject(err);
            }
            resolve(!(id !== undefined && this.#unmatched.delete(id)));
          }),
        );
      } catch (err) {
        if (this.#closed || (err as Error).message !== 'Connection closed') throw err;
        await this.#up();
      }
    }
  }

  async stopConsuming(): Promise<void> {
    // The subscription stays: it is the persistent session that keeps what peers send while we are away.
    this.#consuming = false;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#consuming = false;
    clearTimeout(this.#timer);
    for (const w of this.#whenUp.splice(0)) w.reject(new BusError('CLOSED', 'the transport was closed'));
    this.#held.clear();
    const client = this.#client;
    if (client === undefined) return;
    // A DISCONNECT when the connection is up and no send waits; else the socket is dropped: MQTT.js's end() would
    // wait for every PUBACK, for ever if the broker never sends one.
    await client.endAsync(!this.#connected || this.#sending > 0);
  }

  /**
   * A private topic of our own on a throw-away client (clean session): nobody else subscribes to it. Not for a broker
   * that makes the client id the login (`use_username_as_clientid`, as `ebadge provision --mosquitto` sets it): there
   * the throw-away client is the entity itself, and its clean session wipes the entity's (hub.js bench refuses MQTT).
   */
  async loopback(onMessage: (body: Buffer) => void): Promise<Loopback> {
    const topic = `loopback-${randomUUID()}/${this.options.name}`;
    const client = framedClient(
      this.options.url ?? 'mqtt://127.0.0.1:1883',
      { ...this.#clientOptions(`${this.options.name}-loopback-${randomUUID().slice(0, 8)}`, true), reconnectPeriod: 0 },
      new Map(),
    );
    client.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => {
        noDelay(client);
        resolve();
      });
      client.once('close', () => reject(new BusError('CLOSED', `the loopback could not connect to ${this.#endpoint}`)));
    });
    client.on('message', (_t, payload) => onMessage(payload));
    await client.subscribeAsync(topic, { qos: 1 });
    return {
      send: async (body) => {
        await client.publishAsync(topic, bodyBytes(body), { qos: 1 });
      },
      close: () => client.endAsync(),
    };
  }

  protected listenerFailed(err: unknown, event: string): void {
    process.emitWarning(`a listener of the MQTT transport's ${event} event threw: ${String(err)}`);
  }

  #clientOptions(clientId: string, clean: boolean): IClientOptions {
    const o = this.options;
    return {
      clientId,
      clean,
      protocolVersion: this.#version,
      keepalive: o.keepaliveSeconds ?? 30,
      connectTimeout: o.connectTimeoutMs ?? 10_000,
      reconnectPeriod: 0,
      resubscribe: false,
      queueQoSZero: false,
      ...(o.username === undefined ? {} : { username: o.username }),
      ...(o.password === undefined ? {} : { password: o.password }),
      ...(o.tls ?? {}),
      ...(this.#version === 5
        ? {
            properties: {
              sessionExpiryInterval: clean ? 0 : (o.sessionExpirySeconds ?? 7 * 86_400),
              receiveMaximum: o.prefetch ?? 100,
              // The broker drops a larger message for us instead of sending it (MQTT 5 §3.1.2.11.4): 30 MB from any
              // client that may publish to our topics ran the hub out of memory, again at every restart.
              maximumPacketSize: Math.min(this.#maxBody + PACKET_SLACK, 268_435_455),
            },
          }
        : {}),
    };
  }

  /** Connects (the first time) and resolves once a CONNACK accepted us; attempts go on with backoff until then. */
  #up(): Promise<void> {
    if (this.#connected) return Promise.resolve();
    const waiting = new Promise<void>((resolve, reject) => this.#whenUp.push({ resolve, reject }));
    if (this.#client === undefined) this.#create();
    return waiting;
  }

  #create(): void {
    const persistent = this.options.consume !== false;
    const clientId = persistent ? this.options.name : `${this.options.name}-send-${randomUUID().slice(0, 8)}`;
    const client = framedClient(
      this.options.url ?? 'mqtt://127.0.0.1:1883',
      this.#clientOptions(clientId, !persistent),
      this.#ackCodes,
    );
    this.#client = client;
    const raw = client as unknown as { _sendPacket: SendPacket };
    const write = raw._sendPacket.bind(client);
    this.#write = write;
    raw._sendPacket = (packet, cb, ...rest) => {
      // The PUBACK of a delivery not settled yet: kept back, sent by settle().
      if (packet.cmd === 'puback' && packet.messageId !== undefined && this.#held.has(packet.messageId)) {
        cb?.();
        return;
      }
      write(packet, cb, ...rest);
    };
    client.handleMessage = (packet, callback) => {
      if (packet.cmd === 'publish') this.#deliver(packet);
      callback();
    };
    client.on('packetreceive', (p) => {
      // A new connection begins at its CONNACK, not at MQTT.js's 'connect': with sends left in its store (after a
      // reconnect) that event waits until they are all written again, while the broker's deliveries on the new
      // connection are handed over already (RabbitMQ's plugin sends them right after the CONNACK). Stamped with the
      // old connection's generation, their acknowledgements were dropped as late, and after the plugin's prefetch
      // (10) of them nothing more came: mqtt-rabbitmq-faults.test, a node killed mid-stream, 40 of 600 handled.
      if (p.cmd === 'connack') this.#onConnack(p);
      if (p.cmd === 'puback' && p.reasonCode === 0x10 && p.messageId !== undefined) this.#unmatched.add(p.messageId);
    });
    client.on('connect', (connack) => this.#onConnect(connack));
    client.on('close', () => this.#onClose());
    client.on('error', (err) => this.#onError(err));
  }

  #onConnack(connack: IConnackPacket): void {
    if ((connack.reasonCode ?? connack.returnCode ?? 0) !== 0) return;
    this.#generation++;
    this.#connected = true;
  }

  #onConnect(connack: IConnackPacket): void {
    noDelay(this.#client);
    this.#attempt = 0;
    this.#lastError = undefined;
    if (!this.#everUp) {
      this.#everUp = true;
      this.emitSafe('up', this.#endpoint);
    } else {
      this.emitSafe('recovered', { endpoint: this.#endpoint, downtimeMs: Date.now() - this.#downSince });
      // A broker that kept no session (restarted without persistence, session expired) lost our subscription.
      if (this.#onMessage !== undefined && !connack.sessionPresent)
        this.#subscribe().catch((err: unknown) =>
          this.emitSafe('restore-failed', err as Error, inboxFilter(this.entity)),
        );
    }
    for (const w of this.#whenUp.splice(0)) w.resolve();
  }

  #onError(err: Error): void {
    this.#lastError = err;
    this.#attemptFailed = true;
    const code = (err as { code?: unknown }).code;
    if (this.#connected) return;
    if (typeof code === 'number' && UNSUPPORTED_VERSION.has(code) && this.#version === 5) {
      if ((this.options.protocolVersion ?? 'auto') === 'auto') {
        // The broker does not speak MQTT 5 (RabbitMQ 3.10's plugin): 3.1.1 at once, the properties left out.
        this.#version = 4;
        this.#fallback = true;
        return;
      }
    }
    const authentication = typeof code === 'number' && AUTH_REFUSED.has(code);
    this.emitSafe('failed', err, { attempt: this.#attempt + 1, endpoint: this.#endpoint, authentication });
    // Refused credentials before we were ever up: a wrong password, not a broker that is away. What waits for the
    // first connection (start(), a send) is told; the attempts go on.
    if (authentication && !this.#everUp) {
      const refused = new BusError('ACCESS_REFUSED', `the broker refused our credentials: ${err.message}`, {
        cause: err,
      });
      for (const w of this.#whenUp.splice(0)) w.reject(refused);
    }
  }

  #onClose(): void {
    const wasUp = this.#connected;
    this.#connected = false;
    // The broker delivers again, marked DUP, whatever we held on this connection.
    this.#held.clear();
    if (this.#closed) return;
    if (wasUp) {
      this.#downSince = Date.now();
      this.emitSafe('down', this.#lastError);
    }
    if (this.#timer !== undefined) return;
    // Closed by the broker in answer to an MQTT 5 CONNECT, with no CONNACK and no error: RabbitMQ 3.10's plugin
    // does that (it speaks 3.1.1 only), so 3.1.1 at once, as for a CONNACK that refuses the version. Only before
    // the first CONNACK: a broker that once took MQTT 5 speaks it, and a connection cut (a FIN) during a later
    // CONNECT looks the same (mqtt-faults.test.ts, fault 1, fell back to 3.1.1 in 4 runs of 6 without this).
    if (
      !this.#everUp &&
      !wasUp &&
      !this.#attemptFailed &&
      this.#version === 5 &&
      (this.options.protocolVersion ?? 'auto') === 'auto'
    ) {
      this.#version = 4;
      this.#fallback = true;
    }
    this.#attemptFailed = false;
    let delayMs = 0;
    if (this.#fallback) {
      this.#fallback = false;
      const client = this.#client as MqttClient;
      client.options.protocolVersion = 4;
      delete client.options.properties;
    } else {
      this.#attempt++;
      delayMs = backoffDelay(this.#attempt, this.options);
      this.emitSafe('reconnecting', { attempt: this.#attempt, delayMs, endpoint: this.#endpoint });
    }
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const client = this.#client;
      if (this.#closed || client === undefined) return;
      // The same stores: QoS 1 sends without their PUBACK are sent again on the new connection.
      client.reconnect({ incomingStore: client.incomingStore, outgoingStore: client.outgoingStore });
    }, delayMs);
  }

  async #subscribe(): Promise<void> {
    const client = this.#client as MqttClient;
    const filter = inboxFilter(this.entity);
    // Retain handling 2: the broker sends none of the messages it keeps retained on our topics (a command left
    // retained ran again at every start); those that still come (MQTT 3.1.1) are refused in #deliver.
    const granted = await client.subscribeAsync(filter, { qos: 1, ...(this.#version === 5 ? { rh: 2 } : {}) });
    const refused = granted.find((g) => g.qos !== 1 && g.qos !== 0);
    if (refused !== undefined || granted.length === 0)
      throw new BusError(
        'TOPOLOGY',
        `subscribing to ${filter}: the broker refused it (code ${refused?.qos ?? 'none'}); an ACL must let ${this.entity} read it`,
      );
    if (granted.every((g) => g.qos === 0))
      throw new BusError(
        'TOPOLOGY',
        `subscribing to ${filter}: the broker granted QoS 0 only, which can lose messages`,
      );
  }

  #deliver(packet: IPublishPacket): void {
    const id = packet.messageId;
    const h: Held = { packet, generation: this.#generation, settled: false };
    if (id !== undefined && packet.qos !== 0) this.#held.set(id, h);
    // Not consuming (stopped, or started without consuming): never acked, so the broker gives it again next time.
    if (!this.#consuming || this.#onMessage === undefined) return;
    const size = packet.payload.length;
    if (size > this.#maxBody) {
      // An MQTT 3.1.1 broker knows no packet limit of ours: the body came, but goes no further than its size and a
      // prefix in the dead letter (the whole of it, base64 in JSON, ran the hub out of memory).
      const reason = `a body of ${size} bytes exceeds the limit of ${this.#maxBody} (refused unread)`;
      const prefix = Buffer.from(
        typeof packet.payload === 'string' ? packet.payload.slice(0, 1024) : packet.payload.subarray(0, 1024),
      );
      packet.payload = Buffer.alloc(0);
      this.#refuse(h, reason, 'TOO_LARGE', prefix, { oversized: size });
    } else if (packet.retain) {
      const reason = 'kept retained by the broker: an old message, not one sent to us now';
      this.#refuse(h, reason, 'RETAINED', undefined, { refused: { reason, code: 'RETAINED' } });
    } else if (id === undefined || packet.qos === 0) {
      const reason = 'sent at QoS 0, which may lose messages without a word: the bus takes QoS 1 or 2';
      this.#refuse(h, reason, 'QOS_0', undefined, { refused: { reason, code: 'QOS_0' } });
    } else this.#handOver(h, packet.dup);
  }

  /**
   * A delivery the transport refuses itself: dead-lettered, then acked (a QoS 0 one has nothing to ack), and the
   * Connector only told (`oversized` or `refused`), as the AMQP transport tells of a body it refused unread.
   */
  #refuse(
    h: Held,
    reason: string,
    code: string,
    prefix: Buffer | undefined,
    told: Pick<Incoming<MqttMessage>, 'oversized' | 'refused'>,
  ): void {
    const incoming = this.#incoming(h, h.packet.dup);
    const none = async (): Promise<undefined> => undefined;
    const onMessage = this.#onMessage as (m: Incoming<MqttMessage>) => Promise<void>;
    onMessage({
      ...incoming,
      ...told,
      // A retained or QoS 0 body came whole and is handed over as it is (its size is logged); an oversized one not.
      ...(told.oversized === undefined ? {} : { body: Buffer.alloc(0) }),
      ack: () => undefined,
      retry: () => undefined,
      deadLetter: none,
    }).catch((err: unknown) => this.emitSafe('internal-error', err, 'consumer'));
    this.#publishDead(h, reason, code, incoming.from, prefix).then(
      () => this.#ack(h),
      (err: unknown) => this.emitSafe('internal-error', err, 'dead letter'),
    );
  }

  #handOver(h: Held, redelivered: boolean): void {
    const onMessage = this.#onMessage as (m: Incoming<MqttMessage>) => Promise<void>;
    onMessage(this.#incoming(h, redelivered)).catch((err: unknown) => this.emitSafe('internal-error', err, 'consumer'));
  }

  #current(h: Held): boolean {
    return !h.settled && h.generation === this.#generation && this.#held.get(h.packet.messageId as number) === h;
  }

  #ack(h: Held): void {
    if (!this.#current(h)) return;
    h.settled = true;
    const id = h.packet.messageId as number;
    this.#held.delete(id);
    if (this.#connected)
      (this.#write as SendPacket)({ cmd: 'puback', messageId: id, ...(this.#version === 5 ? { reasonCode: 0 } : {}) });
  }

  #incoming(h: Held, redelivered: boolean): Incoming<MqttMessage> {
    const packet = h.packet;
    const parsed = parseTopic(packet.topic);
    const body = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    const props = packet.properties ?? {};
    const up = props.userProperties ?? {};
    const one = (k: string): string | undefined => {
      const v = up[k];
      return Array.isArray(v) ? v[0] : v;
    };
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(up)) if (!RESERVED.has(k)) headers[k] = v;
    const from =
      parsed !== undefined && parsed.to === this.entity && this.#peers.has(parsed.from) ? parsed.from : undefined;
    return {
      from,
      body,
      routingKey: parsed?.routingKey ?? packet.topic,
      messageId: echoable(one(P_MESSAGE_ID)),
      correlationId: echoable(props.correlationData?.toString('utf8')),
      contentType: props.contentType ?? (body[0] === 0x01 ? CONTENT_TYPE_SEALED : CONTENT_TYPE_JSON),
      type: one(P_TYPE) ?? parsed?.type,
      appId: one(P_APP_ID),
      headers,
      redelivered,
      deliveryCount: 0,
      raw: packet,
      ack: () => this.#ack(h),
      retry: () => {
        // No NACK in MQTT: handed over again here, its PUBACK still held; a lost connection brings it back anyway.
        if (this.#current(h) && this.#consuming) setImmediate(() => this.#current(h) && this.#handOver(h, true));
      },
      deadLetter: async (reason, code) => {
        // From a connection that is gone: its PUBACK can no longer be sent, and the session delivers it again.
        if (!this.#current(h)) return false;
        await this.#publishDead(h, reason, code, from);
        this.#ack(h);
        return undefined;
      },
    };
  }

  /**
   * The dead letter: a JSON record on dead-letter/<me>, QoS 1, resolved on its PUBACK. One the broker refuses in its
   * PUBACK (over its message_size_limit: the body goes as base64, 1.33 times its size; not authorized) is sent again
   * without the body and the properties, with their size; if that is refused too, the loss is told (`degraded`) and
   * it resolves all the same, so that the delivery is settled and nothing behind it waits. Any other failure rejects.
   */
  async #publishDead(
    h: Held,
    reason: string,
    code: string | undefined,
    from: string | undefined,
    /** For a body refused for its size: its first bytes, in place of the body. */
    prefix?: Buffer,
  ): Promise<void> {
    const p = h.packet;
    const payload = typeof p.payload === 'string' ? Buffer.from(p.payload) : p.payload;
    const head = {
      dead_at: new Date().toISOString(),
      reason: reason.slice(0, 1000),
      code: code ?? null,
      from: from ?? null,
      topic: p.topic,
    };
    let refused: PubackError;
    try {
      await this.#sendDead(
        {
          ...head,
          properties: p.properties ?? null,
          ...(prefix === undefined
            ? { body_base64: payload.toString('base64') }
            : { body_prefix_base64: prefix.toString('base64') }),
        },
        code,
      );
      return;
    } catch (err) {
      if (!(err instanceof PubackError)) throw err;
      refused = err;
    }
    const omitted = `the broker refused the dead letter with the body and the properties: ${refused.message}`;
    try {
      await this.#sendDead({ ...head, body_bytes: payload.length, body_omitted: omitted }, code);
    } catch (err) {
      if (!(err instanceof PubackError)) throw err;
      this.emitSafe(
        'degraded',
        `a dead letter was lost (${code ?? 'no code'}: ${head.reason.slice(0, 200)}; from ${from ?? 'an unknown sender'} ` +
          `on ${p.topic.slice(0, 200)}, ${payload.length} bytes): ${err.message}, even without its body; the message ` +
          'is acknowledged all the same',
        `let ${this.entity} publish to ${deadLetterTopic(this.entity)} (the broker's ACL) and raise its message_size_limit`,
      );
    }
  }

  async #sendDead(record: Record<string, unknown> & { reason: string }, code: string | undefined): Promise<void> {
    const options: PublishOptions = { qos: 1 };
    if (this.#version === 5)
      options.properties = {
        contentType: CONTENT_TYPE_JSON,
        userProperties: {
          'x-ebadge-error': oneLine(record.reason),
          ...(code === undefined ? {} : { 'x-ebadge-error-code': code }),
        },
      };
    await this.#acquire();
    try {
      await this.#publish(this.#client as MqttClient, deadLetterTopic(this.entity), JSON.stringify(record), options);
    } finally {
      this.#release();
    }
  }

  async #acquire(): Promise<void> {
    const max = this.options.inFlight ?? 100;
    while (this.#sending >= max) await new Promise<void>((resolve) => this.#room.push(resolve));
    this.#sending++;
  }

  #release(): void {
    this.#sending--;
    this.#room.shift()?.();
  }
}

/** The Connector's default body limit (1 MiB and a sealed envelope's overhead) until start() says otherwise. */
const DEFAULT_MAX_BODY = (1 << 20) + 140;
/** What an MQTT packet carries besides the body: the topic, the properties (user properties included). */
const PACKET_SLACK = 65_536;

/**
 * TCP_NODELAY on the client's socket, as our AMQP client does (MQTT.js never sets it), so that a small packet never
 * waits for the ACK of the one before. The broker's side matters as much: a request and its answer took 44 ms through
 * a Mosquitto without `set_tcp_nodelay true` with this set or not, under 1 ms with it (bench/RESULTS.md, "MQTT
 * against AMQP").
 */
function noDelay(client: MqttClient | undefined): void {
  (client?.stream as { setNoDelay?: (on: boolean) => void } | undefined)?.setNoDelay?.(true);
}
