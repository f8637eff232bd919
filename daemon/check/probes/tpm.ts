/**
 * Probe the TPM key the way the daemon opens it (tpm/ key store, lazily imported so commands
 * that never touch the TPM never load libtss2).
 */
import type { GatehouseConfig } from '../../config/schema.js';
import type { TpmProbeResult } from '../types.js';

const UNREACHABLE = new Set(['GH_TPM_NO_DEVICE', 'GH_TPM_PERMISSION_DENIED', 'GH_TPM_CONNECTION', 'GH_TPM_TIMEOUT', 'GH_TPM_LIBRARY', 'GH_TPM_NOT_INITIALIZED', 'GH_TPM_FAILURE']);

export async function probeTpm(cfg: GatehouseConfig, opts: { timeoutMs?: number } = {}): Promise<TpmProbeResult> {
  // Loaded on use: the TPM store binds libtss2 through koffi, which `check --offline` never needs.
  const [{ TpmKeyStore, parseHandle }, { TpmError, adviceFor }] = await Promise.all([
    import('../../../tpm/tpm-key-store.js'),
    import('../../../tpm/errors.js'),
  ]);
  const store = new TpmKeyStore({
    tcti: cfg.tpm.tcti,
    handle: parseHandle(cfg.tpm.handle),
    stateDir: cfg.gateway.stateDir,
    callTimeoutMs: opts.timeoutMs ?? 10000,
  });
  try {
    await store.open();
    return { reachable: true, keyPresent: true, noDA: store.noDA(), authValue: store.hasAuth(), detail: `thumbprint ${Buffer.from(store.thumbprint()).toString('hex').slice(0, 16)}…` };
  } catch (err) {
    if (err instanceof TpmError) {
      const advice = adviceFor(err.code);
      return { reachable: !UNREACHABLE.has(err.code), keyPresent: false, detail: `${err.code}: ${err.message.split('\n')[0] ?? ''}`, ...(advice === undefined ? {} : { advice }) };
    }
    return { reachable: false, keyPresent: false, detail: err instanceof Error ? err.message.split('\n')[0] : 'unknown error' };
  } finally {
    await store.close().catch(() => undefined);
  }
}
