/**
 * The pipeline's options and their resolution: every configurable value from the resolved config,
 * or the config schema's default for a component built directly (tests, bench).
 */
import { isValidId } from '../../protocol/index.js';
import type { Logger } from 'winston';
import type { Clock } from '../../common/clock.js';
import type { BucketSpec } from '../../common/token-bucket.js';
import { CONFIG_SCHEMA } from '../config/schema.js';
import { PipelineError } from './errors.js';
import type { RandomSource } from './random.js';
import type { HelloVerifier, SessionProvider } from './types.js';

export interface PipelineOptions {
  /** This gateway's id `gw` (the welcome's key 6 and the kid of welcomes and rejects). */
  gw: string;
  verifier: HelloVerifier;
  sessions: SessionProvider;
  /** Wall clock (unix ms) for event timestamps. */
  clock?: Clock;
  /** Elapsed-time clock for TTLs, rate limits and latency; default monotonic (`performance.now`), or `clock` when only that is given. */
  elapsedClock?: Clock;
  random?: RandomSource;
  logger?: Logger;
  /** protocol-v1: 30 s (default: config `pipeline.challengeTtlSec`). */
  challengeTtlMs?: number;
  /** Challenges outstanding across all connections (default: config `pipeline.maxOutstandingChallenges`); beyond it `busy`. */
  maxOutstandingChallenges?: number;
  /** Challenges outstanding per connection (default 4); beyond it the oldest is dropped. */
  maxChallengesPerConnection?: number;
  /** Hellos waiting for the backend at once (default: config `pipeline.maxPendingHellos`); beyond it `busy`. */
  maxPendingHellos?: number;
  /** Deadline of one verifier call (default: config `backend.requestTimeoutMs`). */
  verifyTimeoutMs?: number;
  /** Token buckets in requests per minute; burst equals the per-minute number (defaults: config `pipeline.rateLimits`). */
  rateLimits?: { perConnectionPerMin?: number; perDevicePerMin?: number; globalPerMin?: number };
  /** Keyed rate-limit buckets kept per table (default 10000). */
  maxRateLimitKeys?: number;
  /** Decision events kept (default: config `status.eventRingSize`). */
  eventRingSize?: number;
  /** `retry` (seconds) sent with `busy` (default 5) and `backend-unavailable` (default 30). */
  retrySec?: { busy?: number; backendUnavailable?: number };
  /** The longest session a welcome opens, seconds: a v2 `life`, and how long a v1 MQTT welcome stands (default: config `protocol.maxSessionAgeSec`). */
  maxSessionAgeSec?: number;
}

export interface Resolved {
  challengeTtlMs: number;
  maxOutstandingChallenges: number;
  maxChallengesPerConnection: number;
  maxPendingHellos: number;
  verifyTimeoutMs: number;
  perConnectionPerMin: number;
  perDevicePerMin: number;
  globalPerMin: number;
  maxRateLimitKeys: number;
  eventRingSize: number;
  busyRetry: number;
  unavailableRetry: number;
  maxSessionAgeSec: number;
}

/** The schema's default of a leaf that has one (CONTRIBUTING.md §7: defaults live only in the schema). */
function schemaDefault<T>(leaf: { readonly default?: T }): T {
  if (leaf.default === undefined) throw new PipelineError('GH_PIPELINE_BAD_OPTION', 'config schema leaf has no default');
  return leaf.default;
}

const CFG = CONFIG_SCHEMA.fields;
const PIPE = CFG.pipeline.fields;

export function resolve(o: PipelineOptions): Resolved {
  // The daemon passes every configurable value from the resolved config (daemon/gateway.ts);
  // a component built directly (tests, bench) gets the config's defaults.
  const r: Resolved = {
    challengeTtlMs: o.challengeTtlMs ?? schemaDefault(PIPE.challengeTtlSec) * 1000,
    maxOutstandingChallenges: o.maxOutstandingChallenges ?? schemaDefault(PIPE.maxOutstandingChallenges),
    maxChallengesPerConnection: o.maxChallengesPerConnection ?? 4,
    maxPendingHellos: o.maxPendingHellos ?? schemaDefault(PIPE.maxPendingHellos),
    verifyTimeoutMs: o.verifyTimeoutMs ?? schemaDefault(CFG.backend.fields.requestTimeoutMs),
    perConnectionPerMin: o.rateLimits?.perConnectionPerMin ?? schemaDefault(PIPE.rateLimits.fields.perConnectionPerMin),
    perDevicePerMin: o.rateLimits?.perDevicePerMin ?? schemaDefault(PIPE.rateLimits.fields.perDevicePerMin),
    globalPerMin: o.rateLimits?.globalPerMin ?? schemaDefault(PIPE.rateLimits.fields.globalPerMin),
    maxRateLimitKeys: o.maxRateLimitKeys ?? 10_000,
    eventRingSize: o.eventRingSize ?? schemaDefault(CFG.status.fields.eventRingSize),
    busyRetry: o.retrySec?.busy ?? 5,
    unavailableRetry: o.retrySec?.backendUnavailable ?? 30,
    maxSessionAgeSec: o.maxSessionAgeSec ?? schemaDefault(CFG.protocol.fields.maxSessionAgeSec),
  };
  const bad: string[] = [];
  for (const [name, value] of Object.entries(r)) {
    const min = name === 'eventRingSize' ? 0 : 1;
    if (!Number.isSafeInteger(value) || value < min) bad.push(`${name}: expected an integer >= ${min}, got ${String(value)}`);
  }
  if (!isValidId(o.gw)) bad.push(`gw: expected an id (1-64 of [A-Za-z0-9._:-]), got ${JSON.stringify(o.gw)}`);
  if (bad.length > 0) throw new PipelineError('GH_PIPELINE_BAD_OPTION', `invalid pipeline options: ${bad.join('; ')}`);
  return r;
}

/** Requests per minute of the three token-bucket tables. */
export interface RateLimitsPerMin {
  perConnectionPerMin: number;
  perDevicePerMin: number;
  globalPerMin: number;
}

/** Token buckets from per-minute limits; the burst equals the per-minute number. */
export function bucketSpecs(l: RateLimitsPerMin): { perConnection: BucketSpec; perDevice: BucketSpec; global: BucketSpec } {
  const perMin = (n: number): BucketSpec => ({ burst: n, perSecond: n / 60 });
  return { perConnection: perMin(l.perConnectionPerMin), perDevice: perMin(l.perDevicePerMin), global: perMin(l.globalPerMin) };
}
