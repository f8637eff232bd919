import type { Check } from '../types.js';

/** credential.expiry: the gateway credential is renewed at half-life; a short remainder means renewal fails. */
export const credentialExpiry: Check = {
  id: 'credential.expiry',
  description: 'Gateway credential is not close to expiry',
  run(ctx) {
    if (ctx.session === undefined) return { status: 'skip', message: 'only the running daemon knows (run without --offline)' };
    const s = ctx.session();
    if (s.notAfter === undefined) return { status: 'skip', message: 'no credential held (see backend.session)' };
    const left = s.notAfter - Math.floor(ctx.now().getTime() / 1000);
    const at = new Date(s.notAfter * 1000).toISOString();
    if (left <= 0) {
      return { status: 'fail', message: `credential expired at ${at}: peripherals will refuse welcomes`, action: 'check backend.session and backend.tls; see the daemon log (journalctl -u gatehouse)' };
    }
    // Renewal starts at half-life; under a quarter left means it has been failing for a while.
    if (left < s.lifetimeSec / 4) {
      return { status: 'warn', message: `credential expires at ${at} (${Math.round(left / 60)} min left): renewal is overdue`, action: 'check backend reachability (backend.tls) and the daemon log' };
    }
    return { status: 'ok', message: `expires ${at}` };
  },
};
