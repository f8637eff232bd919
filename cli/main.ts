/**
 * The `gatehouse` command: one binary, subcommands loaded lazily so `gatehouse --help` stays
 * fast and a command whose module is missing or broken does not take the others down.
 */
import { VERSION } from '../daemon/version.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, write, type CliIO } from '../common/cli-io.js';

interface CommandModule {
  run(args: string[], io: CliIO): Promise<number>;
}

export interface Command {
  summary: string;
  /** Module specifier relative to this file. A variable, so a missing module fails only its command. */
  module: string;
}

/** Every subcommand. Keep in step with docs/operations.md (a test checks). */
export const COMMANDS: Readonly<Record<string, Command>> = {
  run: { summary: 'Run the daemon (what systemd starts)', module: '../daemon/cli/run.js' },
  demo: { summary: 'Run a self-contained demo: backend, gateway and peripherals on loopback', module: '../demo/demo.js' },
  status: { summary: "Show the running daemon's state", module: '../daemon/cli/status.js' },
  peripherals: { summary: 'Connected peripherals; --failing: who keeps failing and why; DEV: one device', module: '../daemon/cli/peripherals.js' },
  events: { summary: 'Show recent decisions (--follow to stream)', module: '../daemon/cli/events.js' },
  scan: { summary: 'Nearby BLE peripherals the daemon hears: RSSI, versions, last outcome, back-off (--follow)', module: '../daemon/cli/scan.js' },
  check: { summary: 'Run diagnostics (OK/WARN/FAIL and what to do)', module: '../daemon/cli/check.js' },
  config: { summary: 'Validate the config file (config check)', module: '../daemon/cli/config.js' },
  tpm: { summary: 'Provision and inspect the TPM identity key', module: '../daemon/cli/tpm.js' },
  peripheral: { summary: 'Reference peripheral: keys, hello, welcome checks', module: '../peripherals/cli.js' },
};

export function usage(): string {
  const w = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  return `Usage: gatehouse <command> [options]

Gatehouse brokers mutual authentication between peripherals (BLE, MQTT) and a backend,
with the gateway's identity key in a TPM 2.0.

Commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(w)}  ${c.summary}`)
  .join('\n')}

Run 'gatehouse <command> --help' for a command's options.

Options:
  -h, --help       show this help
  -V, --version    print the version

Exit codes: 0 ok, 1 failure, 2 usage error, 3 check warnings.
Environment: GATEHOUSE_CONFIG (config file), GATEHOUSE_STATUS_SOCKET (status socket),
GATEHOUSE_DEBUG=1 (stack traces on unexpected errors).
`;
}

function isCommandModule(m: unknown): m is CommandModule {
  return typeof m === 'object' && m !== null && typeof (m as { run?: unknown }).run === 'function';
}

/**
 * Run the CLI with `argv` (without node and script). Resolves the exit code. `commands` is
 * injectable so tests can exercise a missing or malformed command module.
 */
export async function main(argv: string[], io: CliIO, commands: Readonly<Record<string, Command>> = COMMANDS): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === '-h' || first === '--help') {
    (first === undefined ? io.stderr : io.stdout).write(usage());
    return first === undefined ? EXIT_USAGE : EXIT_OK;
  }
  if (first === '-V' || first === '--version') {
    write(io.stdout, `gatehouse ${VERSION}`);
    return EXIT_OK;
  }
  if (first === 'help') {
    if (rest[0] === undefined) {
      write(io.stdout, usage());
      return EXIT_OK;
    }
    return main([rest[0], '--help'], io, commands);
  }
  if (first.startsWith('-')) {
    write(io.stderr, `gatehouse: unknown option ${first} (see gatehouse --help)`);
    return EXIT_USAGE;
  }
  const command = Object.prototype.hasOwnProperty.call(commands, first) ? commands[first] : undefined;
  if (command === undefined) {
    write(io.stderr, `gatehouse: unknown command ${JSON.stringify(first)} (see gatehouse --help)`);
    return EXIT_USAGE;
  }
  let mod: unknown;
  try {
    mod = await import(command.module);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    write(io.stderr, code === 'ERR_MODULE_NOT_FOUND'
      ? `gatehouse ${first}: not available in this build (${err instanceof Error ? err.message.split('\n')[0] : 'module not found'})`
      : `gatehouse ${first}: cannot load the command: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
    return EXIT_FAILURE;
  }
  if (!isCommandModule(mod)) {
    write(io.stderr, `gatehouse ${first}: the command module has no run()`);
    return EXIT_FAILURE;
  }
  return mod.run(rest, io);
}
