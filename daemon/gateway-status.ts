/**
 * The running gateway as the status socket sees it (StatusSource): a read-only model built from
 * the live services' counters and events. It never exposes a key, nonce or credential.
 */
import type { Logger } from 'winston';
import type { Registry } from 'prom-client';
import type { BackendClient } from './backend-client/client.js';
import type { TimerClock } from '../common/clock.js';
import type { SessionManager } from './backend-client/session.js';
import { probeBackendTls } from './check/probes/backend-tls.js';
import { runChecks } from './check/runner.js';
import { openDescriptorCount, openFileLimit } from '../common/descriptors.js';
import type { CheckContext, CheckReport, ListenerFacts } from './check/types.js';
import type { GatehouseConfig } from './config/schema.js';
import type { Pipeline } from './pipeline/pipeline.js';
import type { DecisionEvent } from './pipeline/types.js';
import { FailingTracker } from './status/failing.js';
import { roundMs } from './status/json.js';
import type { EventPage, FailingPeripheral, PeripheralInfo, ScanReport, StatusReport, StatusSource, UplinkStatus } from './status/types.js';
import type { DataPlaneStats } from './uplink/data-plane.js';
import type { SessionInfo } from './sessions/session.js';
import type { MqttTransport } from './transports/mqtt/transport.js';
import type { BleTransport } from './transports/ble/transport.js';
import type { KeyStore } from '../tpm/key-store.js';
import { VERSION } from './version.js';

/** Recently welcomed BLE peripherals kept for `/v1/peripherals` (their links are short-lived). */
const MAX_BLE_PERIPHERALS = 1024;

export interface GatewayStatusOptions {
  gateway: { readonly state: string; readonly metrics: { readonly registry: Registry } };
  config: GatehouseConfig;
  configFile: string;
  keyStore: KeyStore;
  session: SessionManager;
  client: BackendClient;
  pipeline: Pipeline;
  clock: TimerClock;
  logger: Logger;
  /** The live v2 sessions of every transport. */
  sessions: { list(): SessionInfo[] };
  /** The v2 data plane, when the gateway runs one. */
  dataPlane?: { stats(): DataPlaneStats; pendingCommands(dev: string): unknown[] };
}

/** What `status` and /metrics show of the data plane's stats. */
export function uplinkStatus(d: DataPlaneStats): UplinkStatus {
  const { queue: q, uploader: u, commands: c } = d;
  return {
    queue: { records: q.records, bytes: q.bytes, oldestAgeSec: q.oldestAgeSec, acks: q.acks, busy: q.busy, expired: q.expired },
    uploader: {
      circuit: u.circuit,
      uploaded: u.uploaded,
      duplicates: u.duplicates,
      refused: u.refused,
      acksUploaded: u.acksUploaded,
      failures: u.failures,
      ...(u.lastSuccessAt === undefined ? {} : { lastSuccessAt: u.lastSuccessAt }),
      ...(u.lastError === undefined ? {} : { lastError: u.lastError }),
    },
    commands: { pending: c.pending, received: c.received, relayed: c.relayed, acked: c.acked, expired: c.expired, refused: c.refused },
  };
}

export class GatewayStatus implements StatusSource {
  readonly #o: GatewayStatusOptions;
  readonly #startedAt: number;
  /** MQTT connections by connection id: pending until welcomed, gone when closed. */
  readonly #mqttPeers = new Map<string, PeripheralInfo>();
  /** BLE welcomes by device id, most recent last. */
  readonly #blePeers = new Map<string, PeripheralInfo>();
  /** Devices whose recent attempts failed (bounded by device count and age). */
  readonly #failing = new FailingTracker();
  #mqtt: MqttTransport | undefined;
  #ble: BleTransport | undefined;
  /** Why the BLE transport did not start, when it did not. */
  #bleUnavailable: string | undefined;

