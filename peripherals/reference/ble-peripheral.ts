/**
 * The reference peripheral as an emulated GATT server (`ble-emulated-gatt.ts`, for the emulated
 * radio of `ble-emulated-bindings.ts`). It advertises the Gatehouse service, and on a `challenge`
 * notifies a signed `hello`, then runs protocol-v1 "Peripheral checks on a welcome" on what the
 * gateway writes back. Hooks make it misbehave on purpose for tests: vanish mid-exchange, skip a
 * chunk index, send 2 KiB, advertise malformed data, never answer writes.
 */
import { EventEmitter } from 'node:events';
import { decodeDownMessage, type CheckWelcomeResult, chunkPayloadSize, encodeChunk, frameMessage, Reassembler, GATEHOUSE_CHARACTERISTIC_UUID, GATEHOUSE_SERVICE_UUID } from '../../protocol/index.js';
import type { ReasonCode, Signer } from '../../protocol/index.js';
import { buildAdvertisingData, nobleUuid } from './ble-emulated-advertising.js';
import type { EmulatedGattServer, EmulatedLink, EmulatedService } from './ble-emulated-gatt.js';
import { ReferencePeripheral } from './peripheral.js';

/** Ways to misbehave, each for one test. */
export interface BlePeripheralMisbehaviour {
  /** Leave radio range right after receiving the challenge (link lost, no hello). */
  vanishAfterChallenge?: boolean;
  /** Skip this chunk index when notifying the hello (a gap). */
  skipChunkIndex?: number;
  /** Notify a message of this many bytes instead of the hello (e.g. 2048). */
  oversizeHello?: number;
  /** Advertise these raw bytes instead of well-formed AD structures. */
  advertisingData?: Uint8Array;
  /** Accept writes but never send the Write Response. */
  stallWrites?: boolean;
  /** Take the challenge and never answer it (the gateway's exchange deadline must end it). */
  ignoreChallenge?: boolean;
  /** Notify the hello in chunks of this many bytes (protocol-v1 allows fewer than MTU−4). */
  helloChunkPayload?: number;
}

/** Options of a `ReferenceBlePeripheral`. */
export interface ReferenceBlePeripheralOptions {
  address: string;
  dev: string;
  /** The device key (kid = dev). */
  signer: Signer;
  /** Pinned backend keys: kid → raw Ed25519 public key. */
  backendKeys: ReadonlyMap<string, Uint8Array>;
  /** Largest ATT MTU this peripheral accepts, default 23. */
  mtu?: number;
  localName?: string;
  rssi?: number;
  /** Stop advertising once a welcome verified (default true), as a device that is done would. */
  stopAdvertisingWhenWelcomed?: boolean;
  misbehave?: BlePeripheralMisbehaviour;
}

/** How the peripheral's last exchange ended. */
export type BlePeripheralResult =
  | { kind: 'welcome'; check: CheckWelcomeResult }
  | { kind: 'reject'; reason: ReasonCode; retry?: number }
  | { kind: 'invalid'; detail: string };

/**
 * Emulated reference peripheral. Events: `challenge` (the decoded Challenge), `hello` (bytes sent),
 * `result` (BlePeripheralResult), `disconnect` (HCI reason).
 */
export class ReferenceBlePeripheral extends EventEmitter implements EmulatedGattServer {
  readonly address: string;
  readonly addressType = 'random' as const;
  readonly connectable = true;
  readonly mtu: number;
  readonly rssi: number;
  readonly dev: string;
  readonly #o: ReferenceBlePeripheralOptions;
  /** The transport-free reference peripheral: hello signing, pn, welcome checks. */
  readonly #device: ReferencePeripheral;
  #advertising = true;
  #link: EmulatedLink | undefined;
  #subscribed = false;
  #rx = new Reassembler();
  #helloSent = false;
  /** Results of every exchange, in order. */
  readonly results: BlePeripheralResult[] = [];
  /** Connections received. */
  connections = 0;

  constructor(options: ReferenceBlePeripheralOptions) {
    super();
    this.#o = options;
    this.address = options.address.toLowerCase();
    this.dev = options.dev;
    this.mtu = options.mtu ?? 23;
    this.rssi = options.rssi ?? -60;
    this.#device = new ReferencePeripheral({ dev: options.dev, signer: options.signer, backendKeys: options.backendKeys });
  }

  isAdvertising(): boolean {
    return this.#advertising;
  }

  /** Start or stop advertising (e.g. to re-authenticate later). */
  setAdvertising(on: boolean): void {
    this.#advertising = on;
  }

