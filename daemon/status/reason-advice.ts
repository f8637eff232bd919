/**
 * What each reject reason means to a field tech and what to do about it: the one table behind
 * `gatehouse peripherals --failing`, `gatehouse peripherals DEV` and the `peripherals.failing`
 * check. The meanings follow protocol-v1 "Reason codes".
 */
import type { ReasonCode } from '../../protocol/index.js';

export interface ReasonAdvice {
  /** One line: what the gateway or backend decided and why. */
  meaning: string;
  /** One line: what to do on site or at the backend. */
  action: string;
}

export const REASON_ADVICE: Readonly<Record<ReasonCode, ReasonAdvice>> = {
  malformed: {
    meaning: 'the message did not decode, or its device id does not match the topic or connection',
    action: 'check the peripheral firmware speaks protocol v1 and publishes on its own gatehouse/v1/<dev>/up topic',
  },
  'unsupported-version': {
    meaning: 'the peripheral speaks a protocol version this gateway does not',
    action: 'update the peripheral firmware or the gateway so they share a protocol version',
  },
  'stale-challenge': {
    meaning: 'the hello answered a challenge that expired (30 s), was already used, or belongs to another connection',
    action: 'the peripheral must answer the newest challenge promptly on the same connection; check how soon it answers and the link latency',
  },
  'unknown-device': {
    meaning: 'the backend has no device with this id',
    action: 'register the device at the backend (check the id printed on the device against the registry)',
  },
  'bad-signature': {
    meaning: "the hello's signature does not verify with the key the backend holds for this device",
    action: 'the device key and the registered public key differ: re-register the key, or re-provision the device',
  },
  revoked: {
    meaning: 'the backend revoked this device',
    action: 'ask the backend operator why; a revoked device is not welcomed anywhere until reinstated',
  },
  'not-allowed-here': {
    meaning: 'the device is registered but not allowed at this gateway',
    action: "allow this gateway for the device at the backend, or move the device to a gateway it is allowed at",
  },
  'rate-limited': {
    meaning: 'the device (or its connection) tried more often than the rate limit allows',
    action: 'wait until the next attempt time; if the firmware retries in a tight loop, fix its back-off (it must honour retry)',
  },
  busy: {
    meaning: 'the gateway had too many exchanges in progress',
    action: 'transient: the peripheral retries after retry seconds; if it persists see gatehouse status (queued, limits)',
  },
  'backend-unavailable': {
    meaning: 'the backend could not be asked and no cached lease allowed an offline welcome',
    action: 'run gatehouse check (backend.tls, backend.session); the peripheral retries after retry seconds',
  },
  internal: {
    meaning: 'the gateway failed inside (a bug or a fault)',
    action: 'see the daemon log (journalctl -u gatehouse) around that time and report it',
  },
};

/** The advice for `reason`, or a generic line for a reason this build does not know. */
export function adviceFor(reason: string): ReasonAdvice {
  return Object.prototype.hasOwnProperty.call(REASON_ADVICE, reason)
    ? REASON_ADVICE[reason as ReasonCode]
    : { meaning: `reason ${JSON.stringify(reason)} is not known to this version`, action: 'update gatehouse, or see docs/protocol.md' };
}
