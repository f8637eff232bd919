/**
 * The gateway's data plane (protocol-v2 "Frames", "Commands", "Backend HTTP API (v2
 * additions)"): the durable queue the sessions store pubs and acks in, the uploader that empties
 * it to the backend, and the command relay. Built and started by daemon/gateway.ts; the
 * transports hand it to their session tables.
 */
import { silentLogger } from '../../common/log/logger.js';
import type { Logger } from 'winston';
import type { TimerClock } from '../../common/clock.js';
import type { BreakerSettings } from '../backend-client/breaker.js';
import type { BackendHttp } from '../backend-client/dispatcher.js';
import type { SessionProvider } from '../pipeline/types.js';
import type { DataPlaneAnswer, GatewaySessionV2, SessionDataPlane } from '../sessions/session.js';
import type { SessionTable } from '../sessions/table.js';
import { CommandRelay, type CommandRelaySettings, type CommandStats } from './commands.js';
import { UplinkQueue, type QueueSettings, type QueueStats } from './queue.js';
import { Uploader, type UploaderStats } from './uploader.js';

/** `dataPlane.*` from the config (daemon/config/settings.ts). */
export interface DataPlaneSettings {
  queue: QueueSettings;
  commands: CommandRelaySettings;
  publishLocal: boolean;
}

export interface DataPlaneOptions extends DataPlaneSettings {
  gw: string;
  stateDir: string;
  http: BackendHttp;
  session: SessionProvider;
  backendKeys: ReadonlyMap<string, Uint8Array>;
  breaker: BreakerSettings;
  requestTimeoutMs: number;
  retryBaseMs?: number;
  retryMaxMs?: number;
  clock: TimerClock;
  logger?: Logger;
}

export interface DataPlaneStats {
  queue: QueueStats;
  uploader: UploaderStats;
  commands: CommandStats;
}

export class DataPlane implements SessionDataPlane {
  readonly publishLocal: boolean;
  readonly queue: UplinkQueue;
  readonly #o: DataPlaneOptions;
  readonly #uploader: Uploader;
  #relay: CommandRelay | undefined;
  readonly #tables: SessionTable[] = [];
  readonly #log: Logger;

  constructor(o: DataPlaneOptions) {
    this.#o = o;
    this.publishLocal = o.publishLocal;
    this.#log = o.logger ?? silentLogger();
    this.queue = new UplinkQueue({ ...o.queue, stateDir: o.stateDir, now: () => o.clock.now(), logger: this.#log });
    this.#uploader = new Uploader({
      gw: o.gw,
      http: o.http,
      session: o.session,
      queue: this.queue,
      breaker: o.breaker,
      requestTimeoutMs: o.requestTimeoutMs,
      retryBaseMs: o.retryBaseMs ?? 200,
      retryMaxMs: o.retryMaxMs ?? 30_000,
      clock: o.clock,
      logger: this.#log,
    });
  }

  /** Opens the queue and starts the uploader and the command poll. */
  start(): void {
    this.queue.open();
    this.#relay = new CommandRelay({
      ...this.#o.commands,
      gw: this.#o.gw,
      http: this.#o.http,
      session: this.#o.session,
      backendKeys: this.#o.backendKeys,
      store: this.queue.store,
      sessionOf: (dev) => this.#sessionOf(dev),
      liveSessions: () => this.#tables.reduce((n, t) => n + t.size, 0),
      breaker: this.#o.breaker,
      requestTimeoutMs: this.#o.requestTimeoutMs,
      retryBaseMs: this.#o.retryBaseMs ?? 200,
      retryMaxMs: this.#o.retryMaxMs ?? 30_000,
      clock: this.#o.clock,
      logger: this.#log,
    });
    this.#uploader.start();
    this.#relay.start();
  }

  async stop(): Promise<void> {
    await this.#relay?.stop();
    await this.#uploader.stop();
    this.queue.close();
  }

  /**
   * A session table: its sessions' openings and ends reach the command relay. Attaching a table
   * twice (the gateway's one table, shared by its transports) counts it once.
   */
  attach(table: SessionTable): void {
    if (this.#tables.includes(table)) return;
    this.#tables.push(table);
    table.on('opened', (s) => this.#relay?.sessionOpened(s));
    table.on('ended', (s) => this.#relay?.sessionEnded(s));
  }

  #sessionOf(dev: string): GatewaySessionV2 | undefined {
    for (const t of this.#tables) {
      const s = t.byDevice(dev);
      if (s !== undefined) return s;
    }
    return undefined;
  }

  pub(session: GatewaySessionV2, seq: number, p: { topic: string; body: Uint8Array; mid?: number }): Promise<DataPlaneAnswer> {
    return this.queue.offerPub({
      dev: session.dev,
      sid: session.sid,
      seq,
      topic: p.topic,
      body: p.body,
      receivedAt: this.#o.clock.now(),
      ...(p.mid === undefined ? {} : { mid: p.mid }),
    });
  }

  async ack(session: GatewaySessionV2, cid: number, status: 'done' | 'failed' | 'refused'): Promise<DataPlaneAnswer> {
    const r = await this.queue.offerAck({ dev: session.dev, cid, status, at: this.#o.clock.now() });
    if (r.stored) this.#relay?.acked(session.dev, cid);
    return r;
  }

  pendingCommands(dev: string): { cid: number; exp: number; outstanding: boolean }[] {
    return this.#relay?.pendingFor(dev) ?? [];
  }

  stats(): DataPlaneStats {
    return {
      queue: this.queue.stats(),
      uploader: this.#uploader.stats(),
      commands: this.#relay?.stats() ?? { pending: 0, received: 0, relayed: 0, acked: 0, expired: 0, refused: 0, polls: 0, cursor: 0 },
    };
  }
}
