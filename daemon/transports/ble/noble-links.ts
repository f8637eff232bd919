/**
 * What the BLE central holds per peripheral: the discovered peripherals it may connect (an LRU),
 * the open links with their characteristics and notification listeners, and the GATT calls on a
 * link. It receives noble's objects from noble-adapter.ts and never loads noble itself
 * (CONTRIBUTING.md §1). Every call waits through `PendingCalls`, so each has a timeout and a
 * disconnect fails what waits on that peripheral at once.
 */
import type { EventEmitter } from 'node:events';
import type { Logger } from 'winston';
import { BleError } from './errors.js';
import { MAX_ATT_MTU, MIN_ATT_MTU } from '../../../protocol/index.js';
import { normaliseUuid, type BleCallOptions, type BleCharacteristicInfo, type BleDiscovery } from './port.js';
import { describeError, type PendingCalls } from './pending-calls.js';
import { sanitiseAdvertisement } from './advertisement.js';
import type { NobleCharacteristicLike, NobleLike, NoblePeripheralLike, NobleServiceLike } from './noble-shapes.js';

const ADDRESS_RE = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;

interface Link {
  peripheral: NoblePeripheralLike;
  characteristics: Map<string, NobleCharacteristicLike>;
  dataListeners: Array<{ characteristic: NobleCharacteristicLike; listener: (...args: unknown[]) => void }>;
}

/** What `NobleLinks` is built with. */
export interface NobleLinksOptions {
  /** The central's pending calls (shared with its scanning calls). */
  calls: PendingCalls;
  /** The central's event emitter: `discover` and `disconnect` are emitted on it. */
  events: EventEmitter;
  log: Logger;
  /** At most this many discovered peripherals are remembered for `connect`. */
  maxKnown: number;
  /** The noble in use now, for its internal tables; undefined before start. */
  noble: () => NobleLike | undefined;
}

/** The peripherals and links of one `NobleCentral`. */
export class NobleLinks {
  readonly #calls: PendingCalls;
  readonly #events: EventEmitter;
  readonly #log: Logger;
  readonly #maxKnown: number;
  readonly #noble: () => NobleLike | undefined;
  readonly #known = new Map<string, NoblePeripheralLike>();
  readonly #watched = new WeakSet<NoblePeripheralLike>();
  readonly #links = new Map<string, Link>();
  readonly #connecting = new Set<string>();

  constructor(options: NobleLinksOptions) {
    this.#calls = options.calls;
    this.#events = options.events;
    this.#log = options.log;
    this.#maxKnown = options.maxKnown;
    this.#noble = options.noble;
  }

  /** Peripherals remembered for connecting. */
  get knownCount(): number {
    return this.#known.size;
  }

  /** Open links. */
  get linkCount(): number {
    return this.#links.size;
  }

