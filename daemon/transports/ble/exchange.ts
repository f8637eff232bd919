/**
 * One peripheral's exchange over BLE, connect to disconnect (protocol-v1 "BLE transport"): pick
 * the version from the GATT service, then either the v1 flow (subscribe, `challenge`, reassembled
 * `hello`, `welcome` or `reject`) or a v2 link and its session (v2-link.ts). The `BleTransport`
 * owns the scan, the queue and the concurrency; it starts one of these per link and learns the
 * outcome through the `ExchangeHost` callbacks.
 */
import type { Logger } from 'winston';
import type { AuthPipeline, IngressConnection } from '../../pipeline/types.js';
import {
  decodeDownMessage,
  BleFrameError,
  frameMessage,
  GATEHOUSE_CHARACTERISTIC_UUID,
  GATEHOUSE_SERVICE_UUID,
  GATEHOUSE_V2_CHARACTERISTIC_UUID,
} from '../../../protocol/index.js';
import type { ReasonCode } from '../../../protocol/index.js';
import { BleError, type BleErrorCode } from './errors.js';
import type { BleExchangeEvent, BleSessionEvent } from './events.js';
import { helloReceiver, raceAbort } from './hello-receiver.js';
import { normaliseUuid, type BleCentral, type BleDiscovery } from './port.js';
import { runV2Link, type V2LinkResult, type V2SessionHost } from './v2-link.js';

export const SERVICE = normaliseUuid(GATEHOUSE_SERVICE_UUID);
const CHARACTERISTIC = normaliseUuid(GATEHOUSE_CHARACTERISTIC_UUID);
const CHARACTERISTIC_V2 = normaliseUuid(GATEHOUSE_V2_CHARACTERISTIC_UUID);

/** How an exchange ended, before the transport adds the connection, address and hold-off. */
export type ExchangeResult = Omit<BleExchangeEvent, 'connection' | 'address' | 'holdOffMs'> & { retry?: number };

/** What an exchange needs from its `BleTransport`. */
export interface ExchangeHost {
  central: BleCentral;
  pipeline: AuthPipeline;
  log: Logger;
  versions: ReadonlyArray<1 | 2>;
  v2: V2SessionHost | undefined;
  exchangeTimeoutMs: number;
  disconnectTimeoutMs: number;
  idleTimeoutMs: number;
  /** The link is up. */
  connected(conn: IngressConnection, d: BleDiscovery): void;
  /** The exchange ended (v1 or v2): count it, throttle the address, report it. */
  finish(conn: IngressConnection, d: BleDiscovery, result: ExchangeResult): void;
  /** A v2 link was welcomed: it is a session now, no longer an exchange. */
  becameSession(): void;
  /** A v2 session ended. */
  sessionEnded(event: BleSessionEvent): void;
  /** What discovery found of a characteristic (found or missing), for `gatehouse scan`. */
  learned(d: BleDiscovery, version: 1 | 2, found: boolean): void;
}

/** The link's state the transport reads: a v2 session after its welcome. */
export interface ExchangeEntry {
  session: boolean;
}

/**
 * Run one exchange on discovery `d` until it ends or `controller` aborts; never rejects. The
 * transport is told the outcome through `host.finish` (once, unless the link became a session).
 */
