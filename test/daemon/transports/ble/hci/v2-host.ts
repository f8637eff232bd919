/**
 * A real, minimal gateway side of protocol v2 for the BLE v2 tests (not a test file): a
 * `V2SessionHost` built from protocol/v2 and the reference backend's `POST /v1/verify` (which
 * signs the grant), holding one session per link with no pipeline, no receipt timing, no
 * commands. The pipeline's session table is meant to replace it in the daemon.
 */
import { randomBytes } from 'node:crypto';
import {
  deriveSessionKeysFromSecret,
  directionKeys,
  encodeChallengeV2,
  encodeUnsignedRejectV2,
  FrameReceiver,
  FrameSender,
  generateX25519KeyPair,
  checkHelloV2AtGateway,
  parseGrant,
  parseHelloV2,
  signWelcomeV2,
  type FramePayload,
} from '../../../../../protocol/v2/index.js';
import { bytesEqual, helloHash, type Ed25519Signer, type ReasonCode } from '../../../../../protocol/index.js';
import { base64UrlDecode, base64UrlEncode } from '../../../../../protocol/http-signature.js';
import type { TestBackend } from '../../../../../testkit/backend.js';
import type { V2Exchange, V2LinkInfo, V2SessionHost } from '../../../../../daemon/transports/ble/v2-link.js';

export interface HostSessionLog {
  dev: string;
  sid: string;
  frames: Array<{ seq: number; type: string; topic?: string; body?: string }>;
  drops: Array<{ code: string }>;
  denied: number;
}

export class MinimalV2Host implements V2SessionHost {
  readonly sessions: HostSessionLog[] = [];
  readonly rejects: Array<{ dev?: string; reason: ReasonCode; code?: string }> = [];

  constructor(
    private readonly tb: TestBackend,
    private readonly gw: string,
    private readonly session: Ed25519Signer,
  ) {}

  beginExchange(link: V2LinkInfo): Promise<V2Exchange> {
    const ge = generateX25519KeyPair();
    const gn = new Uint8Array(randomBytes(16));
    const { gw } = this;
    const challenge = encodeChallengeV2({ type: 'challenge', version: 2, dev: link.connection.id, gn, gw, ge: ge.publicKey });
    let rx: FrameReceiver | undefined;
    let tx: FrameSender | undefined;
    let log: HostSessionLog | undefined;
    const reject = (reason: ReasonCode, dev?: string, code?: string): { reply: Uint8Array; rejected: { reason: ReasonCode; dev?: string } } => {
      this.rejects.push({ reason, ...(dev === undefined ? {} : { dev }), ...(code === undefined ? {} : { code }) });
      return { reply: encodeUnsignedRejectV2({ type: 'reject', version: 2, dev: dev ?? link.connection.id, reason }), rejected: { reason, ...(dev === undefined ? {} : { dev }) } };
    };
    return Promise.resolve({
      challenge,
      onHello: async (bytes) => {
        let hello;
        let z: Uint8Array;
        try {
          hello = parseHelloV2(bytes).payload;
          if (!bytesEqual(hello.gn, gn)) return reject('stale-challenge', hello.dev);
          ({ z } = checkHelloV2AtGateway(hello, { gw, issuedGe: ge.publicKey, gePrivateKey: ge.privateKey }));
        } catch (e) {
          return reject('malformed', hello?.dev, (e as { code?: string }).code);
        }
        const r = await this.tb.call('POST', '/v1/verify', {
          json: { hellos: [{ id: 'h', transport: 'ble', hello: base64UrlEncode(bytes) }] },
          keyid: `session:${gw}`,
          alg: 'ed25519',
          sign: (b) => this.session.sign(b),
        });
        const [res] = (r.body as { results?: Array<{ ok: boolean; grant?: string; reason?: ReasonCode }> }).results ?? [];
        if (r.status !== 200 || !res) return reject('backend-unavailable', hello.dev);
        if (!res.ok || res.grant === undefined) return reject(res.reason ?? 'internal', hello.dev);
        const grant = base64UrlDecode(res.grant) as Uint8Array;
        const hh = helloHash(bytes);
        const life = Math.min(86_400, parseGrant(grant).payload.life);
        const welcome = await signWelcomeV2({ type: 'welcome', version: 2, dev: hello.dev, gw, hh, grant, life }, this.session);
        const keys = deriveSessionKeysFromSecret(z, hh, hello.dev, gw);
        rx = new FrameReceiver(directionKeys(keys, 'p2g'), 'p2g');
        tx = new FrameSender(directionKeys(keys, 'g2p'));
        log = { dev: hello.dev, sid: Buffer.from(keys.sid).toString('hex'), frames: [], drops: [], denied: 0 };
        this.sessions.push(log);
        return { reply: welcome, welcomed: { dev: hello.dev, lifeSeconds: life } };
      },
      onFrame: (bytes) => {
        if (!rx || !tx || !log) return Promise.resolve({ replies: [], end: 'no-session' });
        const r = rx.open(bytes);
        if (r.kind === 'drop') {
          log.drops.push({ code: r.code });
          if (!r.limitReached) return Promise.resolve({ replies: [] });
          return Promise.resolve({ replies: [tx.seal({ type: 'bye', reason: 'malformed' }).bytes], end: 'malformed' });
        }
        if (r.kind === 'denied') {
          log.denied++;
          return Promise.resolve({ replies: [tx.seal({ type: 'receipt', upto: r.seq, denied: [r.seq] }).bytes] });
        }
        const p: FramePayload = r.payload;
        const entry: HostSessionLog['frames'][number] = { seq: r.seq, type: p.type };
        if (p.type === 'pub') Object.assign(entry, { topic: p.topic, body: Buffer.from(p.body).toString('utf8') });
        log.frames.push(entry);
        // Every frame is settled at once here (no backend upload): a receipt covering it.
        const receipt = tx.seal({ type: 'receipt', upto: rx.highest }).bytes;
        return Promise.resolve(p.type === 'bye' ? { replies: [receipt], end: 'bye' } : { replies: [receipt] });
      },
      close: (reason) => {
        const last = tx && (reason === 'idle' || reason === 'shutdown') ? tx.seal({ type: 'bye', reason }).bytes : undefined;
        rx = undefined;
        tx = undefined;
        return last;
      },
    });
  }
}