  /** The ids of the open links. */
  linkIds(): string[] {
    return [...this.#links.keys()];
  }

  /** Forget every discovered peripheral (their noble is gone). */
  forgetKnown(): void {
    this.#known.clear();
  }

  /** The adapter went away: links do not survive it; drop them all. */
  dropAll(): void {
    for (const [id, link] of [...this.#links]) {
      // Not every stack reports the disconnects when the adapter goes away; noble would then
      // think the peripheral still connected and refuse to connect it again.
      if (link.peripheral.state !== 'disconnected') link.peripheral.state = 'disconnected';
      this.#dropLink(id);
    }
  }

  /** A discovered peripheral: remember it and report it, sanitised, as `discover`. */
  onDiscover(peripheral: NoblePeripheralLike): void {
    if (typeof peripheral?.id !== 'string' || peripheral.id.length === 0 || peripheral.id.length > 64) return;
    const { advertisement, malformed } = sanitiseAdvertisement(peripheral.advertisement);
    // LRU: re-insert at the end, evict the oldest not connected.
    this.#known.delete(peripheral.id);
    this.#known.set(peripheral.id, peripheral);
    while (this.#known.size > this.#maxKnown) {
      const oldest = [...this.#known.keys()].find((k) => !this.#links.has(k));
      if (oldest === undefined) break;
      this.#known.delete(oldest);
      this.#forgetInNoble(oldest);
    }
    const address = typeof peripheral.address === 'string' && ADDRESS_RE.test(peripheral.address.toLowerCase()) ? peripheral.address.toLowerCase() : 'unknown';
    const discovery: BleDiscovery = {
      id: peripheral.id,
      address,
      // A boolean from legacy advertising reports; noble's extended-report path hands up the
      // event type's connectable bit as a number (1).
      connectable: peripheral.connectable === true || peripheral.connectable === 1,
      advertisement,
      malformed: malformed || address === 'unknown',
    };
    if (typeof peripheral.rssi === 'number' && Number.isFinite(peripheral.rssi)) discovery.rssi = peripheral.rssi;
    this.#events.emit('discover', discovery);
  }

  /** Connect a discovered peripheral and open its link. */
  async connect(id: string, options: BleCallOptions): Promise<void> {
    const peripheral = this.#known.get(id);
    if (!peripheral) throw new BleError('GH_BLE_OPERATION_FAILED', `unknown peripheral ${id}: not discovered`);
    this.#watch(peripheral);
    this.#connecting.add(id);
    try {
      await this.#calls.waitFor(peripheral, 'connect', () => peripheral.connect(), 'connect', options, id, (error: unknown) =>
        error ? new BleError('GH_BLE_OPERATION_FAILED', `connect failed: ${describeError(error)}`, { cause: error }) : undefined,
      );
    } catch (err) {
      if (peripheral.state === 'connecting') peripheral.cancelConnect();
      throw err;
    } finally {
      this.#connecting.delete(id);
    }
    this.#links.set(id, { peripheral, characteristics: new Map(), dataListeners: [] });
  }

  /** The ATT MTU of the link to `id`, within the protocol's bounds. */
  mtu(id: string): number {
    const raw = this.#links.get(id)?.peripheral.mtu;
    if (typeof raw !== 'number' || !Number.isInteger(raw)) return MIN_ATT_MTU;
    // noble's HCI GATT client stores the server's Exchange MTU answer as the link MTU, not the
    // smaller of both sides (Core 5.3 Vol 3 Part F §3.4.2.2): asked 256, answered 517, it reports
    // 517 while the server uses 256 and cuts longer values. Cap it at what noble asked for.
    const requested = this.#requestedMtu(id);
    const mtu = requested === undefined ? raw : Math.min(raw, requested);
    return Math.min(Math.max(mtu, MIN_ATT_MTU), MAX_ATT_MTU);
  }

  /** The MTU noble's HCI GATT client requested on this link (`undefined` with other bindings). */
  #requestedMtu(id: string): number | undefined {
    const bindings = (this.#noble() as unknown as { _bindings?: { _gatts?: Record<string, { _desired_mtu?: unknown } | undefined> } } | undefined)?._bindings;
    const desired = bindings?._gatts?.[id]?._desired_mtu;
    return typeof desired === 'number' && Number.isInteger(desired) && desired >= MIN_ATT_MTU ? desired : undefined;
  }

  /** Discover one characteristic of one service on the link to `id`. */
  async discover(id: string, serviceUuid: string, characteristicUuid: string, options: BleCallOptions): Promise<BleCharacteristicInfo> {
    const link = this.#link(id);
    const svc = normaliseUuid(serviceUuid);
    const chr = normaliseUuid(characteristicUuid);
    const [services] = await this.#calls.waitFor<[unknown]>(link.peripheral, 'servicesDiscover', () => link.peripheral.discoverServices([svc]), 'discoverServices', options, id);
    const service = Array.isArray(services) ? (services as NobleServiceLike[]).find((s) => normaliseUuid(String(s.uuid)) === svc) : undefined;
    if (!service) throw new BleError('GH_BLE_GATT_MISMATCH', `service ${svc} not found`);
    const [characteristics] = await this.#calls.waitFor<[unknown]>(service, 'characteristicsDiscover', () => service.discoverCharacteristics([chr]), 'discoverCharacteristics', options, id);
    const characteristic = Array.isArray(characteristics)
      ? (characteristics as NobleCharacteristicLike[]).find((c) => normaliseUuid(String(c.uuid)) === chr)
      : undefined;
    if (!characteristic) throw new BleError('GH_BLE_GATT_MISMATCH', `characteristic ${chr} not found`);
    link.characteristics.set(`${svc}/${chr}`, characteristic);
    const properties = Array.isArray(characteristic.properties)
      ? characteristic.properties.filter((p): p is string => typeof p === 'string').slice(0, 16)
      : [];
    return { serviceUuid: svc, uuid: chr, properties };
  }

  /** Enable notifications of a discovered characteristic; each notified value goes to `onValue`. */
  async subscribe(id: string, serviceUuid: string, characteristicUuid: string, onValue: (value: Uint8Array) => void, options: BleCallOptions): Promise<void> {
    const link = this.#link(id);
    const characteristic = this.#characteristic(link, serviceUuid, characteristicUuid);
    const listener = (data: unknown, isNotification: unknown): void => {
      if (isNotification !== true || !(data instanceof Uint8Array)) return;
      onValue(data);
    };
    characteristic.on('data', listener);
    link.dataListeners.push({ characteristic, listener: listener as (...args: unknown[]) => void });
    await this.#calls.waitFor(characteristic, 'notify', () => characteristic.notify(true), 'subscribe', options, id);
  }

  /** Write `value` to a discovered characteristic, with response. */
  async write(id: string, serviceUuid: string, characteristicUuid: string, value: Uint8Array, options: BleCallOptions): Promise<void> {
    const link = this.#link(id);
    const characteristic = this.#characteristic(link, serviceUuid, characteristicUuid);
    const data = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    // protocol-v1: write with response, so each chunk is acknowledged before the next.
    await this.#calls.waitFor(characteristic, 'write', () => characteristic.write(data, false), 'write', options, id);
  }

  /** Disconnect the link to `id`; resolves on the disconnect event (at once if there is no link). */
  async disconnect(id: string, options: BleCallOptions): Promise<void> {
    const link = this.#links.get(id);
    if (!link || link.peripheral.state === 'disconnected') {
      this.#dropLink(id);
      return;
    }
    const peripheral = link.peripheral;
    await this.#calls.run(
      options,
      'disconnect',
      id,
      (resolve, _reject, onSettle) => {
        const listener = (): void => resolve();
        peripheral.once('disconnect', listener);
        onSettle(() => peripheral.off('disconnect', listener));
        peripheral.disconnect();
      },
      true,
    );
  }

  #link(id: string): Link {
    const link = this.#links.get(id);
    if (!link) throw new BleError('GH_BLE_DISCONNECTED', `peripheral ${id} is not connected`);
    return link;
  }

