/**
 * Device leases cached from every ok verdict (protocol-v1 "Device lease"), for the offline rule.
 * Bounded in count and bytes (LRU), persisted atomically to `leases.json`, loaded at start.
 * The lease signature protects the offline rule, so it is verified under `pk_S` where a lease is
 * relied on: when it is loaded from disk (a file on disk is not trusted) and each time it is used
 * offline. On arrival (`BackendClient`) it is checked for structure, gateway, device and expiry,
 * and the first lease of every answer for its signature too (see docs/backend-client.md).
 */
import { join } from 'node:path';
import type { Logger } from 'winston';
import { type Lease, base64UrlDecode, base64UrlEncode } from '../../protocol/index.js';
import { readJsonState, removeStaleTemps, writeJsonAtomic } from '../../common/atomic-file.js';
import type { TimerClock, TimerHandle } from '../../common/clock.js';
import { checkLease } from './lease-check.js';
import { isObject } from './wire.js';

/** Most lease bytes kept unless told otherwise (not configurable). */
export const LEASE_CACHE_MAX_BYTES = 4 * 1024 * 1024;
/** Writes coalesce for this long after a change: flash wears; revocations flush at once (not configurable). */
export const LEASE_PERSIST_DELAY_MS = 30_000;

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

export class LeaseCache {
  readonly #o: LeaseCacheOptions;
  readonly #file: string;
  readonly #map = new Map<string, Entry>();
  #bytes = 0;
  #timer: TimerHandle | undefined;
  #writing: Promise<void> = Promise.resolve();
  #dirty = false;

  constructor(options: LeaseCacheOptions) {
    this.#o = options;
    this.#file = join(options.stateDir, 'leases.json');
  }

  get #maxLeases(): number {
    return this.#o.maxLeases;
  }

  get #maxBytes(): number {
    return this.#o.maxBytes ?? LEASE_CACHE_MAX_BYTES;
  }

  get size(): number {
    return this.#map.size;
  }

  get totalBytes(): number {
    return this.#bytes;
  }

  #nowS(): number {
    return Math.floor(this.#o.clock.now() / 1000);
  }

  /** Load persisted leases; the bad and the expired are dropped. Returns how many were kept. */
  async load(): Promise<number> {
    await removeStaleTemps(this.#file);
    // A lease is at most 1024 bytes; base64url plus JSON framing stays under 1.5x.
    let list: string[] | undefined;
    try {
      list = await readJsonState(this.#file, validateFile, { maxBytes: Math.ceil(this.#maxBytes * 1.5) + 4096 });
    } catch (err) {
      // The leases are a cache: an unreadable file must not keep the gateway from starting.
      // The next write replaces it (rename also replaces a symlink).
      this.#o.logger.error('lease cache unreadable; starting with none', { error: (err as Error).message, code: (err as { code?: string }).code });
      this.#dirty = true;
      return 0;
    }
    if (list === undefined) return 0;
    let dropped = 0;
    for (const b64 of list) {
      const bytes = base64UrlDecode(b64, 1024);
      const check = bytes === undefined ? undefined : checkLease(bytes, { gw: this.#o.gw, backendKeys: this.#o.backendKeys, nowS: this.#nowS() });
      if (bytes === undefined || check === undefined || !check.ok) {
        dropped += 1;
        continue;
      }
      this.#insert(check.lease.payload.dev, { bytes, lease: check.lease.payload });
    }
    if (dropped > 0) this.#o.logger.warn('dropped invalid or expired persisted leases', { dropped });
    return this.#map.size;
  }

  /**
   * Store the lease of an ok verdict (checked by `checkLease`; its signature is verified again
   * before any offline use, by `get`).
   */
  put(lease: Lease, bytes: Uint8Array): void {
    this.#insert(lease.dev, { bytes, lease });
    this.#changed();
  }

  #insert(dev: string, e: Entry): void {
    this.#removeEntry(dev);
    this.#map.set(dev, e);
    this.#bytes += e.bytes.length;
    // LRU: the Map keeps insertion order; the first entries are the least recently used.
    for (const [k] of this.#map) {
      if (this.#map.size <= this.#maxLeases && this.#bytes <= this.#maxBytes) break;
      this.#removeEntry(k);
    }
  }

  #removeEntry(dev: string): boolean {
    const e = this.#map.get(dev);
    if (e === undefined) return false;
    this.#map.delete(dev);
    this.#bytes -= e.bytes.length;
    return true;
  }

  /**
   * The unexpired lease of `dev`, verified again under pk_S, or undefined. Counts as a use for
   * the LRU order.
   */
  get(dev: string): Entry | undefined {
    const e = this.#map.get(dev);
    if (e === undefined) return undefined;
    const check = checkLease(e.bytes, { gw: this.#o.gw, backendKeys: this.#o.backendKeys, nowS: this.#nowS(), dev });
    if (!check.ok) {
      // Expiry is the normal end of a lease; anything else means the backend sent a bad one.
      if (e.lease.exp > this.#nowS()) this.#o.logger.error('cached lease refused at use; dropped', { dev, why: check.why });
      this.#removeEntry(dev);
      this.#changed();
      return undefined;
    }
    this.#map.delete(dev);
    this.#map.set(dev, e);
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
    this.#dirty = true;
    if (this.#timer !== undefined) return;
    this.#timer = this.#o.clock.setTimeout(() => {
      this.#timer = undefined;
      void this.flush();
    }, this.#o.persistDelayMs ?? LEASE_PERSIST_DELAY_MS);
  }

  /**
   * Write now if anything changed. Writes are serialised; failures are logged, not thrown.
   * Resolves true when the file on disk matches memory.
   */
  flush(): Promise<boolean> {
    if (this.#timer !== undefined) {
      this.#o.clock.clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    const done = this.#writing.then(async () => {
      if (!this.#dirty) return true;
      this.#dirty = false;
      const list = [...this.#map.values()].map((e) => base64UrlEncode(e.bytes));
      try {
        await writeJsonAtomic(this.#file, { version: 1, leases: list }, { maxBytes: Math.ceil(this.#maxBytes * 1.5) + 4096 });
        return true;
      } catch (err) {
        this.#dirty = true;
        this.#o.logger.error('cannot persist leases', { error: (err as Error).message, code: (err as { code?: string }).code });
        return false;
      }
    });
    this.#writing = done.then(() => undefined);
    return done;
  }

  /** Cancel the pending write timer (call flush() first to keep changes). */
  close(): void {
    if (this.#timer !== undefined) this.#o.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

function validateFile(v: unknown): string[] {
  if (!isObject(v) || v.version !== 1 || !Array.isArray(v.leases)) throw new Error('not a version 1 lease file');
  const out: string[] = [];
  for (const x of v.leases) {
    if (typeof x !== 'string') throw new Error('lease entry is not a string');
    out.push(x);
  }
  return out;
}
