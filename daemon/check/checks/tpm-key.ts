import type { Check } from '../types.js';

/** tpm.key: the TPM answers and holds the gateway key at the configured handle. */
export const tpmKey: Check = {
  id: 'tpm.key',
  description: 'TPM reachable and gateway key present',
  async run(ctx) {
    if (!ctx.config.ok) return { status: 'skip', message: 'no valid config' };
    const cfg = ctx.config.config;
    if (cfg.tpm.kind === 'software') {
      return {
        status: 'warn',
        message: 'software key store: the identity key is not in a TPM',
        action: 'for demos and tests only; set tpm.kind: tpm (and gateway.production: true) on a real gateway',
      };
    }
    if (ctx.tpm === undefined) return { status: 'skip', message: 'TPM not probed here' };
    const r = await ctx.tpm();
    if (!r.reachable) {
      return {
        status: 'fail',
        message: `TPM not reachable via ${cfg.tpm.tcti}${r.detail === undefined ? '' : `: ${r.detail}`}`,
        action: r.advice ?? 'check that /dev/tpmrm0 exists and the service user is in group tss',
      };
    }
    if (!r.keyPresent) {
      return {
        status: 'fail',
        message: `no usable gateway key at ${cfg.tpm.handle}${r.detail === undefined ? '' : `: ${r.detail}`}`,
        action: r.advice ?? 'provision it: gatehouse tpm provision --help',
      };
    }
    if (r.noDA === false) {
      return {
        status: 'warn',
        message: `key at ${cfg.tpm.handle} has no noDA attribute: a TPM dictionary-attack lockout (anyone's failed authorisations) would stop its signatures`,
        action: 'gatehouse tpm provision --force re-creates it with noDA; the gateway public key changes, so register the new one with the backend (docs/tpm.md)',
      };
    }
    if (r.authValue === false) {
      return {
        status: 'warn',
        message: `key at ${cfg.tpm.handle} has no authorization value: any member of group tss (anyone who can reach the TPM) can sign as this gateway`,
        action:
          'stop the daemon, run `gatehouse tpm provision --force` as the service user (the new key gets an authValue in the state directory, tpm-key-auth.json 0600); the gateway public key changes, so register the new one with the backend (docs/tpm.md)',
      };
    }
    return { status: 'ok', message: `key at ${cfg.tpm.handle} via ${cfg.tpm.tcti}` };
  },
};
