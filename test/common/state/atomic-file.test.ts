import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { chmod, readdir, readFile, stat, symlink, writeFile, lstat, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  readJsonState,
  readStateFile,
  removeStaleTemps,
  StateFileError,
  writeFileAtomic,
  writeJsonAtomic,
} from '../../../common/atomic-file.js';
import { readableBuild } from '../../../testkit/readable-build.js';
import { tempDirEach } from '../../../testkit/temp-dir.js';

const writer = fileURLToPath(new URL('./fixtures/crash-writer.ts', import.meta.url));

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

describe('common/atomic-file', () => {
  const tmp = tempDirEach('gh-state-');

  it('writes with mode 0600 and reads back', async () => {
    const p = join(tmp.path, 'a.json');
    await writeJsonAtomic(p, { x: 1 });
    const st = await stat(p);
    assert.equal(st.mode & 0o777, 0o600);
    assert.deepEqual(await readJsonState(p, (v) => v), { x: 1 });
    // replacing keeps 0600 and leaves no temporaries
    await writeJsonAtomic(p, { x: 2 });
    assert.equal((await stat(p)).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(tmp.path), ['a.json']);
  });

  it('answers undefined for a missing file', async () => {
    assert.equal(await readStateFile(join(tmp.path, 'none')), undefined);
  });

  it('leaves the old or the new content, never a partial one, when killed mid-write', async function () {
    this.timeout(30000);
    const p = join(tmp.path, 'crash.state');
    for (let round = 0; round < 3; round += 1) {
      const child = spawn(process.execPath, ['--import', 'tsx', writer, p], { stdio: ['ignore', 'pipe', 'inherit'] });
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      // Kill at a moment that depends on the round: after 1, 3 and 6 completed writes.
      const after = [1, 3, 6][round] ?? 1;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error('writer made no progress'));
        }, 20000);
        let buf = '';
        child.stdout.on('data', (chunk: Buffer) => {
          buf += chunk.toString();
          if (buf.split('\n').length - 1 >= after) {
            clearTimeout(timer);
            child.kill('SIGKILL');
            resolve();
          }
        });
      });
      await exited;
      const content = await readFile(p, 'utf8');
      assert.equal(content.length, 256 * 1024);
      assert.ok(/^(A+|B+)$/.test(content), 'content is one whole version');
    }
    // a crash may leave a temporary behind; the startup sweep removes only those
    await writeFile(join(tmp.path, 'other'), 'keep');
    await removeStaleTemps(p);
    const left = (await readdir(tmp.path)).sort();
    assert.deepEqual(left, ['crash.state', 'other']);
  });

  it('replaces a symlink at the target instead of writing through it', async () => {
    const victim = join(tmp.path, 'victim');
    await writeFile(victim, 'precious');
    const p = join(tmp.path, 'link.json');
    await symlink(victim, p);
    await assert.rejects(readStateFile(p), (e: unknown) => e instanceof StateFileError && e.code === 'GH_STATE_NOT_REGULAR');
    await writeJsonAtomic(p, { y: 1 });
    assert.equal(await readFile(victim, 'utf8'), 'precious');
    assert.ok((await lstat(p)).isFile());
  });

  it('with overwrite: false keeps an existing file and leaves no temporaries', async () => {
    const p = join(tmp.path, 'key');
    await writeFileAtomic(p, 'first', { overwrite: false });
    assert.equal((await stat(p)).mode & 0o777, 0o600);
    await assert.rejects(
      writeFileAtomic(p, 'second', { overwrite: false }),
      (e: unknown) => e instanceof StateFileError && e.code === 'GH_STATE_EXISTS',
    );
    assert.equal(await readFile(p, 'utf8'), 'first');
    assert.deepEqual(await readdir(tmp.path), ['key']);
  });

  it('gives GH_STATE_CORRUPT for unparsable or invalid content and bounds the size', async () => {
    const p = join(tmp.path, 'bad.json');
    await writeFile(p, '{"x": 1');
    await assert.rejects(readJsonState(p, (v) => v), (e: unknown) => e instanceof StateFileError && e.code === 'GH_STATE_CORRUPT');
    await writeFile(p, '{"x": "s"}');
    const validate = (v: unknown): number => {
      if (typeof v !== 'object' || v === null || !('x' in v) || typeof v.x !== 'number') throw new Error('x must be a number');
      return v.x;
    };
    await assert.rejects(readJsonState(p, validate), (e: unknown) => e instanceof StateFileError && e.code === 'GH_STATE_CORRUPT');
    await writeFile(p, 'x'.repeat(2000));
    await assert.rejects(readStateFile(p, { maxBytes: 1000 }), (e: unknown) => e instanceof StateFileError && e.code === 'GH_STATE_TOO_LARGE');
    await assert.rejects(writeFileAtomic(p, 'y'.repeat(2000), { maxBytes: 1000 }), (e: unknown) => e instanceof StateFileError && e.code === 'GH_STATE_TOO_LARGE');
  });

  describe('unwritable directories', () => {
    // As root, permission bits do not stop writes: use real read-only and tiny tmpfs mounts when
    // mount is allowed; otherwise write from a child running as nobody (read-only) or under
    // RLIMIT_FSIZE (full), so the test means the same thing everywhere.
    const mounts: string[] = [];
    afterEach(() => {
      for (const m of mounts.splice(0)) execFileSync('umount', [m]);
    });

    it('a read-only directory gives GH_STATE_READ_ONLY and leaves the old content', async () => {
      const ro = join(tmp.path, 'ro');
      await mkdir(ro);
      const p = join(ro, 's.json');
      await writeJsonAtomic(p, { v: 1 });
      if (isRoot() && tryRun('mount', ['--bind', ro, ro])) {
        mounts.push(ro);
        execFileSync('mount', ['-o', 'remount,bind,ro', ro]);
        await assert.rejects(writeJsonAtomic(p, { v: 2 }), (e: unknown) => e instanceof StateFileError && e.code === 'GH_STATE_READ_ONLY');
      } else {
        execFileSync('chmod', ['0555', ro]);
        if (isRoot()) {
          await chmod(tmp.path, 0o755);
          assert.equal(await childWrite(p, { uid: 65534 }), 'GH_STATE_READ_ONLY');
        } else {
          await assert.rejects(writeJsonAtomic(p, { v: 2 }), (e: unknown) => e instanceof StateFileError && e.code === 'GH_STATE_READ_ONLY');
        }
        execFileSync('chmod', ['0700', ro]);
      }
      assert.deepEqual(await readJsonState(p, (v) => v), { v: 1 });
    });

    it('a full file system gives GH_STATE_NO_SPACE, leaves the old content and no temporary', async () => {
      const full = join(tmp.path, 'full');
      await mkdir(full);
      const p = join(full, 's.json');
      if (isRoot() && tryRun('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', full])) {
        mounts.push(full);
        await writeJsonAtomic(p, { v: 1 });
        await assert.rejects(writeFileAtomic(p, 'z'.repeat(200 * 1024)), (e: unknown) => e instanceof StateFileError && e.code === 'GH_STATE_NO_SPACE');
      } else {
        await writeJsonAtomic(p, { v: 1 });
        assert.equal(await childWrite(p, { fsizeLimit: 65536 }), 'GH_STATE_NO_SPACE');
      }
      assert.deepEqual(await readJsonState(p, (v) => v), { v: 1 });
      assert.deepEqual(await readdir(full), ['s.json']);
    });
  });
});

