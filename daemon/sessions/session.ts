/**
 * One protocol-v2 session, gateway side (protocol-v2 "Frames"): the keys, both sequence
 * numbers, the replay window (FrameReceiver), `life`, the first-frame deadline, the drop count
 * and the receipts. Transport-agnostic: bytes go out through `send`, the connection is closed
 * through `close`; the transport hands frames in through `receive`.
 *
 * With a data plane (daemon/uplink/), a `pub` the lease policy allows is offered to the durable
 * queue and settled only once committed (or listed `busy` when the queue has no room), then
 * published on the gateway's broker where configured; an `ack` is settled once recorded. Without
 * one (transport tests), a pub is published locally and receipted at once. Broker messages its
 * `sub` filters grant go out as `msg` frames through its bounded MsgOutbox (msg-relay.ts).
 */
import { anyTopicMatches, FrameReceiver, FrameSender, type ByeReason, type FrameDropCode, type UpFramePayload } from '../../protocol/index.js';
import type { SessionOpening, TransportKind } from '../pipeline/types.js';
import { MsgOutbox, type MsgEnqueueResult, type MsgOutboxCounts } from './msg-outbox.js';
import { longTimeout, monotonicClock, type LongTimer, type TimerClock, type TimerHandle } from '../../common/clock.js';

/** What the durable data plane answers for an offered frame. */
export type DataPlaneAnswer = { stored: true } | { stored: false; retry: number };

/** The data plane as a session sees it (daemon/uplink/data-plane.ts). */
export interface SessionDataPlane {
  /** Queue a pub durably; resolves after the commit, or busy. Never rejects. */
  pub(session: GatewaySessionV2, seq: number, p: { topic: string; body: Uint8Array; mid?: number }): Promise<DataPlaneAnswer>;
  /** Record an ack durably; resolves after the commit. Never rejects. */
  ack(session: GatewaySessionV2, cid: number, status: 'done' | 'failed' | 'refused'): Promise<DataPlaneAnswer>;
  /** Also publish each stored pub on the local broker. */
  readonly publishLocal: boolean;
}

/** Why a session ended: a bye reason G sends, the peer's bye, or the connection closing. */
export type SessionEndReason = ByeReason | 'peer-bye' | 'closed';

/** protocol-v2: a missing seq is settled as `lost` after 5 s. */
export const LOST_AFTER_MS = 5000;

export interface SessionHooks {
  /** Deliver bytes to the connection that owns the session (direct, never a topic fan-out). */
  send(bytes: Uint8Array): Promise<void>;
  /** Close the connection (after a gateway-sent bye). */
  close(): void;
  /** May this session publish `topic` (the lease policy's pub filters, `{dev}` expanded)? */
  pubAllowed(topic: string): boolean;
  /** Hand an allowed pub to the local broker. */
  publishLocal(topic: string, body: Uint8Array): Promise<void>;
  /** The durable queue; absent, pubs are only published locally. */
  dataPlane?: SessionDataPlane;
  /** Told once when the session ends. */
  ended(session: GatewaySessionV2, reason: SessionEndReason): void;
  /** Told of every dropped frame. */
  dropped(session: GatewaySessionV2, code: FrameDropCode): void;
  /** Monotonic milliseconds. */
  now(): number;
  /** Arms the life, first-frame and lost timers (default: real timers); tests inject a clock. */
  timers?: Pick<TimerClock, 'setTimeout' | 'clearTimeout'>;
}

export interface SessionInfo {
  dev: string;
  sid: string;
  version: 2;
  transport: TransportKind;
  connection: string;
  offline: boolean;
  ageMs: number;
  lifeSeconds: number;
  framesIn: number;
  framesOut: number;
  drops: number;
  denied: number;
  /** Pubs stored durably, answered busy; commands relayed. */
  stored: number;
  busy: number;
  commands: number;
  /** msg frames relayed, and broker messages granted but not relayed (queue full, or never sent). */
  msgs: number;
  msgDrops: number;
}

type Settled = 'ok' | 'denied' | 'lost' | 'busy';

