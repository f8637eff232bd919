/**
 * What the TPM suites do with tpm2-tools, on their own connection to the suite's swtpm: make a
 * gateway key the way releases before noDA did, read a key's attributes as tpm2-tools sees them,
 * and put the TPM into (and out of) dictionary-attack lockout.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, createPublicKey } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { writeTpmKeyRecord } from '../../tpm/state-file.js';
import type { Swtpm } from '../../testkit/swtpm.js';

const run = promisify(execFile);

async function tool(tpm: Swtpm, cmd: string, args: string[]): Promise<string> {
  const { stdout } = await run(cmd, args, { env: { ...process.env, TPM2TOOLS_TCTI: tpm.tcti }, timeout: 60_000 });
  return stdout;
}

const hex = (h: number): string => `0x${h.toString(16)}`;

/** `tpm2_readpublic -c handle`: the raw TPMA_OBJECT and tpm2-tools' names for its bits. */
export async function readAttributes(tpm: Swtpm, handle: number): Promise<{ raw: number; names: string[] }> {
  const yaml = await tool(tpm, 'tpm2_readpublic', ['-c', hex(handle)]);
  const m = /^attributes:\n\s+value: (\S+)\n\s+raw: (0x[0-9a-f]+)$/m.exec(yaml);
  assert.ok(m, `tpm2_readpublic printed no attributes:\n${yaml}`);
  return { raw: parseInt(m[2] ?? '', 16), names: (m[1] ?? '').split('|') };
}

/**
 * A gateway key as releases before noDA made it (fixedTPM|fixedParent|sensitiveDataOrigin|
 * userWithAuth|sign, 0x00040072), created and persisted by tpm2-tools and recorded in
 * `stateDir` the way `provisionTpmKey` records a key. Returns its thumbprint (hex).
 */
export async function provisionLegacyKey(tpm: Swtpm, o: { handle: number; stateDir: string; workDir: string }): Promise<string> {
  const ctx = join(o.workDir, `legacy-${hex(o.handle)}.ctx`);
  // No `unique` value: every legacy key made in one TPM is the same key, which these tests allow.
  await tool(tpm, 'tpm2_createprimary', ['-C', 'o', '-G', 'ecc256:ecdsa-sha256', '-a', 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign', '-c', ctx]);
  await tool(tpm, 'tpm2_evictcontrol', ['-C', 'o', '-c', ctx, hex(o.handle)]);
  await tool(tpm, 'tpm2_flushcontext', ['-t']);
  const pemFile = join(o.workDir, `legacy-${hex(o.handle)}.pem`);
  await tool(tpm, 'tpm2_readpublic', ['-c', hex(o.handle), '-f', 'pem', '-o', pemFile]);
  const spki = createPublicKey(await readFile(pemFile, 'utf8')).export({ format: 'der', type: 'spki' });
  const thumbprint = createHash('sha256').update(spki).digest('hex');
  await writeTpmKeyRecord(o.stateDir, { version: 1, handle: `0x${o.handle.toString(16).padStart(8, '0')}`, thumbprint, provisionedAt: '2025-01-01T00:00:00.000Z' });
  return thumbprint;
}

/**
 * Put the TPM into dictionary-attack lockout the way someone guessing passwords would: allow one
 * failure, then fail one authorization on a password-protected key. Asserts `inLockout`.
 */
export async function enterDaLockout(tpm: Swtpm, workDir: string): Promise<void> {
  await tool(tpm, 'tpm2_dictionarylockout', ['-s', '-n', '1', '-t', '600', '-l', '600']);
  const ctx = join(workDir, 'da.ctx');
  await tool(tpm, 'tpm2_createprimary', ['-C', 'o', '-G', 'ecc', '-p', 'secret', '-c', ctx]);
  const msg = join(workDir, 'da-msg');
  await writeFile(msg, 'anything');
  await assert.rejects(tool(tpm, 'tpm2_sign', ['-c', ctx, '-p', 'wrong', '-g', 'sha256', '-o', join(workDir, 'da-sig'), msg]));
  await tool(tpm, 'tpm2_flushcontext', ['-t']);
  assert.ok(await inDaLockout(tpm), 'the TPM is in lockout');
}

/** TPM2_PT_PERMANENT inLockout, as tpm2_getcap reports it. */
export async function inDaLockout(tpm: Swtpm): Promise<boolean> {
  const props = await tool(tpm, 'tpm2_getcap', ['properties-variable']);
  const m = /^\s+inLockout:\s+([01])$/m.exec(props);
  assert.ok(m, `tpm2_getcap printed no inLockout:\n${props}`);
  return m[1] === '1';
}

/** Leave lockout (the lockout hierarchy has no password in swtpm). */
export async function clearDaLockout(tpm: Swtpm): Promise<void> {
  await tool(tpm, 'tpm2_dictionarylockout', ['-c']);
  assert.ok(!(await inDaLockout(tpm)), 'the TPM left lockout');
}
