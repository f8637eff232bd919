/**
 * The reference backend by store (bench/backend-store.ts): verify and telemetry throughput on
 * SQLite and on PostgreSQL with one and two replicas, with the CPU per hello and per row of each
 * part, in this run.
 */
import { benchBackendStore } from '../backend-store.js';
import type { Phase } from '../phase.js';

export const storePhase: Phase = {
  key: 'store',
  title: 'The reference backend by store: SQLite, PostgreSQL with 1 and 2 replicas',
  async run(ctx) {
    const results = await benchBackendStore({ seconds: ctx.quick ? 3 : 8, log: (l) => ctx.log(`      ${l}`) });
    const rows: [string, string][] = [];
    for (const r of results) {
      for (const [what, l] of [['hellos verified', r.verify], ['telemetry rows stored', r.telemetry]] as const) {
        rows.push([
          `${r.mode}: ${what}/s (CPU µs per item: replicas / PostgreSQL / load generator; replica cores used)`,
          `${l.itemsPerSecond} (${l.cpuUsPerItem.replicas} / ${l.cpuUsPerItem.postgres} / ${l.cpuUsPerItem.generator}; ${l.cores.replicas.join(' + ')})${l.errors > 0 ? `, ${l.errors} errors` : ''}`,
        ]);
      }
    }
    const errors = results.reduce((a, r) => a + r.verify.errors + r.telemetry.errors, 0);
    return {
      summary: Object.fromEntries(results.map((r) => [r.mode, r])),
      rows,
      targets: [{ target: 'every store answers every request (no errors)', value: `${errors} errors`, met: errors === 0 }],
      notes:
        'Everything (replicas, PostgreSQL, the load generator) shares the two cores: a second replica helps only while one replica is not already using a core, and PostgreSQL\'s own CPU per row is what a dedicated database host would pay. docs/backend.md ("Sizing") reads these figures.',
    };
  },
};
