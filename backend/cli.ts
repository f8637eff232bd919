#!/usr/bin/env node
/**
 * `gatehouse-backend`: the reference backend's admin CLI and server.
 *
 *   gatehouse-backend init | serve | gateway add|revoke|list | device add|revoke|list | import | pki
 *
 * Exports `run(args, io)`; the process entry at the bottom runs only when this file is executed.
 * The commands are in cli-registry.ts (gateway, device, import), cli-serve.ts (init, serve, pki),
 * cli-store.ts (migrate, check) and cli-data-plane.ts (command, telemetry).
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { write, UsageError, type CliIO } from '../common/cli-io.js';
import { GatehouseError } from '../common/errors.js';
import { HELP, HELPS } from './cli-help.js';
import { dataDirOf, withRegistry } from './cli-options.js';
import { cmdDevice, cmdGateway, cmdImport } from './cli-registry.js';
import { cmdInit, cmdPki, cmdServe } from './cli-serve.js';
import { cmdCheck, cmdMigrate } from './cli-store.js';
import { cmdCommand, cmdTelemetry, type DataPlaneCliDeps } from './cli-data-plane.js';

function dataPlaneDeps(io: CliIO): (v: DataPlaneCliDeps['values']) => DataPlaneCliDeps {
  return (values) => ({ values, dataDir: dataDirOf(values, io), withStore: (fn) => withRegistry(values, io, fn) });
}

/** Run `gatehouse-backend` with `args`; resolves to the exit code (0 ok, 1 failure, 2 usage). */
export async function run(args: string[], io: CliIO): Promise<number> {
  const [cmd, ...rest] = args;
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    write(cmd === undefined ? io.stderr : io.stdout, HELP);
    return cmd === undefined ? 2 : 0;
  }
  const help = HELPS[cmd];
  if (help === undefined) {
    write(io.stderr, `gatehouse-backend: unknown command "${cmd}"\n\n${HELP}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    write(io.stdout, help);
    return 0;
  }
  try {
    switch (cmd) {
      case 'init':
        return await cmdInit(rest, io);
      case 'serve':
        return await cmdServe(rest, io);
      case 'gateway':
        return await cmdGateway(rest, io);
      case 'device':
        return await cmdDevice(rest, io);
      case 'import':
        return await cmdImport(rest, io);
      case 'migrate':
        return await cmdMigrate(rest, io);
      case 'check':
        return await cmdCheck(rest, io);
      case 'command':
        return await cmdCommand(rest, io, dataPlaneDeps(io));
      case 'telemetry':
        return await cmdTelemetry(rest, io, dataPlaneDeps(io));
      default:
        return await cmdPki(rest, io);
    }
  } catch (err) {
    if (err instanceof UsageError || (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS') === true) {
      write(io.stderr, `gatehouse-backend ${cmd}: ${(err as Error).message}\n\n${help}`);
      return 2;
    }
    const code = err instanceof GatehouseError ? ` [${err.code}]` : '';
    write(io.stderr, `gatehouse-backend ${cmd}: ${err instanceof Error ? err.message : String(err)}${code}`);
    return 1;
  }
}

function isMain(): boolean {
  const argv1 = process.argv[1];
  if (argv1 === undefined) return false;
  try {
    return realpathSync(argv1) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (isMain()) {
  run(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env }).then(
    (code) => (process.exitCode = code),
    (err: unknown) => {
      process.stderr.write(`gatehouse-backend: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