/** Run a command; false when it is refused (e.g. mount without CAP_SYS_ADMIN in a container). */
function tryRun(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Write 200 KiB to `path` with writeFileAtomic from a child process, as another user or under a
 * file-size limit (RLIMIT_FSIZE gives EFBIG). Returns the error code the child saw, or 'ok'.
 */
async function childWrite(path: string, opts: { uid?: number; fsizeLimit?: number }): Promise<string> {
  // A bundle in a world-readable directory: a child running as another user may not be able to
  // enter the checkout (a 0700 home or mktemp directory).
  const bundle = await readableBuild(
    `import { writeFileAtomic } from './common/atomic-file.ts';
writeFileAtomic(${JSON.stringify(path)}, 'z'.repeat(204800)).then(() => console.log('ok'), (e) => console.log(e.code));`,
  );
  try {
    const node = [process.execPath, bundle.file];
    const [cmd, ...args] = opts.fsizeLimit !== undefined ? ['prlimit', `--fsize=${opts.fsizeLimit}`, ...node] : node;
    const out = execFileSync(cmd as string, args, {
      encoding: 'utf8',
      cwd: bundle.dir,
      ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.uid, env: { ...process.env, HOME: bundle.dir } } : {}),
    });
    return out.trim().split('\n').pop() ?? '';
  } finally {
    await bundle.dispose();
  }
}
