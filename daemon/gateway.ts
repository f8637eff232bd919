/**
 * The composition root (CONTRIBUTING.md §4): one `Gateway` builds every service from the validated
 * config and injected dependencies (the builders are in compose.ts), starts them in order — key
 * store → session/credential → backend client → pipeline → MQTT broker and BLE → status socket —
 * then tells systemd READY=1, and stops them in reverse. Nothing starts at import time.
 */
import type { EventEmitter } from 'node:events';
import type { Logger } from 'winston';
import type { BackendClient } from './backend-client/client.js';
import { monotonicClock, systemClock, type Clock, type TimerClock } from '../common/clock.js';
import type { SessionManager } from './backend-client/session.js';
import type { DataPlane } from './uplink/data-plane.js';
import { MsgRelay } from './sessions/msg-relay.js';
import { msgRelaySettings } from './config/settings.js';
import { CONFIG_SCHEMA, type GatehouseConfig } from './config/schema.js';
import { logError, silentLogger } from '../common/log/logger.js';
import type { Pipeline } from './pipeline/pipeline.js';
import type { DecisionEvent } from './pipeline/types.js';
import { GatehouseMetrics } from './status/metrics.js';
import { registerRevocationMetrics } from './status/revocation-metrics.js';
import { missingGroupLevel, StatusServer } from './status/server.js';
import { createSystemdNotifier, type SystemdNotifier } from './systemd/notify.js';
import { GatewayStatus, uplinkStatus } from './gateway-status.js';
import { CodedError } from '../common/errors.js';
import type { MqttTransport } from './transports/mqtt/transport.js';
import type { BleTransport } from './transports/ble/transport.js';
import type { KeyStore } from '../tpm/key-store.js';
import type { SessionTable } from './sessions/table.js';
import type { SessionServices } from './sessions/open.js';
import {
  backendKeysOf,
  buildBackendClient,
  buildBackendHttp,
  buildBle,
  buildDataPlane,
  buildKeyStore,
  buildMqtt,
  buildPipeline,
  buildSession,
  buildSessionTable,
  timedSigner,
  type BackendParts,
} from './compose.js';

export { softwareKeyFile } from './compose.js';

export type GatewayErrorCode =
  /** An operation that needs a started gateway was called before start(). */
  | 'GH_GATEWAY_NOT_STARTED'
  /** start() or stop() called in a state that does not allow it. */
  | 'GH_GATEWAY_STATE'
  /** stop() was called while start() was still running. */
  | 'GH_GATEWAY_STOPPED_WHILE_STARTING'
  /** A service did not stop within its deadline. */
  | 'GH_GATEWAY_STOP_TIMEOUT';

/** The gateway's lifecycle was misused or did not complete. */
export class GatewayError extends CodedError<GatewayErrorCode> {}

export interface GatewayOptions {
  config: GatehouseConfig;
  /** The config file the daemon was started with (for `gatehouse check`). */
  configFile: string;
  logger?: Logger;
  /** Injected key store; built from `config.tpm` when absent. */
  keyStore?: KeyStore;
  /** Injected systemd notifier; a real one (a no-op without NOTIFY_SOCKET) when absent. */
  notifier?: SystemdNotifier;
  /** Radio bindings for noble (the emulated radio in tests and the demo); noble's own when absent. */
  bleBindings?: EventEmitter;
  /** A BLE controller's HCI UART for noble (Bumble's virtual controllers in tests) instead of the HCI socket. */
  bleHciUartPort?: string;
  /** Wall-clock time (sessions, leases, signatures' `created`); the system clock when absent. */
  clock?: TimerClock;
  /**
   * Elapsed time (challenge TTLs, rate limits): monotonic (`performance.now`) when absent, unless
   * only `clock` is injected, which then serves both (tests that expire challenges by hand).
   */
  elapsedClock?: Clock;
  /** How long `stop()` lets in-flight exchanges finish (default 10 000 ms). */
  drainTimeoutMs?: number;
}

type Stopper = { name: string; stop: () => Promise<void> | void };

