/**
 * Radio calls in flight: each with a deadline, an optional abort signal, and a key (the
 * peripheral id) so a disconnect or the adapter going away fails what waits at once instead of
 * at its timeout. noble sometimes never answers; nothing here waits forever.
 */
import type { EventEmitter } from 'node:events';
import { BleError, type BleErrorCode } from './errors.js';
import type { BleCallOptions } from './port.js';

interface Pending {
  reject: (err: BleError) => void;
  /** A disconnect operation completes on the disconnect event instead of failing with it. */
  endsWithDisconnect: boolean;
}

/** A readable reason from anything thrown, with the errno code when there is one. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

/** The registry of pending radio calls of one central. */
export class PendingCalls {
  readonly #defaultTimeoutMs: number;
  readonly #pending = new Map<string, Set<Pending>>();

  constructor(defaultTimeoutMs: number) {
    this.#defaultTimeoutMs = defaultTimeoutMs;
  }

  /** Calls pending now (all keys). */
  get size(): number {
    let n = 0;
    for (const g of this.#pending.values()) n += g.size;
    return n;
  }

  /** Fail every call pending under `key` (every call when undefined) with `code`. */
  rejectAll(key: string | undefined, code: BleErrorCode, message: string): void {
    const groups = key === undefined ? [...this.#pending.values()] : [this.#pending.get(key) ?? new Set<Pending>()];
    for (const group of groups) {
      for (const p of [...group]) if (!(code === 'GH_BLE_DISCONNECTED' && p.endsWithDisconnect)) p.reject(new BleError(code, message));
    }
  }

  /** Wait for `event` on `emitter` after `invoke()`; the listener is removed however it ends. */
  waitFor<T extends unknown[] = unknown[]>(
    emitter: EventEmitter,
    event: string,
    invoke: () => void,
    what: string,
    options: BleCallOptions,
    key: string | undefined,
    check?: (...args: unknown[]) => BleError | undefined,
  ): Promise<T> {
    return this.run<T>(options, what, key, (resolve, reject, onSettle) => {
      const listener = (...args: unknown[]): void => {
        const failure = check?.(...args);
        if (failure) reject(failure);
        else resolve(args as T);
      };
      emitter.once(event, listener);
      onSettle(() => emitter.off(event, listener));
      invoke();
    });
  }

  /** Run one operation with a deadline, an abort signal, and registration under `key`. */
  run<T = void>(
    options: BleCallOptions,
    what: string,
    key: string | undefined,
    body: (resolve: (v: T) => void, reject: (e: BleError) => void, onSettle: (f: () => void) => void) => void,
    endsWithDisconnect = false,
  ): Promise<T> {
    const timeoutMs = options.timeoutMs ?? this.#defaultTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const cleanups: Array<() => void> = [];
      let settled = false;
      const settle = (): boolean => {
        if (settled) return false;
        settled = true;
        for (const c of cleanups) c();
        return true;
      };
      const pending: Pending = { reject: (e) => settle() && reject(e), endsWithDisconnect };
      const groupKey = key ?? '';
      const group = this.#pending.get(groupKey) ?? new Set<Pending>();
      this.#pending.set(groupKey, group);
      group.add(pending);
      cleanups.push(() => {
        group.delete(pending);
        if (group.size === 0) this.#pending.delete(groupKey);
      });
      const timer = setTimeout(() => pending.reject(new BleError('GH_BLE_TIMEOUT', `${what} did not answer within ${timeoutMs} ms`)), timeoutMs);
      cleanups.push(() => clearTimeout(timer));
      const signal = options.signal;
      if (signal) {
        if (signal.aborted) return pending.reject(new BleError('GH_BLE_ABORTED', `${what} aborted`, { cause: signal.reason }));
        const onAbort = (): void => pending.reject(new BleError('GH_BLE_ABORTED', `${what} aborted`, { cause: signal.reason }));
        signal.addEventListener('abort', onAbort, { once: true });
        cleanups.push(() => signal.removeEventListener('abort', onAbort));
      }
      try {
        body(
          (v) => settle() && resolve(v),
          (e) => pending.reject(e),
          (f) => (settled ? f() : cleanups.push(f)),
        );
      } catch (err) {
        pending.reject(new BleError('GH_BLE_OPERATION_FAILED', `${what} failed: ${describeError(err)}`, { cause: err }));
      }
    });
  }
}
