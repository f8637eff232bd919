/**
 * EMULATED noble bindings: the radio layer only. noble's own code (`lib/noble.js`, peripherals,
 * services, characteristics, its event plumbing) runs unchanged on top, built with
 * `@abandonware/noble/with-bindings`; this class stands where `lib/hci-socket/bindings.js` would
 * talk to a Bluetooth controller. It hosts emulated GATT servers (`EmulatedGattServer`), parses
 * their raw advertisement bytes like noble's GAP layer, and answers noble's calls with the
 * events noble expects (stateChange, scanStart, discover, connect, onMtu, servicesDiscover,
 * characteristicsDiscover, notify, write, read, disconnect).
 *
 * The GATT links and their ATT answers are kept by ble-emulated-gatt.ts, advertising data by
 * ble-emulated-advertising.ts; this file is the radio: adapter state, scanning, connecting.
 *
 * Not emulated: HCI, L2CAP, ATT PDUs, SMP, timing, radio loss. See docs/ble.md "Emulation".
 * It imports nothing from noble: noble loads it, not the other way round.
 */
import { EventEmitter } from 'node:events';
import { nobleUuid, parseAdvertisingData } from './ble-emulated-advertising.js';
import { EmulatedGattLinks, HCI_CONNECTION_TIMEOUT, HCI_LOCAL_HOST_TERMINATED, later, type EmulatedGattServer } from './ble-emulated-gatt.js';

/** Options of the emulated radio. */
export interface EmulatedBindingsOptions {
  /** How often each advertising server is heard while scanning (ms), default 25. */
  advertisingIntervalMs?: number;
  /** The ATT MTU the central side offers, default 517. */
  centralMtu?: number;
  /** Adapter state at `init()`, default `poweredOn`. */
  initialState?: 'poweredOn' | 'poweredOff' | 'unauthorized' | 'unsupported';
  /**
   * Whether powering off reports a disconnect for each link (default true). False emulates a
   * stack that only reports the state change: links vanish silently.
   */
  powerOffReportsDisconnects?: boolean;
}

/**
 * Emulated noble bindings hosting emulated GATT servers. Pass an instance to
 * `NobleCentral({ bindings })`. Test controls: `addPeripheral`, `removePeripheral`,
 * `setAdapterState`; observations: `maxConcurrentLinks`, `violations`.
 */
export class EmulatedNobleBindings extends EventEmitter {
  readonly #servers = new Map<string, EmulatedGattServer>();
  readonly #links: EmulatedGattLinks;
  readonly #intervalMs: number;
  readonly #centralMtu: number;
  readonly #powerOffReportsDisconnects: boolean;
  #state: string;
  #scanFilter: string[] | undefined;
  #timer: NodeJS.Timeout | undefined;
  #initialised = false;
  #connectGate: Promise<void> | undefined;
  /** The most links open at once, observed at the radio. */
  maxConcurrentLinks = 0;
  /** Connection attempts, per address. */
  readonly connectAttempts = new Map<string, number>();
  /** Things a correct central never does (oversized writes, writes while unsubscribed…). */
  readonly violations: string[] = [];

  constructor(options: EmulatedBindingsOptions = {}) {
    super();
    this.#links = new EmulatedGattLinks((event, ...args) => this.emit(event, ...args), this.violations);
    this.#intervalMs = options.advertisingIntervalMs ?? 25;
    this.#centralMtu = options.centralMtu ?? 517;
    this.#state = options.initialState ?? 'poweredOn';
    this.#powerOffReportsDisconnects = options.powerOffReportsDisconnects ?? true;
  }

  /** Links open now. */
  get linkCount(): number {
    return this.#links.size;
  }

  // ---- test controls -------------------------------------------------------------------------

