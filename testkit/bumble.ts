/**
 * Test harness of the BLE HCI stack (docs/ble.md "HCI test stack"): starts the Bumble link
 * process (`peripherals/bumble/gatehouse_bumble/link.py`, in the project's `.venv`) on free
 * paths in a temp dir, waits (bounded) for it to be ready, hands back the pty of the central's
 * HCI UART and each peripheral's outcomes, and stops it: `stop` on the control channel, then
 * SIGTERM, then SIGKILL, each bounded. The child also exits when its stdin closes, and every
 * link still running when this process exits is killed, so a failed test leaves no process.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The virtual environment `setup.sh` makes (`python3 -m venv .venv`, requirements.txt). */
export const BUMBLE_PYTHON = join(ROOT, '.venv', 'bin', 'python');
const PYTHONPATH = join(ROOT, 'peripherals', 'bumble');

/** Wrong behaviour a Bumble peripheral can be configured with (link.py). */
export interface BumbleMisbehaviour {
  /** Drop the link as soon as the challenge has arrived. */
  disconnectAfterChallenge?: boolean;
  /** Take the challenge and never notify a hello. */
  neverAnswer?: boolean;
  /** Advertise and serve the Gatehouse service without its characteristic. */
  noCharacteristic?: boolean;
  /** Raw advertising data (AD structures) instead of the well-formed ones. */
  advertisingData?: Uint8Array;
  /** Do not advertise again after a disconnect. */
  once?: boolean;
}

export interface BumblePeripheralSpec {
  /** Short label for events (unique in one link). */
  name: string;
  /** Static random BLE address, `c0:de:…` (top two bits set). */
  address: string;
  /** Device id. */
  dev: string;
  /** The device's Ed25519 key: its 32-byte RFC 8032 seed. */
  seed: Uint8Array;
  /** The largest ATT MTU this peripheral's GATT server accepts (default 247). */
  mtu?: number;
  misbehave?: BumbleMisbehaviour;
  /** Characteristics served: [1] (default), [2], or [1, 2] (a device configured for migration). */
  versions?: Array<1 | 2>;
  /** v2: frames to send after the welcome, each `afterMs` after the previous one. */
  schedule?: Array<{ afterMs: number; frame: BumbleFrameSpec }>;
  /** v2: accept offline welcomes (default: only with a clock). */
  allowOffline?: boolean;
  /** v2: the peripheral has a clock (the host's unix time). */
  clock?: boolean;
}

/** A v2 frame for the control channel: `body` as UTF-8 text. */
export type BumbleFrameSpec =
  | { type: 'pub'; topic: string; body: string; mid?: number }
  | { type: 'ping' }
  | { type: 'bye'; reason?: string }
  | { type: 'ack'; cid: number; status: 'done' | 'failed' | 'refused' };

/** A relay (peripherals/bumble/gatehouse_bumble/relay.py): a peripheral toward the gateway, a central toward `target`. */
export interface BumbleRelaySpec {
  name: string;
  /** Its own static random address, advertised with the Gatehouse service. */
  address: string;
  /** The address of the real peripheral it connects to (which should not advertise the service). */
  target: string;
}

export interface BumbleLinkOptions {
  peripherals: BumblePeripheralSpec[];
  /** Relays on the same link (relay.py). */
  relays?: BumbleRelaySpec[];
  /** Pinned backend keys `pk_S` by kid (raw Ed25519). */
  backendKeys: ReadonlyMap<string, Uint8Array>;
  /** Advertising interval of every peripheral (ms, default 50). */
  advertisingIntervalMs?: number;
  /** Bound on the link process becoming ready (ms, default 15 000). */
  readyTimeoutMs?: number;
}

/** How one exchange ended at the peripheral. */
export interface BumbleOutcome {
  peripheral: string;
  dev: string;
  /** `welcomed`: the welcome passed every check; `refused`: a check failed (`code`); `rejected`: the gateway sent a reject (`reason`); `incomplete`: the link ended first. */
  outcome: 'welcomed' | 'refused' | 'rejected' | 'incomplete';
  /** The ATT MTU the peripheral's side negotiated. */
  mtu: number;
  /** Length of every value the gateway wrote (its chunks). */
  writeSizes: number[];
  /** Length of every value the peripheral notified (its chunks). */
  notifySizes: number[];
  code?: string;
  detail?: string;
  reason?: string;
  gw?: string;
  /** 1 or 2: the characteristic the exchange ran on. */
  version?: number;
  /** v2 welcomed: `online` or `offline`, the session life (s) and its sid (hex). */
  mode?: string;
  life?: number;
  sid?: string;
  /** Milliseconds from the connection to this outcome, at the peripheral. */
  ms?: number;
}

