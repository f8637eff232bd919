/**
 * The process's file descriptors as Linux reports them: the RLIMIT_NOFILE soft limit
 * (/proc/self/limits) and how many are open (/proc/self/fd). Node has no getrlimit; both answer
 * undefined where /proc is not there.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** The soft and hard RLIMIT_NOFILE (`Infinity` for "unlimited"), or undefined without /proc. */
export function openFileLimit(limitsText?: string): { soft: number; hard: number } | undefined {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return undefined;
    }
  }
  const line = text.split('\n').find((l) => l.startsWith('Max open files'));
  const m = line === undefined ? null : /^Max open files\s+(\S+)\s+(\S+)/.exec(line);
  if (m === null) return undefined;
  const num = (s: string): number => (s === 'unlimited' ? Infinity : Number(s));
  const soft = num(m[1] as string);
  const hard = num(m[2] as string);
  return Number.isNaN(soft) || Number.isNaN(hard) ? undefined : { soft, hard };
}

/** Descriptors open in this process now, or undefined without /proc. */
export function openDescriptorCount(): number | undefined {
  try {
    // The listing's own descriptor is counted too: one more than the caller holds.
    return readdirSync('/proc/self/fd').length - 1;
  } catch {
    return undefined;
  }
}

/** EMFILE (this process) or ENFILE (the whole system): out of descriptors. */
export function isDescriptorExhaustion(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'EMFILE' || code === 'ENFILE';
}
