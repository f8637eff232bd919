/**
 * Opening a protocol-v2 session, the same for every transport: the gateway's one session table
 * (so that a newer session of a device ends the older one whichever transport either came on),
 * the data plane, the local broker, and the lease policy's pub filters. A transport supplies
 * only its link: how bytes reach the peripheral and how the link closes.
 */
import { topicMatches, type Policy } from '../../protocol/index.js';
import type { IngressConnection, SessionOpening } from '../pipeline/types.js';
import { inAuthNamespace } from '../transports/mqtt/topics.js';
import type { GatewaySessionV2, SessionDataPlane } from './session.js';
import type { SessionTable } from './table.js';

/** What every transport's sessions share (built once by the composition root). */
export interface SessionServices {
  table: SessionTable;
  /** The durable queue; absent, pubs are only published locally and receipted at once. */
  dataPlane?: SessionDataPlane;
  /** Hand an allowed pub to the gateway's broker (local subscribers). */
  publishLocal(topic: string, body: Uint8Array): Promise<void>;
}

/** One transport link as a session sees it. */
export interface SessionLink {
  /** Deliver bytes to this link alone (never a fan-out). */
  send(bytes: Uint8Array): Promise<void>;
  /** Close the link (after a gateway-sent bye). */
  close(): void;
}

/**
 * May a session publish `topic`? Only what the lease policy's pub filters match (`{dev}`
 * already expanded); never the auth namespace nor a `$` topic, whatever the policy says: they
 * are the broker's own.
 */
export function pubAllowed(policy: Policy, topic: string): boolean {
  return !inAuthNamespace(topic) && !topic.startsWith('$') && policy.pub.some((f) => topicMatches(f, topic));
}

/** Opens the session a welcome was delivered with, on `conn`, in the shared table. */
export function openSession(s: SessionServices, opening: SessionOpening, conn: IngressConnection, link: SessionLink): Promise<GatewaySessionV2> {
  return s.table.open(opening, conn, {
    send: link.send,
    close: link.close,
    pubAllowed: (topic) => pubAllowed(opening.policy, topic),
    publishLocal: s.publishLocal,
    ...(s.dataPlane === undefined ? {} : { dataPlane: s.dataPlane }),
  });
}
