/**
 * protocol-v1 revocation feed (`GET /v1/gateways/{gw}/revocations?since=N`): polled every
 * `pollMs`; revoked devices lose their cached leases and listeners (the pipeline) are told, so
 * their sessions close. The cursor is persisted in `revocations.json`.
 *
 * After `maxFailedPolls` polls in a row that could not be made or failed, the feed is *stale*:
 * the gateway no longer hears of revocations, so the backend client refuses offline welcomes
 * until a poll succeeds again (docs/backend-client.md "Revocation polls blocked"). Logged once
 * at warn when entering, once at info when recovering.
 */
import { join } from 'node:path';
import type { Logger } from 'winston';
import { isValidId } from '../../protocol/index.js';
import { readJsonState, writeJsonAtomic } from '../../common/atomic-file.js';
import type { TimerClock, TimerHandle } from '../../common/clock.js';
import type { LeaseCache } from './lease-cache.js';
import { badField, isObject } from './wire.js';

/** Most devices one revocation answer may name. */
export const MAX_REVOKED_PER_POLL = 10000;
/** Pages fetched back to back after a non-empty one before waiting a period again. */
const MAX_BURST = 16;

export interface RevocationFeedOptions {
  gw: string;
  stateDir: string;
  leases: LeaseCache;
  clock: TimerClock;
  logger: Logger;
  /** Poll period; 0 disables the timer (polls then only on demand). */
  pollMs: number;
  /** Failed polls in a row after which the feed is stale (config `backend.revocations.maxFailedPolls`). */
  maxFailedPolls: number;
  /**
   * A session-signed GET whose 200 JSON body goes through `parse`; throws on any failure (the
   * caller counts errors and feeds the breaker); undefined when no request could be made.
   */
  get: <T>(path: string, parse: (body: unknown) => T) => Promise<T | undefined>;
}

export class RevocationFeed {
  #cursor = 0;
  #timer: TimerHandle | undefined;
  #running = false;
  #burst = 0;
  readonly #listeners = new Set<(devices: string[]) => void>();
  /** Polls answered, devices named, polls failed (all, and in a row now), times the feed went stale. */
  readonly counters = { polls: 0, revokedDevices: 0, failedPolls: 0, failedInARow: 0, staleEntered: 0 };
  /** Clock time (ms) the feed went stale; undefined while it is not. */
  #staleSince: number | undefined;

  readonly #o: RevocationFeedOptions;

  constructor(o: RevocationFeedOptions) {
    this.#o = o;
  }

  get position(): number {
    return this.#cursor;
  }

  /** True after `maxFailedPolls` failed polls in a row, until one succeeds. */
  get stale(): boolean {
    return this.#staleSince !== undefined;
  }

  /** Clock time (ms) the feed went stale, undefined while it is not. */
  get staleSince(): number | undefined {
    return this.#staleSince;
  }

