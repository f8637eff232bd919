/**
 * Prometheus metrics on a private Registry (never prom-client's global one, so two gateways in
 * one process — tests, the demo — do not collide). Labels are bounded: transport, outcome,
 * reason code, error kind. Never a device id: that would be unbounded cardinality.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { BackendCall } from '../backend-client/dispatcher.js';
import type { BackendErrorKind } from '../backend-client/errors.js';
import type { DecisionEvent, TransportKind } from '../pipeline/types.js';
import type { SessionCounters } from '../sessions/table.js';
import type { MsgRelayStats } from '../sessions/msg-relay.js';
import type { UplinkStatus } from './types.js';

/** Live values read at scrape time, so gauges never go stale. */
export interface GaugeSources {
  /** Open connections per transport. */
  connections?: () => Partial<Record<TransportKind, number>>;
  /** Unix seconds the gateway credential expires, undefined while none is held. */
  credentialNotAfter?: () => number | undefined;
  /** protocol-v2 session counters (frames dropped by reason, sessions by end reason). */
  sessions?: () => SessionCounters;
  /** protocol-v2 msg relay counters. */
  msgs?: () => MsgRelayStats;
  /** The v2 data plane (queue, uploader, command relay); undefined without one. */
  uplink?: () => UplinkStatus | undefined;
}

export interface MetricsOptions {
  /** Also export process metrics (CPU, memory, event loop lag) with the `gatehouse_` prefix. */
  processMetrics?: boolean;
}

export class GatehouseMetrics {
  readonly registry = new Registry();
  readonly decisions: Counter<'transport' | 'outcome' | 'reason'>;
  readonly decisionLatency: Histogram<'transport' | 'outcome'>;
  readonly offlineDecisions: Counter<'transport'>;
  readonly backendErrors: Counter<'call' | 'kind'>;
  readonly backendLatency: Histogram<'call'>;
  readonly tpmSignLatency: Histogram;
  readonly connections: Gauge<'transport'>;
  readonly credentialExpiry: Gauge;
  readonly v2Drops: Counter<'reason'>;
  readonly v2SessionsEnded: Counter<'reason'>;
  readonly v2Refusals: Counter<'reason'>;
  readonly v2Msgs: Counter<'outcome'>;
  readonly uplinkQueue: Gauge<'what'>;
  readonly uplinkOldestAge: Gauge;
  readonly uplinkRecords: Counter<'outcome'>;
  readonly commands: Counter<'event'>;
  readonly commandsPending: Gauge;
  #sources: GaugeSources = {};

