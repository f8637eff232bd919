/** Shared exit-code handling for subcommands: usage 2, failure 1, never a stack for a known error. */
import { GatehouseError } from '../../common/errors.js';
import { EXIT_FAILURE, EXIT_USAGE, UsageError, write, type CliIO } from '../../common/cli-io.js';

export async function guard(command: string, io: CliIO, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (err) {
    if (err instanceof UsageError) {
      write(io.stderr, err.message);
      return EXIT_USAGE;
    }
    if (err instanceof GatehouseError) {
      write(io.stderr, `${command}: ${err.message}`);
      return EXIT_FAILURE;
    }
    // Unexpected: say so plainly; the stack only when asked (GATEHOUSE_DEBUG=1).
    write(io.stderr, `${command}: unexpected error: ${err instanceof Error ? err.message : String(err)}`);
    if (io.env.GATEHOUSE_DEBUG === '1' && err instanceof Error && err.stack !== undefined) write(io.stderr, err.stack);
    return EXIT_FAILURE;
  }
}

/**
 * Runs a command that streams until the operator stops it (`--follow`): its signal aborts on
 * SIGINT or SIGTERM, and the handlers are removed when it ends.
 */
export async function untilSignal(body: (signal: AbortSignal) => Promise<number>): Promise<number> {
  const ac = new AbortController();
  const stop = (): void => ac.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    return await body(ac.signal);
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

/** Waits `ms` between polls of a follow loop; resolves early (never rejects) once `signal` aborts. */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
