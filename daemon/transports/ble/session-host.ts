/**
 * The daemon's `V2SessionHost` (v2-link.ts): protocol v2 on a BLE link through the same parts as
 * on MQTT. The pipeline issues the challenge (a fresh `ge` kept with the `gn` and erased when it
 * is consumed or expires), checks the hello and relays the backend's grant or makes the offline
 * welcome; the session opens in the gateway's one session table (daemon/sessions/), so its frames
 * go through the same replay window, policy, data plane (pub → durable queue → receipt after the
 * commit, `busy` when full), command relay, `life`, revocation and "a newer session of the
 * device ends the older one" as an MQTT session's. This file only binds a link to its session.
 */
import type { Logger } from 'winston';
import { decodeDownMessageV2, type ReasonCode } from '../../../protocol/index.js';
import type { AuthPipeline, IngressConnection, RevocationSource, SessionOpening } from '../../pipeline/types.js';
import { openSession, type SessionServices } from '../../sessions/open.js';
import type { GatewaySessionV2, SessionEndReason } from '../../sessions/session.js';
import type { V2CloseReason, V2Exchange, V2LinkInfo, V2SessionHost } from './v2-link.js';

export interface PipelineV2HostOptions {
  pipeline: AuthPipeline;
  /** The gateway's session table, data plane and local broker, shared with the MQTT transport. */
  sessions: SessionServices;
  /** Revoked devices' BLE sessions end with `bye revoked`. */
  revocations?: RevocationSource;
  log: Logger;
}

/** What a link reports as its session's end: the peer's bye is `bye`, as the peripheral sent it. */
function endName(reason: SessionEndReason): string {
  return reason === 'peer-bye' ? 'bye' : reason;
}

/** The reject a challenge answer is, if it is one. */
function refusalIn(bytes: Uint8Array): { reason: ReasonCode; retry?: number } | undefined {
  const m = decodeDownMessageV2(bytes);
  if (m.type !== 'reject') return undefined;
  return m.message.retry === undefined ? { reason: m.message.reason } : { reason: m.message.reason, retry: m.message.retry };
}

export class PipelineV2Host implements V2SessionHost {
  readonly #o: PipelineV2HostOptions;
  /** The link of each live BLE session: told when the session ends, whoever ended it. */
  readonly #links = new Map<GatewaySessionV2, V2LinkInfo>();
  readonly #detach: Array<() => void> = [];

  constructor(options: PipelineV2HostOptions) {
    this.#o = options;
    const table = options.sessions.table;
    const onEnded = (s: GatewaySessionV2, reason: SessionEndReason): void => {
      const link = this.#links.get(s);
      if (link === undefined) return;
      this.#links.delete(s);
      link.end(endName(reason));
    };
    table.on('ended', onEnded);
    this.#detach.push(() => table.off('ended', onEnded));
    const off = options.revocations?.onRevoked((devices) => void table.revoke(devices));
    if (off !== undefined) this.#detach.push(off);
  }

  /** Stop listening to the table and for revocations (after the transport stopped: its sessions ended with its links). */
  dispose(): void {
    for (const d of this.#detach.splice(0)) d();
  }

  async beginExchange(link: V2LinkInfo): Promise<V2Exchange> {
    const { pipeline, log } = this.#o;
    const conn: IngressConnection = link.connection;
    // protocol-v2 "BLE transport (v2)": no challenge-request; the gn and ge are bound to this link.
    const challenge = await pipeline.connectionChallenge(conn, 2);
    const refused = refusalIn(challenge);
    let opening: SessionOpening | undefined;
    let session: GatewaySessionV2 | undefined;
    let closed = false;
    return {
      challenge,
      ...(refused === undefined ? {} : { refused }),
      onHello: async (hello) => {
        // The device id is learned from the hello (no expected dev on BLE).
        const outcome = await pipeline.hello(conn, hello, undefined, 2);
        if (outcome.welcomed !== undefined && outcome.session !== undefined) {
          opening = outcome.session;
          return { reply: outcome.reply, welcomed: { dev: outcome.welcomed.dev, lifeSeconds: outcome.session.lifeSeconds } };
        }
        return { reply: outcome.reply, rejected: outcome.rejected ?? { reason: 'internal' } };
      },
      opened: async () => {
        const o = opening;
        opening = undefined;
        if (o === undefined) return;
        // An older session of the device (on BLE or MQTT) ends with `bye replaced` first.
        const s = await openSession(this.#o.sessions, o, conn, {
          send: (bytes) => link.write(bytes),
          // The table's `ended` event closes the link (with the reason); nothing more to do here.
          close: () => undefined,
        });
        if (closed) {
          // The link went while an older session said `bye replaced`: this one never starts.
          await s.end('closed');
          return;
        }
        session = s;
        this.#links.set(s, link);
        log.info('v2 session opened', { conn: conn.id, dev: o.dev, sid: s.info().sid, life: o.lifeSeconds, offline: o.offline });
      },
      onFrame: (frame) => session?.receive(frame),
      close: async (reason: V2CloseReason) => {
        closed = true;
        opening = undefined;
        const s = session;
        session = undefined;
        pipeline.connectionClosed(conn);
        if (s === undefined || s.ended) return;
        this.#links.delete(s);
        // protocol-v2: G says why it ends a session it ends; a link that is gone only erases the keys.
        await s.end(reason === 'idle' || reason === 'shutdown' ? reason : 'closed');
      },
    };
  }
}
