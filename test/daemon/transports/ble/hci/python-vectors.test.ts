/**
 * The Bumble peripheral's protocol code (Python, peripherals/bumble) against
 * test/vectors/protocol-v1.json: byte-identical hello, welcome, gw-cred and reject encodings from
 * the vectors' seeds, the same CBOR refusal codes, every welcome-check vector, the framing example.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BUMBLE_PYTHON } from '../../../../../testkit/bumble.js';

const ROOT = fileURLToPath(new URL('../../../../../', import.meta.url));

describe('Bumble peripheral (Python) against the protocol-v1 vectors', function () {
  this.timeout(60_000);

  it('passes its unit checks against test/vectors/protocol-v1.json', async () => {
    assert.ok(existsSync(BUMBLE_PYTHON), `${BUMBLE_PYTHON} missing: run ./setup.sh`);
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
      execFile(
        BUMBLE_PYTHON,
        ['-m', 'unittest', 'discover', '-v', '-s', 'peripherals/bumble', '-t', 'peripherals/bumble'],
        { cwd: ROOT, timeout: 45_000, env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } },
        (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, output: `${stdout}${stderr}` }),
      );
    });
    assert.equal(code, 0, output);
    const ran = /Ran (\d+) tests?/.exec(output);
    assert.ok(ran && Number(ran[1]) >= 12, output);
    assert.match(output, /\nOK\n?/);
  });
});
