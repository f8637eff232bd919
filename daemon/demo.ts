/**
 * `gatehouse demo`: the whole system on one machine, on embedded defaults — the reference
 * backend over HTTPS with its own CA (made on first run), swtpm as the TPM (the software key
 * store, with a warning, only when swtpm is missing), the gateway with MQTT on loopback, and a
 * batch of simulated peripherals that authenticate over MQTT and verify their welcomes.
 */
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { createCa, issueCert, type CertFiles } from '../backend/pki.js';
import { startBackend, type RunningBackend } from '../backend/server.js';
import { MqttReferencePeripheral, type MqttAuthResult } from '../peripherals/reference/mqtt-peripheral.js';
import { NobleEd25519Signer } from '../peripherals/reference/noble-signer.js';
import { ReferencePeripheral } from '../peripherals/reference/peripheral.js';
import { generateKeyFile } from '../peripherals/reference/keyfile.js';
import type { KeyStore } from '../tpm/key-store.js';
import { provisionTpmKey } from '../tpm/provision.js';
import { SoftwareKeyStore } from '../tpm/software-key-store.js';
import { Swtpm } from '../tpm/swtpm-process.js';
import { TpmKeyStore, DEFAULT_KEY_HANDLE, handleHex } from '../tpm/tpm-key-store.js';
import { validateConfig } from './config/validate.js';
import { formatIssue } from './config/errors.js';
import type { GatehouseConfig } from './config/schema.js';
import { Gateway } from './gateway.js';
import { createRootLogger } from './log/logger.js';
import { parse } from './cli/args.js';
import { guard } from './cli/command.js';
import { EXIT_FAILURE, EXIT_OK, type CliIO } from './cli/io.js';

export const HELP = `Usage: gatehouse demo [--once] [--peripherals N] [--dir DIR] [--mqtt-port PORT]

Run the whole system on this machine: the reference backend (HTTPS, its own CA made on first
run), swtpm as the TPM, the gateway with MQTT on loopback, and N simulated peripherals that
authenticate over MQTT and verify their welcomes. Prints a summary, then keeps serving until
Ctrl-C so that \`gatehouse status\` and outside MQTT clients can be pointed at it.

Options:
  --once             exit after the summary: status 0 only if every simulated peripheral was
                     welcomed and verified its welcome
  --peripherals N    simulated peripherals (default 20, at most 1000)
  --dir DIR          demo state (default ./.gatehouse/demo; the PKI is kept, the rest is fresh each run)
  --mqtt-port PORT   MQTT port (default 1883, or a free port when 1883 is taken)
  -h, --help         show this help
`;

const GW = 'gw-demo';
const CONCURRENCY = 16;

