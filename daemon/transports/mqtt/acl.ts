/**
 * The broker's whole access policy, in one place (CONTRIBUTING.md §5), default deny, testable without a
 * broker. protocol-v1 "MQTT transport":
 * - a peripheral publishes only to `gatehouse/v1/{dev}/up` and subscribes only to
 *   `gatehouse/v1/{dev}/down`, QoS 1; only the gateway publishes on `.../down`;
 * - a connection is bound to the first `dev` it uses and may not touch another device's topics;
 * - before a welcome it may do nothing else; after it, the lease's policy applies;
 * - no `$SYS`, no wildcard outside what the policy grants, nothing else under `gatehouse/`.
 * The aedes hooks in hooks/ only translate these decisions.
 */
import type { Policy } from '../../../protocol/index.js';
import { filterCovers, inAuthNamespace, isValidTopicFilter, isValidTopicName, parseAuthTopic, topicMatches } from './topics.js';

/** What the ACL knows about one connection. */
export interface AclConnection {
  /** The device this connection is bound to: set by the first auth topic it publishes on. */
  boundDev: string | undefined;
  /** The expanded lease policy of a v1 welcome (a v2 session has none: no plaintext rights). */
  policy: Policy | undefined;
  /** Set when the gateway closes the connection (superseded, revoked): its will is dropped. */
  closing: boolean;
}

export interface AclOptions {
  /** Allow retained publishes on policy topics (never on auth topics). Default false. */
  allowRetain: boolean;
}

/** An ACL decision. `bind` asks the caller to bind the connection to that device. */
export type AclDecision = { ok: true; bind?: string; qos?: 0 | 1 } | { ok: false; why: string };

const deny = (why: string): AclDecision => ({ ok: false, why });

/**
 * protocol-v1: "A connection is bound to the first dev it uses" — by what it publishes (its
 * challenge-request or hello), never by a SUBSCRIBE alone, and never by its client id, which
 * carries no identity (protocol-v2 "MQTT transport").
 */
function bindCheck(conn: AclConnection, dev: string): AclDecision {
  if (conn.boundDev !== undefined) {
    return conn.boundDev === dev ? { ok: true } : deny(`connection is bound to ${conn.boundDev}, not ${dev}`);
  }
  return { ok: true, bind: dev };
}

/** May this connection publish `topic` with this QoS and retain flag? */
export function checkPublish(conn: AclConnection, topic: string, qos: number, retain: boolean, opts: AclOptions): AclDecision {
  if (conn.closing) return deny('connection is being closed by the gateway');
  if (!isValidTopicName(topic)) return deny('invalid topic name');
  if (topic.startsWith('$')) return deny('$ topics are reserved');
  const auth = parseAuthTopic(topic);
  if (auth !== undefined) {
    // protocol-v1: "Only the gateway publishes on .../down".
    if (auth.direction === 'down') return deny('only the gateway publishes on down topics');
    if (qos !== 1) return deny('auth messages are QoS 1');
    if (retain) return deny('auth messages are never retained');
    return bindCheck(conn, auth.dev);
  }
  if (inAuthNamespace(topic)) return deny('reserved gatehouse topic');
  // protocol-v1: "Before a welcome it may do nothing else".
  if (conn.policy === undefined) return deny('not welcomed');
  if (retain && !opts.allowRetain) return deny('retained messages are not allowed');
  if (!conn.policy.pub.some((f) => topicMatches(f, topic))) return deny('outside the lease policy');
  return { ok: true };
}

/** May this connection subscribe to `filter`? Answers the QoS to grant. */
export function checkSubscribe(conn: AclConnection, filter: string, qos: number): AclDecision {
  if (conn.closing) return deny('connection is being closed by the gateway');
  if (!isValidTopicFilter(filter)) return deny('invalid topic filter');
  if (filter.startsWith('$')) return deny('$ topics are reserved');
  const granted: 0 | 1 = qos === 0 ? 0 : 1;
  const auth = parseAuthTopic(filter);
  if (auth !== undefined) {
    if (auth.direction === 'up') return deny('up topics are for the gateway only');
    // Replies are delivered to the owning connection only, never routed by subscription, so a
    // subscription to a down topic is harmless; it does not bind (binding is by publish).
    if (conn.boundDev !== undefined && conn.boundDev !== auth.dev) return deny(`connection is bound to ${conn.boundDev}, not ${auth.dev}`);
    return { ok: true, qos: granted };
  }
  // Covers `gatehouse/#`, `gatehouse/v1/+/down` and the like: no wildcard into auth topics.
  if (inAuthNamespace(filter) || filter.startsWith('+') || filter.startsWith('#')) return deny('wildcard over reserved topics');
  if (conn.policy === undefined) return deny('not welcomed');
  if (!conn.policy.sub.some((g) => filterCovers(g, filter))) return deny('outside the lease policy');
  return { ok: true, qos: granted };
}

/**
 * May the broker deliver a message on `topic` to this connection? Checked again at delivery,
 * so a narrower policy after a re-welcome takes effect on existing subscriptions.
 */
export function checkDeliver(conn: AclConnection, topic: string): boolean {
  if (conn.closing || topic.startsWith('$')) return false;
  const auth = parseAuthTopic(topic);
  if (auth !== undefined) return auth.direction === 'down' && conn.boundDev === auth.dev;
  if (inAuthNamespace(topic) || conn.policy === undefined) return false;
  return conn.policy.sub.some((f) => topicMatches(f, topic));
}

/**
 * A will is checked twice: here at CONNECT, where anything that could never be allowed is
 * refused (auth topics, `$`, invalid names, retain when not allowed), and again by
 * `checkPublish` when the broker would publish it, against the state of the connection then.
 */
export function checkWillAtConnect(topic: string, retain: boolean, opts: AclOptions): AclDecision {
  if (!isValidTopicName(topic)) return deny('invalid will topic');
  if (topic.startsWith('$')) return deny('$ topics are reserved');
  if (inAuthNamespace(topic)) return deny('a will may not use a gatehouse topic');
  if (retain && !opts.allowRetain) return deny('retained wills are not allowed');
  return { ok: true };
}

/**
 * CONNECT client id rule (protocol-v2 "MQTT transport", applied to v1 too): the client id
 * carries no identity, so any id MQTT 3.1.1 allows is accepted (empty included); one in use by a
 * live connection is refused, so nobody can take over another's connection by its id.
 */
export function checkClientId(clientId: string, inUse: boolean): AclDecision {
  if (clientId !== '' && inUse) return deny('client id in use by a live connection');
  return { ok: true };
}
