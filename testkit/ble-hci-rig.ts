/**
 * Rig of the BLE HCI suites: the gateway's BLE transport over noble's own HCI/L2CAP/ATT/GATT
 * code, driving a Bumble controller through its HCI UART (a pty), with Bumble peripherals on
 * the same virtual link (testkit/bumble.ts); behind the transport the real pipeline, backend
 * client and session manager, and the reference backend over HTTPS with its SQLite registry.
 * The gateway's TPM key is a software P-256 key here (the backend sees only its public key and
 * signatures). Not a test file.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Agent } from 'undici';
import { BackendClient } from '../daemon/backend-client/client.js';
import { BackendHttp, createBackendDispatcher } from '../daemon/backend-client/dispatcher.js';
import { SessionManager } from '../daemon/backend-client/session.js';
import { Pipeline } from '../daemon/pipeline/pipeline.js';
import { Ed25519Signer } from '../protocol/index.js';
import { NobleCentral } from '../daemon/transports/ble/noble-adapter.js';
import { BleTransport, type BleExchangeEvent, type BleTransportOptions } from '../daemon/transports/ble/transport.js';
import { BACKEND_CLIENT_DEFAULTS } from './component-defaults.js';
import { startBumbleLink, type BumbleLink, type BumbleLinkOptions, type BumblePeripheralSpec } from './bumble.js';
import { BACKEND_TEST_NAME, startTestBackend, type TestBackend, type TestGateway } from './backend.js';
import { recordExchanges } from './ble-exchanges.js';

export const GW = 'gw-ble-hci';

/** The 32-byte RFC 8032 seed of an Ed25519 signer (what the Bumble peripheral is given). */
export function seedOf(signer: Ed25519Signer): Uint8Array {
  const der = signer.privateKey.export({ format: 'der', type: 'pkcs8' });
  return new Uint8Array(der.subarray(der.length - 32));
}

export function addressOf(n: number): string {
  return `c0:de:00:00:01:${n.toString(16).padStart(2, '0')}`;
}

/** The reference backend, and the gateway's session with it; one per suite. */
export interface Backend {
  tb: TestBackend;
  /** The gateway (`GW` unless `startBackend` was given another id) as the backend knows it (a v2 host opens its own session with it). */
  gateway: TestGateway;
  backendKeys: Map<string, Uint8Array>;
  pipeline: Pipeline;
  client: BackendClient;
  close(): Promise<void>;
}

/** The backend, and behind it the session manager, backend client and pipeline of gateway `gwId`. */
export async function startBackend(gwId: string = GW): Promise<Backend> {
  // The origin the gateway signs its requests for (RFC 9421 @authority) is the name it connects to.
  const tb = await startTestBackend({ publicOrigin: (p) => `https://${BACKEND_TEST_NAME}:${p}` });
  const dir = await mkdtemp(join(tmpdir(), 'gh-ble-hci-'));
  let agent: Agent | undefined;
  let session: SessionManager | undefined;
  let client: BackendClient | undefined;
  let pipeline: Pipeline | undefined;
  const close = async (): Promise<void> => {
    pipeline?.close();
    await client?.stop();
    session?.stop();
    await agent?.close();
    await tb.close();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const gw = await tb.addGateway(gwId);
    const url = `https://${BACKEND_TEST_NAME}:${tb.backend.port}`;
    agent = createBackendDispatcher({ url, ca: tb.caPem, connectAddress: '127.0.0.1', connectTimeoutMs: 3_000 });
    const http = new BackendHttp({ url, dispatcher: agent });
    const backendKeys = new Map([[tb.backend.kid, tb.backend.publicKeyRaw]]);
    const stateDir = join(dir, 'state');
    session = new SessionManager({
      gw: gwId,
      http,
      tpmSigner: gw.tpm,
      tpmPublicKeySpki: new Uint8Array(gw.tpm.publicKey.export({ format: 'der', type: 'spki' })),
      backendKeys,
      stateDir,
    });
    if (!(await session.start())) throw new Error('the backend issued no session credential');
    client = new BackendClient({ gw: gwId, http, session, backendKeys, stateDir, ...BACKEND_CLIENT_DEFAULTS, revocationPollMs: 0 });
    await client.start();
    pipeline = new Pipeline({ gw: gwId, verifier: client, sessions: session });
    return { tb, gateway: gw, backendKeys, pipeline, client, close };
  } catch (err) {
    await close();
    throw err;
  }
}

