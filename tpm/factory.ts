/**
 * Build the configured key store (config section `tpm`, docs/configuration.md) for the
 * composition root. Nothing is opened here: the caller calls `open()` in its start sequence.
 */
import type { Logger } from 'winston';
import type { Clock } from '../common/clock.js';
import type { KeyStore } from './key-store.js';
import { DEFAULT_SIGN_RATE_LIMIT } from './rate-limiter.js';
import { SoftwareKeyStore } from './software-key-store.js';
import { parseHandle, TpmKeyStore } from './tpm-key-store.js';

export interface KeyStoreConfig {
  /** `tpm` or `software` (development only). */
  kind: 'tpm' | 'software';
  /** TCTI string (tpm.tcti). */
  tcti: string;
  /** Persistent handle as configured, e.g. "0x81010001" (tpm.handle). */
  handle: string;
  /** Sustained signature rate (tpm.signRatePerSec, default 0.1 as DEFAULT_SIGN_RATE_LIMIT); bursts of up to 10 are allowed. */
  signRatePerSec: number;
  /** State directory holding tpm-key.json (gateway.stateDir). */
  stateDir: string;
  /** gateway.production: the software store refuses to open when true. */
  production: boolean;
  /** Software store only: a key file; omitted, an ephemeral in-memory key. */
  softwareKeyFile?: string;
}

/** Back-to-back signatures allowed before the sustained rate applies (the key store's default burst). */
export const SIGN_BURST = DEFAULT_SIGN_RATE_LIMIT.burst;

export function createKeyStore(cfg: KeyStoreConfig, deps: { logger?: Logger; clock?: Clock } = {}): KeyStore {
  if (cfg.kind === 'software') {
    return new SoftwareKeyStore({
      production: cfg.production,
      ...(cfg.softwareKeyFile !== undefined ? { keyFile: cfg.softwareKeyFile } : {}),
      ...(deps.logger ? { logger: deps.logger } : {}),
    });
  }
  return new TpmKeyStore({
    tcti: cfg.tcti,
    handle: parseHandle(cfg.handle),
    stateDir: cfg.stateDir,
    rateLimit: { burst: SIGN_BURST, perSecond: cfg.signRatePerSec },
    ...(deps.logger ? { logger: deps.logger } : {}),
    ...(deps.clock ? { clock: deps.clock } : {}),
  });
}
