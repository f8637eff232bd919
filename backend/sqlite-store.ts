/**
 * The SQLite store: the registry file in the data directory (backend/registry.ts, synchronous
 * better-sqlite3) behind the asynchronous {@link BackendStore} interface. The default, for one
 * backend process (the demo, a lab). Each call runs synchronously and returns a settled promise:
 * no thread hop, so the verify loop costs what it cost before the interface was async.
 */
import { SCHEMA_VERSION } from './registry-schema.js';
import { Registry, type DeviceRecord, type GatewayRecord, type GrantRecord, type NewDevice, type RegistryOptions, type SessionKeyRecord } from './registry.js';
import type { NonceOutcome } from './nonce-store.js';
import type { BackendStore, StoreStatus, VerifyDevice, VerifyOutcomes } from './store.js';
import type { AckRecord, CommandRecord, NewCommand, StoredTelemetry, TelemetryRecord, VerdictWindow } from './data-plane-store.js';

export class SqliteStore implements BackendStore {
  readonly kind = 'sqlite' as const;
  readonly #path: string;
  /** The synchronous registry underneath (admin tools and SQLite-only tests). */
  readonly registry: Registry;

  private constructor(path: string, registry: Registry) {
    this.#path = path;
    this.registry = registry;
  }

  /** Open (creating and upgrading if needed) the registry file at `path`; `:memory:` for throwaway use. */
  static open(path: string, opts: RegistryOptions = {}): SqliteStore {
    return new SqliteStore(path, Registry.open(path, opts));
  }

  async addGateway(g: { id: string; tpmPublicKeyPem: string; groups?: readonly string[] }): Promise<GatewayRecord> {
    return this.registry.addGateway(g);
  }
  async getGateway(id: string): Promise<GatewayRecord | undefined> {
    return this.registry.getGateway(id);
  }
  async listGateways(): Promise<GatewayRecord[]> {
    return this.registry.listGateways();
  }
  async revokeGateway(id: string): Promise<boolean> {
    return this.registry.revokeGateway(id);
  }
  async deviceProblem(d: NewDevice): Promise<string | undefined> {
    return this.registry.deviceProblem(d);
  }
  async addDevice(d: NewDevice): Promise<DeviceRecord> {
    return this.registry.addDevice(d);
  }
  async addDevices(devices: readonly NewDevice[]): Promise<number> {
    return this.registry.addDevices(devices);
  }
  async getDevice(id: string): Promise<DeviceRecord | undefined> {
    return this.registry.getDevice(id);
  }
  async listDevices(): Promise<DeviceRecord[]> {
    return this.registry.listDevices();
  }
  async revokeDevice(id: string): Promise<number | undefined> {
    return this.registry.revokeDevice(id);
  }
  async revocationsSince(since: number, limit?: number, gw?: string): Promise<{ cursor: number; devices: string[] }> {
    return this.registry.revocationsSince(since, limit, gw);
  }
  async recordVerifiedAt(dev: string, gw: string): Promise<void> {
    this.registry.recordVerifiedAt(dev, gw);
  }
  async gatewaysVerifiedAt(dev: string): Promise<string[]> {
    return this.registry.gatewaysVerifiedAt(dev);
  }
  async markDeviceV2(dev: string): Promise<void> {
    this.registry.markDeviceV2(dev);
  }
  async deviceV2Since(dev: string): Promise<number | undefined> {
    return this.registry.deviceV2Since(dev);
  }
  async recordGrant(g: GrantRecord): Promise<void> {
    this.registry.recordGrant(g);
  }
  async newestGrant(dev: string): Promise<GrantRecord | undefined> {
    return this.registry.newestGrant(dev);
  }
  async devicesForVerify(ids: readonly string[]): Promise<Map<string, VerifyDevice>> {
    const out = new Map<string, VerifyDevice>();
    for (const id of ids) {
      if (out.has(id)) continue;
      const device = this.registry.getDevice(id);
      if (device === undefined) continue;
      const v2Since = this.registry.deviceV2Since(id);
      out.set(id, { device, ...(v2Since !== undefined ? { v2Since } : {}) });
    }
    return out;
  }
  async recordVerifyOutcomes(o: VerifyOutcomes): Promise<void> {
    this.registry.recordVerifyOutcomes(o);
  }
  async recordSessionKey(gw: string, publicKey: Uint8Array, notAfter: number): Promise<void> {
    this.registry.recordSessionKey(gw, publicKey, notAfter);
  }
  async sessionKeys(gw: string, now: number): Promise<SessionKeyRecord[]> {
    return this.registry.sessionKeys(gw, now);
  }
  async checkNonce(keyid: string, nonce: string, created: number, now: number): Promise<NonceOutcome> {
    return this.registry.nonces.check(keyid, nonce, created, now);
  }
  async sweepNonces(now: number): Promise<number> {
    return this.registry.nonces.sweep(now);
  }
  async nonceCount(): Promise<number> {
    return this.registry.nonces.size;
  }
  async storeTelemetry(gw: string, records: readonly TelemetryRecord[]): Promise<{ accepted: number; duplicates: number }> {
    return this.registry.dataPlane.storeTelemetry(gw, records);
  }
  async telemetryAfter(afterId: number, limit: number, dev?: string): Promise<StoredTelemetry[]> {
    return this.registry.dataPlane.telemetryAfter(afterId, limit, dev);
  }
  async telemetryLast(n: number, dev?: string): Promise<StoredTelemetry[]> {
    return this.registry.dataPlane.telemetryLast(n, dev);
  }
  async verdictWindows(gw: string, devs: readonly string[]): Promise<Map<string, VerdictWindow>> {
    return this.registry.dataPlane.verdictWindows(gw, devs);
  }
  async nextCommandId(dev: string): Promise<number> {
    return this.registry.dataPlane.nextCommandId(dev);
  }
  async queueCommand(c: NewCommand): Promise<CommandRecord> {
    return this.registry.dataPlane.queueCommand(c);
  }
  async replaceCommand(c: NewCommand): Promise<boolean> {
    return this.registry.dataPlane.replaceCommand(c);
  }
  async openCommands(devs: readonly string[], now: number): Promise<CommandRecord[]> {
    return this.registry.dataPlane.openCommands(devs, now);
  }
  async commandsFor(gw: string, since: number, now: number, limit: number): Promise<{ cursor: number; commands: CommandRecord[] }> {
    return this.registry.dataPlane.commandsFor(gw, since, now, limit);
  }
  async listCommands(dev: string): Promise<CommandRecord[]> {
    return this.registry.dataPlane.listCommands(dev);
  }
  async recordAcks(gw: string, acks: readonly AckRecord[]): Promise<number> {
    return this.registry.dataPlane.recordAcks(gw, acks);
  }
  async onCommandQueued(listener: (gw: string) => void): Promise<() => void> {
    return this.registry.dataPlane.onCommandQueued(listener);
  }
  async status(): Promise<StoreStatus> {
    return { kind: 'sqlite', where: this.#path, schemaVersion: SCHEMA_VERSION, latestSchemaVersion: SCHEMA_VERSION };
  }
  async close(): Promise<void> {
    this.registry.close();
  }
}
