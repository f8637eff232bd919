/**
 * Protocol v2 on the BLE v2 characteristic (protocol-v2 "BLE transport (v2)"): the gateway writes
 * a challenge carrying a fresh `ge`, reassembles the notified hello (1,280-byte bound), writes the
 * welcome or reject, and after a welcome keeps the link up for frames both ways until a `bye`,
 * the session's end, or an idle time without a frame either way.
 *
 * The gateway-side v2 logic (ephemeral keys, the backend's grant, the session keys, receipts)
 * lives behind `V2SessionHost`: this file only moves bytes on the link, bounds the waits and
 * keeps the link's lifetime. The session table of the pipeline is meant to implement it.
 */
import { frameMessage, MAX_FRAMED_MESSAGE_BYTES_V2, Reassembler, type ReasonCode } from '../../../protocol/index.js';
import type { IngressConnection } from '../../pipeline/types.js';
import { BleError } from './errors.js';
import { raceAbort } from './hello-receiver.js';

/** What a host may do with one link. */
export interface V2LinkInfo {
  readonly connection: IngressConnection;
  /** Write one message (a frame, typically) on the link now; resolves when it is written. */
  write(message: Uint8Array): Promise<void>;
}

/** The answer to a hello: the bytes to write, and what they were. */
export interface V2HelloOutcome {
  reply: Uint8Array;
  welcomed?: { dev: string; lifeSeconds: number };
  rejected?: { reason: ReasonCode; retry?: number; dev?: string };
}

/** The answer to a frame from the peripheral. */
export interface V2FrameOutcome {
  /** Frames to write, in order (a receipt, a command, a bye). */
  replies: Uint8Array[];
  /** The session is over once the replies are written (a `bye` either way, 16 drops, `life`). */
  end?: string;
}

/** Why the transport ends an exchange or session. */
export type V2CloseReason = 'idle' | 'shutdown' | 'disconnected' | 'failed' | 'ended';

/** One exchange, then one session, on one link. */
export interface V2Exchange {
  /** The challenge to write first (its `ge` fresh, its `dev` the link label). */
  readonly challenge: Uint8Array;
  onHello(hello: Uint8Array): Promise<V2HelloOutcome>;
  onFrame(frame: Uint8Array): Promise<V2FrameOutcome>;
  /**
   * The link is ending for `reason`: erase the keys. Returns the last frame to write first
   * (`{1:"bye", 13:reason}` for `idle` and `shutdown`) when a session is live, else undefined.
   */
  close(reason: V2CloseReason): Uint8Array | undefined;
}

/** The gateway's v2 logic, per link. */
export interface V2SessionHost {
  beginExchange(link: V2LinkInfo): Promise<V2Exchange>;
}

/** How a v2 link ended. */
export interface V2LinkResult {
  outcome: 'welcome' | 'reject';
  dev?: string;
  reason?: ReasonCode;
  retry?: number;
  /** After a welcome: why the session ended, and how many frames went each way. */
  sessionEnd?: string;
  framesIn: number;
  framesOut: number;
}

export interface V2LinkParams {
  connection: IngressConnection;
  host: V2SessionHost;
  mtu: number;
  signal: AbortSignal;
  idleTimeoutMs: number;
  /** Write one chunk (with response) on the v2 characteristic. */
  writeChunk(chunk: Uint8Array, signal: AbortSignal): Promise<void>;
  /** Subscribe to the v2 characteristic's notifications. */
  subscribe(onValue: (value: Uint8Array) => void): Promise<void>;
  /** Called once the welcome is written: the exchange deadline stops, the idle time applies. */
  onWelcomed(dev: string): void;
}

/** Notified messages, reassembled in order; `next` waits for one (bounded by the caller). */
class Inbox {
  readonly #reassembler: Reassembler;
  readonly #queue: Uint8Array[] = [];
  #waiter: { resolve: (m: Uint8Array) => void; reject: (e: unknown) => void } | undefined;
  #failed: unknown;

  constructor(mtu: number) {
    this.#reassembler = new Reassembler({ mtu, maxMessageBytes: MAX_FRAMED_MESSAGE_BYTES_V2 });
  }

