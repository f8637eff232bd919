/**
 * The MQTT plumbing both reference peripherals share (protocol v1 and v2): one mqtt.js connection
 * (MQTT 3.1.1, clean session, no automatic reconnect, an empty client id by default: the client
 * id carries no identity), the device's down topic subscribed at QoS 1, messages on it buffered
 * (bounded) until read, QoS 1 publishes on the up topic, and a deadline on every step.
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { CodedError } from '../../common/errors.js';

export type MqttPeripheralErrorCode =
  /** The broker could not be reached or refused the connection. */
  | 'GH_MQTT_PERIPHERAL_CONNECT'
  /** An exchange was asked for before connect(). */
  | 'GH_MQTT_PERIPHERAL_NOT_CONNECTED'
  /** The subscription to the answer topic was refused. */
  | 'GH_MQTT_PERIPHERAL_SUBSCRIBE'
  /** No answer within the timeout. */
  | 'GH_MQTT_PERIPHERAL_TIMEOUT'
  /** The connection closed during an exchange. */
  | 'GH_MQTT_PERIPHERAL_CLOSED';

/** Error of the MQTT reference peripheral. */
export class MqttPeripheralError extends CodedError<MqttPeripheralErrorCode> {}

export interface MqttLinkOptions {
  /** `mqtt://host:port` or `mqtts://host:port`. */
  url: string;
  /** The topics of the device: `gatehouse/v{1,2}/{dev}/up|down`. */
  upTopic: string;
  downTopic: string;
  /** For mqtts: the CA that signed the gateway's listener certificate. */
  ca?: string | Buffer;
  /** Deadline of each step (connect, subscribe, publish, each reply). */
  timeoutMs: number;
  /** MQTT keepalive in seconds. Default 30. */
  keepaliveSec?: number;
  /** Client id; default empty. */
  clientId?: string;
  /** A will (QoS 1, not retained). */
  will?: { topic: string; payload: string | Buffer };
  /** Messages kept while nobody reads; the oldest are dropped beyond it. */
  maxBuffered: number;
}

export class MqttLink {
  readonly #o: MqttLinkOptions;
  #client: MqttClient | undefined;
  readonly #inbox: Uint8Array[] = [];
  #waiter: ((bytes: Uint8Array | undefined) => void) | undefined;
  #lastError: Error | undefined;
  #closed = false;

  constructor(options: MqttLinkOptions) {
    this.#o = options;
  }

  /** The connected mqtt.js client (after {@link connect}). */
  get client(): MqttClient {
    if (this.#client === undefined) throw new MqttPeripheralError('GH_MQTT_PERIPHERAL_NOT_CONNECTED', 'not connected');
    return this.#client;
  }

  /** True once the connection has closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Connects and subscribes to the down topic. */
  async connect(): Promise<void> {
    const o = this.#o;
    const opts: IClientOptions = {
      protocolVersion: 4,
      clean: true,
      clientId: o.clientId ?? '',
      keepalive: o.keepaliveSec ?? 30,
      reconnectPeriod: 0,
      connectTimeout: o.timeoutMs,
      ...(o.ca === undefined ? {} : { ca: o.ca }),
      ...(o.will === undefined ? {} : { will: { topic: o.will.topic, payload: Buffer.from(o.will.payload), qos: 1, retain: false } }),
    };
    const client = mqtt.connect(o.url, opts);
    this.#client = client;
    this.#closed = false;
    client.on('message', (topic, payload) => {
      if (topic !== o.downTopic) return;
      const bytes = new Uint8Array(payload);
      const waiter = this.#waiter;
      if (waiter !== undefined) {
        this.#waiter = undefined;
        waiter(bytes);
        return;
      }
      this.#inbox.push(bytes);
      if (this.#inbox.length > o.maxBuffered) this.#inbox.shift();
    });
    // mqtt.js throws an 'error' event nobody listens to; errors after CONNACK surface as 'close'.
    client.on('error', (err) => {
      this.#lastError = err;
    });
    client.on('close', () => {
      this.#closed = true;
      const waiter = this.#waiter;
      this.#waiter = undefined;
      waiter?.(undefined);
    });
    try {
      await this.deadline(
        new Promise<void>((resolve, reject) => {
          client.once('connect', () => resolve());
          client.once('error', (err) => reject(new MqttPeripheralError('GH_MQTT_PERIPHERAL_CONNECT', `connect refused: ${err.message}`, { cause: err })));
          client.once('close', () => reject(new MqttPeripheralError('GH_MQTT_PERIPHERAL_CONNECT', 'connection closed before CONNACK')));
        }),
        'connect',
      );
      const granted = await this.deadline(client.subscribeAsync(o.downTopic, { qos: 1 }), 'subscribe');
      if (granted.length !== 1 || granted[0]?.qos === 128) {
        throw new MqttPeripheralError('GH_MQTT_PERIPHERAL_SUBSCRIBE', `subscription to ${o.downTopic} refused`);
      }
    } catch (err) {
      client.end(true);
      this.#client = undefined;
      throw err;
    }
  }

  /** Drops what arrived and was not read (a new exchange starts from its own answers). */
  clearInbox(): void {
    this.#inbox.length = 0;
  }

  /** Publishes on the up topic, QoS 1. */
  async publish(bytes: Uint8Array, step = 'publish'): Promise<void> {
    await this.deadline(this.client.publishAsync(this.#o.upTopic, Buffer.from(bytes), { qos: 1 }), step);
  }

  /** The next message on the down topic, within the deadline. */
  next(): Promise<Uint8Array> {
    const queued = this.#inbox.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return this.deadline(
      new Promise<Uint8Array>((resolve, reject) => {
        this.#waiter = (bytes) => {
          if (bytes === undefined) {
            const why = this.#lastError === undefined ? '' : `: ${this.#lastError.message}`;
            reject(new MqttPeripheralError('GH_MQTT_PERIPHERAL_CLOSED', `connection closed while waiting for the gateway${why}`));
          } else resolve(bytes);
        };
      }),
      'reply on down',
    ).finally(() => {
      this.#waiter = undefined;
    });
  }

  /** Disconnects cleanly (bounded). */
  async close(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    if (client === undefined) return;
    try {
      await this.deadline(client.endAsync(), 'disconnect');
    } catch {
      client.end(true);
    }
  }

  /** `p`, or GH_MQTT_PERIPHERAL_TIMEOUT after the step's deadline. */
  async deadline<T>(p: Promise<T>, step: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        p,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new MqttPeripheralError('GH_MQTT_PERIPHERAL_TIMEOUT', `${step}: no answer within ${this.#o.timeoutMs} ms`)), this.#o.timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }
}
