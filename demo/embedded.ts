/**
 * The embedded defaults: everything a gateway needs around it, on this machine — a demo PKI
 * (CA made once, kept), swtpm with a provisioned identity key (the software key store only when
 * swtpm is missing), the reference backend over HTTPS with this gateway and a set of devices
 * registered, and a validated config (also written as YAML for `gatehouse run --config`).
 * The backend runs in this process, or (`backendProcess`) as a child process of its own.
 * Used by `gatehouse demo`, the daemon tests and the benchmarks.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { createCa, issueCert, type CertFiles } from '../backend/pki.js';
import { SqliteStore } from '../backend/sqlite-store.js';
import type { BackendStore } from '../backend/store.js';
import { REGISTRY_FILE, startBackend, type RunningBackend } from '../backend/server.js';
import { ensureSigningKey } from '../backend/signing-key.js';
import { Ed25519Signer } from '../protocol/index.js';
import type { Policy } from '../protocol/index.js';
import { createKeyStore } from '../tpm/factory.js';
import { provisionTpmKey } from '../tpm/provision.js';
import { Swtpm } from '../tpm/swtpm-process.js';
import { DEFAULT_KEY_HANDLE, handleHex } from '../tpm/tpm-key-store.js';
import { formatIssue } from '../daemon/config/errors.js';
import type { GatehouseConfig } from '../daemon/config/schema.js';
import { validateConfig } from '../daemon/config/validate.js';
import { CodedError } from '../common/errors.js';
import { onPath } from '../common/child-process.js';
import { softwareKeyFile } from '../daemon/gateway.js';
import { BackendProcess } from './backend-process.js';
import type { ChildRole } from './leftovers.js';
import { applyOverrides, describeIssues, type ConfigInput } from './overrides.js';

export type EmbeddedErrorCode =
  /** The embedded system's options, generated config or overrides are unusable. */
  | 'GH_EMBEDDED_CONFIG'
  /** An in-process backend operation asked of a backend that runs as its own process. */
  | 'GH_EMBEDDED_BACKEND_PROCESS'
  /** The backend process serves another signing key than the demo's. */
  | 'GH_EMBEDDED_BACKEND_KEY';

/** The embedded demo system could not be composed. */
export class EmbeddedError extends CodedError<EmbeddedErrorCode> {}

export interface EmbeddedSystemOptions {
  /** State root; its `pki/` is kept across runs, everything else is made fresh. */
  dir: string;
  /** Devices registered at the backend, ids `${devicePrefix}-001`… */
  devices: number;
  devicePrefix?: string;
  gw?: string;
  /** MQTT port; default 1883 when free, else a free port. */
  mqttPort?: number;
  /** `auto` (default): swtpm when installed, else the software store. */
  keyStore?: 'auto' | 'swtpm' | 'software';
  /** Merged over the generated config input (one level deep per section). */
  config?: Record<string, Record<string, unknown>>;
  /** An operator's overrides (`gatehouse demo --config`), merged deeply after `config`. */
  overrides?: ConfigInput;
  /** Run the backend as a child process (`gatehouse-backend serve`) instead of in this one. */
  backendProcess?: boolean;
  /** Told each child process's pid as soon as it runs (the demo's pid file). */
  onChild?: (role: ChildRole, pid: number) => Promise<void> | void;
  /** Policy given to every registered device (the backend's default when absent). */
  policy?: Policy;
  /** Progress lines for people. */
  onStep?: (line: string) => void;
  /**
   * The origin the in-process backend verifies `@target-uri` against (default: its own listen
   * address). Tests that put a proxy in front of it give the proxy's origin.
   */
  backendOrigin?: string;
}

/** A device registered at the backend; the seed lets a peripheral in another process sign as it. */
export interface EmbeddedDevice {
  dev: string;
  seed: Uint8Array;
  signer: Ed25519Signer;
}

/** Where a gateway finds the backend: what its config pins. */
export interface BackendEndpoint {
  url: string;
  port: number;
  kid: string;
  publicKeyRaw: Uint8Array;
}

/** The backend in this process, or in a child process with a registry handle of ours. */
type BackendHandle = { kind: 'in-process'; running: RunningBackend } | { kind: 'process'; proc: BackendProcess; registry: BackendStore; endpoint: BackendEndpoint };

