/**
 * What the child-daemon suites share: an EmbeddedSystem (PKI, swtpm with a provisioned key,
 * the reference backend with registered devices, a YAML config) in a temp dir on a free MQTT
 * port, the notify socket to read sd_notify datagrams from, and peripherals that are the
 * reference library over MQTT.
 */
import { connect } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { EmbeddedSystem, freePort, type EmbeddedDevice, type EmbeddedSystemOptions } from '../../../daemon/embedded.js';
import { MqttReferencePeripheral, type MqttAuthResult } from '../../../peripherals/reference/mqtt-peripheral.js';
import { ReferencePeripheral } from '../../../peripherals/reference/peripheral.js';
import { openNotifySocket, type NotifySocket } from '../../helpers/notify-socket.js';
import { spawnDaemon, type GatehouseChild } from '../../helpers/daemon.js';

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

/** Writes `input` (a config object) as YAML next to the rig's own config and returns its path. */
export async function writeConfig(dir: string, name: string, input: unknown): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, stringify(input), { mode: 0o600 });
  return file;
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
