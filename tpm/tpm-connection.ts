/**
 * One TCTI + ESAPI context behind a serial queue, rebuilt when the TPM goes away.
 *
 * - Every call runs through the queue (the ESAPI context is not thread-safe).
 * - A TCTI/connection failure finalizes the context and opens a new one, and the call is
 *   retried once: swtpm restarts and tabrmd restarts heal on the next call.
 * - TPM_RC_INITIALIZE (a TPM that restarted without TPM2_Startup, e.g. swtpm) is answered
 *   with Startup(CLEAR) and a retry.
 * - A call that times out marks the context suspect; the next call starts from a fresh one.
 */
import { access, constants } from 'node:fs/promises';
import type { Logger } from 'winston';
import { silentLogger } from '../common/log/logger.js';
import { CheckedTss, type EsysContext } from './ffi/checked.js';
import { needsReconnect, TpmError } from './errors.js';
import { SerialQueue } from './serial-queue.js';

export const DEFAULT_TCTI = 'device:/dev/tpmrm0';

export interface TpmConnectionOptions {
  /** TCTI loader string: `device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`, `tabrmd:bus_type=system`. */
  tcti?: string;
  logger?: Logger;
  /** Per-call limit (queue wait included). Default 30 s: a busy hardware TPM can take seconds. */
  callTimeoutMs?: number;
  /** Calls waiting or running before GH_TPM_BUSY. Default 32. */
  maxPending?: number;
}

/** A call's view of the context: `generation` changes every time the context is rebuilt. */
export type TpmCall<T> = (tss: CheckedTss, ctx: EsysContext, generation: number) => Promise<T>;

/** Throw GH_TPM_NO_DEVICE / GH_TPM_PERMISSION_DENIED for a `device:` TCTI whose node is missing or closed to us. */
export async function checkDeviceNode(tcti: string): Promise<void> {
  const m = /^device:(.+)$/.exec(tcti);
  if (!m?.[1]) return;
  const path = m[1];
  try {
    await access(path, constants.R_OK | constants.W_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') {
      throw new TpmError('GH_TPM_PERMISSION_DENIED', `permission denied on ${path}: the user needs to be in the 'tss' group`, { cause: err });
    }
    throw new TpmError('GH_TPM_NO_DEVICE', `no TPM device at ${path}`, { cause: err });
  }
}

export class TpmConnection {
  readonly tcti: string;
  readonly #logger: Logger;
  readonly #queue: SerialQueue;
  #tss: CheckedTss | undefined;
  #ctx: EsysContext | undefined;
  #generation = 0;
  #suspect = false;
  #closed = false;
  readonly #closeTimeoutMs: number;

  constructor(opts: TpmConnectionOptions = {}) {
    this.tcti = opts.tcti ?? DEFAULT_TCTI;
    this.#logger = opts.logger ?? silentLogger();
    this.#closeTimeoutMs = opts.callTimeoutMs ?? 30_000;
    this.#queue = new SerialQueue({ maxPending: opts.maxPending ?? 32, timeoutMs: this.#closeTimeoutMs });
  }

  /** Run `call` on the context, serialised, reconnecting as described above. */
  run<T>(what: string, call: TpmCall<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new TpmError('GH_TPM_CLOSED', `TPM connection closed: ${what} refused`));
    return this.#queue.run(
      () => this.#withReconnect(what, call),
      what,
      () => {
        this.#suspect = true;
      },
    );
  }

  async #ensure(): Promise<{ tss: CheckedTss; ctx: EsysContext }> {
    if (this.#ctx && this.#suspect) this.#reset('a call timed out');
    this.#suspect = false;
    this.#tss ??= CheckedTss.load();
    if (!this.#ctx) {
      await checkDeviceNode(this.tcti);
      this.#ctx = await this.#tss.open(this.tcti);
      this.#generation++;
      this.#logger.debug('TPM context opened', { tcti: this.tcti, generation: this.#generation });
    }
    return { tss: this.#tss, ctx: this.#ctx };
  }

  #reset(why: string): void {
    if (this.#ctx && this.#tss) {
      this.#tss.close(this.#ctx);
      this.#logger.warn('TPM context reset', { tcti: this.tcti, reason: why });
    }
    this.#ctx = undefined;
  }

  async #withReconnect<T>(what: string, call: TpmCall<T>): Promise<T> {
    // At most: one reconnect, one Startup, then the real attempt.
    for (let attempt = 0; ; attempt++) {
      const { tss, ctx } = await this.#ensure();
      try {
        return await call(tss, ctx, this.#generation);
      } catch (err) {
        if (attempt >= 2 || !needsReconnect(err)) throw err;
        const code = (err as TpmError).code;
        if (code === 'GH_TPM_NOT_INITIALIZED') {
          this.#logger.warn('TPM not started (it restarted?): sending TPM2_Startup(CLEAR)', { what });
          await tss.startup(ctx).catch((e: unknown) => {
            // TPM_RC_INITIALIZE from Startup itself means someone else already started it.
            if (!(e instanceof TpmError && e.code === 'GH_TPM_NOT_INITIALIZED')) throw e;
          });
          this.#generation++;
        } else {
          this.#reset(`${what}: ${(err as TpmError).message}`);
        }
      }
    }
  }

  /**
   * Wait for queued calls, then finalize the context. Idempotent. Bounded by the call timeout:
   * if a native call is still stuck in a hung TPM after that, the context is abandoned rather
   * than freed under a worker thread that may still use it.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([
      this.#queue.drain().then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), this.#closeTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!drained) {
      this.#logger.warn('TPM call still running at close: abandoning the context', { tcti: this.tcti });
      this.#ctx = undefined;
      return;
    }
    if (this.#ctx && this.#tss) this.#tss.close(this.#ctx);
    this.#ctx = undefined;
  }
}
