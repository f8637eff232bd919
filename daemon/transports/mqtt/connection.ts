/**
 * One accepted MQTT connection as the transport tracks it: what CONNECT said, the device it is
 * bound to, its lease policy, its auth timer, its v1 session-age timer and its subscriptions. Every field is written here,
 * through the methods below: the connect hook fills in CONNECT, the ACL's verdicts bind it, the
 * connection table welcomes and closes it.
 */
import type { Duplex } from 'node:stream';
import type { Client } from 'aedes';
import type { Policy } from '../../../protocol/index.js';
import { longTimeout, monotonicClock, type LongTimer, type TimerClock, type TimerHandle } from '../../../common/clock.js';
import type { IngressConnection } from '../../pipeline/types.js';
import type { AclConnection } from './acl.js';

/** What CONNECT told us, kept for the ACL and the authenticate hook. */
export interface ConnectFacts {
  clientId: string;
  keepalive: number;
  /** Why the will can never be allowed, when it cannot (checked at CONNECT). */
  willProblem: string | undefined;
}

export class MqttConnection implements AclConnection {
  readonly id: string;
  readonly ingress: IngressConnection;
  readonly stream: Duplex;
  /** Filters granted to this connection (bounded by the subscribe hook). */
  readonly #subscriptions = new Set<string>();
  #connect: ConnectFacts = { clientId: '', keepalive: 0, willProblem: undefined };
  #boundDev: string | undefined;
  #policy: Policy | undefined;
  #welcomed = false;
  /** protocol-v2: the version of the welcome (a v2 session has no plaintext broker rights). */
  #version: 1 | 2 | undefined;
  #closing = false;
  #client: Client | undefined;
  readonly #clock: TimerClock;
  #authTimer: TimerHandle | undefined;
  /** v1: closes the connection at min(lease exp, protocol.maxSessionAgeSec) after the welcome. */
  #lifeTimer: LongTimer | undefined;

  constructor(seq: number, remote: string, stream: Duplex, clock: TimerClock = monotonicClock) {
    this.id = `mqtt:${seq}`;
    this.ingress = { id: this.id, transport: 'mqtt', remote };
    this.stream = stream;
    this.#clock = clock;
  }

  /** The client id from CONNECT; '' until then. */
  get clientId(): string {
    return this.#connect.clientId;
  }

  get keepalive(): number {
    return this.#connect.keepalive;
  }

  get willProblem(): string | undefined {
    return this.#connect.willProblem;
  }

  get boundDev(): string | undefined {
    return this.#boundDev;
  }

  get policy(): Policy | undefined {
    return this.#policy;
  }

  get closing(): boolean {
    return this.#closing;
  }

  get client(): Client | undefined {
    return this.#client;
  }

  get welcomed(): boolean {
    return this.#welcomed;
  }

  /** The protocol version of the welcome, once welcomed. */
  get version(): 1 | 2 | undefined {
    return this.#version;
  }

  get subscriptionCount(): number {
    return this.#subscriptions.size;
  }

  hasSubscription(filter: string): boolean {
    return this.#subscriptions.has(filter);
  }

  /** Records what CONNECT said (the connect hook, once). */
  connected(facts: ConnectFacts): void {
    this.#connect = { ...facts };
  }

  /** Binds the connection to `dev` when the ACL asks for it (protocol-v1: "bound to the first dev it uses"). */
  bind(dev: string | undefined): void {
    if (dev !== undefined) this.#boundDev = dev;
  }

  subscribed(filter: string): void {
    this.#subscriptions.add(filter);
  }

  unsubscribed(filter: string): void {
    this.#subscriptions.delete(filter);
  }

  /** The aedes client serving this connection (once, at accept). */
  attach(client: Client): void {
    this.#client = client;
  }

  /** Starts the auth timer (protocol-v1: a connection not welcomed in time is closed). */
  startAuthTimer(ms: number, onTimeout: () => void): void {
    this.#authTimer = this.#clock.setTimeout(onTimeout, ms);
  }

  stopAuthTimer(): void {
    if (this.#authTimer !== undefined) this.#clock.clearTimeout(this.#authTimer);
    this.#authTimer = undefined;
  }

  /** v1: the welcome's session ends after `ms` (a later welcome on this connection restarts it). */
  startLifeTimer(ms: number, onExpiry: () => void): void {
    this.stopLifeTimer();
    this.#lifeTimer = longTimeout(this.#clock, onExpiry, ms);
  }

  stopLifeTimer(): void {
    this.#lifeTimer?.cancel();
    this.#lifeTimer = undefined;
  }

  /**
   * The connection is welcomed. v1: the expanded lease policy becomes its broker rights. v2: no
   * plaintext rights at all (protocol-v2 "No plaintext rights"): the session enforces the policy
   * on its pub frames, so `policy` stays unset for the ACL.
   */
  welcome(policy: Policy, version: 1 | 2 = 1): void {
    this.#welcomed = true;
    this.#version = version;
    this.#policy = version === 1 ? policy : undefined;
    this.stopAuthTimer();
  }

  /** A v2 session of this connection ended on the peer's bye: it is unwelcomed again (no rights). */
  unwelcome(): void {
    this.stopLifeTimer();
    this.#welcomed = false;
    this.#version = undefined;
    this.#policy = undefined;
  }

  /** The gateway is closing it: the ACL refuses everything from now on and its will is dropped. */
  markClosing(): void {
    this.#closing = true;
    this.stopAuthTimer();
    this.stopLifeTimer();
  }
}
