/**
 * Safe (re)use of the status socket path. A socket left by a crashed daemon is replaced; a live
 * one, a symlink or any other file is never touched (refused with a clear error).
 */
import { lstat, readFile, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { StatusError } from './errors.js';

/** Resolves true when something accepts a connection on the socket at `path`. */
export function socketAnswers(path: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ path });
    const done = (alive: boolean): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(alive);
    };
    // A socket that neither accepts nor refuses might be a wedged daemon: assume alive, refuse to steal.
    const timer = setTimeout(() => done(true), timeoutMs);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/**
 * Make `path` free for listen(). ENOENT: nothing to do. A socket nobody answers on: unlinked.
 * Anything else throws StatusError and leaves the file alone.
 */
export async function prepareSocketPath(path: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new StatusError('GH_STATUS_LISTEN', `cannot inspect ${path}`, { cause: err });
  }
  // lstat, not stat: never follow a link an attacker might have planted in the runtime directory.
  if (st.isSymbolicLink()) {
    throw new StatusError('GH_STATUS_SOCKET_SYMLINK', `${path} is a symbolic link; refusing to replace it`);
  }
  if (!st.isSocket()) {
    throw new StatusError('GH_STATUS_SOCKET_NOT_SOCKET', `${path} exists and is not a socket; refusing to replace it`);
  }
  if (await socketAnswers(path)) {
    throw new StatusError('GH_STATUS_SOCKET_IN_USE', `${path} is in use: another gatehouse daemon is running`);
  }
  // Re-check it is still the same socket before unlinking (a narrow race, but cheap to close).
  const again = await lstat(path).catch(() => undefined);
  if (again === undefined) return;
  if (!again.isSocket() || again.ino !== st.ino || again.dev !== st.dev) {
    throw new StatusError('GH_STATUS_LISTEN', `${path} changed while being replaced; refusing`);
  }
  await unlink(path);
}

/** gid of a group from /etc/group (sysusers writes there); undefined when absent. */
export async function groupId(name: string, groupFile = '/etc/group'): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile(groupFile, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const [n, , gid] = line.split(':');
    if (n === name && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  return undefined;
}
