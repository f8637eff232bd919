/**
 * What the data-plane suites share: the gateway's data plane on a state directory with the MQTT
 * transport in front of it (its session tables kept, to reach the live sessions), and an
 * authenticated reference v2 peripheral on it.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import type { TimerClock } from '../../../common/clock.js';
import type { BackendHttp } from '../../../daemon/backend-client/dispatcher.js';
import type { GatewaySessionV2 } from '../../../daemon/sessions/session.js';
import type { SessionTable } from '../../../daemon/sessions/table.js';
import { DataPlane } from '../../../daemon/uplink/data-plane.js';
import type { Ed25519Signer } from '../../../protocol/index.js';
import { MemoryCommandStore } from '../../../peripherals/reference/command-store.js';
import { MqttReferencePeripheralV2 } from '../../../peripherals/reference/mqtt-peripheral-v2.js';
import { ReferencePeripheralV2 } from '../../../peripherals/reference/session-v2.js';
import type { GatewayBackendSide } from '../../../testkit/gateway-backend.js';
import { waitUntil } from '../../../testkit/wait.js';
import { startHarness, type Harness } from '../transports/mqtt/harness.js';

export interface UplinkGateway {
  plane: DataPlane;
  /** The MQTT transport's harness; undefined with `transport: false`. */
  h: Harness | undefined;
  /** The session tables the transport attached. */
  tables: SessionTable[];
  /** Stops the transport, then the data plane (once). */
  stop(): Promise<void>;
}

/** The data plane on `stateDir` (short retries, 64 MiB queue unless `maxBytes`), with (by default) the MQTT transport in front of it. */
export async function startUplinkGateway(o: {
  gw: string;
  stateDir: string;
  http: BackendHttp;
  side: GatewayBackendSide;
  backendKeys: ReadonlyMap<string, Uint8Array>;
  clock: TimerClock;
  requestTimeoutMs: number;
  maxBytes?: number;
  transport?: boolean;
}): Promise<UplinkGateway> {
  mkdirSync(o.stateDir, { recursive: true, mode: 0o700 });
  const plane = new DataPlane({
    gw: o.gw,
    stateDir: o.stateDir,
    http: o.http,
    session: o.side.sessions,
    backendKeys: o.backendKeys,
    breaker: { failureThreshold: 3, openMs: 200 },
    requestTimeoutMs: o.requestTimeoutMs,
    retryBaseMs: 20,
    retryMaxMs: 200,
    queue: { maxBytes: o.maxBytes ?? 64 * 1024 * 1024, maxAgeSec: 604_800, busyRetrySec: 5 },
    commands: { waitSec: 1, maxPerDevice: 4, resendMs: 30_000 },
    publishLocal: false,
    clock: o.clock,
  });
  plane.start();
  const tables: SessionTable[] = [];
  // The transport attaches its session table; keep it to reach the live sessions.
  const dataPlane = {
    publishLocal: false,
    pub: plane.pub.bind(plane),
    ack: plane.ack.bind(plane),
    attach: (t: SessionTable): void => {
      tables.push(t);
      plane.attach(t);
    },
  };
  const h = o.transport === false ? undefined : await startHarness(o.side.client, o.side.sessions, { gw: o.gw, transport: { dataPlane } });
  let stopped = false;
  return {
    plane,
    h,
    tables,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await h?.stop();
      await plane.stop();
    },
  };
}

/** The gateway's live session of `dev` in `tables` (opened as the welcome goes out: waited for, bounded). */
export async function liveSessionIn(tables: readonly SessionTable[], dev: string): Promise<GatewaySessionV2> {
  const find = (): GatewaySessionV2 | undefined => tables.map((t) => t.byDevice(dev)).find((x) => x !== undefined);
  await waitUntil(() => find() !== undefined, `a live session of ${dev}`, 10_000);
  return find() as GatewaySessionV2;
}

/** A reference v2 peripheral for `dev` at `url`, added to `open` (for the suite to close), connected and authenticated. */
export async function connectV2Peripheral(
  open: MqttReferencePeripheralV2[],
  url: string,
  dev: string,
  signer: Ed25519Signer,
  backendKeys: ReadonlyMap<string, Uint8Array>,
  commandStore = new MemoryCommandStore(),
): Promise<MqttReferencePeripheralV2> {
  const session = new ReferencePeripheralV2({ dev, signer, devicePublicKey: signer.publicKeyRaw, backendKeys, commandStore });
  const p = new MqttReferencePeripheralV2({ url, peripheral: session, timeoutMs: 15_000 });
  open.push(p);
  await p.connect();
  const r = await p.authenticate();
  assert.equal(r.kind, 'established', r.kind === 'established' ? '' : JSON.stringify(r));
  return p;
}

/** Waits for state with no event (the store, the queue's counters); 30 s covers the uploader's backoff after an outage. */
export const until = (cond: () => boolean | Promise<boolean>, what: string): Promise<void> => waitUntil(cond, what, 30_000);
