/**
 * `BleCentral` over @abandonware/noble. The ONLY file that imports noble (CONTRIBUTING.md §1), and only
 * inside `start()`: requiring noble opens HCI sockets, and on a kernel without Bluetooth it
 * throws (EAFNOSUPPORT), which becomes `GH_BLE_UNAVAILABLE` instead of a crashed daemon.
 *
 * noble's callbacks carry no errors for most operations and sometimes never fire, so every call
 * here listens for the answering event itself, removes the listener when settled, and has a
 * timeout; a disconnect or the adapter leaving `poweredOn` rejects whatever is pending at once.
 * This file loads noble and drives the adapter (state, scanning); the peripherals and their links
 * are kept by noble-links.ts, and noble's object shapes are in noble-shapes.ts (neither loads noble).
 */
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import type { Logger } from 'winston';
import { silentLogger } from '../../../common/log/logger.js';
import { BleError } from './errors.js';
import { normaliseUuid, type BleAdapterState, type BleCallOptions, type BleCentral, type BleCentralEvents, type BleCharacteristicInfo } from './port.js';
import { describeError, PendingCalls } from './pending-calls.js';
import { isNoble, unwrapDefault, type NobleLike, type NoblePeripheralLike } from './noble-shapes.js';
import { NobleLinks } from './noble-links.js';

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

/** The production `BleCentral`. Construct freely; nothing is loaded until `start()`. */
export class NobleCentral implements BleCentral {
  readonly #options: NobleCentralOptions;
  readonly #log: Logger;
  readonly #events = new EventEmitter();
  readonly #timeoutMs: number;
  #noble: NobleLike | undefined;
  /** Releases what `#load` opened for a UART (the serial port, noble's adapter poll); else undefined. */
  #release: (() => void) | undefined;
  #state: BleAdapterState = 'unknown';
  readonly #calls: PendingCalls;
  readonly #links: NobleLinks;
  #detach: Array<() => void> = [];

  constructor(options: NobleCentralOptions = {}) {
    this.#options = options;
    this.#log = options.logger ?? silentLogger();
    this.#timeoutMs = options.operationTimeoutMs ?? 10_000;
    this.#calls = new PendingCalls(this.#timeoutMs);
    this.#links = new NobleLinks({
      calls: this.#calls,
      events: this.#events,
      log: this.#log,
      maxKnown: options.maxKnownPeripherals ?? 256,
      noble: () => this.#noble,
    });
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
      known: this.#links.knownCount,
      links: this.#links.linkCount,
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
    const onDiscover = (p: NoblePeripheralLike): void => this.#links.onDiscover(p);
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
      this.#links.linkIds().map((id) =>
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
    this.#links.forgetKnown();
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
    await this.#links.connect(id, options);
  }

  mtu(id: string): number {
    return this.#links.mtu(id);
  }

  discover(id: string, serviceUuid: string, characteristicUuid: string, options: BleCallOptions = {}): Promise<BleCharacteristicInfo> {
    return this.#links.discover(id, serviceUuid, characteristicUuid, options);
  }

  subscribe(id: string, serviceUuid: string, characteristicUuid: string, onValue: (value: Uint8Array) => void, options: BleCallOptions = {}): Promise<void> {
    return this.#links.subscribe(id, serviceUuid, characteristicUuid, onValue, options);
  }

  write(id: string, serviceUuid: string, characteristicUuid: string, value: Uint8Array, options: BleCallOptions = {}): Promise<void> {
    return this.#links.write(id, serviceUuid, characteristicUuid, value, options);
  }

  disconnect(id: string, options: BleCallOptions = {}): Promise<void> {
    return this.#links.disconnect(id, options);
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

  #onState(raw: unknown): void {
    const state = typeof raw === 'string' && ADAPTER_STATES.has(raw) ? (raw as BleAdapterState) : 'unknown';
    const previous = this.#state;
    this.#state = state;
    this.#log.info('BLE adapter state', { state, previous });
    if (state !== 'poweredOn') {
      // Links do not survive the adapter going away; fail what waits on them now, not at timeout.
      this.#calls.rejectAll(undefined, 'GH_BLE_ADAPTER_OFF', `adapter is ${state}`);
      this.#links.dropAll();
    }
    this.#events.emit('state', state);
  }

  #teardown(): void {
    for (const d of this.#detach) d();
    this.#detach = [];
  }
}
