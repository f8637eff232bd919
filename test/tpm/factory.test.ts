/** createKeyStore: config section `tpm` to a key store (real swtpm for the TPM kind). */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfigText } from '../../daemon/config/load.js';
import { TpmError } from '../../tpm/errors.js';
import { createKeyStore, SIGN_BURST } from '../../tpm/factory.js';
import { provisionTpmKey } from '../../tpm/provision.js';
import { DEFAULT_SIGN_RATE_LIMIT } from '../../tpm/rate-limiter.js';
import { minimalConfigYaml } from '../../testkit/config.js';
import { Swtpm } from '../../testkit/swtpm.js';

describe('tpm/createKeyStore', function () {
  this.timeout(60_000);
  let tpm: Swtpm;
  let dir: string;

  before(async () => {
    tpm = await Swtpm.start();
    dir = await mkdtemp(join(tmpdir(), 'gh-tpm-factory-'));
  });

  after(async () => {
    await tpm?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const base = { tcti: '', handle: '0x81010001', signRatePerSec: 1, stateDir: '', production: false };

  it('builds a TPM store that opens the provisioned key and applies the configured rate', async () => {
    const stateDir = join(dir, 'state');
    const provisioned = await provisionTpmKey({ tcti: tpm.tcti, stateDir, handle: 0x81010003 });
    let now = 0;
    const ks = createKeyStore({ ...base, kind: 'tpm', tcti: tpm.tcti, handle: '0x81010003', stateDir, signRatePerSec: 0.5 }, { clock: { now: () => now } });
    assert.equal(ks.kind, 'tpm');
    await ks.open();
    try {
      assert.deepEqual(ks.thumbprint(), provisioned.thumbprint);
      for (let i = 0; i < 10; i++) await ks.sign(new Uint8Array(32).fill(i));
      await assert.rejects(ks.sign(new Uint8Array(32)), (e: unknown) => e instanceof TpmError && e.code === 'GH_TPM_RATE_LIMITED');
      now += 2000;
      await ks.sign(new Uint8Array(32));
    } finally {
      await ks.close();
    }
  });

  it('applies the same sign rate from a default config as the key store defaults to: 10 back to back, then one every 10 s', async () => {
    const cfg = parseConfigText(minimalConfigYaml());
    assert.equal(cfg.tpm.signRatePerSec, DEFAULT_SIGN_RATE_LIMIT.perSecond, 'config default = key store default');
    assert.equal(SIGN_BURST, DEFAULT_SIGN_RATE_LIMIT.burst);
    assert.deepEqual(DEFAULT_SIGN_RATE_LIMIT, { burst: 10, perSecond: 0.1 });

    const stateDir = join(dir, 'default-rate');
    await provisionTpmKey({ tcti: tpm.tcti, stateDir, handle: 0x81010004 });
    let now = 0;
    const ks = createKeyStore({ ...cfg.tpm, tcti: tpm.tcti, handle: '0x81010004', stateDir, production: false }, { clock: { now: () => now } });
    await ks.open();
    try {
      for (let i = 0; i < 10; i++) await ks.sign(new Uint8Array(32).fill(i));
      await assert.rejects(ks.sign(new Uint8Array(32)), (e: unknown) => e instanceof TpmError && e.code === 'GH_TPM_RATE_LIMITED' && /retry in 10000 ms/.test(e.message));
      now += 9_999;
      await assert.rejects(ks.sign(new Uint8Array(32)), (e: unknown) => e instanceof TpmError && e.code === 'GH_TPM_RATE_LIMITED');
      now += 1;
      await ks.sign(new Uint8Array(32));
    } finally {
      await ks.close();
    }
  });

  it('builds a software store that is refused in production', async () => {
    const dev = createKeyStore({ ...base, kind: 'software' });
    assert.equal(dev.kind, 'software');
    await dev.open();
    assert.equal(dev.thumbprint().length, 32);
    await dev.close();
    const prod = createKeyStore({ ...base, kind: 'software', production: true });
    await assert.rejects(prod.open(), (e: unknown) => e instanceof TpmError && e.code === 'GH_TPM_SOFTWARE_KEY_REFUSED');
  });

  it('refuses a handle outside the owner range', () => {
    assert.throws(() => createKeyStore({ ...base, kind: 'tpm', handle: '0x81800000' }), (e: unknown) => e instanceof TpmError && e.code === 'GH_TPM_BAD_CONFIG');
  });
});
