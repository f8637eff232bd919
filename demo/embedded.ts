/**
 * The embedded defaults: everything a gateway needs around it, on this machine — a demo PKI
 * (CA made once, kept), swtpm with a provisioned identity key (the software key store only when
 * swtpm is missing), the reference backend over HTTPS with this gateway and a set of devices
 * registered, and a validated config (also written as YAML for `gatehouse run --config`).
 * Used by `gatehouse demo`, the daemon tests and the benchmarks.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { createCa, issueCert, type CertFiles } from '../backend/pki.js';
import { startBackend, type RunningBackend } from '../backend/server.js';
import { Ed25519Signer } from '../protocol/index.js';
import type { Policy } from '../protocol/index.js';
import { createKeyStore } from '../tpm/factory.js';
import { provisionTpmKey } from '../tpm/provision.js';
import { Swtpm } from '../tpm/swtpm-process.js';
import { DEFAULT_KEY_HANDLE, handleHex } from '../tpm/tpm-key-store.js';
import { formatIssue } from '../daemon/config/errors.js';
import type { GatehouseConfig } from '../daemon/config/schema.js';
import { validateConfig } from '../daemon/config/validate.js';
import { GatehouseError } from '../common/errors.js';
import { softwareKeyFile } from '../daemon/gateway.js';

export class EmbeddedError extends GatehouseError {}

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
  /** Policy given to every registered device (the backend's default when absent). */
  policy?: Policy;
  /** Progress lines for people. */
  onStep?: (line: string) => void;
}

/** A device registered at the backend; the seed lets a peripheral in another process sign as it. */
export interface EmbeddedDevice {
  dev: string;
  seed: Uint8Array;
  signer: Ed25519Signer;
}

/** A running backend, TPM and config, ready for a gateway to start against. */
export class EmbeddedSystem {
  private constructor(
    readonly dir: string,
    readonly gw: string,
    readonly pki: { ca: CertFiles; server: CertFiles },
    readonly swtpm: Swtpm | undefined,
    private backendHandle: RunningBackend,
    readonly devices: EmbeddedDevice[],
    readonly config: GatehouseConfig,
    readonly configFile: string,
    readonly tpmPublicKeyPem: string,
  ) {}

  get backend(): RunningBackend {
    return this.backendHandle;
  }

  /** The backend's pinned keys, as peripherals hold them. */
  get backendKeys(): Map<string, Uint8Array> {
    return new Map([[this.backendHandle.kid, this.backendHandle.publicKeyRaw]]);
  }

  static async start(opts: EmbeddedSystemOptions): Promise<EmbeddedSystem> {
    const say = opts.onStep ?? (() => undefined);
    const d = opts.dir;
    const gw = opts.gw ?? 'gw-demo';
    for (const sub of ['backend', 'gateway', 'swtpm', 'run']) await rm(join(d, sub), { recursive: true, force: true });
    for (const sub of ['pki', 'backend', 'gateway', 'run']) await mkdir(join(d, sub), { recursive: true, mode: 0o700 });

    const pki = await makePki(join(d, 'pki'), say);
    const stateDir = join(d, 'gateway');
    const useSwtpm = opts.keyStore === 'swtpm' || (opts.keyStore !== 'software' && onPath('swtpm'));
    let swtpm: Swtpm | undefined;
    let backend: RunningBackend | undefined;
    try {
      let tcti = 'device:/dev/tpmrm0';
      if (useSwtpm) {
        swtpm = await Swtpm.start({ stateDir: join(d, 'swtpm') });
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

      backend = await startBackend({ dataDir: join(d, 'backend'), tls: { certPem: pki.server.certPem, keyPem: pki.server.keyPem }, publicOrigin: (port) => `https://127.0.0.1:${port}` });
      backend.registry.addGateway({ id: gw, tpmPublicKeyPem });
      say(`[3/5] backend     ${backend.url} (reference verifier, SQLite registry, pk_S kid ${backend.kid})`);
      const prefix = opts.devicePrefix ?? 'demo-sensor';
      const devices = Array.from({ length: opts.devices }, (_, i): EmbeddedDevice => {
        const dev = `${prefix}-${String(i + 1).padStart(3, '0')}`;
        const seed = new Uint8Array(randomBytes(32));
        return { dev, seed, signer: Ed25519Signer.fromSeed(seed, dev) };
      });
      backend.registry.addDevices(devices.map((x) => ({ id: x.dev, publicKey: x.signer.publicKeyRaw, gateways: [gw], ...(opts.policy ? { policy: opts.policy } : {}) })));

      const mqttPort = opts.mqttPort ?? ((await portIsFree(1883)) ? 1883 : await freePort());
      const base = { gw, stateDir, runtimeDir: join(d, 'run'), kind: keyCfg.kind, tcti, backend, caFile: pki.ca.certPath, mqttPort, socketPath: join(d, 'run', 'status.sock') };
      const input = gatewayConfigInput(base, { backend: { revocationPollSec: 5 } });
      for (const [section, values] of Object.entries(opts.config ?? {})) input[section] = { ...(input[section] ?? {}), ...values };
      const r = validateConfig(input);
      if (!r.ok) throw new EmbeddedError('GH_EMBEDDED_CONFIG', `embedded config invalid: ${r.issues.map(formatIssue).join('; ')}`);
      const configFile = join(d, 'gatehouse.yaml');
      await writeFile(configFile, `# Written by the embedded defaults (demo/embedded.ts).\n${stringify(input)}`, { mode: 0o600 });
      return new EmbeddedSystem(d, gw, pki, swtpm, backend, devices, r.config, configFile, tpmPublicKeyPem);
    } catch (err) {
      await backend?.close();
      await swtpm?.dispose();
      throw err;
    }
  }

  /** Stop the backend (fault tests): the gateway sees connection refused. */
  async stopBackend(): Promise<void> {
    await this.backendHandle.close();
  }

  /** Start the backend again on the same port, data and keys. */
  async restartBackend(): Promise<void> {
    this.backendHandle = await startBackend({
      dataDir: join(this.dir, 'backend'),
      port: this.backendHandle.port,
      tls: { certPem: this.pki.server.certPem, keyPem: this.pki.server.keyPem },
      publicOrigin: this.backendHandle.origin,
    });
  }

  async close(): Promise<void> {
    await this.backendHandle.close().catch(() => undefined);
    await this.swtpm?.dispose();
  }
}

/** What a gateway config needs to point at an embedded backend and TPM. */
export interface GatewayConfigBase {
  gw: string;
  stateDir: string;
  runtimeDir: string;
  kind: 'tpm' | 'software';
  tcti: string;
  backend: RunningBackend;
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

function onPath(bin: string): boolean {
  return (process.env.PATH ?? '').split(':').some((p) => p !== '' && existsSync(join(p, bin)));
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
