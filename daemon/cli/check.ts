/** `gatehouse check`: diagnostics a field tech can act on (CONTRIBUTING.md §10). */
import { ALL_CHECKS, exitCodeFor, runChecks } from '../check/runner.js';
import { offlineCheckContext } from '../check/context.js';
import type { CheckReport, CheckStatus } from '../check/types.js';
import { SOCKET_OPTIONS, configPath, parse, socketPath } from './args.js';
import { StatusClientError, getJson } from './client.js';
import { guard } from './command.js';
import { EXIT_OK, UsageError, write, type CliIO } from '../../common/cli-io.js';

export const HELP = `Usage: gatehouse check [--offline [--config FILE]] [--only ID,...] [--json] [--socket PATH]

Run the diagnostics: each check prints OK, WARN, FAIL or SKIP, what it found, and what to do.
By default the running daemon runs them (GET /v1/check), so they see its TPM session,
listeners and BLE adapter. --offline runs the checks that need no daemon here: config,
clock, state directory, TPM key, backend TLS.

Checks:
${ALL_CHECKS.map((c) => `  ${c.id.padEnd(18)} ${c.description}`).join('\n')}

Options:
  --offline        run locally, without the daemon
  --config FILE    config for --offline (default $GATEHOUSE_CONFIG or /etc/gatehouse/gatehouse.yaml)
  --only ID,...    run only these checks
  --json           print the report as JSON
  --socket PATH    status socket (default $GATEHOUSE_STATUS_SOCKET or /run/gatehouse/status.sock)
  -h, --help       show this help

Exit codes: 0 all ok, 1 a check failed (or the daemon could not be asked), 2 usage error,
3 warnings only.
`;

const OPTIONS = {
  ...SOCKET_OPTIONS,
  offline: { type: 'boolean' },
  config: { type: 'string' },
  only: { type: 'string' },
} as const;

const LABEL: Record<CheckStatus, string> = { ok: 'OK', warn: 'WARN', fail: 'FAIL', skip: 'SKIP' };

export function renderReport(report: CheckReport): string {
  const w = Math.max(...report.results.map((r) => r.id.length), 2);
  const lines: string[] = [];
  for (const r of report.results) {
    lines.push(`${LABEL[r.status].padEnd(4)}  ${r.id.padEnd(w)}  ${r.message}`);
    if (r.action !== undefined && (r.status === 'fail' || r.status === 'warn')) lines.push(`${' '.repeat(6 + w)}  -> ${r.action}`);
  }
  const s = report.summary;
  lines.push('', `${s.ok} ok, ${s.warn} warning(s), ${s.fail} failure(s), ${s.skip} skipped`);
  return lines.join('\n');
}

export function run(args: string[], io: CliIO): Promise<number> {
  const cmd = 'gatehouse check';
  return guard(cmd, io, async () => {
    const { values } = parse(cmd, args, OPTIONS);
    if (values.help === true) {
      write(io.stdout, HELP);
      return EXIT_OK;
    }
    const only = values.only?.split(',').map((s) => s.trim()).filter((s) => s !== '');
    const known = new Set(ALL_CHECKS.map((c) => c.id));
    for (const id of only ?? []) if (!known.has(id)) throw new UsageError(`${cmd}: unknown check ${JSON.stringify(id)} (see ${cmd} --help)`);
    if (values.config !== undefined && values.offline !== true) throw new UsageError(`${cmd}: --config only applies with --offline`);
    let report: CheckReport;
    if (values.offline === true) {
      const ctx = await offlineCheckContext(configPath(values.config, io.env));
      report = await runChecks(ctx, ALL_CHECKS, only === undefined ? {} : { only });
    } else {
      try {
        report = await getJson<CheckReport>(socketPath(values.socket, io.env), '/v1/check', { timeoutMs: 60000 });
      } catch (err) {
        if (err instanceof StatusClientError && err.code === 'GH_CLI_NOT_RUNNING') {
          throw new StatusClientError(err.code, `${err.message}\n  to diagnose without the daemon: gatehouse check --offline`);
        }
        throw err;
      }
      if (only !== undefined) {
        const results = report.results.filter((r) => only.includes(r.id));
        const { summarise } = await import('../check/runner.js');
        report = summarise(results);
      }
    }
    write(io.stdout, values.json === true ? JSON.stringify(report, null, 2) : renderReport(report));
    return exitCodeFor(report);
  });
}
