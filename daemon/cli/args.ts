/**
 * Option parsing for every subcommand: node:util parseArgs in strict mode, with errors that
 * name the wrong option and the command (CONTRIBUTING.md §7: a wrong option names itself).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../../common/cli-io.js';
import { isValidId } from '../../protocol/index.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** Options of the commands that print times: the operator's time zone unless --utc. */
export const TIME_OPTIONS = {
  utc: { type: 'boolean' },
} as const satisfies Options;

/** Options every read command takes. */
export const SOCKET_OPTIONS = {
  socket: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Options;

export function parse<const O extends Options>(command: string, args: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const quoted = err instanceof Error ? /'([^']+)'/.exec(err.message)?.[1] : undefined;
    const name = quoted?.split(' ')[0];
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new UsageError(`${command}: unknown option ${name ?? ''} (see ${command} --help)`);
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') throw new UsageError(`${command}: option ${name ?? ''} needs a value (see ${command} --help)`);
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') throw new UsageError(`${command}: unexpected argument ${JSON.stringify(quoted ?? '')} (see ${command} --help)`);
    throw err;
  }
}

/** A non-negative integer option, or a usage error naming it. */
export function intOption(command: string, name: string, value: string | undefined, dflt: number, max: number): number {
  if (value === undefined) return dflt;
  if (!/^\d{1,16}$/.test(value) || Number(value) > max) throw new UsageError(`${command}: --${name} must be an integer 0..${max}, got ${JSON.stringify(value)}`);
  return Number(value);
}

/** A device id argument (1-64 id characters), or a usage error naming `what`. */
export function devArgument(command: string, what: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const shown = JSON.stringify(value.slice(0, 80));
  if (!isValidId(value)) throw new UsageError(`${command}: ${what} must be a device id (1-64 of A-Z a-z 0-9 . _ : -), got ${shown}`);
  return value;
}

export const DEFAULT_STATUS_SOCKET = '/run/gatehouse/status.sock';

/** --socket, else $GATEHOUSE_STATUS_SOCKET, else the default path. */
export function socketPath(option: string | undefined, env: NodeJS.ProcessEnv): string {
  return option ?? (env.GATEHOUSE_STATUS_SOCKET !== undefined && env.GATEHOUSE_STATUS_SOCKET !== '' ? env.GATEHOUSE_STATUS_SOCKET : DEFAULT_STATUS_SOCKET);
}

/** --config, else $GATEHOUSE_CONFIG, else /etc/gatehouse/gatehouse.yaml. */
export function configPath(option: string | undefined, env: NodeJS.ProcessEnv): string {
  return option ?? (env.GATEHOUSE_CONFIG !== undefined && env.GATEHOUSE_CONFIG !== '' ? env.GATEHOUSE_CONFIG : '/etc/gatehouse/gatehouse.yaml');
}
