/**
 * Children that cannot outlive their parent. `setpriv --pdeathsig KILL` (util-linux) sets
 * PR_SET_PDEATHSIG and then execs the command in the same process (same pid, the command's own
 * /proc/PID/cmdline), so the kernel kills the child when the parent dies by any means — a
 * crash, `kill -9`, an uncaught error — where no exit hook of ours gets to run.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** The first `bin` on PATH, or undefined. */
export function onPath(bin: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const dir of (env.PATH ?? '').split(':')) {
    if (dir !== '' && existsSync(join(dir, bin))) return join(dir, bin);
  }
  return undefined;
}

/**
 * `[command, args]` to spawn so that the child gets SIGKILL when this process dies. Without
 * setpriv the command is returned unchanged (the caller's stale-pid reaper is then the only
 * backstop). PR_SET_PDEATHSIG fires when the spawning thread ends: spawn from the main thread.
 */
export function dyingWithParent(command: string, args: readonly string[]): { command: string; args: string[]; guarded: boolean } {
  const setpriv = onPath('setpriv');
  if (setpriv === undefined) return { command, args: [...args], guarded: false };
  return { command: setpriv, args: ['--pdeathsig', 'KILL', '--', command, ...args], guarded: true };
}