/** One HCI packet between noble and the central's controller (link.py `Trace`). */
export interface HciTraceRecord {
  ms: number;
  dir: 'host->controller' | 'controller->host';
  kind: 'command' | 'event' | 'acl' | 'other';
  name?: string;
  opcode?: string;
  handle?: number;
  len?: number;
  /** ATT opcode of an ACL packet on the ATT channel, `0x..`. */
  att?: string;
  /** The first bytes of that ATT PDU, hex. */
  head?: string;
}

export interface BumbleLink {
  /** The path to give noble (`hciUartPort`): a symlink to the pty of the central's controller. */
  readonly uartPath: string;
  readonly pid: number;
  readonly peripherals: ReadonlyArray<{ name: string; address: string; dev: string; publicKey: string }>;
  readonly outcomes: readonly BumbleOutcome[];
  /** The `n`-th outcome (0-based) of peripheral `name`, or fail after `ms`. */
  outcomeOf(name: string, ms?: number, n?: number): Promise<BumbleOutcome>;
  /** Peripheral-side link events seen so far (`connected`, `error`, v2: `sent`, `frame`, `drop`, `denied`, `command`, `session-end`). */
  readonly events: readonly Record<string, unknown>[];
  /** The first event (seen or to come) that `match` accepts, or fail after `ms`. */
  waitEvent(match: (e: Record<string, unknown>) => boolean, what: string, ms?: number): Promise<Record<string, unknown>>;
  /** Call `listener` on every event (outcomes included) from now on; returns its removal. */
  onEvent(listener: (e: Record<string, unknown>) => void): () => void;
  /** v2: send a frame on `peripheral`'s live session (control channel). */
  send(peripheral: string, frame: BumbleFrameSpec): void;
  /** Relay `relay`: `inject` sends the last peripheral frame again (`count` times), `alter` flips a bit of the next one. */
  relay(relay: string, action: 'inject' | 'alter', count?: number): void;
  /** The HCI trace so far. */
  trace(): Promise<HciTraceRecord[]>;
  /** Stop the process (bounded) and remove its temp dir. Idempotent. */
  stop(): Promise<void>;
}

const live = new Set<ChildProcessWithoutNullStreams>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) child.kill('SIGKILL');
  });
}

function waitExit(child: ChildProcessWithoutNullStreams, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, ms);
    const onExit = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

