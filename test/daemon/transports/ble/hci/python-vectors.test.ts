/**
 * The Bumble peripheral's protocol code (Python, peripherals/bumble) against
 * test/vectors/protocol-v1.json: byte-identical hello, welcome, gw-cred and reject encodings from
 * the vectors' seeds, the same CBOR refusal codes, every welcome-check vector, the framing example;
 * and its protocol v2 (protocol_v2.py, written from the page, not from protocol/v2) against
 * test/vectors/protocol-v2.json and test/vectors/external/v2-independent/vectors.json: ephemeral
 * keys, the hello byte for byte, Z/PRK/info/keys/sid/AAD, every frame sealed byte for byte and
 * opened, denied or dropped with the vector's code, every welcome, command and gateway-hello check.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BUMBLE_PYTHON } from '../../../../../testkit/bumble.js';

const ROOT = fileURLToPath(new URL('../../../../../', import.meta.url));

describe('Bumble peripheral (Python) against the protocol v1 and v2 vectors', function () {
  this.timeout(60_000);

  it('passes its unit checks against the v1, v2 and independent v2 vectors', async () => {
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
    assert.ok(ran && Number(ran[1]) >= 35, output);
    // Both vector modules ran (unittest -v names each test with its module).
    assert.match(output, /tests\.test_vectors\.WelcomeChecks/);
    for (const c of ['ProjectFrames', 'ProjectWelcomeChecks', 'ProjectCommandChecks', 'ProjectGatewayHelloChecks', 'Independent']) {
      assert.match(output, new RegExp(`tests\\.test_vectors_v2\\.${c}\\b`), c);
    }
    assert.match(output, /\nOK\n?/);
  });
});
