/**
 * EMULATED noble bindings: the radio layer only. noble's own code (`lib/noble.js`, peripherals,
 * services, characteristics, its event plumbing) runs unchanged on top, built with
 * `@abandonware/noble/with-bindings`; this class stands where `lib/hci-socket/bindings.js` would
 * talk to a Bluetooth controller. It hosts emulated GATT servers (`EmulatedGattServer`), parses
 * their raw advertisement bytes like noble's GAP layer, and answers noble's calls with the
 * events noble expects (stateChange, scanStart, discover, connect, onMtu, servicesDiscover,
 * characteristicsDiscover, notify, write, read, disconnect).
 *
 * Not emulated: HCI, L2CAP, ATT PDUs, SMP, timing, radio loss. See docs/ble.md "Emulation".
 * It imports nothing from noble: noble loads it, not the other way round.
 */
import { EventEmitter } from 'node:events';
import { nobleUuid, parseAdvertisingData } from './ble-emulated-advertising.js';

export { buildAdvertisingData, nobleUuid, parseAdvertisingData, type ParsedAdvertisement } from './ble-emulated-advertising.js';


/** One characteristic of an emulated GATT server. */
export interface EmulatedCharacteristic {
  uuid: string;
  /** noble property names: `read`, `write`, `writeWithoutResponse`, `notify`, `indicate`. */
  properties: string[];
}

/** One primary service of an emulated GATT server. */
export interface EmulatedService {
  uuid: string;
  characteristics: EmulatedCharacteristic[];
}

/** What the radio gives a GATT server while a central is connected to it. */
export interface EmulatedLink {
  /** Negotiated ATT MTU: the smaller of the central's and the server's. */
  readonly mtu: number;
  /** Handle Value Notification; throws if not subscribed or longer than MTU−3 (ATT limit). */
  notify(serviceUuid: string, characteristicUuid: string, value: Uint8Array): void;
  /** The link is lost from the peripheral's side (it vanished): supervision timeout, 0x08. */
  drop(): void;
}

/** A peripheral as the emulated radio sees it. */
export interface EmulatedGattServer {
  /** BLE address, `aa:bb:cc:dd:ee:ff`. */
  readonly address: string;
  readonly addressType: 'public' | 'random';
  readonly connectable: boolean;
  /** The largest ATT MTU this server accepts (23..517). */
  readonly mtu: number;
  readonly rssi: number;
  /** Raw advertising data (AD structures, Core Supplement Part A §1), as sent on air. */
  advertisingData(): Uint8Array;
  isAdvertising(): boolean;
  services(): EmulatedService[];
  onConnect(link: EmulatedLink): void;
  onSubscribe(serviceUuid: string, characteristicUuid: string, enabled: boolean): void;
  /** A Write Request; return `false` to never send the Write Response (a stuck peripheral). */
  onWrite(serviceUuid: string, characteristicUuid: string, value: Uint8Array): boolean | void;
  onDisconnect(reason: number): void;
}

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

/** HCI reason codes used in disconnect events. */
export const HCI_CONNECTION_TIMEOUT = 0x08;
export const HCI_REMOTE_USER_TERMINATED = 0x13;
export const HCI_LOCAL_HOST_TERMINATED = 0x16;

interface LinkState {
  server: EmulatedGattServer;
  mtu: number;
  subscribed: Set<string>;
}

/**
 * Emulated noble bindings hosting emulated GATT servers. Pass an instance to
 * `NobleCentral({ bindings })`. Test controls: `addPeripheral`, `removePeripheral`,
 * `setAdapterState`; observations: `maxConcurrentLinks`, `violations`.
 */
export class EmulatedNobleBindings extends EventEmitter {
  readonly #servers = new Map<string, EmulatedGattServer>();
  readonly #links = new Map<string, LinkState>();
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
    if (this.#scanFilter) this.#later(() => this.#advertise(server));
  }

