/**
 * The GATT side of the EMULATED radio (see ble-emulated-bindings.ts): the emulated GATT servers'
 * shapes and the open links, answering noble's ATT calls on a link (discovery, writes,
 * subscriptions, notifications) with the events noble's bindings would emit. A dead link never
 * answers, as a real one would not. Imports nothing from noble.
 */
import { nobleUuid } from './ble-emulated-advertising.js';

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

/** HCI reason codes used in disconnect events. */
export const HCI_CONNECTION_TIMEOUT = 0x08;
export const HCI_REMOTE_USER_TERMINATED = 0x13;
export const HCI_LOCAL_HOST_TERMINATED = 0x16;

/** Radio answers come asynchronously, never inside the caller's stack, like a real controller. */
export function later(f: () => void): void {
  setImmediate(f);
}

interface LinkState {
  server: EmulatedGattServer;
  mtu: number;
  subscribed: Set<string>;
}

/** Emits a noble bindings event (the bindings object's `emit`). */
type Emit = (event: string, ...args: unknown[]) => void;

/** The open links of the emulated radio and the ATT answers on them. */
export class EmulatedGattLinks {
  readonly #links = new Map<string, LinkState>();
  readonly #emit: Emit;
  readonly #violations: string[];

  /** `violations` collects what a correct central never does (the bindings' public list). */
  constructor(emit: Emit, violations: string[]) {
    this.#emit = emit;
    this.#violations = violations;
  }

  /** Links open now. */
  get size(): number {
    return this.#links.size;
  }

  has(id: string): boolean {
    return this.#links.has(id);
  }

  ids(): string[] {
    return [...this.#links.keys()];
  }

  /** Open a link to `server` at `mtu` and tell the server; the MTU exchange follows. */
  open(id: string, server: EmulatedGattServer, mtu: number): void {
    const link: LinkState = { server, mtu, subscribed: new Set() };
    this.#links.set(id, link);
    server.onConnect(this.#linkFor(id, link));
    this.#emit('connect', id, null);
    // hci-socket exchanges the MTU right after connecting, before any discovery (ATT is serial).
    later(() => this.#links.get(id) === link && this.#emit('onMtu', id, link.mtu));
  }

  /** The link is gone with `reason`: tell the server and noble. */
  drop(id: string, reason: number): void {
    const link = this.#links.get(id);
    if (!link) return;
    this.#links.delete(id);
    link.server.onDisconnect(reason);
    this.#emit('disconnect', id, reason);
  }

  /** Every link vanishes and only the servers hear of it (a stack that reports no disconnects). */
  vanishAll(reason: number): void {
    for (const link of this.#links.values()) link.server.onDisconnect(reason);
    this.#links.clear();
  }

  discoverServices(id: string, uuids: string[] | undefined): void {
    this.#att(id, (link) => {
      const wanted = (uuids ?? []).map(nobleUuid);
      const found = link.server
        .services()
        .map((s) => nobleUuid(s.uuid))
        .filter((u) => wanted.length === 0 || wanted.includes(u));
      this.#emit('servicesDiscover', id, found);
    });
  }

  discoverCharacteristics(id: string, serviceUuid: string, uuids: string[] | undefined): void {
    this.#att(id, (link) => {
      const wanted = (uuids ?? []).map(nobleUuid);
      const service = link.server.services().find((s) => nobleUuid(s.uuid) === serviceUuid);
      const found = (service?.characteristics ?? [])
        .filter((c) => wanted.length === 0 || wanted.includes(nobleUuid(c.uuid)))
        .map((c) => ({ uuid: nobleUuid(c.uuid), properties: [...c.properties] }));
      this.#emit('characteristicsDiscover', id, serviceUuid, found);
    });
  }

  write(id: string, serviceUuid: string, characteristicUuid: string, data: Buffer, withoutResponse: boolean): void {
    this.#att(id, (link) => {
      const c = this.#characteristic(link, serviceUuid, characteristicUuid);
      if (!c || !c.properties.includes(withoutResponse ? 'writeWithoutResponse' : 'write')) {
        this.#violations.push(`write to ${characteristicUuid} which does not allow it`);
        return;
      }
      if (data.length > link.mtu - 3) {
        // A Write Request carries at most MTU−3 bytes (Core Vol 3 Part F §3.4.5.1).
        this.#violations.push(`write of ${data.length} bytes at MTU ${link.mtu}`);
        return;
      }
      const answered = link.server.onWrite(serviceUuid, characteristicUuid, new Uint8Array(data));
      if (answered !== false && !withoutResponse) this.#emit('write', id, serviceUuid, characteristicUuid);
    });
  }

  notify(id: string, serviceUuid: string, characteristicUuid: string, enable: boolean): void {
    this.#att(id, (link) => {
      const c = this.#characteristic(link, serviceUuid, characteristicUuid);
      if (!c || !c.properties.includes('notify')) {
        this.#violations.push(`subscribe to ${characteristicUuid} which does not notify`);
        return;
      }
      const key = `${serviceUuid}/${characteristicUuid}`;
      if (enable) link.subscribed.add(key);
      else link.subscribed.delete(key);
      link.server.onSubscribe(serviceUuid, characteristicUuid, enable);
      this.#emit('notify', id, serviceUuid, characteristicUuid, enable);
    });
  }

  /** An ATT request with a fixed answer (`event` with `args`), given only while the link is up. */
  answer(id: string, event: string, ...args: unknown[]): void {
    this.#att(id, () => this.#emit(event, id, ...args));
  }

  /** An ATT request: answered only while the link is up; a dead link never answers (noble then waits). */
  #att(id: string, f: (link: LinkState) => void): void {
    later(() => {
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
        later(() => {
          if (this.#links.get(id) === link) this.#emit('read', id, nobleUuid(serviceUuid), nobleUuid(characteristicUuid), data, true);
        });
      },
      drop: () => {
        later(() => {
          if (this.#links.get(id) === link) this.drop(id, HCI_CONNECTION_TIMEOUT);
        });
      },
    };
  }
}
