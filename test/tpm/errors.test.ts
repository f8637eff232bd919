/** TSS2_RC classification into stable codes, with the real Tss2_RC_Decode. */
import assert from 'node:assert/strict';
import { CheckedTss } from '../../tpm/ffi/checked.js';
import { adviceFor, codeForRc, needsReconnect, TPM_ERROR_CODES, TpmError, tpmRcBase } from '../../tpm/errors.js';

describe('tpm/errors', () => {
  it('maps TPM response codes to stable codes, ignoring handle/parameter bits', () => {
    const cases: Array<[number, string]> = [
      [0x921, 'GH_TPM_LOCKOUT'],
      [0x902, 'GH_TPM_OBJECT_MEMORY'],
      [0x903, 'GH_TPM_OBJECT_MEMORY'],
      [0x14c, 'GH_TPM_HANDLE_OCCUPIED'],
      [0x18b, 'GH_TPM_KEY_NOT_FOUND'], // TPM_RC_HANDLE + TPM_RC_1
      [0x28b, 'GH_TPM_KEY_NOT_FOUND'],
      [0x98e, 'GH_TPM_AUTH_FAILED'], // TPM_RC_AUTH_FAIL + session 1
      [0x100, 'GH_TPM_NOT_INITIALIZED'],
      [0x101, 'GH_TPM_FAILURE'],
      [0x922, 'GH_TPM_RETRY'],
      [0x0a000a, 'GH_TPM_CONNECTION'], // TCTI IO_ERROR
      [0x0a0008, 'GH_TPM_CONNECTION'], // TCTI NO_CONNECTION
      [0x0a000c, 'GH_TPM_PERMISSION_DENIED'],
      [0x0c0902, 'GH_TPM_OBJECT_MEMORY'], // from a resource manager, TPM-format
      [0x1c4, 'GH_TPM_COMMAND'], // TPM_RC_VALUE + parameter 1
    ];
    for (const [rc, code] of cases) assert.equal(codeForRc(rc), code, `rc 0x${rc.toString(16)}`);
    assert.equal(tpmRcBase(0x18b), 0x8b);
    assert.equal(tpmRcBase(0x9a2), 0xa2);
  });

  it('decodes text through libtss2-rc and carries rc, text and code', () => {
    const tss = CheckedTss.load();
    try {
      tss.check(0x902, 'TPM2_Load');
      assert.fail('check must throw');
    } catch (err) {
      assert.ok(err instanceof TpmError);
      assert.equal(err.code, 'GH_TPM_OBJECT_MEMORY');
      assert.equal(err.rc, 0x902);
      assert.match(err.text, /out of memory for object contexts/);
      assert.match(err.message, /TPM2_Load failed: .*\(rc 0x902\)/);
    }
    assert.doesNotThrow(() => tss.check(0, 'anything'));
  });

  it('reconnects only for connection loss and a TPM needing Startup', () => {
    assert.ok(needsReconnect(new TpmError('GH_TPM_CONNECTION', 'x')));
    assert.ok(needsReconnect(new TpmError('GH_TPM_NOT_INITIALIZED', 'x')));
    assert.ok(!needsReconnect(new TpmError('GH_TPM_LOCKOUT', 'x')));
    assert.ok(!needsReconnect(new Error('x')));
  });

  it('has advice for every operator-facing code, and unique codes', () => {
    for (const c of ['GH_TPM_NO_DEVICE', 'GH_TPM_PERMISSION_DENIED', 'GH_TPM_LOCKOUT', 'GH_TPM_HANDLE_OCCUPIED', 'GH_TPM_OBJECT_MEMORY'] as const) {
      assert.ok(adviceFor(c), c);
    }
    assert.match(adviceFor('GH_TPM_PERMISSION_DENIED') ?? '', /tss/);
    assert.equal(new Set(TPM_ERROR_CODES).size, TPM_ERROR_CODES.length);
  });
});