/** Start a Bumble link with `options.peripherals`; resolves once it reports ready. */
export async function startBumbleLink(options: BumbleLinkOptions): Promise<BumbleLink> {
  if (!existsSync(BUMBLE_PYTHON)) {
    throw new Error(`GH_TEST_BUMBLE_MISSING: ${BUMBLE_PYTHON} not found; run ./setup.sh (it creates .venv from requirements.txt)`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'gh-bumble-'));
  const uartPath = join(dir, 'hci-uart');
  const tracePath = join(dir, 'hci-trace.jsonl');
  const config = {
    pty: uartPath,
    trace: tracePath,
    advertisingIntervalMs: options.advertisingIntervalMs ?? 50,
    backendKeys: Object.fromEntries([...options.backendKeys].map(([kid, key]) => [kid, Buffer.from(key).toString('hex')])),
    peripherals: options.peripherals.map((p) => ({
      name: p.name,
      address: p.address.toUpperCase(),
      dev: p.dev,
      seed: Buffer.from(p.seed).toString('hex'),
      mtu: p.mtu ?? 247,
      versions: p.versions ?? [1],
      schedule: p.schedule ?? [],
      ...(p.allowOffline === undefined ? {} : { allowOffline: p.allowOffline }),
      clock: p.clock ?? false,
      misbehave: {
        ...p.misbehave,
        ...(p.misbehave?.advertisingData ? { advertisingData: Buffer.from(p.misbehave.advertisingData).toString('hex') } : {}),
      },
    })),
    relays: (options.relays ?? []).map((r) => ({ name: r.name, address: r.address.toUpperCase(), target: r.target.toUpperCase() })),
  };
  const configPath = join(dir, 'config.json');
  await writeFile(configPath, JSON.stringify(config));

  installExitHook();
  const child = spawn(BUMBLE_PYTHON, ['-m', 'gatehouse_bumble.link', configPath], {
    cwd: ROOT,
    env: { ...process.env, PYTHONPATH, PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  live.add(child);
  child.on('exit', () => live.delete(child));
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    stderr = (stderr + d).slice(-8_000);
  });

  const feed = new EventEmitter();
  const outcomes: BumbleOutcome[] = [];
  const events: Record<string, unknown>[] = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    let event: Record<string, unknown>;
    try {
      event = JSON.parse(line) as Record<string, unknown>;
    } catch {
      events.push({ event: 'garbage', line });
      return;
    }
    if (event.event === 'outcome') outcomes.push(event as unknown as BumbleOutcome);
    else events.push(event);
    feed.emit('event', event);
  });

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        if (child.stdin.writable) child.stdin.end(`${JSON.stringify({ cmd: 'stop' })}\n`);
        if (!(await waitExit(child, 3_000))) {
          child.kill('SIGTERM');
          if (!(await waitExit(child, 2_000))) {
            child.kill('SIGKILL');
            await waitExit(child, 2_000);
          }
        }
      }
      live.delete(child);
      await rm(dir, { recursive: true, force: true });
    })());

  type Ready = { pty: string; pid: number; peripherals: BumbleLink['peripherals'] };
  let ready: Ready;
  try {
    ready = await new Promise<Ready>((resolve, reject) => {
      const ms = options.readyTimeoutMs ?? 15_000;
      const timer = setTimeout(() => done(new Error(`Bumble link not ready within ${ms} ms`)), ms);
      const onEvent = (e: Record<string, unknown>): void => {
        if (e.event === 'ready') done(undefined, e as unknown as Ready);
      };
      const onExit = (code: number | null, signal: string | null): void =>
        done(new Error(`Bumble link exited before ready (code ${code}, signal ${signal})`));
      const onError = (err: Error): void => done(err);
      function done(err: Error | undefined, value?: Ready): void {
        clearTimeout(timer);
        feed.off('event', onEvent);
        child.off('exit', onExit);
        child.off('error', onError);
        if (err) reject(err);
        else resolve(value as Ready);
      }
      feed.on('event', onEvent);
      child.once('exit', onExit);
      child.once('error', onError);
    });
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n--- link stderr ---\n${stderr}`, { cause: err });
  }

  return {
    uartPath,
    pid: ready.pid,
    peripherals: ready.peripherals,
    outcomes,
    events,
    outcomeOf(name, ms = 15_000, n = 0) {
      const seen = outcomes.filter((o) => o.peripheral === name)[n];
      if (seen) return Promise.resolve(seen);
      return new Promise<BumbleOutcome>((resolve, reject) => {
        const timer = setTimeout(() => {
          feed.off('event', onEvent);
          reject(new Error(`no outcome #${n} of Bumble peripheral ${name} within ${ms} ms; events: ${JSON.stringify(events.slice(-10))}`));
        }, ms);
        const onEvent = (): void => {
          const o = outcomes.filter((x) => x.peripheral === name)[n];
          if (!o) return;
          clearTimeout(timer);
          feed.off('event', onEvent);
          resolve(o);
        };
        feed.on('event', onEvent);
      });
    },
    waitEvent(match, what, ms = 15_000) {
      const seen = events.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise<Record<string, unknown>>((resolve, reject) => {
        const timer = setTimeout(() => {
          feed.off('event', onEvent);
          reject(new Error(`no Bumble event ${what} within ${ms} ms; events: ${JSON.stringify(events.slice(-10))}`));
        }, ms);
        const onEvent = (e: Record<string, unknown>): void => {
          if (e.event === 'outcome' || !match(e)) return;
          clearTimeout(timer);
          feed.off('event', onEvent);
          resolve(e);
        };
        feed.on('event', onEvent);
      });
    },
    onEvent(listener) {
      feed.on('event', listener);
      return () => feed.off('event', listener);
    },
    send(peripheral, frame) {
      if (child.stdin.writable) child.stdin.write(`${JSON.stringify({ cmd: 'send', peripheral, frame })}\n`);
    },
    relay(relay, action, count = 1) {
      if (child.stdin.writable) child.stdin.write(`${JSON.stringify({ cmd: 'relay', relay, action, count })}\n`);
    },
    async trace() {
      const text = await readFile(tracePath, 'utf8').catch(() => '');
      return text
        .split('\n')
        .filter((l) => l.length > 0)
        .map((l) => JSON.parse(l) as HciTraceRecord);
    },
    stop,
  };
}
