/**
 * TPM errors: one class, stable `GH_TPM_…` codes, the raw TSS2_RC and its decoded text.
 * Callers branch on `code`, never on `text` (CONTRIBUTING.md §6).
 */
import { CodedError } from '../common/errors.js';

/** Stable codes. Documented in docs/tpm.md (error table). */
export const TPM_ERROR_CODES = [
  'GH_TPM_NO_DEVICE',
  'GH_TPM_PERMISSION_DENIED',
  'GH_TPM_LOCKOUT',
  'GH_TPM_HANDLE_OCCUPIED',
  'GH_TPM_OBJECT_MEMORY',
  'GH_TPM_KEY_NOT_FOUND',
  'GH_TPM_KEY_MISMATCH',
  'GH_TPM_KEY_ATTRIBUTES',
  'GH_TPM_NOT_PROVISIONED',
  'GH_TPM_AUTH_FAILED',
  // The TPM refused the identity key's authValue: not the one in the state directory's
  // tpm-key-auth.json (someone without that file tried to sign, or the file is stale).
  'GH_TPM_KEY_AUTH_FAILED',
  // The identity key has no authValue (provisioned by an older release): it cannot be rotated,
  // only re-created with one (`gatehouse tpm provision --force`).
  'GH_TPM_NO_KEY_AUTH',
  'GH_TPM_NOT_INITIALIZED',
  'GH_TPM_RETRY',
  'GH_TPM_CONNECTION',
  'GH_TPM_TIMEOUT',
  'GH_TPM_BUSY',
  'GH_TPM_RATE_LIMITED',
  'GH_TPM_CLOSED',
  'GH_TPM_LIBRARY',
  'GH_TPM_BAD_CONFIG',
  'GH_TPM_STATE',
  'GH_TPM_BAD_INPUT',
  'GH_TPM_SOFTWARE_KEY_REFUSED',
  'GH_TPM_FAILURE',
  'GH_TPM_COMMAND',
] as const;

export type TpmErrorCode = (typeof TPM_ERROR_CODES)[number];

/** A TPM, TSS or key-store failure. `rc` is the TSS2_RC (0 when the error is not from the TSS). */
export class TpmError extends CodedError<TpmErrorCode> {
  /** The TSS2_RC as returned by the library, or 0. */
  readonly rc: number;
  /** `Tss2_RC_Decode(rc)`, or '' when `rc` is 0. */
  readonly text: string;

