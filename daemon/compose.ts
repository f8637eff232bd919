/**
 * The composition root's builders (CONTRIBUTING.md §4: one root, in two files): each service the
 * `Gateway` (gateway.ts) starts, built from the validated config and the injected dependencies.
 * Nothing here starts a service, registers a stopper or keeps state: the order of start and stop
 * is gateway.ts's alone.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import type { EventEmitter } from 'node:events';
import type { Logger } from 'winston';
import type { Agent } from 'undici';
import type { Histogram } from 'prom-client';
import { BackendClient } from './backend-client/client.js';
import { backendClientSettings, dataPlaneSettings, mqttSettings } from './config/settings.js';
import type { Clock, TimerClock } from '../common/clock.js';
import { BackendHttp, createBackendDispatcher } from './backend-client/dispatcher.js';
import { SessionManager } from './backend-client/session.js';
import { DataPlane } from './uplink/data-plane.js';
import type { MsgRelay } from './sessions/msg-relay.js';
import type { GatehouseConfig } from './config/schema.js';
import { Pipeline } from './pipeline/pipeline.js';
import type { GatehouseMetrics } from './status/metrics.js';
import type { Signer } from '../protocol/index.js';
import { MqttTransport } from './transports/mqtt/transport.js';
import { BleTransport } from './transports/ble/transport.js';
import { NobleCentral } from './transports/ble/noble-adapter.js';
import { PipelineV2Host } from './transports/ble/session-host.js';
import { SessionTable } from './sessions/table.js';
import type { SessionServices } from './sessions/open.js';
import type { KeyStore } from '../tpm/key-store.js';
import { createKeyStore } from '../tpm/factory.js';

/**
 * Where the software key store (development only) keeps the identity key: in the state
 * directory. Defined here, not taken from demo/embedded.ts, so that the daemon does not load
 * the demo's embedded backend, PKI and swtpm helpers it never runs.
 */
export function softwareKeyFile(stateDir: string): string {
  return join(stateDir, 'software-identity-key.pem');
}

/** The backend's verification keys from config (kid → Ed25519 public key). */
export type BackendKeys = Map<string, Uint8Array>;

export function backendKeysOf(cfg: GatehouseConfig): BackendKeys {
  return new Map([[cfg.backend.backendKid, new Uint8Array(Buffer.from(cfg.backend.backendPublicKey, 'base64url'))]]);
}

export function buildKeyStore(cfg: GatehouseConfig, log: Logger): KeyStore {
  return createKeyStore(
    { ...cfg.tpm, stateDir: cfg.gateway.stateDir, production: cfg.gateway.production, softwareKeyFile: softwareKeyFile(cfg.gateway.stateDir) },
    { logger: log.child({ area: 'tpm' }) },
  );
}

/** The backend link: one TLS dispatcher (closed by the caller) and the HTTP client over it. */
export async function buildBackendHttp(cfg: GatehouseConfig, metrics: GatehouseMetrics): Promise<{ http: BackendHttp; dispatcher: Agent }> {
  const b = cfg.backend;
  // protocol-v1: the CA from config only; passing `ca` replaces the system roots.
  const ca = b.caFile !== undefined ? await readFile(b.caFile, 'utf8') : rootCertificates.join('\n');
  const dispatcher = createBackendDispatcher({
    url: b.url,
    ca,
    ...(b.serverName !== undefined ? { serverName: b.serverName } : {}),
    ...(b.pinSha256 !== undefined ? { spkiPinsSha256: [Buffer.from(b.pinSha256, 'hex').toString('base64')] } : {}),
    connectTimeoutMs: b.connectTimeoutMs,
    headersTimeoutMs: b.requestTimeoutMs,
    bodyTimeoutMs: b.requestTimeoutMs,
    // Verify requests, plus one each for revocations, telemetry uploads and the command long poll.
    connections: b.maxInFlight + 3,
  });
  return { http: new BackendHttp({ url: b.url, dispatcher, observe: (call, seconds, error) => metrics.recordBackendRequest(call, seconds, error) }), dispatcher };
}

/** What every backend-facing service shares. */
export interface BackendParts {
  cfg: GatehouseConfig;
  http: BackendHttp;
  backendKeys: BackendKeys;
  clock: TimerClock;
  log: Logger;
}

export function buildSession(p: BackendParts, keyStore: KeyStore, tpmSigner: Signer): SessionManager {
  const cfg = p.cfg;
  return new SessionManager({
    gw: cfg.gateway.id,
    http: p.http,
    tpmSigner,
    tpmPublicKeySpki: keyStore.publicKeySpkiDer(),
    backendKeys: p.backendKeys,
    stateDir: cfg.gateway.stateDir,
    lifetimeSeconds: cfg.backend.sessionLifetimeSec,
    requestTimeoutMs: cfg.backend.requestTimeoutMs,
    clock: p.clock,
    logger: p.log.child({ area: 'session' }),
  });
}

export function buildBackendClient(p: BackendParts, session: SessionManager): BackendClient {
  return new BackendClient({
    gw: p.cfg.gateway.id,
    http: p.http,
    session,
    backendKeys: p.backendKeys,
    stateDir: p.cfg.gateway.stateDir,
    ...backendClientSettings(p.cfg),
    clock: p.clock,
    logger: p.log.child({ area: 'backend' }),
  });
}

