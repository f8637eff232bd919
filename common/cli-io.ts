/**
 * The streams and environment a CLI subcommand works with. Injected so tests can capture
 * output and set the environment without touching the process.
 */
import { CodedError } from './errors.js';

export interface CliIO {
  /** Normal output (tables, JSON). */
  stdout: NodeJS.WritableStream;
  /** Diagnostics and errors. */
  stderr: NodeJS.WritableStream;
  /** Environment variables (e.g. GATEHOUSE_STATUS_SOCKET). */
  env: NodeJS.ProcessEnv;
}

/** Writes `text` as whole lines: a newline is added unless it already ends in one. */
export function write(stream: NodeJS.WritableStream, text: string): void {
  stream.write(text.endsWith('\n') ? text : `${text}\n`);
}

/**
 * Writes exactly `data`, no newline added: for output that is not a line (binary CBOR on
 * stdout, a progress line redrawn in place with `\r`).
 */
export function writeRaw(stream: NodeJS.WritableStream, data: string | Uint8Array): void {
  stream.write(data);
}

/** Exit codes every subcommand uses. */
export const EXIT_OK = 0;
/** The command failed. */
export const EXIT_FAILURE = 1;
/** Wrong usage (unknown option, missing argument). */
export const EXIT_USAGE = 2;
/** `check`: no failure, but at least one warning. */
export const EXIT_WARNINGS = 3;

/** Wrong usage (unknown option, missing or bad argument): the CLIs answer it with EXIT_USAGE. */
export type CliErrorCode = 'GH_CLI_USAGE';

/** Wrong usage: exit code 2. The message names the option or argument at fault. */
export class UsageError extends CodedError<CliErrorCode> {
  constructor(message: string) {
    super('GH_CLI_USAGE', message);
  }
}
