/**
 * The pipeline's answers on the way out: rejects encoded (signed with the session key, unsigned
 * only when there is none or the plan says so), the signer that puts kid = gw on welcomes and
 * rejects, and the decision event every answer records.
 */
import type { Logger } from 'winston';
import type { ReasonCode, Signer } from '../../protocol/index.js';
import type { Clock } from '../../common/clock.js';
import type { DecisionLog } from './events.js';
import type { RejectPlan } from './hello-check.js';
import type { GatewaySession, HelloOutcome, IngressConnection, ProtocolVersion, SessionProvider } from './types.js';
import { encodeRejectOf } from './welcome-v2.js';

/** One decision event's fields beyond the connection and timing. */
export interface RecordFields {
  dev: string | undefined;
  outcome: 'welcome' | 'reject' | 'challenge';
  reason?: ReasonCode;
  offline: boolean;
  version?: ProtocolVersion;
  retry?: number;
  leaseExp?: number;
}

export interface RepliesDeps {
  gw: string;
  sessions: SessionProvider;
  events: DecisionLog;
  /** Wall clock for event timestamps. */
  clock: Clock;
  /** Elapsed-time clock for latency. */
  elapsed: Clock;
  log: Logger;
}

/** Encodes rejects and records decisions for the {@link Pipeline}. */
export class Replies {
  readonly #d: RepliesDeps;

  constructor(deps: RepliesDeps) {
    this.#d = deps;
  }

  /** protocol-v1: welcomes and rejects carry kid = gw, whatever kid the session signer has. */
  signerOf(session: GatewaySession): Signer {
    const inner = session.signer;
    return { alg: inner.alg, kid: this.#d.gw, sign: (tbs) => inner.sign(tbs) };
  }

  async reject(conn: IngressConnection, started: number, plan: RejectPlan): Promise<HelloOutcome> {
    const reply = await this.rejectBytes(conn, started, plan);
    return { reply, rejected: { dev: plan.dev, reason: plan.reason, ...(plan.retry === undefined ? {} : { retry: plan.retry }) } };
  }

  /** Encodes a reject: signed with the session key, unsigned only when there is none. */
  async rejectBytes(conn: IngressConnection, started: number, plan: RejectPlan): Promise<Uint8Array> {
    const input = {
      version: plan.version ?? 1,
      dev: plan.dev,
      reason: plan.reason,
      ...(plan.hh === undefined ? {} : { hh: plan.hh }),
      ...(plan.retry === undefined ? {} : { retry: plan.retry }),
    };
    const session = plan.unsigned === true ? undefined : this.#d.sessions.current();
    let bytes: Uint8Array;
    if (session === undefined) {
      bytes = await encodeRejectOf(input, undefined);
    } else {
      try {
        bytes = await encodeRejectOf(input, this.signerOf(session));
      } catch (err) {
        this.#d.log.error('signing a reject failed; sending it unsigned', { conn: conn.id, error: err instanceof Error ? err.message : String(err) });
        bytes = await encodeRejectOf(input, undefined);
      }
    }
    this.record(conn, started, { dev: plan.dev, outcome: 'reject', reason: plan.reason, offline: false, version: plan.version ?? 1, ...(plan.retry === undefined ? {} : { retry: plan.retry }) });
    this.#d.log.info('peripheral rejected', { conn: conn.id, transport: conn.transport, dev: plan.dev, reason: plan.reason });
    return bytes;
  }

  record(conn: IngressConnection, started: number, fields: RecordFields): void {
    this.#d.events.record({
      at: this.#d.clock.now(),
      transport: conn.transport,
      connection: conn.id,
      ...(fields.dev === undefined ? {} : { dev: fields.dev }),
      outcome: fields.outcome,
      ...(fields.reason === undefined ? {} : { reason: fields.reason }),
      latencyMs: Math.max(0, this.#d.elapsed.now() - started),
      offline: fields.offline,
      ...(fields.version === 2 ? { version: 2 as const } : {}),
      remote: conn.remote,
      ...(fields.retry === undefined ? {} : { retry: fields.retry }),
      ...(fields.leaseExp === undefined ? {} : { leaseExp: fields.leaseExp }),
    });
  }
}