/** The daemon. `start()` once, `stop()` once. */
export class Gateway {
  readonly metrics = new GatehouseMetrics({ processMetrics: true });
  readonly #o: GatewayOptions;
  readonly #log: Logger;
  readonly #notifier: SystemdNotifier;
  readonly #clock: TimerClock;
  /** Started services, stopped in reverse. */
  readonly #stoppers: Stopper[] = [];
  #session: SessionManager | undefined;
  #client: BackendClient | undefined;
  #dataPlane: DataPlane | undefined;
  /** protocol-v2 "msg": every transport's session table attaches here; MQTT feeds it broker messages. */
  readonly msgRelay: MsgRelay;
  #sessions: SessionTable | undefined;
  #pipeline: Pipeline | undefined;
  #mqtt: MqttTransport | undefined;
  #ble: BleTransport | undefined;
  /** Why BLE did not start (for `gatehouse scan`). */
  #bleUnavailable: string | undefined;
  #state: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new';
  #statusTimer: NodeJS.Timeout | undefined;
  /** The running start(), so that a stop() during it can wait for it to give up. */
  #starting: Promise<void> | undefined;
  #stopRequested = false;

  constructor(options: GatewayOptions) {
    this.#o = options;
    this.#log = options.logger ?? silentLogger();
    this.#notifier = options.notifier ?? createSystemdNotifier({ logger: this.#log.child({ area: 'systemd' }) });
    this.#clock = options.clock ?? systemClock;
    this.msgRelay = new MsgRelay(msgRelaySettings(options.config));
  }

  get state(): string {
    return this.#state;
  }

