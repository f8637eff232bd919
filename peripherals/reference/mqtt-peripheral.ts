/**
 * The reference peripheral over MQTT (mqtt.js, MQTT 3.1.1): connects, subscribes to its down
 * topic, sends a challenge-request, answers the challenge with a hello and checks the welcome
 * (protocol-v1 "Peripheral checks on a welcome") through {@link ReferencePeripheral}. Every
 * step has a deadline.
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { bytesEqual, helloHash, parseReject, type GatewayCredential, type ReasonCode, type Welcome } from '../../protocol/index.js';
import { CodedError } from '../../common/errors.js';
import type { ReferencePeripheral } from './peripheral.js';

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

export interface MqttReferencePeripheralOptions {
  /** `mqtt://host:port` or `mqtts://host:port`. */
  url: string;
  peripheral: ReferencePeripheral;
  /** For mqtts: the CA that signed the gateway's listener certificate. */
  ca?: string | Buffer;
  /** Deadline of each step (connect, subscribe, each reply). Default 10000 ms. */
  timeoutMs?: number;
  /** MQTT keepalive in seconds. Default 30. */
  keepaliveSec?: number;
  /** Client id; default empty (the client id carries no identity; a fresh or empty one per connection). */
  clientId?: string;
  /** A will (QoS 1, not retained), e.g. on a status topic the lease policy grants. */
  will?: { topic: string; payload: string | Buffer };
}

/** How one authentication ended. */
export type MqttAuthResult =
  | { kind: 'authenticated'; welcome: Welcome; credential: GatewayCredential; welcomeBytes: Uint8Array }
  | { kind: 'rejected'; reason: ReasonCode; retryAfterSeconds: number; signed: boolean }
  | { kind: 'welcome-refused'; code: string; detail: string };

/** Messages kept while nobody waits; older ones are dropped beyond it. */
const MAX_BUFFERED = 16;

export class MqttReferencePeripheral {
  readonly #o: MqttReferencePeripheralOptions;
  readonly #timeoutMs: number;
  #client: MqttClient | undefined;
  readonly #inbox: Uint8Array[] = [];
  #waiter: ((bytes: Uint8Array | undefined) => void) | undefined;
  #lastError: Error | undefined;

  constructor(options: MqttReferencePeripheralOptions) {
    this.#o = options;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
  }

  get dev(): string {
    return this.#o.peripheral.dev;
  }

  get upTopic(): string {
    return `gatehouse/v1/${this.dev}/up`;
  }

  get downTopic(): string {
    return `gatehouse/v1/${this.dev}/down`;
  }

