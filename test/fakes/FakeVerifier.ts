/**
 * A stand-in for the backend client (HelloVerifier) and the session it holds, for pipeline and
 * MQTT tests that run before or without the reference backend. It does what protocol-v1
 * "Backend checks" asks for a hello with real keys: device registered, not revoked, signature
 * valid under its registered key; and answers a real signed lease. Named Fake… per CONTRIBUTING.md §11.
 */
import {
  Ed25519Signer,
  parseHello,
  signGatewayCredential,
  signLease,
  parseLease,
  verifySign1,
  sha256,
} from '../../protocol/index.js';
import type { Policy } from '../../protocol/types.js';
import type { ReasonCode } from '../../protocol/reasons.js';
import type {
  GatewaySession,
  HelloVerifier,
  RevocationSource,
  SessionProvider,
  VerifyRequest,
  VerifyResult,
} from '../../daemon/pipeline/types.js';

/** Backend key, device registry, a gateway session and a verifier, all in memory. */
export class FakeVerifier implements HelloVerifier {
  readonly backendSigner = Ed25519Signer.generate('backend-1');
  readonly devices = new Map<string, Ed25519Signer>();
  readonly revoked = new Set<string>();
  readonly policies = new Map<string, Policy>();
  /** Requests seen, in order. */
  readonly requests: VerifyRequest[] = [];
  /** When set, answers this instead of checking (e.g. backend-unavailable). */
  forced: { ok: false; reason: ReasonCode; retry?: number } | undefined;
  /** When true, verify() never answers until its signal aborts. */
  hang = false;
  /** When set, verify() waits for it before deciding (tests hold a decision open). */
  gate: Promise<void> | undefined;
  /** Called with each request as it arrives. */
  onRequest: ((request: VerifyRequest) => void) | undefined;

  constructor(readonly gw: string) {}

  /** Registers a device with a fresh key; returns its signer (kid = dev). */
  addDevice(dev: string, policy?: Policy): Ed25519Signer {
    const signer = Ed25519Signer.generate(dev);
    this.devices.set(dev, signer);
    if (policy !== undefined) this.policies.set(dev, policy);
    return signer;
  }

  /** The backend keys a peripheral pins: kid → raw public key. */
  backendKeys(): Map<string, Uint8Array> {
    return new Map([[this.backendSigner.kid, this.backendSigner.publicKeyRaw]]);
  }

  /** A session (key + gw-cred signed by the backend key), as the backend client would hold. */
  async makeSession(nowSec = Math.floor(Date.now() / 1000)): Promise<GatewaySession> {
    const signer = Ed25519Signer.generate(this.gw);
    const notAfter = nowSec + 86400;
    const credential = await signGatewayCredential(
      { type: 'gw-cred', version: 1, gw: this.gw, spk: signer.publicKeyRaw, tpk: sha256(new Uint8Array([1])), iat: nowSec, exp: notAfter },
      this.backendSigner,
    );
    return { signer, credential, notAfter };
  }

  async verify(request: VerifyRequest, signal?: AbortSignal): Promise<VerifyResult> {
    this.requests.push(request);
    this.onRequest?.(request);
    if (this.hang) {
      return new Promise<VerifyResult>((_, reject) => {
        signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
      });
    }
    if (this.gate !== undefined) await this.gate;
    if (this.forced !== undefined) return this.forced;
    const signed = parseHello(request.hello);
    const device = this.devices.get(signed.payload.dev);
    if (device === undefined) return { ok: false, reason: 'unknown-device' };
    if (this.revoked.has(signed.payload.dev)) return { ok: false, reason: 'revoked' };
    if (!verifySign1(signed, device.publicKeyRaw)) return { ok: false, reason: 'bad-signature' };
    const now = Math.floor(Date.now() / 1000);
    const policy = this.policies.get(signed.payload.dev) ?? { pub: ['devices/{dev}/#'], sub: ['devices/{dev}/cmd/#'] };
    const leaseBytes = await signLease(
      { type: 'lease', version: 1, dev: signed.payload.dev, gw: this.gw, dpk: device.publicKeyRaw, policy, iat: now, exp: now + 3600 },
      this.backendSigner,
    );
    return { ok: true, dev: signed.payload.dev, lease: parseLease(leaseBytes).payload, leaseBytes, offline: false };
  }
}

/** A SessionProvider whose session the test sets or clears. */
export class FakeSessionProvider implements SessionProvider {
  constructor(public session: GatewaySession | undefined) {}

  current(): GatewaySession | undefined {
    return this.session;
  }
}

/** A RevocationSource the test fires by hand. */
export class FakeRevocationSource implements RevocationSource {
  readonly #listeners = new Set<(devices: string[]) => void>();

  onRevoked(listener: (devices: string[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  revoke(devices: string[]): void {
    for (const l of this.#listeners) l(devices);
  }
}
