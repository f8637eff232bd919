/**
 * The port between the BLE transport and the radio (CONTRIBUTING.md §1: hardware behind ports). The
 * transport knows only `BleCentral`; `noble-adapter.ts` is the one implementation and the only
 * file that imports noble. Every method has a timeout and rejects with a `BleError`.
 */

/** noble's adapter states. Only `poweredOn` can scan and connect. */
export type BleAdapterState = 'unknown' | 'resetting' | 'unsupported' | 'unauthorized' | 'poweredOff' | 'poweredOn';

/** The advertisement fields the transport uses, already checked and bounded by the adapter. */
export interface BleAdvertisement {
  /** Service UUIDs, normalised to 32 lowercase hex digits (128-bit) or 4 (16-bit). */
  serviceUuids: string[];
  /** Printable local name, at most 64 characters, for logs only. */
  localName?: string;
}

/** A peripheral heard by the scanner. `address` is for throttling and logs, never an identity. */
export interface BleDiscovery {
  /** noble's peripheral id (on Linux: the address without colons). */
  id: string;
  /** The BLE address as the stack reports it (`aa:bb:cc:dd:ee:ff`) or `unknown`. */
  address: string;
  connectable: boolean;
  rssi?: number;
  advertisement: BleAdvertisement;
  /** True when the raw advertisement had fields of the wrong type or size (dropped). */
  malformed: boolean;
}

/** A GATT characteristic's properties as noble reports them (`write`, `notify`, …). */
export interface BleCharacteristicInfo {
  serviceUuid: string;
  uuid: string;
  properties: string[];
}

/** Why a link went down, as far as the stack tells. */
export interface BleDisconnect {
  id: string;
  /** HCI reason code when known (e.g. 0x08 supervision timeout, 0x13 remote user terminated). */
  reason?: number;
}

/** Events of a `BleCentral`. */
export interface BleCentralEvents {
  state: (state: BleAdapterState) => void;
  discover: (discovery: BleDiscovery) => void;
  disconnect: (event: BleDisconnect) => void;
}

/** Per-call options: every call has a deadline and may be aborted. */
export interface BleCallOptions {
  /** Overrides the central's default per-operation timeout (milliseconds). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** A GATT central: scan, connect, discover, subscribe, write, disconnect. */
export interface BleCentral {
  /**
   * Load the BLE stack and wait for the first adapter state. Rejects with `GH_BLE_UNAVAILABLE`
   * when the stack cannot be loaded or the adapter is `unsupported`/`unauthorized`; resolves for
   * `poweredOff` (the transport waits for `poweredOn`).
   */
  start(options?: BleCallOptions): Promise<void>;
  /** Stop scanning, drop every link, release the stack's listeners. Idempotent. */
  stop(): Promise<void>;
  readonly state: BleAdapterState;
  /** Scan for peripherals advertising any of `serviceUuids`, reporting every advertisement. */
  startScanning(serviceUuids: string[], options?: BleCallOptions): Promise<void>;
  stopScanning(options?: BleCallOptions): Promise<void>;
  /** Connect; resolves when the link is up. */
  connect(id: string, options?: BleCallOptions): Promise<void>;
  /** The negotiated ATT MTU of a connected peripheral (23 until the exchange says more). */
  mtu(id: string): number;
  /** Discover one characteristic of one service; rejects `GH_BLE_GATT_MISMATCH` when absent. */
  discover(id: string, serviceUuid: string, characteristicUuid: string, options?: BleCallOptions): Promise<BleCharacteristicInfo>;
  /** Enable notifications; `onValue` receives each notified value until disconnect. */
  subscribe(
    id: string,
    serviceUuid: string,
    characteristicUuid: string,
    onValue: (value: Uint8Array) => void,
    options?: BleCallOptions,
  ): Promise<void>;
  /** Write with response: resolves on the peripheral's write response. */
  write(id: string, serviceUuid: string, characteristicUuid: string, value: Uint8Array, options?: BleCallOptions): Promise<void>;
  /** Disconnect; resolves when the link is down (at once if it already is). */
  disconnect(id: string, options?: BleCallOptions): Promise<void>;
  /** Listen to an event; returns the unsubscribe function. */
  on<E extends keyof BleCentralEvents>(event: E, listener: BleCentralEvents[E]): () => void;
}

/** Normalise a UUID to noble's form: lowercase hex without dashes. */
export function normaliseUuid(uuid: string): string {
  return uuid.replace(/-/g, '').toLowerCase();
}
