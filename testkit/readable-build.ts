/**
 * Code that another user must run, in a place that user can read. A checkout may live where
 * others cannot enter (a home directory is 0700 on Debian 12, `mktemp -d` too), so a test that
 * drops privileges cannot point the child at the checkout's sources or node_modules. This
 * bundles an entry (esbuild, what tsx runs on) into one ESM file in a fresh 0755 directory, with
 * the native packages it names copied beside it, all world-readable.
 */
import { existsSync } from 'node:fs';
import { chmod, cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const REPO = fileURLToPath(new URL('../', import.meta.url));

export interface ReadableBuild {
  /** The directory (mode 0755) holding the bundle and its node_modules. */
  readonly dir: string;
  /** The bundled entry: run it with `node <file>`. */
  readonly file: string;
  /** Removes the directory. */
  dispose(): Promise<void>;
}

/**
 * Bundles `source` (an ES module; relative imports resolve from the repository root) into
 * `<dir>/main.mjs`. Packages in `external` (native addons such as koffi) are not bundled but
 * copied into `<dir>/node_modules`.
 */
export async function readableBuild(source: string, external: readonly string[] = []): Promise<ReadableBuild> {
  const dir = await mkdtemp(join(tmpdir(), 'gh-readable-'));
  try {
    const file = join(dir, 'main.mjs');
    await build({
      stdin: { contents: source, resolveDir: REPO, loader: 'ts', sourcefile: 'entry.ts' },
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      outfile: file,
      external: [...external],
      logLevel: 'silent',
      // Bundled CommonJS (winston and friends) calls require(): give the ESM bundle one.
      banner: { js: "import { createRequire as __ghCreateRequire } from 'node:module'; const require = __ghCreateRequire(import.meta.url);" },
    });
    const copied = new Set<string>();
    for (const name of external) await copyPackage(name, dir, copied);
    await writeFile(join(dir, 'package.json'), '{"type":"module"}\n');
    await chmodTree(dir);
    return { dir, file, dispose: () => rm(dir, { recursive: true, force: true }) };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Copies package `name` from the checkout's node_modules into `<dir>/node_modules`, with the
 * dependencies and installed optional dependencies it names (koffi's native binary is one).
 */
async function copyPackage(name: string, dir: string, copied: Set<string>): Promise<void> {
  if (copied.has(name)) return;
  const from = join(REPO, 'node_modules', name);
  if (!existsSync(from)) return;
  copied.add(name);
  await cp(from, join(dir, 'node_modules', name), { recursive: true, dereference: true });
  const pkg = JSON.parse(await readFile(join(from, 'package.json'), 'utf8')) as { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> };
  for (const dep of Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies })) await copyPackage(dep, dir, copied);
}

/** Every directory 0755 and every file 0644 (0755 where executable). */
async function chmodTree(dir: string): Promise<void> {
  const { readdir, stat } = await import('node:fs/promises');
  await chmod(dir, 0o755);
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) await chmodTree(p);
    else if (e.isFile()) await chmod(p, (await stat(p)).mode & 0o111 ? 0o755 : 0o644);
  }
}
