/**
 * `BleCentral` over @abandonware/noble. The ONLY file that imports noble (STYLE §1), and only
 * inside `start()`: requiring noble opens HCI sockets, and on a kernel without Bluetooth it
 * throws (EAFNOSUPPORT), which becomes `GH_BLE_UNAVAILABLE` instead of a crashed daemon.
 *
 * noble's callbacks carry no errors for most operations and sometimes never fire, so every call
 * here listens for the answering event itself, removes the listener when settled, and has a
 * timeout; a disconnect or the adapter leaving `poweredOn` rejects whatever is pending at once.
 */
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import type { Logger } from 'winston';
import { BleError, type BleErrorCode } from './errors.js';
import { MAX_ATT_MTU, MIN_ATT_MTU } from './framing.js';
import {
  normaliseUuid,
  type BleAdapterState,
  type BleAdvertisement,
  type BleCallOptions,
  type BleCentral,
  type BleCentralEvents,
  type BleCharacteristicInfo,
  type BleDiscovery,
} from './port.js';
import { silentLogger } from './silent-logger.js';

/** The parts of noble's `Noble` object this adapter uses (typed here: noble's own types are loose). */
interface NobleLike extends EventEmitter {
  readonly state: string;
  startScanning(serviceUuids: string[], allowDuplicates: boolean): void;
  stopScanning(): void;
}

interface NoblePeripheralLike extends EventEmitter {
  id: string;
  address: unknown;
  connectable: unknown;
  rssi: unknown;
  advertisement: unknown;
  mtu: unknown;
  state: string;
  connect(): void;
  cancelConnect(): void;
  disconnect(): void;
  discoverServices(uuids: string[]): void;
}

interface NobleServiceLike extends EventEmitter {
  uuid: string;
  discoverCharacteristics(uuids: string[]): void;
}

interface NobleCharacteristicLike extends EventEmitter {
  uuid: string;
  properties: unknown;
  write(data: Buffer, withoutResponse: boolean): void;
  notify(enable: boolean): void;
}

/** Options of `NobleCentral`. */
export interface NobleCentralOptions {
  /**
   * Radio bindings to build noble with (`@abandonware/noble/with-bindings`), e.g. the emulated
   * bindings of the tests. Default: noble's own platform bindings (HCI socket on Linux).
   */
  bindings?: EventEmitter;
  /** Module loader, for tests of the load-failure path; default Node's `require`. */
  require?: (id: string) => unknown;
  /** Per-operation timeout (ms), default 10 000. */
  operationTimeoutMs?: number;
  /** How long `start()` waits for the first adapter state (ms), default 10 000. */
  startTimeoutMs?: number;
  /** At most this many discovered peripherals are remembered for `connect` (LRU), default 256. */
  maxKnownPeripherals?: number;
  logger?: Logger;
}

const ADAPTER_STATES: ReadonlySet<string> = new Set(['unknown', 'resetting', 'unsupported', 'unauthorized', 'poweredOff', 'poweredOn']);
const UUID_RE = /^(?:[0-9a-f]{4}|[0-9a-f]{8}|[0-9a-f]{32})$/;
const ADDRESS_RE = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;
const MAX_SERVICE_UUIDS = 32;
const MAX_LOCAL_NAME = 64;
// AD structures fit 31 bytes legacy, 254 extended: anything larger did not come off the air.
const MAX_AD_FIELD_BYTES = 254;

interface Pending {
  reject: (err: BleError) => void;
  /** A disconnect op completes on the disconnect event instead of failing with it. */
  endsWithDisconnect: boolean;
}

interface Link {
  peripheral: NoblePeripheralLike;
  characteristics: Map<string, NobleCharacteristicLike>;
  dataListeners: Array<{ characteristic: NobleCharacteristicLike; listener: (...args: unknown[]) => void }>;
}

/**
 * The production `BleCentral`. Construct freely; nothing is loaded until `start()`.
 */
export class NobleCentral implements BleCentral {
  readonly #options: NobleCentralOptions;
  readonly #log: Logger;
  readonly #events = new EventEmitter();
  readonly #timeoutMs: number;
  readonly #maxKnown: number;
  #noble: NobleLike | undefined;
  #state: BleAdapterState = 'unknown';
  readonly #known = new Map<string, NoblePeripheralLike>();
  readonly #watched = new WeakSet<NoblePeripheralLike>();
  readonly #links = new Map<string, Link>();
  readonly #pending = new Map<string, Set<Pending>>();
  #detach: Array<() => void> = [];

