import type { Check } from '../types.js';

/** backend.session: the backend accepted this gateway's TPM key (a session and credential exist). */
export const backendSession: Check = {
  id: 'backend.session',
  description: 'Backend accepted the gateway key (session held)',
  run(ctx) {
    if (ctx.session === undefined) return { status: 'skip', message: 'only the running daemon knows (run without --offline)' };
    const s = ctx.session();
    if (s.notAfter !== undefined) return { status: 'ok', message: 'session held' };
    return {
      status: 'fail',
      message: `no session${s.lastError === undefined ? '' : `: ${s.lastError}`}`,
      action: 'register this gateway and its key thumbprint at the backend (gatehouse tpm show prints it); check backend.tls',
    };
  },
};
