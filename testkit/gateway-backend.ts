/**
 * The gateway's side of the backend for suites that build the daemon's parts directly: the
 * TPM key in a real swtpm, the TLS dispatcher and BackendHttp towards a test backend, and the
 * session manager and backend client started on them.
 */
import { join } from 'node:path';
import { BackendClient } from '../daemon/backend-client/client.js';
import { BackendHttp, createBackendDispatcher } from '../daemon/backend-client/dispatcher.js';
import { SessionManager, type SessionManagerOptions } from '../daemon/backend-client/session.js';
import { provisionTpmKey } from '../tpm/provision.js';
import { TpmKeyStore } from '../tpm/tpm-key-store.js';
import type { TestBackend } from './backend.js';
import { BACKEND_CLIENT_DEFAULTS } from './component-defaults.js';
import { Swtpm } from './swtpm.js';

/** A swtpm with the gateway key provisioned under `dir/tpm`, open in a TPM key store. */
export interface TpmGatewayKey {
  swtpm: Swtpm;
  keyStore: TpmKeyStore;
  close(): Promise<void>;
}

export async function startTpmGatewayKey(dir: string): Promise<TpmGatewayKey> {
  const swtpm = await Swtpm.start();
  try {
    await provisionTpmKey({ tcti: swtpm.tcti, stateDir: join(dir, 'tpm') });
    const keyStore = new TpmKeyStore({ tcti: swtpm.tcti, stateDir: join(dir, 'tpm') });
    await keyStore.open();
    return {
      swtpm,
      keyStore,
      close: async () => {
        await keyStore.close();
        await swtpm.dispose();
      },
    };
  } catch (e) {
    await swtpm.dispose();
    throw e;
  }
}

/** BackendHttp towards `tb` over a dispatcher that trusts its CA; `close` closes the dispatcher. */
export function backendHttpFor(tb: TestBackend, connectTimeoutMs: number): { http: BackendHttp; close: () => Promise<void> } {
  const agent = createBackendDispatcher({ url: tb.backend.url, ca: tb.caPem, connectTimeoutMs });
  return { http: new BackendHttp({ url: tb.backend.url, dispatcher: agent }), close: () => agent.close() };
}

/** The backend's pinned key as the gateway's parts take it. */
export function backendKeysOf(tb: TestBackend): Map<string, Uint8Array> {
  return new Map([[tb.backend.kid, tb.backend.publicKeyRaw]]);
}

export interface GatewayBackendSide {
  sessions: SessionManager;
  client: BackendClient;
  stop(): Promise<void>;
}

/**
 * A session manager that has obtained its session, and a backend client (config defaults, no
 * revocation poll timer) on it, both keeping their state in `stateDir`.
 */
export async function startBackendSide(o: Pick<SessionManagerOptions, 'gw' | 'http' | 'tpmSigner' | 'tpmPublicKeySpki' | 'backendKeys' | 'stateDir' | 'clock'>): Promise<GatewayBackendSide> {
  const common = { gw: o.gw, http: o.http, backendKeys: o.backendKeys, stateDir: o.stateDir, ...(o.clock === undefined ? {} : { clock: o.clock }) };
  const sessions = new SessionManager({ ...common, tpmSigner: o.tpmSigner, ...(o.tpmPublicKeySpki === undefined ? {} : { tpmPublicKeySpki: o.tpmPublicKeySpki }) });
  if (!(await sessions.start())) {
    sessions.stop();
    throw new Error(`${o.gw}: no gateway session obtained from the backend`);
  }
  const client = new BackendClient({ ...common, session: sessions, ...BACKEND_CLIENT_DEFAULTS, revocationPollMs: 0 });
  await client.start();
  return {
    sessions,
    client,
    stop: async () => {
      await client.stop();
      sessions.stop();
    },
  };
}
