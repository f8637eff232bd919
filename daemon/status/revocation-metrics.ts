/**
 * The revocation feed's health on /metrics, registered on the gateway's registry next to the
 * metrics of metrics.ts: whether revocation polls keep failing (offline welcomes are then
 * refused) and the offline welcomes refused for it. Read at scrape time.
 */
import { Counter, Gauge, type Registry } from 'prom-client';

export interface RevocationFeedFacts {
  revocationsStale: boolean;
  revocationFailedInARow: number;
  offlineRefusedStale: number;
}

export function registerRevocationMetrics(registry: Registry, read: () => RevocationFeedFacts): void {
  new Gauge({
    name: 'gatehouse_revocations_stale',
    help: '1 while revocation polls have failed backend.revocations.maxFailedPolls times in a row (offline welcomes refused), else 0.',
    registers: [registry],
    collect() {
      this.set(read().revocationsStale ? 1 : 0);
    },
  });
  new Gauge({
    name: 'gatehouse_revocation_polls_failed_in_a_row',
    help: 'Revocation polls failed in a row now (0 after a successful poll).',
    registers: [registry],
    collect() {
      this.set(read().revocationFailedInARow);
    },
  });
  new Counter({
    name: 'gatehouse_offline_refused_stale_total',
    help: 'Offline welcomes refused (backend-unavailable) because revocation polls kept failing, since start.',
    registers: [registry],
    // The client keeps the count; copied at scrape time.
    collect() {
      this.reset();
      const n = read().offlineRefusedStale;
      if (n > 0) this.inc(n);
    },
  });
}
