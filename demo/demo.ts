/**
 * `gatehouse demo`: the whole system on one machine, on embedded defaults — the reference
 * backend over HTTPS with its own CA (made on first run), swtpm as the TPM (the software key
 * store, with a warning, only when swtpm is missing), the gateway with MQTT on loopback, and a
 * batch of simulated peripherals that authenticate over MQTT and verify their welcomes.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { generateKeyFile } from '../peripherals/reference/keyfile.js';
import { MqttReferencePeripheral, type MqttAuthResult } from '../peripherals/reference/mqtt-peripheral.js';
import { NobleEd25519Signer } from '../peripherals/reference/noble-signer.js';
import { ReferencePeripheral } from '../peripherals/reference/peripheral.js';
import { parse } from '../daemon/cli/args.js';
import { guard } from '../daemon/cli/command.js';
import { EXIT_FAILURE, EXIT_OK, write, writeRaw, type CliIO } from '../common/cli-io.js';
import type { GatehouseConfig } from '../daemon/config/schema.js';
import { EmbeddedSystem } from './embedded.js';
import { Gateway } from '../daemon/gateway.js';
import { createRootLogger } from '../common/log/logger.js';

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
      write(io.stdout, HELP);
      return EXIT_OK;
    }
    const count = intOption(values.peripherals, 20, 1, 1000, '--peripherals');
    const port = values['mqtt-port'] === undefined ? undefined : intOption(values['mqtt-port'], 1883, 1, 65535, '--mqtt-port');
    if (typeof count === 'string' || typeof port === 'string') {
      write(io.stderr, `${cmd}: ${typeof count === 'string' ? count : String(port)}`);
      return 2;
    }
    const demo = new Demo(io, resolve(values.dir ?? join(process.cwd(), '.gatehouse', 'demo')), count, port);
    try {
      const ok = await demo.start();
      if (values.once === true) return ok ? EXIT_OK : EXIT_FAILURE;
      write(io.stdout, '\nServing until Ctrl-C.');
      await new Promise<void>((done) => {
        process.once('SIGINT', done);
        process.once('SIGTERM', done);
      });
      write(io.stdout, '\nStopping…');
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
  #system: EmbeddedSystem | undefined;
  #gateway: Gateway | undefined;
  readonly #peripherals: MqttReferencePeripheral[] = [];
  #logStream: ReturnType<typeof createWriteStream> | undefined;

  readonly #io: CliIO;
  readonly #dir: string;
  readonly #count: number;
  readonly #mqttPort: number | undefined;

  constructor(
    io: CliIO,
    dir: string,
    count: number,
    mqttPort: number | undefined,
  ) {
    this.#io = io;
    this.#dir = dir;
    this.#count = count;
    this.#mqttPort = mqttPort;
  }

  #say(line: string): void {
    write(this.#io.stdout, line);
  }

  async start(): Promise<boolean> {
    const d = this.#dir;
    this.#say(`Gatehouse demo: gateway, reference backend, TPM and ${this.#count} simulated peripherals on this machine`);
    this.#say(`  state in ${d} (the CA is kept, the rest is fresh each run)`);
    const system = await EmbeddedSystem.start({ dir: d, devices: this.#count, ...(this.#mqttPort !== undefined ? { mqttPort: this.#mqttPort } : {}), onStep: (l) => this.#say(l) });
    this.#system = system;
    // A spare registered device whose key is on disk, for an outside MQTT client.
    await mkdir(join(d, 'peripherals'), { recursive: true, mode: 0o700 });
    const outsideKey = join(d, 'peripherals', 'outside-1.key');
    await rm(outsideKey, { force: true });
    const outside = await generateKeyFile(outsideKey, 'outside-1');
    system.backend.registry.addDevices([{ id: outside.dev, publicKey: outside.signer.publicKeyRaw, gateways: [system.gw] }]);

    const config = system.config;
    this.#logStream = createWriteStream(join(d, 'gatehouse.log'), { flags: 'a', mode: 0o600 });
    const logger = createRootLogger({ level: 'info', format: 'text', env: {}, stream: this.#logStream });
    this.#gateway = new Gateway({ config, configFile: system.configFile, logger });
    await this.#gateway.start();
    const mqttUrl = `mqtt://127.0.0.1:${this.#gateway.mqttAddresses().tcp?.port ?? config.mqtt.tcp.port}`;
    this.#say(`[4/5] gateway     ${system.gw}: MQTT ${mqttUrl}, status socket ${config.status.socketPath}, log ${join(d, 'gatehouse.log')}`);

    // The simulated peripherals sign with @noble/ed25519, as the reference firmware would.
    const signers = await Promise.all(system.devices.map((x) => NobleEd25519Signer.fromSeed(x.seed, x.dev)));
    const results = await this.#authenticateAll(signers, system.backendKeys, mqttUrl);
    return this.#summary(results, config, mqttUrl, outsideKey);
  }

  async stop(): Promise<void> {
    await Promise.allSettled(this.#peripherals.map((p) => p.close()));
    await this.#gateway?.stop();
    await this.#system?.close();
    await new Promise<void>((done) => (this.#logStream === undefined ? done() : this.#logStream.end(done)));
  }

  async #authenticateAll(signers: NobleEd25519Signer[], backendKeys: ReadonlyMap<string, Uint8Array>, url: string): Promise<{ dev: string; result: MqttAuthResult | Error; ms: number }[]> {
    const results: { dev: string; result: MqttAuthResult | Error; ms: number }[] = [];
    let next = 0;
    // A live counter on a terminal; one line at the end otherwise (CI logs).
    const tty = (this.#io.stdout as { isTTY?: boolean }).isTTY === true;
    const progress = (): void => {
      if (!tty && results.length < signers.length) return;
      const ok = results.filter((r) => !(r.result instanceof Error) && r.result.kind === 'authenticated').length;
      writeRaw(this.#io.stdout, `${tty ? '\r' : ''}[5/5] peripherals ${results.length}/${signers.length} done, ${ok} welcomed and verified`);
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
    writeRaw(this.#io.stdout, '\n');
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
    this.#say(`  node dist/cli/gatehouse.js status --socket ${config.status.socketPath}`);
    this.#say(`  node dist/cli/gatehouse.js peripherals --socket ${config.status.socketPath}`);
    this.#say(`  node dist/cli/gatehouse.js events --follow --socket ${config.status.socketPath}`);
    this.#say(`  curl --unix-socket ${config.status.socketPath} http://localhost/metrics`);
    const kid = this.#system?.backend.kid ?? '';
    const pk = Buffer.from(this.#system?.backend.publicKeyRaw ?? new Uint8Array()).toString('hex');
    this.#say('An outside client, as registered device outside-1 (one MQTT connection for the whole exchange):');
    this.#say(`  node dist/cli/gatehouse.js peripheral mqtt --key ${outsideKey} --url ${mqttUrl} --backend-kid ${kid} --backend-key ${pk}`);
    this.#say(`  mosquitto_sub -h 127.0.0.1 -p ${mqttUrl.split(':').pop() ?? ''} -t '#'     (refused: peripherals must authenticate first; see docs/mqtt.md)`);
    return welcomed.length === results.length;
  }
}