  /** The peripheral leaves radio range: any link to it is lost (supervision timeout). */
  removePeripheral(address: string): void {
    const id = idOf(address);
    this.#servers.delete(id);
    if (this.#links.has(id)) this.#dropLink(id, HCI_CONNECTION_TIMEOUT);
  }

  /** Power the adapter off or on, as `bluetoothctl power off` or rfkill would. */
  setAdapterState(state: 'poweredOn' | 'poweredOff'): void {
    if (state === this.#state) return;
    if (state === 'poweredOff') {
      this.#stopTimer();
      this.#scanFilter = undefined;
      for (const id of [...this.#links.keys()]) {
        if (this.#powerOffReportsDisconnects) this.#dropLink(id, HCI_LOCAL_HOST_TERMINATED);
        else this.#links.get(id)?.server.onDisconnect(HCI_LOCAL_HOST_TERMINATED);
      }
      this.#links.clear();
    }
    this.#state = state;
    this.#later(() => this.emit('stateChange', state));
  }

  // ---- noble bindings interface (what lib/noble.js calls) -----------------------------------

  init(): void {
    if (this.#initialised) return;
    this.#initialised = true;
    this.#later(() => {
      this.emit('addressChange', 'ee:ee:ee:00:00:01');
      this.emit('stateChange', this.#state);
    });
  }

  setScanParameters(): void {
    this.#later(() => this.emit('scanParametersSet'));
  }

  startScanning(serviceUuids: string[] | undefined, allowDuplicates: boolean): void {
    if (this.#state !== 'poweredOn') return; // a real controller refuses silently: noble times out
    this.#scanFilter = (serviceUuids ?? []).map(nobleUuid);
    this.#stopTimer();
    this.#timer = setInterval(() => this.#advertiseAll(), this.#intervalMs);
    this.#timer.unref();
    this.#later(() => {
      this.emit('scanStart', !allowDuplicates);
      this.#advertiseAll();
    });
  }

  stopScanning(): void {
    this.#scanFilter = undefined;
    this.#stopTimer();
    this.#later(() => this.emit('scanStop'));
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
    const complete = (f: () => void): void => (gate ? void gate.then(() => this.#later(f)) : this.#later(f));
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
      const link: LinkState = { server, mtu: Math.min(this.#centralMtu, server.mtu), subscribed: new Set() };
      this.#links.set(id, link);
      this.maxConcurrentLinks = Math.max(this.maxConcurrentLinks, this.#links.size);
      server.onConnect(this.#linkFor(id, link));
      this.emit('connect', id, null);
      // hci-socket exchanges the MTU right after connecting, before any discovery (ATT is serial).
      this.#later(() => this.#links.get(id) === link && this.emit('onMtu', id, link.mtu));
    });
  }

  cancelConnect(): void {
    // Connections complete on the next tick here, or when a hold is released: never cancelled.
  }

  disconnect(id: string): void {
    this.#later(() => {
      if (this.#links.has(id)) this.#dropLink(id, HCI_LOCAL_HOST_TERMINATED);
    });
  }

  reset(): void {}

  updateRssi(id: string): void {
    const server = this.#servers.get(id);
    this.#later(() => this.emit('rssiUpdate', id, server?.rssi ?? -127));
  }

  discoverServices(id: string, uuids: string[] | undefined): void {
    this.#att(id, (link) => {
      const wanted = (uuids ?? []).map(nobleUuid);
      const found = link.server
        .services()
        .map((s) => nobleUuid(s.uuid))
        .filter((u) => wanted.length === 0 || wanted.includes(u));
      this.emit('servicesDiscover', id, found);
    });
  }

  discoverIncludedServices(id: string, serviceUuid: string): void {
    this.#att(id, () => this.emit('includedServicesDiscover', id, serviceUuid, []));
  }

  discoverCharacteristics(id: string, serviceUuid: string, uuids: string[] | undefined): void {
    this.#att(id, (link) => {
      const wanted = (uuids ?? []).map(nobleUuid);
      const service = link.server.services().find((s) => nobleUuid(s.uuid) === serviceUuid);
      const found = (service?.characteristics ?? [])
        .filter((c) => wanted.length === 0 || wanted.includes(nobleUuid(c.uuid)))
        .map((c) => ({ uuid: nobleUuid(c.uuid), properties: [...c.properties] }));
      this.emit('characteristicsDiscover', id, serviceUuid, found);
    });
  }

  discoverDescriptors(id: string, serviceUuid: string, characteristicUuid: string): void {
    this.#att(id, () => this.emit('descriptorsDiscover', id, serviceUuid, characteristicUuid, ['2902']));
  }

  read(id: string, serviceUuid: string, characteristicUuid: string): void {
    this.#att(id, () => this.emit('read', id, serviceUuid, characteristicUuid, Buffer.alloc(0), false));
  }

  write(id: string, serviceUuid: string, characteristicUuid: string, data: Buffer, withoutResponse: boolean): void {
    this.#att(id, (link) => {
      const c = this.#characteristic(link, serviceUuid, characteristicUuid);
      if (!c || !c.properties.includes(withoutResponse ? 'writeWithoutResponse' : 'write')) {
        this.violations.push(`write to ${characteristicUuid} which does not allow it`);
        return;
      }
      if (data.length > link.mtu - 3) {
        // A Write Request carries at most MTU−3 bytes (Core Vol 3 Part F §3.4.5.1).
        this.violations.push(`write of ${data.length} bytes at MTU ${link.mtu}`);
        return;
      }
      const answered = link.server.onWrite(serviceUuid, characteristicUuid, new Uint8Array(data));
      if (answered !== false && !withoutResponse) this.emit('write', id, serviceUuid, characteristicUuid);
    });
  }

