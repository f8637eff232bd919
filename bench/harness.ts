/**
 * The bench environment: PKI, swtpm with a provisioned key, the reference backend (in this
 * process: the harness registers devices with the registry's bulk insert), registered devices,
 * load-generator processes, and the daemon or the echo broker as child processes. Memory comes
 * from /proc/PID/status, never from the process itself.
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { createCa, issueCert, type CertFiles } from '../backend/pki.js';
import { startBackend, type RunningBackend } from '../backend/server.js';
import { Ed25519Signer } from '../protocol/index.js';
import { provisionTpmKey } from '../tpm/provision.js';
import { Swtpm } from '../tpm/swtpm-process.js';
import { DEFAULT_KEY_HANDLE, TpmKeyStore } from '../tpm/tpm-key-store.js';
import type { GenCommand, GenDevice, GenReport } from './load-generator.js';
import type { GatewayWorkerStats } from './gateway-worker.js';
import { freePort, gatewayConfigInput } from '../demo/embedded.js';
import { TPM_AUTH_FILE } from '../tpm/key-auth-file.js';
import { mergeInput, type ConfigInput } from '../demo/overrides.js';
import { ask, exited } from './ipc.js';

export const GW = 'gw-bench';
const DIST = fileURLToPath(new URL('./results/.dist/bench/', import.meta.url));

/** VmRSS and VmHWM (peak) of a process, MB. */
export function memoryOf(pid: number): { rssMb: number; peakMb: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
  return { rssMb: kb('VmRSS') / 1024, peakMb: kb('VmHWM') / 1024 };
}

/**
 * The node flags the systemd unit starts the daemon with (`ExecStart=/usr/bin/node FLAGS
 * …/cli/gatehouse.js run`). The bench's daemon gets exactly these, so it measures what ships.
 */
export function shippedNodeFlags(unitFile = fileURLToPath(new URL('../systemd/gatehouse.service', import.meta.url))): string[] {
  const m = /^ExecStart=\/usr\/bin\/node((?: --\S+)*) \S+\/cli\/gatehouse\.js run/m.exec(readFileSync(unitFile, 'utf8'));
  if (m === null) throw new Error(`${unitFile}: ExecStart is not "/usr/bin/node [--flag …] …/cli/gatehouse.js run …"`);
  return (m[1] ?? '').split(' ').filter((f) => f !== '');
}

/** The unit's `LimitNOFILE=` (the descriptor limit the shipped daemon runs with). */
export function shippedNofile(unitFile = fileURLToPath(new URL('../systemd/gatehouse.service', import.meta.url))): number {
  const m = /^LimitNOFILE=(\d+)$/m.exec(readFileSync(unitFile, 'utf8'));
  if (m === null) throw new Error(`${unitFile}: no LimitNOFILE=N`);
  return Number(m[1]);
}

