/**
 * The reference peripheral: the device side of protocol-v1 without any transport. It asks for
 * a challenge, answers one with a freshly signed hello, remembers the hello bytes it sent, and
 * authenticates the gateway from its welcome (protocol-v1 "Peripheral checks on a welcome").
 * Transports (MQTT, BLE) wrap it and move the bytes.
 */
import {
  checkWelcome,
  decodeChallenge,
  decodeDownMessage,
  encodeChallengeRequest,
  isValidId,
  ProtocolError,
  randomNonce,
  signHello,
  type CheckWelcomeResult,
  type GatewayCredential,
  type ReasonCode,
  type Signer,
  type Welcome,
} from '../../protocol/index.js';
import { loadKeyFile } from './keyfile.js';

export interface ReferencePeripheralOptions {
  /** The device id; must equal the signer's kid. */
  dev: string;
  /** The device key (the reference uses {@link NobleEd25519Signer}). */
  signer: Signer;
  /** Pinned backend public keys `pk_S` (raw Ed25519) by kid. */
  backendKeys: ReadonlyMap<string, Uint8Array>;
  /** Unix seconds, if this peripheral has a clock. Clockless is the normal case. */
  clock?: () => number;
  /** Source of the 16-byte pn (injected for reproducible tests). */
  random?: (n: number) => Uint8Array;
  /** Seconds to wait after a reject that carries no retry (spec silent; default 30). */
  defaultRetrySeconds?: number;
}

/** The transport a message arrived on; it decides what the `dev` of a challenge means. */
export type PeripheralTransport = 'mqtt' | 'ble';

/** Per-message options of {@link ReferencePeripheral.hello} and {@link ReferencePeripheral.receive}. */
export interface ExchangeOptions {
  /**
   * `'mqtt'` (default): a challenge or reject must carry this device's `dev`. `'ble'`: there is
   * no challenge-request, so the `dev` of a challenge (and of a reject sent in its place) is the
   * gateway's connection label (e.g. `ble:7`) and is ignored; freshness still comes from `gn`.
   */
  transport?: PeripheralTransport;
}

/** What the peripheral made of a message from the gateway. */
export type PeripheralEvent =
  | { kind: 'challenge'; gw: string }
  | { kind: 'authenticated'; welcome: Welcome; credential: GatewayCredential }
  | { kind: 'welcome-refused'; code: string; detail: string }
  /** A reject is advisory only: it may be forged (protocol-v1). */
  | { kind: 'rejected'; reason: ReasonCode; retryAfterSeconds: number; signed: boolean }
  | { kind: 'ignored'; code: string; detail: string };

export class ReferencePeripheral {
  readonly dev: string;
  readonly #signer: Signer;
  readonly #backendKeys: ReadonlyMap<string, Uint8Array>;
  readonly #clock: (() => number) | undefined;
  readonly #random: (n: number) => Uint8Array;
  readonly #defaultRetry: number;
  #sentHello: Uint8Array | undefined;
  /** The credential of the last welcome accepted: the same bytes need no second signature check. */
  #verifiedCredential: Uint8Array | undefined;

  constructor(opts: ReferencePeripheralOptions) {
    if (!isValidId(opts.dev)) throw new ProtocolError('GH_PERIPHERAL_BAD_DEV', 'internal', 'dev must be 1–64 characters of [A-Za-z0-9._:-]');
    if (opts.signer.kid !== opts.dev) {
      throw new ProtocolError('GH_PERIPHERAL_BAD_DEV', 'internal', 'the signer kid must be the device id (protocol-v1: hello kid=dev)');
    }
    this.dev = opts.dev;
    this.#signer = opts.signer;
    this.#backendKeys = opts.backendKeys;
    this.#clock = opts.clock;
    this.#random = opts.random ?? randomNonce;
    this.#defaultRetry = opts.defaultRetrySeconds ?? 30;
  }

  /** Build a peripheral from a key file written by `gatehouse peripheral keygen`. */
  static async fromKeyFile(path: string, opts: Omit<ReferencePeripheralOptions, 'dev' | 'signer'>): Promise<ReferencePeripheral> {
    const key = await loadKeyFile(path);
    return new ReferencePeripheral({ ...opts, dev: key.dev, signer: key.signer });
  }

