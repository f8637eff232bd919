/**
 * protocol-v1 "Backend HTTP API": a nonce seen before within the 300 s window is rejected.
 *
 * The window lives in the registry's SQLite file, not in process memory, so a restart does not
 * forget it (a request captured before a restart must not verify again after it). A request
 * whose `created` is within ±window of now is remembered until `created + window`, after which
 * it would be refused as stale anyway. One row per (keyid, nonce): the primary key makes a
 * second use a replay even across processes sharing the file.
 *
 * Bounded per keyid: each keyid may hold at most `perKeyid` live nonces; beyond that its
 * requests are answered `full` (the caller says `busy`) rather than a nonce being forgotten
 * (forgetting would let a replay through). One gateway filling its quota does not touch any
 * other keyid's. The number of keyids is bounded by the registered gateways (`tpm:{gw}`,
 * `session:{gw}`), and nonces are recorded only after the signature verified.
 */
import type Database from 'better-sqlite3';

export type NonceOutcome = 'fresh' | 'replay' | 'full';

export const NONCE_SCHEMA = `
CREATE TABLE IF NOT EXISTS nonces (
  keyid TEXT NOT NULL,
  nonce TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (keyid, nonce)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nonces_keyid_exp ON nonces (keyid, expires_at);
CREATE INDEX IF NOT EXISTS nonces_exp ON nonces (expires_at);
`;

/**
 * Default quota of live nonces per keyid: a nonce lives up to 600 s (`created` may be 300 s
 * ahead), so this allows a sustained 500 requests per second per key. A gateway at full rate
 * sends far more requests than its batch size suggests: it sends as soon as nothing is in flight
 * (measured: ~120 verify requests/s at 1,400 auths/s, batches of ~12), and its data plane
 * uploads beside that. The first quota (10,000: 16 requests/s) throttled a busy gateway with 503
 * `busy`. The table stays bounded: keyids are bounded by the registered gateways.
 */
export const NONCES_PER_KEYID = 300_000;

/** How often expired rows are deleted, seconds. */
const SWEEP_EVERY_S = 60;

export class NonceStore {
  readonly #check: (keyid: string, nonce: string, until: number, now: number) => NonceOutcome;
  readonly #sweep: Database.Statement<[number]>;
  readonly #count: Database.Statement<[], { n: number }>;
  #lastSweep = 0;

  constructor(
    db: Database.Database,
    readonly perKeyid: number,
    readonly windowSeconds: number,
  ) {
    const live = db.prepare<[string, string], { expires_at: number }>('SELECT expires_at FROM nonces WHERE keyid = ? AND nonce = ?');
    const count = db.prepare<[string, number], { n: number }>('SELECT count(*) AS n FROM nonces WHERE keyid = ? AND expires_at >= ?');
    const put = db.prepare('INSERT INTO nonces (keyid, nonce, expires_at) VALUES (?, ?, ?) ON CONFLICT (keyid, nonce) DO UPDATE SET expires_at = excluded.expires_at');
    this.#sweep = db.prepare('DELETE FROM nonces WHERE expires_at < ?');
    this.#count = db.prepare('SELECT count(*) AS n FROM nonces');
    const tx = db.transaction((keyid: string, nonce: string, until: number, now: number): NonceOutcome => {
      const seen = live.get(keyid, nonce);
      if (seen !== undefined && seen.expires_at >= now) return 'replay';
      if ((count.get(keyid, now)?.n ?? 0) >= this.perKeyid) return 'full';
      put.run(keyid, nonce, until);
      return 'fresh';
    });
    // IMMEDIATE: the check and the insert are one step even when two processes share the file.
    this.#check = (...a) => tx.immediate(...a);
  }

  /** Rows stored (live or not yet swept). */
  get size(): number {
    return this.#count.get()?.n ?? 0;
  }

  /** Record `nonce` for `keyid` (signed at `created`); `replay` if it is live already, `full` over quota. */
  check(keyid: string, nonce: string, created: number, now: number): NonceOutcome {
    if (now - this.#lastSweep >= SWEEP_EVERY_S) this.sweep(now);
    return this.#check(keyid, nonce, created + this.windowSeconds, now);
  }

  /** Delete the nonces that can no longer be replayed (their `created` is stale). */
  sweep(now: number): number {
    this.#lastSweep = now;
    return this.#sweep.run(now).changes;
  }
}