export function forkWorker(file: string, args: string[]): ChildProcess {
  // The daemon runs with the node flags of the systemd unit.
  const execArgv = file === 'gateway-worker.js' ? shippedNodeFlags() : [];
  // BENCH_CPU_PROF=DIR profiles the daemon (node --cpu-prof) to find its hot path.
  const prof = process.env.BENCH_CPU_PROF;
  // BENCH_CPU_PROF_GENERATORS=1 profiles the load generators too.
  const profiled = file === 'gateway-worker.js' || ((file === 'load-generator.js' || file === 'dataplane-generator.js') && process.env.BENCH_CPU_PROF_GENERATORS === '1');
  if (prof !== undefined && profiled) execArgv.push('--cpu-prof', '--cpu-prof-dir', prof);
  // BENCH_DAEMON_FLAGS: node flags for the daemon (e.g. a V8 heap cap), to compare memory settings.
  if (file === 'gateway-worker.js' && process.env.BENCH_DAEMON_FLAGS !== undefined) execArgv.push(...process.env.BENCH_DAEMON_FLAGS.split(' ').filter((f) => f !== ''));
  // BENCH_DAEMON_DIST: another build of the daemon (a copy of bench/results/.dist/bench/), to A/B two commits (bench/ab.ts).
  const dist = file === 'gateway-worker.js' ? (process.env.BENCH_DAEMON_DIST ?? DIST) : DIST;
  return fork(join(dist, file), args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
}

/** A forked load generator. */
export class Generator {
  readonly child: ChildProcess;
  constructor() {
    this.child = forkWorker('load-generator.js', []);
  }
  run(cmd: GenCommand, timeoutMs = 120_000): Promise<GenReport> {
    return ask<GenReport>(this.child, cmd, cmd.op, timeoutMs);
  }
  async kill(): Promise<void> {
    this.child.kill('SIGKILL');
    await exited(this.child);
  }
}

/** A daemon (gateway-worker) or echo broker child process. */
export class Daemon {
  private constructor(
    readonly child: ChildProcess,
    readonly port: number,
  ) {}
  /** `nofile`: RLIMIT_NOFILE for the child (soft and hard), set with prlimit(1) right after the fork, as the unit's LimitNOFILE= would. */
  static async start(file: 'gateway-worker.js' | 'echo-worker.js', args: string[], o: { nofile?: number } = {}): Promise<Daemon> {
    const child = forkWorker(file, args);
    if (o.nofile !== undefined && child.pid !== undefined) execFileSync('prlimit', ['--pid', String(child.pid), `--nofile=${o.nofile}:${o.nofile}`]);
    const ready = await Promise.race([
      ask<{ port: number }>(child, undefined, 'ready', 60_000),
      exited(child).then(() => {
        throw new Error(`${file} exited before it was ready`);
      }),
    ]);
    return new Daemon(child, ready.port);
  }
  get pid(): number {
    return this.child.pid ?? 0;
  }
  memory(): { rssMb: number; peakMb: number } {
    return memoryOf(this.pid);
  }
  stats(): Promise<GatewayWorkerStats> {
    return ask<GatewayWorkerStats>(this.child, { op: 'stats' }, 'stats', 10_000);
  }
  async stop(): Promise<void> {
    const done = exited(this.child);
    this.child.send({ op: 'stop' });
    const t = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await done;
    clearTimeout(t);
  }
}

/**
 * The storm capacity the docs promise (docs/operations.md "Capacity": the operator sets
 * `mqtt.maxConnections` to the storm it plans for; the unit's LimitNOFILE 16384 holds it).
 */
export const SHIPPED_STORM_CAPACITY = 10_000;
/** What the `shipped` profile changes from the shipped config (said in the bench output). */
export const SHIPPED_LIFTED =
  'mqtt.maxConnections 10000 (the documented storm capacity); rate limits lifted: pipeline.rateLimits.* and mqtt.acceptsPerSourcePerSec 100000, mqtt.maxConnectionsPerSource 100000 (every simulated peripheral comes from 127.0.0.1, as from behind one NAT)';

export interface BenchConfigOptions {
  batchMax?: number;
  logLevel?: string;
  stateDir?: string;
  /** `lifted` (default) or `shipped`: see BenchEnv.writeConfig. */
  profile?: 'lifted' | 'shipped';
  /** Sections merged last (deep). */
  config?: ConfigInput;
}

export interface BenchDevice extends GenDevice {
  publicKey: Uint8Array;
}

/** Everything but the daemon. */
export class BenchEnv {
  devices: BenchDevice[] = [];
  private constructor(
    readonly dir: string,
    readonly swtpm: Swtpm,
    readonly backend: RunningBackend,
    readonly ca: CertFiles,
  ) {}

  static async create(dir: string, deviceCount: number): Promise<BenchEnv> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const ca = await createCa(join(dir, 'pki'), { name: 'ca', cn: 'Gatehouse bench CA' });
    const server = await issueCert(join(dir, 'pki'), ca, { name: 'backend', sans: ['127.0.0.1'] });
    const swtpm = await Swtpm.start({ stateDir: join(dir, 'swtpm') });
    await provisionTpmKey({ tcti: swtpm.tcti, stateDir: join(dir, 'tpm-state'), handle: DEFAULT_KEY_HANDLE });
    const ks = new TpmKeyStore({ tcti: swtpm.tcti, stateDir: join(dir, 'tpm-state'), handle: DEFAULT_KEY_HANDLE });
    await ks.open();
    const tpmPem = ks.publicKeyPem();
    await ks.close();
    const backend = await startBackend({ dataDir: join(dir, 'backend'), tls: { certPem: server.certPem, keyPem: server.keyPem }, publicOrigin: (port) => `https://127.0.0.1:${port}` });
    await backend.store.addGateway({ id: GW, tpmPublicKeyPem: tpmPem });
    const env = new BenchEnv(dir, swtpm, backend, ca);
    env.devices = Array.from({ length: deviceCount }, (_, i) => {
      const seed = randomBytes(32);
      const dev = `bench-${String(i).padStart(5, '0')}`;
      return { dev, seed: seed.toString('base64'), publicKey: Ed25519Signer.fromSeed(new Uint8Array(seed), dev).publicKeyRaw };
    });
    // The registry's bulk insert (one transaction): registering 10,000 devices one call at a time is not what is measured.
    await backend.store.addDevices(env.devices.map((d) => ({ id: d.dev, publicKey: d.publicKey, gateways: [GW] })));
    return env;
  }

  get tcti(): string {
    return this.swtpm.tcti;
  }

  /**
   * The daemon config for a bench run. `lifted` (the default): the limits that would cap
   * throughput are lifted (rate limits, connection caps, queues); everything else is the shipped
   * default. `shipped`: the shipped config with the documented storm capacity
   * (`mqtt.maxConnections` 10000, docs/operations.md "Capacity") and only the rate limits lifted
   * (SHIPPED_LIFTED names them). `config`: further sections merged last (a phase's own settings).
   */
  async writeConfig(name: string, o: BenchConfigOptions = {}): Promise<{ file: string; log: string }> {
    const stateDir = o.stateDir ?? join(this.dir, `state-${name}`);
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    // Each run starts from fresh state (no leases) with the one provisioned key's record.
    await copyFile(join(this.dir, 'tpm-state', 'tpm-key.json'), join(stateDir, 'tpm-key.json'));
    await copyFile(join(this.dir, 'tpm-state', TPM_AUTH_FILE), join(stateDir, TPM_AUTH_FILE));
    const profile: ConfigInput =
      o.profile === 'shipped'
        ? {
            mqtt: { maxConnections: SHIPPED_STORM_CAPACITY, acceptsPerSourcePerSec: 100_000, maxConnectionsPerSource: 100_000 },
            pipeline: { rateLimits: { perConnectionPerMin: 100_000, perDevicePerMin: 100_000, globalPerMin: 10_000_000 } },
          }
        : {
            backend: { queueLimit: 100_000 },
            mqtt: { maxConnections: 100_000, maxUnwelcomed: 100_000, maxConnectionsPerSource: 100_000, acceptsPerSourcePerSec: 100_000 },
            pipeline: {
              maxOutstandingChallenges: 1_000_000,
              maxPendingHellos: 100_000,
              rateLimits: { perConnectionPerMin: 100_000, perDevicePerMin: 100_000, globalPerMin: 10_000_000 },
            },
          };
    const own: ConfigInput = {
      ...(o.batchMax !== undefined ? { backend: { batch: { maxSize: o.batchMax } } } : {}),
      log: { level: o.logLevel ?? 'info', format: 'json' },
    };
    const config = gatewayConfigInput(
      {
        gw: GW,
        stateDir,
        runtimeDir: join(this.dir, 'run'),
        kind: 'tpm',
        tcti: this.tcti,
        backend: this.backend,
        caFile: this.ca.certPath,
        mqttPort: await freePort(),
        socketPath: join(this.dir, 'run', `status-${name}.sock`),
      },
      mergeInput(mergeInput(profile, own), o.config ?? {}) as Record<string, Record<string, unknown>>,
    );
    await mkdir(join(this.dir, 'run'), { recursive: true, mode: 0o700 });
    const file = join(this.dir, `gatehouse-${name}.yaml`);
    await writeFile(file, stringify(config), { mode: 0o600 });
    return { file, log: join(this.dir, `gatehouse-${name}.log`) };
  }

  async dispose(): Promise<void> {
    await this.backend.close();
    await this.swtpm.dispose();
    await rm(this.dir, { recursive: true, force: true });
  }
}