/** A running backend, TPM and config, ready for a gateway to start against. */
export class EmbeddedSystem {
  private constructor(
    readonly dir: string,
    readonly gw: string,
    readonly pki: { ca: CertFiles; server: CertFiles },
    readonly swtpm: Swtpm | undefined,
    backendHandle: BackendHandle,
    readonly devices: EmbeddedDevice[],
    readonly config: GatehouseConfig,
    readonly configFile: string,
    readonly tpmPublicKeyPem: string,
    /** The generated config input before the operator's overrides (SIGHUP merges them again). */
    readonly baseConfigInput: ConfigInput,
  ) {
    this.#backendHandle = backendHandle;
  }

  #backendHandle: BackendHandle;

  /** The in-process backend (not there with `backendProcess`). */
  get backend(): RunningBackend {
    if (this.#backendHandle.kind === 'process') throw new EmbeddedError('GH_EMBEDDED_BACKEND_PROCESS', 'the backend runs as its own process');
    return this.#backendHandle.running;
  }

  /** The backend process, with `backendProcess`. */
  get backendProcess(): BackendProcess | undefined {
    return this.#backendHandle.kind === 'process' ? this.#backendHandle.proc : undefined;
  }

  get endpoint(): BackendEndpoint {
    return this.#backendHandle.kind === 'process' ? this.#backendHandle.endpoint : this.#backendHandle.running;
  }

  /** The backend's registry (the same SQLite file in either mode). */
  get registry(): BackendStore {
    return this.#backendHandle.kind === 'process' ? this.#backendHandle.registry : this.#backendHandle.running.store;
  }

  /** The backend's pinned keys, as peripherals hold them. */
  get backendKeys(): Map<string, Uint8Array> {
    return new Map([[this.endpoint.kid, this.endpoint.publicKeyRaw]]);
  }

  static async start(opts: EmbeddedSystemOptions): Promise<EmbeddedSystem> {
    const say = opts.onStep ?? (() => undefined);
    const d = opts.dir;
    const gw = opts.gw ?? 'gw-demo';
    for (const sub of ['backend', 'gateway', 'swtpm', 'run']) await rm(join(d, sub), { recursive: true, force: true });
    for (const sub of ['pki', 'backend', 'gateway', 'run']) await mkdir(join(d, sub), { recursive: true, mode: 0o700 });

    const pki = await makePki(join(d, 'pki'), say);
    const paths = embeddedPaths(d);
    const stateDir = paths.stateDir;
    const useSwtpm = opts.keyStore === 'swtpm' || (opts.keyStore !== 'software' && onPath('swtpm') !== undefined);
    let swtpm: Swtpm | undefined;
    let backend: BackendHandle | undefined;
    try {
      let tcti = 'device:/dev/tpmrm0';
      if (useSwtpm) {
        // Killed by the kernel if this process dies: no swtpm outlives a crashed demo or test.
        swtpm = await Swtpm.start({ stateDir: join(d, 'swtpm'), dieWithParent: true });
        if (swtpm.pid !== undefined) await opts.onChild?.('swtpm', swtpm.pid);
        tcti = swtpm.tcti;
        const p = await provisionTpmKey({ tcti, stateDir, handle: DEFAULT_KEY_HANDLE });
        say(`[2/5] TPM         swtpm (${tcti}), P-256 key ${p.action} at ${handleHex(DEFAULT_KEY_HANDLE)}, thumbprint ${Buffer.from(p.thumbprint).toString('hex').slice(0, 16)}…`);
      } else {
        say('[2/5] key store   WARNING: swtpm not found: software key store (demo only; ./setup.sh installs swtpm)');
      }
      const keyCfg = { kind: useSwtpm ? ('tpm' as const) : ('software' as const), tcti, handle: handleHex(DEFAULT_KEY_HANDLE), signRatePerSec: 0.1, stateDir, production: false };
      // Read the public key the way the daemon will open it, then let go: the daemon opens it itself.
      const keyStore = createKeyStore({ ...keyCfg, softwareKeyFile: softwareKeyFile(stateDir) });
      await keyStore.open();
      const tpmPublicKeyPem = keyStore.publicKeyPem();
      await keyStore.close();

      backend = opts.backendProcess === true ? await startBackendProcess(d, pki, opts.onChild) : { kind: 'in-process', running: await startBackend({ dataDir: join(d, 'backend'), tls: { certPem: pki.server.certPem, keyPem: pki.server.keyPem }, publicOrigin: opts.backendOrigin ?? ((port) => `https://127.0.0.1:${port}`) }) };
      const registry = backend.kind === 'process' ? backend.registry : backend.running.store;
      const endpoint = backend.kind === 'process' ? backend.endpoint : backend.running;
      await registry.addGateway({ id: gw, tpmPublicKeyPem });
      const where = backend.kind === 'process' ? `process pid ${backend.proc.pid}` : 'in this process';
      say(`[3/5] backend     ${endpoint.url} (reference verifier, SQLite registry, pk_S kid ${endpoint.kid}; ${where})`);
      const prefix = opts.devicePrefix ?? 'demo-sensor';
      const devices = Array.from({ length: opts.devices }, (_, i): EmbeddedDevice => {
        const dev = `${prefix}-${String(i + 1).padStart(3, '0')}`;
        const seed = new Uint8Array(randomBytes(32));
        return { dev, seed, signer: Ed25519Signer.fromSeed(seed, dev) };
      });
      await registry.addDevices(devices.map((x) => ({ id: x.dev, publicKey: x.signer.publicKeyRaw, gateways: [gw], ...(opts.policy ? { policy: opts.policy } : {}) })));

      const mqttPort = opts.mqttPort ?? ((await portIsFree(1883)) ? 1883 : await freePort());
      const base = { gw, stateDir, runtimeDir: paths.runtimeDir, kind: keyCfg.kind, tcti, backend: endpoint, caFile: pki.ca.certPath, mqttPort, socketPath: paths.socketPath };
      const baseInput = gatewayConfigInput(base, { backend: { revocationPollSec: 5 } });
      for (const [section, values] of Object.entries(opts.config ?? {})) baseInput[section] = { ...(baseInput[section] ?? {}), ...values };
      let input: ConfigInput = baseInput;
      let config: GatehouseConfig;
      if (opts.overrides !== undefined) {
        const m = applyOverrides(baseInput, opts.overrides);
        if (!m.ok) throw new EmbeddedError('GH_EMBEDDED_CONFIG', describeIssues('config overrides', m.issues));
        input = m.input;
        config = m.config;
      } else {
        const r = validateConfig(input);
        if (!r.ok) throw new EmbeddedError('GH_EMBEDDED_CONFIG', `embedded config invalid: ${r.issues.map(formatIssue).join('; ')}`);
        config = r.config;
      }
      const configFile = join(d, 'gatehouse.yaml');
      await writeConfigInput(configFile, input);
      return new EmbeddedSystem(d, gw, pki, swtpm, backend, devices, config, configFile, tpmPublicKeyPem, baseInput);
    } catch (err) {
      await closeBackend(backend);
      await swtpm?.dispose();
      throw err;
    }
  }

  /** Stop the backend (fault tests): the gateway sees connection refused. */
  async stopBackend(): Promise<void> {
    if (this.#backendHandle.kind === 'process') await this.#backendHandle.proc.stop();
    else await this.#backendHandle.running.close();
  }

  /** Start the backend again on the same port, data and keys. */
  async restartBackend(): Promise<void> {
    if (this.#backendHandle.kind === 'process') throw new EmbeddedError('GH_EMBEDDED_BACKEND_PROCESS', 'restart the backend process with its serve command');
    this.#backendHandle = {
      kind: 'in-process',
      running: await startBackend({
        dataDir: join(this.dir, 'backend'),
        port: this.#backendHandle.running.port,
        tls: { certPem: this.pki.server.certPem, keyPem: this.pki.server.keyPem },
        publicOrigin: this.#backendHandle.running.origin,
      }),
    };
  }

  /** Kill the child processes now (SIGKILL), for exit paths that cannot wait for close(). */
  killChildrenNow(): void {
    if (this.#backendHandle.kind === 'process') this.#backendHandle.proc.killNow();
    const pid = this.swtpm?.pid;
    if (pid !== undefined) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }

  async close(): Promise<void> {
    await closeBackend(this.#backendHandle).catch(() => undefined);
    await this.swtpm?.dispose();
  }
}

/** The config input as the YAML file the demo leaves for `gatehouse run --config` and `check`. */
export async function writeConfigInput(file: string, input: ConfigInput): Promise<void> {
  await writeFile(file, `# Written by the embedded defaults (demo/embedded.ts).\n${stringify(input)}`, { mode: 0o600 });
}

async function closeBackend(b: BackendHandle | undefined): Promise<void> {
  if (b === undefined) return;
  if (b.kind === 'in-process') {
    await b.running.close();
    return;
  }
  await b.registry.close();
  await b.proc.stop();
}

/**
 * `gatehouse-backend serve` as a child on a free port. The registry is the backend's SQLite file
 * (WAL): this process adds the gateway and devices to it while the child serves.
 */
async function startBackendProcess(d: string, pki: { server: CertFiles }, onChild: EmbeddedSystemOptions['onChild']): Promise<BackendHandle> {
  const dataDir = join(d, 'backend');
  const { signer } = await ensureSigningKey(dataDir);
  const registry = SqliteStore.open(join(dataDir, REGISTRY_FILE));
  try {
    const port = await freePort();
    const proc = await BackendProcess.start({ dataDir, certFile: pki.server.certPath, keyFile: pki.server.keyPath, port, logFile: join(d, 'backend.log') });
    await onChild?.('backend', proc.pid);
    if (proc.kid !== signer.kid) {
      await proc.stop();
      throw new EmbeddedError('GH_EMBEDDED_BACKEND_KEY', `the backend process serves kid ${proc.kid}, expected ${signer.kid}`);
    }
    return { kind: 'process', proc, registry, endpoint: { url: proc.url, port, kid: signer.kid, publicKeyRaw: signer.publicKeyRaw } };
  } catch (err) {
    await registry.close();
    throw err;
  }
}

/** Where the embedded system keeps what under its state root `d`. */
export function embeddedPaths(d: string): { stateDir: string; runtimeDir: string; socketPath: string; caFile: string } {
  return { stateDir: join(d, 'gateway'), runtimeDir: join(d, 'run'), socketPath: join(d, 'run', 'status.sock'), caFile: join(d, 'pki', 'ca.pem') };
}

/** What a gateway config needs to point at an embedded backend and TPM. */
export interface GatewayConfigBase {
  gw: string;
  stateDir: string;
  runtimeDir: string;
  kind: 'tpm' | 'software';
  tcti: string;
  backend: Pick<BackendEndpoint, 'url' | 'kid' | 'publicKeyRaw'>;
  caFile: string;
  mqttPort: number;
  socketPath: string;
}

/**
 * The config input (before validation) of a gateway against an embedded backend and TPM;
 * `over` is merged section by section. Used by the demo, the fault tests and the benchmarks.
 */
export function gatewayConfigInput(b: GatewayConfigBase, over: Record<string, Record<string, unknown>> = {}): Record<string, Record<string, unknown>> {
  const input: Record<string, Record<string, unknown>> = {
    gateway: { id: b.gw, production: false, stateDir: b.stateDir, runtimeDir: b.runtimeDir },
    tpm: { kind: b.kind, tcti: b.tcti },
    backend: {
      url: b.backend.url,
      caFile: b.caFile,
      backendPublicKey: Buffer.from(b.backend.publicKeyRaw).toString('base64url'),
      backendKid: b.backend.kid,
    },
    mqtt: { tcp: { enabled: true, host: '127.0.0.1', port: b.mqttPort } },
    status: { socketPath: b.socketPath },
    log: { level: 'info' },
  };
  for (const [section, values] of Object.entries(over)) input[section] = { ...(input[section] ?? {}), ...values };
  return input;
}

async function makePki(dir: string, say: (l: string) => void): Promise<{ ca: CertFiles; server: CertFiles }> {
  const made = existsSync(join(dir, 'ca.pem')) && existsSync(join(dir, 'backend.pem'));
  const ca = made ? await loadCertFiles(dir, 'ca') : await createCa(dir, { name: 'ca', cn: 'Gatehouse demo CA' });
  const server = made ? await loadCertFiles(dir, 'backend') : await issueCert(dir, ca, { name: 'backend', sans: ['backend.gatehouse.local', '127.0.0.1'] });
  say(`[1/5] PKI         ${made ? 'reusing' : 'made'} the demo CA and backend certificate in ${dir}`);
  return { ca, server };
}

async function loadCertFiles(dir: string, name: string): Promise<CertFiles> {
  const certPath = join(dir, `${name}.pem`);
  const keyPath = join(dir, `${name}.key`);
  return { certPath, keyPath, certPem: await readFile(certPath, 'utf8'), keyPem: await readFile(keyPath, 'utf8') };
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const s = createServer();
    s.once('error', () => done(false));
    s.listen({ host: '127.0.0.1', port, exclusive: true }, () => s.close(() => done(true)));
  });
}

/** A free loopback TCP port (bound, then released). */
export function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const a = s.address();
      const p = typeof a === 'object' && a !== null ? a.port : 0;
      s.close(() => done(p));
    });
  });
}
