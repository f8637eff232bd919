/**
 * Downstream commands (protocol-v2 "Commands"): long-polls `GET /v1/gateways/{gw}/commands`
 * with the cursor persisted in `uplink.db`, holds at most `maxPerDevice` commands per device
 * (persisted with the cursor, until `exp`), and relays each as a `cmd` frame on the device's live
 * session whose `hh` the command names — never to a device without a v2 session, never after
 * `exp`, never on a session welcomed offline. At most one unacknowledged command per device; with
 * no ack after `resendMs`, the same command goes again in a new frame.
 */
import type { Logger } from 'winston';
import { bytesEqual, parseCommand, verifySign1 } from '../../protocol/index.js';
import { backoffMs, type TimerHandle } from '../../common/clock.js';
import { loopParts, type Doze, type UplinkLoopOptions } from './doze.js';
import type { CircuitBreaker } from '../backend-client/breaker.js';
import { acquireSession } from '../backend-client/session-calls.js';
import { BackendError } from '../backend-client/errors.js';
import { badField, exactKeys, expectJson, isObject, signedRequest } from '../backend-client/wire.js';
import type { GatewaySessionV2 } from '../sessions/session.js';
import type { QueueStore } from './queue-store.js';

const CURSOR_KEY = 'commands.cursor';
/** protocol-v2: the long poll waits at most 30 s. */
export const MAX_WAIT_SEC = 30;
/** A command is at most 1,200 bytes (protocol-v2 "Sizes"); base64url of that. */
const MAX_COMMAND_B64 = 1600;

export interface CommandRelaySettings {
  /** Long-poll `wait`, seconds (≤ 30). */
  waitSec: number;
  /** Commands held per device; further ones are refused until some are acknowledged. */
  maxPerDevice: number;
  /** protocol-v2: resend after 30 s without an ack. */
  resendMs: number;
}

export interface CommandRelayOptions extends CommandRelaySettings, UplinkLoopOptions {
  backendKeys: ReadonlyMap<string, Uint8Array>;
  store: QueueStore;
  /** The live session of a device. */
  sessionOf(dev: string): GatewaySessionV2 | undefined;
  /** Live v2 sessions on all transports: with none, there is nobody to relay to and the poll rests. */
  liveSessions(): number;
}

interface Held {
  dev: string;
  cid: number;
  bytes: Uint8Array;
  hh: Uint8Array;
  /** Unix seconds. */
  exp: number;
}

interface Outstanding {
  cid: number;
  session: GatewaySessionV2;
  timer: TimerHandle;
}

export interface CommandStats {
  /** Held for devices, not yet acknowledged. */
  pending: number;
  received: number;
  relayed: number;
  acked: number;
  expired: number;
  refused: number;
  polls: number;
  cursor: number;
}

/** The commands answer: `{cursor, commands: [{dev, cid, command}]}`. */
export function readCommandsAnswer(json: unknown): { cursor: number; commands: { dev: string; cid: number; command: Uint8Array }[] } {
  if (!isObject(json)) badField('commands answer is not an object');
  exactKeys(json, ['cursor', 'commands'], 'commands answer');
  const { cursor, commands } = json;
  if (!Number.isSafeInteger(cursor) || (cursor as number) < 0) badField('commands cursor is not a non-negative integer');
  if (!Array.isArray(commands) || commands.length > 1024) badField('commands is not an array of at most 1024');
  return {
    cursor: cursor as number,
    commands: commands.map((c: unknown) => {
      if (!isObject(c)) badField('a command entry is not an object');
      exactKeys(c, ['dev', 'cid', 'command'], 'command entry');
      if (typeof c.dev !== 'string' || !Number.isSafeInteger(c.cid) || typeof c.command !== 'string' || c.command.length > MAX_COMMAND_B64 || !/^[A-Za-z0-9_-]*$/.test(c.command)) badField('a command entry has a bad field');
      return { dev: c.dev, cid: c.cid as number, command: new Uint8Array(Buffer.from(c.command, 'base64url')) };
    }),
  };
}

