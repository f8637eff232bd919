/**
 * Protocol v2 on the BLE v2 characteristic (protocol-v2 "BLE transport (v2)"): the gateway writes
 * a challenge carrying a fresh `ge`, reassembles the notified hello (1,280-byte bound), writes the
 * welcome or reject, and after a welcome keeps the link up for frames both ways until a `bye`,
 * the session's end, or an idle time without a frame either way.
 *
 * The gateway-side v2 logic (ephemeral keys, the backend's grant, the session keys, receipts)
 * lives behind `V2SessionHost`: this file only moves bytes on the link, bounds the waits and
 * keeps the link's lifetime. The daemon's host is session-host.ts (the pipeline and the
 * gateway's one session table).
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
  /**
   * The session ended on the host's side (its last frame, if any, already written through
   * `write`): the link closes, the session's end reported as `reason`.
   */
  end(reason: string): void;
}

/** The answer to a hello: the bytes to write, and what they were. */
export interface V2HelloOutcome {
  reply: Uint8Array;
  welcomed?: { dev: string; lifeSeconds: number };
  rejected?: { reason: ReasonCode; retry?: number; dev?: string };
}

/** Why the transport ends an exchange or session. */
export type V2CloseReason = 'idle' | 'shutdown' | 'disconnected' | 'failed' | 'ended';

/** One exchange, then one session, on one link. */
export interface V2Exchange {
  /** The challenge to write first (its `ge` fresh, its `dev` the link label), or a reject. */
  readonly challenge: Uint8Array;
  /** Set when `challenge` is a reject (rate-limited, busy): the link ends once it is written. */
  readonly refused?: { reason: ReasonCode; retry?: number };
  onHello(hello: Uint8Array): Promise<V2HelloOutcome>;
  /** The welcome is written: the session starts (frames may go both ways from now on). */
  opened(): Promise<void>;
  /** A frame from the peripheral; the host answers through `write` and ends through `end`. */
  onFrame(frame: Uint8Array): void;
  /**
   * The link is ending for `reason`: erase the keys. A live session's last frame
   * (`{1:"bye", 13:reason}` for `idle` and `shutdown`) is written through `write` first.
   */
  close(reason: V2CloseReason): Promise<void>;
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
  #waiter: { resolve: (m: Uint8Array | undefined) => void; reject: (e: unknown) => void } | undefined;
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

  /** A waiting `next` answers undefined now (the host ended the session). */
  wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.resolve(undefined);
  }

  /** The next message, or undefined when `ms` pass without one (or on `wake`). */
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

/** How long the writes of a stopping transport may go on: the one in flight, then `bye shutdown`. */
const SHUTDOWN_BYE_MS = 1_000;

function isShutdown(signal: AbortSignal): boolean {
  return signal.aborted && (signal.reason as { code?: string } | undefined)?.code === 'GH_BLE_ABORTED';
}

/** Run one v2 exchange and, after a welcome, its session, on a connected link. */
export async function runV2Link(p: V2LinkParams): Promise<V2LinkResult> {
  // Writes stop with the link's signal, except on a shutdown: then the write in flight completes
  // (noble matches write answers to requests in order, so abandoning one would hand its answer to
  // the next) and `bye shutdown` follows, both within SHUTDOWN_BYE_MS.
  const writes = new AbortController();
  let grace: NodeJS.Timeout | undefined;
  const onAbort = (): void => {
    if (isShutdown(p.signal)) grace = setTimeout(() => writes.abort(p.signal.reason), SHUTDOWN_BYE_MS);
    else writes.abort(p.signal.reason);
  };
  if (p.signal.aborted) onAbort();
  else p.signal.addEventListener('abort', onAbort, { once: true });
  try {
    return await runLink(p, writes.signal);
  } finally {
    p.signal.removeEventListener('abort', onAbort);
    clearTimeout(grace);
    writes.abort(new BleError('GH_BLE_ABORTED', 'link ended'));
  }
}

async function runLink(p: V2LinkParams, writeSignal: AbortSignal): Promise<V2LinkResult> {
  const inbox = new Inbox(p.mtu);
  let framesOut = 0;
  let lastActivity = Date.now();
  // Writes go one message at a time: chunks of two messages never interleave.
  let writing: Promise<void> = Promise.resolve();
  const write = (message: Uint8Array): Promise<void> => {
    const run = async (): Promise<void> => {
      for (const chunk of frameMessage(message, p.mtu, { maxMessageBytes: MAX_FRAMED_MESSAGE_BYTES_V2 })) await p.writeChunk(chunk, writeSignal);
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
  let ended: string | undefined;
  const end = (reason: string): void => {
    if (ended !== undefined) return;
    ended = reason;
    inbox.wake();
  };
  await p.subscribe(inbox.push);
  const exchange = await raceAbort(p.host.beginExchange({ connection: p.connection, write: sendFrame, end }), p.signal);
  let live = false;
  try {
    await write(exchange.challenge);
    if (exchange.refused !== undefined) {
      await exchange.close('failed');
      return { outcome: 'reject', reason: exchange.refused.reason, ...(exchange.refused.retry === undefined ? {} : { retry: exchange.refused.retry }), framesIn: 0, framesOut: 0 };
    }
    // The hello: bounded by the exchange deadline (the caller's signal), not by the idle time.
    const hello = await inbox.next(2 ** 31 - 1, p.signal);
    if (hello === undefined) throw new BleError('GH_BLE_TIMEOUT', 'no hello');
    const outcome = await raceAbort(exchange.onHello(hello), p.signal);
    await write(outcome.reply);
    if (!outcome.welcomed) {
      await exchange.close('failed');
      const r: V2LinkResult = { outcome: 'reject', reason: outcome.rejected?.reason ?? 'internal', framesIn: 0, framesOut: 0 };
      if (outcome.rejected?.dev !== undefined) r.dev = outcome.rejected.dev;
      if (outcome.rejected?.retry !== undefined) r.retry = outcome.rejected.retry;
      return r;
    }
    live = true;
    const dev = outcome.welcomed.dev;
    p.onWelcomed(dev);
    await raceAbort(exchange.opened(), p.signal);
    lastActivity = Date.now();
    let framesIn = 0;
    for (;;) {
      if (ended !== undefined) {
        live = false;
        await exchange.close('ended');
        return { outcome: 'welcome', dev, sessionEnd: ended, framesIn, framesOut };
      }
      const wait = Math.max(0, p.idleTimeoutMs - (Date.now() - lastActivity));
      const frame = await inbox.next(wait, p.signal);
      if (frame === undefined) {
        // The host ended the session, or a write moved the idle time on.
        if (ended !== undefined || Date.now() - lastActivity < p.idleTimeoutMs) continue;
        live = false;
        await exchange.close('idle');
        return { outcome: 'welcome', dev, sessionEnd: 'idle', framesIn, framesOut };
      }
      framesIn++;
      lastActivity = Date.now();
      exchange.onFrame(frame);
    }
  } catch (err) {
    if (live) {
      live = false;
      await exchange.close(isShutdown(p.signal) ? 'shutdown' : 'disconnected').catch(() => undefined);
    } else await exchange.close('failed').catch(() => undefined);
    throw err;
  }
}
