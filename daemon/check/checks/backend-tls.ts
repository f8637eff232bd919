import type { Check } from '../types.js';

const ACTIONS: Record<string, string> = {
  GH_CHECK_TLS_NAME: 'the certificate does not carry backend.serverName (or the URL host): fix the name or the certificate',
  GH_CHECK_TLS_UNTRUSTED: 'the certificate does not chain to backend.caFile: install the right CA file',
  GH_CHECK_TLS_EXPIRED: 'the backend certificate is expired or not yet valid (also check clock.sane)',
  GH_CHECK_TLS_PIN: 'the certificate key does not match backend.pinSha256: update the pin if the backend rotated its key',
  GH_CHECK_CONNECT: 'check the URL, DNS, routing and firewalls; under systemd also the unit IPAddressAllow drop-in (docs/operations.md)',
  GH_CHECK_TIMEOUT: 'the backend did not answer in time: check routing and firewalls',
  GH_CHECK_CA_FILE: 'backend.caFile cannot be read: fix the path or its permissions',
};

/** backend.tls: the backend answers TLS with a certificate valid for the configured name. */
export const backendTls: Check = {
  id: 'backend.tls',
  description: 'Backend reachable with a valid TLS certificate',
  async run(ctx) {
    if (!ctx.config.ok) return { status: 'skip', message: 'no valid config' };
    if (ctx.backend === undefined) return { status: 'skip', message: 'backend not probed here' };
    const r = await ctx.backend();
    if (r.ok) return { status: 'ok', message: r.detail };
    return { status: 'fail', message: r.detail, action: ACTIONS[r.code ?? ''] ?? 'check the backend URL and TLS settings' };
  },
};
