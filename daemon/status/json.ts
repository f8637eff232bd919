/** Numbers as the status socket's JSON serves them: measured times without their noise digits. */

/** Milliseconds to three decimals (microseconds): finer digits of a measured time are noise. */
export function roundMs(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