  constructor(options: NobleCentralOptions = {}) {
    this.#options = options;
    this.#log = options.logger ?? silentLogger();
    this.#timeoutMs = options.operationTimeoutMs ?? 10_000;
    this.#maxKnown = options.maxKnownPeripherals ?? 256;
  }

  get state(): BleAdapterState {
    return this.#state;
  }

  /**
   * Sizes of what is held, for the status socket: peripherals remembered for connecting, open
   * links, and how many peripherals noble itself retains (undefined if noble hides it).
   */
  stats(): { known: number; links: number; nobleRetained: number | undefined } {
    const table = (this.#noble as unknown as Record<string, unknown> | undefined)?._peripherals;
    return {
      known: this.#known.size,
      links: this.#links.size,
      nobleRetained: typeof table === 'object' && table !== null ? Object.keys(table).length : undefined,
    };
  }

  on<E extends keyof BleCentralEvents>(event: E, listener: BleCentralEvents[E]): () => void {
    this.#events.on(event, listener);
    return () => this.#events.off(event, listener);
  }

  async start(options: BleCallOptions = {}): Promise<void> {
    const noble = this.#noble ?? this.#load();
    this.#noble = noble;
    const onState = (state: unknown): void => this.#onState(state);
    const onDiscover = (p: NoblePeripheralLike): void => this.#onDiscover(p);
    const onWarning = (message: unknown): void => {
      this.#log.warn('noble warning', { message: String(message) });
    };
    noble.on('warning', onWarning);
    noble.on('discover', onDiscover);
    // Subscribing to stateChange makes noble initialise its bindings (noble.js "lazy init").
    noble.on('stateChange', onState);
    this.#detach = [
      () => noble.off('stateChange', onState),
      () => noble.off('discover', onDiscover),
      () => noble.off('warning', onWarning),
    ];
    if (this.#state === 'unknown') {
      const timeoutMs = options.timeoutMs ?? this.#options.startTimeoutMs ?? this.#timeoutMs;
      await this.#firstState(timeoutMs, options.signal).catch((err: unknown) => {
        this.#teardown();
        throw new BleError('GH_BLE_UNAVAILABLE', `BLE unavailable: no adapter state (${describe(err)})`, { cause: err });
      });
    }
    if (this.#state === 'unsupported' || this.#state === 'unauthorized') {
      this.#teardown();
      throw new BleError('GH_BLE_UNAVAILABLE', `BLE unavailable: adapter is ${this.#state}`);
    }
  }

  /** The first adapter state report; noble gives none when the bindings fail to initialise. */
  #firstState(timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = (err?: BleError): void => {
        clearTimeout(timer);
        off();
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve();
      };
      const off = this.on('state', () => done());
      const timer = setTimeout(() => done(new BleError('GH_BLE_TIMEOUT', `no adapter state within ${timeoutMs} ms`)), timeoutMs);
      const onAbort = (): void => done(new BleError('GH_BLE_ABORTED', 'start aborted', { cause: signal?.reason }));
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  async stop(): Promise<void> {
    const noble = this.#noble;
    if (!noble) return;
    if (this.#state === 'poweredOn') {
      await this.stopScanning({ timeoutMs: Math.min(this.#timeoutMs, 2_000) }).catch((err: unknown) => {
        this.#log.debug('stopScanning during stop failed', { error: describe(err) });
      });
    }
    await Promise.all(
      [...this.#links.keys()].map((id) =>
        this.disconnect(id, { timeoutMs: Math.min(this.#timeoutMs, 2_000) }).catch((err: unknown) => {
          this.#log.debug('disconnect during stop failed', { id, error: describe(err) });
        }),
      ),
    );
    this.#rejectAll(undefined, 'GH_BLE_ABORTED', 'BLE central stopped');
    this.#teardown();
    this.#state = 'unknown';
  }

  async startScanning(serviceUuids: string[], options: BleCallOptions = {}): Promise<void> {
    const noble = this.#require();
    const uuids = serviceUuids.map(normaliseUuid);
    // No callback: noble's callback form leaves a once('scanStart') behind when nothing answers.
    // Without one, noble throws synchronously when not poweredOn (reported as OPERATION_FAILED).
    await this.#waitFor(noble, 'scanStart', () => noble.startScanning(uuids, true), 'startScanning', options, undefined);
  }

  async stopScanning(options: BleCallOptions = {}): Promise<void> {
    const noble = this.#require();
    await this.#waitFor(noble, 'scanStop', () => noble.stopScanning(), 'stopScanning', options, undefined);
  }

  async connect(id: string, options: BleCallOptions = {}): Promise<void> {
    if (this.#state !== 'poweredOn') throw new BleError('GH_BLE_ADAPTER_OFF', `cannot connect: adapter is ${this.#state}`);
    const peripheral = this.#known.get(id);
    if (!peripheral) throw new BleError('GH_BLE_OPERATION_FAILED', `unknown peripheral ${id}: not discovered`);
    this.#watch(peripheral);
    try {
      await this.#waitFor(peripheral, 'connect', () => peripheral.connect(), 'connect', options, id, (error: unknown) =>
        error ? new BleError('GH_BLE_OPERATION_FAILED', `connect failed: ${describe(error)}`, { cause: error }) : undefined,
      );
    } catch (err) {
      if (peripheral.state === 'connecting') peripheral.cancelConnect();
      throw err;
    }
    this.#links.set(id, { peripheral, characteristics: new Map(), dataListeners: [] });
  }

  mtu(id: string): number {
    const raw = this.#links.get(id)?.peripheral.mtu;
    if (typeof raw !== 'number' || !Number.isInteger(raw)) return MIN_ATT_MTU;
    return Math.min(Math.max(raw, MIN_ATT_MTU), MAX_ATT_MTU);
  }

  async discover(id: string, serviceUuid: string, characteristicUuid: string, options: BleCallOptions = {}): Promise<BleCharacteristicInfo> {
    const link = this.#link(id);
    const svc = normaliseUuid(serviceUuid);
    const chr = normaliseUuid(characteristicUuid);
    const [services] = await this.#waitFor<[unknown]>(link.peripheral, 'servicesDiscover', () => link.peripheral.discoverServices([svc]), 'discoverServices', options, id);
    const service = Array.isArray(services) ? (services as NobleServiceLike[]).find((s) => normaliseUuid(String(s.uuid)) === svc) : undefined;
    if (!service) throw new BleError('GH_BLE_GATT_MISMATCH', `service ${svc} not found`);
    const [characteristics] = await this.#waitFor<[unknown]>(service, 'characteristicsDiscover', () => service.discoverCharacteristics([chr]), 'discoverCharacteristics', options, id);
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

  async subscribe(
    id: string,
    serviceUuid: string,
    characteristicUuid: string,
    onValue: (value: Uint8Array) => void,
    options: BleCallOptions = {},
  ): Promise<void> {
    const link = this.#link(id);
    const characteristic = this.#characteristic(link, serviceUuid, characteristicUuid);
    const listener = (data: unknown, isNotification: unknown): void => {
      if (isNotification !== true || !(data instanceof Uint8Array)) return;
      onValue(data);
    };
    characteristic.on('data', listener);
    link.dataListeners.push({ characteristic, listener: listener as (...args: unknown[]) => void });
    await this.#waitFor(characteristic, 'notify', () => characteristic.notify(true), 'subscribe', options, id);
  }

  async write(id: string, serviceUuid: string, characteristicUuid: string, value: Uint8Array, options: BleCallOptions = {}): Promise<void> {
    const link = this.#link(id);
    const characteristic = this.#characteristic(link, serviceUuid, characteristicUuid);
    const data = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    // protocol-v1: write with response, so each chunk is acknowledged before the next.
    await this.#waitFor(characteristic, 'write', () => characteristic.write(data, false), 'write', options, id);
  }

  async disconnect(id: string, options: BleCallOptions = {}): Promise<void> {
    const link = this.#links.get(id);
    if (!link || link.peripheral.state === 'disconnected') {
      this.#dropLink(id);
      return;
    }
    const peripheral = link.peripheral;
    await this.#call(
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

  #load(): NobleLike {
    const load = this.#options.require ?? createRequire(import.meta.url);
    const injected = this.#options.bindings;
    let mod: unknown;
    try {
      mod = load(injected ? '@abandonware/noble/with-bindings' : '@abandonware/noble');
    } catch (err) {
      throw new BleError('GH_BLE_UNAVAILABLE', `BLE unavailable: ${describe(err)}`, { cause: err });
    }
    // @abandonware/noble changed its export shape between versions (module.exports vs. default).
    const value = unwrapDefault(mod, injected ? (v) => typeof v === 'function' : isNoble);
    if (injected) {
      if (typeof value !== 'function') throw new BleError('GH_BLE_UNAVAILABLE', 'BLE unavailable: noble/with-bindings exports no factory');
      const noble = (value as (b: EventEmitter) => unknown)(injected);
      if (!isNoble(noble)) throw new BleError('GH_BLE_UNAVAILABLE', 'BLE unavailable: noble factory returned no Noble');
      return noble;
    }
    if (!isNoble(value)) throw new BleError('GH_BLE_UNAVAILABLE', 'BLE unavailable: @abandonware/noble exports no Noble');
    return value;
  }

  #require(): NobleLike {
    if (!this.#noble) throw new BleError('GH_BLE_UNAVAILABLE', 'BLE central not started');
    return this.#noble;
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

  #onState(raw: unknown): void {
    const state = typeof raw === 'string' && ADAPTER_STATES.has(raw) ? (raw as BleAdapterState) : 'unknown';
    const previous = this.#state;
    this.#state = state;
    this.#log.info('BLE adapter state', { state, previous });
    if (state !== 'poweredOn') {
      // Links do not survive the adapter going away; fail what waits on them now, not at timeout.
      this.#rejectAll(undefined, 'GH_BLE_ADAPTER_OFF', `adapter is ${state}`);
      for (const [id, link] of [...this.#links]) {
        // Not every stack reports the disconnects when the adapter goes away; noble would then
        // think the peripheral still connected and refuse to connect it again.
        if (link.peripheral.state !== 'disconnected') link.peripheral.state = 'disconnected';
        this.#dropLink(id);
      }
    }
    this.#events.emit('state', state);
  }

  #onDiscover(peripheral: NoblePeripheralLike): void {
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
      connectable: peripheral.connectable === true,
      advertisement,
      malformed: malformed || address === 'unknown',
    };
    if (typeof peripheral.rssi === 'number' && Number.isFinite(peripheral.rssi)) discovery.rssi = peripheral.rssi;
    this.#events.emit('discover', discovery);
  }

  /**
   * noble keeps every peripheral it ever heard in plain objects keyed by id and never forgets
   * one; with rotating private addresses that grows without bound. Forget evicted ids there too.
   * Guarded: on a noble without these fields this does nothing.
   */
  #forgetInNoble(id: string): void {
    const internals = this.#noble as unknown as Record<string, unknown>;
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
    peripheral.on('disconnect', (reason: unknown) => {
      const id = peripheral.id;
      this.#rejectAll(id, 'GH_BLE_DISCONNECTED', `peripheral ${id} disconnected`);
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

  #rejectAll(id: string | undefined, code: BleErrorCode, message: string): void {
    const groups = id === undefined ? [...this.#pending.values()] : [this.#pending.get(id) ?? new Set<Pending>()];
    for (const group of groups) {
      for (const p of [...group]) if (!(code === 'GH_BLE_DISCONNECTED' && p.endsWithDisconnect)) p.reject(new BleError(code, message));
    }
  }

  #teardown(): void {
    for (const d of this.#detach) d();
    this.#detach = [];
  }

  /** Wait for `event` on `emitter` after `invoke()`, with timeout, abort and disconnect handling. */
  #waitFor<T extends unknown[] = unknown[]>(
    emitter: EventEmitter,
    event: string,
    invoke: () => void,
    what: string,
    options: BleCallOptions,
    id: string | undefined,
    check?: (...args: unknown[]) => BleError | undefined,
  ): Promise<T> {
    return this.#call<T>(options, what, id, (resolve, reject, onSettle) => {
      const listener = (...args: unknown[]): void => {
        const failure = check?.(...args);
        if (failure) reject(failure);
        else resolve(args as T);
      };
      emitter.once(event, listener);
      onSettle(() => emitter.off(event, listener));
      invoke();
    });
  }

  /** Run one operation with a deadline, an abort signal, and registration for disconnects. */
  #call<T = void>(
    options: BleCallOptions,
    what: string,
    id: string | undefined,
    run: (resolve: (v: T) => void, reject: (e: BleError) => void, onSettle: (f: () => void) => void) => void,
    endsWithDisconnect = false,
  ): Promise<T> {
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    return new Promise<T>((resolve, reject) => {
      const cleanups: Array<() => void> = [];
      let settled = false;
      const settle = (): boolean => {
        if (settled) return false;
        settled = true;
        for (const c of cleanups) c();
        return true;
      };
      const pending: Pending = { reject: (e) => settle() && reject(e), endsWithDisconnect };
      const key = id ?? '';
      const group = this.#pending.get(key) ?? new Set<Pending>();
      this.#pending.set(key, group);
      group.add(pending);
      cleanups.push(() => {
        group.delete(pending);
        if (group.size === 0) this.#pending.delete(key);
      });
      const timer = setTimeout(() => pending.reject(new BleError('GH_BLE_TIMEOUT', `${what} did not answer within ${timeoutMs} ms`)), timeoutMs);
      cleanups.push(() => clearTimeout(timer));
      const signal = options.signal;
      if (signal) {
        if (signal.aborted) return pending.reject(new BleError('GH_BLE_ABORTED', `${what} aborted`, { cause: signal.reason }));
        const onAbort = (): void => pending.reject(new BleError('GH_BLE_ABORTED', `${what} aborted`, { cause: signal.reason }));
        signal.addEventListener('abort', onAbort, { once: true });
        cleanups.push(() => signal.removeEventListener('abort', onAbort));
      }
      try {
        run(
          (v) => settle() && resolve(v),
          (e) => pending.reject(e),
          (f) => (settled ? f() : cleanups.push(f)),
        );
      } catch (err) {
        pending.reject(new BleError('GH_BLE_OPERATION_FAILED', `${what} failed: ${describe(err)}`, { cause: err }));
      }
    });
  }
}

