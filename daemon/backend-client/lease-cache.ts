/**
 * Device leases cached from every ok verdict (protocol-v1 "Device lease"), for the offline rule.
 * Bounded in count and bytes (LRU). The leases live in SQLite (`leases.db`, lease-store.ts), not
 * in the heap: memory holds only the changes not yet committed and a small LRU of parsed leases.
 * Starting opens the file and reads two totals; nothing is loaded.
 *
 * Every lease is verified under pk_S on arrival (verify-answer.ts) and again whenever it is read
 * back from the file (a file on disk is not trusted) before it enters the parsed LRU; a lease
 * that fails there is dropped. Writes coalesce (`persistDelayMs`) into one transaction; a
 * revocation and `stop()` commit at once. A commit is durable when `flush()` resolves true.
 * The file is closed after each commit and reopened on demand, so an idle gateway holds neither
 * the file nor SQLite's page cache. If the file cannot be written, the changes stay in memory
 * and the next commit retries: service goes on.
 */
import { existsSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'winston';
import { type Lease, base64UrlDecode } from '../../protocol/index.js';
import { readJsonState, removeStaleTemps, type StateFileError } from '../../common/atomic-file.js';
import type { TimerClock, TimerHandle } from '../../common/clock.js';
import { checkLease } from './lease-check.js';
import { LeaseStore, storeError } from './lease-store.js';
import { isObject } from './wire.js';

/** Most lease bytes kept unless told otherwise (not configurable). */
export const LEASE_CACHE_MAX_BYTES = 4 * 1024 * 1024;
/** Writes coalesce for this long after a change: flash wears; revocations flush at once (not configurable). */
export const LEASE_PERSIST_DELAY_MS = 30_000;
/** Parsed, verified leases kept in memory (the rest are parsed and verified again on use). */
export const PARSED_LEASES = 256;
/** The lease file. */
export const LEASE_DB_FILE = 'leases.db';
/** The JSON file of earlier versions, imported once then removed. */
export const LEGACY_LEASE_FILE = 'leases.json';

export interface LeaseCacheOptions {
  gw: string;
  backendKeys: ReadonlyMap<string, Uint8Array>;
  stateDir: string;
  clock: TimerClock;
  logger: Logger;
  /** Most leases kept (`backend.leaseCache.maxEntries`; the schema holds the default). */
  maxLeases: number;
  /** Most lease bytes kept (LEASE_CACHE_MAX_BYTES unless given). */
  maxBytes?: number;
  /** Coalesce writes for this long after a change (LEASE_PERSIST_DELAY_MS unless given). */
  persistDelayMs?: number;
}

interface Entry {
  bytes: Uint8Array;
  lease: Lease;
}

/** A change not yet committed: a new lease (bytes, exp) or only a use (LRU order). */
interface Pending {
  bytes?: Uint8Array;
  exp?: number;
  used: number;
}

export class LeaseCache {
  readonly #o: LeaseCacheOptions;
  readonly #file: string;
  #store: LeaseStore | undefined;
  /** Set when the file could not be opened: reads go without it until the next commit. */
  #storeDown = false;
  /** Why the file could not be opened, last time. */
  #openError: StateFileError | undefined;
  /** Uncommitted puts and uses, in order of use (oldest first). */
  readonly #pend = new Map<string, Pending>();
  /** Uncommitted removals. A device is in #pend or #gone, never both. */
  readonly #gone = new Set<string>();
  /** Parsed, verified leases (LRU, at most PARSED_LEASES). */
  readonly #parsed = new Map<string, Entry>();
  #count = 0;
  #bytes = 0;
  /** The use counter: every put and use takes the next value. */
  #seq = 0;
  /** Every committed row with `used` ≤ this has a pending change (eviction scans above it). */
  #floor = 0;
  #timer: TimerHandle | undefined;

  constructor(options: LeaseCacheOptions) {
    this.#o = options;
    this.#file = join(options.stateDir, LEASE_DB_FILE);
  }

  get #maxLeases(): number {
    return this.#o.maxLeases;
  }

  get #maxBytes(): number {
    return this.#o.maxBytes ?? LEASE_CACHE_MAX_BYTES;
  }

  get size(): number {
    return this.#count;
  }

  get totalBytes(): number {
    return this.#bytes;
  }

  #nowS(): number {
    return Math.floor(this.#o.clock.now() / 1000);
  }

  /**
   * Open the lease file and read its totals (nothing is parsed or verified here: each lease is
   * verified when it is first used). A `leases.json` of an earlier version is imported once and
   * removed. An unreadable file never stops the start: it is replaced by an empty one. Returns
   * how many leases the file holds.
   */
  async load(): Promise<number> {
    const store = this.#open(true);
    if (store !== undefined) await this.#importLegacy(store);
    this.#reset();
    this.#evict();
    if (this.#pend.size + this.#gone.size > 0) this.#changed();
    this.#closeStore();
    return this.#count;
  }

  /** The open store, opening it if needed; undefined when it cannot be opened (logged). */
  #open(replaceCorrupt = false): LeaseStore | undefined {
    if (this.#store !== undefined) return this.#store;
    if (this.#storeDown && !replaceCorrupt) return undefined;
    let failure: unknown;
    try {
      this.#store = LeaseStore.open(this.#file);
    } catch (err) {
      failure = err;
      const e = err as StateFileError;
      if (replaceCorrupt && (e.code === 'GH_STATE_CORRUPT' || e.code === 'GH_STATE_NOT_REGULAR')) {
        // The leases are a cache: an unreadable file must not keep the gateway from starting.
        this.#o.logger.error('lease cache unreadable; starting with none', { error: e.message, code: e.code });
        try {
          LeaseStore.remove(this.#file);
          this.#store = LeaseStore.open(this.#file);
        } catch (again) {
          failure = again;
        }
      }
    }
    if (this.#store === undefined) {
      const se = storeError(this.#file, failure);
      this.#openError = se;
      this.#storeDown = true;
      this.#o.logger.error('lease store unavailable; leases kept in memory until it can be written', { error: se.message, code: se.code });
      return undefined;
    }
    this.#storeDown = false;
    return this.#store;
  }

  /** `fn` on the open store; undefined when it is unavailable or the read fails (logged, closed). */
  #read<T>(fn: (store: LeaseStore) => T): T | undefined {
    const store = this.#open();
    if (store === undefined) return undefined;
    try {
      return fn(store);
    } catch (err) {
      const se = storeError(this.#file, err);
      this.#openError = se;
      this.#storeDown = true;
      this.#closeStore();
      this.#o.logger.error('lease store read failed; leases kept in memory until it can be written', { error: se.message, code: se.code });
      return undefined;
    }
  }

  #closeStore(): void {
    this.#store?.close();
    this.#store = undefined;
  }

  /** Counters from the file; no change pending. */
  #reset(): void {
    const t = this.#read((s) => s.totals()) ?? { count: 0, bytes: 0, maxUsed: 0 };
    this.#count = t.count;
    this.#bytes = t.bytes;
    this.#seq = Math.max(this.#seq, t.maxUsed);
    this.#floor = 0;
  }

  async #importLegacy(store: LeaseStore): Promise<void> {
    const legacy = join(this.#o.stateDir, LEGACY_LEASE_FILE);
    if (!existsSync(legacy)) return;
    await removeStaleTemps(legacy);
    let list: string[] | undefined;
    try {
      // A lease is at most 1024 bytes; base64url plus JSON framing stays under 1.5x.
      list = await readJsonState(legacy, validateLegacy, { maxBytes: Math.ceil(this.#maxBytes * 1.5) + 4096 });
    } catch (err) {
      this.#o.logger.error('old lease file unreadable; not imported', { error: (err as Error).message, code: (err as { code?: string }).code });
    }
    const nowS = this.#nowS();
    const puts = new Map<string, Pending>();
    for (const b64 of list ?? []) {
      const bytes = base64UrlDecode(b64, 1024);
      // Structure, gateway and expiry now; the signature when the lease is first used.
      const check = bytes === undefined ? undefined : checkLease(bytes, { gw: this.#o.gw, backendKeys: this.#o.backendKeys, nowS, verifySignature: false });
      if (bytes === undefined || check === undefined || !check.ok) continue;
      puts.delete(check.lease.payload.dev);
      puts.set(check.lease.payload.dev, { bytes, exp: check.lease.payload.exp, used: ++this.#seq });
    }
    try {
      store.commit({ puts, deletes: [], nowS });
      await unlink(legacy);
      this.#o.logger.info('lease file imported into the lease store', { leases: puts.size, from: LEGACY_LEASE_FILE, to: LEASE_DB_FILE });
    } catch (err) {
      const se = storeError(this.#file, err);
      this.#o.logger.error('cannot import the old lease file; kept for the next start', { error: se.message, code: se.code });
    }
  }

  /** The byte size of the lease held for `dev`, or undefined. */
  #sizeOf(dev: string): number | undefined {
    if (this.#gone.has(dev)) return undefined;
    const p = this.#pend.get(dev);
    if (p?.bytes !== undefined) return p.bytes.length;
    return this.#read((s) => s.sizeOf(dev));
  }

  /**
   * Store the lease of an ok verdict. Its signature must have been verified under pk_S
   * (readVerifyAnswer does); it is verified again when it is read back from the file.
   */
  put(lease: Lease, bytes: Uint8Array): void {
    this.#removeEntry(lease.dev);
    this.#gone.delete(lease.dev);
    this.#pend.set(lease.dev, { bytes, exp: lease.exp, used: ++this.#seq });
    this.#count += 1;
    this.#bytes += bytes.length;
    this.#evict();
    this.#changed();
  }

  /** Drop the least recently used until within both bounds. */
  #evict(): void {
    while (this.#count > this.#maxLeases || this.#bytes > this.#maxBytes) {
      const victim = this.#lruVictim();
      if (victim === undefined || !this.#removeEntry(victim)) break;
    }
  }

  /**
   * The least recently used device: committed rows (in `used` order) without a pending change
   * come first (every pending change is newer than every committed use), then the pending.
   */
  #lruVictim(): string | undefined {
    for (;;) {
      const rows = this.#read((s) => s.oldest(this.#floor, 64));
      if (rows === undefined) break;
      for (const r of rows) {
        if (!this.#pend.has(r.dev) && !this.#gone.has(r.dev)) return r.dev;
        this.#floor = r.used;
      }
      if (rows.length < 64) break;
    }
    for (const [dev, p] of this.#pend) if (p.bytes !== undefined || this.#store !== undefined) return dev;
    return undefined;
  }

  #removeEntry(dev: string): boolean {
    const size = this.#sizeOf(dev);
    this.#parsed.delete(dev);
    if (size === undefined) return false;
    this.#pend.delete(dev);
    this.#gone.add(dev);
    this.#count -= 1;
    this.#bytes -= size;
    return true;
  }

  /**
   * The unexpired lease of `dev`, verified under pk_S when read from the file, or undefined.
   * Counts as a use for the LRU order.
   */
  get(dev: string): Entry | undefined {
    if (this.#gone.has(dev)) return undefined;
    const nowS = this.#nowS();
    let e = this.#parsed.get(dev);
    if (e === undefined) {
      const p = this.#pend.get(dev);
      const row = p?.bytes !== undefined && p.exp !== undefined ? { bytes: p.bytes, exp: p.exp } : this.#read((s) => s.row(dev));
      if (row === undefined) return undefined;
      const check = checkLease(row.bytes, { gw: this.#o.gw, backendKeys: this.#o.backendKeys, nowS, dev });
      if (!check.ok) {
        // Expiry is the normal end of a lease; anything else means a bad lease or a tampered file.
        if (row.exp > nowS) this.#o.logger.error('cached lease refused at use; dropped', { dev, why: check.why });
        this.#removeEntry(dev);
        this.#changed();
        return undefined;
      }
      e = { bytes: row.bytes, lease: check.lease.payload };
    } else if (e.lease.exp <= nowS) {
      this.#removeEntry(dev);
      this.#changed();
      return undefined;
    }
    this.#parsed.delete(dev);
    this.#parsed.set(dev, e);
    for (const [k] of this.#parsed) {
      if (this.#parsed.size <= PARSED_LEASES) break;
      this.#parsed.delete(k);
    }
    const p = this.#pend.get(dev);
    this.#pend.delete(dev);
    this.#pend.set(dev, { ...p, used: ++this.#seq });
    return e;
  }

  /** Drop the leases of revoked devices. Returns how many were held. */
  revoke(devices: readonly string[]): number {
    let n = 0;
    for (const d of devices) if (this.#removeEntry(d)) n += 1;
    if (n > 0) this.#changed();
    return n;
  }

  #changed(): void {
    if (this.#timer !== undefined) return;
    this.#timer = this.#o.clock.setTimeout(() => {
      this.#timer = undefined;
      void this.flush();
    }, this.#o.persistDelayMs ?? LEASE_PERSIST_DELAY_MS);
  }

  /**
   * Commit now if anything changed, in one transaction, then close the file. Failures are
   * logged, not thrown, and the changes are kept for the next try. Resolves true when the file
   * holds every change (durably: WAL with synchronous=FULL).
   */
  flush(): Promise<boolean> {
    if (this.#timer !== undefined) {
      this.#o.clock.clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#pend.size === 0 && this.#gone.size === 0) {
      this.#closeStore();
      return Promise.resolve(true);
    }
    this.#storeDown = false;
    const store = this.#open();
    try {
      if (store === undefined) throw this.#openError ?? new Error('lease store unavailable');
      store.commit({ puts: this.#pend, deletes: this.#gone, nowS: this.#nowS() });
    } catch (err) {
      const se = storeError(this.#file, err);
      this.#o.logger.error('cannot persist leases', { error: se.message, code: se.code });
      this.#closeStore();
      return Promise.resolve(false);
    }
    this.#pend.clear();
    this.#gone.clear();
    this.#reset();
    this.#closeStore();
    return Promise.resolve(true);
  }

  /** Cancel the pending write timer and close the file (call flush() first to keep changes). */
  close(): void {
    if (this.#timer !== undefined) this.#o.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#closeStore();
  }
}

function validateLegacy(v: unknown): string[] {
  if (!isObject(v) || v.version !== 1 || !Array.isArray(v.leases)) throw new Error('not a version 1 lease file');
  const out: string[] = [];
  for (const x of v.leases) {
    if (typeof x !== 'string') throw new Error('lease entry is not a string');
    out.push(x);
  }
  return out;
}
