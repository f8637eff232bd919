/** STYLE.md §3: exactly one file imports the FFI, and only the checker uses the raw bindings. */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));

async function tsFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await tsFiles(p)));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

describe('tpm layering', () => {
  it('only tpm/ffi/bindings.ts imports koffi, and only tpm/ffi/checked.ts imports the bindings', async () => {
    const files = [...(await tsFiles(join(root, 'tpm'))), join(root, 'daemon/cli/tpm.ts'), join(root, 'bench/tpm.ts')];
    const koffi: string[] = [];
    const bindings: string[] = [];
    for (const f of files) {
      const src = await readFile(f, 'utf8');
      if (/from\s+'koffi'|import\(\s*'koffi'\s*\)|require\(\s*'koffi'\s*\)/.test(src)) koffi.push(relative(root, f));
      if (/from\s+'[./]*(?:ffi\/)?bindings\.js'/.test(src)) bindings.push(relative(root, f));
    }
    assert.deepEqual(koffi, ['tpm/ffi/bindings.ts']);
    assert.deepEqual(bindings, ['tpm/ffi/checked.ts']);
  });
});
