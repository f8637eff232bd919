/**
 * `gatehouse demo`: the whole system on one machine, on embedded defaults — the reference
 * backend over HTTPS with its own CA (made on first run), swtpm as the TPM (the software key
 * store, with a warning, only when swtpm is missing), the gateway with MQTT on loopback, and a
 * batch of simulated protocol-v2 peripherals that authenticate over MQTT, verify their welcomes,
 * send a few telemetry frames the backend stores, and take one command (demo/data-round.ts).
 * Every way out of it leaves no swtpm or backend process behind (demo/exits.ts, demo/leftovers.ts).
 */
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import type { Logger } from 'winston';
import { generateKeyFile } from '../peripherals/reference/keyfile.js';
import { MemoryCommandStore } from '../peripherals/reference/command-store.js';
import { MqttReferencePeripheralV2, type MqttAuthResultV2 } from '../peripherals/reference/mqtt-peripheral-v2.js';
import { NobleEd25519Signer } from '../peripherals/reference/noble-signer.js';
import { ReferencePeripheralV2 } from '../peripherals/reference/session-v2.js';
import { parse } from '../daemon/cli/args.js';
import { guard } from '../daemon/cli/command.js';
import { EXIT_FAILURE, EXIT_OK, write, writeRaw, type CliIO } from '../common/cli-io.js';
import { ConfigError } from '../daemon/config/errors.js';
import { loadConfig } from '../daemon/config/load.js';
import type { GatehouseConfig } from '../daemon/config/schema.js';
import { EmbeddedSystem, embeddedPaths, gatewayConfigInput, writeConfigInput } from './embedded.js';
import { Gateway } from '../daemon/gateway.js';
import { createRootLogger, logError, setLogLevel } from '../common/log/logger.js';
import { ExitGuard } from './exits.js';
import { DemoError, PidFile, reapLeftovers } from './leftovers.js';
import { applyOverrides, describeIssues, readOverrides, type ConfigInput } from './overrides.js';
import { HELP } from './help.js';
import { printSummary, type AuthOutcome } from './summary.js';
import { dataRound, type DataRoundResult } from './data-round.js';

export { HELP };

const CONCURRENCY = 16;

