/**
 * The data plane's part of the backend store (protocol-v2 "Backend HTTP API (v2 additions)"):
 * telemetry stored exactly once per (dev, sid, seq) and per (dev, mid), the command queue with
 * its cursor, and the acks. Implemented by both stores (backend/sqlite-data-plane.ts,
 * backend/pg-data-plane.ts); nothing of it is kept in a process.
 */
import type { AckRecord, TelemetryRecord } from '../protocol/index.js';

export type { AckRecord, TelemetryRecord };

export interface StoredTelemetry extends TelemetryRecord {
  /** Row id: increasing in storage order (`telemetry tail --follow` reads after it). */
  id: number;
  /** The gateway that uploaded it. */
  gw: string;
  /** When S stored it, unix seconds. */
  storedAt: number;
}

/** Where `dev` got ok verdicts at one gateway: the first and the newest (unix seconds). */
export interface VerdictWindow {
  firstAt: number;
  lastAt: number;
}

export type AckStatus = AckRecord['status'];

/** A command S issued (its newest signing). */
export interface CommandRecord {
  dev: string;
  cid: number;
  /** The gateway it is queued for: that of the newest grant when it was (re-)signed. */
  gw: string;
  hh: Uint8Array;
  topic: string;
  body: Uint8Array;
  iat: number;
  exp: number;
  /** The COSE_Sign1 bytes. */
  command: Uint8Array;
  /** Its position in the queue; a re-signed command gets a new, higher one. */
  cursor: number;
  queuedAt: number;
  /** When a gateway was first served this signing (unix seconds). */
  servedAt?: number;
  /** The first `done` or `failed` received, kept for good. */
  status?: 'done' | 'failed';
  ackedAt?: number;
  ackedBy?: string;
  /** How many `refused` acks came (they do not close the command). */
  refusedCount: number;
  lastRefusedAt?: number;
}

export type NewCommand = Omit<CommandRecord, 'cursor' | 'queuedAt' | 'servedAt' | 'status' | 'ackedAt' | 'ackedBy' | 'refusedCount' | 'lastRefusedAt'>;

export interface DataPlaneStore {
  /** Store each record unless its (dev, sid, seq) or (dev, mid) is stored already (one transaction). */
  storeTelemetry(gw: string, records: readonly TelemetryRecord[]): Promise<{ accepted: number; duplicates: number }>;
  /** Records stored after row `afterId`, oldest first (of `dev` only when given). */
  telemetryAfter(afterId: number, limit: number, dev?: string): Promise<StoredTelemetry[]>;
  /** The newest `n` records, oldest first (of `dev` only when given). */
  telemetryLast(n: number, dev?: string): Promise<StoredTelemetry[]>;
  /** For each of `devs` verified ok at `gw`, its verdict window. */
  verdictWindows(gw: string, devs: readonly string[]): Promise<Map<string, VerdictWindow>>;

  /** The next command id of `dev` (strictly increasing, from 1; a gap where one was not queued). */
  nextCommandId(dev: string): Promise<number>;
  /** Queue a signed command with the next cursor; wakes the gateway's long polls. */
  queueCommand(c: NewCommand): Promise<CommandRecord>;
  /**
   * Replace command (dev, cid), still open, by its re-signing for a newer grant: a new cursor,
   * perhaps another gateway. Only while the newest grant of `dev` still has `c.hh` (a newer one
   * re-signs again). False when nothing was replaced.
   */
  replaceCommand(c: NewCommand): Promise<boolean>;
  /** Open commands (no done/failed, exp > now) of these devices, by device and cid. */
  openCommands(devs: readonly string[], now: number): Promise<CommandRecord[]>;
  /** Open commands queued for `gw` after `since`, by cursor, at most `limit`; marks them served. */
  commandsFor(gw: string, since: number, now: number, limit: number): Promise<{ cursor: number; commands: CommandRecord[] }>;
  /** Every command of `dev`, by cid. */
  listCommands(dev: string): Promise<CommandRecord[]>;
  /** Record acks from `gw`; the number that named an existing command. */
  recordAcks(gw: string, acks: readonly AckRecord[]): Promise<number>;
  /**
   * Call `listener(gw)` when a command is queued or moved for `gw` (`*`: something changed,
   * gateway unknown), in this process or, where the store can tell, in another. Resolves, once
   * listening, to an unsubscribe function.
   */
  onCommandQueued(listener: (gw: string) => void): Promise<() => void>;
}
