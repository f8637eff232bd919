/**
 * The context for `gatehouse check --offline`: config, clock, state directory, TPM and a TLS
 * handshake with the backend, all from this process. The daemon builds its own context from
 * its live parts (session, transports) and serves the report at /v1/check.
 */
import { ConfigError } from '../config/errors.js';
import { loadConfig } from '../config/load.js';
import { probeBackendTls } from './probes/backend-tls.js';
import { probeTpm } from './probes/tpm.js';
import type { CheckContext } from './types.js';
import { openDescriptorCount, openFileLimit } from '../../common/descriptors.js';

export async function offlineCheckContext(file: string, now: () => Date = () => new Date()): Promise<CheckContext> {
  try {
    const config = await loadConfig(file);
    return {
      config: { ok: true, config, file },
      now,
      tpm: config.tpm.kind === 'tpm' ? () => probeTpm(config) : undefined,
      backend: () => probeBackendTls(config.backend),
      descriptors: () => ({ limit: openFileLimit()?.soft, open: openDescriptorCount(), whose: 'this process' }),
    };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return { config: { ok: false, file, error: err.message }, now };
  }
}