  constructor(options: GatewayStatusOptions) {
    this.#o = options;
    this.#startedAt = options.clock.now();
    options.pipeline.events.subscribe((e) => this.#onDecision(e));
  }

  get registry(): Registry {
    return this.#o.gateway.metrics.registry;
  }

  attachMqtt(mqtt: MqttTransport): void {
    this.#mqtt = mqtt;
    mqtt.on('closed', (connection) => this.#mqttPeers.delete(connection));
  }

  attachBle(ble: BleTransport | undefined, unavailable?: string): void {
    this.#ble = ble;
    this.#bleUnavailable = unavailable;
    // The BLE back-off (by address) decides when a failing device is next tried.
    ble?.on('exchange', (x) => {
      if (x.dev !== undefined && x.outcome !== 'welcome' && x.holdOffMs > 0) this.#failing.holdOff(x.dev, this.#o.clock.now() + x.holdOffMs);
    });
  }

  /** One line for systemd's STATUS=. */
  line(): string {
    const s = this.#decisionTotals();
    const session = this.#o.session.stats().notAfter > 0 ? 'session ok' : 'no session';
    return `${this.#mqtt?.stats().connections ?? 0} MQTT connections, ${s.welcome} welcomed (${s.offline} offline), ${s.reject} rejected, ${session}`;
  }

  getStatus(): StatusReport {
    const now = this.#o.clock.now();
    const cfg = this.#o.config;
    const client = this.#o.client.stats();
    const session = this.#o.session.stats();
    const state = this.#o.gateway.state;
    return {
      gateway: {
        id: cfg.gateway.id,
        version: VERSION,
        production: cfg.gateway.production,
        pid: process.pid,
        startedAt: this.#startedAt,
        uptimeSec: Math.floor((now - this.#startedAt) / 1000),
      },
      state: state === 'stopping' ? 'stopping' : state !== 'running' ? 'starting' : session.notAfter > 0 && client.circuit === 'closed' && !client.revocationsStale ? 'running' : 'degraded',
      session: session.notAfter > 0 ? { held: true, notAfter: session.notAfter } : { held: false },
      backend: {
        state: client.circuit === 'closed' ? (client.requests > 0 ? 'online' : 'unknown') : 'offline',
        circuit: client.circuit,
        queued: client.queued,
        inFlight: client.inFlight,
        revocations: { stale: client.revocationsStale, failedPollsInARow: client.revocationFailedInARow, offlineWelcomes: client.revocationsStale ? 'refused' : 'allowed' },
      },
      tpm: { kind: this.#o.keyStore.kind, ready: true },
      transports: {
        mqtt: { listeners: this.#listeners().map(({ name, address, port }) => ({ name, address, port, tls: name === 'tls' })), connections: this.#mqtt?.stats().connections ?? 0 },
        ble: { enabled: cfg.ble.enabled, adapterState: this.#ble?.stats().state ?? 'unavailable', active: this.#ble?.stats().active ?? 0 },
      },
      decisions: this.#decisionTotals(),
      rateLimits: this.#o.pipeline.rateLimits(),
      failing: this.#failing.list(now).length,
      ...(this.#o.dataPlane === undefined ? {} : { uplink: uplinkStatus(this.#o.dataPlane.stats()) }),
    };
  }

  getPeripherals(): PeripheralInfo[] {
    const sessions = new Map(this.#o.sessions.list().map((s) => [s.connection, s]));
    const dp = this.#o.dataPlane;
    return [...this.#mqttPeers.values(), ...this.#blePeers.values()].map((p) => {
      // A session is its connection's, on either transport (a BLE link kept after its welcome).
      const s = sessions.get(p.connection);
      if (s === undefined) return { ...p };
      const session = { version: s.version, sid: s.sid, ageMs: s.ageMs, lifeSeconds: s.lifeSeconds, framesIn: s.framesIn, framesOut: s.framesOut, drops: s.drops, denied: s.denied, msgs: s.msgs, msgDrops: s.msgDrops };
      return { ...p, session, ...(dp === undefined ? {} : { commandsPending: dp.pendingCommands(p.dev).length }) };
    });
  }

  /** `/v1/scan`: the BLE transport's log of nearby peripherals, or why there is none. */
  getScan(): ScanReport {
    const none = (reason: string): ScanReport => ({ ble: { available: false, reason }, peripherals: [] });
    if (!this.#o.config.ble.enabled) return none('BLE is disabled in the config (ble.enabled: false)');
    const ble = this.#ble;
    if (ble === undefined) return none(this.#bleUnavailable ?? 'BLE is unavailable (the transport did not start)');
    const s = ble.stats();
    if (s.state !== 'poweredOn') return none(`the BLE adapter is ${s.state}`);
    return { ble: { available: true, adapterState: s.state, scanning: s.scanning }, ...ble.nearby() };
  }

  getFailing(): FailingPeripheral[] {
    return this.#failing.list(this.#o.clock.now());
  }

  getEvents(since: number, limit: number, dev?: string): EventPage {
    const all = this.#o.pipeline.events.recent(since);
    const events: DecisionEvent[] = [];
    let next = since;
    // With a device filter, `next` is the last event looked at, so a follower never rescans it.
    for (const e of all) {
      if (events.length >= limit) break;
      next = e.seq;
      if (dev === undefined || e.dev === dev) events.push({ ...e, latencyMs: roundMs(e.latencyMs) });
    }
    const first = all[0];
    return { events, next, truncated: first !== undefined && first.seq > since + 1 };
  }

  runChecks(): Promise<CheckReport> {
    return runChecks(this.#checkContext(), undefined, { logger: this.#o.logger });
  }

  #checkContext(): CheckContext {
    const cfg = this.#o.config;
    return {
      config: { ok: true, config: cfg, file: this.#o.configFile },
      now: () => new Date(this.#o.clock.now()),
      // The daemon holds the key store open: a public-key read proves the TPM answered at open.
      tpm: async () => {
        const noDA = this.#o.keyStore.noDA?.();
        const authValue = this.#o.keyStore.hasAuth?.();
        return {
          reachable: true,
          keyPresent: this.#o.keyStore.thumbprint().length === 32,
          ...(noDA === undefined ? {} : { noDA }),
          ...(authValue === undefined ? {} : { authValue }),
        };
      },
      session: () => {
        const n = this.#o.session.stats().notAfter;
        return { notAfter: n > 0 ? n : undefined, lifetimeSec: cfg.backend.sessionLifetimeSec };
      },
      backend: async () => {
        // A closed circuit only says no request failed lately (an idle gateway has made none):
        // ask the backend now, with the same TLS handshake as `check --offline`.
        const probe = await probeBackendTls(cfg.backend);
        if (!probe.ok) return probe;
        const s = this.#o.client.stats();
        return s.circuit === 'closed'
          ? { ok: true, detail: `${probe.detail}; circuit closed, ${s.requests} requests so far` }
          : { ok: false, detail: `circuit ${s.circuit}: the backend is not answering`, code: 'GH_CHECK_BACKEND_DOWN' };
      },
      ...(this.#ble !== undefined || cfg.ble.enabled ? { ble: () => ({ adapterState: this.#ble?.stats().state ?? 'unavailable' }) } : {}),
      mqtt: () => this.#listeners(),
      failing: () => this.getFailing(),
      descriptors: () => ({ limit: openFileLimit()?.soft, open: openDescriptorCount(), whose: 'daemon' }),
    };
  }

  #listeners(): ListenerFacts[] {
    const a = this.#mqtt?.addresses() ?? {};
    const out: ListenerFacts[] = [];
    if (a.tcp !== undefined) out.push({ name: 'tcp', address: a.tcp.address, port: a.tcp.port, listening: true });
    if (a.tls !== undefined) out.push({ name: 'tls', address: a.tls.address, port: a.tls.port, listening: true });
    return out;
  }

  #decisionTotals(): { welcome: number; reject: number; offline: number } {
    const totals = { welcome: 0, reject: 0, offline: 0 };
    for (const c of this.#o.pipeline.events.counts()) {
      if (c.outcome === 'welcome') totals.welcome += c.count;
      if (c.outcome === 'reject') totals.reject += c.count;
      if (c.offline && c.outcome === 'welcome') totals.offline += c.count;
    }
    return totals;
  }

  #onDecision(e: DecisionEvent): void {
    this.#failing.record(e);
    if (e.dev === undefined) return;
    if (e.transport === 'mqtt') {
      const known = this.#mqttPeers.get(e.connection);
      if (e.outcome === 'challenge' && known === undefined) {
        this.#mqttPeers.set(e.connection, { dev: e.dev, transport: 'mqtt', connection: e.connection, remote: e.remote ?? '', state: 'pending', since: e.at, offline: false });
      } else if (e.outcome === 'welcome') {
        this.#mqttPeers.set(e.connection, { dev: e.dev, transport: 'mqtt', connection: e.connection, remote: e.remote ?? known?.remote ?? '', state: 'welcomed', since: e.at, offline: e.offline, ...leaseOf(e) });
      }
      // A connection that never challenges never shows; pending ones are capped by the broker's maxConnections.
    } else if (e.outcome === 'welcome') {
      this.#blePeers.delete(e.dev);
      this.#blePeers.set(e.dev, { dev: e.dev, transport: 'ble', connection: e.connection, remote: e.remote ?? '', state: 'welcomed', since: e.at, offline: e.offline, ...leaseOf(e) });
      if (this.#blePeers.size > MAX_BLE_PERIPHERALS) {
        const oldest = this.#blePeers.keys().next().value;
        if (oldest !== undefined) this.#blePeers.delete(oldest);
      }
    }
  }
}

/** The lease expiry a welcome carries (online from the verify answer, offline from the cached lease). */
function leaseOf(e: DecisionEvent): { leaseExp?: number } {
  return e.leaseExp === undefined ? {} : { leaseExp: e.leaseExp };
}
