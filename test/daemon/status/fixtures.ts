/** A StatusSource over the real EventRing and metrics, with a switch to make it fail. */
import { EventRing } from '../../../daemon/status/events.js';
import { GatehouseMetrics } from '../../../daemon/status/metrics.js';
import { type StatusReport, type StatusSource, type PeripheralInfo } from '../../../daemon/status/types.js';
import type { CheckReport } from '../../../daemon/check/types.js';

export const SECRET_DETAIL = 'internal-path-/var/lib/gatehouse/session.key-SECRET';

export class TestSource implements StatusSource {
  readonly ring = new EventRing(4);
  readonly metrics = new GatehouseMetrics();
  readonly registry = this.metrics.registry;
  failing = false;
  checks: () => Promise<CheckReport> = () =>
    Promise.resolve({ status: 'ok', results: [{ id: 'clock.sane', description: 'clock', status: 'ok', message: 'fine' }], summary: { ok: 1, warn: 0, fail: 0, skip: 0 } });

  getStatus(): StatusReport {
    if (this.failing) throw new Error(SECRET_DETAIL);
    return {
      gateway: { id: 'gw-test-1', version: '0.1.0', production: false, pid: process.pid, startedAt: 1_700_000_000_000, uptimeSec: 5 },
      state: 'running',
      session: { held: true, notAfter: 1_700_086_400 },
      backend: { state: 'online', circuit: 'closed', queued: 0, inFlight: 0 },
      tpm: { kind: 'software', ready: true },
      transports: { mqtt: { listeners: [{ name: 'tcp', address: '127.0.0.1', port: 1883, tls: false }], connections: 1 }, ble: { enabled: false, adapterState: 'disabled', active: 0 } },
      decisions: { welcome: 1, reject: 0, offline: 0 },
      rateLimits: { perConnectionPerMin: 20, perDevicePerMin: 20, globalPerMin: 480_000 },
    };
  }

  getPeripherals(): Promise<PeripheralInfo[]> {
    if (this.failing) return Promise.reject(new Error(SECRET_DETAIL));
    return Promise.resolve([{ dev: 'dev-1', transport: 'mqtt', connection: 'mqtt:1', remote: '127.0.0.1:50000', state: 'welcomed', since: 1_700_000_001_000, offline: false }]);
  }

  getEvents(since: number, limit: number) {
    return this.ring.since(since, limit);
  }

  runChecks(): Promise<CheckReport> {
    return this.checks();
  }

  /** Push a decision to the ring and the metrics, as the gateway does. */
  decide(dev: string, outcome: 'welcome' | 'reject'): void {
    const e = this.ring.push({ at: Date.now(), transport: 'mqtt', connection: 'mqtt:1', dev, outcome, latencyMs: 12, offline: false, ...(outcome === 'reject' ? { reason: 'bad-signature' as const } : {}) });
    this.metrics.recordDecision(e);
  }
}