  broadcast(id: string, serviceUuid: string, characteristicUuid: string, enable: boolean): void {
    this.#att(id, () => this.emit('broadcast', id, serviceUuid, characteristicUuid, enable));
  }

  notify(id: string, serviceUuid: string, characteristicUuid: string, enable: boolean): void {
    this.#att(id, (link) => {
      const c = this.#characteristic(link, serviceUuid, characteristicUuid);
      if (!c || !c.properties.includes('notify')) {
        this.violations.push(`subscribe to ${characteristicUuid} which does not notify`);
        return;
      }
      const key = `${serviceUuid}/${characteristicUuid}`;
      if (enable) link.subscribed.add(key);
      else link.subscribed.delete(key);
      link.server.onSubscribe(serviceUuid, characteristicUuid, enable);
      this.emit('notify', id, serviceUuid, characteristicUuid, enable);
    });
  }

  readValue(id: string, serviceUuid: string, characteristicUuid: string, descriptorUuid: string): void {
    this.#att(id, () => this.emit('valueRead', id, serviceUuid, characteristicUuid, descriptorUuid, Buffer.alloc(0)));
  }

  writeValue(id: string, serviceUuid: string, characteristicUuid: string, descriptorUuid: string): void {
    this.#att(id, () => this.emit('valueWrite', id, serviceUuid, characteristicUuid, descriptorUuid));
  }

  readHandle(id: string, handle: number): void {
    this.#att(id, () => this.emit('handleRead', id, handle, Buffer.alloc(0)));
  }

  writeHandle(id: string, handle: number): void {
    this.#att(id, () => this.emit('handleWrite', id, handle));
  }

  // ---- internals ------------------------------------------------------------------------------

  /** Radio answers come asynchronously, never inside the caller's stack, like a real controller. */
  #later(f: () => void): void {
    setImmediate(f);
  }

  /** An ATT request: answered only while the link is up; a dead link never answers (noble then waits). */
  #att(id: string, f: (link: LinkState) => void): void {
    this.#later(() => {
      const link = this.#links.get(id);
      if (link) f(link);
    });
  }

  #characteristic(link: LinkState, serviceUuid: string, characteristicUuid: string): EmulatedCharacteristic | undefined {
    return link.server
      .services()
      .find((s) => nobleUuid(s.uuid) === serviceUuid)
      ?.characteristics.find((c) => nobleUuid(c.uuid) === characteristicUuid);
  }

  #linkFor(id: string, link: LinkState): EmulatedLink {
    return {
      mtu: link.mtu,
      notify: (serviceUuid, characteristicUuid, value) => {
        if (this.#links.get(id) !== link) throw new Error('notify on a link that is down');
        const key = `${nobleUuid(serviceUuid)}/${nobleUuid(characteristicUuid)}`;
        if (!link.subscribed.has(key)) throw new Error('notify without a subscription');
        if (value.length > link.mtu - 3) throw new Error(`notification of ${value.length} bytes exceeds MTU ${link.mtu} - 3`);
        const data = Buffer.from(value);
        this.#later(() => {
          if (this.#links.get(id) === link) this.emit('read', id, nobleUuid(serviceUuid), nobleUuid(characteristicUuid), data, true);
        });
      },
      drop: () => {
        this.#later(() => {
          if (this.#links.get(id) === link) this.#dropLink(id, HCI_CONNECTION_TIMEOUT);
        });
      },
    };
  }

  #dropLink(id: string, reason: number): void {
    const link = this.#links.get(id);
    if (!link) return;
    this.#links.delete(id);
    link.server.onDisconnect(reason);
    this.emit('disconnect', id, reason);
  }

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
