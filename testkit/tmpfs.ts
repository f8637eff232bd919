/**
 * A small real file system for the disk-full and read-only faults: a tmpfs of a given size mounted
 * on a directory (root with mount rights only), and a ballast that fills it to the last block.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Mounts a tmpfs of `size` (`1m`, `2m`, …), mode 0700, on `dir` (which exists). */
export function mountTmpfs(dir: string, size: string): void {
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir], { stdio: 'ignore' });
}

/** Detaches the tmpfs on `dir` (lazily: files still open there do not keep it mounted). */
export function unmountTmpfs(dir: string): void {
  execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
}

/**
 * Whether this process may mount a tmpfs: root with mount rights, probed on a scratch directory.
 * GATEHOUSE_FAULT_NO_MOUNT=1 answers no (to exercise the fallback a container without them takes).
 */
export function canMountTmpfs(): boolean {
  if (process.getuid?.() !== 0 || process.env.GATEHOUSE_FAULT_NO_MOUNT === '1') return false;
  const probe = mkdtempSync(join(tmpdir(), 'gh-tmpfs-probe-'));
  try {
    mountTmpfs(probe, '1m');
    unmountTmpfs(probe);
    return true;
  } catch {
    return false;
  } finally {
    rmdirSync(probe);
  }
}

/**
 * Fills the file system holding `dir` to its last block with `ballast-N` files (64 KiB ones, then
 * 4 KiB ones for what is left); returns their paths. Throws unless writing ended in ENOSPC.
 */
export async function fillToEnospc(dir: string): Promise<string[]> {
  const files: string[] = [];
  for (const size of [64 * 1024, 4096]) {
    for (;;) {
      const file = join(dir, `ballast-${files.length}`);
      files.push(file);
      try {
        await writeFile(file, Buffer.alloc(size, 0xa5));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
        break;
      }
    }
  }
  return files;
}
