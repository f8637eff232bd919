/** A StatusSource over the real EventRing, failing tracker and metrics, with a switch to make it fail. */
import { EventRing } from '../../../daemon/status/events.js';
import { FailingTracker } from '../../../daemon/status/failing.js';
import { GatehouseMetrics } from '../../../daemon/status/metrics.js';
import { type FailingPeripheral, type StatusReport, type StatusSource, type PeripheralInfo, type UplinkStatus } from '../../../daemon/status/types.js';
import type { DecisionEvent } from '../../../daemon/pipeline/types.js';
import type { ReasonCode } from '../../../protocol/index.js';
import type { CheckReport } from '../../../daemon/check/types.js';

export const SECRET_DETAIL = 'internal-path-/var/lib/gatehouse/session.key-SECRET';

export class TestSource implements StatusSource {
  readonly ring: EventRing;

  constructor(ringSize = 4) {
    this.ring = new EventRing(ringSize);
  }

  readonly metrics = new GatehouseMetrics();
  readonly registry = this.metrics.registry;
  readonly tracker = new FailingTracker();
  /** The clock of events and of the failing window; tests set it. */
  now = (): number => Date.now();
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
      failing: this.tracker.list(this.now()).length,
      ...(this.uplink === undefined ? {} : { uplink: this.uplink }),
    };
  }

  /** The data plane's status, when a test gives one. */
  uplink: UplinkStatus | undefined;

  peripherals: PeripheralInfo[] = [{ dev: 'dev-1', transport: 'mqtt', connection: 'mqtt:1', remote: '127.0.0.1:50000', state: 'welcomed', since: 1_700_000_001_000, offline: false }];

  getPeripherals(): Promise<PeripheralInfo[]> {
    if (this.failing) return Promise.reject(new Error(SECRET_DETAIL));
    return Promise.resolve(this.peripherals.map((p) => ({ ...p })));
  }

  getEvents(since: number, limit: number, dev?: string) {
    return this.ring.since(since, limit, dev);
  }

  getFailing(): FailingPeripheral[] {
    return this.tracker.list(this.now());
  }

  runChecks(): Promise<CheckReport> {
    return this.checks();
  }

  /** Push a decision to the ring, the failing tracker and the metrics, as the gateway does. */
  decide(dev: string, outcome: 'welcome' | 'reject', more: { reason?: ReasonCode } & Partial<Omit<DecisionEvent, 'seq' | 'dev' | 'outcome' | 'reason'>> = {}): DecisionEvent {
    const { reason, ...rest } = more;
    const e = this.ring.push({
      at: this.now(),
      transport: 'mqtt',
      connection: 'mqtt:1',
      dev,
      outcome,
      latencyMs: 12,
      offline: false,
      ...(outcome === 'reject' ? { reason: reason ?? 'bad-signature' } : {}),
      ...rest,
    });
    this.metrics.recordDecision(e);
    this.tracker.record(e);
    return e;
  }
}
