/**
 * Output helpers, the one place the CLI turns numbers into text: aligned tables for people,
 * durations, latencies, ages and times in the operator's time zone (or UTC with --utc); one
 * JSON document (or NDJSON) for scripts, with the noise digits of measured times dropped.
 */

/** Columns padded to the widest cell; the last column is not padded. */
export function table(headers: string[], rows: string[][]): string {
  const all = [headers, ...rows];
  const widths = headers.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd())
    .join('\n');
}

/** `key   value` lines, keys aligned. */
export function keyValues(pairs: [string, string][]): string {
  const w = Math.max(...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n');
}

/** 3d 4h, 2h 5m, 4m 10s, 12s. */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

/**
 * A measured time for people, two significant digits where that is all that means anything:
 * 0.39 ms, 4.2 ms, 31 ms, 1.2 s, then as a duration (2m 5s).
 */
export function latency(ms: number): string {
  const v = Math.max(0, ms);
  if (v < 1) return `${v.toFixed(2)} ms`;
  if (v < 10) return `${v.toFixed(1)} ms`;
  if (v < 999.5) return `${Math.round(v)} ms`;
  if (v < 9950) return `${(v / 1000).toFixed(1)} s`;
  if (v < 59500) return `${Math.round(v / 1000)} s`;
  return duration(v / 1000);
}

/** How long ago `ms` (unix ms) was, seen from `nowMs`: `4m 10s ago`, `just now`. */
export function age(ms: number, nowMs: number): string {
  const s = (nowMs - ms) / 1000;
  if (s < 1) return 'just now';
  return `${duration(s)} ago`;
}

/** How far `ms` (unix ms) is from `nowMs`: `in 23h 59m`, or `5m 2s ago` when it has passed. */
export function until(ms: number, nowMs: number): string {
  const s = (ms - nowMs) / 1000;
  if (s < 0) return `${duration(-s)} ago`;
  if (s < 1) return 'now';
  return `in ${duration(s)}`;
}

/** Where times are shown: the operator's local time zone (TZ), or UTC (`--utc`). */
export type Zone = 'local' | 'utc';

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/** `2024-05-01 14:03:07` in `zone`; UTC times end in `Z` so they are never mistaken for local ones. */
export function clockTime(ms: number, zone: Zone): string {
  const d = new Date(ms);
  if (zone === 'utc') return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}Z`;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** The zone's name for a legend line: `UTC`, or the local offset at `ms`, e.g. `UTC+02:00`. */
export function zoneName(zone: Zone, ms: number): string {
  if (zone === 'utc') return 'UTC';
  const off = -new Date(ms).getTimezoneOffset();
  const sign = off < 0 ? '-' : '+';
  const a = Math.abs(off);
  return `local time, UTC${sign}${pad(Math.floor(a / 60))}:${pad(a % 60)}`;
}

/** The legend line under a table: what `-` means in each column that has one, and the time zone. */
export function legend(notes: string[]): string {
  return notes.length === 0 ? '' : `(${notes.join('; ')})`;
}

/** A remote address for a table: a BLE address says it is not an identity (protocol-v1). */
export function remoteCell(transport: string, remote: string | undefined): string {
  if (remote === undefined || remote === '') return '-';
  return transport === 'ble' ? `${remote} (not an identity)` : remote;
}
