/**
 * What the fault suites share: a real swtpm with a provisioned key, the reference backend over
 * HTTPS (restartable on the same port and data), registered devices, the gateway (in-process
 * through the Gateway class, with an injected clock and a log watcher), and peripherals that are
 * the reference peripheral library over a raw MQTT client (cheap enough for thousands).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import winston, { type Logger } from 'winston';
import { createCa, issueCert, type CertFiles } from '../backend/pki.js';
import { startBackend, type RunningBackend } from '../backend/server.js';
import type { TimerClock } from '../common/clock.js';
import { validateConfig } from '../daemon/config/validate.js';
import type { GatehouseConfig } from '../daemon/config/schema.js';
import { Gateway } from '../daemon/gateway.js';
import { Ed25519Signer } from '../protocol/index.js';
import { ReferencePeripheral } from '../peripherals/reference/peripheral.js';
import { provisionTpmKey } from '../tpm/provision.js';
import { Swtpm } from '../tpm/swtpm-process.js';
import { DEFAULT_KEY_HANDLE, TpmKeyStore } from '../tpm/tpm-key-store.js';
import { RawMqttClient } from './mqtt-wire.js';
import { freePort, gatewayConfigInput } from '../demo/embedded.js';
import { TPM_AUTH_FILE } from '../tpm/key-auth-file.js';

export const GW = 'gw-faults';

const CLI = fileURLToPath(new URL('../cli/gatehouse.ts', import.meta.url));

/** `gatehouse run` as systemd would start it; resolves once it logs that it runs. */
export async function startDaemon(configFile: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'run', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NOTIFY_SOCKET: '' } });
  let out = '';
  let done = false;
  const port = new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`daemon not running within 60 s: ${out.slice(-2000)}`)), 60_000);
    // Log lines go to stdout or stderr by level; both are read (and drained) to the end.
    const onData = (b: Buffer): void => {
      if (done) return;
      out += b.toString('utf8');
      const line = out.split('\n').find((l) => l.includes('"gateway running"'));
      if (line === undefined) return;
      done = true;
      clearTimeout(timer);
      resolve(Number(/"port":(\d+)/.exec(line)?.[1] ?? 0));
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`daemon exited (${String(code)}) before running: ${out.slice(-2000)}`));
    });
  });
  try {
    return { child, port: await port };
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
}

export function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/** SIGKILL `child` unless it has exited (an after hook's cleanup); resolves once it has. */
export async function killIfRunning(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGKILL');
  await exited(child);
}

/** A logger whose lines (JSON) are remembered, so a test can wait for one. */
export class LogWatch {
  readonly lines: Record<string, unknown>[] = [];
  readonly #events = new EventEmitter();

