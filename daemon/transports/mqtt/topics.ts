/**
 * MQTT topic names and filters (MQTT 3.1.1 §4.7) and the auth topics of protocol v1
 * (`gatehouse/v1/{dev}/up|down`) and v2 (`gatehouse/v2/{dev}/up|down`).
 * Pure functions: the ACL and the tests use them without a broker.
 */
import { isValidId } from '../../../protocol/index.js';

/** protocol-v1 "MQTT transport": every auth topic lives under this prefix. */
export const AUTH_ROOT = 'gatehouse';

/** The protocol version an auth topic carries. */
export type TopicVersion = 1 | 2;

/** `gatehouse/v{version}/{dev}/up`: peripheral → gateway. */
export function upTopic(dev: string, version: TopicVersion = 1): string {
  return `${AUTH_ROOT}/v${version}/${dev}/up`;
}

/** `gatehouse/v{version}/{dev}/down`: gateway → peripheral. */
export function downTopic(dev: string, version: TopicVersion = 1): string {
  return `${AUTH_ROOT}/v${version}/${dev}/down`;
}

/** An exact auth topic. */
export interface AuthTopic {
  dev: string;
  direction: 'up' | 'down';
  version: TopicVersion;
}

/** Parses an exact auth topic of v1 or v2; anything else (including wildcards) answers undefined. */
export function parseAuthTopic(topic: string): AuthTopic | undefined {
  const parts = topic.split('/');
  if (parts.length !== 4 || parts[0] !== AUTH_ROOT) return undefined;
  const [, v, dev, direction] = parts as [string, string, string, string];
  const version = v === 'v1' ? 1 : v === 'v2' ? 2 : undefined;
  if (version === undefined || !isValidId(dev)) return undefined;
  if (direction !== 'up' && direction !== 'down') return undefined;
  return { dev, direction, version };
}

/** True for any name or filter in the reserved auth namespace (first level `gatehouse`). */
export function inAuthNamespace(topicOrFilter: string): boolean {
  const first = topicOrFilter.split('/', 1)[0];
  return first === AUTH_ROOT;
}

/** [MQTT-4.7.3-1..2] a topic name: non-empty, no wildcard, no NUL, at most 65535 bytes. */
export function isValidTopicName(topic: string): boolean {
  if (topic.length === 0 || Buffer.byteLength(topic, 'utf8') > 65535) return false;
  return !topic.includes('+') && !topic.includes('#') && !topic.includes('\u0000');
}

/** [MQTT-4.7.1-2..3] a topic filter: `#` alone and last, `+` alone in its level. */
export function isValidTopicFilter(filter: string): boolean {
  if (filter.length === 0 || Buffer.byteLength(filter, 'utf8') > 65535 || filter.includes('\u0000')) return false;
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i] as string;
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) return false;
    if (level.includes('+') && level !== '+') return false;
  }
  return true;
}

/** MQTT 3.1.1 §4.7 matching lives in protocol/ (the reference backend enforces the same policy). */
export { topicMatches } from '../../../protocol/index.js';

/**
 * Is every topic matched by `requested` also matched by `granted`? A subscription is allowed
 * only when some granted filter covers it, so `devices/a/cmd/#` is within `devices/a/#` but
 * `devices/+/cmd` is not within `devices/a/#`.
 */
export function filterCovers(granted: string, requested: string): boolean {
  if (requested.startsWith('$') && (granted.startsWith('+') || granted.startsWith('#'))) return false;
  const g = granted.split('/');
  const r = requested.split('/');
  for (let i = 0; i < g.length; i++) {
    const level = g[i] as string;
    if (level === '#') return true;
    if (i >= r.length) return false;
    const want = r[i] as string;
    if (want === '#') return false;
    if (level === '+') continue;
    if (want === '+' || want !== level) return false;
  }
  return g.length === r.length;
}

/** Topics and client ids from clients go to logs only shortened. */
export function shortForLog(s: string): string {
  return s.length > 96 ? `${s.slice(0, 96)}…` : s;
}