  #characteristic(link: Link, serviceUuid: string, characteristicUuid: string): NobleCharacteristicLike {
    const c = link.characteristics.get(`${normaliseUuid(serviceUuid)}/${normaliseUuid(characteristicUuid)}`);
    if (!c) throw new BleError('GH_BLE_GATT_MISMATCH', `characteristic ${characteristicUuid} not discovered`);
    return c;
  }

  /**
   * noble keeps every peripheral it ever heard in plain objects keyed by id and never forgets
   * one; with rotating private addresses that grows without bound. Forget evicted ids there too.
   * Guarded: on a noble without these fields this does nothing.
   */
  #forgetInNoble(id: string): void {
    const internals = this.#noble() as unknown as Record<string, unknown> | undefined;
    if (internals === undefined) return;
    for (const field of ['_peripherals', '_services', '_characteristics', '_descriptors', '_discoveredPeripheralUUids']) {
      const table = internals[field];
      if (typeof table === 'object' && table !== null && Object.prototype.hasOwnProperty.call(table, id)) {
        delete (table as Record<string, unknown>)[id];
      }
    }
  }

  #watch(peripheral: NoblePeripheralLike): void {
    if (this.#watched.has(peripheral)) return;
    this.#watched.add(peripheral);
    peripheral.on('connect', (error: unknown) => {
      // A connection that completes after its connect call gave up (timeout, abort) would hold
      // a controller slot forever: nobody owns it, so drop it.
      if (!error && !this.#connecting.has(peripheral.id) && !this.#links.has(peripheral.id)) {
        this.#log.info('dropping a connection that completed after its connect call ended', { id: peripheral.id });
        peripheral.disconnect();
      }
    });
    peripheral.on('disconnect', (reason: unknown) => {
      const id = peripheral.id;
      this.#calls.rejectAll(id, 'GH_BLE_DISCONNECTED', `peripheral ${id} disconnected`);
      const wasLinked = this.#links.has(id);
      this.#dropLink(id);
      if (wasLinked) {
        const event: { id: string; reason?: number } = { id };
        if (typeof reason === 'number') event.reason = reason;
        this.#events.emit('disconnect', event);
      }
    });
  }

  #dropLink(id: string): void {
    const link = this.#links.get(id);
    if (!link) return;
    for (const { characteristic, listener } of link.dataListeners) characteristic.off('data', listener);
    this.#links.delete(id);
  }
}
