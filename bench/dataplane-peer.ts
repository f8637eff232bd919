/**
 * One simulated v2 device of the data-plane generator (bench/dataplane-generator.ts): the
 * reference v2 peripheral library (peripherals/reference/session-v2.ts) over testkit's
 * RawMqttClient. It connects, runs the v2 exchange (every welcome checked), seals `pub` frames
 * and opens the gateway's receipts in arrival order, remembering when each unreceipted frame
 * was sent; what a receipt settles goes to the running command's `onReceipt`.
 */
import { Ed25519Signer, ProtocolError } from '../protocol/index.js';
import { MemoryCommandStore } from '../peripherals/reference/command-store.js';
import { ReferencePeripheralV2, type PeripheralSessionV2, type SessionEvent } from '../peripherals/reference/session-v2.js';
import { RawMqttClient } from '../testkit/mqtt-wire.js';
import type { GenDevice } from './load-generator.js';

export interface Peer {
  dev: string;
  ref: ReferencePeripheralV2;
  client: RawMqttClient | undefined;
  session: PeripheralSessionV2 | undefined;
  up: string;
  down: string;
  topic: string;
  /** The exchange's next down message. */
  waiter: ((b: Buffer | undefined) => void) | undefined;
  /** Size of the last pub frame sealed. */
  frameBytes: number;
  /** Seq of the next frame sealed (the session seals nothing but our pubs). */
  nextSeq: number;
  /** Send time (ms, performance.now) of each frame awaiting a receipt. */
  sentAt: Map<number, number>;
  /** G→P frames are opened in arrival order. */
  chain: Promise<void>;
  /** What the running command does with a receipt. */
  onReceipt: (settled: number[], busy: number) => void;
  /** Plain baseline: PUBACK wait per packet id. */
  pubackAt: Map<number, number>;
  onPuback: (sentAt: number) => void;
}

function bytesOf(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** The exchange's next down message; undefined after `timeoutMs` or when the connection closes. */
function nextDown(p: Peer, timeoutMs: number): Promise<Buffer | undefined> {
  return new Promise<Buffer | undefined>((resolve) => {
    const timer = setTimeout(resolve, timeoutMs, undefined);
    p.waiter = (b) => {
      clearTimeout(timer);
      resolve(b);
    };
  }).finally(() => (p.waiter = undefined));
}

/** A receipt (or any G→P frame) for the live session. */
function frameIn(p: Peer, payload: Buffer): void {
  const s = p.session;
  if (s === undefined) return;
  const copy = new Uint8Array(payload);
  p.chain = p.chain.then(async () => {
    const e: SessionEvent = await s.open(copy);
    if (e.kind !== 'receipt') return;
    const unsettled = e.denied.length + e.resend.length;
    if (unsettled > 0) {
      // Busy, lost or denied: those seqs are answered and will not be settled.
      const open = new Set(s.unsettled);
      for (const seq of p.sentAt.keys()) if (!open.has(seq) && !e.settled.includes(seq)) p.sentAt.delete(seq);
    }
    p.onReceipt(e.settled, unsettled);
  });
}

export async function connectClient(p: Peer, host: string, port: number, timeoutMs: number): Promise<RawMqttClient> {
  const c = await RawMqttClient.connect({ host, port, clientId: p.dev, keepaliveSec: 300, timeoutMs });
  c.onMessage = (topic, payload) => {
    if (topic !== p.down) return;
    if (p.session !== undefined && payload[0] === 0xd0) frameIn(p, payload);
    else p.waiter?.(payload);
  };
  c.onClose = () => p.waiter?.(undefined);
  c.onPuback = (id) => {
    const at = p.pubackAt.get(id);
    if (at === undefined) return;
    p.pubackAt.delete(id);
    p.onPuback(at);
  };
  p.client = c;
  return c;
}

/** The v2 exchange: challenge-request, challenge, hello, a checked welcome; a reject is retried after its `retry`. */
export async function establish(p: Peer, host: string, port: number, timeoutMs: number): Promise<void> {
  const c = await connectClient(p, host, port, timeoutMs);
  if ((await c.subscribe(p.down, 1, timeoutMs)) === 0x80) throw new Error('subscribe refused');
  for (let attempt = 0; ; attempt += 1) {
    let reply = nextDown(p, timeoutMs);
    c.publish(p.up, p.ref.challengeRequest(), 1);
    let helloSent = false;
    for (;;) {
      const bytes = await reply;
      if (bytes === undefined) throw new Error(c.closed ? 'closed during the exchange' : 'exchange timeout');
      const ev = p.ref.receive(bytesOf(bytes));
      if (ev.kind === 'challenge' && !helloSent) {
        helloSent = true;
        reply = nextDown(p, timeoutMs);
        c.publish(p.up, await p.ref.hello(bytesOf(bytes)), 1);
        continue;
      }
      if (ev.kind === 'established') {
        p.session = ev.session;
        p.nextSeq = 0;
        p.sentAt.clear();
        return;
      }
      if (ev.kind === 'welcome-refused') throw new Error(`welcome refused: ${ev.code}`);
      if (ev.kind === 'rejected') {
        if (attempt >= 3) throw new Error(`rejected: ${ev.reason}`);
        await new Promise((r) => setTimeout(r, ev.retryAfterSeconds * 1000));
        break;
      }
      reply = nextDown(p, timeoutMs);
    }
  }
}

export function send(p: Peer, body: Uint8Array, at: number): boolean {
  const s = p.session;
  const c = p.client;
  if (s === undefined || c === undefined || c.closed) return false;
  let frame: Uint8Array;
  try {
    frame = s.sealPub(p.topic, body);
  } catch (e) {
    if (e instanceof ProtocolError && e.code === 'GH_SESSION_BUSY') return false;
    throw e;
  }
  p.frameBytes = frame.byteLength;
  p.sentAt.set(p.nextSeq, at);
  p.nextSeq += 1;
  c.publish(p.up, frame, 1);
  return true;
}

/** A simulated device: the reference v2 peripheral with its device key, pinning `backendKeys`. */
export function peerOf(d: GenDevice, backendKeys: ReadonlyMap<string, Uint8Array>): Peer {
  const signer = Ed25519Signer.fromSeed(new Uint8Array(Buffer.from(d.seed, 'base64')), d.dev);
  return {
    dev: d.dev,
    ref: new ReferencePeripheralV2({ dev: d.dev, signer, devicePublicKey: signer.publicKeyRaw, backendKeys, commandStore: new MemoryCommandStore() }),
    client: undefined,
    session: undefined,
    up: `gatehouse/v2/${d.dev}/up`,
    down: `gatehouse/v2/${d.dev}/down`,
    topic: `devices/${d.dev}/t`,
    waiter: undefined,
    frameBytes: 0,
    nextSeq: 0,
    sentAt: new Map(),
    chain: Promise.resolve(),
    onReceipt: () => undefined,
    pubackAt: new Map(),
    onPuback: () => undefined,
  };
}
