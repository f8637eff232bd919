/**
 * The layer rules (.dependency-cruiser.cjs, CONTRIBUTING.md "How the code is cut") hold on the
 * tree, and each rule fails on a deliberately broken scratch tree: an upward import, I/O in
 * protocol/, a second noble or koffi importer, the raw TPM bindings called past the checker,
 * an inner protocol file reached from another room, bench and test importing each other.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDirEach } from '../../testkit/temp-dir.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const DEPCRUISE = join(REPO, 'node_modules/.bin/depcruise');
const ROOMS = ['common', 'protocol', 'tpm', 'daemon', 'peripherals', 'backend', 'demo', 'cli', 'testkit', 'test', 'bench'];

interface Run {
  code: number;
  out: string;
}

function depcruise(cwd: string, dirs: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(DEPCRUISE, [...dirs, '--config', '.dependency-cruiser.cjs', '--output-type', 'err'], { cwd, timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      resolve({ code, out: `${stdout}${stderr}` });
    });
  });
}

/** A scratch tree in `dir` with the project's rule set and the given files; runs the rules on it. */
async function cruiseScratch(dir: string, files: Record<string, string>): Promise<Run> {
  {
    await copyFile(join(REPO, '.dependency-cruiser.cjs'), join(dir, '.dependency-cruiser.cjs'));
    await writeFile(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', allowJs: true } }));
    const present = new Set<string>();
    for (const [path, text] of Object.entries(files)) {
      await mkdir(join(dir, dirname(path)), { recursive: true });
      await writeFile(join(dir, path), text);
      present.add(path.split('/')[0]!);
    }
    return depcruise(dir, [...present]);
  }
}

describe('architecture: the layer rules (dependency-cruiser)', function () {
  this.timeout(180_000);
  const tmp = tempDirEach('gh-boundaries-');

  it('hold on the whole tree', async () => {
    const r = await depcruise(REPO, ROOMS);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /no dependency violations found/);
  });

  const cases: Array<{ rule: string; files: Record<string, string> }> = [
    { rule: 'common-is-the-bottom', files: { 'common/log.ts': "import { x } from '../daemon/gateway.js';\nexport const y = x;\n", 'daemon/gateway.ts': 'export const x = 1;\n' } },
    { rule: 'tpm-below-the-rooms', files: { 'tpm/store.ts': "import { x } from '../daemon/config.js';\nexport const y = x;\n", 'daemon/config.ts': 'export const x = 1;\n' } },
    { rule: 'peripherals-stand-alone', files: { 'peripherals/p.ts': "import { x } from '../daemon/transports/mqtt/acl.js';\nexport const y = x;\n", 'daemon/transports/mqtt/acl.ts': 'export const x = 1;\n' } },
    { rule: 'daemon-is-the-gateway', files: { 'daemon/gateway.ts': "import { x } from '../demo/demo.js';\nexport const y = x;\n", 'demo/demo.ts': 'export const x = 1;\n' } },
    { rule: 'backend-stands-alone', files: { 'backend/api.ts': "import { x } from '../daemon/pipeline/types.js';\nexport const y = x;\n", 'daemon/pipeline/types.ts': 'export const x = 1;\n' } },
    { rule: 'protocol-is-pure', files: { 'protocol/cbor.ts': "import { x } from '../common/log/logger.js';\nexport const y = x;\n", 'common/log/logger.ts': 'export const x = 1;\n' } },
    { rule: 'protocol-does-no-io', files: { 'protocol/cbor.ts': "import { readFileSync } from 'node:fs';\nexport const y = readFileSync;\n" } },
    { rule: 'protocol-through-its-index', files: { 'daemon/a.ts': "import { x } from '../protocol/cbor.js';\nexport const y = x;\n", 'protocol/cbor.ts': 'export const x = 1;\n', 'protocol/index.ts': "export * from './cbor.js';\n" } },
    { rule: 'one-noble-importer', files: { 'daemon/transports/ble/transport.ts': "import { createRequire } from 'node:module';\nconst load = createRequire(import.meta.url);\nexport const n = load('@abandonware/noble');\n" } },
    { rule: 'one-ffi-importer-per-area', files: { 'daemon/status/x.ts': "import koffi from 'koffi';\nexport const k = koffi;\n" } },
    { rule: 'tpm-bindings-through-the-checker', files: { 'tpm/tpm-key-store.ts': "import { x } from './ffi/bindings.js';\nexport const y = x;\n", 'tpm/ffi/bindings.ts': 'export const x = 1;\n' } },
    { rule: 'test-not-bench', files: { 'test/a.test.ts': "import { x } from '../bench/mqtt.js';\nexport const y = x;\n", 'bench/mqtt.ts': 'export const x = 1;\n' } },
    { rule: 'bench-not-test', files: { 'bench/b.ts': "import { x } from '../test/env.js';\nexport const y = x;\n", 'test/env.ts': 'export const x = 1;\n' } },
  ];
  for (const c of cases) {
    it(`fail on a deliberate violation: ${c.rule}`, async () => {
      const r = await cruiseScratch(tmp.path, c.files);
      assert.notEqual(r.code, 0, r.out);
      assert.match(r.out, new RegExp(`error ${c.rule}:`), r.out);
    });
  }

  it('pass on a scratch tree that only imports down', async () => {
    const r = await cruiseScratch(tmp.path, {
      'common/errors.ts': 'export class E extends Error {}\n',
      'protocol/index.ts': "import { E } from '../common/errors.js';\nexport const x = E;\n",
      'daemon/gateway.ts': "import { x } from '../protocol/index.js';\nexport const y = x;\n",
    });
    assert.equal(r.code, 0, r.out);
  });
});
