/** The sizes the phases share, full and --quick. */
import type { PhaseContext } from '../phase.js';

export function sizes(ctx: Pick<PhaseContext, 'quick'>): { pool: number; throughputGens: number; durationMs: number; openDurationMs: number; hold: number } {
  return ctx.quick
    ? { pool: 64, throughputGens: 2, durationMs: 2000, openDurationMs: 2000, hold: 500 }
    : { pool: 128, throughputGens: 2, durationMs: 5000, openDurationMs: 4000, hold: 5000 };
}
