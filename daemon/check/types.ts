/**
 * The `gatehouse check` model (CONTRIBUTING.md §10): one small check per file, each with a stable id, a
 * one-line description, a status and what to do about it.
 */
import type { GatehouseConfig } from '../config/schema.js';
import type { FailingPeripheral } from '../status/failing.js';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

/** What one check found. */
export interface CheckOutcome {
  status: CheckStatus;
  /** One line: what was found. Never a secret. */
  message: string;
  /** One line: what to do (for warn and fail). */
  action?: string;
}

export interface CheckResult extends CheckOutcome {
  id: string;
  description: string;
}

export interface CheckReport {
  /** The worst status among the results (skip counts as ok). */
  status: 'ok' | 'warn' | 'fail';
  results: CheckResult[];
  summary: Record<CheckStatus, number>;
}

/** Facts about the TPM key, from whoever can reach the TPM (the daemon's key store, or a probe). */
export interface TpmProbeResult {
  reachable: boolean;
  keyPresent: boolean;
  /** One line for the operator, e.g. the TSS2 error text. */
  detail?: string;
  /** What to do, when the probe knows (e.g. tpm/errors.ts adviceFor). */
  advice?: string;
  /** Whether the key has the noDA attribute; false for a key provisioned before noDA (docs/tpm.md). */
  noDA?: boolean;
  /** Whether the key has an authValue; false for a key provisioned before keys had one (docs/tpm.md). */
  authValue?: boolean;
}

export interface SessionFacts {
  /** Unix seconds the current gateway credential expires; undefined while none is held. */
  notAfter: number | undefined;
  /** Lifetime the credential was issued for, to judge "close to expiry". */
  lifetimeSec: number;
  /** Last error from creating a session, if the last attempt failed (one line, no secrets). */
  lastError?: string;
}

export interface BleFacts {
  /** noble's adapter state: poweredOn, poweredOff, unauthorized, unsupported, unknown… */
  adapterState: string;
}

export interface ListenerFacts {
  name: string;
  address: string;
  port: number;
  listening: boolean;
}

export interface BackendProbeResult {
  ok: boolean;
  /** One line. */
  detail: string;
  /** Stable code for the action to suggest, e.g. `GH_CHECK_TLS_NAME`. */
  code?: string;
}

/**
 * What checks may look at. Every port is optional: a check whose facts are absent reports
 * `skip` (e.g. the CLI's `--offline` mode has no running transports to ask).
 */
export interface CheckContext {
  /** The config, or the error that made it unusable (`config.valid` reports it). */
  config: { ok: true; config: GatehouseConfig; file: string } | { ok: false; file: string; error: string };
  /** Wall clock, injected so expiry and clock checks are testable. */
  now(): Date;
  tpm?: () => Promise<TpmProbeResult>;
  session?: () => SessionFacts;
  backend?: () => Promise<BackendProbeResult>;
  ble?: () => BleFacts;
  mqtt?: () => ListenerFacts[];
  /** Devices whose recent attempts failed (the running daemon's tracker). */
  failing?: () => FailingPeripheral[];
  /** The process's RLIMIT_NOFILE soft limit (undefined: unknown), whose process it is, and descriptors open now. */
  descriptors?: () => DescriptorFacts;
}

export interface DescriptorFacts {
  limit: number | undefined;
  open: number | undefined;
  /** `daemon`: the running daemon's own; `this process`: the CLI's (offline), which may differ. */
  whose: 'daemon' | 'this process';
}

export interface Check {
  /** Stable id, e.g. `clock.sane`. Scripts and docs refer to it. */
  readonly id: string;
  /** One line, shown next to the result. */
  readonly description: string;
  run(ctx: CheckContext): Promise<CheckOutcome> | CheckOutcome;
}