  constructor(code: TpmErrorCode, message: string, options?: { rc?: number; text?: string; cause?: unknown }) {
    super(code, message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.rc = (options?.rc ?? 0) >>> 0;
    this.text = options?.text ?? '';
  }
}

/** TSS2_RC layers (tss2_common.h). */
const LAYER_MASK = 0xff0000;
const TPM_LAYER = 0x000000;
const ESAPI_LAYER = 0x070000;
const TCTI_LAYER = 0x0a0000;
const RESMGR_LAYER = 0x0b0000;
const RESMGR_TPM_LAYER = 0x0c0000;

/** TSS2_BASE_RC values that mean "the connection to the TPM is gone or unusable". */
const CONNECTION_BASE_RCS = new Set([
  3, // BAD_CONTEXT
  8, // NO_CONNECTION
  10, // IO_ERROR
  17, // MALFORMED_RESPONSE
  19, // INSUFFICIENT_RESPONSE
  22, // BAD_TCTI_STRUCTURE
]);

/** TPM_RC values without handle/parameter/session bits (TPM 2.0 Part 2 §6.6). */
export function tpmRcBase(rc: number): number {
  const tpmPart = rc & 0xfff;
  if (tpmPart & 0x080) return tpmPart & 0x0bf; // format 1: strip N (bits 8–11) and P (bit 6)
  return tpmPart;
}

/** Classify a non-zero TSS2_RC into a stable code. */
export function codeForRc(rc: number): TpmErrorCode {
  const layer = (rc >>> 0) & LAYER_MASK;
  const base = rc & 0xffff;
  if (layer === TPM_LAYER || layer === RESMGR_TPM_LAYER) {
    switch (tpmRcBase(rc)) {
      case 0x921: // TPM_RC_LOCKOUT
        return 'GH_TPM_LOCKOUT';
      case 0x902: // TPM_RC_OBJECT_MEMORY
      case 0x903: // TPM_RC_SESSION_MEMORY
      case 0x904: // TPM_RC_MEMORY
        return 'GH_TPM_OBJECT_MEMORY';
      case 0x14c: // TPM_RC_NV_DEFINED: EvictControl onto an occupied persistent handle
        return 'GH_TPM_HANDLE_OCCUPIED';
      case 0x08b: // TPM_RC_HANDLE
      case 0x910: // TPM_RC_REFERENCE_H0
        return 'GH_TPM_KEY_NOT_FOUND';
      case 0x08e: // TPM_RC_AUTH_FAIL
      case 0x0a2: // TPM_RC_BAD_AUTH
        return 'GH_TPM_AUTH_FAILED';
      case 0x100: // TPM_RC_INITIALIZE: TPM2_Startup not yet sent (swtpm after a restart)
        return 'GH_TPM_NOT_INITIALIZED';
      case 0x101: // TPM_RC_FAILURE
        return 'GH_TPM_FAILURE';
      case 0x908: // TPM_RC_YIELDED
      case 0x90a: // TPM_RC_TESTING
      case 0x922: // TPM_RC_RETRY
      case 0x920: // TPM_RC_NV_RATE
      case 0x923: // TPM_RC_NV_UNAVAILABLE
        return 'GH_TPM_RETRY';
      default:
        return 'GH_TPM_COMMAND';
    }
  }
  if (layer === TCTI_LAYER || layer === ESAPI_LAYER || layer === RESMGR_LAYER) {
    if (base === 12) return 'GH_TPM_PERMISSION_DENIED'; // NOT_PERMITTED
    if (base === 9) return 'GH_TPM_RETRY'; // TRY_AGAIN
    if (CONNECTION_BASE_RCS.has(base)) return 'GH_TPM_CONNECTION';
  }
  return 'GH_TPM_COMMAND';
}

/** Whether the ESAPI context should be finalized and rebuilt before the next command. */
export function needsReconnect(err: unknown): boolean {
  return err instanceof TpmError && (err.code === 'GH_TPM_CONNECTION' || err.code === 'GH_TPM_NOT_INITIALIZED');
}

/** One-line advice per code, shown by the CLI and in docs/tpm.md. */
export function adviceFor(code: TpmErrorCode): string | undefined {
  switch (code) {
    case 'GH_TPM_NO_DEVICE':
      return 'no TPM found: check that the TPM is enabled (on a Raspberry Pi: dtoverlay=tpm-slb9670 in /boot/firmware/config.txt) and that /dev/tpmrm0 exists, or pass --tcti';
    case 'GH_TPM_PERMISSION_DENIED':
      return "permission denied on the TPM device: add the service user to the 'tss' group (sudo usermod -aG tss USER, then log in again)";
    case 'GH_TPM_LOCKOUT':
      return (
        'the TPM is in dictionary-attack lockout: wait for the recovery time or reset it with the lockout authorization (tpm2_dictionarylockout --clear-lockout). ' +
        'Only a key without the noDA attribute (provisioned by an older Gatehouse) is blocked by a lockout: `gatehouse tpm provision --force` re-creates it with noDA, ' +
        'which changes the public key: register the new one with the backend'
      );
    case 'GH_TPM_HANDLE_OCCUPIED':
      return 'the persistent handle already holds a different key: choose another --handle, or pass --force to replace it (the old key is destroyed)';
    case 'GH_TPM_OBJECT_MEMORY':
      return 'the TPM is out of object memory: another program is leaking transient handles; use the kernel resource manager (/dev/tpmrm0) or restart it';
    case 'GH_TPM_KEY_NOT_FOUND':
      return 'no key at that persistent handle: run `gatehouse tpm provision` first, or check --handle';
    case 'GH_TPM_KEY_MISMATCH':
      return 'the key at that handle is not the one this gateway registered: someone replaced it; re-provision and re-register the gateway';
    case 'GH_TPM_AUTH_FAILED':
      return 'the TPM refused the authorization: Gatehouse uses an empty owner-hierarchy password (check `tpm2_getcap properties-variable`: ownerAuthSet should be 0)';
    case 'GH_TPM_KEY_AUTH_FAILED':
      return "the TPM refused the gateway key's authorization: only the service user, with the state directory's tpm-key-auth.json, may sign with it; run as that user with --state-dir (a stale file after an interrupted rotation: gatehouse tpm rotate-auth)";
    case 'GH_TPM_NO_KEY_AUTH':
      return 'the gateway key has no authorization value (provisioned by an older release), so any member of the tss group can sign with it: `gatehouse tpm provision --force` re-creates it with one (new public key: register it with the backend)';
    case 'GH_TPM_NOT_PROVISIONED':
      return 'this state directory records no TPM key: run `gatehouse tpm provision`';
    default:
      return undefined;
  }
}