/** The data plane (protocol v2 only: a v1 gateway has no sessions to carry data). */
export function buildDataPlane(p: BackendParts, session: SessionManager): DataPlane | undefined {
  const cfg = p.cfg;
  if (!cfg.protocol.versions.includes(2)) return undefined;
  return new DataPlane({
    gw: cfg.gateway.id,
    stateDir: cfg.gateway.stateDir,
    http: p.http,
    session,
    backendKeys: p.backendKeys,
    breaker: { failureThreshold: cfg.backend.circuit.failureThreshold, openMs: cfg.backend.circuit.openMs },
    requestTimeoutMs: cfg.backend.requestTimeoutMs,
    ...dataPlaneSettings(cfg),
    clock: p.clock,
    logger: p.log.child({ area: 'uplink' }),
  });
}

/** The pipeline, one for every transport. */
export function buildPipeline(
  cfg: GatehouseConfig,
  deps: { client: BackendClient; session: SessionManager; clock: TimerClock; elapsedClock: Clock; log: Logger },
): Pipeline {
  return new Pipeline({
    gw: cfg.gateway.id,
    verifier: deps.client,
    sessions: deps.session,
    clock: deps.clock,
    elapsedClock: deps.elapsedClock,
    logger: deps.log.child({ area: 'pipeline' }),
    challengeTtlMs: cfg.pipeline.challengeTtlSec * 1000,
    maxOutstandingChallenges: cfg.pipeline.maxOutstandingChallenges,
    maxPendingHellos: cfg.pipeline.maxPendingHellos,
    verifyTimeoutMs: cfg.backend.requestTimeoutMs,
    rateLimits: cfg.pipeline.rateLimits,
    maxSessionAgeSec: cfg.protocol.maxSessionAgeSec,
    eventRingSize: cfg.status.eventRingSize,
  });
}

/**
 * The gateway's one protocol-v2 session table, shared by the transports: a newer session of a
 * device ends the older one whichever transport either came on, and the status socket and
 * /metrics read every session from it. The data plane's command relay follows it.
 */
export function buildSessionTable(cfg: GatehouseConfig, dataPlane: DataPlane | undefined): SessionTable {
  const table = new SessionTable({ firstFrameTimeoutMs: cfg.protocol.firstFrameTimeoutSec * 1000, now: () => performance.now() });
  dataPlane?.attach(table);
  return table;
}

/** The MQTT transport, not yet started (its TLS key and certificate read from their files). */
export async function buildMqtt(
  cfg: GatehouseConfig,
  deps: { pipeline: Pipeline; client: BackendClient; dataPlane: DataPlane | undefined; sessions: SessionTable; msgRelay: MsgRelay; log: Logger },
): Promise<MqttTransport> {
  const m = cfg.mqtt;
  const tls =
    m.tls.enabled && m.tls.certFile !== undefined && m.tls.keyFile !== undefined
      ? { host: m.tls.host, port: m.tls.port, cert: await readFile(m.tls.certFile), key: await readFile(m.tls.keyFile) }
      : undefined;
  return new MqttTransport({
    pipeline: deps.pipeline,
    revocations: deps.client,
    sessions: deps.sessions,
    ...(deps.dataPlane !== undefined ? { dataPlane: deps.dataPlane } : {}),
    msgRelay: deps.msgRelay,
    logger: deps.log.child({ area: 'mqtt' }),
    ...mqttSettings(cfg),
    ...(tls !== undefined ? { tls } : {}),
  });
}

/** Where noble reaches the radio: emulated bindings (tests, the demo) or a controller's HCI UART (Bumble in tests); noble's own when neither. */
export interface BleRadio {
  bindings?: EventEmitter;
  hciUartPort?: string;
}

/** What the BLE transport's v2 sessions share with MQTT's (built by the gateway). */
export interface BleDeps {
  pipeline: Pipeline;
  client: BackendClient;
  sessions: SessionServices;
  logger: Logger;
}

/**
 * The BLE transport, not yet started, over noble. Its v2 links are hosted by the pipeline and the
 * gateway's session table (`PipelineV2Host`), as MQTT's v2 connections are.
 */
export function buildBle(cfg: GatehouseConfig, deps: BleDeps, radio: BleRadio = {}): { transport: BleTransport; host: PipelineV2Host } {
  const b = cfg.ble;
  const logger = deps.logger;
  const central = new NobleCentral({ logger, ...(radio.bindings !== undefined ? { bindings: radio.bindings } : {}), ...(radio.hciUartPort !== undefined ? { hciUartPort: radio.hciUartPort } : {}) });
  const host = new PipelineV2Host({ pipeline: deps.pipeline, sessions: deps.sessions, revocations: deps.client, log: logger });
  const transport = new BleTransport({
    central,
    pipeline: deps.pipeline,
    logger,
    versions: cfg.protocol.versions,
    v2: host,
    maxConcurrent: b.maxConcurrent,
    exchangeTimeoutMs: b.exchangeTimeoutMs,
    denyList: { baseMs: b.denyList.baseBackoffSec * 1000, maxMs: b.denyList.maxBackoffSec * 1000 },
    scanLog: { maxEntries: b.scanLog.maxEntries, ttlMs: b.scanLog.ttlSec * 1000 },
  });
  return { transport, host };
}

/** `signer`, timed into `histogram` (gatehouse_tpm_sign_duration_seconds: its _count is the TPM signatures used). */
export function timedSigner(signer: Signer, histogram: Pick<Histogram, 'startTimer'>): Signer {
  return {
    alg: signer.alg,
    kid: signer.kid,
    sign: async (toBeSigned) => {
      const end = histogram.startTimer();
      try {
        return await signer.sign(toBeSigned);
      } finally {
        end();
      }
    },
  };
}