  push = (value: Uint8Array): void => {
    if (this.#failed !== undefined) return;
    try {
      const m = this.#reassembler.push(value);
      if (m === undefined) return;
      if (this.#waiter) {
        this.#waiter.resolve(m);
        this.#waiter = undefined;
      } else if (this.#queue.length < 64) this.#queue.push(m);
      else throw new BleError('GH_BLE_OPERATION_FAILED', 'more than 64 messages waiting on one link');
    } catch (err) {
      // protocol-v1 framing, kept by v2: a gap or an oversize message ends the link.
      this.#failed = err;
      this.#waiter?.reject(err);
      this.#waiter = undefined;
    }
  };

  /** The next message, or undefined when `ms` pass without one. */
  next(ms: number, signal: AbortSignal): Promise<Uint8Array | undefined> {
    if (this.#failed !== undefined) return Promise.reject(this.#failed as Error);
    const queued = this.#queue.shift();
    if (queued) return Promise.resolve(queued);
    return raceAbort(
      new Promise<Uint8Array | undefined>((resolve, reject) => {
        const timer = setTimeout(() => {
          this.#waiter = undefined;
          resolve(undefined);
        }, ms);
        this.#waiter = {
          resolve: (m) => {
            clearTimeout(timer);
            resolve(m);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e as Error);
          },
        };
      }),
      signal,
    );
  }
}

/** Run one v2 exchange and, after a welcome, its session, on a connected link. */
export async function runV2Link(p: V2LinkParams): Promise<V2LinkResult> {
  const inbox = new Inbox(p.mtu);
  let framesOut = 0;
  let lastActivity = Date.now();
  // Writes go one message at a time: chunks of two messages never interleave.
  let writing: Promise<void> = Promise.resolve();
  const write = (message: Uint8Array): Promise<void> => {
    const run = async (): Promise<void> => {
      for (const chunk of frameMessage(message, p.mtu, { maxMessageBytes: MAX_FRAMED_MESSAGE_BYTES_V2 })) await p.writeChunk(chunk, p.signal);
      lastActivity = Date.now();
    };
    const next = writing.then(run, run);
    writing = next.catch(() => undefined);
    return next;
  };
  const sendFrame = async (frame: Uint8Array): Promise<void> => {
    framesOut++;
    await write(frame);
  };
  await p.subscribe(inbox.push);
  const exchange = await raceAbort(p.host.beginExchange({ connection: p.connection, write: sendFrame }), p.signal);
  let live = false;
  try {
    await write(exchange.challenge);
    // The hello: bounded by the exchange deadline (the caller's signal), not by the idle time.
    const hello = await inbox.next(2 ** 31 - 1, p.signal);
    if (hello === undefined) throw new BleError('GH_BLE_TIMEOUT', 'no hello');
    const outcome = await raceAbort(exchange.onHello(hello), p.signal);
    await write(outcome.reply);
    if (!outcome.welcomed) {
      const r: V2LinkResult = { outcome: 'reject', reason: outcome.rejected?.reason ?? 'internal', framesIn: 0, framesOut: 0 };
      if (outcome.rejected?.dev !== undefined) r.dev = outcome.rejected.dev;
      if (outcome.rejected?.retry !== undefined) r.retry = outcome.rejected.retry;
      return r;
    }
    live = true;
    const dev = outcome.welcomed.dev;
    p.onWelcomed(dev);
    lastActivity = Date.now();
    let framesIn = 0;
    for (;;) {
      const wait = Math.max(0, p.idleTimeoutMs - (Date.now() - lastActivity));
      const frame = await inbox.next(wait, p.signal);
      if (frame === undefined) {
        if (Date.now() - lastActivity < p.idleTimeoutMs) continue; // a write moved the idle time on
        live = false;
        const bye = exchange.close('idle');
        if (bye) await sendFrame(bye);
        return { outcome: 'welcome', dev, sessionEnd: 'idle', framesIn, framesOut };
      }
      framesIn++;
      lastActivity = Date.now();
      const r = await raceAbort(exchange.onFrame(frame), p.signal);
      for (const reply of r.replies) await sendFrame(reply);
      if (r.end !== undefined) {
        live = false;
        exchange.close('ended');
        return { outcome: 'welcome', dev, sessionEnd: r.end, framesIn, framesOut };
      }
    }
  } catch (err) {
    if (live) {
      live = false;
      const reason = p.signal.aborted && (p.signal.reason as { code?: string } | undefined)?.code === 'GH_BLE_ABORTED' ? 'shutdown' : 'disconnected';
      const bye = exchange.close(reason);
      if (bye && reason === 'shutdown') await write(bye).catch(() => undefined);
    } else exchange.close('failed');
    throw err;
  }
}