export class GatewaySessionV2 {
  readonly dev: string;
  readonly sid: Uint8Array;
  readonly hh: Uint8Array;
  readonly connection: string;
  readonly transport: TransportKind;
  readonly offline: boolean;
  readonly lifeSeconds: number;
  /** The lease policy's `sub` filters (`{dev}` expanded): the broker messages relayed as `msg`. */
  readonly #sub: readonly string[];
  readonly #msgs: MsgOutbox;
  readonly #hooks: SessionHooks;
  readonly #startedAt: number;
  #receiver: FrameReceiver | undefined;
  #sender: FrameSender | undefined;
  readonly #timers: Pick<TimerClock, 'setTimeout' | 'clearTimeout'>;
  #lifeTimer: LongTimer | undefined;
  #idleTimer: TimerHandle | undefined;
  #lostTimer: TimerHandle | undefined;
  #receiptScheduled = false;
  /** Highest seq the last receipt covered (-1: none yet). */
  #upto = -1;
  /** Outcomes of seqs above #upto, not yet receipted. */
  readonly #pending = new Map<number, Settled>();
  /** Seqs found missing, and when (monotonic ms). */
  readonly #missingSince = new Map<number, number>();
  #framesIn = 0;
  #framesOut = 0;
  #denied = 0;
  #stored = 0;
  #busy = 0;
  #commands = 0;
  /** The largest `retry` among the busy seqs not yet receipted. */
  #busyRetry = 0;
  /** Offers to the data plane not yet answered (a peer bye waits for them). */
  readonly #inflight = new Set<Promise<void>>();
  #ended = false;
  #ending = false;

  constructor(opening: SessionOpening, conn: { id: string; transport: TransportKind }, hooks: SessionHooks, firstFrameTimeoutMs: number) {
    this.dev = opening.dev;
    this.sid = opening.sid;
    this.hh = opening.hh;
    this.connection = conn.id;
    this.transport = conn.transport;
    this.offline = opening.offline;
    this.lifeSeconds = opening.lifeSeconds;
    this.#sub = opening.policy.sub;
    this.#msgs = new MsgOutbox((p) => this.#send(p));
    this.#hooks = hooks;
    this.#startedAt = hooks.now();
    this.#receiver = new FrameReceiver({ key: opening.kUp, iv: opening.ivUp, sid: opening.sid }, 'p2g');
    this.#sender = new FrameSender({ key: opening.kDn, iv: opening.ivDn, sid: opening.sid });
    this.#timers = hooks.timers ?? monotonicClock;
    // `life` may exceed what one timer accepts (protocol.maxSessionAgeSec goes up to a year).
    this.#lifeTimer = longTimeout(this.#timers, () => void this.end('expired'), opening.lifeSeconds * 1000);
    this.#idleTimer = this.#timers.setTimeout(() => void this.end('idle'), firstFrameTimeoutMs);
  }

  get ended(): boolean {
    return this.#ended;
  }

