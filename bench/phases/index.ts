/** Every bench phase, in the order `npm run bench` runs them (a phase runs after those it `needs`). */
import type { Phase } from '../phase.js';
import { batchingPhase, echoPhase, sustainedPhase } from './auth.js';
import { dataplanePhase } from './dataplane.js';
import { leasesPhase } from './leases.js';
import { microPhase } from './micro.js';
import { holdPhase, stormPhase } from './storm.js';
import { storePhase } from './store.js';
import { v2Phase } from './v2.js';

export const PHASES: readonly Phase[] = [echoPhase, sustainedPhase, batchingPhase, v2Phase, dataplanePhase, holdPhase, stormPhase, leasesPhase, storePhase, microPhase];

/** The phases to run for `--only` keys: those named and, before them, what they need. */
export function selectPhases(only: readonly string[] | undefined): Phase[] {
  if (only === undefined) return [...PHASES];
  const unknown = only.filter((k) => !PHASES.some((p) => p.key === k));
  if (unknown.length > 0) throw new Error(`unknown phase ${unknown.join(', ')}; phases: ${PHASES.map((p) => p.key).join(', ')}`);
  const want = new Set<string>();
  const add = (key: string): void => {
    if (want.has(key)) return;
    want.add(key);
    for (const n of PHASES.find((p) => p.key === key)?.needs ?? []) add(n);
  };
  for (const k of only) add(k);
  return PHASES.filter((p) => want.has(p.key));
}
