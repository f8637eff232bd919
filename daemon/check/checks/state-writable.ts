import { randomBytes } from 'node:crypto';
import { open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Check } from '../types.js';

/** state.writable: lease cache and cursors are written atomically into gateway.stateDir. */
export const stateWritable: Check = {
  id: 'state.writable',
  description: 'State directory is writable',
  async run(ctx) {
    if (!ctx.config.ok) return { status: 'skip', message: 'no valid config' };
    const dir = ctx.config.config.gateway.stateDir;
    const probe = join(dir, `.gatehouse-check-${randomBytes(6).toString('hex')}`);
    try {
      // O_EXCL and 0600, as every state file is written; then fsync, as atomic writes do.
      const fh = await open(probe, 'wx', 0o600);
      try {
        await fh.write('check\n');
        await fh.sync();
      } finally {
        await fh.close();
      }
      await unlink(probe);
      return { status: 'ok', message: dir };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      const action =
        code === 'ENOENT'
          ? `create it (the unit's StateDirectory= does), or fix gateway.stateDir`
          : code === 'EACCES' || code === 'EPERM'
            ? `make it writable by the service user (chown gatehouse: ${dir}; run this check as that user: sudo -u gatehouse gatehouse check --offline)`
            : code === 'ENOSPC' || code === 'EDQUOT'
              ? 'free disk space'
              : code === 'EROFS'
                ? 'the file system is read-only: remount it or move gateway.stateDir'
                : 'check the directory and its file system';
      return { status: 'fail', message: `${dir}: cannot write (${code})`, action };
    }
  },
};
