import assert from 'node:assert/strict';
import { chmod, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyFile, KeyFileError, loadKeyFile } from '../../../peripherals/reference/keyfile.js';
import { tempDirEach } from '../../../testkit/temp-dir.js';

describe('peripherals/reference: key files', () => {
  const tmp = tempDirEach('gh-keyfile-');

  const code = async (p: Promise<unknown>): Promise<string> => {
    try {
      await p;
    } catch (e) {
      assert.ok(e instanceof KeyFileError, String(e));
      return e.code;
    }
    return 'ok';
  };

  it('writes mode 0600 atomically and loads back the same key', async () => {
    const path = join(tmp.path, 'dev.key');
    const made = await generateKeyFile(path, 'sensor-1');
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(tmp.path), ['dev.key'], 'no temp file left behind');
    const loaded = await loadKeyFile(path);
    assert.equal(loaded.dev, 'sensor-1');
    assert.deepEqual(loaded.signer.publicKeyRaw, made.signer.publicKeyRaw);
    assert.equal(loaded.signer.kid, 'sensor-1');
  });

  it('never overwrites an existing key unless asked', async () => {
    const path = join(tmp.path, 'dev.key');
    const first = await generateKeyFile(path, 'sensor-1');
    assert.equal(await code(generateKeyFile(path, 'sensor-1')), 'GH_KEYFILE_EXISTS');
    assert.deepEqual((await loadKeyFile(path)).signer.publicKeyRaw, first.signer.publicKeyRaw);
    const second = await generateKeyFile(path, 'sensor-1', { overwrite: true });
    assert.deepEqual((await loadKeyFile(path)).signer.publicKeyRaw, second.signer.publicKeyRaw);
    assert.deepEqual(await readdir(tmp.path), ['dev.key']);
  });

  it('refuses a key file group or others can access', async () => {
    const path = join(tmp.path, 'dev.key');
    await generateKeyFile(path, 'sensor-1');
    for (const mode of [0o644, 0o640, 0o604, 0o660, 0o601]) {
      await chmod(path, mode);
      assert.equal(await code(loadKeyFile(path)), 'GH_KEYFILE_PERMISSIONS', mode.toString(8));
    }
    await chmod(path, 0o400);
    assert.equal(await code(loadKeyFile(path)), 'ok');
  });

  it('refuses corrupted and foreign files', async () => {
    const path = join(tmp.path, 'dev.key');
    await generateKeyFile(path, 'sensor-1');
    const doc = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    const put = async (v: unknown): Promise<string> => {
      await writeFile(path, typeof v === 'string' ? v : JSON.stringify(v), { mode: 0o600 });
      return code(loadKeyFile(path));
    };
    assert.equal(await put({ ...doc, seed: '00'.repeat(32) }), 'GH_KEYFILE_FORMAT');
    assert.equal(await put({ ...doc, dev: 'a b' }), 'GH_KEYFILE_FORMAT');
    assert.equal(await put({ ...doc, version: 2 }), 'GH_KEYFILE_FORMAT');
    assert.equal(await put('not json'), 'GH_KEYFILE_FORMAT');
    assert.equal(await code(loadKeyFile(join(tmp.path, 'missing'))), 'GH_KEYFILE_IO');
    assert.equal(await code(generateKeyFile(join(tmp.path, 'x.key'), 'bad id')), 'GH_KEYFILE_BAD_DEV');
  });
});