export async function runExchange(
  host: ExchangeHost,
  d: BleDiscovery,
  conn: IngressConnection,
  controller: AbortController,
  entry: ExchangeEntry,
): Promise<void> {
  const central = host.central;
  const pipeline = host.pipeline;
  const signal = controller.signal;
  const timer = setTimeout(
    () => controller.abort(new BleError('GH_BLE_TIMEOUT', `exchange not done within ${host.exchangeTimeoutMs} ms`)),
    host.exchangeTimeoutMs,
  );
  const offDisconnect = central.on('disconnect', (e) => {
    if (e.id === d.id) controller.abort(new BleError('GH_BLE_DISCONNECTED', `peripheral disconnected (reason ${e.reason ?? 'unknown'})`));
  });
  const log = host.log.child({ connection: conn.id, address: d.address });
  let connected = false;
  let bound = false;
  let inFlight: Promise<unknown> | undefined;
  let result: ExchangeResult = { outcome: 'failed' };
  try {
    const opts = { signal };
    await central.connect(d.id, opts);
    connected = true;
    host.connected(conn, d);
    const version = await pickVersion(host, d, opts);
    if (version === 2) {
      const r = await exchangeV2(host, d, conn, controller, entry, () => clearTimeout(timer));
      result = r.welcomed ? { outcome: 'welcome', dev: r.welcomed } : r.result;
      return;
    }
    const info = await central.discover(d.id, SERVICE, CHARACTERISTIC, opts);
    host.learned(d, 1, true);
    if (!info.properties.includes('write') || !info.properties.includes('notify')) {
      throw new BleError('GH_BLE_GATT_MISMATCH', `characteristic lacks write+notify: ${info.properties.join(',')}`);
    }
    const mtu = central.mtu(d.id);
    const hello = helloReceiver(mtu, signal);
    await central.subscribe(d.id, SERVICE, CHARACTERISTIC, hello.push, opts);
    bound = true;
    // protocol-v1 "BLE transport": no challenge-request; gn is bound to this connection alone.
    const challenge = await raceAbort((inFlight = pipeline.connectionChallenge(conn)), signal);
    const challengeReject = rejectIn(challenge);
    await send(central, d.id, challenge, mtu, signal);
    if (challengeReject) {
      result = { outcome: 'reject', reason: challengeReject.reason, ...(challengeReject.retry === undefined ? {} : { retry: challengeReject.retry }) };
      return;
    }
    const helloBytes = await hello.message;
    const outcome = await raceAbort((inFlight = pipeline.hello(conn, helloBytes)), signal);
    await send(central, d.id, outcome.reply, mtu, signal);
    if (outcome.welcomed) result = { outcome: 'welcome', dev: outcome.welcomed.dev };
    else {
      result = { outcome: 'reject', reason: outcome.rejected?.reason ?? 'internal' };
      if (outcome.rejected?.dev !== undefined) result.dev = outcome.rejected.dev;
      if (outcome.rejected?.retry !== undefined) result.retry = outcome.rejected.retry;
    }
  } catch (err) {
    const e = toBleError(signal.aborted ? signal.reason : err, err);
    result = { outcome: 'failed', error: e.code };
    log.info('BLE exchange failed', { code: e.code, error: e.message });
  } finally {
    clearTimeout(timer);
    offDisconnect();
    if (connected) {
      // protocol-v1: G disconnects after the welcome or reject (and after any failure).
      await central.disconnect(d.id, { timeoutMs: host.disconnectTimeoutMs }).catch((err: unknown) => {
        log.warn('BLE disconnect failed', { error: err instanceof Error ? err.message : String(err) });
      });
    }
    if (bound) {
      pipeline.connectionClosed(conn);
      // An aborted exchange may leave a pipeline call running; whatever it binds to this
      // connection (a challenge) is dropped once it settles, not left to expire.
      const close = (): void => pipeline.connectionClosed(conn);
      inFlight?.then(close, close);
    }
    if (!entry.session) host.finish(conn, d, result);
  }
}

/** 2 when v2 is allowed, a host is given and the service has the v2 characteristic; else 1. */
async function pickVersion(host: ExchangeHost, d: BleDiscovery, opts: { signal: AbortSignal }): Promise<1 | 2> {
  if (!host.versions.includes(2) || host.v2 === undefined) return 1;
  try {
    const info = await host.central.discover(d.id, SERVICE, CHARACTERISTIC_V2, opts);
    host.learned(d, 2, true);
    if (!info.properties.includes('write') || !info.properties.includes('notify')) {
      throw new BleError('GH_BLE_GATT_MISMATCH', `v2 characteristic lacks write+notify: ${info.properties.join(',')}`);
    }
    return 2;
  } catch (err) {
    if (err instanceof BleError && err.code === 'GH_BLE_GATT_MISMATCH') host.learned(d, 2, false);
    if (err instanceof BleError && err.code === 'GH_BLE_GATT_MISMATCH' && host.versions.includes(1)) return 1;
    throw err;
  }
}

