/**
 * The reference peripheral over MQTT (mqtt.js, MQTT 3.1.1): connects, subscribes to its down
 * topic, sends a challenge-request, answers the challenge with a hello and checks the welcome
 * (protocol-v1 "Peripheral checks on a welcome") through {@link ReferencePeripheral}. Every
 * step has a deadline (the connection: mqtt-link.ts).
 */
import type { MqttClient } from 'mqtt';
import { bytesEqual, helloHash, parseReject, type GatewayCredential, type ReasonCode, type Welcome } from '../../protocol/index.js';
import { MqttLink } from './mqtt-link.js';
import type { ReferencePeripheral } from './peripheral.js';

export { MqttPeripheralError, type MqttPeripheralErrorCode } from './mqtt-link.js';

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
  readonly #link: MqttLink;

  constructor(options: MqttReferencePeripheralOptions) {
    this.#o = options;
    const dev = options.peripheral.dev;
    this.#link = new MqttLink({
      url: options.url,
      upTopic: `gatehouse/v1/${dev}/up`,
      downTopic: `gatehouse/v1/${dev}/down`,
      timeoutMs: options.timeoutMs ?? 10_000,
      maxBuffered: MAX_BUFFERED,
      ...(options.ca === undefined ? {} : { ca: options.ca }),
      ...(options.keepaliveSec === undefined ? {} : { keepaliveSec: options.keepaliveSec }),
      ...(options.clientId === undefined ? {} : { clientId: options.clientId }),
      ...(options.will === undefined ? {} : { will: options.will }),
    });
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
    return this.#link.client;
  }

  /** Connects (MQTT 3.1.1, clean session, no automatic reconnect) and subscribes to the down topic. */
  connect(): Promise<void> {
    return this.#link.connect();
  }

  /** One exchange: challenge-request, challenge, hello, then a welcome (checked) or a reject. */
  async authenticate(): Promise<MqttAuthResult> {
    const p = this.#o.peripheral;
    this.#link.clearInbox();
    await this.#link.publish(p.challengeRequest(), 'publish challenge-request');
    let helloSent = false;
    for (;;) {
      const bytes = await this.#link.next();
      const event = p.receive(bytes);
      switch (event.kind) {
        case 'challenge':
          // One hello per exchange: later challenges (another connection's) are ignored.
          if (helloSent) continue;
          helloSent = true;
          await this.#link.publish(await p.hello(bytes), 'publish hello');
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
  close(): Promise<void> {
    return this.#link.close();
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
}
