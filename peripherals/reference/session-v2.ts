/**
 * The reference peripheral for protocol v2, without any transport: it asks for a challenge,
 * answers it with a hello carrying a fresh ephemeral X25519 key, checks the welcome (protocol-v2
 * "Peripheral checks on a v2 welcome"), derives the session keys and then speaks frames: it seals
 * pub, ack, ping and bye, opens the gateway's frames with the replay window and the 16-drop
 * rule, tracks receipts (what is settled, denied, busy or lost, and so what to resend), and
 * checks commands against the backend's key, persisting the last cid and its status.
 * Every refusal carries a stable GH_ code.
 */
import type { KeyObject } from 'node:crypto';
import { decodeDownMessage, isValidId, ProtocolError, randomNonce, type ReasonCode, type Signer } from '../../protocol/index.js';
import {
  checkCommand,
  checkWelcomeV2,
  decodeChallengeV2,
  decodeDownMessageV2,
  deriveSessionKeys,
  directionKeys,
  encodeChallengeRequestV2,
  FrameReceiver,
  FrameSender,
  generateX25519KeyPair,
  signHelloV2,
  wipeIntermediates,
  type ByeReason,
  type Command,
  type LastCommand,
  type ReceiptFrame,
  type UpFramePayload,
  type X25519KeyPair,
} from '../../protocol/index.js';
import type { CommandStore } from './command-store.js';

export interface ReferencePeripheralV2Options {
  dev: string;
  /** The device key; its kid must be `dev`. */
  signer: Signer;
  /** The device's own Ed25519 public key (an offline welcome's lease must name it). */
  devicePublicKey: Uint8Array;
  /** Pinned (kid_S → pk_S) pairs. */
  backendKeys: ReadonlyMap<string, Uint8Array>;
  /** Where the last command acted on is kept across restarts. */
  commandStore: CommandStore;
  /** Unix seconds, if this peripheral has a clock. */
  clock?: () => number;
  /** Monotonic milliseconds for the session's life and busy timers (default performance.now). */
  monotonic?: () => number;
  /** Offline welcomes: default allowed with a clock, refused without (protocol-v2 check 3). */
  allowOffline?: boolean;
  /** This peripheral's own maximum session age (default 86,400 s). */
  maxLifeSeconds?: number;
  /** Source of pn (injected for reproducible tests). */
  random?: (n: number) => Uint8Array;
  /** Source of the ephemeral key pair (injected only for test vectors). */
  ephemeral?: () => X25519KeyPair;
}

export type PeripheralV2Event =
  | { kind: 'challenge'; gw: string }
  | { kind: 'established'; session: PeripheralSessionV2 }
  | { kind: 'welcome-refused'; check: number; code: string; detail: string }
  | { kind: 'rejected'; reason: ReasonCode; retryAfterSeconds: number; signed: boolean }
  | { kind: 'ignored'; code: string; detail: string };

export class ReferencePeripheralV2 {
  readonly dev: string;
  private readonly opts: ReferencePeripheralV2Options;
  private readonly monotonic: () => number;
  private sentHello: Uint8Array | undefined;
  /** The peripheral's ephemeral private key, held for one exchange only. */
  private pePrivate: KeyObject | undefined;
  private current: PeripheralSessionV2 | undefined;

  constructor(opts: ReferencePeripheralV2Options) {
    if (!isValidId(opts.dev) || opts.signer.kid !== opts.dev) {
      throw new ProtocolError('GH_PERIPHERAL_BAD_DEV', 'internal', 'dev must be an id and the signer kid must equal it');
    }
    this.dev = opts.dev;
    this.opts = opts;
    this.monotonic = opts.monotonic ?? (() => performance.now());
  }

  /** The live session, if any. */
  get session(): PeripheralSessionV2 | undefined {
    return this.current?.ended === false ? this.current : undefined;
  }

  /** Whether an ephemeral private key is held (only between hello and welcome). */
  get holdsEphemeralKey(): boolean {
    return this.pePrivate !== undefined;
  }

  challengeRequest(): Uint8Array {
    return encodeChallengeRequestV2({ type: 'challenge-request', version: 2, dev: this.dev });
  }

