/** The authentication pipeline (docs/pipeline.md). */
export * from './types.js';
export { Pipeline, type PipelineOptions } from './pipeline.js';
export { ChallengeStore, type ChallengeStoreOptions, type ConsumeResult } from './challenge-store.js';
export { KeyedBuckets, RateLimiter, type BucketSpec } from './rate-limit.js';
export { DecisionLog, LATENCY_BUCKETS_MS, type DecisionCount, type DecisionListener, type LatencyStats } from './events.js';
export { systemClock, systemRandom, type Clock, type RandomSource } from './clock.js';
export { PipelineError, type PipelineErrorCode } from './errors.js';