  #line(info: Record<string, unknown>): void {
    this.lines.push(info);
    if (this.lines.length > 20_000) this.lines.splice(0, 10_000);
    this.#events.emit('line', info);
  }

  /** Resolves with the first matching line logged after line number `from` (default: any). */
  waitFor(match: (l: Record<string, unknown>) => boolean, timeoutMs: number, what: string, from = 0): Promise<Record<string, unknown>> {
    const seen = this.lines.slice(from).find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#events.off('line', on);
        reject(new Error(`log line "${what}" not seen within ${timeoutMs} ms`));
      }, timeoutMs);
      const on = (l: Record<string, unknown>): void => {
        if (!match(l)) return;
        clearTimeout(timer);
        this.#events.off('line', on);
        resolve(l);
      };
      this.#events.on('line', on);
    });
  }

  /** Also remembers the JSON log lines `child` (a daemon) writes on stdout and stderr. */
  follow(child: ChildProcess): void {
    for (const s of [child.stdout, child.stderr]) {
      let rest = '';
      s?.on('data', (b: Buffer) => {
        const lines = (rest + b.toString('utf8')).split('\n');
        rest = lines.pop() ?? '';
        for (const l of lines) if (l.startsWith('{')) this.#line(JSON.parse(l) as Record<string, unknown>);
      });
    }
  }

  logger(): Logger {
    const stream = new Writable({
      write: (chunk: Buffer, _enc, done) => {
        for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') this.#line(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    return winston.createLogger({ level: 'info', format: winston.format.json(), transports: [new winston.transports.Stream({ stream })] });
  }
}

/** Where a gateway and its peripherals find a backend: this env's own, or replicas behind a balancer. */
export type BackendTarget = Pick<RunningBackend, 'url' | 'kid' | 'publicKeyRaw'>;

export interface Device {
  dev: string;
  signer: Ed25519Signer;
}

export type Outcome =
  | { kind: 'welcome' }
  | { kind: 'reject'; reason: string; retry: number }
  | { kind: 'welcome-refused'; code: string }
  | { kind: 'no-answer'; why: string };

/** A peripheral: the reference library over one raw MQTT connection. */
export class FaultPeripheral {
  #client: RawMqttClient | undefined;
  #waiter: ((b: Buffer | undefined) => void) | undefined;
  readonly ref: ReferencePeripheral;

  constructor(
    readonly device: Device,
    backend: Pick<BackendTarget, 'kid' | 'publicKeyRaw'>,
  ) {
    this.ref = new ReferencePeripheral({ dev: device.dev, signer: device.signer, backendKeys: new Map([[backend.kid, backend.publicKeyRaw]]) });
  }

  get up(): string {
    return `gatehouse/v1/${this.device.dev}/up`;
  }

  async connect(port: number, timeoutMs = 30_000): Promise<void> {
    const c = await RawMqttClient.connect({ host: '127.0.0.1', port, clientId: this.device.dev, keepaliveSec: 120, timeoutMs });
    c.onMessage = (topic, payload) => {
      if (topic.endsWith('/down')) this.#waiter?.(payload);
    };
    c.onClose = () => this.#waiter?.(undefined);
    if ((await c.subscribe(`gatehouse/v1/${this.device.dev}/down`, 1, timeoutMs)) === 0x80) throw new Error('subscribe refused');
    this.#client = c;
  }

  #next(timeoutMs: number): Promise<Buffer | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiter = undefined;
        resolve(undefined);
      }, timeoutMs);
      this.#waiter = (b) => {
        clearTimeout(timer);
        this.#waiter = undefined;
        resolve(b);
      };
    });
  }

  /** Ask for a challenge; resolves with the challenge bytes or undefined. */
  async challenge(timeoutMs = 30_000): Promise<Uint8Array | undefined> {
    const c = this.#client;
    if (c === undefined || c.closed) return undefined;
    const reply = this.#next(timeoutMs);
    c.publish(this.up, this.ref.challengeRequest(), 1);
    const b = await reply;
    return b === undefined ? undefined : new Uint8Array(b);
  }

  /** Answer a challenge with a hello and interpret the reply. */
  async answer(challengeBytes: Uint8Array, timeoutMs = 30_000): Promise<Outcome> {
    const c = this.#client;
    if (c === undefined || c.closed) return { kind: 'no-answer', why: 'not connected' };
    const ev0 = this.ref.receive(challengeBytes);
    if (ev0.kind === 'rejected') return { kind: 'reject', reason: ev0.reason, retry: ev0.retryAfterSeconds };
    if (ev0.kind !== 'challenge') return { kind: 'no-answer', why: `no challenge: ${ev0.kind}` };
    const reply = this.#next(timeoutMs);
    c.publish(this.up, await this.ref.hello(challengeBytes), 1);
    const b = await reply;
    if (b === undefined) return { kind: 'no-answer', why: c.closed ? 'closed' : 'timeout' };
    const ev = this.ref.receive(new Uint8Array(b));
    if (ev.kind === 'authenticated') return { kind: 'welcome' };
    if (ev.kind === 'rejected') return { kind: 'reject', reason: ev.reason, retry: ev.retryAfterSeconds };
    if (ev.kind === 'welcome-refused') return { kind: 'welcome-refused', code: ev.code };
    return { kind: 'no-answer', why: ev.kind };
  }

  /** One full exchange. */
  async authenticate(timeoutMs = 30_000): Promise<Outcome> {
    const ch = await this.challenge(timeoutMs);
    if (ch === undefined) return { kind: 'no-answer', why: this.#client?.closed === false ? 'timeout' : 'closed' };
    return this.answer(ch, timeoutMs);
  }

  close(): void {
    this.#client?.destroy();
    this.#client = undefined;
  }
}

/** Runs `f` over `items` with at most `n` at once. */
export async function pool<T, R>(items: readonly T[], n: number, f: (x: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      for (let i = next++; i < items.length; i = next++) out[i] = await f(items[i] as T, i);
    }),
  );
  return out;
}

/** swtpm + provisioned key + backend + devices, in one temp dir. */
export class FaultEnv {
  backend!: RunningBackend;
  devices: Device[] = [];
  tpmPem = '';
  #server!: CertFiles;
  #port = 0;

  private constructor(
    readonly dir: string,
    readonly swtpm: Swtpm,
    readonly ca: CertFiles,
    readonly backendClock: { now(): number } | undefined,
  ) {}