  #failed(why: string): void {
    this.counters.failedPolls += 1;
    this.counters.failedInARow += 1;
    if (this.#staleSince !== undefined || this.counters.failedInARow < this.#o.maxFailedPolls) return;
    this.#staleSince = this.#o.clock.now();
    this.counters.staleEntered += 1;
    this.#o.logger.warn('revocation polls failing: offline welcomes refused until a poll succeeds', {
      failedInARow: this.counters.failedInARow,
      maxFailedPolls: this.#o.maxFailedPolls,
      why,
    });
  }

  #succeeded(): void {
    if (this.#staleSince !== undefined) {
      this.#o.logger.info('revocation polls succeed again: offline welcomes allowed', {
        failedInARow: this.counters.failedInARow,
        staleForMs: Math.max(0, this.#o.clock.now() - this.#staleSince),
      });
    }
    this.#staleSince = undefined;
    this.counters.failedInARow = 0;
  }

  get #file(): string {
    return join(this.#o.stateDir, 'revocations.json');
  }

  async start(): Promise<void> {
    try {
      this.#cursor = (await readJsonState(this.#file, validateCursorFile, { maxBytes: 4096 })) ?? 0;
    } catch (err) {
      // Starting the feed from 0 again is always safe: it only repeats revocations.
      this.#o.logger.error('revocation cursor unreadable; starting from 0', { error: (err as Error).message });
      this.#cursor = 0;
    }
    this.#running = true;
    this.#schedule(0);
  }

  stop(): void {
    this.#running = false;
    if (this.#timer !== undefined) this.#o.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  onRevoked(listener: (devices: string[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #schedule(ms: number): void {
    if (!this.#running || this.#o.pollMs <= 0) return;
    if (this.#timer !== undefined) this.#o.clock.clearTimeout(this.#timer);
    this.#timer = this.#o.clock.setTimeout(() => {
      this.#timer = undefined;
      void this.poll().then(
        (devices) => {
          // The feed is paged: after a non-empty answer ask again at once, a bounded number of times.
          this.#burst = devices !== undefined && devices.length > 0 && this.#burst < MAX_BURST ? this.#burst + 1 : 0;
          this.#schedule(this.#burst > 0 ? 0 : this.#o.pollMs);
        },
        () => this.#schedule(this.#o.pollMs),
      );
    }, ms);
  }

  /**
   * One poll. Returns the devices newly revoked, or undefined when the poll could not be made
   * or failed (the failure is logged by the caller's `get`).
   */
  async poll(): Promise<string[] | undefined> {
    let answer: { cursor: number; devices: string[] } | undefined;
    try {
      answer = await this.#o.get(`/v1/gateways/${encodeURIComponent(this.#o.gw)}/revocations?since=${this.#cursor}`, parseRevocations);
      if (answer === undefined) {
        // No session key, or the circuit is open: the feed is not heard either way.
        this.#failed('no request could be made');
        return undefined;
      }
    } catch (err) {
      this.#o.logger.warn('revocation poll failed', { error: (err as Error).message, code: (err as { code?: string }).code });
      this.#failed((err as Error).message);
      return undefined;
    }
    this.counters.polls += 1;
    this.#succeeded();
    let leasesOnDisk = true;
    if (answer.devices.length > 0) {
      const held = this.#o.leases.revoke(answer.devices);
      this.counters.revokedDevices += answer.devices.length;
      this.#o.logger.warn('devices revoked', { count: answer.devices.length, leasesDropped: held });
      // Leases on disk go before the cursor moves: a crash between the two must not leave a
      // revoked device's lease behind a cursor that will never name it again.
      leasesOnDisk = await this.#o.leases.flush();
    }
    if (!leasesOnDisk) {
      this.#o.logger.error('revocation cursor kept: the lease file could not be updated', { cursor: this.#cursor });
    } else if (answer.cursor !== this.#cursor) {
      if (answer.cursor < this.#cursor) this.#o.logger.warn('revocation cursor went back (backend reset?)', { from: this.#cursor, to: answer.cursor });
      this.#cursor = answer.cursor;
      await writeJsonAtomic(this.#file, { version: 1, cursor: this.#cursor }, { maxBytes: 4096 }).catch((err: unknown) => {
        this.#o.logger.error('cannot persist revocation cursor', { error: (err as Error).message });
      });
    }
    if (answer.devices.length > 0) {
      for (const l of this.#listeners) {
        try {
          l([...answer.devices]);
        } catch (err) {
          this.#o.logger.error('revocation listener failed', { error: (err as Error).message });
        }
      }
    }
    return answer.devices;
  }
}

/** `{"cursor", "devices"}`, strictly. */
export function parseRevocations(v: unknown): { cursor: number; devices: string[] } {
  if (!isObject(v)) badField('revocations answer is not an object');
  const { cursor, devices } = v;
  if (typeof cursor !== 'number' || !Number.isSafeInteger(cursor) || cursor < 0) badField('cursor is not a non-negative integer');
  if (!Array.isArray(devices) || devices.length > MAX_REVOKED_PER_POLL) badField('devices is not a bounded array');
  for (const d of devices) if (!isValidId(d)) badField('devices holds an invalid id');
  return { cursor, devices: devices as string[] };
}

function validateCursorFile(v: unknown): number {
  if (!isObject(v) || v.version !== 1 || typeof v.cursor !== 'number' || !Number.isSafeInteger(v.cursor) || v.cursor < 0) {
    throw new Error('not a version 1 revocation cursor');
  }
  return v.cursor;
}
