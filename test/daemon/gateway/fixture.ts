/**
 * What the child-daemon suites share: an EmbeddedSystem (PKI, swtpm with a provisioned key,
 * the reference backend with registered devices, a YAML config) in a temp dir on a free MQTT
 * port, the notify socket to read sd_notify datagrams from, and peripherals that are the
 * reference library over MQTT.
 */
import { connect } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { parse, stringify } from 'yaml';
import { EmbeddedSystem, freePort, type EmbeddedDevice, type EmbeddedSystemOptions } from '../../../demo/embedded.js';
import { MqttReferencePeripheral, type MqttAuthResult } from '../../../peripherals/reference/mqtt-peripheral.js';
import { ReferencePeripheral } from '../../../peripherals/reference/peripheral.js';
import { openNotifySocket, type NotifySocket } from '../../../testkit/notify-socket.js';
import { spawnDaemon, type GatehouseChild } from '../../../testkit/daemon.js';

/** Generous bounds: a loaded 2-core machine compiles TypeScript in every child. */
export const START_TIMEOUT_MS = 60_000;
export const STOP_TIMEOUT_MS = 30_000;

export interface Rig {
  dir: string;
  system: EmbeddedSystem;
  mqttPort: number;
  close(): Promise<void>;
}

/** An EmbeddedSystem in a fresh temp dir on a free MQTT port (swtpm, never the software store). */
export async function startRig(name: string, opts: Partial<EmbeddedSystemOptions> = {}): Promise<Rig> {
  const dir = await mkdtemp(join(tmpdir(), `gh-gw-${name}-`));
  const mqttPort = await freePort();
  let system: EmbeddedSystem;
  try {
    system = await EmbeddedSystem.start({ devices: 2, devicePrefix: name, keyStore: 'swtpm', ...opts, dir, mqttPort });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    dir,
    system,
    mqttPort,
    async close() {
      await system.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A config input: sections of options, as the YAML file holds them. */
export type ConfigInput = Record<string, Record<string, unknown>>;

/** Writes `input` as YAML in the rig's dir and returns its path. */
export async function writeConfig(rig: Rig, name: string, input: unknown): Promise<string> {
  const file = join(rig.dir, name);
  await writeFile(file, stringify(input), { mode: 0o600 });
  return file;
}

/** The rig's own config file, changed by `edit`, written as `name`. */
export async function deriveConfig(rig: Rig, name: string, edit: (input: ConfigInput) => void): Promise<string> {
  const input = parse(await readFile(rig.system.configFile, 'utf8')) as ConfigInput;
  edit(input);
  return writeConfig(rig, name, input);
}

/** `input[section]`, which must exist. */
export function sectionOf(input: ConfigInput, name: string): Record<string, unknown> {
  const s = input[name];
  if (s === undefined) throw new Error(`config has no ${name} section`);
  return s;
}

/**
 * Reads datagrams until one satisfies `match`; every datagram read is appended to `seen`.
 * Rejects once `timeoutMs` has passed without a match (or the child exited first).
 */
export async function waitForNotify(ns: NotifySocket, match: (d: string) => boolean, timeoutMs: number, seen: string[], child?: GatehouseChild): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const d of ns.drain()) {
      seen.push(d);
      if (match(d)) return d;
    }
    if (child?.exit !== undefined) throw new Error(`daemon exited (${JSON.stringify(child.exit)}) before the notification; stderr:\n${child.stderr().slice(-4000)}`);
    if (Date.now() > deadline) throw new Error(`no matching notification within ${timeoutMs} ms; seen ${JSON.stringify(seen)}; stderr:\n${child?.stderr().slice(-4000) ?? ''}`);
    let d: string;
    try {
      d = await ns.next();
    } catch {
      continue;
    }
    seen.push(d);
    if (match(d)) return d;
  }
}

/** Fields of one sd_notify datagram (`KEY=value` lines). */
export function notifyFields(d: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of d.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) m.set(line.slice(0, i), line.slice(i + 1));
  }
  return m;
}

/** The daemon on the rig's config with NOTIFY_SOCKET, started until READY=1. */
export interface RunningDaemon {
  child: GatehouseChild;
  ns: NotifySocket;
  seen: string[];
  ready: string;
}

/**
 * Spawns `gatehouse run` with its own notify socket (receive timeout `recvTimeoutSec`, so one
 * blocked receive never outlives a test by much) and waits for READY=1.
 */
export async function startDaemon(configFile: string, recvTimeoutSec = 5): Promise<RunningDaemon> {
  const ns = await openNotifySocket(recvTimeoutSec);
  const child = spawnDaemon(configFile, { env: { NOTIFY_SOCKET: ns.path } });
  const seen: string[] = [];
  try {
    const ready = await waitForNotify(ns, (d) => notifyFields(d).get('READY') === '1', START_TIMEOUT_MS, seen, child);
    return { child, ns, seen, ready };
  } catch (err) {
    await child.kill();
    await ns.close();
    throw err;
  }
}

/** SIGTERM, then STOPPING=1 and the exit. */
export async function stopDaemon(d: RunningDaemon): Promise<{ code: number | null; stopping: string }> {
  d.child.signal('SIGTERM');
  const stopping = await waitForNotify(d.ns, (x) => notifyFields(x).get('STOPPING') === '1', STOP_TIMEOUT_MS, d.seen, undefined);
  const exit = await d.child.exited(STOP_TIMEOUT_MS);
  await d.ns.close();
  return { code: exit.code, stopping };
}