  info(): SessionInfo {
    const m = this.#msgs.counts();
    return {
      dev: this.dev,
      sid: Buffer.from(this.sid).toString('hex'),
      version: 2,
      transport: this.transport,
      connection: this.connection,
      offline: this.offline,
      ageMs: Math.max(0, this.#hooks.now() - this.#startedAt),
      lifeSeconds: this.lifeSeconds,
      framesIn: this.#framesIn,
      framesOut: this.#framesOut,
      drops: this.#receiver?.drops ?? 0,
      denied: this.#denied,
      stored: this.#stored,
      busy: this.#busy,
      commands: this.#commands,
      msgs: m.relayed,
      msgDrops: m.full + m.unsent,
    };
  }

  /** The msg counters of this session. */
  get msgCounts(): MsgOutboxCounts {
    return this.#msgs.counts();
  }

  /** A frame from the owning connection. Drops are counted and never answered. */
  receive(bytes: Uint8Array): void {
    const rx = this.#receiver;
    if (rx === undefined || this.#ended) return;
    const r = rx.open(bytes);
    if (r.kind === 'drop') {
      this.#hooks.dropped(this, r.code);
      // protocol-v2: after 16 dropped frames the receiver ends the session.
      if (r.limitReached) void this.end('malformed');
      return;
    }
    // A frame that decrypts proves the keys: the first-frame deadline is met.
    this.#clear(this.#idleTimer);
    this.#idleTimer = undefined;
    this.#framesIn += 1;
    this.#missingSince.delete(r.seq);
    if (r.kind === 'denied') {
      // Decrypted, so its seq is consumed; its plaintext is not a frame payload: denied.
      this.#denied += 1;
      this.#settle(r.seq, 'denied');
      return;
    }
    this.#frame(r.seq, r.payload as UpFramePayload);
  }

  #frame(seq: number, p: UpFramePayload): void {
    switch (p.type) {
      case 'pub':
        if (!this.#hooks.pubAllowed(p.topic)) {
          this.#denied += 1;
          this.#settle(seq, 'denied');
          return;
        }
        if (this.#hooks.dataPlane !== undefined) {
          this.#track(this.#storePub(this.#hooks.dataPlane, seq, p));
          return;
        }
        this.#hooks.publishLocal(p.topic, p.body).then(
          () => this.#settle(seq, 'ok'),
          () => this.#settle(seq, 'lost'),
        );
        return;
      case 'ack':
        if (this.#hooks.dataPlane !== undefined) {
          // protocol-v2: an ack is settled once recorded durably; acks are always taken.
          this.#track(this.#hooks.dataPlane.ack(this, p.cid, p.status).then((r) => this.#settle(seq, r.stored ? 'ok' : 'lost')));
          return;
        }
        this.#settle(seq, 'ok');
        return;
      case 'ping':
        this.#settle(seq, 'ok');
        return;
      case 'bye':
        this.#pending.set(seq, 'ok');
        void this.#peerBye(seq);
        return;
    }
  }

  #track(p: Promise<void>): void {
    this.#inflight.add(p);
    void p.finally(() => this.#inflight.delete(p));
  }