  /** Answer a challenge with a v2 hello; `transport: 'ble'` ignores the challenge's dev (a link label). */
  async hello(challengeBytes: Uint8Array, opts: { transport?: 'mqtt' | 'ble' } = {}): Promise<Uint8Array> {
    const ch = decodeChallengeV2(challengeBytes);
    if ((opts.transport ?? 'mqtt') === 'mqtt' && ch.dev !== this.dev) {
      throw new ProtocolError('GH_PERIPHERAL_WRONG_DEV', 'malformed', `challenge is for ${JSON.stringify(ch.dev)}, not ${JSON.stringify(this.dev)}`);
    }
    const pair = (this.opts.ephemeral ?? generateX25519KeyPair)();
    const pn = (this.opts.random ?? randomNonce)(16);
    // P copies gw and ge from the challenge; it cannot check them (S and the grant do).
    const bytes = await signHelloV2({ type: 'hello', version: 2, dev: this.dev, pn, gn: ch.gn, gw: ch.gw, ge: ch.ge, pe: pair.publicKey }, this.opts.signer);
    this.pePrivate = pair.privateKey;
    this.sentHello = bytes;
    return bytes;
  }

  /** A challenge, welcome or reject from the gateway (frames go to the session). */
  receive(bytes: Uint8Array): PeripheralV2Event {
    let msg;
    try {
      msg = decodeDownMessageV2(bytes);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      return this.versionMismatch(bytes) ?? { kind: 'ignored', code: e.code, detail: e.message };
    }
    switch (msg.type) {
      case 'challenge':
        return { kind: 'challenge', gw: msg.message.gw };
      case 'reject':
        // A reject is advisory only: it may be forged.
        return { kind: 'rejected', reason: msg.message.reason, retryAfterSeconds: msg.message.retry ?? 30, signed: msg.signed !== null };
      case 'frame':
        return { kind: 'ignored', code: 'GH_PERIPHERAL_NO_SESSION', detail: 'a frame outside a session' };
      case 'welcome':
        return this.welcome(bytes);
    }
  }

  private versionMismatch(bytes: Uint8Array): PeripheralV2Event | undefined {
    try {
      const m = decodeDownMessage(bytes);
      if (m.type === 'reject') return { kind: 'rejected', reason: m.message.reason, retryAfterSeconds: m.message.retry ?? 30, signed: m.signed !== null };
    } catch {
      // not a v1 reject either
    }
    return undefined;
  }

  private welcome(bytes: Uint8Array): PeripheralV2Event {
    const hello = this.sentHello;
    const pe = this.pePrivate;
    if (hello === undefined || pe === undefined) return { kind: 'ignored', code: 'GH_PERIPHERAL_NO_HELLO', detail: 'a welcome without an outstanding hello' };
    // Whatever the outcome, this exchange is over: erase pe (protocol-v2 "Hello").
    this.pePrivate = undefined;
    this.sentHello = undefined;
    const now = this.opts.clock?.();
    const r = checkWelcomeV2(bytes, {
      backendKeys: this.opts.backendKeys,
      dev: this.dev,
      devicePublicKey: this.opts.devicePublicKey,
      helloBytes: hello,
      ...(now === undefined ? {} : { now }),
      ...(this.opts.allowOffline === undefined ? {} : { allowOffline: this.opts.allowOffline }),
      ...(this.opts.maxLifeSeconds === undefined ? {} : { maxLifeSeconds: this.opts.maxLifeSeconds }),
    });
    if (!r.ok) return { kind: 'welcome-refused', check: r.check, code: r.code, detail: r.detail };
    const keys = deriveSessionKeys({ privateKey: pe, peerPublic: r.hello.ge, hh: r.welcome.hh, dev: this.dev, gw: r.welcome.gw });
    wipeIntermediates(keys);
    this.current?.end();
    this.current = new PeripheralSessionV2({
      dev: this.dev,
      gw: r.welcome.gw,
      hh: r.welcome.hh,
      mode: r.mode,
      lifeSeconds: r.lifeSeconds,
      sender: new FrameSender(directionKeys(keys, 'p2g')),
      receiver: new FrameReceiver(directionKeys(keys, 'g2p'), 'g2p'),
      sid: keys.sid,
      monotonic: this.monotonic,
      checkCommand: (cmd) => this.checkCommand(cmd, r.welcome.hh),
      commandStore: this.opts.commandStore,
    });
    return { kind: 'established', session: this.current };
  }

  private async checkCommand(bytes: Uint8Array, hh: Uint8Array): Promise<ReturnType<typeof checkCommand>> {
    const last = await this.opts.commandStore.load();
    const now = this.opts.clock?.();
    return checkCommand(bytes, { backendKeys: this.opts.backendKeys, dev: this.dev, hh, ...(last === undefined ? {} : { last }), ...(now === undefined ? {} : { now }) });
  }
}