  advertisingData(): Uint8Array {
    return (
      this.#o.misbehave?.advertisingData ??
      buildAdvertisingData({ serviceUuids128: [GATEHOUSE_SERVICE_UUID], localName: this.#o.localName ?? `gh-${this.dev}`.slice(0, 20) })
    );
  }

  services(): EmulatedService[] {
    return [
      {
        uuid: GATEHOUSE_SERVICE_UUID,
        characteristics: [{ uuid: GATEHOUSE_CHARACTERISTIC_UUID, properties: ['write', 'notify'] }],
      },
    ];
  }

  onConnect(link: EmulatedLink): void {
    this.connections++;
    this.#link = link;
    this.#subscribed = false;
    this.#rx = new Reassembler({ mtu: link.mtu });
    this.#helloSent = false;
  }

  onSubscribe(_service: string, _characteristic: string, enabled: boolean): void {
    this.#subscribed = enabled;
  }

  onWrite(serviceUuid: string, characteristicUuid: string, value: Uint8Array): boolean {
    if (serviceUuid !== nobleUuid(GATEHOUSE_SERVICE_UUID) || characteristicUuid !== nobleUuid(GATEHOUSE_CHARACTERISTIC_UUID)) return true;
    if (this.#o.misbehave?.stallWrites) return false;
    let message: Uint8Array | undefined;
    try {
      message = this.#rx.push(value);
    } catch (err) {
      this.#finish({ kind: 'invalid', detail: `framing: ${err instanceof Error ? err.message : String(err)}` });
      return true;
    }
    // Process after the Write Response has gone out, as a GATT server's application would.
    if (message) setImmediate(() => void this.#onMessage(message));
    return true;
  }

  onDisconnect(reason: number): void {
    this.#link = undefined;
    this.#subscribed = false;
    this.emit('disconnect', reason);
  }

  async #onMessage(bytes: Uint8Array): Promise<void> {
    let down;
    try {
      down = decodeDownMessage(bytes);
    } catch (err) {
      this.#finish({ kind: 'invalid', detail: `decode: ${err instanceof Error ? err.message : String(err)}` });
      return;
    }
    if (down.type === 'challenge') {
      // protocol-v1 "BLE transport": the challenge's dev names the connection, not us; we answer
      // with our own dev in the hello and take only gn (and gw) from the challenge.
      this.emit('challenge', down.message);
      if (this.#o.misbehave?.ignoreChallenge) return;
      if (this.#o.misbehave?.vanishAfterChallenge) {
        this.#advertising = false;
        this.#link?.drop();
        return;
      }
      let hello: Uint8Array;
      try {
        hello = await this.#device.hello(bytes, { transport: 'ble' });
      } catch (err) {
        this.#finish({ kind: 'invalid', detail: `challenge: ${err instanceof Error ? err.message : String(err)}` });
        return;
      }
      this.#helloSent = true;
      this.#send(hello);
      this.emit('hello', hello);
      return;
    }
    if (down.type === 'reject') {
      // protocol-v1: a reject is advisory only (it may be forged); retry after `retry`. Its dev
      // is ours after a hello, or the connection's when the challenge itself was refused.
      const r: BlePeripheralResult = { kind: 'reject', reason: down.message.reason };
      if (down.message.retry !== undefined) r.retry = down.message.retry;
      this.#finish(r);
      return;
    }
    if (!this.#helloSent) {
      this.#finish({ kind: 'invalid', detail: 'welcome before any hello' });
      return;
    }
    const check = this.#device.verifyWelcome(bytes);
    if (check.ok && (this.#o.stopAdvertisingWhenWelcomed ?? true)) this.#advertising = false;
    this.#finish({ kind: 'welcome', check });
  }

  #send(message: Uint8Array): void {
    const link = this.#link;
    if (!link || !this.#subscribed) return;
    const m = this.#o.misbehave;
    let chunks: Uint8Array[];
    if (m?.oversizeHello !== undefined) {
      // Bypasses frameMessage's refusal of oversize messages on purpose.
      const size = chunkPayloadSize(link.mtu);
      const junk = new Uint8Array(m.oversizeHello).fill(0xa5);
      chunks = [];
      for (let off = 0, i = 0; off < junk.length; off += size, i++) {
        chunks.push(encodeChunk(i, off + size >= junk.length, junk.subarray(off, off + size)));
      }
    } else {
      chunks = frameMessage(message, link.mtu, m?.helloChunkPayload === undefined ? {} : { payloadSize: m.helloChunkPayload });
      if (m?.skipChunkIndex !== undefined) chunks = chunks.filter((_, i) => i !== m.skipChunkIndex);
    }
    for (const c of chunks) link.notify(GATEHOUSE_SERVICE_UUID, GATEHOUSE_CHARACTERISTIC_UUID, c);
  }

  #finish(result: BlePeripheralResult): void {
    this.results.push(result);
    this.emit('result', result);
  }
}