  static async create(o: { devices: number; backendClock?: { now(): number } }): Promise<FaultEnv> {
    const dir = await mkdtemp(join(tmpdir(), 'gh-faults-'));
    const ca = await createCa(join(dir, 'pki'), { name: 'ca', cn: 'Gatehouse faults CA' });
    const swtpm = await Swtpm.start({ stateDir: join(dir, 'swtpm') });
    const env = new FaultEnv(dir, swtpm, ca, o.backendClock);
    try {
      env.#server = await issueCert(join(dir, 'pki'), ca, { name: 'backend', sans: ['127.0.0.1'] });
      await provisionTpmKey({ tcti: swtpm.tcti, stateDir: join(dir, 'tpm'), handle: DEFAULT_KEY_HANDLE });
      const ks = new TpmKeyStore({ tcti: swtpm.tcti, stateDir: join(dir, 'tpm'), handle: DEFAULT_KEY_HANDLE });
      await ks.open();
      env.tpmPem = ks.publicKeyPem();
      await ks.close();
      await env.startBackend();
      await env.backend.store.addGateway({ id: GW, tpmPublicKeyPem: env.tpmPem });
      env.devices = Array.from({ length: o.devices }, (_, i) => {
        const dev = `fault-${String(i).padStart(5, '0')}`;
        return { dev, signer: Ed25519Signer.fromSeed(new Uint8Array(randomBytes(32)), dev) };
      });
      await env.backend.store.addDevices(env.devices.map((d) => ({ id: d.dev, publicKey: d.signer.publicKeyRaw, gateways: [GW] })));
    } catch (err) {
      await env.dispose();
      throw err;
    }
    return env;
  }

  /** (Re)start the backend on the same port and data directory. */
  async startBackend(): Promise<void> {
    this.backend = await startBackend({
      dataDir: join(this.dir, 'backend'),
      tls: { certPem: this.#server.certPem, keyPem: this.#server.keyPem },
      port: this.#port,
      publicOrigin: (port) => `https://127.0.0.1:${port}`,
      ...(this.backendClock !== undefined ? { clock: this.backendClock } : {}),
    });
    this.#port = this.backend.port;
  }

  /** A gateway state directory holding the provisioned key's record; `prepare` runs on it first (a mount). */
  async stateDir(name: string, prepare?: (dir: string) => void): Promise<string> {
    const d = join(this.dir, `state-${name}`);
    await mkdir(d, { recursive: true, mode: 0o700 });
    prepare?.(d);
    await copyFile(join(this.dir, 'tpm', 'tpm-key.json'), join(d, 'tpm-key.json'));
    // The key's authValue goes with its record (mode kept: 0600).
    await copyFile(join(this.dir, 'tpm', TPM_AUTH_FILE), join(d, TPM_AUTH_FILE));
    return d;
  }

  /** The backend's TLS certificate (issued by `ca` for 127.0.0.1), for backends started elsewhere. */
  get serverCert(): CertFiles {
    return this.#server;
  }

  /** A validated daemon config against `target` (default this env's backend); `over` is merged section by section. */
  async config(stateDir: string, over: Record<string, Record<string, unknown>> = {}, target: BackendTarget = this.backend): Promise<GatehouseConfig> {
    await mkdir(join(this.dir, 'run'), { recursive: true, mode: 0o700 });
    const base = gatewayConfigInput(
      {
        gw: GW,
        stateDir,
        runtimeDir: join(this.dir, 'run'),
        kind: 'tpm',
        tcti: this.swtpm.tcti,
        backend: target,
        caFile: this.ca.certPath,
        mqttPort: await freePort(),
        socketPath: join(this.dir, 'run', `status-${Math.random().toString(36).slice(2, 8)}.sock`),
      },
      {
        backend: { queueLimit: 100_000 },
        mqtt: { maxConnections: 20_000, maxUnwelcomed: 20_000, maxConnectionsPerSource: 20_000, acceptsPerSourcePerSec: 100_000 },
        pipeline: { maxOutstandingChallenges: 100_000, maxPendingHellos: 100_000, rateLimits: { perConnectionPerMin: 100_000, perDevicePerMin: 100_000, globalPerMin: 10_000_000 } },
      },
    );
    for (const [k, v] of Object.entries(over)) base[k] = { ...(base[k] ?? {}), ...v };
    const r = validateConfig(base);
    if (!r.ok) throw new Error(`fault config invalid: ${JSON.stringify(r.issues)}`);
    return r.config;
  }

  async gateway(config: GatehouseConfig, o: { clock?: TimerClock; elapsedClock?: { now(): number }; logger?: Logger } = {}): Promise<Gateway> {
    await mkdir(join(this.dir, 'run'), { recursive: true, mode: 0o700 });
    const g = new Gateway({
      config,
      configFile: '(faults)',
      drainTimeoutMs: 3000,
      ...(o.clock !== undefined ? { clock: o.clock } : {}),
      ...(o.elapsedClock !== undefined ? { elapsedClock: o.elapsedClock } : {}),
      ...(o.logger !== undefined ? { logger: o.logger } : {}),
    });
    await g.start();
    return g;
  }

  peripheral(d: Device, target: BackendTarget = this.backend): FaultPeripheral {
    return new FaultPeripheral(d, target);
  }

  async dispose(): Promise<void> {
    await this.backend?.close();
    await this.swtpm.dispose();
    await rm(this.dir, { recursive: true, force: true });
  }
}

