/**
 * `gatehouse run`: the daemon. Placeholder until the composition root (daemon/gateway.ts, the
 * lead's) is wired in: it loads and validates the config, so a broken config already fails
 * closed with the right message, then exits 1.
 */
import { ConfigError } from '../config/errors.js';
import { loadConfig } from '../config/load.js';
import { configPath, parse } from './args.js';
import { guard } from './command.js';
import { write } from './format.js';
import { EXIT_FAILURE, EXIT_OK, type CliIO } from './io.js';

export const HELP = `Usage: gatehouse run [--config FILE]

Run the daemon (systemd starts it this way: Type=notify). Loads and validates the config first;
any config problem stops it before anything listens.

Options:
  --config FILE    config file (default $GATEHOUSE_CONFIG or /etc/gatehouse/gatehouse.yaml)
  -h, --help       show this help

Signals: SIGTERM/SIGINT stop gracefully; SIGHUP reloads log.level.
Exit codes: 0 clean stop, 1 failure (bad config, start failed), 2 usage error.
`;

export function run(args: string[], io: CliIO): Promise<number> {
  const cmd = 'gatehouse run';
  return guard(cmd, io, async () => {
    const { values } = parse(cmd, args, { config: { type: 'string' }, help: { type: 'boolean', short: 'h' } });
    if (values.help === true) {
      io.stdout.write(HELP);
      return EXIT_OK;
    }
    const file = configPath(values.config, io.env);
    try {
      await loadConfig(file);
    } catch (err) {
      if (err instanceof ConfigError) {
        write(io.stderr, `${cmd}: refusing to start: ${err.message}`);
        return EXIT_FAILURE;
      }
      throw err;
    }
    write(io.stderr, `${cmd}: config ${file} is valid, but the daemon is not wired yet`);
    return EXIT_FAILURE;
  });
}
