/**
 * FakeTelemetryBackend: a test-only stand-in for the backend's v2 data-plane routes
 * (protocol-v2 "Backend HTTP API (v2 additions)") until the reference backend has them. Real
 * HTTPS (a PKI made at test time), every request's `gh` signature verified with protocol/'s
 * verifier under the session keys the test trusts, nonces remembered. It stores telemetry once
 * per (dev, sid, seq) and once per (dev, mid), queues commands for the long poll and records
 * acks. `stop()`/`start()` make an outage on the same port.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestPki, type TestPki } from '../backend/pki.js';
import { ed25519PublicKeyFromRaw, verifyGatehouseRequest, type Ed25519Signer } from '../protocol/index.js';

export interface StoredRecord {
  dev: string;
  sid: string;
  seq: number;
  topic: string;
  body: Buffer;
  receivedAt: number;
  mid?: number;
}

export class FakeTelemetryBackend {
  readonly gw: string;
  readonly pki: TestPki;
  readonly #dir: string;
  #server: Server | undefined;
  readonly #sockets = new Set<Socket>();
  #port = 0;
  readonly #sessionKeys: Uint8Array[] = [];
  readonly #nonces = new Set<string>();
  /** Stored records, by (dev, sid, seq). */
  readonly records = new Map<string, StoredRecord>();
  readonly #mids = new Set<string>();
  readonly acks: { dev: string; cid: number; status: string; at: number }[] = [];
  readonly #commands: { pos: number; dev: string; cid: number; command: string }[] = [];
  #pos = 0;
  readonly #pollers = new Set<() => void>();
  /** Answer counts, as the gateway saw them. */
  readonly counts = { accepted: 0, duplicates: 0, requests: 0, refusedSignatures: 0 };
  /** Answer the next telemetry requests 503 (a backend in trouble, not gone). */
  failNext = 0;

  private constructor(gw: string, dir: string, pki: TestPki) {
    this.gw = gw;
    this.#dir = dir;
    this.pki = pki;
  }

  static async create(gw: string): Promise<FakeTelemetryBackend> {
    const dir = mkdtempSync(join(tmpdir(), 'gh-fake-telemetry-'));
    const pki = await createTestPki(join(dir, 'pki'), { dnsNames: ['localhost'], ips: ['127.0.0.1'] });
    const f = new FakeTelemetryBackend(gw, dir, pki);
    await f.start();
    return f;
  }

  get url(): string {
    return `https://127.0.0.1:${this.#port}`;
  }

  /** Trust a session key of the gateway (what the real backend learns from `POST …/sessions`). */
  trustSession(session: Ed25519Signer): void {
    this.#sessionKeys.push(session.publicKeyRaw);
  }

  /** Queue a command (the signed COSE bytes) for the long poll. */
  issueCommand(dev: string, cid: number, command: Uint8Array): void {
    this.#commands.push({ pos: ++this.#pos, dev, cid, command: Buffer.from(command).toString('base64url') });
    for (const p of [...this.#pollers]) p();
  }

  async start(): Promise<void> {
    if (this.#server !== undefined) return;
    const server = createServer({ cert: this.pki.server.certPem, key: this.pki.server.keyPem }, (req, res) => void this.#handle(req, res));
    server.on('connection', (s: Socket) => {
      this.#sockets.add(s);
      s.once('close', () => this.#sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#port, '127.0.0.1', () => resolve());
    });
    const a = server.address();
    if (a !== null && typeof a === 'object') this.#port = a.port;
    this.#server = server;
  }

  /** An outage: the listener closes and every connection is cut. */
  async stop(): Promise<void> {
    const s = this.#server;
    this.#server = undefined;
    if (s === undefined) return;
    for (const p of [...this.#pollers]) p();
    for (const sock of this.#sockets) sock.destroy();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.#dir, { recursive: true, force: true });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req) {
      size += (c as Buffer).length;
      if (size > 1 << 20) return send(res, 413, { type: 'about:blank', title: 'too large' });
      chunks.push(c as Buffer);
    }
    const body = Buffer.concat(chunks);
    const rawUrl = req.url ?? '/';
    const prefix = `/v1/gateways/${this.gw}/`;
    if (!rawUrl.startsWith(prefix)) return send(res, 404, { title: 'not found' });
    try {
      const v = verifyGatehouseRequest(
        { method: req.method ?? '', url: `${this.url}${rawUrl}`, headers: req.headers, ...(body.length > 0 ? { body: new Uint8Array(body) } : {}) },
        {
          now: Math.floor(Date.now() / 1000),
          resolveKeys: (keyid) => (keyid === `session:${this.gw}` ? this.#sessionKeys.map((k) => ed25519PublicKeyFromRaw(k)) : []),
        },
      );
      if (this.#nonces.has(v.nonce)) throw new Error('replayed nonce');
      this.#nonces.add(v.nonce);
    } catch (err) {
      this.counts.refusedSignatures += 1;
      return send(res, 401, { type: 'urn:gatehouse:problem:bad-signature', title: (err as Error).message });
    }
    this.counts.requests += 1;
    const route = rawUrl.slice(prefix.length).split('?')[0];
    if (req.method === 'POST' && route === 'telemetry') return this.#telemetry(res, JSON.parse(body.toString('utf8')) as { records: (Omit<StoredRecord, 'body'> & { body: string })[] });
    if (req.method === 'POST' && route === 'acks') {
      const acks = (JSON.parse(body.toString('utf8')) as { acks: FakeTelemetryBackend['acks'] }).acks;
      for (const a of acks) if (!this.acks.some((x) => x.dev === a.dev && x.cid === a.cid)) this.acks.push(a);
      return send(res, 200, { accepted: acks.length });
    }
    if (req.method === 'GET' && route === 'commands') {
      const q = new URLSearchParams(rawUrl.split('?')[1] ?? '');
      return this.#commandsPoll(res, Number(q.get('since') ?? 0), Math.min(30, Number(q.get('wait') ?? 0)));
    }
    return send(res, 404, { title: 'not found' });
  }

  #telemetry(res: ServerResponse, b: { records: (Omit<StoredRecord, 'body'> & { body: string })[] }): void {
    if (this.failNext > 0) {
      this.failNext -= 1;
      return send(res, 503, { title: 'unavailable' });
    }
    if (!Array.isArray(b.records) || b.records.length > 256) return send(res, 400, { title: 'bad records' });
    let accepted = 0;
    let duplicates = 0;
    for (const r of b.records) {
      const key = `${r.dev}|${r.sid}|${r.seq}`;
      const midKey = r.mid === undefined ? undefined : `${r.dev}|${r.mid}`;
      if (this.records.has(key) || (midKey !== undefined && this.#mids.has(midKey))) {
        duplicates += 1;
        continue;
      }
      this.records.set(key, { ...r, body: Buffer.from(r.body, 'base64url') });
      if (midKey !== undefined) this.#mids.add(midKey);
      accepted += 1;
    }
    this.counts.accepted += accepted;
    this.counts.duplicates += duplicates;
    send(res, 200, { accepted, duplicates });
  }

  #commandsPoll(res: ServerResponse, since: number, wait: number): void {
    const answer = (): void => {
      const commands = this.#commands.filter((c) => c.pos > since).map(({ dev, cid, command }) => ({ dev, cid, command }));
      send(res, 200, { cursor: Math.max(since, this.#pos), commands });
    };
    if (this.#commands.some((c) => c.pos > since) || wait <= 0) return answer();
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this.#pollers.delete(finish);
      if (!res.destroyed) answer();
    };
    const timer = setTimeout(finish, wait * 1000);
    this.#pollers.add(finish);
    res.once('close', finish);
  }
}

function send(res: ServerResponse, status: number, value: unknown): void {
  if (res.headersSent || res.destroyed) return;
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': status >= 400 ? 'application/problem+json' : 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
