/**
 * One simulated MQTT peripheral of the load generator: the reference peripheral library of its
 * protocol version over a raw MQTT client (testkit/mqtt-wire.ts), with node:crypto Ed25519.
 * v1: challenge-request, challenge, hello, welcome checked (peripherals/reference/peripheral.ts).
 * v2: the same exchange on `gatehouse/v2/{dev}/…` through peripherals/reference/session-v2.ts: a
 * fresh ephemeral X25519 key per hello, every welcome check including the grant, the session
 * keys derived. A new exchange on the same connection ends the previous session (the gateway
 * answers `bye replaced` first; the peripheral opens it with that session, as a device would).
 */
import { Ed25519Signer } from '../protocol/index.js';
import { MemoryCommandStore } from '../peripherals/reference/command-store.js';
import { ReferencePeripheral } from '../peripherals/reference/peripheral.js';
import { ReferencePeripheralV2 } from '../peripherals/reference/session-v2.js';
import { RawMqttClient } from '../testkit/mqtt-wire.js';

export interface GenDevice {
  dev: string;
  /** 32-byte Ed25519 seed, base64. */
  seed: string;
}

/** v2 frames start with this byte (the tag of a frame array, protocol-v2 "Frames"). */
const FRAME = 0xd0;

export type AuthOutcome = { ok: true } | { ok: false; why: string; retry?: number };

type Role = { version: 1; ref: ReferencePeripheral } | { version: 2; ref: ReferencePeripheralV2 };

export class Peer {
  readonly dev: string;
  readonly up: string;
  readonly down: string;
  client: RawMqttClient | undefined;
  readonly #role: Role;
  /** Down messages not yet asked for (two can arrive in one TCP read: a bye, then a challenge). */
  readonly #inbox: Buffer[] = [];
  #waiter: ((b: Buffer | undefined) => void) | undefined;

  constructor(d: GenDevice, version: 1 | 2, backendKeys: ReadonlyMap<string, Uint8Array>) {
    this.dev = d.dev;
    const signer = Ed25519Signer.fromSeed(new Uint8Array(Buffer.from(d.seed, 'base64')), d.dev);
    this.#role =
      version === 1
        ? { version, ref: new ReferencePeripheral({ dev: d.dev, signer, backendKeys }) }
        : {
            version,
            ref: new ReferencePeripheralV2({
              dev: d.dev,
              signer,
              devicePublicKey: signer.publicKeyRaw,
              backendKeys,
              commandStore: new MemoryCommandStore(),
              clock: () => Math.floor(Date.now() / 1000),
            }),
          };
    this.up = `gatehouse/v${version}/${d.dev}/up`;
    this.down = `gatehouse/v${version}/${d.dev}/down`;
  }

  challengeRequest(): Uint8Array {
    return this.#role.ref.challengeRequest();
  }

  async connect(host: string, port: number, timeoutMs: number): Promise<void> {
    const c = await RawMqttClient.connect({ host, port, clientId: this.dev, keepaliveSec: 300, timeoutMs });
    c.onMessage = (topic, payload) => {
      if (topic !== this.down) return;
      if (this.#waiter !== undefined) this.#waiter(payload);
      else this.#inbox.push(payload);
    };
    c.onClose = () => this.#waiter?.(undefined);
    const granted = await c.subscribe(this.down, 1, timeoutMs);
    if (granted === 0x80) {
      c.destroy();
      throw new Error('subscribe refused');
    }
    this.#inbox.length = 0;
    this.client = c;
  }

  close(): void {
    this.client?.destroy();
    this.client = undefined;
  }

  /** The next down message, or undefined on timeout or close. */
  next(timeoutMs: number): Promise<Buffer | undefined> {
    const queued = this.#inbox.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.client === undefined || this.client.closed) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiter = undefined;
        resolve(undefined);
      }, Math.max(0, timeoutMs));
      this.#waiter = (b) => {
        clearTimeout(timer);
        this.#waiter = undefined;
        resolve(b);
      };
    });
  }

  /** A plain request/response round trip (the echo broker answers every up message). */
  async echo(payload: Uint8Array, timeoutMs: number): Promise<boolean> {
    const c = this.client;
    if (c === undefined || c.closed) return false;
    c.publish(this.up, payload, 1);
    return (await this.next(timeoutMs)) !== undefined;
  }

  /** One full exchange: challenge-request, challenge, hello, welcome checked by the peripheral. */
  auth(timeoutMs: number): Promise<AuthOutcome> {
    return this.#role.version === 1 ? this.#authV1(this.#role.ref, timeoutMs) : this.#authV2(this.#role.ref, timeoutMs);
  }

  async #authV1(ref: ReferencePeripheral, timeoutMs: number): Promise<AuthOutcome> {
    const c = this.client;
    if (c === undefined || c.closed) return { ok: false, why: 'not connected' };
    c.publish(this.up, ref.challengeRequest(), 1);
    let helloSent = false;
    for (;;) {
      const bytes = await this.next(timeoutMs);
      if (bytes === undefined) return { ok: false, why: c.closed ? 'closed' : 'timeout' };
      const ev = ref.receive(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      if (ev.kind === 'challenge' && !helloSent) {
        helloSent = true;
        c.publish(this.up, await ref.hello(new Uint8Array(bytes)), 1);
        continue;
      }
      if (ev.kind === 'authenticated') return { ok: true };
      if (ev.kind === 'rejected') return { ok: false, why: `rejected:${ev.reason}`, retry: ev.retryAfterSeconds };
      if (ev.kind === 'welcome-refused') return { ok: false, why: `welcome-refused:${ev.code}` };
    }
  }

  async #authV2(ref: ReferencePeripheralV2, timeoutMs: number): Promise<AuthOutcome> {
    const c = this.client;
    if (c === undefined || c.closed) return { ok: false, why: 'not connected' };
    const deadline = performance.now() + timeoutMs;
    c.publish(this.up, ref.challengeRequest(), 1);
    let helloSent = false;
    for (;;) {
      const bytes = await this.next(deadline - performance.now());
      if (bytes === undefined) return { ok: false, why: c.closed ? 'closed' : 'timeout' };
      const u8 = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      if (u8[0] === FRAME) {
        // The previous session's `bye replaced`: it ends that session (and erases its keys).
        const ev = await ref.session?.open(u8);
        if (ev !== undefined && ev.kind !== 'ended') return { ok: false, why: `frame:${ev.kind}` };
        continue;
      }
      const ev = ref.receive(u8);
      if (ev.kind === 'challenge' && !helloSent) {
        helloSent = true;
        c.publish(this.up, await ref.hello(new Uint8Array(bytes)), 1);
        continue;
      }
      if (ev.kind === 'established') return { ok: true };
      if (ev.kind === 'rejected') return { ok: false, why: `rejected:${ev.reason}`, retry: ev.retryAfterSeconds };
      if (ev.kind === 'welcome-refused') return { ok: false, why: `welcome-refused:${ev.code}` };
    }
  }
}
