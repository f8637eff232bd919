/**
 * `BleCentral` over @abandonware/noble. The ONLY file that imports noble (CONTRIBUTING.md §1), and only
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
import { silentLogger } from '../../../common/log/logger.js';
import { BleError } from './errors.js';
import { MAX_ATT_MTU, MIN_ATT_MTU } from '../../../protocol/index.js';
import {
  normaliseUuid,
  type BleAdapterState,
  type BleCallOptions,
  type BleCentral,
  type BleCentralEvents,
  type BleCharacteristicInfo,
  type BleDiscovery,
} from './port.js';
import { describeError, PendingCalls } from './pending-calls.js';
import { sanitiseAdvertisement } from './advertisement.js';

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
  /**
   * Drive a controller on an HCI UART (H4) at this serial port path instead of the kernel's HCI
   * socket: noble's own HCI bindings over the UART driver of the hci-socket package
   * (`@stoprocent/bluetooth-hci-socket`, docs/dependencies.md). Each `NobleCentral` then has its
   * own noble and its own port, released by `stop()`. The process-wide alternative is the
   * library's environment variable `BLUETOOTH_HCI_SOCKET_UART_PORT` (docs/ble.md).
   */
  hciUartPort?: string;
  /** Baud rate of `hciUartPort` (default 1 000 000, the library's). */
  hciUartBaudRate?: number;
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
const ADDRESS_RE = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;

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
  /** Releases what `#load` opened for a UART (the serial port, noble's adapter poll); else undefined. */
  #release: (() => void) | undefined;
  #state: BleAdapterState = 'unknown';
  readonly #known = new Map<string, NoblePeripheralLike>();
  readonly #watched = new WeakSet<NoblePeripheralLike>();
  readonly #links = new Map<string, Link>();
  readonly #connecting = new Set<string>();
  readonly #calls: PendingCalls;
  #detach: Array<() => void> = [];

  constructor(options: NobleCentralOptions = {}) {
    this.#options = options;
    this.#log = options.logger ?? silentLogger();
    this.#timeoutMs = options.operationTimeoutMs ?? 10_000;
    this.#calls = new PendingCalls(this.#timeoutMs);
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
    // After a stop() noble is already initialised and reports no new state: take its current one.
    const current = noble.state;
    if (this.#state === 'unknown' && current !== 'unknown' && ADAPTER_STATES.has(current)) this.#state = current as BleAdapterState;
    if (this.#state === 'unknown') {
      const timeoutMs = options.timeoutMs ?? this.#options.startTimeoutMs ?? this.#timeoutMs;
      await this.#firstState(timeoutMs, options.signal).catch((err: unknown) => {
        this.#teardown();
        this.#releaseOwnNoble();
        throw new BleError('GH_BLE_UNAVAILABLE', `BLE unavailable: no adapter state (${describeError(err)})`, { cause: err });
      });
    }
    if (this.#state === 'unsupported' || this.#state === 'unauthorized') {
      this.#teardown();
      this.#releaseOwnNoble();
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
        this.#log.debug('stopScanning during stop failed', { error: describeError(err) });
      });
    }
    await Promise.all(
      [...this.#links.keys()].map((id) =>
        this.disconnect(id, { timeoutMs: Math.min(this.#timeoutMs, 2_000) }).catch((err: unknown) => {
          this.#log.debug('disconnect during stop failed', { id, error: describeError(err) });
        }),
      ),
    );
    this.#calls.rejectAll(undefined, 'GH_BLE_ABORTED', 'BLE central stopped');
    this.#teardown();
    this.#state = 'unknown';
    this.#releaseOwnNoble();
  }

  /** A UART-driven noble is this instance's own: close its port; a later start() opens a new one. */
  #releaseOwnNoble(): void {
    if (!this.#release) return;
    this.#release();
    this.#release = undefined;
    this.#noble = undefined;
    this.#known.clear();
  }

  async startScanning(serviceUuids: string[], options: BleCallOptions = {}): Promise<void> {
    const noble = this.#require();
    const uuids = serviceUuids.map(normaliseUuid);
    // No callback: noble's callback form leaves a once('scanStart') behind when nothing answers.
    // Without one, noble throws synchronously when not poweredOn (reported as OPERATION_FAILED).
    await this.#calls.waitFor(noble, 'scanStart', () => noble.startScanning(uuids, true), 'startScanning', options, undefined);
  }

  async stopScanning(options: BleCallOptions = {}): Promise<void> {
    const noble = this.#require();
    await this.#calls.waitFor(noble, 'scanStop', () => noble.stopScanning(), 'stopScanning', options, undefined);
  }

  async connect(id: string, options: BleCallOptions = {}): Promise<void> {
    if (this.#state !== 'poweredOn') throw new BleError('GH_BLE_ADAPTER_OFF', `cannot connect: adapter is ${this.#state}`);
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
    const bindings = (this.#noble as unknown as { _bindings?: { _gatts?: Record<string, { _desired_mtu?: unknown } | undefined> } } | undefined)?._bindings;
    const desired = bindings?._gatts?.[id]?._desired_mtu;
    return typeof desired === 'number' && Number.isInteger(desired) && desired >= MIN_ATT_MTU ? desired : undefined;
  }

  async discover(id: string, serviceUuid: string, characteristicUuid: string, options: BleCallOptions = {}): Promise<BleCharacteristicInfo> {
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
    await this.#calls.waitFor(characteristic, 'notify', () => characteristic.notify(true), 'subscribe', options, id);
  }

  async write(id: string, serviceUuid: string, characteristicUuid: string, value: Uint8Array, options: BleCallOptions = {}): Promise<void> {
    const link = this.#link(id);
    const characteristic = this.#characteristic(link, serviceUuid, characteristicUuid);
    const data = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    // protocol-v1: write with response, so each chunk is acknowledged before the next.
    await this.#calls.waitFor(characteristic, 'write', () => characteristic.write(data, false), 'write', options, id);
  }

  async disconnect(id: string, options: BleCallOptions = {}): Promise<void> {
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

  #load(): NobleLike {
    const load = this.#options.require ?? createRequire(import.meta.url);
    if (this.#options.hciUartPort !== undefined && !this.#options.bindings) return this.#loadUart(load, this.#options.hciUartPort);
    const injected = this.#options.bindings;
    let mod: unknown;
    try {
      mod = load(injected ? '@abandonware/noble/with-bindings' : '@abandonware/noble');
    } catch (err) {
      throw new BleError('GH_BLE_UNAVAILABLE', `BLE unavailable: ${describeError(err)}`, { cause: err });
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
    // noble's HCI bindings re-arm a 1 s adapter poll forever, a timer that keeps the process
    // alive (measured: a process that only loads noble never exits): stop() ends the chain and
    // closes the socket, so a stopped central leaves nothing running. noble is a process-wide
    // singleton, so a later start() in the same process does not poll the adapter again.
    const hci = (value as { _bindings?: { _hci?: { pollIsDevUp?: () => void; _socket?: { stop?: () => void } } } })._bindings?._hci;
    if (hci !== undefined) {
      this.#release = () => {
        hci.pollIsDevUp = () => undefined;
        try {
          hci._socket?.stop?.();
        } catch (err) {
          this.#log.debug('closing the HCI socket failed', { error: describeError(err) });
        }
      };
    }
    return value;
  }

  /**
   * noble over an HCI UART: noble's own HCI bindings (`lib/hci-socket/bindings`), whose socket
   * is replaced, before it binds, by the hci-socket package's UART driver bound to `port`. The
   * package picks its driver once per process from the environment; building the UART socket
   * here lets one process hold several centrals on several ports and leaves the environment alone.
   */
  #loadUart(load: (id: string) => unknown, port: string): NobleLike {
    interface UartSocket extends EventEmitter {
      bindRaw(devId?: number, params?: unknown): void;
      stop(): void;
    }
    interface HciLike {
      _socket: UartSocket;
      pollIsDevUp: () => void;
    }
    const baudRate = this.#options.hciUartBaudRate ?? 1_000_000;
    if (typeof port !== 'string' || port.length === 0 || !Number.isSafeInteger(baudRate) || baudRate <= 0) {
      throw new BleError('GH_BLE_UNAVAILABLE', 'BLE unavailable: the HCI UART port must be a path and the baud rate a positive integer');
    }
    type HciBindings = EventEmitter & { _hci?: HciLike; init?: (...args: unknown[]) => void; onSigIntBinded?: (...args: unknown[]) => void };
    let bindings: HciBindings;
    let factory: unknown;
    try {
      const nobleDir = createRequire(import.meta.url).resolve('@abandonware/noble/package.json');
      const Uart = createRequire(nobleDir)('@abandonware/bluetooth-hci-socket/lib/uart.js') as new () => UartSocket;
      const Bindings = load('@abandonware/noble/lib/hci-socket/bindings.js') as new (options: object) => HciBindings;
      factory = unwrapDefault(load('@abandonware/noble/with-bindings'), (v) => typeof v === 'function');
      bindings = new Bindings({});
      const hci = bindings._hci;
      if (!hci || typeof Uart !== 'function') throw new Error('noble HCI bindings without an HCI object');
      const socket = new Uart();
      const bindRaw = socket.bindRaw.bind(socket);
      socket.bindRaw = (devId) => bindRaw(devId, { uart: { port, baudRate } });
      hci._socket = socket;
      // noble's bindings add process SIGINT and exit listeners in init() and never remove them;
      // note the exit ones so that stop() can (one noble per start, several per test process).
      const added: Array<(...args: unknown[]) => void> = [];
      const init = bindings.init?.bind(bindings);
      if (init) {
        bindings.init = (...args: unknown[]) => {
          const before = new Set(process.listeners('exit'));
          try {
            init(...args);
          } finally {
            for (const l of process.listeners('exit')) if (!before.has(l)) added.push(l as (...a: unknown[]) => void);
          }
        };
      }
      const own = bindings;
      this.#release = () => {
        if (own.onSigIntBinded) process.off('SIGINT', own.onSigIntBinded);
        for (const l of added) process.off('exit', l);
        // noble re-arms a 1 s adapter poll forever; end the chain, then close the port.
        hci.pollIsDevUp = () => undefined;
        try {
          socket.stop();
        } catch (err) {
          this.#log.debug('closing the HCI UART failed', { error: describeError(err) });
        }
      };
    } catch (err) {
      throw new BleError('GH_BLE_UNAVAILABLE', `BLE unavailable: HCI UART ${port}: ${describeError(err)}`, { cause: err });
    }
    if (typeof factory !== 'function') throw new BleError('GH_BLE_UNAVAILABLE', 'BLE unavailable: noble/with-bindings exports no factory');
    const noble = (factory as (b: EventEmitter) => unknown)(bindings);
    if (!isNoble(noble)) throw new BleError('GH_BLE_UNAVAILABLE', 'BLE unavailable: noble factory returned no Noble');
    return noble;
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
      this.#calls.rejectAll(undefined, 'GH_BLE_ADAPTER_OFF', `adapter is ${state}`);
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
      // A boolean from legacy advertising reports; noble's extended-report path hands up the
      // event type's connectable bit as a number (1).
      connectable: peripheral.connectable === true || peripheral.connectable === 1,
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

  #teardown(): void {
    for (const d of this.#detach) d();
    this.#detach = [];
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
