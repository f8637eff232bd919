/** `gatehouse config check`: validate a config file without starting anything. */
import { ConfigError, formatIssue } from '../config/errors.js';
import { loadConfig } from '../config/load.js';
import { configPath, parse } from './args.js';
import { guard } from './command.js';
import { EXIT_FAILURE, EXIT_OK, UsageError, write, type CliIO } from '../../common/cli-io.js';

export const HELP = `Usage: gatehouse config check [--config FILE] [--json]

Validate the config file: YAML syntax, every option's type and range, unknown keys, and the
cross-field rules (docs/configuration.md). Prints OK, or every problem with its path, what
was expected and what was found.

Options:
  --config FILE    file to check (default $GATEHOUSE_CONFIG or /etc/gatehouse/gatehouse.yaml)
  --json           print {"ok", "file", "issues": [{"path", "expected", "actual", "message"?}]}
  -h, --help       show this help

Exit codes: 0 valid, 1 invalid or unreadable, 2 usage error.
`;

const OPTIONS = {
  config: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export function run(args: string[], io: CliIO): Promise<number> {
  const cmd = 'gatehouse config';
  return guard(cmd, io, async () => {
    const { values, positionals } = parse(cmd, args, OPTIONS, true);
    if (values.help === true) {
      write(io.stdout, HELP);
      return EXIT_OK;
    }
    const sub = positionals[0];
    if (sub !== 'check' || positionals.length > 1) {
      throw new UsageError(sub === undefined ? `${cmd}: missing subcommand (see ${cmd} --help)` : `${cmd}: unknown subcommand ${JSON.stringify(positionals.join(' '))} (see ${cmd} --help)`);
    }
    const file = configPath(values.config, io.env);
    try {
      await loadConfig(file);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      if (values.json === true) {
        write(io.stdout, JSON.stringify({ ok: false, file, code: err.code, error: err.issues.length > 0 ? undefined : err.message, issues: err.issues }, null, 2));
      } else if (err.issues.length > 0) {
        write(io.stderr, `${file}: ${err.issues.length} problem(s):`);
        for (const issue of err.issues) write(io.stderr, `  ${formatIssue(issue)}`);
      } else {
        write(io.stderr, err.message);
      }
      return EXIT_FAILURE;
    }
    write(io.stdout, values.json === true ? JSON.stringify({ ok: true, file, issues: [] }, null, 2) : `OK ${file}`);
    return EXIT_OK;
  });
}