  /** The pipeline (for tests and the demo's summary). */
  get pipeline(): Pipeline {
    if (this.#pipeline === undefined) throw new GatewayError('GH_GATEWAY_NOT_STARTED', 'the gateway is not started');
    return this.#pipeline;
  }

  /** Bound MQTT listener addresses. */
  mqttAddresses(): ReturnType<MqttTransport['addresses']> {
    return this.#mqtt?.addresses() ?? {};
  }

  /** The session manager's counters (TPM signatures, renewals). */
  sessionStats(): ReturnType<SessionManager['stats']> | undefined {
    return this.#session?.stats();
  }

  /** The data plane's queue, uploader and command counters. */
  dataPlaneStats(): ReturnType<DataPlane['stats']> | undefined {
    return this.#dataPlane?.stats();
  }

  /** The live protocol-v2 sessions of every transport, once started. */
  get sessions(): SessionTable | undefined {
    return this.#sessions;
  }

  /** The data plane (queue, uploader, commands), once started. */
  get dataPlane(): DataPlane | undefined {
    return this.#dataPlane;
  }

  backendStats(): ReturnType<BackendClient['stats']> | undefined {
    return this.#client?.stats();
  }

  start(): Promise<void> {
    if (this.#state !== 'new') return Promise.reject(new GatewayError('GH_GATEWAY_STATE', `start() in state ${this.#state}`));
    this.#state = 'starting';
    this.#starting = this.#start();
    return this.#starting;
  }

  /** Between start steps: a stop() asked for meanwhile ends the start (what started is stopped). */
  #giveUpIfStopRequested(): void {
    if (this.#stopRequested) throw new GatewayError('GH_GATEWAY_STOPPED_WHILE_STARTING', 'stop requested while starting');
  }

  async #start(): Promise<void> {
    const cfg = this.#o.config;
    const gw = cfg.gateway.id;
    try {
      // 1. Key store: the gateway identity. Without it nothing else may run.
      const keyStore = this.#o.keyStore ?? buildKeyStore(cfg, this.#log);
      await keyStore.open();
      this.#stoppers.push({ name: 'key store', stop: () => keyStore.close() });
      this.#giveUpIfStopRequested();

      // 2. Backend link and session key, authorised once by the TPM key.
      const { http, dispatcher } = await buildBackendHttp(cfg, this.metrics);
      this.#stoppers.push({ name: 'backend dispatcher', stop: () => dispatcher.close() });
      const parts: BackendParts = { cfg, http, backendKeys: backendKeysOf(cfg), clock: this.#clock, log: this.#log };
      const session = buildSession(parts, keyStore, timedSigner(keyStore.signer(`tpm:${gw}`), this.metrics.tpmSignLatency));
      this.#session = session;
      this.#stoppers.push({ name: 'session', stop: () => session.stop() });
      // A backend that is down at start is not fatal: the session manager keeps retrying, and
      // until it succeeds rejects go out unsigned (protocol-v1 "The exchange").
      if (!(await session.start())) this.#log.warn('no gateway session yet: the backend did not grant one; retrying in the background');
      this.#giveUpIfStopRequested();

      const client = buildBackendClient(parts, session);
      await client.start();
      this.#client = client;
      this.#stoppers.push({ name: 'backend client', stop: () => client.stop() });
      this.#giveUpIfStopRequested();

      // 2b. The data plane (protocol v2 only: a v1 gateway has no sessions to carry data): the
      // durable queue first (a receipt needs it), then its uploader and command poll.
      const dataPlane = buildDataPlane(parts, session);
      if (dataPlane !== undefined) {
        dataPlane.start();
        this.#dataPlane = dataPlane;
        this.#stoppers.push({ name: 'data plane', stop: () => dataPlane.stop() });
      }
      // One v2 session table for every transport (the command relay follows it).
      const sessions = buildSessionTable(cfg, this.#dataPlane);
      this.#sessions = sessions;
      this.#giveUpIfStopRequested();

      // 3. The pipeline, one for both transports.
      const pipeline = buildPipeline(cfg, {
        client,
        session,
        clock: this.#clock,
        // Elapsed time (challenge TTLs, rate limits) is monotonic unless a test injects the clock.
        elapsedClock: this.#o.elapsedClock ?? this.#o.clock ?? monotonicClock,
        log: this.#log,
      });
      this.#pipeline = pipeline;
      this.#stoppers.push({ name: 'pipeline', stop: () => pipeline.close() });
      const unsubscribe = pipeline.events.subscribe((e: DecisionEvent) => this.metrics.recordDecision(e));
      this.#stoppers.push({ name: 'metrics', stop: unsubscribe });

      // 4. Transports. The status model watches them for the peripherals list.
      const status = new GatewayStatus({ gateway: this, config: cfg, configFile: this.#o.configFile, keyStore, session, client, pipeline, clock: this.#clock, logger: this.#log.child({ area: 'status' }), sessions, ...(this.#dataPlane === undefined ? {} : { dataPlane: this.#dataPlane }) });
      const mqtt = await this.#startMqtt(pipeline, client, sessions);
      status.attachMqtt(mqtt);
      if (cfg.ble.enabled) status.attachBle(await this.#startBle(pipeline, client, { table: sessions, publishLocal: (t, b) => mqtt.publishLocal(t, b), ...(this.#dataPlane === undefined ? {} : { dataPlane: this.#dataPlane }) }), this.#bleUnavailable);
      this.#giveUpIfStopRequested();

      // 5. The status socket, last: it reports on everything above.
      const server = new StatusServer({
        socketPath: cfg.status.socketPath,
        source: status,
        group: cfg.status.group,
        missingGroup: missingGroupLevel(cfg.status.group, CONFIG_SCHEMA.fields.status.fields.group.default, process.env),
        logger: this.#log.child({ area: 'status' }),
      });
      await server.start();
      this.#stoppers.push({ name: 'status socket', stop: () => server.stop() });
      this.#giveUpIfStopRequested();

      this.#state = 'running';
      this.#notifier.ready(status.line());
      const stopWatchdog = this.#notifier.startWatchdog();
      this.#stoppers.push({ name: 'watchdog', stop: stopWatchdog });
      this.metrics.setSources({
        connections: () => ({ mqtt: mqtt.stats().connections, ble: this.#ble?.stats().active ?? 0 }),
        credentialNotAfter: () => (session.stats().notAfter > 0 ? session.stats().notAfter : undefined),
        sessions: () => sessions.counters(),
        msgs: () => this.msgRelay.stats(),
        uplink: () => {
          const d = this.#dataPlane?.stats();
          return d === undefined ? undefined : uplinkStatus(d);
        },
      });
      registerRevocationMetrics(this.metrics.registry, () => client.stats());
      this.#statusTimer = setInterval(() => this.#notifier.status(status.line()), 5000);
      this.#statusTimer.unref();
      this.#log.info('gateway running', { gw, mqtt: mqtt.addresses(), ble: cfg.ble.enabled, keyStore: keyStore.kind });
    } catch (err) {
      if (this.#stopRequested) this.#log.info('stop requested while starting; stopping what started');
      else logError(this.#log, 'gateway start failed; stopping what started', err);
      await this.#stopAll();
      this.#state = 'stopped';
      throw err;
    }
  }

  /**
   * Graceful stop (SIGTERM): intake stops first (listeners close), in-flight exchanges drain
   * within the bound, then services stop in reverse order of start.
   */
  async stop(): Promise<void> {
    if (this.#state === 'starting') {
      // SIGTERM before READY=1: start() gives up at its next step and stops what it started;
      // carrying on would leave listeners open in a process that was told to exit.
      this.#stopRequested = true;
      this.#notifier.stopping('stopping before ready');
      await this.#starting?.catch(() => undefined);
    }
    if (this.#state === 'stopping' || this.#state === 'stopped') return;
    this.#state = 'stopping';
    this.#notifier.stopping('draining');
    if (this.#statusTimer !== undefined) clearInterval(this.#statusTimer);
    await this.#stopAll();
    this.#state = 'stopped';
    this.#log.info('gateway stopped');
  }


  async #startMqtt(pipeline: Pipeline, client: BackendClient, sessions: SessionTable): Promise<MqttTransport> {
    const mqtt = await buildMqtt(this.#o.config, { pipeline, client, dataPlane: this.#dataPlane, sessions, msgRelay: this.msgRelay, log: this.#log });
    await mqtt.start();
    this.#mqtt = mqtt;
    this.#stoppers.push({ name: 'mqtt', stop: () => mqtt.stop() });
    return mqtt;
  }

  /** BLE is optional hardware: unavailable BLE is reported, never fatal (issue: never crash). */
  async #startBle(pipeline: Pipeline, client: BackendClient, sessions: SessionServices): Promise<BleTransport | undefined> {
    const logger = this.#log.child({ area: 'ble' });
    const radio = { ...(this.#o.bleBindings === undefined ? {} : { bindings: this.#o.bleBindings }), ...(this.#o.bleHciUartPort === undefined ? {} : { hciUartPort: this.#o.bleHciUartPort }) };
    const { transport: ble, host } = buildBle(this.#o.config, { pipeline, client, sessions, logger }, radio);
    this.#stoppers.push({ name: 'ble v2 host', stop: () => host.dispose() });
    try {
      await ble.start();
    } catch (err) {
      logError(logger, 'BLE unavailable; continuing without it', err);
      this.#bleUnavailable = err instanceof Error ? err.message : String(err);
      return undefined;
    }
    this.#ble = ble;
    this.#stoppers.push({ name: 'ble', stop: () => ble.stop() });
    return ble;
  }

  /**
   * SIGHUP: apply what can change without dropping connections. Log level is the logger's
   * (daemon/cli/run.ts); here the pipeline's rate limits. Everything else needs a restart.
   */
  reload(config: GatehouseConfig): void {
    this.#pipeline?.setRateLimits(config.pipeline.rateLimits);
    this.#log.info('configuration reloaded: rate limits', { rateLimits: config.pipeline.rateLimits });
  }

  async #stopAll(): Promise<void> {
    const drainMs = this.#o.drainTimeoutMs ?? 10_000;
    // Intake first: transports stop accepting; their stop() waits for in-flight replies.
    while (this.#stoppers.length > 0) {
      const s = this.#stoppers.pop();
      if (s === undefined) break;
      try {
        await withTimeout(Promise.resolve().then(() => s.stop()), drainMs, s.name);
      } catch (err) {
        logError(this.#log, `stopping ${s.name} failed`, err);
      }
    }
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new GatewayError('GH_GATEWAY_STOP_TIMEOUT', `${what} did not stop within ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
