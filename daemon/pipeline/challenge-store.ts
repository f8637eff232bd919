/**
 * Outstanding challenges (protocol-v1 "Challenge"): each `gn` is single-use, bound to the
 * connection that asked for it and to `dev`, and expires after a TTL. Bounded in total and per
 * connection. Expiry is read from the injected clock: no timers.
 */
import type { Clock } from '../../common/clock.js';
import type { X25519KeyPair } from '../../protocol/index.js';

export interface ChallengeStoreOptions {
  clock: Clock;
  /** protocol-v1: 30 s by default. */
  ttlMs: number;
  /** Outstanding challenges across all connections; beyond it `issue` answers `full`. */
  maxTotal: number;
  /** Outstanding challenges per connection; beyond it the connection's oldest is dropped. */
  maxPerConnection: number;
}

interface Entry {
  conn: string;
  /** Undefined for a BLE connection challenge: the device id is learned from the hello. */
  dev: string | undefined;
  expiresAt: number;
  /** The protocol version of the challenge: a hello of another version does not consume it. */
  version: 1 | 2;
  /**
   * protocol-v2: the ge key pair issued with this challenge. Its only reference is here: it is
   * handed out when the challenge is consumed and dropped with the entry on expiry.
   */
  ge: X25519KeyPair | undefined;
}

/** What `consume` found. */
export type ConsumeResult =
  | { ok: true; dev: string | undefined; ge: X25519KeyPair | undefined }
  | { ok: false; why: 'unknown' | 'expired' | 'wrong-dev' };

function keyOf(gn: Uint8Array): string {
  return Buffer.from(gn.buffer, gn.byteOffset, gn.byteLength).toString('hex');
}

export class ChallengeStore {
  readonly #opts: ChallengeStoreOptions;
  /** gn (hex) → entry, in insertion order, which is also expiry order (one TTL for all). */
  readonly #byGn = new Map<string, Entry>();
  /** connection id → its gn keys, in insertion order. */
  readonly #byConn = new Map<string, Set<string>>();

  constructor(options: ChallengeStoreOptions) {
    this.#opts = options;
  }

  /** Outstanding challenges now (expired ones may be counted until the next sweep). */
  get size(): number {
    return this.#byGn.size;
  }

  /** Outstanding challenges of one connection. */
  sizeOf(conn: string): number {
    return this.#byConn.get(conn)?.size ?? 0;
  }

  /**
   * Records a fresh `gn` for `conn` (and `dev`, unless a BLE connection challenge). Answers
   * `full` when the store is at its total bound even after dropping expired entries.
   */
  issue(conn: string, dev: string | undefined, gn: Uint8Array, v2?: { ge: X25519KeyPair }): 'ok' | 'full' {
    const now = this.#opts.clock.now();
    this.#sweep(now);
    const mine = this.#byConn.get(conn);
    if (mine !== undefined && mine.size >= this.#opts.maxPerConnection) {
      // A peripheral that retries before answering gets a new gn; its oldest is the one to go.
      const oldest = mine.values().next();
      if (!oldest.done) this.#delete(oldest.value);
    } else if (this.#byGn.size >= this.#opts.maxTotal) {
      return 'full';
    }
    const key = keyOf(gn);
    this.#delete(key);
    this.#byGn.set(key, { conn, dev, expiresAt: now + this.#opts.ttlMs, version: v2 === undefined ? 1 : 2, ge: v2?.ge });
    let set = this.#byConn.get(conn);
    if (set === undefined) {
      set = new Set();
      this.#byConn.set(conn, set);
    }
    set.add(key);
    return 'ok';
  }

  /**
   * protocol-v1: "gn outstanding for this connection (consumed on first use, whatever the
   * outcome)". A `gn` presented on another connection is not outstanding for it: it is neither
   * matched nor consumed, so a peer that saw someone else's challenge cannot burn it.
   */
  consume(conn: string, gn: Uint8Array, dev: string, version: 1 | 2 = 1): ConsumeResult {
    const key = keyOf(gn);
    const entry = this.#byGn.get(key);
    if (entry === undefined || entry.conn !== conn) return { ok: false, why: 'unknown' };
    this.#delete(key);
    if (this.#opts.clock.now() >= entry.expiresAt) return { ok: false, why: 'expired' };
    if (entry.dev !== undefined && entry.dev !== dev) return { ok: false, why: 'wrong-dev' };
    // A v1 hello answering a v2 challenge (or the reverse) is not the exchange it was issued for.
    if (entry.version !== version) return { ok: false, why: 'unknown' };
    return { ok: true, dev: entry.dev, ge: entry.ge };
  }

  /** Forgets every challenge of a closed connection. */
  dropConnection(conn: string): void {
    const set = this.#byConn.get(conn);
    if (set === undefined) return;
    for (const key of set) this.#byGn.delete(key);
    this.#byConn.delete(conn);
  }

  #sweep(now: number): void {
    for (const [key, entry] of this.#byGn) {
      if (entry.expiresAt > now) break;
      this.#delete(key);
    }
  }

  #delete(key: string): void {
    const entry = this.#byGn.get(key);
    if (entry === undefined) return;
    this.#byGn.delete(key);
    const set = this.#byConn.get(entry.conn);
    if (set === undefined) return;
    set.delete(key);
    if (set.size === 0) this.#byConn.delete(entry.conn);
  }
}
