/**
 * The reference peripheral for protocol v2 over MQTT (mqtt.js, MQTT 3.1.1, clean session, an
 * empty client id): `gatehouse/v2/{dev}/up|down`, the exchange through
 * {@link ReferencePeripheralV2}, then frames both ways through its {@link PeripheralSessionV2}.
 * It answers only the challenge that follows its own request, and ignores a reject without `hh`
 * once its hello is out. Every step has a deadline.
 */
import type { MqttClient } from 'mqtt';
import { bytesEqual, helloHash, parseRejectV2, type ReasonCode } from '../../protocol/index.js';
import { MqttLink, MqttPeripheralError } from './mqtt-link.js';
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
  readonly #link: MqttLink;
  #session: PeripheralSessionV2 | undefined;

  constructor(options: MqttReferencePeripheralV2Options) {
    this.#o = options;
    const dev = options.peripheral.dev;
    this.#link = new MqttLink({
      url: options.url,
      upTopic: `gatehouse/v2/${dev}/up`,
      downTopic: `gatehouse/v2/${dev}/down`,
      timeoutMs: options.timeoutMs ?? 10_000,
      maxBuffered: MAX_BUFFERED,
      ...(options.ca === undefined ? {} : { ca: options.ca }),
      ...(options.keepaliveSec === undefined ? {} : { keepaliveSec: options.keepaliveSec }),
      ...(options.clientId === undefined ? {} : { clientId: options.clientId }),
    });
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
    return this.#link.client;
  }

  /** True once the connection has closed (the gateway closes it after its own bye). */
  get closed(): boolean {
    return this.#link.closed;
  }

  connect(): Promise<void> {
    return this.#link.connect();
  }

  /** One v2 exchange: challenge-request, challenge, hello, then a checked welcome or a reject. */
  async authenticate(): Promise<MqttAuthResultV2> {
    const p = this.#o.peripheral;
    this.#link.clearInbox();
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
  nextReceipt(): Promise<Extract<SessionEvent, { kind: 'receipt' }>> {
    return this.nextOf('receipt');
  }

  /** Waits for the next broker message relayed as a `msg` frame (bounded), skipping other frames. */
  nextMsg(): Promise<Extract<SessionEvent, { kind: 'msg' }>> {
    return this.nextOf('msg');
  }

  /** Waits for the next event of `kind` (each frame bounded), skipping other frames. */
  async nextOf<K extends SessionEvent['kind']>(kind: K): Promise<Extract<SessionEvent, { kind: K }>> {
    for (;;) {
      const e = await this.nextEvent();
      if (e.kind === kind) return e as Extract<SessionEvent, { kind: K }>;
    }
  }

  close(): Promise<void> {
    return this.#link.close();
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
    await this.#link.publish(bytes);
  }

  #next(): Promise<Uint8Array> {
    return this.#link.next();
  }
}