/** Resolves once a TCP connection to 127.0.0.1:port is established (then closes it); rejects on error or timeout. */
export function tcpConnects(port: number, timeoutMs = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`connect to ${port} timed out`));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve();
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** A reference peripheral over mqtt.js, for one registered device. */
export function mqttPeripheral(system: EmbeddedSystem, device: EmbeddedDevice, port: number): MqttReferencePeripheral {
  return new MqttReferencePeripheral({
    url: `mqtt://127.0.0.1:${port}`,
    peripheral: new ReferencePeripheral({ dev: device.dev, signer: device.signer, backendKeys: system.backendKeys }),
    timeoutMs: 20_000,
  });
}

/** Connect, authenticate, return the result (the peripheral stays connected; close it). */
export async function authenticate(p: MqttReferencePeripheral): Promise<MqttAuthResult> {
  await p.connect();
  return p.authenticate();
}

export function device(system: EmbeddedSystem, i: number): EmbeddedDevice {
  const d = system.devices[i];
  if (d === undefined) throw new Error(`no device ${i}`);
  return d;
}

/**
 * A peripheral on a raw mqtt.js client, one step at a time, so a test can stop between the
 * hello's PUBACK and the welcome. The reference library builds and checks the messages.
 */
export class StepPeripheral {
  readonly ref: ReferencePeripheral;
  #client: MqttClient | undefined;
  readonly #inbox: Uint8Array[] = [];
  #waiter: ((b: Uint8Array | undefined) => void) | undefined;
  #closed = false;

  constructor(
    system: EmbeddedSystem,
    readonly device: EmbeddedDevice,
  ) {
    this.ref = new ReferencePeripheral({ dev: device.dev, signer: device.signer, backendKeys: system.backendKeys });
  }

  get #up(): string {
    return `gatehouse/v1/${this.device.dev}/up`;
  }

  get #down(): string {
    return `gatehouse/v1/${this.device.dev}/down`;
  }

  get #c(): MqttClient {
    if (this.#client === undefined) throw new Error('not connected');
    return this.#client;
  }

  async connect(port: number): Promise<void> {
    const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, clean: true, clientId: this.device.dev, keepalive: 60, reconnectPeriod: 0, connectTimeout: 20_000 });
    this.#client = c;
    c.on('message', (topic, payload) => {
      if (topic !== this.#down) return;
      const b = new Uint8Array(payload);
      const w = this.#waiter;
      this.#waiter = undefined;
      if (w !== undefined) w(b);
      else this.#inbox.push(b);
    });
    c.on('error', () => undefined);
    c.on('close', () => {
      this.#closed = true;
      const w = this.#waiter;
      this.#waiter = undefined;
      w?.(undefined);
    });
    const granted = await c.subscribeAsync(this.#down, { qos: 1 });
    if (granted[0]?.qos !== 1) throw new Error(`subscription refused: ${JSON.stringify(granted)}`);
  }

  /** challenge-request → the challenge (bytes). */
  async challenge(timeoutMs = 20_000): Promise<Uint8Array> {
    await this.#c.publishAsync(this.#up, Buffer.from(this.ref.challengeRequest()), { qos: 1 });
    const b = await this.next(timeoutMs);
    const e = this.ref.receive(b);
    if (e.kind !== 'challenge') throw new Error(`expected a challenge, got ${JSON.stringify(e)}`);
    return b;
  }

  /** Publishes the hello at QoS 1; resolves on its PUBACK. */
  async hello(challenge: Uint8Array): Promise<void> {
    await this.#c.publishAsync(this.#up, Buffer.from(await this.ref.hello(challenge)), { qos: 1 });
  }

  /** The next message on the down topic; rejects on close or after `timeoutMs`. */
  next(timeoutMs = 20_000): Promise<Uint8Array> {
    const queued = this.#inbox.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.#closed) return Promise.reject(new Error(`${this.device.dev}: connection closed`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiter = undefined;
        reject(new Error(`${this.device.dev}: nothing on down within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiter = (b) => {
        clearTimeout(timer);
        if (b === undefined) reject(new Error(`${this.device.dev}: connection closed while waiting for the gateway`));
        else resolve(b);
      };
    });
  }

  /** Resolves once the gateway closed this connection; rejects after `timeoutMs`. */
  closedByGateway(timeoutMs: number): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.device.dev}: still connected after ${timeoutMs} ms`)), timeoutMs);
      this.#c.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Connect, challenge, hello; then the gateway's answer as the reference library sees it. */
  async authenticate(port: number): Promise<ReturnType<ReferencePeripheral['receive']>> {
    await this.connect(port);
    await this.hello(await this.challenge());
    return this.ref.receive(await this.next());
  }

  async close(): Promise<void> {
    const c = this.#client;
    this.#client = undefined;
    if (c === undefined) return;
    await Promise.race([c.endAsync(), new Promise<void>((resolve) => setTimeout(resolve, 2000).unref())]).catch(() => undefined);
    c.end(true);
  }
}
