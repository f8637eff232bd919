/**
 * Run checks against a context: each with a timeout, a crash in one never stops the others,
 * and the report's worst status maps to the CLI exit code (0 ok, 1 fail, 3 warn).
 */
import { fdLimit } from './checks/fd-limit.js';
import type { Logger } from 'winston';
import { logError, silentLogger } from '../../common/log/logger.js';
import type { Check, CheckContext, CheckOutcome, CheckReport, CheckResult, CheckStatus } from './types.js';
import { backendSession } from './checks/backend-session.js';
import { backendTls } from './checks/backend-tls.js';
import { bleAdapter } from './checks/ble-adapter.js';
import { clockSane } from './checks/clock-sane.js';
import { configValid } from './checks/config-valid.js';
import { credentialExpiry } from './checks/credential-expiry.js';
import { mqttListeners } from './checks/mqtt-listeners.js';
import { peripheralsFailing } from './checks/peripherals-failing.js';
import { stateWritable } from './checks/state-writable.js';
import { tpmKey } from './checks/tpm-key.js';

/** Every check, in the order a field tech reads them: config first, then what depends on it. */
export const ALL_CHECKS: readonly Check[] = [
  configValid,
  clockSane,
  stateWritable,
  tpmKey,
  backendTls,
  backendSession,
  credentialExpiry,
  mqttListeners,
  fdLimit,
  bleAdapter,
  peripheralsFailing,
];

export interface RunChecksOptions {
  /** Only these ids (unknown ids are the caller's usage error). */
  only?: readonly string[];
  timeoutMs?: number;
  logger?: Logger;
}

async function runOne(check: Check, ctx: CheckContext, timeoutMs: number, log: Logger): Promise<CheckOutcome> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<CheckOutcome>((resolve) => {
    timer = setTimeout(() => resolve({ status: 'fail', message: `did not finish within ${timeoutMs} ms`, action: 'the component it probes is hanging: see the daemon log' }), timeoutMs);
  });
  try {
    return await Promise.race([Promise.resolve().then(() => check.run(ctx)), timeout]);
  } catch (err) {
    // The report may leave the process (status socket): no internal detail in it, the chain to the log.
    logError(log, 'check crashed', err, { check: check.id });
    return { status: 'fail', message: 'the check itself failed (internal error)', action: 'see the daemon log for the cause' };
  } finally {
    clearTimeout(timer);
  }
}

export async function runChecks(ctx: CheckContext, checks: readonly Check[] = ALL_CHECKS, opts: RunChecksOptions = {}): Promise<CheckReport> {
  const log = opts.logger ?? silentLogger();
  const selected = opts.only === undefined ? checks : checks.filter((c) => opts.only?.includes(c.id));
  const results: CheckResult[] = [];
  // Sequential: checks share the TPM and the backend; parallel probes would only contend.
  for (const check of selected) {
    const outcome = await runOne(check, ctx, opts.timeoutMs ?? 15000, log);
    results.push({ id: check.id, description: check.description, ...outcome });
  }
  return summarise(results);
}

export function summarise(results: CheckResult[]): CheckReport {
  const summary: Record<CheckStatus, number> = { ok: 0, warn: 0, fail: 0, skip: 0 };
  for (const r of results) summary[r.status] += 1;
  const status = summary.fail > 0 ? 'fail' : summary.warn > 0 ? 'warn' : 'ok';
  return { status, results, summary };
}

/** 0 all ok, 1 any failure, 3 warnings only. */
export function exitCodeFor(report: CheckReport): number {
  return report.status === 'fail' ? 1 : report.status === 'warn' ? 3 : 0;
}
