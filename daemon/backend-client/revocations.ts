/**
 * protocol-v1 revocation feed (`GET /v1/gateways/{gw}/revocations?since=N`): polled every
 * `pollMs`; revoked devices lose their cached leases and listeners (the pipeline) are told, so
 * their sessions close. The cursor is persisted in `revocations.json`.
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
  /** Polls answered, devices named. */
  readonly counters = { polls: 0, revokedDevices: 0 };

  readonly #o: RevocationFeedOptions;

  constructor(o: RevocationFeedOptions) {
    this.#o = o;
  }

  get position(): number {
    return this.#cursor;
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
      if (answer === undefined) return undefined;
    } catch (err) {
      this.#o.logger.warn('revocation poll failed', { error: (err as Error).message, code: (err as { code?: string }).code });
      return undefined;
    }
    this.counters.polls += 1;
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
