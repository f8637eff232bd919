/**
 * Per-test temporary directories: the mkdtemp-in-beforeEach / rm-in-afterEach pair that many
 * suites repeat. Call it at the top of a `describe` (before hooks that use the directory).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The directory of the running test. */
export interface TempDir {
  /** Absolute path; only valid inside a test or a hook registered after the helper. */
  readonly path: string;
}

/**
 * A fresh directory `<tmpdir>/<prefix>XXXXXX` for every test of the enclosing suite, made in
 * `beforeEach` and removed with its contents in `afterEach`, so no test sees another's files
 * and none is left behind.
 */
export function tempDirEach(prefix: string): TempDir {
  let current: string | undefined;
  beforeEach(async () => {
    current = await mkdtemp(join(tmpdir(), prefix));
  });
  afterEach(async () => {
    if (current !== undefined) await rm(current, { recursive: true, force: true });
    current = undefined;
  });
  return {
    get path(): string {
      if (current === undefined) throw new Error(`tempDirEach(${JSON.stringify(prefix)}): read outside a test`);
      return current;
    },
  };
}