/** What the peripheral sent and no receipt has settled yet. */
export type SentContent = UpFramePayload;

/** What a G→P frame meant. */
export type SessionEvent =
  | { kind: 'drop'; code: string; detail: string }
  | { kind: 'denied'; seq: number; code: string; detail: string }
  | { kind: 'receipt'; settled: number[]; denied: number[]; resend: SentContent[]; busyRetrySeconds?: number }
  | { kind: 'receipt-refused'; code: 'GH_SESSION_BAD_RECEIPT'; detail: string }
  /** A broker message the session's `sub` policy grants, relayed by the gateway (`seq`: its frame's). */
  | { kind: 'msg'; seq: number; topic: string; body: Uint8Array }
  /** Act on it, then call `answer` with done or failed: it persists the outcome and seals the ack. */
  | { kind: 'command'; command: Command; answer: (status: 'done' | 'failed') => Promise<Uint8Array> }
  /** Not acted on; `ack` is the answer to send (stored status, or refused with a code). */
  | { kind: 'command-answered'; cid: number; status: 'done' | 'failed' | 'refused'; code?: string; detail?: string; ack: Uint8Array }
  | { kind: 'ping' }
  /** The session is over; `bye` is the frame to send when this side ended it. */
  | { kind: 'ended'; reason: ByeReason | 'peer-bye'; bye?: Uint8Array };

interface SessionParts {
  dev: string;
  gw: string;
  hh: Uint8Array;
  sid: Uint8Array;
  mode: 'online' | 'offline';
  lifeSeconds: number;
  sender: FrameSender;
  receiver: FrameReceiver;
  monotonic: () => number;
  checkCommand: (bytes: Uint8Array) => Promise<ReturnType<typeof checkCommand>>;
  commandStore: CommandStore;
}

/** One v2 session, peripheral side. */
export class PeripheralSessionV2 {
  readonly dev: string;
  readonly gw: string;
  readonly hh: Uint8Array;
  readonly sid: Uint8Array;
  readonly mode: 'online' | 'offline';
  readonly lifeSeconds: number;
  private sender: FrameSender | undefined;
  private receiver: FrameReceiver | undefined;
  private readonly endsAt: number;
  private readonly parts: SessionParts;
  private readonly outstanding = new Map<number, SentContent>();
  private lastUpto = -1;
  private busyUntil = 0;

  constructor(parts: SessionParts) {
    this.parts = parts;
    this.dev = parts.dev;
    this.gw = parts.gw;
    this.hh = parts.hh;
    this.sid = parts.sid;
    this.mode = parts.mode;
    this.lifeSeconds = parts.lifeSeconds;
    this.sender = parts.sender;
    this.receiver = parts.receiver;
    this.endsAt = parts.monotonic() + parts.lifeSeconds * 1000;
  }

  get ended(): boolean {
    return this.sender === undefined;
  }

  /** Seqs sent and not yet settled by a receipt. */
  get unsettled(): number[] {
    return [...this.outstanding.keys()];
  }

  /** Erase the keys. */
  end(): void {
    this.sender = undefined;
    this.receiver = undefined;
    this.outstanding.clear();
  }

  private seal(p: UpFramePayload): Uint8Array {
    if (this.sender === undefined) throw new ProtocolError('GH_SESSION_ENDED', 'internal', 'the session has ended');
    if (this.sender.exhausted) {
      this.end();
      throw new ProtocolError('GH_SESSION_ENDED', 'internal', 'seq would pass 2^40 - 1: the session has ended');
    }
    const { seq, bytes } = this.sender.seal(p);
    this.outstanding.set(seq, p);
    return bytes;
  }

  /** Telemetry. Refused with `GH_SESSION_BUSY` until a busy receipt's retry has passed. */
  sealPub(topic: string, body: Uint8Array, mid?: number): Uint8Array {
    if (this.parts.monotonic() < this.busyUntil) throw new ProtocolError('GH_SESSION_BUSY', 'busy', 'the gateway is out of room: no pub before retry has passed');
    return this.seal(mid === undefined ? { type: 'pub', topic, body } : { type: 'pub', topic, body, mid });
  }

  sealAck(cid: number, status: 'done' | 'failed' | 'refused'): Uint8Array {
    return this.seal({ type: 'ack', cid, status });
  }

  sealPing(): Uint8Array {
    return this.seal({ type: 'ping' });
  }

