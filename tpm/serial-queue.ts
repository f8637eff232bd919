/**
 * A bounded serial queue: jobs run one at a time, in order. The ESAPI context is not
 * thread-safe and koffi runs async calls on worker threads, so every TPM call goes through
 * one of these (CONTRIBUTING.md §3).
 */
import { TpmError } from './errors.js';

export interface SerialQueueOptions {
  /** Jobs waiting or running before `run` answers GH_TPM_BUSY (backpressure). */
  maxPending: number;
  /** Per-job limit from enqueue to result; GH_TPM_TIMEOUT after it. */
  timeoutMs: number;
}

/** Tells a job whether its caller already gave up (so it skips work it has not started). */
export interface JobSignal {
  readonly timedOut: boolean;
}

export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();
  #pending = 0;

  readonly #opts: SerialQueueOptions;

  constructor(opts: SerialQueueOptions) {
    this.#opts = opts;
  }

  /** Jobs waiting or running. */
  get size(): number {
    return this.#pending;
  }

  /**
   * Run `job` after every earlier job has settled. If the caller's timeout fires first, the
   * caller gets GH_TPM_TIMEOUT and `onTimeout` runs; the queue still waits for the job itself
   * to finish (a native call cannot be interrupted), so two jobs never overlap.
   */
  run<T>(job: (signal: JobSignal) => Promise<T>, what: string, onTimeout?: () => void): Promise<T> {
    if (this.#pending >= this.#opts.maxPending) {
      return Promise.reject(new TpmError('GH_TPM_BUSY', `TPM queue full (${this.#opts.maxPending} requests): ${what} refused`));
    }
    this.#pending++;
    const signal = { timedOut: false };
    const result = this.#tail.then(() => (signal.timedOut ? Promise.reject(new TpmError('GH_TPM_TIMEOUT', `${what} timed out`)) : job(signal)));
    const settled = result.then(
      () => undefined,
      () => undefined,
    );
    this.#tail = settled.finally(() => {
      this.#pending--;
    });
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        signal.timedOut = true;
        onTimeout?.();
        reject(new TpmError('GH_TPM_TIMEOUT', `${what} did not finish within ${this.#opts.timeoutMs} ms`));
      }, this.#opts.timeoutMs);
      result.then(
        (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err);
        },
      );
    });
  }

  /** Resolves once every job queued so far has settled. */
  async drain(): Promise<void> {
    await this.#tail;
  }
}