  async #storePub(dp: SessionDataPlane, seq: number, p: { topic: string; body: Uint8Array; mid?: number }): Promise<void> {
    const r = await dp.pub(this, seq, p);
    if (!r.stored) {
      this.#busy += 1;
      this.#busyRetry = Math.max(this.#busyRetry, r.retry);
      this.#settle(seq, 'busy');
      return;
    }
    this.#stored += 1;
    this.#settle(seq, 'ok');
    // The local copy is a convenience for local subscribers: its failure does not unsettle the pub.
    if (dp.publishLocal) this.#hooks.publishLocal(p.topic, p.body).catch(() => undefined);
  }

  /**
   * Relay a command (protocol-v2 "cmd": the backend's bytes unchanged). False when the session
   * has ended or the frame could not be handed to the connection.
   */
  async sendCommand(cmd: Uint8Array): Promise<boolean> {
    if (this.#ended || this.#sender === undefined) return false;
    this.#commands += 1;
    return this.#send({ type: 'cmd', cmd });
  }

  /** protocol-v2 "msg": does the lease policy's `sub` grant `topic`? */
  msgGranted(topic: string): boolean {
    return anyTopicMatches(this.#sub, topic);
  }

  /** Queue a broker message as a `msg` frame, never waiting (msg-outbox.ts); the relay checked it. */
  queueMsg(topic: string, body: Uint8Array, maxQueued: number): MsgEnqueueResult {
    if (this.#ended) return 'ended';
    return this.#msgs.enqueue(topic, body, maxQueued);
  }

  #settle(seq: number, how: Settled): void {
    if (this.#ended) return;
    this.#pending.set(seq, how);
    // protocol-v2: a receipt at most 100 ms after settling; batch what one turn settles.
    if (!this.#receiptScheduled) {
      this.#receiptScheduled = true;
      setImmediate(() => {
        this.#receiptScheduled = false;
        void this.#sendReceipt();
      });
    }
  }

  /** The receipt for everything settled contiguously above the last upto; gaps wait 5 s, then are lost. */
  async #sendReceipt(lostNow = false): Promise<void> {
    if (this.#ended || this.#sender === undefined) return;
    const now = this.#hooks.now();
    const highest = Math.max(...this.#pending.keys(), this.#upto);
    for (let s = this.#upto + 1; s < highest; s++) {
      if (this.#pending.has(s)) continue;
      const since = this.#missingSince.get(s) ?? now;
      this.#missingSince.set(s, since);
      if (lostNow || now - since >= LOST_AFTER_MS) {
        this.#receiver?.settleLost(s);
        this.#missingSince.delete(s);
        this.#pending.set(s, 'lost');
      }
    }
    let upto = this.#upto;
    while (this.#pending.has(upto + 1)) upto += 1;
    if (upto > this.#upto) {
      const denied: number[] = [];
      const lost: number[] = [];
      const busy: number[] = [];
      for (let s = this.#upto + 1; s <= upto; s++) {
        const how = this.#pending.get(s);
        this.#pending.delete(s);
        if (how === 'denied') denied.push(s);
        else if (how === 'lost') lost.push(s);
        else if (how === 'busy') busy.push(s);
      }
      this.#upto = upto;
      const retry = this.#busyRetry;
      if (busy.length > 0) this.#busyRetry = 0;
      await this.#send({
        type: 'receipt',
        upto,
        ...(denied.length > 0 ? { denied } : {}),
        ...(busy.length > 0 ? { busy, retry } : {}),
        ...(lost.length > 0 ? { lost } : {}),
      });
    }
    this.#armLostTimer();
  }

  #armLostTimer(): void {
    this.#clear(this.#lostTimer);
    this.#lostTimer = undefined;
    if (this.#missingSince.size === 0 || this.#ended) return;
    const oldest = Math.min(...this.#missingSince.values());
    this.#lostTimer = this.#timers.setTimeout(() => void this.#sendReceipt(), Math.max(0, oldest + LOST_AFTER_MS - this.#hooks.now()));
  }

  async #send(p: Parameters<FrameSender['seal']>[0]): Promise<boolean> {
    const tx = this.#sender;
    if (tx === undefined) return false;
    if (tx.exhausted) {
      // protocol-v2: a sender whose seq would pass 2^40 − 1 ends the session.
      this.#finish('malformed');
      this.#hooks.close();
      return false;
    }
    const { bytes } = tx.seal(p);
    this.#framesOut += 1;
    try {
      await this.#hooks.send(bytes);
      return true;
    } catch {
      // The connection is gone; its close ends the session.
      return false;
    }
  }

  /** protocol-v2: before erasing the keys on P's bye, send the receipt covering every frame before it. */
  async #peerBye(seq: number): Promise<void> {
    // Frames before the bye that are being committed are settled by their commit, not as lost.
    await Promise.all([...this.#inflight]);
    for (let s = this.#upto + 1; s < seq; s++) if (!this.#pending.has(s)) this.#missingSince.set(s, 0);
    await this.#sendReceipt(true);
    this.#finish('peer-bye');
  }

  /**
   * Ends the session. A gateway reason sends `{bye, reason}` and then closes the connection,
   * unless `keepConnection` (protocol-v2: a challenge-request from the owning connection ends its
   * session with `bye replaced` and the connection stays open for the new exchange);
   * `closed` (the connection is gone) and `peer-bye` only erase the keys.
   */
  async end(reason: SessionEndReason, o: { keepConnection?: boolean } = {}): Promise<void> {
    if (this.#ended || this.#ending) return;
    this.#ending = true;
    if (reason !== 'closed' && reason !== 'peer-bye') {
      await this.#send({ type: 'bye', reason });
      this.#finish(reason);
      if (o.keepConnection !== true) this.#hooks.close();
      return;
    }
    this.#finish(reason);
  }

  #finish(reason: SessionEndReason): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#lifeTimer?.cancel();
    this.#clear(this.#idleTimer);
    this.#clear(this.#lostTimer);
    // Erase the keys: the receiver and sender hold the only references.
    this.#receiver = undefined;
    this.#sender = undefined;
    this.#msgs.close();
    this.#pending.clear();
    this.#missingSince.clear();
    this.#hooks.ended(this, reason);
  }

  #clear(handle: TimerHandle | undefined): void {
    if (handle !== undefined) this.#timers.clearTimeout(handle);
  }
}
