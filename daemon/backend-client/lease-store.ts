/**
 * The lease cache's SQLite file (`leases.db` in the state directory): one row per device, the
 * lease bytes as received, its expiry and its last use (for the LRU order). WAL journal,
 * `synchronous=FULL` (a committed transaction survives a power cut); a writer waits at most
 * BUSY_TIMEOUT_MS for another (there is none in service: one gateway per state directory). The file is created 0600 before SQLite
 * opens it (its WAL file takes the same mode). A symlink at the path is refused.
 */
import { accessSync, closeSync, constants as fsc, fchmodSync, fstatSync, openSync, rmSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { StateFileError } from '../../common/atomic-file.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS leases (
  dev TEXT PRIMARY KEY,
  bytes BLOB NOT NULL,
  exp INTEGER NOT NULL,
  used INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS leases_used ON leases (used);
`;

/** How long a write waits for another connection's lock (blocking: better-sqlite3 is synchronous). */
const BUSY_TIMEOUT_MS = 200;

/** SQLite page cache while the file is open, KiB (the file is closed between writes). */
const CACHE_KIB = 1024;

export interface LeaseRow {
  bytes: Uint8Array;
  exp: number;
}

export interface LeaseTotals {
  count: number;
  bytes: number;
  maxUsed: number;
}

/** An open `leases.db`. Every method is synchronous (better-sqlite3). */
export class LeaseStore {
  readonly #db: Database.Database;
  readonly #row: Database.Statement<[string], { bytes: Buffer; exp: number }>;
  readonly #size: Database.Statement<[string], { n: number }>;
  readonly #oldest: Database.Statement<[number, number], { dev: string; used: number }>;
  readonly #totals: Database.Statement<[], { n: number; b: number; u: number }>;
  readonly #upsert: Database.Statement<[string, Uint8Array, number, number]>;
  readonly #touch: Database.Statement<[number, string]>;
  readonly #del: Database.Statement<[string]>;
  readonly #sweep: Database.Statement<[number]>;

  private constructor(db: Database.Database) {
    this.#db = db;
    this.#row = db.prepare('SELECT bytes, exp FROM leases WHERE dev = ?');
    this.#size = db.prepare('SELECT length(bytes) AS n FROM leases WHERE dev = ?');
    this.#oldest = db.prepare('SELECT dev, used FROM leases WHERE used > ? ORDER BY used LIMIT ?');
    this.#totals = db.prepare('SELECT count(*) AS n, coalesce(sum(length(bytes)), 0) AS b, coalesce(max(used), 0) AS u FROM leases');
    this.#upsert = db.prepare('INSERT INTO leases (dev, bytes, exp, used) VALUES (?, ?, ?, ?) ON CONFLICT (dev) DO UPDATE SET bytes = excluded.bytes, exp = excluded.exp, used = excluded.used');
    this.#touch = db.prepare('UPDATE leases SET used = ? WHERE dev = ?');
    this.#del = db.prepare('DELETE FROM leases WHERE dev = ?');
    this.#sweep = db.prepare('DELETE FROM leases WHERE exp <= ?');
  }

  /**
   * Open (creating it 0600 if missing) the store at `path`. Throws a StateFileError: the
   * caller decides whether to start afresh (`GH_STATE_CORRUPT`, `GH_STATE_NOT_REGULAR`) or to
   * carry on from memory.
   */
  static open(path: string): LeaseStore {
    return openDurable(path, SCHEMA, (db) => new LeaseStore(db), { pragmas: [`cache_size = -${CACHE_KIB}`] });
  }

  /** Remove the store and its journal files (a corrupt store is started afresh). */
  static remove(path: string): void {
    for (const f of [path, `${path}-wal`, `${path}-shm`, `${path}-journal`]) rmSync(f, { force: true });
  }

  row(dev: string): LeaseRow | undefined {
    const r = this.#row.get(dev);
    return r === undefined ? undefined : { bytes: new Uint8Array(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength), exp: r.exp };
  }

  sizeOf(dev: string): number | undefined {
    return this.#size.get(dev)?.n;
  }

  /** Up to `limit` devices by last use, oldest first, among those used after `after`. */
  oldest(after: number, limit: number): { dev: string; used: number }[] {
    return this.#oldest.all(after, limit);
  }

  totals(): LeaseTotals {
    const t = this.#totals.get() ?? { n: 0, b: 0, u: 0 };
    return { count: t.n, bytes: t.b, maxUsed: t.u };
  }

  /** Apply a set of changes in one transaction (all or nothing), expired rows swept. */
  commit(changes: { puts: Iterable<[string, { bytes?: Uint8Array; exp?: number; used: number }]>; deletes: Iterable<string>; nowS: number }): void {
    this.#db.transaction(() => {
      for (const dev of changes.deletes) this.#del.run(dev);
      for (const [dev, p] of changes.puts) {
        if (p.bytes !== undefined && p.exp !== undefined) this.#upsert.run(dev, p.bytes, p.exp, p.used);
        else this.#touch.run(p.used, dev);
      }
      this.#sweep.run(changes.nowS);
    })();
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }
}

/** Create `path` 0600 if missing, refusing a symlink or anything not a regular file (`what` names it in errors). */
/**
 * Open the SQLite file at `path` durably: created 0600 first (a symlink refused), WAL journal,
 * `synchronous=FULL`, a writer waits at most BUSY_TIMEOUT_MS; then `pragmas`, `schema`, and
 * `build` on the open database. Any failure closes it and throws a StateFileError naming `what`.
 */
export function openDurable<T>(path: string, schema: string, build: (db: Database.Database) => T, o: { what?: string; pragmas?: readonly string[] } = {}): T {
  createPrivate(path, o.what);
  let db: Database.Database | undefined;
  try {
    db = new Database(path, { timeout: BUSY_TIMEOUT_MS });
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    for (const p of o.pragmas ?? []) db.pragma(p);
    db.exec(schema);
    return build(db);
  } catch (err) {
    db?.close();
    throw storeError(path, err, o.what);
  }
}

export function createPrivate(path: string, what = 'lease store'): void {
  let fd: number;
  try {
    fd = openSync(path, fsc.O_RDWR | fsc.O_CREAT | fsc.O_NOFOLLOW | fsc.O_NONBLOCK, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw new StateFileError('GH_STATE_NOT_REGULAR', path, `${what} is a symlink`, { cause: err });
    throw storeError(path, err, what);
  }
  try {
    if (!fstatSync(fd).isFile()) throw new StateFileError('GH_STATE_NOT_REGULAR', path, `${what} is not a regular file`);
    fchmodSync(fd, 0o600);
  } finally {
    closeSync(fd);
  }
}

/**
 * A StateFileError for a failure of the store. SQLite does not report the errno, so the cause
 * is confirmed: a full file system with statfs(2), a read-only one with access(2).
 */
export function storeError(path: string, err: unknown, what = 'lease store'): StateFileError {
  if (err instanceof StateFileError) return err;
  const code = (err as { code?: unknown }).code;
  const c = typeof code === 'string' ? code : 'error';
  if (c === 'ENOSPC' || c === 'EDQUOT' || c === 'SQLITE_FULL' || (c.startsWith('SQLITE_IOERR') && fileSystemFull(path))) {
    return new StateFileError('GH_STATE_NO_SPACE', path, `no space left to write the ${what} (${c.startsWith('SQLITE') ? `ENOSPC, ${c}` : c})`, { cause: err });
  }
  if (c === 'SQLITE_NOTADB' || c === 'SQLITE_CORRUPT') return new StateFileError('GH_STATE_CORRUPT', path, `${what} is not a valid database (${c})`, { cause: err });
  const denied = c === 'EROFS' || c === 'EACCES' || c === 'EPERM' ? c : accessDenied(path);
  if (denied !== undefined) return new StateFileError('GH_STATE_READ_ONLY', path, `state directory is not writable (${denied}${c.startsWith('SQLITE') ? `, ${c}` : ''})`, { cause: err });
  return new StateFileError('GH_STATE_WRITE', path, `cannot write the ${what} (${c})`, { cause: err });
}

/** Fewer free blocks than SQLite needs to grow its files (statfs(2) on the directory). */
function fileSystemFull(path: string): boolean {
  try {
    const s = statfsSync(dirname(path));
    return s.bavail * s.bsize < 64 * 1024;
  } catch {
    return false;
  }
}

function accessDenied(path: string): string | undefined {
  for (const p of [dirname(path), path]) {
    try {
      accessSync(p, fsc.W_OK);
    } catch (e) {
      const c = (e as NodeJS.ErrnoException).code;
      if (c === 'EROFS' || c === 'EACCES' || c === 'EPERM') return c;
    }
  }
  return undefined;
}
