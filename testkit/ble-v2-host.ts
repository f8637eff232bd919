/**
 * The daemon's BLE v2 host (daemon/transports/ble/session-host.ts, what daemon/compose.ts gives
 * the BLE transport) over an HCI rig's pipeline and a session table of its own, for the HCI
 * suites. What they read is recorded: the sessions opened, the pubs handed to the local broker
 * (there is no data plane here, so a pub is receipted once published), the drops in order. Every
 * change emits `tick` on `feed`, so a suite can wait on a condition. Not a test file.
 */
import { EventEmitter } from 'node:events';
import { silentLogger } from '../common/log/logger.js';
import { SessionTable } from '../daemon/sessions/table.js';
import type { GatewaySessionV2 } from '../daemon/sessions/session.js';
import { PipelineV2Host } from '../daemon/transports/ble/session-host.js';
import { startBackend, type Backend, type HciRig } from './ble-hci-rig.js';
import type { BleSessionEvent } from '../daemon/transports/ble/transport.js';

export interface RecordingV2Host {
  host: PipelineV2Host;
  table: SessionTable;
  /** Sessions in the order they opened (ended ones included). */
  sessions: GatewaySessionV2[];
  /** Pubs the sessions handed to the local broker: `topic body`. */
  published: string[];
  /** Frame drop codes, in order. */
  drops: string[];
  /** Emits `tick` on every session opened or ended, pub published and frame dropped. */
  feed: EventEmitter;
  dispose(): void;
}

export function recordingV2Host(backend: Backend): RecordingV2Host {
  const feed = new EventEmitter();
  const tick = (): void => void setImmediate(() => feed.emit('tick'));
  const table = new SessionTable({ firstFrameTimeoutMs: 60_000, now: () => performance.now() });
  const sessions: GatewaySessionV2[] = [];
  const published: string[] = [];
  const drops: string[] = [];
  table.on('opened', (s) => {
    sessions.push(s);
    tick();
  });
  table.on('ended', tick);
  table.on('dropped', (_s, code) => {
    drops.push(code);
    tick();
  });
  const host = new PipelineV2Host({
    pipeline: backend.pipeline,
    sessions: {
      table,
      publishLocal: (topic, body) => {
        published.push(`${topic} ${Buffer.from(body).toString('utf8')}`);
        tick();
        return Promise.resolve();
      },
    },
    revocations: backend.client,
    log: silentLogger(),
  });
  return { host, table, sessions, published, drops, feed, dispose: () => host.dispose() };
}

/** Resolves once `check` holds, re-checked on every `tick` of `feed`; rejects after `ms`. */
export function untilTick(feed: EventEmitter, check: () => boolean, what: string, ms = 15_000): Promise<void> {
  if (check()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      feed.off('tick', on);
      reject(new Error(`not within ${ms} ms: ${what}`));
    }, ms);
    const on = (): void => {
      if (!check()) return;
      clearTimeout(timer);
      feed.off('tick', on);
      resolve();
    };
    feed.on('tick', on);
  });
}

/** What the BLE v2 HCI suites share: the backend (per suite), this test's rig, host and sessions. */
export interface BleV2Suite {
  readonly backend: Backend;
  readonly host: RecordingV2Host;
  rig: HciRig | undefined;
  readonly sessions: BleSessionEvent[];
}

/**
 * Registers the BLE v2 HCI suites' hooks: a backend for the suite, a fresh recording host and
 * session list for each test, and the rig and host stopped after it.
 */
export function bleV2Suite(): BleV2Suite {
  let backend: Backend | undefined;
  let host: RecordingV2Host | undefined;
  const suite: BleV2Suite = {
    get backend(): Backend {
      if (backend === undefined) throw new Error('bleV2Suite: the backend is not started yet');
      return backend;
    },
    get host(): RecordingV2Host {
      if (host === undefined) throw new Error('bleV2Suite: no host outside a test');
      return host;
    },
    rig: undefined,
    sessions: [],
  };
  before(async () => {
    backend = await startBackend();
  });
  beforeEach(() => {
    suite.sessions.length = 0;
    host = recordingV2Host(suite.backend);
  });
  afterEach(async () => {
    await suite.rig?.stop();
    suite.rig = undefined;
    host?.dispose();
  });
  after(async () => {
    await backend?.close();
  });
  return suite;
}