  addPeripheral(server: EmulatedGattServer): void {
    this.#servers.set(idOf(server.address), server);
    if (this.#scanFilter) later(() => this.#advertise(server));
  }

  /** The peripheral leaves radio range: any link to it is lost (supervision timeout). */
  removePeripheral(address: string): void {
    const id = idOf(address);
    this.#servers.delete(id);
    if (this.#links.has(id)) this.#links.drop(id, HCI_CONNECTION_TIMEOUT);
  }

  /** Power the adapter off or on, as `bluetoothctl power off` or rfkill would. */
  setAdapterState(state: 'poweredOn' | 'poweredOff'): void {
    if (state === this.#state) return;
    if (state === 'poweredOff') {
      this.#stopTimer();
      this.#scanFilter = undefined;
      if (this.#powerOffReportsDisconnects) for (const id of this.#links.ids()) this.#links.drop(id, HCI_LOCAL_HOST_TERMINATED);
      else this.#links.vanishAll(HCI_LOCAL_HOST_TERMINATED);
    }
    this.#state = state;
    later(() => this.emit('stateChange', state));
  }

  // ---- noble bindings interface (what lib/noble.js calls) -----------------------------------

  init(): void {
    if (this.#initialised) return;
    this.#initialised = true;
    later(() => {
      this.emit('addressChange', 'ee:ee:ee:00:00:01');
      this.emit('stateChange', this.#state);
    });
  }

  setScanParameters(): void {
    later(() => this.emit('scanParametersSet'));
  }

  startScanning(serviceUuids: string[] | undefined, allowDuplicates: boolean): void {
    if (this.#state !== 'poweredOn') return; // a real controller refuses silently: noble times out
    this.#scanFilter = (serviceUuids ?? []).map(nobleUuid);
    this.#stopTimer();
    this.#timer = setInterval(() => this.#advertiseAll(), this.#intervalMs);
    this.#timer.unref();
    later(() => {
      this.emit('scanStart', !allowDuplicates);
      this.#advertiseAll();
    });
  }

  stopScanning(): void {
    this.#scanFilter = undefined;
    this.#stopTimer();
    later(() => this.emit('scanStop'));
  }

  /**
   * Hold every connection attempt until the returned function is called, as a slow controller
   * would. Cancels are ignored meanwhile: the connection completes anyway (the race a real
   * LE Create Connection Cancel can lose).
   */
  holdConnections(): () => void {
    let release: () => void = () => undefined;
    this.#connectGate = new Promise<void>((resolve) => {
      release = () => {
        this.#connectGate = undefined;
        resolve();
      };
    });
    return release;
  }

  connect(id: string): void {
    const server = this.#servers.get(id);
    this.connectAttempts.set(id, (this.connectAttempts.get(id) ?? 0) + 1);
    const gate = this.#connectGate;
    const complete = (f: () => void): void => (gate ? void gate.then(() => later(f)) : later(f));
    complete(() => {
      if (this.#state !== 'poweredOn' || !server || !server.connectable || !this.#servers.has(id)) {
        // HCI 0x3e: Connection Failed to be Established, as hci-socket reports it.
        this.emit('connect', id, new Error('Connection Failed to be Established (0x3e)'));
        return;
      }
      if (this.#links.has(id)) {
        this.emit('connect', id, new Error('already connected'));
        return;
      }
      this.maxConcurrentLinks = Math.max(this.maxConcurrentLinks, this.#links.size + 1);
      this.#links.open(id, server, Math.min(this.#centralMtu, server.mtu));
    });
  }

  cancelConnect(): void {
    // Connections complete on the next tick here, or when a hold is released: never cancelled.
  }

  disconnect(id: string): void {
    later(() => {
      if (this.#links.has(id)) this.#links.drop(id, HCI_LOCAL_HOST_TERMINATED);
    });
  }

  reset(): void {}

  updateRssi(id: string): void {
    const server = this.#servers.get(id);
    later(() => this.emit('rssiUpdate', id, server?.rssi ?? -127));
  }

  discoverServices(id: string, uuids: string[] | undefined): void {
    this.#links.discoverServices(id, uuids);
  }

  discoverIncludedServices(id: string, serviceUuid: string): void {
    this.#links.answer(id, 'includedServicesDiscover', serviceUuid, []);
  }

  discoverCharacteristics(id: string, serviceUuid: string, uuids: string[] | undefined): void {
    this.#links.discoverCharacteristics(id, serviceUuid, uuids);
  }

  discoverDescriptors(id: string, serviceUuid: string, characteristicUuid: string): void {
    this.#links.answer(id, 'descriptorsDiscover', serviceUuid, characteristicUuid, ['2902']);
  }

  read(id: string, serviceUuid: string, characteristicUuid: string): void {
    this.#links.answer(id, 'read', serviceUuid, characteristicUuid, Buffer.alloc(0), false);
  }

  write(id: string, serviceUuid: string, characteristicUuid: string, data: Buffer, withoutResponse: boolean): void {
    this.#links.write(id, serviceUuid, characteristicUuid, data, withoutResponse);
  }

  broadcast(id: string, serviceUuid: string, characteristicUuid: string, enable: boolean): void {
    this.#links.answer(id, 'broadcast', serviceUuid, characteristicUuid, enable);
  }

  notify(id: string, serviceUuid: string, characteristicUuid: string, enable: boolean): void {
    this.#links.notify(id, serviceUuid, characteristicUuid, enable);
  }

  readValue(id: string, serviceUuid: string, characteristicUuid: string, descriptorUuid: string): void {
    this.#links.answer(id, 'valueRead', serviceUuid, characteristicUuid, descriptorUuid, Buffer.alloc(0));
  }

  writeValue(id: string, serviceUuid: string, characteristicUuid: string, descriptorUuid: string): void {
    this.#links.answer(id, 'valueWrite', serviceUuid, characteristicUuid, descriptorUuid);
  }

  readHandle(id: string, handle: number): void {
    this.#links.answer(id, 'handleRead', handle, Buffer.alloc(0));
  }

  writeHandle(id: string, handle: number): void {
    this.#links.answer(id, 'handleWrite', handle);
  }

  // ---- internals ------------------------------------------------------------------------------

  #advertiseAll(): void {
    for (const server of [...this.#servers.values()]) this.#advertise(server);
  }

  #advertise(server: EmulatedGattServer): void {
    const filter = this.#scanFilter;
    if (!filter || this.#state !== 'poweredOn' || !server.isAdvertising() || this.#links.has(idOf(server.address))) return;
    const advertisement = parseAdvertisingData(server.advertisingData());
    // The same filter hci-socket's bindings apply: advertised service UUIDs and service-data UUIDs.
    const uuids = [...advertisement.serviceUuids, ...advertisement.serviceData.map((d) => d.uuid)];
    if (filter.length > 0 && !uuids.some((u) => filter.includes(u))) return;
    this.emit('discover', idOf(server.address), server.address, server.addressType, server.connectable, advertisement, server.rssi, true);
  }

  #stopTimer(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

function idOf(address: string): string {
  return address.split(':').join('').toLowerCase();
}