export interface PeripheralInput extends Omit<BumblePeripheralSpec, 'seed' | 'address' | 'dev'> {
  n: number;
  /** Registered at the backend and allowed at this gateway (default true). */
  register?: boolean;
}

export interface HciRig {
  link: BumbleLink;
  central: NobleCentral;
  transport: BleTransport;
  exchanges: BleExchangeEvent[];
  /** Milliseconds from the transport's start to its first `poweredOn`. */
  poweredOnMs: number;
  exchangeOf(address: string, ms?: number): Promise<BleExchangeEvent>;
  stop(): Promise<void>;
}

/** A Bumble link with these peripherals and the gateway's BLE transport on its HCI UART. */
export async function startHciRig(
  backend: Backend,
  peripherals: PeripheralInput[],
  options: { transport?: Partial<BleTransportOptions>; operationTimeoutMs?: number; relays?: BumbleLinkOptions['relays'] } = {},
): Promise<HciRig> {
  const specs: BumblePeripheralSpec[] = [];
  for (const p of peripherals) {
    const dev = `hci-dev-${p.n}`;
    const signer = p.register === false ? Ed25519Signer.generate(dev) : await backend.tb.addDevice(dev, { gateways: [GW] });
    const { n: _n, register: _r, ...rest } = p;
    specs.push({ ...rest, dev, address: addressOf(p.n), seed: seedOf(signer) });
  }
  const link = await startBumbleLink({ peripherals: specs, backendKeys: backend.backendKeys, ...(options.relays ? { relays: options.relays } : {}) });
  let transport: BleTransport | undefined;
  try {
    const central = new NobleCentral({ hciUartPort: link.uartPath, operationTimeoutMs: options.operationTimeoutMs ?? 5_000, startTimeoutMs: 10_000 });
    transport = new BleTransport({
      central,
      pipeline: backend.pipeline,
      exchangeTimeoutMs: 10_000,
      denyList: { baseMs: 60_000 },
      ...options.transport,
    });
    const record = recordExchanges(transport);
    const t0 = performance.now();
    let poweredOnMs = Number.NaN;
    transport.on('state', (s) => {
      if (s === 'poweredOn' && Number.isNaN(poweredOnMs)) poweredOnMs = performance.now() - t0;
    });
    await transport.start();
    const t = transport;
    return {
      link,
      central,
      transport,
      exchanges: record.exchanges,
      get poweredOnMs() {
        return poweredOnMs;
      },
      exchangeOf: (address, ms = 15_000) => record.exchangeOf(address, ms),
      async stop() {
        // The central first: it closes its UART before the link process closes the pty.
        await t.stop();
        await link.stop();
      },
    };
  } catch (err) {
    await transport?.stop().catch(() => undefined);
    await link.stop();
    throw err;
  }
}

/** What `hciSuite()` gives a suite. */
export interface HciSuite {
  /** The suite's backend; only valid inside a test or a hook registered after `hciSuite()`. */
  readonly backend: Backend;
  /** A rig for the running test, stopped after it. */
  start(peripherals: PeripheralInput[], options?: Parameters<typeof startHciRig>[2]): Promise<HciRig>;
}

/**
 * The hooks every HCI suite repeats: one backend for the suite (`before`/`after`), and each
 * test's rig stopped in `afterEach`. Call it at the top of a `describe`.
 */
export function hciSuite(): HciSuite {
  let backend: Backend | undefined;
  let rig: HciRig | undefined;
  before(async () => {
    backend = await startBackend();
  });
  afterEach(async () => {
    await rig?.stop();
    rig = undefined;
  });
  after(async () => {
    await backend?.close();
  });
  const current = (): Backend => {
    if (backend === undefined) throw new Error('hciSuite(): the backend is read outside a test');
    return backend;
  };
  return {
    get backend(): Backend {
      return current();
    },
    async start(peripherals, options) {
      rig = await startHciRig(current(), peripherals, options);
      return rig;
    },
  };
}
