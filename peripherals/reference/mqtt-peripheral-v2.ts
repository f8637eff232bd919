/**
 * The reference peripheral for protocol v2 over MQTT (mqtt.js, MQTT 3.1.1, clean session, an
 * empty client id): `gatehouse/v2/{dev}/up|down`, the exchange through
 * {@link ReferencePeripheralV2}, then frames both ways through its {@link PeripheralSessionV2}.
 * It answers only the challenge that follows its own request, and ignores a reject without `hh`
 * once its hello is out. Every step has a deadline.
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { bytesEqual, helloHash, parseRejectV2, type ReasonCode } from '../../protocol/index.js';
import { MqttPeripheralError } from './mqtt-peripheral.js';
import type { PeripheralSessionV2, ReferencePeripheralV2, SessionEvent } from './session-v2.js';

export interface MqttReferencePeripheralV2Options {
  url: string;
  peripheral: ReferencePeripheralV2;
  ca?: string | Buffer;
  /** Deadline of each step. Default 10000 ms. */
  timeoutMs?: number;
  keepaliveSec?: number;
  /** Default empty: the client id carries no identity. */
  clientId?: string;
}

export type MqttAuthResultV2 =
  | { kind: 'established'; session: PeripheralSessionV2; welcomeBytes: Uint8Array }
  | { kind: 'rejected'; reason: ReasonCode; retryAfterSeconds: number; signed: boolean }
  | { kind: 'welcome-refused'; check: number; code: string; detail: string };

const MAX_BUFFERED = 64;

export class MqttReferencePeripheralV2 {
  readonly #o: MqttReferencePeripheralV2Options;
  readonly #timeoutMs: number;
  #client: MqttClient | undefined;
  readonly #inbox: Uint8Array[] = [];
  #waiter: ((bytes: Uint8Array | undefined) => void) | undefined;
  #session: PeripheralSessionV2 | undefined;
  #closed = false;

  constructor(options: MqttReferencePeripheralV2Options) {
    this.#o = options;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
  }

  get dev(): string {
    return this.#o.peripheral.dev;
  }

  get upTopic(): string {
    return `gatehouse/v2/${this.dev}/up`;
  }

  get downTopic(): string {
    return `gatehouse/v2/${this.dev}/down`;
  }

  get client(): MqttClient {
    if (this.#client === undefined) throw new MqttPeripheralError('GH_MQTT_PERIPHERAL_NOT_CONNECTED', 'not connected');
    return this.#client;
  }

  /** True once the connection has closed (the gateway closes it after its own bye). */
  get closed(): boolean {
    return this.#closed;
  }

  async connect(): Promise<void> {
    const opts: IClientOptions = {
      protocolVersion: 4,
      clean: true,
      clientId: this.#o.clientId ?? '',
      keepalive: this.#o.keepaliveSec ?? 30,
      reconnectPeriod: 0,
      connectTimeout: this.#timeoutMs,
      ...(this.#o.ca === undefined ? {} : { ca: this.#o.ca }),
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
    client.on('error', () => undefined);
    client.on('close', () => {
      this.#closed = true;
      const waiter = this.#waiter;
      this.#waiter = undefined;
      waiter?.(undefined);
    });
    try {
      await this.#deadline(
        new Promise<void>((resolve, reject) => {
          client.once('connect', () => resolve());
          client.once('error', (err) => reject(new MqttPeripheralError('GH_MQTT_PERIPHERAL_CONNECT', `connect refused: ${err.message}`, { cause: err })));
          client.once('close', () => reject(new MqttPeripheralError('GH_MQTT_PERIPHERAL_CONNECT', 'connection closed before CONNACK')));
        }),
        'connect',
      );
      const granted = await this.#deadline(client.subscribeAsync(this.downTopic, { qos: 1 }), 'subscribe');
      if (granted.length !== 1 || granted[0]?.qos === 128) throw new MqttPeripheralError('GH_MQTT_PERIPHERAL_SUBSCRIBE', `subscription to ${this.downTopic} refused`);
    } catch (err) {
      client.end(true);
      this.#client = undefined;
      throw err;
    }
  }

  /** One v2 exchange: challenge-request, challenge, hello, then a checked welcome or a reject. */
  async authenticate(): Promise<MqttAuthResultV2> {
    const p = this.#o.peripheral;
    this.#inbox.length = 0;
    await this.#publish(p.challengeRequest());
    let hello: Uint8Array | undefined;
    for (;;) {
      const bytes = await this.#next();
      const event = p.receive(bytes);
      switch (event.kind) {
        case 'challenge':
          // Only the challenge that follows our own request: one hello per exchange.
          if (hello !== undefined) continue;
          hello = await p.hello(bytes);
          await this.#publish(hello);
          continue;
        case 'established':
          this.#session = event.session;
          return { kind: 'established', session: event.session, welcomeBytes: bytes };
        case 'rejected':
          if (!this.#mine(bytes, hello)) continue;
          return { kind: 'rejected', reason: event.reason, retryAfterSeconds: event.retryAfterSeconds, signed: event.signed };
        case 'welcome-refused':
          return { kind: 'welcome-refused', check: event.check, code: event.code, detail: event.detail };
        case 'ignored':
          continue;
      }
    }
  }

  /** Publishes a frame (or any bytes) on the up topic. */
  async send(bytes: Uint8Array): Promise<void> {
    await this.#publish(bytes);
  }

  /** Seals and sends a pub frame. */
  async pub(topic: string, body: Uint8Array): Promise<void> {
    await this.send(this.#live().sealPub(topic, body));
  }

  /** The next G→P frame, opened by the session (bounded). */
  async nextEvent(): Promise<SessionEvent> {
    const s = this.#live();
    for (;;) {
      const bytes = await this.#next();
      if (bytes[0] !== 0xd0) continue;
      return s.open(bytes);
    }
  }

  /** Waits for the next receipt (bounded), skipping other frames. */
  async nextReceipt(): Promise<Extract<SessionEvent, { kind: 'receipt' }>> {
    for (;;) {
      const e = await this.nextEvent();
      if (e.kind === 'receipt') return e;
    }
  }

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

  #live(): PeripheralSessionV2 {
    const s = this.#session;
    if (s === undefined || s.ended) throw new MqttPeripheralError('GH_MQTT_PERIPHERAL_NOT_CONNECTED', 'no live v2 session');
    return s;
  }

  #mine(rejectBytes: Uint8Array, hello: Uint8Array | undefined): boolean {
    try {
      const hh = parseRejectV2(rejectBytes).message.hh;
      if (hh === undefined) return hello === undefined;
      return hello !== undefined && bytesEqual(hh, helloHash(hello));
    } catch {
      // A v1 reject (unsupported-version on a gateway without v2) has no v2 shape.
      return hello === undefined;
    }
  }

  async #publish(bytes: Uint8Array): Promise<void> {
    await this.#deadline(this.client.publishAsync(this.upTopic, Buffer.from(bytes), { qos: 1 }), 'publish');
  }

  #next(): Promise<Uint8Array> {
    const queued = this.#inbox.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return this.#deadline(
      new Promise<Uint8Array>((resolve, reject) => {
        this.#waiter = (bytes) => {
          if (bytes === undefined) reject(new MqttPeripheralError('GH_MQTT_PERIPHERAL_CLOSED', 'connection closed while waiting for the gateway'));
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
