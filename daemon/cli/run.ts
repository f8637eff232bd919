/**
 * `gatehouse run`: the daemon (systemd starts it this way, Type=notify). The config is loaded and
 * validated first, so a broken config fails closed before anything listens; then the composition
 * root (daemon/gateway.ts) starts every service and tells systemd READY=1.
 */
import { ConfigError } from '../config/errors.js';
import { loadConfig } from '../config/load.js';
import { Gateway } from '../gateway.js';
import { createRootLogger, logError, reloadLevelOnSighup, underJournald } from '../../common/log/logger.js';
import { configPath, parse } from './args.js';
import { guard } from './command.js';
import { EXIT_FAILURE, EXIT_OK, write, type CliIO } from '../../common/cli-io.js';

export const HELP = `Usage: gatehouse run [--config FILE]

Run the daemon (systemd starts it this way: Type=notify). Loads and validates the config first;
any config problem stops it before anything listens. Sends READY=1 once the MQTT listeners
accept and the status socket is up.

Options:
  --config FILE    config file (default $GATEHOUSE_CONFIG or /etc/gatehouse/gatehouse.yaml)
  -h, --help       show this help

Signals: SIGTERM/SIGINT stop intake, drain in-flight exchanges (bounded) and exit 0;
SIGHUP reloads log.level and pipeline.rateLimits from the config file (no connection is dropped).
Exit codes: 0 clean stop, 1 failure (bad config, start failed), 2 usage error.
`;

export function run(args: string[], io: CliIO): Promise<number> {
  const cmd = 'gatehouse run';
  return guard(cmd, io, async () => {
    const { values } = parse(cmd, args, { config: { type: 'string' }, help: { type: 'boolean', short: 'h' } });
    if (values.help === true) {
      write(io.stdout, HELP);
      return EXIT_OK;
    }
    const file = configPath(values.config, io.env);
    let config;
    try {
      config = await loadConfig(file);
    } catch (err) {
      if (err instanceof ConfigError) {
        // Under journald each line carries the error priority, as the logger's lines do.
        const text = `${cmd}: refusing to start: ${err.message}`;
        write(io.stderr, underJournald(io.env) ? text.split('\n').map((l) => `<3>${l}`).join('\n') : text);
        return EXIT_FAILURE;
      }
      throw err;
    }
    const logger = createRootLogger({ level: config.log.level, format: config.log.format, env: io.env });
    const gateway = new Gateway({ config, configFile: file, logger });
    // SIGHUP: log level and rate limits from the file again; a broken file changes nothing.
    const stopHup = reloadLevelOnSighup(logger, async () => {
      const next = await loadConfig(file);
      gateway.reload(next);
      return next.log.level;
    });
    let stopping: Promise<void> | undefined;
    const stopped = new Promise<void>((resolve) => {
      const onSignal = (signal: NodeJS.Signals): void => {
        logger.info('signal received: stopping', { signal });
        stopping ??= gateway.stop().finally(resolve);
      };
      process.once('SIGTERM', onSignal);
      process.once('SIGINT', onSignal);
    });
    try {
      await gateway.start();
    } catch (err) {
      if (stopping !== undefined) {
        // Told to stop while starting: a clean stop, not a failure.
        await stopped;
        stopHup();
        return EXIT_OK;
      }
      logError(logger, 'gateway failed to start', err);
      write(io.stderr, `${cmd}: failed to start: ${err instanceof Error ? err.message : String(err)}`);
      stopHup();
      return EXIT_FAILURE;
    }
    await stopped;
    stopHup();
    return EXIT_OK;
  });
}