export class CommandRelay {
  readonly #o: CommandRelayOptions;
  readonly #log: Logger;
  readonly #breaker: CircuitBreaker;
  /** Held commands by device, oldest cid first. */
  readonly #held = new Map<string, Held[]>();
  readonly #out = new Map<string, Outstanding>();
  readonly #c = { received: 0, relayed: 0, acked: 0, expired: 0, refused: 0, polls: 0 };
  #cursor = 0;
  #stopped = true;
  #loop: Promise<void> | undefined;
  #abort = new AbortController();
  readonly #doze: Doze;

  constructor(options: CommandRelayOptions) {
    ({ o: this.#o, log: this.#log, breaker: this.#breaker, doze: this.#doze } = loopParts(options));
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#cursor = this.#o.store.meta(CURSOR_KEY) ?? 0;
    for (const c of this.#o.store.commands()) this.#hold(c.dev, c.cid, c.bytes, false);
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#abort.abort();
    this.#doze.wake();
    for (const o of this.#out.values()) this.#o.clock.clearTimeout(o.timer);
    this.#out.clear();
    await this.#loop;
  }

  stats(): CommandStats {
    let pending = 0;
    for (const l of this.#held.values()) pending += l.length;
    return { pending, ...this.#c, cursor: this.#cursor };
  }

  /** Held commands of one device (for the status socket). */
  pendingFor(dev: string): { cid: number; exp: number; outstanding: boolean }[] {
    const out = this.#out.get(dev);
    return (this.#held.get(dev) ?? []).map((h) => ({ cid: h.cid, exp: h.exp, outstanding: out?.cid === h.cid }));
  }

  /** A session opened: its device's commands may go. */
  sessionOpened(s: GatewaySessionV2): void {
    this.#doze.wake();
    this.#deliver(s.dev);
  }

  /** A session ended: its outstanding command goes again on the device's next session. */
  sessionEnded(s: GatewaySessionV2): void {
    const o = this.#out.get(s.dev);
    if (o !== undefined && o.session === s) {
      this.#o.clock.clearTimeout(o.timer);
      this.#out.delete(s.dev);
    }
  }

  /** The device acknowledged `cid` (recorded durably by the caller). */
  acked(dev: string, cid: number): void {
    const o = this.#out.get(dev);
    // protocol-v2: the next goes out after an ack carrying the outstanding cid (or 0).
    if (o === undefined || (cid !== o.cid && cid !== 0)) {
      this.#drop(dev, cid);
      return;
    }
    this.#o.clock.clearTimeout(o.timer);
    this.#out.delete(dev);
    this.#drop(dev, o.cid);
    this.#c.acked += 1;
    this.#deliver(dev);
  }

  #drop(dev: string, cid: number): void {
    const list = this.#held.get(dev);
    if (list === undefined) return;
    const i = list.findIndex((h) => h.cid === cid);
    if (i < 0) return;
    list.splice(i, 1);
    if (list.length === 0) this.#held.delete(dev);
    this.#o.store.dropCommand(dev, cid);
  }

  /** Parse, verify under pk_S and hold one command; false when refused. */
  #hold(dev: string, cid: number, bytes: Uint8Array, fresh: boolean): Held | undefined {
    let held: Held;
    try {
      const signed = parseCommand(bytes);
      const pk = this.#o.backendKeys.get(signed.kid);
      if (pk === undefined || !verifySign1(signed, pk)) throw new Error('not signed by a pinned backend key');
      const c = signed.payload;
      if (c.dev !== dev || c.cid !== cid) throw new Error('dev or cid differs from the entry');
      held = { dev, cid, bytes, hh: c.hh, exp: c.exp };
    } catch (err) {
      this.#c.refused += 1;
      this.#log.warn('backend command refused', { dev, cid, error: (err as Error).message });
      return undefined;
    }
    const list = this.#held.get(dev) ?? [];
    const same = list.findIndex((h) => h.cid === cid);
    // protocol-v2: a re-signed command (newer grant) replaces the old one.
    if (same >= 0) list[same] = held;
    else {
      if (fresh && list.length >= this.#o.maxPerDevice) {
        this.#c.refused += 1;
        this.#log.warn('too many commands held for a device; command not held', { dev, cid, maxPerDevice: this.#o.maxPerDevice });
        return undefined;
      }
      list.push(held);
      list.sort((a, b) => a.cid - b.cid);
    }
    this.#held.set(dev, list);
    return held;
  }

  /** Relay the device's next command, if it has a live online session whose hh a command names. */
  #deliver(dev: string): void {
    if (this.#stopped || this.#out.has(dev)) return;
    const list = this.#held.get(dev);
    if (list === undefined) return;
    const nowS = this.#o.clock.now() / 1000;
    for (const h of [...list]) {
      if (h.exp <= nowS) {
        this.#c.expired += 1;
        this.#log.info('command expired undelivered', { dev, cid: h.cid });
        this.#drop(dev, h.cid);
      }
    }
    const s = this.#o.sessionOf(dev);
    // protocol-v2: a session welcomed offline receives no commands.
    if (s === undefined || s.ended || s.offline) return;
    const next = (this.#held.get(dev) ?? []).find((h) => bytesEqual(h.hh, s.hh));
    if (next === undefined) return;
    this.#send(s, next);
  }

  #send(s: GatewaySessionV2, h: Held): void {
    const timer = this.#o.clock.setTimeout(() => {
      // protocol-v2: no ack after 30 s: the same command again in a new frame.
      const o = this.#out.get(h.dev);
      if (o === undefined || o.session !== s) return;
      this.#out.delete(h.dev);
      if (s.ended || h.exp <= this.#o.clock.now() / 1000) {
        this.#deliver(h.dev);
        return;
      }
      this.#send(s, h);
    }, this.#o.resendMs);
    this.#out.set(h.dev, { cid: h.cid, session: s, timer });
    this.#c.relayed += 1;
    this.#log.info('command relayed', { dev: h.dev, cid: h.cid });
    void s.sendCommand(h.bytes);
  }

  async #run(): Promise<void> {
    let attempt = 0;
    while (!this.#stopped) {
      if (this.#o.liveSessions() === 0) {
        // The backend keeps commands until exp; the poll starts with the first v2 session.
        await this.#doze.sleep();
        continue;
      }
      try {
        await this.#poll();
        attempt = 0;
      } catch (e) {
        if (this.#stopped) return;
        const err = e instanceof BackendError ? e : new BackendError('response', 'command poll failed', { cause: e });
        const delay = Math.max(backoffMs(attempt, this.#o.retryBaseMs, this.#o.retryMaxMs), this.#breaker.retryInMs);
        attempt += 1;
        this.#log.debug('command poll failed; retrying', { kind: err.kind, status: err.status, delayMs: delay });
        await this.#doze.sleep(delay);
      }
    }
  }

  async #poll(): Promise<void> {
    const session = acquireSession(this.#breaker, this.#o.session);
    const wait = Math.min(MAX_WAIT_SEC, this.#o.waitSec);
    const path = `/v1/gateways/${encodeURIComponent(this.#o.gw)}/commands?since=${this.#cursor}&wait=${wait}`;
    let answer: ReturnType<typeof readCommandsAnswer>;
    try {
      const req = await signedRequest(this.#o.http, 'GET', path, undefined, { keyid: `session:${this.#o.gw}`, alg: 'ed25519', nowMs: this.#o.clock.now(), sign: (b) => session.signer.sign(b) });
      this.#c.polls += 1;
      const res = await this.#o.http.request({ ...req, signal: AbortSignal.any([AbortSignal.timeout(this.#o.requestTimeoutMs + wait * 1000), this.#abort.signal]) });
      answer = readCommandsAnswer(expectJson(res, 200));
    } catch (e) {
      const err = e instanceof BackendError ? e : new BackendError('response', 'command poll failed', { cause: e });
      this.#breaker.failed(err);
      throw err;
    }
    this.#breaker.success();
    const touched = new Set<string>();
    const puts: Held[] = [];
    for (const c of answer.commands) {
      this.#c.received += 1;
      const h = this.#hold(c.dev, c.cid, c.command, true);
      if (h !== undefined) {
        puts.push(h);
        touched.add(c.dev);
      }
    }
    // Held commands and the cursor commit together: a restart neither loses nor refetches them.
    this.#o.store.holdCommands(puts, CURSOR_KEY, answer.cursor);
    this.#cursor = answer.cursor;
    for (const dev of touched) this.#deliver(dev);
  }
}