  constructor(opts: MetricsOptions = {}) {
    const registers = [this.registry];
    this.decisions = new Counter({
      name: 'gatehouse_decisions_total',
      help: 'Authentication decisions by transport, outcome and reject reason.',
      labelNames: ['transport', 'outcome', 'reason'],
      registers,
    });
    this.decisionLatency = new Histogram({
      name: 'gatehouse_decision_duration_seconds',
      help: 'Hello to welcome/reject, seconds.',
      labelNames: ['transport', 'outcome'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.offlineDecisions = new Counter({
      name: 'gatehouse_offline_decisions_total',
      help: 'Welcomes decided offline under a cached lease (protocol-v1 "Offline").',
      labelNames: ['transport'],
      registers,
    });
    this.backendErrors = new Counter({
      name: 'gatehouse_backend_errors_total',
      help: 'Failed backend requests by call and kind (connect, timeout, tls, network, redirect, server = 5xx, client = 4xx, response = over-long answer, aborted).',
      labelNames: ['call', 'kind'],
      registers,
    });
    this.backendLatency = new Histogram({
      name: 'gatehouse_backend_request_duration_seconds',
      help: 'Backend request latency by call (verify, session, revocations), failed requests included.',
      labelNames: ['call'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.tpmSignLatency = new Histogram({
      name: 'gatehouse_tpm_sign_duration_seconds',
      help: 'TPM signature latency.',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5],
      registers,
    });
    const sources = (): GaugeSources => this.#sources;
    this.connections = new Gauge({
      name: 'gatehouse_connections',
      help: 'Open peripheral connections by transport.',
      labelNames: ['transport'],
      registers,
      collect() {
        const read = sources().connections;
        if (read === undefined) return;
        const now = read();
        for (const t of ['mqtt', 'ble'] satisfies TransportKind[]) this.set({ transport: t }, now[t] ?? 0);
      },
    });
    this.credentialExpiry = new Gauge({
      name: 'gatehouse_credential_expiry_timestamp_seconds',
      help: 'Unix time the gateway credential expires (0 while none is held).',
      registers,
      collect() {
        const read = sources().credentialNotAfter;
        if (read !== undefined) this.set(read() ?? 0);
      },
    });
    this.credentialExpiry.set(0);
    // Counters kept by the session table, copied at scrape time (reset, then set to the totals).
    const fromSessions = (pick: (c: SessionCounters) => Partial<Record<string, number>>) =>
      function (this: Counter<'reason'>): void {
        const read = sources().sessions;
        if (read === undefined) return;
        this.reset();
        for (const [reason, n] of Object.entries(pick(read()))) if (n !== undefined && n > 0) this.inc({ reason }, n);
      };
    const byReason = (name: string, help: string, collect?: ReturnType<typeof fromSessions>): Counter<'reason'> =>
      new Counter({ name, help, labelNames: ['reason'], registers, ...(collect === undefined ? {} : { collect }) });
    this.v2Drops = byReason('gatehouse_v2_frames_dropped_total', 'protocol-v2 frames dropped without an answer, by reason (GH_FRAME_… code).', fromSessions((c) => c.drops));
    this.v2SessionsEnded = byReason('gatehouse_v2_sessions_ended_total', 'protocol-v2 sessions ended, by reason (a bye reason, peer-bye, or closed).', fromSessions((c) => c.ended));
    this.v2Refusals = byReason('gatehouse_v2_rejects_total', 'protocol-v2 rejects (answers on v2 topics), by reason.');
    this.v2Msgs = new Counter({
      name: 'gatehouse_v2_msgs_total',
      help: 'Broker messages for protocol-v2 sessions, by outcome: relayed (msg frames sent, one per session the sub policy grants), full (dropped for one session: its queue was full), unsent (queued when the session ended or its connection failed), too_large (body over 1,024 bytes: relayed to no one), bad_topic (a topic a frame cannot carry, over 128 bytes: relayed to no one).',
      labelNames: ['outcome'],
      registers,
      collect() {
        const read = sources().msgs;
        if (read === undefined) return;
        const m = read();
        this.reset();
        for (const [outcome, n] of Object.entries({ relayed: m.relayed, full: m.full, unsent: m.unsent, too_large: m.tooLarge, bad_topic: m.badTopic })) this.inc({ outcome }, n);
      },
    });
    // The data plane's gauges and counters, read from its stats at scrape time.
    const uplink = (): UplinkStatus | undefined => sources().uplink?.();
    this.uplinkQueue = new Gauge({
      name: 'gatehouse_uplink_queue',
      help: 'The durable uplink queue now: telemetry records, their bytes, and device acks waiting for the backend.',
      labelNames: ['what'],
      registers,
      collect() {
        const u = uplink();
        if (u === undefined) return;
        this.set({ what: 'records' }, u.queue.records);
        this.set({ what: 'bytes' }, u.queue.bytes);
        this.set({ what: 'acks' }, u.queue.acks);
      },
    });
    this.uplinkOldestAge = new Gauge({
      name: 'gatehouse_uplink_queue_oldest_age_seconds',
      help: 'Age of the oldest telemetry record waiting in the uplink queue (0 when empty).',
      registers,
      collect() {
        const u = uplink();
        if (u !== undefined) this.set(u.queue.oldestAgeSec);
      },
    });
    const copy = <L extends string>(label: L, pick: (u: UplinkStatus) => Record<string, number>) =>
      function (this: Counter<L>): void {
        const u = uplink();
        if (u === undefined) return;
        this.reset();
        for (const [k, n] of Object.entries(pick(u))) this.inc({ [label]: k } as Partial<Record<L, string>>, n);
      };
    this.uplinkRecords = new Counter({
      name: 'gatehouse_uplink_records_total',
      help: 'Telemetry records by outcome: uploaded (accepted by the backend), duplicate (already stored there), refused (dropped for good), busy (pubs answered busy), expired (deleted unsent for age); acks_uploaded: device acks uploaded.',
      labelNames: ['outcome'],
      registers,
      collect: copy('outcome', (u) => ({ uploaded: u.uploader.uploaded, duplicate: u.uploader.duplicates, refused: u.uploader.refused, busy: u.queue.busy, expired: u.queue.expired, acks_uploaded: u.uploader.acksUploaded })),
    });
    this.commands = new Counter({
      name: 'gatehouse_commands_total',
      help: 'Backend commands by event: received (held), relayed (cmd frames sent, resends included), acked, expired (undelivered), refused (bad signature or over the per-device bound).',
      labelNames: ['event'],
      registers,
      collect: copy('event', (u) => ({ received: u.commands.received, relayed: u.commands.relayed, acked: u.commands.acked, expired: u.commands.expired, refused: u.commands.refused })),
    });
    this.commandsPending = new Gauge({
      name: 'gatehouse_commands_pending',
      help: 'Commands held for devices and not yet acknowledged.',
      registers,
      collect() {
        const u = uplink();
        if (u !== undefined) this.set(u.commands.pending);
      },
    });
    for (const t of ['mqtt', 'ble'] satisfies TransportKind[]) this.connections.set({ transport: t }, 0);
    if (opts.processMetrics === true) collectDefaultMetrics({ register: this.registry, prefix: 'gatehouse_' });
  }

  /**
   * Read connection counts and credential expiry from the live gateway at every scrape
   * (instead of setting the gauges by hand).
   */
  setSources(sources: GaugeSources): void {
    this.#sources = sources;
  }

  /** One backend request (BackendHttp's observer): its latency, and its error kind if it failed. */
  recordBackendRequest(call: BackendCall, seconds: number, error?: BackendErrorKind): void {
    this.backendLatency.observe({ call }, seconds);
    if (error !== undefined) this.backendErrors.inc({ call, kind: error });
  }

  /** Count one decision from the pipeline. Challenges are not decisions and are not timed. */
  recordDecision(e: DecisionEvent): void {
    if (e.outcome === 'challenge') return;
    this.decisions.inc({ transport: e.transport, outcome: e.outcome, reason: e.reason ?? '' });
    this.decisionLatency.observe({ transport: e.transport, outcome: e.outcome }, e.latencyMs / 1000);
    if (e.offline && e.outcome === 'welcome') this.offlineDecisions.inc({ transport: e.transport });
    if (e.version === 2 && e.outcome === 'reject') this.v2Refusals.inc({ reason: e.reason ?? '' });
  }
}
