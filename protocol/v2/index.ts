/**
 * The protocol-v2 library: ephemeral X25519 + HKDF key schedule, COSE_Encrypt0 frames with a
 * replay window, the v2 messages, and the peripheral's and gateway's v2 checks. Pure: no I/O.
 * See docs/protocol.md, "Protocol v2".
 */
export * from './types.js';
export * from './uplink-records.js';
export * from './key-schedule.js';
export * from './encrypt0.js';
export * from './replay-window.js';
export * from './frame-payloads.js';
export * from './frame.js';
export * from './messages.js';
export * from './welcome-checks.js';
export * from './command-checks.js';
export * from './gateway-checks.js';
export { BYE_ONLY_REASON_CODES, BYE_REASON_CODES, isByeReason, type ByeReason } from '../reasons.js';
export { MAX_SEQ, MAX_TOPIC_BYTES, topicNameProblem } from '../payload.js';
