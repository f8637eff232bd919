/** testkit/bumble.ts: the link process starts on its own paths, stops within bounds, leaves nothing behind. */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { Ed25519Signer } from '../../../../../protocol/index.js';
import { startBumbleLink } from '../../../../../testkit/bumble.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('testkit/bumble: the Bumble link process', function () {
  this.timeout(30_000);

  it('reports ready with a UART path and its peripherals, and stop() ends it and removes its files', async () => {
    const link = await startBumbleLink({
      peripherals: [{ name: 'h1', address: 'c0:de:00:00:02:01', dev: 'harness-1', seed: new Uint8Array(32).fill(7) }],
      backendKeys: new Map(),
    });
    try {
      assert.ok(existsSync(link.uartPath), 'the pty symlink exists');
      assert.ok(alive(link.pid));
      assert.deepEqual(link.peripherals.map((p) => [p.name, p.address, p.dev]), [['h1', 'c0:de:00:00:02:01', 'harness-1']]);
      // The Python side derives the same RFC 8032 public key from the seed as node:crypto does.
      const expected = Buffer.from(Ed25519Signer.fromSeed(new Uint8Array(32).fill(7), 'harness-1').publicKeyRaw).toString('hex');
      assert.equal(link.peripherals[0]!.publicKey, expected);
    } finally {
      await link.stop();
    }
    assert.equal(alive(link.pid), false, 'the process is gone');
    assert.equal(existsSync(dirname(link.uartPath)), false, 'its temp dir is gone');
    await link.stop(); // idempotent
  });

  it('fails start with the process\'s stderr when the link cannot come up, leaving no process', async () => {
    await assert.rejects(
      startBumbleLink({ peripherals: [{ name: 'bad', address: 'c0:de:00:00:02:02', dev: 'harness-2', seed: new Uint8Array(31) }], backendKeys: new Map() }),
      (e: Error) => /exited before ready/.test(e.message) && /GH_PERIPHERAL_BAD_SEED/.test(e.message),
    );
  });
});
