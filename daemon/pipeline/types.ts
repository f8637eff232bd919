/**
 * Contracts between the transports, the authentication pipeline and the backend client.
 * Data flows one way: transport → pipeline → backend client → pipeline → transport.
 */
import type { ReasonCode, Lease, Policy, Signer } from '../../protocol/index.js';

export type TransportKind = 'mqtt' | 'ble';

/** One transport connection as the pipeline sees it. Never an identity: only a binding. */
export interface IngressConnection {
  /** Unique for the daemon's lifetime, e.g. `mqtt:42`, `ble:7`. */
  readonly id: string;
  readonly transport: TransportKind;
  /** Remote address for logs only (an IP:port or a BLE address); never used as identity. */
  readonly remote: string;
}

/** What a transport does after a hello. */
export interface HelloOutcome {
  /** The encoded welcome or reject to deliver to the peripheral. */
  reply: Uint8Array;
  /**
   * Set when the peripheral was welcomed. `lifeSeconds` (v1): min(lease exp − now,
   * protocol.maxSessionAgeSec), how long the welcome stands; a transport that keeps the link up
   * closes it then (a v2 session carries its own `life`).
   */
  welcomed?: { dev: string; policy: Policy; offline: boolean; lifeSeconds?: number };
  /** Set when rejected. */
  rejected?: { dev?: string; reason: ReasonCode; retry?: number };
  /** protocol-v2: the keys of the session the welcome opens (the transport keeps them). */
  session?: SessionOpening;
}

/** What a v2 welcome opens (protocol-v2 "Session keys"): derived when the welcome is signed. */
export interface SessionOpening {
  dev: string;
  hh: Uint8Array;
  sid: Uint8Array;
  kUp: Uint8Array;
  ivUp: Uint8Array;
  kDn: Uint8Array;
  ivDn: Uint8Array;
  /** The welcome's `life`, seconds. */
  lifeSeconds: number;
  /** The expanded lease policy: its `pub` filters decide the session's pub frames. */
  policy: Policy;
  offline: boolean;
}

/** A protocol version on the wire. */
export type ProtocolVersion = 1 | 2;

/** The authentication pipeline, one for every transport. */
export interface AuthPipeline {
  /**
   * protocol-v1 "Challenge": a fresh single-use `gn` bound to `conn` and `dev`. Returns the
   * encoded challenge, or an encoded reject (rate-limited, busy, malformed dev).
   */
  challenge(conn: IngressConnection, dev: string, version?: ProtocolVersion): Promise<Uint8Array>;
  /**
   * protocol-v1 "BLE transport": there is no challenge-request on BLE, so the device id is unknown
   * until the hello. A fresh single-use `gn` bound to `conn` alone; the challenge's `dev` field
   * (key 3) carries `conn.id` (e.g. `ble:7`, a valid id that names the binding, never a device
   * identity; peripherals ignore it on BLE). The device id is learned from the hello, which the
   * transport passes to `hello(conn, bytes)` without `expectedDev`. Returns the encoded challenge,
   * or an encoded reject (rate-limited, busy). See docs/ble.md. With `version` 2 (the v2
   * characteristic) the challenge carries a fresh `ge` whose private key lives with the `gn`.
   */
  connectionChallenge(conn: IngressConnection, version?: ProtocolVersion): Promise<Uint8Array>;
  /** protocol-v1 "Gateway checks on a hello", then the backend, then a welcome or reject. */
  hello(conn: IngressConnection, helloBytes: Uint8Array, expectedDev?: string, version?: ProtocolVersion): Promise<HelloOutcome>;
  /** A reject of `version` (the topic's) with `reason`, signed when a session key is held. */
  reject(conn: IngressConnection, dev: string, reason: ReasonCode, version: ProtocolVersion): Promise<Uint8Array>;
  /** Forget everything bound to a connection (outstanding challenges, rate-limit state). */
  connectionClosed(conn: IngressConnection): void;
}

/** One hello as submitted to the backend (`POST /v1/verify` item). */
export interface VerifyRequest {
  id: string;
  transport: TransportKind;
  dev: string;
  /** The hello's COSE_Sign1 bytes exactly as received. */
  hello: Uint8Array;
}

export type VerifyResult =
  /** `grant`: protocol-v2, the backend's grant for a v2 hello (absent offline and for v1). */
  | { ok: true; dev: string; lease: Lease; leaseBytes: Uint8Array; offline: boolean; grant?: Uint8Array }
  | { ok: false; reason: ReasonCode; retry?: number };

/** The backend client as the pipeline sees it. Never throws for a verdict: answers a result. */
export interface HelloVerifier {
  verify(request: VerifyRequest, signal?: AbortSignal): Promise<VerifyResult>;
}

/** The current gateway session: the session key that signs welcomes and its credential. */
export interface GatewaySession {
  signer: Signer;
  /** The gw-cred COSE_Sign1 bytes from the backend, relayed in every welcome. */
  credential: Uint8Array;
  /** Unix seconds. */
  notAfter: number;
}

export interface SessionProvider {
  /** The valid session, or undefined while none is held yet (rejects then go unsigned). */
  current(): GatewaySession | undefined;
}

/** Revocations as the backend client reports them; the pipeline closes live sessions. */
export interface RevocationSource {
  onRevoked(listener: (devices: string[]) => void): () => void;
}

/** One decision, for the status socket's event ring and metrics. */
export interface DecisionEvent {
  seq: number;
  /** Unix milliseconds. */
  at: number;
  transport: TransportKind;
  connection: string;
  dev?: string;
  outcome: 'welcome' | 'reject' | 'challenge';
  reason?: ReasonCode;
  latencyMs: number;
  offline: boolean;
  /** The protocol version of the exchange (absent: 1). */
  version?: ProtocolVersion;
  /** The connection's remote address (IP:port, or a BLE address): for display, never an identity. */
  remote?: string;
  /** A reject's `retry` (seconds): when the peripheral may try again. */
  retry?: number;
  /** A welcome's lease `exp` (unix seconds). */
  leaseExp?: number;
}