  /** End the session with a bye (reason optional); the keys are erased after sealing it. */
  sealBye(reason?: ByeReason): Uint8Array {
    const b = this.seal(reason === undefined ? { type: 'bye' } : { type: 'bye', reason });
    this.end();
    return b;
  }

  /** The bye to send when the session's life is over (protocol-v2 check 4), else undefined. */
  checkLife(): Uint8Array | undefined {
    if (this.ended || this.parts.monotonic() < this.endsAt) return undefined;
    return this.sealBye('expired');
  }

  /** Open a G→P frame. */
  async open(bytes: Uint8Array): Promise<SessionEvent> {
    const rx = this.receiver;
    if (rx === undefined) return { kind: 'drop', code: 'GH_SESSION_ENDED', detail: 'the session has ended' };
    const r = rx.open(bytes);
    if (r.kind === 'drop') {
      // protocol-v2: after 16 dropped frames the receiver ends the session (bye, malformed).
      if (r.limitReached) return { kind: 'ended', reason: 'malformed', bye: this.sealBye('malformed') };
      return { kind: 'drop', code: r.code, detail: r.detail };
    }
    if (r.kind === 'denied') return { kind: 'denied', seq: r.seq, code: r.error.code, detail: r.error.message };
    const p = r.payload;
    switch (p.type) {
      case 'receipt':
        return this.receipt(p);
      case 'msg':
        // protocol-v2: vouched for by G only, never a command: the body is data for the
        // application, never checked, stored or acked as a command, whatever it holds.
        return { kind: 'msg', seq: r.seq, topic: p.topic, body: p.body };
      case 'ping':
        return { kind: 'ping' };
      case 'bye':
        this.end();
        return { kind: 'ended', reason: p.reason ?? 'peer-bye' };
      case 'cmd':
        return this.command(p.cmd);
      default:
        return { kind: 'denied', seq: r.seq, code: 'GH_FRAME_WRONG_DIRECTION', detail: `a ${p.type} frame from the gateway` };
    }
  }

  private receipt(p: ReceiptFrame): SessionEvent {
    const sentUpTo = (this.sender?.nextSeq ?? 0) - 1;
    const lists = [...(p.denied ?? []), ...(p.busy ?? []), ...(p.lost ?? [])];
    // protocol-v2: lists name only seqs above the previous receipt's upto; nothing not yet sent.
    if (p.upto < this.lastUpto || p.upto > sentUpTo || lists.some((s) => s <= this.lastUpto)) {
      return { kind: 'receipt-refused', code: 'GH_SESSION_BAD_RECEIPT', detail: `receipt upto ${p.upto} with lists ${JSON.stringify(lists)} after upto ${this.lastUpto}, ${sentUpTo + 1} frames sent` };
    }
    this.lastUpto = p.upto;
    const denied = new Set(p.denied ?? []);
    const again = new Set([...(p.busy ?? []), ...(p.lost ?? [])]);
    const settled: number[] = [];
    const refused: number[] = [];
    const resend: SentContent[] = [];
    for (const [seq, content] of [...this.outstanding]) {
      if (seq > p.upto) continue;
      this.outstanding.delete(seq);
      if (denied.has(seq)) refused.push(seq);
      // Busy or lost: the content goes again in a new frame (a ping or bye has nothing to resend).
      else if (again.has(seq)) {
        if (content.type === 'pub' || content.type === 'ack') resend.push(content);
      } else settled.push(seq);
    }
    if (p.retry !== undefined) this.busyUntil = this.parts.monotonic() + p.retry * 1000;
    return { kind: 'receipt', settled, denied: refused, resend, ...(p.retry === undefined ? {} : { busyRetrySeconds: p.retry }) };
  }

  private async command(bytes: Uint8Array): Promise<SessionEvent> {
    const r = await this.parts.checkCommand(bytes);
    if (r.action === 'repeat') return { kind: 'command-answered', cid: r.cid, status: r.status, ack: this.sealAck(r.cid, r.status) };
    if (r.action === 'refuse') return { kind: 'command-answered', cid: r.cid, status: 'refused', code: r.code, detail: r.detail, ack: this.sealAck(r.cid, 'refused') };
    const command = r.command;
    return {
      kind: 'command',
      command,
      answer: async (status) => {
        const last: LastCommand = { cid: command.cid, status };
        // Durable before the ack: a restart must not act on this cid again.
        await this.parts.commandStore.save(last);
        return this.sealAck(command.cid, status);
      },
    };
  }
}
