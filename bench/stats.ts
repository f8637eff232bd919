/** Small statistics for the bench: percentiles of samples, medians and spread over runs. */

/** The q-quantile (0..1) of samples by the nearest-rank method; NaN when empty. */
export function percentile(samples: readonly number[], q: number): number {
  if (samples.length === 0) return NaN;
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? NaN;
}

export function median(xs: readonly number[]): number {
  return percentile(xs, 0.5);
}

/** The median, as the mean of the middle two for an even count (paired ABBA rounds come in pairs). */
export function midMedian(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 === 1 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
}

/** Median of the runs with their min and max (the spread printed next to every number). */
export interface Spread {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

export function spread(runs: readonly number[]): Spread {
  const r = runs.map((x) => round(x));
  return { median: round(median(runs)), min: Math.min(...r), max: Math.max(...r), runs: r };
}

export function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** "1234 (1200–1250)" */
export function fmt(s: Spread, unit = ''): string {
  return `${s.median}${unit} (${s.min}–${s.max})`;
}