export function run(args: string[], io: CliIO): Promise<number> {
  const cmd = 'gatehouse demo';
  return guard(cmd, io, async () => {
    const { values } = parse(cmd, args, {
      once: { type: 'boolean' },
      peripherals: { type: 'string' },
      dir: { type: 'string' },
      'mqtt-port': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help === true) {
      io.stdout.write(HELP);
      return EXIT_OK;
    }
    const count = intOption(values.peripherals, 20, 1, 1000, '--peripherals');
    const port = values['mqtt-port'] === undefined ? undefined : intOption(values['mqtt-port'], 1883, 1, 65535, '--mqtt-port');
    if (typeof count === 'string' || typeof port === 'string') {
      io.stderr.write(`${cmd}: ${typeof count === 'string' ? count : String(port)}\n`);
      return 2;
    }
    const demo = new Demo(io, resolve(values.dir ?? join(process.cwd(), '.gatehouse', 'demo')), count, port);
    try {
      const ok = await demo.start();
      if (values.once === true) return ok ? EXIT_OK : EXIT_FAILURE;
      io.stdout.write('\nServing until Ctrl-C.\n');
      await new Promise<void>((done) => {
        process.once('SIGINT', done);
        process.once('SIGTERM', done);
      });
      io.stdout.write('\nStopping…\n');
      return EXIT_OK;
    } finally {
      await demo.stop();
    }
  });
}

function intOption(v: string | undefined, dflt: number, min: number, max: number, name: string): number | string {
  if (v === undefined) return dflt;
  const n = Number(v);
  return Number.isInteger(n) && n >= min && n <= max ? n : `${name} wants a whole number from ${min} to ${max}, got "${v}"`;
}

class Demo {
  #swtpm: Swtpm | undefined;
  #backend: RunningBackend | undefined;
  #gateway: Gateway | undefined;
  readonly #peripherals: MqttReferencePeripheral[] = [];
  #logStream: ReturnType<typeof createWriteStream> | undefined;

  constructor(
    private readonly io: CliIO,
    private readonly dir: string,
    private readonly count: number,
    private readonly mqttPort: number | undefined,
  ) {}

  #say(line: string): void {
    this.io.stdout.write(`${line}\n`);
  }

  async start(): Promise<boolean> {
    const d = this.dir;
    this.#say(`Gatehouse demo: gateway, reference backend, TPM and ${this.count} simulated peripherals on this machine`);
    this.#say(`  state in ${d}`);
    // Fresh state each run except the PKI: the CA is made once, like a real deployment's.
    for (const sub of ['backend', 'gateway', 'swtpm', 'peripherals', 'run']) await rm(join(d, sub), { recursive: true, force: true });
    for (const sub of ['pki', 'backend', 'gateway', 'peripherals', 'run']) await mkdir(join(d, sub), { recursive: true, mode: 0o700 });

    const pki = await this.#pki(join(d, 'pki'));
    const { keyStore, tcti } = await this.#keyStore(join(d, 'gateway'));

    this.#backend = await startBackend({ dataDir: join(d, 'backend'), tls: { certPem: pki.server.certPem, keyPem: pki.server.keyPem } });
    const backend = this.#backend;
    backend.registry.addGateway({ id: GW, tpmPublicKeyPem: keyStore.publicKeyPem() });
    this.#say(`[3/5] backend     ${backend.url} (reference verifier, SQLite registry, pk_S kid ${backend.kid})`);

    const signers = await Promise.all(Array.from({ length: this.count }, (_, i) => NobleEd25519Signer.generate(`demo-sensor-${String(i + 1).padStart(3, '0')}`)));
    const outside = await generateKeyFile(join(d, 'peripherals', 'outside-1.key'), 'outside-1');
    backend.registry.addDevices([
      ...signers.map((s) => ({ id: s.kid, publicKey: s.publicKeyRaw, gateways: [GW] })),
      { id: outside.dev, publicKey: outside.signer.publicKeyRaw, gateways: [GW] },
    ]);

    const config = this.#config(tcti, backend, pki.ca.certPath, keyStore.kind, await this.#mqttPort());
    this.#logStream = createWriteStream(join(d, 'gatehouse.log'), { flags: 'a', mode: 0o600 });
    const logger = createRootLogger({ level: 'info', format: 'text', env: {}, stream: this.#logStream });
    this.#gateway = new Gateway({ config, configFile: '(demo: built in)', logger, keyStore });
    await this.#gateway.start();
    const addr = this.#gateway.mqttAddresses().tcp;
    const mqttUrl = `mqtt://127.0.0.1:${addr?.port ?? config.mqtt.tcp.port}`;
    this.#say(`[4/5] gateway     ${GW}: MQTT ${mqttUrl}, status socket ${config.status.socketPath}, log ${join(d, 'gatehouse.log')}`);

    const results = await this.#authenticateAll(signers, backend, mqttUrl);
    return this.#summary(results, config, mqttUrl, join(d, 'peripherals', 'outside-1.key'));
  }

  async stop(): Promise<void> {
    await Promise.allSettled(this.#peripherals.map((p) => p.close()));
    await this.#gateway?.stop();
    await this.#backend?.close();
    await this.#swtpm?.dispose();
    await new Promise<void>((done) => (this.#logStream === undefined ? done() : this.#logStream.end(done)));
  }

  async #pki(dir: string): Promise<{ ca: CertFiles; server: CertFiles }> {
    const made = existsSync(join(dir, 'ca.pem')) && existsSync(join(dir, 'backend.pem'));
    const ca: CertFiles = made ? await loadCertFiles(dir, 'ca') : await createCa(dir, { name: 'ca', cn: 'Gatehouse demo CA' });
    const server: CertFiles = made ? await loadCertFiles(dir, 'backend') : await issueCert(dir, ca, { name: 'backend', sans: ['backend.gatehouse.local', '127.0.0.1'] });
    this.#say(`[1/5] PKI         ${made ? 'reusing' : 'made'} the demo CA and backend certificate in ${dir}`);
    return { ca, server };
  }

  /** swtpm when installed (the real TPM code path through libtss2), else the software store. */
  async #keyStore(stateDir: string): Promise<{ keyStore: KeyStore; tcti: string }> {
    if (!onPath('swtpm')) {
      const keyStore = new SoftwareKeyStore({ production: false });
      await keyStore.open();
      this.#say('[2/5] key store   WARNING: swtpm not found: software key store (demo only; run ./setup.sh to install swtpm)');
      return { keyStore, tcti: 'device:/dev/null' };
    }
    this.#swtpm = await Swtpm.start({ stateDir: join(this.dir, 'swtpm') });
    const tcti = this.#swtpm.tcti;
    const provisioned = await provisionTpmKey({ tcti, stateDir, handle: DEFAULT_KEY_HANDLE });
    const keyStore = new TpmKeyStore({ tcti, stateDir, handle: DEFAULT_KEY_HANDLE });
    await keyStore.open();
    const thumb = Buffer.from(keyStore.thumbprint()).toString('hex');
    this.#say(`[2/5] TPM         swtpm (${tcti}), P-256 key ${provisioned.action} at ${handleHex(DEFAULT_KEY_HANDLE)}, thumbprint ${thumb.slice(0, 16)}…`);
    return { keyStore, tcti };
  }

  async #mqttPort(): Promise<number> {
    if (this.mqttPort !== undefined) return this.mqttPort;
    return (await portIsFree(1883)) ? 1883 : freePort();
  }

  #config(tcti: string, backend: RunningBackend, caFile: string, kind: 'tpm' | 'software', mqttPort: number): GatehouseConfig {
    const d = this.dir;
    const r = validateConfig({
      gateway: { id: GW, production: false, stateDir: join(d, 'gateway'), runtimeDir: join(d, 'run') },
      tpm: { kind, tcti },
      backend: {
        url: backend.url,
        caFile,
        backendPublicKey: Buffer.from(backend.publicKeyRaw).toString('base64url'),
        backendKid: backend.kid,
        revocationPollSec: 5,
      },
      mqtt: { tcp: { host: '127.0.0.1', port: mqttPort } },
      status: { socketPath: join(d, 'run', 'status.sock') },
      log: { level: 'info' },
    });
    if (!r.ok) throw new Error(`demo config invalid: ${r.issues.map(formatIssue).join('; ')}`);
    return r.config;
  }

  async #authenticateAll(signers: NobleEd25519Signer[], backend: RunningBackend, url: string): Promise<{ dev: string; result: MqttAuthResult | Error; ms: number }[]> {
    const backendKeys = new Map([[backend.kid, backend.publicKeyRaw]]);
    const results: { dev: string; result: MqttAuthResult | Error; ms: number }[] = [];
    let next = 0;
    // A live counter on a terminal; one line at the end otherwise (CI logs).
    const tty = (this.io.stdout as { isTTY?: boolean }).isTTY === true;
    const progress = (): void => {
      if (!tty && results.length < signers.length) return;
      const ok = results.filter((r) => !(r.result instanceof Error) && r.result.kind === 'authenticated').length;
      this.io.stdout.write(`${tty ? '\r' : ''}[5/5] peripherals ${results.length}/${signers.length} done, ${ok} welcomed and verified`);
    };
    const worker = async (): Promise<void> => {
      for (;;) {
        const signer = signers[next++];
        if (signer === undefined) return;
        const p = new MqttReferencePeripheral({ url, peripheral: new ReferencePeripheral({ dev: signer.kid, signer, backendKeys }) });
        this.#peripherals.push(p);
        const t0 = performance.now();
        let result: MqttAuthResult | Error;
        try {
          await p.connect();
          result = await p.authenticate();
        } catch (err) {
          result = err instanceof Error ? err : new Error(String(err));
        }
        results.push({ dev: signer.kid, result, ms: performance.now() - t0 });
        progress();
      }
    };
    progress();
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, signers.length) }, worker));
    this.io.stdout.write('\n');
    return results;
  }

  #summary(results: { dev: string; result: MqttAuthResult | Error; ms: number }[], config: GatehouseConfig, mqttUrl: string, outsideKey: string): boolean {
    const welcomed = results.filter((r) => !(r.result instanceof Error) && r.result.kind === 'authenticated');
    const byReason = new Map<string, number>();
    for (const r of results) {
      if (!(r.result instanceof Error) && r.result.kind === 'authenticated') continue;
      const why = r.result instanceof Error ? `error: ${r.result.message}` : r.result.kind === 'rejected' ? `rejected: ${r.result.reason}` : `welcome refused: ${r.result.code}`;
      byReason.set(why, (byReason.get(why) ?? 0) + 1);
    }
    const ms = welcomed.map((r) => r.ms).sort((a, b) => a - b);
    const pct = (p: number): string => (ms.length === 0 ? '-' : `${ms[Math.min(ms.length - 1, Math.floor((p / 100) * ms.length))]?.toFixed(1)} ms`);
    const session = this.#gateway?.sessionStats();
    const backendStats = this.#gateway?.backendStats();
    this.#say('');
    this.#say('Summary');
    this.#say(`  welcomed, and the welcome verified by the peripheral   ${welcomed.length}/${results.length}`);
    for (const [why, n] of byReason) this.#say(`  ${why.padEnd(54)} ${n}`);
    this.#say(`  latency, connect to verified welcome                   p50 ${pct(50)}, p95 ${pct(95)}, max ${pct(100)}`);
    this.#say(`  backend verify requests (hellos are batched)           ${backendStats?.batches ?? 0} for ${backendStats?.hellos ?? 0} hellos`);
    this.#say(`  TPM signatures (the session key signs the hot path)    ${session?.tpmSignatures ?? 0}`);
    this.#say('');
    this.#say('Look at it while it runs (another terminal):');
    this.#say(`  node dist/daemon/cli.js status --socket ${config.status.socketPath}`);
    this.#say(`  node dist/daemon/cli.js peripherals --socket ${config.status.socketPath}`);
    this.#say(`  node dist/daemon/cli.js events --follow --socket ${config.status.socketPath}`);
    this.#say(`  curl --unix-socket ${config.status.socketPath} http://localhost/metrics`);
    this.#say(`An outside MQTT client (${mqttUrl}) authenticates as device outside-1 with the key`);
    this.#say(`  ${outsideKey}: see docs/operations.md "The demo" for the mosquitto_pub/sub steps.`);
    return welcomed.length === results.length;
  }
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

function freePort(): Promise<number> {
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