  /** The hello most recently sent, exactly as sent (hh hashes these bytes). */
  get lastHello(): Uint8Array | undefined {
    return this.#sentHello;
  }

  /** `{1:"challenge-request", 2:1, 3:dev}` (MQTT only; BLE gateways send the challenge unasked). */
  challengeRequest(): Uint8Array {
    return encodeChallengeRequest({ type: 'challenge-request', version: 1, dev: this.dev });
  }

  /**
   * Answer a challenge with a hello signed by the device key, with a fresh 16-byte pn, and
   * remember it for the welcome check. Throws a ProtocolError for a malformed challenge or, on
   * MQTT, one addressed to another device. The hello always carries this device's own `dev`.
   */
  async hello(challengeBytes: Uint8Array, options: ExchangeOptions = {}): Promise<Uint8Array> {
    const challenge = decodeChallenge(challengeBytes);
    if (!this.#forUs(challenge.dev, options)) {
      throw new ProtocolError('GH_PERIPHERAL_WRONG_DEV', 'malformed', `challenge is for ${JSON.stringify(challenge.dev)}, not ${JSON.stringify(this.dev)}`);
    }
    // protocol-v1: pn is fresh random per hello.
    const pn = this.#random(16);
    const bytes = await signHello({ type: 'hello', version: 1, dev: this.dev, pn, gn: challenge.gn }, this.#signer);
    this.#sentHello = bytes;
    return bytes;
  }

  /** Run the welcome checks against the last hello sent. */
  verifyWelcome(welcomeBytes: Uint8Array): CheckWelcomeResult {
    if (this.#sentHello === undefined) {
      return { ok: false, code: 'GH_WELCOME_HELLO_HASH', detail: 'no hello has been sent, so no welcome can match' };
    }
    const now = this.#clock?.();
    const result = checkWelcome(welcomeBytes, {
      backendKeys: this.#backendKeys,
      dev: this.dev,
      helloBytes: this.#sentHello,
      ...(now === undefined ? {} : { now }),
      ...(this.#verifiedCredential === undefined ? {} : { verifiedCredential: this.#verifiedCredential }),
    });
    if (result.ok) this.#verifiedCredential = result.welcome.cred;
    return result;
  }

  /** Interpret one message from the gateway. Never throws for bad input. */
  receive(bytes: Uint8Array, options: ExchangeOptions = {}): PeripheralEvent {
    let msg;
    try {
      msg = decodeDownMessage(bytes);
    } catch (e) {
      if (e instanceof ProtocolError) return { kind: 'ignored', code: e.code, detail: e.message };
      throw e;
    }
    switch (msg.type) {
      case 'challenge':
        if (!this.#forUs(msg.message.dev, options)) return { kind: 'ignored', code: 'GH_PERIPHERAL_WRONG_DEV', detail: 'challenge for another device' };
        return { kind: 'challenge', gw: msg.message.gw };
      case 'welcome': {
        const r = this.verifyWelcome(bytes);
        if (!r.ok) return { kind: 'welcome-refused', code: r.code, detail: r.detail };
        this.#sentHello = undefined;
        return { kind: 'authenticated', welcome: r.welcome, credential: r.credential };
      }
      case 'reject':
        if (!this.#forUs(msg.message.dev, options)) return { kind: 'ignored', code: 'GH_PERIPHERAL_WRONG_DEV', detail: 'reject for another device' };
        return {
          kind: 'rejected',
          reason: msg.message.reason,
          retryAfterSeconds: msg.message.retry ?? this.#defaultRetry,
          signed: msg.signed !== null,
        };
    }
  }

  /**
   * Whether a challenge or reject with this `dev` is addressed to us. protocol-v1 "MQTT
   * transport": it must name this device. BLE: the link is point-to-point and the gateway sends
   * its connection label there (docs/protocol.md), so any valid id (the decoder checked it) is.
   */
  #forUs(dev: string, options: ExchangeOptions): boolean {
    return options.transport === 'ble' || dev === this.dev;
  }
}