function isNoble(v: unknown): v is NobleLike {
  return typeof v === 'object' && v !== null && typeof (v as NobleLike).startScanning === 'function' && typeof (v as NobleLike).on === 'function';
}

function unwrapDefault(mod: unknown, accept: (v: unknown) => boolean): unknown {
  if (accept(mod)) return mod;
  if ((typeof mod === 'object' || typeof mod === 'function') && mod !== null && 'default' in mod) return (mod as { default: unknown }).default;
  return mod;
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

/**
 * Check and bound what noble parsed off the air: advertisement data comes from anyone in radio
 * range. Fields of the wrong type or size are dropped and flagged, never trusted.
 */
export function sanitiseAdvertisement(raw: unknown): { advertisement: BleAdvertisement; malformed: boolean } {
  const advertisement: BleAdvertisement = { serviceUuids: [] };
  if (typeof raw !== 'object' || raw === null) return { advertisement, malformed: true };
  const ad = raw as Record<string, unknown>;
  let malformed = false;
  if (ad.serviceUuids !== undefined) {
    if (!Array.isArray(ad.serviceUuids)) malformed = true;
    else {
      for (const u of ad.serviceUuids.slice(0, MAX_SERVICE_UUIDS)) {
        const n = typeof u === 'string' ? normaliseUuid(u) : '';
        if (UUID_RE.test(n)) {
          if (!advertisement.serviceUuids.includes(n)) advertisement.serviceUuids.push(n);
        } else malformed = true;
      }
      if (ad.serviceUuids.length > MAX_SERVICE_UUIDS) malformed = true;
    }
  }
  if (ad.localName !== undefined) {
    // Printable ASCII/UTF-8 only: the name goes to logs and the status socket.
    if (typeof ad.localName === 'string' && ad.localName.length <= MAX_LOCAL_NAME && !/\p{Cc}/u.test(ad.localName)) {
      advertisement.localName = ad.localName;
    } else malformed = true;
  }
  if (ad.manufacturerData !== undefined && ad.manufacturerData !== null) {
    if (!(ad.manufacturerData instanceof Uint8Array) || ad.manufacturerData.length > MAX_AD_FIELD_BYTES) malformed = true;
  }
  if (ad.serviceData !== undefined) {
    if (!Array.isArray(ad.serviceData)) malformed = true;
    else if (
      ad.serviceData.some(
        (d: unknown) =>
          typeof d !== 'object' ||
          d === null ||
          typeof (d as { uuid?: unknown }).uuid !== 'string' ||
          !((d as { data?: unknown }).data instanceof Uint8Array) ||
          ((d as { data: Uint8Array }).data.length > MAX_AD_FIELD_BYTES),
      )
    )
      malformed = true;
  }
  return { advertisement, malformed };
}