export function run(args: string[], io: CliIO): Promise<number> {
  const cmd = 'gatehouse demo';
  return guard(cmd, io, async () => {
    const { values } = parse(cmd, args, {
      once: { type: 'boolean' },
      peripherals: { type: 'string' },
      dir: { type: 'string' },
      'mqtt-port': { type: 'string' },
      config: { type: 'string' },
      'print-config': { type: 'boolean' },
      'backend-process': { type: 'boolean' },
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
    const dir = resolve(values.dir ?? join(process.cwd(), '.gatehouse', 'demo'));
    const configFile = values.config === undefined ? undefined : resolve(values.config);
    let overrides: ConfigInput | undefined;
    if (configFile !== undefined) {
      // Refused before anything starts: the same merge over stand-ins for what start picks.
      const checked = await checkOverrides(configFile, dir, port);
      if (typeof checked === 'string') {
        write(io.stderr, `${cmd}: refusing to start: ${checked}`);
        return EXIT_FAILURE;
      }
      overrides = checked;
    }
    const demo = new Demo(io, { dir, count, mqttPort: port, overrides, overridesFile: configFile, backendProcess: values['backend-process'] === true });
    const exits = new ExitGuard({
      io,
      killNow: () => demo.killNow(),
      onHup: () => {
        demo.reload().then(
          (line) => demo.say(line),
          (err: unknown) => demo.say(`SIGHUP: reload refused, nothing changed: ${err instanceof Error ? err.message : String(err)}`),
        );
      },
    });
    void exits.stopRequested.then((signal) => {
      demo.say(`\n${signal}: stopping…`);
      demo.requestStop();
    });
    try {
      if (values['print-config'] === true) {
        write(io.stdout, await demo.effectiveConfig());
        return EXIT_OK;
      }
      const ok = await demo.start();
      if (values.once === true) return ok ? EXIT_OK : EXIT_FAILURE;
      if (!demo.stopRequested) demo.say(`\nServing until Ctrl-C (pid ${process.pid}; kill -HUP ${process.pid} reloads the log level and rate limits).`);
      await exits.stopRequested;
      demo.finalSummary();
      return EXIT_OK;
    } catch (err) {
      if (demo.stopRequested && err instanceof DemoError && err.code === 'GH_DEMO_STOPPED') return EXIT_OK;
      throw err;
    } finally {
      await demo.stop();
      exits.dispose();
    }
  });
}

function intOption(v: string | undefined, dflt: number, min: number, max: number, name: string): number | string {
  if (v === undefined) return dflt;
  const n = Number(v);
  return Number.isInteger(n) && n >= min && n <= max ? n : `${name} wants a whole number from ${min} to ${max}, got "${v}"`;
}

/** The overrides, or every problem with them, judged against the demo's config with stand-ins for the ports and keys. */
async function checkOverrides(file: string, dir: string, mqttPort: number | undefined): Promise<ConfigInput | string> {
  let over: ConfigInput;
  try {
    over = await readOverrides(file);
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  const p = embeddedPaths(dir);
  const standIn = gatewayConfigInput(
    { gw: 'gw-demo', stateDir: p.stateDir, runtimeDir: p.runtimeDir, kind: 'tpm', tcti: 'swtpm:host=127.0.0.1,port=2321', caFile: p.caFile, mqttPort: mqttPort ?? 1883, socketPath: p.socketPath, backend: { url: 'https://127.0.0.1:8443', kid: 'S-0000000000000000', publicKeyRaw: new Uint8Array(32) } },
    { backend: { revocationPollSec: 5 } },
  );
  const m = applyOverrides(standIn, over);
  return m.ok ? over : describeIssues(file, m.issues);
}

interface DemoOptions {
  dir: string;
  count: number;
  mqttPort: number | undefined;
  overrides: ConfigInput | undefined;
  overridesFile: string | undefined;
  backendProcess: boolean;
}

class Demo {
  #system: EmbeddedSystem | undefined;
  #gateway: Gateway | undefined;
  #logger: Logger | undefined;
  readonly #peripherals: MqttReferencePeripheralV2[] = [];
  #logStream: ReturnType<typeof createWriteStream> | undefined;
  readonly #pidFile: PidFile;
  #pidFileOurs = false;
  readonly #io: CliIO;
  readonly #o: DemoOptions;
  #stopRequested = false;
  #stopping = false;

  constructor(
    io: CliIO,
    o: DemoOptions,
  ) {
    this.#io = io;
    this.#o = o;
    this.#pidFile = new PidFile(o.dir);
  }

  say(line: string): void {
    write(this.#io.stdout, line);
  }

  get stopRequested(): boolean {
    return this.#stopRequested;
  }

  /** SIGINT/SIGTERM: start gives up at its next step; a gateway that is starting is stopped. */
  requestStop(): void {
    this.#stopRequested = true;
    // Ctrl-C reaches the whole process group: the backend process ending now is not an outage.
    this.#stopping = true;
    if (this.#gateway?.state === 'starting') void this.#gateway.stop();
  }

  #giveUpIfStopRequested(): void {
    if (this.#stopRequested) throw new DemoError('GH_DEMO_STOPPED', 'stopped while starting');
  }

  /** Reap a previous demo's leftovers, then PKI, swtpm, backend and config. */
  async #startSystem(): Promise<EmbeddedSystem> {
    const d = this.#o.dir;
    await mkdir(d, { recursive: true, mode: 0o700 });
    for (const r of await reapLeftovers(d)) this.say(`  killed pid ${r.pid}, the ${r.role} a previous demo in ${d} left running`);
    this.#pidFileOurs = true;
    await this.#pidFile.write();
    this.#giveUpIfStopRequested();
    const system = await EmbeddedSystem.start({
      dir: d,
      devices: this.#o.count,
      ...(this.#o.mqttPort !== undefined ? { mqttPort: this.#o.mqttPort } : {}),
      ...(this.#o.overrides !== undefined ? { overrides: this.#o.overrides } : {}),
      backendProcess: this.#o.backendProcess,
      onStep: (l) => this.say(l),
      onChild: (role, pid) => this.#pidFile.record(role, pid),
    });
    this.#system = system;
    this.#giveUpIfStopRequested();
    return system;
  }

  /** `--print-config`: the validated config of this start, every option, as YAML. */
  async effectiveConfig(): Promise<string> {
    const system = await this.#startSystem();
    return `# gatehouse demo: the effective config of this start (${system.configFile} holds the input)\n${stringify(system.config)}`;
  }

  async start(): Promise<boolean> {
    const d = this.#o.dir;
    this.say(`Gatehouse demo: gateway, reference backend, TPM and ${this.#o.count} simulated peripherals on this machine`);
    this.say(`  state in ${d} (the CA is kept, the rest is fresh each run)`);
    const system = await this.#startSystem();
    // A spare registered device whose key is on disk, for an outside MQTT client.
    await mkdir(join(d, 'peripherals'), { recursive: true, mode: 0o700 });
    const outsideKey = join(d, 'peripherals', 'outside-1.key');
    await rm(outsideKey, { force: true });
    const outside = await generateKeyFile(outsideKey, 'outside-1');
    await system.registry.addDevices([{ id: outside.dev, publicKey: outside.signer.publicKeyRaw, gateways: [system.gw] }]);

    const config = system.config;
    this.#logStream = createWriteStream(join(d, 'gatehouse.log'), { flags: 'a', mode: 0o600 });
    this.#logger = createRootLogger({ level: config.log.level, format: 'text', env: {}, stream: this.#logStream });
    this.#gateway = new Gateway({ config, configFile: system.configFile, logger: this.#logger });
    await this.#gateway.start();
    this.#giveUpIfStopRequested();
    const mqttUrl = `mqtt://127.0.0.1:${this.#gateway.mqttAddresses().tcp?.port ?? config.mqtt.tcp.port}`;
    this.say(`[4/5] gateway     ${system.gw}: MQTT ${mqttUrl}, status socket ${config.status.socketPath}, log ${join(d, 'gatehouse.log')}`);
    this.#watchBackendProcess(system);

    // The simulated peripherals sign with @noble/ed25519, as the reference firmware would.
    const signers = await Promise.all(system.devices.map((x) => NobleEd25519Signer.fromSeed(x.seed, x.dev)));
    const results = await this.#authenticateAll(signers, system.backendKeys, mqttUrl);
    this.#giveUpIfStopRequested();
    const established = new Set(results.filter((r) => !(r.result instanceof Error) && r.result.kind === 'established').map((r) => r.dev));
    const data = await dataRound({
      peripherals: this.#peripherals.filter((p) => established.has(p.dev)),
      registry: system.registry,
      backend: system.backendProcess === undefined ? system.backend : undefined,
    });
    this.#giveUpIfStopRequested();
    return this.#summary(results, data, config, mqttUrl, outsideKey);
  }

  /** A backend process that ends while the demo runs is an outage being tried: say what follows. */
  #watchBackendProcess(system: EmbeddedSystem): void {
    const proc = system.backendProcess;
    if (proc === undefined) return;
    void proc.exited.then((e) => {
      if (this.#stopping) return;
      this.say(`\nThe backend process (pid ${proc.pid}) ended (${e.signal ?? `exit code ${String(e.code)}`}): peripherals welcomed before are welcomed offline under their cached leases, others get backend-unavailable.`);
      this.say(`  start it again:  ${proc.serveCommand()}`);
    });
  }

  /** SIGHUP: what the daemon reloads (log level, rate limits), from the same source it started from. */
  async reload(): Promise<string> {
    const system = this.#system;
    const gateway = this.#gateway;
    if (system === undefined || gateway === undefined || gateway.state !== 'running') return 'SIGHUP: the demo is still starting; nothing to reload yet';
    let next: GatehouseConfig;
    const file = this.#o.overridesFile ?? system.configFile;
    if (this.#o.overridesFile !== undefined) {
      const m = applyOverrides(system.baseConfigInput, await readOverrides(this.#o.overridesFile));
      if (!m.ok) throw new DemoError('GH_DEMO_RELOAD', describeIssues(this.#o.overridesFile, m.issues));
      await writeConfigInput(system.configFile, m.input);
      next = m.config;
    } else {
      next = await loadConfig(system.configFile);
    }
    gateway.reload(next);
    if (this.#logger !== undefined) {
      if (this.#logger.level !== next.log.level) this.#logger.info('log level changed', { from: this.#logger.level, to: next.log.level });
      setLogLevel(this.#logger, next.log.level);
    }
    const r = next.pipeline.rateLimits;
    return `SIGHUP: reloaded ${file}: rate limits ${r.perConnectionPerMin}/min per connection, ${r.perDevicePerMin}/min per device, ${r.globalPerMin}/min in all; log level ${next.log.level}`;
  }

  /** What happened since the summary (offline welcomes during an outage, retries), when the demo stops. */
  finalSummary(): void {
    const gateway = this.#gateway;
    if (gateway?.state !== 'running') return;
    const b = gateway.backendStats();
    let welcome = 0;
    let offline = 0;
    let reject = 0;
    for (const c of gateway.pipeline.events.counts()) {
      if (c.outcome === 'welcome') welcome += c.count;
      if (c.outcome === 'welcome' && c.offline) offline += c.count;
      if (c.outcome === 'reject') reject += c.count;
    }
    this.say('Since the demo started');
    this.say(`  welcomed (offline, under a cached lease)               ${welcome} (${offline})`);
    this.say(`  rejected                                               ${reject}`);
    this.say(`  backend: retries, offline welcomes, offline rejects    ${b?.retries ?? 0}, ${b?.offlineWelcomes ?? 0}, ${b?.offlineRejects ?? 0}`);
    this.say(`  backend: unavailable answers, circuit opened           ${b?.unavailable ?? 0}, ${b?.circuitOpens ?? 0}`);
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    await Promise.allSettled(this.#peripherals.map((p) => p.close()));
    try {
      await this.#gateway?.stop();
    } catch (err) {
      if (this.#logger !== undefined) logError(this.#logger, 'demo: stopping the gateway failed', err);
    }
    await this.#system?.close();
    if (this.#pidFileOurs) this.#pidFile.removeSync();
    this.#pidFileOurs = false;
    await new Promise<void>((done) => (this.#logStream === undefined ? done() : this.#logStream.end(done)));
  }

  /** Exit paths that cannot wait: SIGKILL the children, drop the pid file. Synchronous. */
  killNow(): void {
    this.#system?.killChildrenNow();
    if (this.#pidFileOurs) this.#pidFile.removeSync();
    this.#pidFileOurs = false;
  }

  async #authenticateAll(signers: NobleEd25519Signer[], backendKeys: ReadonlyMap<string, Uint8Array>, url: string): Promise<AuthOutcome[]> {
    const results: AuthOutcome[] = [];
    let next = 0;
    // A live counter on a terminal; one line at the end otherwise (CI logs).
    const tty = (this.#io.stdout as { isTTY?: boolean }).isTTY === true;
    const progress = (): void => {
      if (!tty && results.length < signers.length) return;
      const ok = results.filter((r) => !(r.result instanceof Error) && r.result.kind === 'established').length;
      writeRaw(this.#io.stdout, `${tty ? '\r' : ''}[5/5] peripherals ${results.length}/${signers.length} done, ${ok} welcomed and verified`);
    };
    const worker = async (): Promise<void> => {
      for (;;) {
        const signer = signers[next++];
        if (signer === undefined) return;
        const peripheral = new ReferencePeripheralV2({ dev: signer.kid, signer, devicePublicKey: signer.publicKeyRaw, backendKeys, commandStore: new MemoryCommandStore() });
        const p = new MqttReferencePeripheralV2({ url, peripheral });
        this.#peripherals.push(p);
        const t0 = performance.now();
        let result: MqttAuthResultV2 | Error;
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

  #summary(results: AuthOutcome[], data: DataRoundResult, config: GatehouseConfig, mqttUrl: string, outsideKey: string): boolean {
    return printSummary({
      say: (line) => this.say(line),
      results,
      data,
      config,
      mqttUrl,
      outsideKey,
      session: this.#gateway?.sessionStats(),
      backend: this.#gateway?.backendStats(),
      endpoint: this.#system?.endpoint,
      backendProcess: this.#system?.backendProcess,
      dir: this.#o.dir,
    });
  }
}