  /** The connected mqtt.js client (after {@link connect}), for application traffic after a welcome. */
  get client(): MqttClient {
    if (this.#client === undefined) throw new MqttPeripheralError('GH_MQTT_PERIPHERAL_NOT_CONNECTED', 'not connected');
    return this.#client;
  }

  /** Connects (MQTT 3.1.1, clean session, no automatic reconnect) and subscribes to the down topic. */
  async connect(): Promise<void> {
    const opts: IClientOptions = {
      protocolVersion: 4,
      clean: true,
      clientId: this.#o.clientId ?? '',
      keepalive: this.#o.keepaliveSec ?? 30,
      reconnectPeriod: 0,
      connectTimeout: this.#timeoutMs,
      ...(this.#o.ca === undefined ? {} : { ca: this.#o.ca }),
      ...(this.#o.will === undefined ? {} : { will: { topic: this.#o.will.topic, payload: Buffer.from(this.#o.will.payload), qos: 1, retain: false } }),
    };
    const client = mqtt.connect(this.#o.url, opts);
    this.#client = client;
    client.on('message', (topic, payload) => {
      if (topic !== this.downTopic) return;
      const bytes = new Uint8Array(payload);
      const waiter = this.#waiter;
      if (waiter !== undefined) {
        this.#waiter = undefined;
        waiter(bytes);
        return;
      }
      this.#inbox.push(bytes);
      if (this.#inbox.length > MAX_BUFFERED) this.#inbox.shift();
    });
    // mqtt.js throws an 'error' event nobody listens to; errors after CONNACK surface as 'close'.
    client.on('error', (err) => {
      this.#lastError = err;
    });
    client.on('close', () => {
      const waiter = this.#waiter;
      this.#waiter = undefined;
      waiter?.(undefined);
    });
    try {
      await this.#connected(client);
    } catch (err) {
      client.end(true);
      this.#client = undefined;
      throw err;
    }
  }

  async #connected(client: MqttClient): Promise<void> {
    await this.#deadline(
      new Promise<void>((resolve, reject) => {
        client.once('connect', () => resolve());
        client.once('error', (err) => reject(new MqttPeripheralError('GH_MQTT_PERIPHERAL_CONNECT', `connect refused: ${err.message}`, { cause: err })));
        client.once('close', () => reject(new MqttPeripheralError('GH_MQTT_PERIPHERAL_CONNECT', 'connection closed before CONNACK')));
      }),
      'connect',
    );
    const granted = await this.#deadline(client.subscribeAsync(this.downTopic, { qos: 1 }), 'subscribe');
    if (granted.length !== 1 || granted[0]?.qos === 128) {
      throw new MqttPeripheralError('GH_MQTT_PERIPHERAL_SUBSCRIBE', `subscription to ${this.downTopic} refused`);
    }
  }

  /** One exchange: challenge-request, challenge, hello, then a welcome (checked) or a reject. */
  async authenticate(): Promise<MqttAuthResult> {
    const client = this.client;
    const p = this.#o.peripheral;
    this.#inbox.length = 0;
    await this.#deadline(client.publishAsync(this.upTopic, Buffer.from(p.challengeRequest()), { qos: 1 }), 'publish challenge-request');
    let helloSent = false;
    for (;;) {
      const bytes = await this.#next();
      const event = p.receive(bytes);
      switch (event.kind) {
        case 'challenge':
          // One hello per exchange: later challenges (another connection's) are ignored.
          if (helloSent) continue;
          helloSent = true;
          await this.#deadline(client.publishAsync(this.upTopic, Buffer.from(await p.hello(bytes)), { qos: 1 }), 'publish hello');
          continue;
        case 'authenticated':
          return { kind: 'authenticated', welcome: event.welcome, credential: event.credential, welcomeBytes: bytes };
        case 'rejected':
          // A reject naming another hello (hh) is not the answer to ours; once our hello is
          // out, a reject without hh (which could be anyone's, and is advisory anyway) is ignored.
          if (!this.#mine(bytes, helloSent)) continue;
          return { kind: 'rejected', reason: event.reason, retryAfterSeconds: event.retryAfterSeconds, signed: event.signed };
        case 'welcome-refused':
          if (event.code === 'GH_WELCOME_HELLO_HASH') continue;
          return { kind: 'welcome-refused', code: event.code, detail: event.detail };
        case 'ignored':
          continue;
      }
    }
  }

  /** Disconnects cleanly (bounded). */
  async close(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    if (client === undefined) return;
    try {
      await this.#deadline(client.endAsync(), 'disconnect');
    } catch {
      client.end(true);
    }
  }

  /** False for a reject that carries the hh of a hello other than ours, or no hh once ours is out. */
  #mine(rejectBytes: Uint8Array, helloSent: boolean): boolean {
    const sent = this.#o.peripheral.lastHello;
    try {
      const hh = parseReject(rejectBytes).message.hh;
      if (hh === undefined) return !helloSent;
      return sent !== undefined && helloSent && bytesEqual(hh, helloHash(sent));
    } catch {
      return false;
    }
  }

  #next(): Promise<Uint8Array> {
    const queued = this.#inbox.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return this.#deadline(
      new Promise<Uint8Array>((resolve, reject) => {
        this.#waiter = (bytes) => {
          if (bytes === undefined) {
            const why = this.#lastError === undefined ? '' : `: ${this.#lastError.message}`;
            reject(new MqttPeripheralError('GH_MQTT_PERIPHERAL_CLOSED', `connection closed while waiting for the gateway${why}`));
          }
          else resolve(bytes);
        };
      }),
      'reply on down',
    ).finally(() => {
      this.#waiter = undefined;
    });
  }

  async #deadline<T>(p: Promise<T>, step: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        p,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new MqttPeripheralError('GH_MQTT_PERIPHERAL_TIMEOUT', `${step}: no answer within ${this.#timeoutMs} ms`)), this.#timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }
}