/**
 * One v2 exchange and its session (v2-link.ts). The welcome is reported through `host.finish`
 * when it is written; the session's end through `host.sessionEnded`.
 */
async function exchangeV2(
  host: ExchangeHost,
  d: BleDiscovery,
  conn: IngressConnection,
  controller: AbortController,
  entry: ExchangeEntry,
  stopDeadline: () => void,
): Promise<{ welcomed?: string; result: ExchangeResult }> {
  const v2 = host.v2;
  if (v2 === undefined) throw new BleError('GH_BLE_GATT_MISMATCH', 'no v2 host');
  const central = host.central;
  const signal = controller.signal;
  const mtu = central.mtu(d.id);
  let welcomedAt = 0;
  let dev: string | undefined;
  let r: V2LinkResult | undefined;
  let end: string | undefined;
  try {
    r = await runV2Link({
      connection: conn,
      host: v2,
      mtu,
      signal,
      idleTimeoutMs: host.idleTimeoutMs,
      writeChunk: (chunk, s) => central.write(d.id, SERVICE, CHARACTERISTIC_V2, chunk, { signal: s }),
      subscribe: (onValue) => central.subscribe(d.id, SERVICE, CHARACTERISTIC_V2, onValue, { signal }),
      onWelcomed: (who) => {
        stopDeadline();
        dev = who;
        welcomedAt = performance.now();
        host.finish(conn, d, { outcome: 'welcome', dev: who, version: 2 });
        entry.session = true;
        host.becameSession();
      },
    });
    end = r.sessionEnd;
  } catch (err) {
    if (dev === undefined) throw err;
    end = err instanceof BleError ? err.code : signal.aborted ? String((signal.reason as { code?: string }).code) : 'GH_BLE_OPERATION_FAILED';
  }
  if (dev !== undefined) {
    host.sessionEnded({
      connection: conn.id,
      address: d.address,
      dev,
      end: end ?? 'unknown',
      framesIn: r?.framesIn ?? 0,
      framesOut: r?.framesOut ?? 0,
      durationMs: Math.round(performance.now() - welcomedAt),
    });
    return { welcomed: dev, result: { outcome: 'welcome', dev, version: 2 } };
  }
  const result: ExchangeResult = { outcome: 'reject', version: 2 };
  if (r?.reason !== undefined) result.reason = r.reason;
  if (r?.dev !== undefined) result.dev = r.dev;
  if (r?.retry !== undefined) result.retry = r.retry;
  return { result };
}

async function send(central: BleCentral, id: string, message: Uint8Array, mtu: number, signal: AbortSignal): Promise<void> {
  for (const chunk of frameMessage(message, mtu)) await central.write(id, SERVICE, CHARACTERISTIC, chunk, { signal });
}

/** The reject inside a pipeline's challenge answer, if it is one. */
function rejectIn(bytes: Uint8Array): { reason: ReasonCode; retry?: number } | undefined {
  const m = decodeDownMessage(bytes);
  if (m.type !== 'reject') return undefined;
  const payload = m.message;
  return payload.retry === undefined ? { reason: payload.reason } : { reason: payload.reason, retry: payload.retry };
}

function toBleError(preferred: unknown, original: unknown): BleError {
  if (preferred instanceof BleError) return preferred;
  if (original instanceof BleError) return original;
  // A framing failure keeps its code (GH_BLE_FRAME_*), as a transport error.
  const frame = preferred instanceof BleFrameError ? preferred : original instanceof BleFrameError ? original : undefined;
  if (frame !== undefined) return new BleError(frame.code, frame.message, { cause: frame });
  const code: BleErrorCode = 'GH_BLE_OPERATION_FAILED';
  return new BleError(code, original instanceof Error ? original.message : String(original), { cause: original });
}
