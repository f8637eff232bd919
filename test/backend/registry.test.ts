import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BackendKeyError, RegistryError } from '../../backend/errors.js';
import { ensureDataDir } from '../../backend/data-dir.js';
import { Registry } from '../../backend/registry.js';
import { SCHEMA_VERSION } from '../../backend/registry-schema.js';
import { openStore } from '../../backend/open-store.js';
import { deviceAllowedAt, type BackendStore } from '../../backend/store.js';
import { STORE_KINDS, suiteStore } from '../../testkit/stores.js';
import { SIGNING_KEY_FILE, ensureSigningKey, loadSigningKey } from '../../backend/signing-key.js';
import { Ed25519Signer } from '../../protocol/index.js';
import { tempDirEach } from '../../testkit/temp-dir.js';

function p256Pem(): string {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'pem', type: 'spki' }).toString();
}

for (const kind of STORE_KINDS) describe(`backend/store: the registry [${kind}]`, () => {
  const store = suiteStore(kind);
  let dir: string;
  let url: string;
  let now = 1000;
  let reg: BackendStore;
  const reopen = async (): Promise<void> => {
    await reg.close();
    reg = await openStore(url, { now: () => now });
  };

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-registry-'));
    now = 1000;
    url = (await store.fresh()) ?? `sqlite:${join(dir, 'r.sqlite')}`;
    reg = await openStore(url, { now: () => now });
  });
  afterEach(async () => {
    await reg.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('persists gateways and devices across reopen (WAL file on disk)', async () => {
    await reg.addGateway({ id: 'gw-1', tpmPublicKeyPem: p256Pem(), groups: ['g'] });
    const key = Ed25519Signer.generate('d').publicKeyRaw;
    await reg.addDevice({ id: 'd-1', publicKey: key, gateways: ['group:g'] });
    await reopen();
    const gw = await reg.getGateway('gw-1');
    const d = await reg.getDevice('d-1');
    assert.ok(gw && d);
    assert.deepEqual(d.publicKey, key);
    assert.equal(deviceAllowedAt(d, gw), true);
  });

  it('keeps only the two newest unexpired session keys per gateway', async () => {
    await reg.addGateway({ id: 'gw-1', tpmPublicKeyPem: p256Pem() });
    await reg.addGateway({ id: 'gw-2', tpmPublicKeyPem: p256Pem() });
    const k = [1, 2, 3].map(() => Ed25519Signer.generate('s').publicKeyRaw);
    await reg.recordSessionKey('gw-1', k[0] as Uint8Array, 5000);
    await reg.recordSessionKey('gw-1', k[1] as Uint8Array, 2000);
    await reg.recordSessionKey('gw-2', k[2] as Uint8Array, 5000);
    assert.deepEqual((await reg.sessionKeys('gw-1', now)).map((s) => s.publicKey), [k[1], k[0]]);
    await reg.recordSessionKey('gw-1', k[2] as Uint8Array, 5000);
    assert.deepEqual((await reg.sessionKeys('gw-1', now)).map((s) => s.publicKey), [k[2], k[1]]);
    assert.deepEqual((await reg.sessionKeys('gw-1', 2000)).map((s) => s.publicKey), [k[2]]);
    assert.equal((await reg.sessionKeys('gw-2', now)).length, 1);
    // Certifying the same key again (a retry) keeps the previous distinct key.
    await reg.recordSessionKey('gw-1', k[2] as Uint8Array, 6000);
    assert.deepEqual((await reg.sessionKeys('gw-1', now)).map((s) => [s.publicKey, s.notAfter]), [[k[2], 6000], [k[1], 2000]]);
    await reg.revokeGateway('gw-1');
    assert.equal((await reg.sessionKeys('gw-1', now)).length, 0);
  });

  it('feeds revocations with a monotonic cursor, paged', async () => {
    for (const id of ['a', 'b', 'c']) await reg.addDevice({ id, publicKey: Ed25519Signer.generate(id).publicKeyRaw, gateways: ['*'] });
    assert.deepEqual(await reg.revocationsSince(0), { cursor: 0, devices: [] });
    const c1 = await reg.revokeDevice('a');
    assert.equal(await reg.revokeDevice('a'), undefined);
    assert.equal(await reg.revokeDevice('nobody'), undefined);
    const c2 = await reg.revokeDevice('c');
    assert.ok(c1 !== undefined && c2 !== undefined && c2 > c1);
    assert.deepEqual(await reg.revocationsSince(0), { cursor: c2, devices: ['a', 'c'] });
    assert.deepEqual(await reg.revocationsSince(0, 1), { cursor: c1, devices: ['a'] });
    assert.deepEqual(await reg.revocationsSince(c1), { cursor: c2, devices: ['c'] });
    // A cursor from the future (e.g. a reset registry) is brought back to the real one.
    assert.deepEqual(await reg.revocationsSince(c2 + 50), { cursor: c2, devices: [] });
    assert.equal((await reg.getDevice('a'))?.status, 'revoked');
    assert.equal((await reg.getDevice('a'))?.revokedAt, 1000);
  });

  it("feeds each gateway only the revocations of devices verified there, moving its cursor past the others", async () => {
    for (const id of ['a', 'b', 'c']) await reg.addDevice({ id, publicKey: Ed25519Signer.generate(id).publicKeyRaw, gateways: ['*'] });
    await reg.recordVerifiedAt('a', 'gw-1');
    await reg.recordVerifiedAt('b', 'gw-2');
    await reg.recordVerifiedAt('c', 'gw-1');
    await reg.recordVerifiedAt('c', 'gw-2');
    const ca = await reg.revokeDevice('a');
    const cb = await reg.revokeDevice('b');
    const cc = await reg.revokeDevice('c');
    assert.ok(ca !== undefined && cb !== undefined && cc !== undefined);
    assert.deepEqual(await reg.revocationsSince(0, undefined, 'gw-1'), { cursor: cc, devices: ['a', 'c'] });
    assert.deepEqual(await reg.revocationsSince(0, undefined, 'gw-2'), { cursor: cc, devices: ['b', 'c'] });
    assert.deepEqual(await reg.revocationsSince(0, undefined, 'gw-3'), { cursor: cc, devices: [] });
    assert.deepEqual(await reg.revocationsSince(0, 1, 'gw-2'), { cursor: cb, devices: ['b'] });
    assert.deepEqual(await reg.gatewaysVerifiedAt('c'), ['gw-1', 'gw-2']);
  });

  it('remembers v2 devices and the newest grant per device across reopen', async () => {
    await reg.addDevice({ id: 'd', publicKey: Ed25519Signer.generate('d').publicKeyRaw, gateways: ['*'] });
    assert.equal(await reg.deviceV2Since('d'), undefined);
    await reg.markDeviceV2('d');
    now = 2000;
    await reg.markDeviceV2('d');
    const spk = Ed25519Signer.generate('s').publicKeyRaw;
    await reg.recordGrant({ dev: 'd', gw: 'gw-1', hh: new Uint8Array(32).fill(1), spk, iat: 1500, life: 60 });
    await reg.recordGrant({ dev: 'd', gw: 'gw-2', hh: new Uint8Array(32).fill(2), spk, iat: 1600, life: 90 });
    await reopen();
    assert.equal(await reg.deviceV2Since('d'), 1000);
    assert.deepEqual(await reg.newestGrant('d'), { dev: 'd', gw: 'gw-2', hh: new Uint8Array(32).fill(2), spk, iat: 1600, life: 90 });
    assert.equal(await reg.newestGrant('nobody'), undefined);
  });

  it('matches gateways by id, group and *, default deny', async () => {
    const gw = await reg.addGateway({ id: 'gw-1', tpmPublicKeyPem: p256Pem(), groups: ['north'] });
    const mk = (id: string, gateways: string[]) => reg.addDevice({ id, publicKey: Ed25519Signer.generate(id).publicKeyRaw, gateways });
    assert.equal(deviceAllowedAt(await mk('d1', ['gw-1']), gw), true);
    assert.equal(deviceAllowedAt(await mk('d2', ['group:north']), gw), true);
    assert.equal(deviceAllowedAt(await mk('d3', ['*']), gw), true);
    assert.equal(deviceAllowedAt(await mk('d4', ['gw-10', 'group:south', 'gw']), gw), false);
    await assert.rejects(mk('d5', []), RegistryError);
  });

  it('refuses bad ids, keys, policies and duplicates', async () => {
    const key = Ed25519Signer.generate('x').publicKeyRaw;
    assert.match((await reg.deviceProblem({ id: 'a b', publicKey: key, gateways: ['*'] })) ?? '', /valid device id/);
    assert.match((await reg.deviceProblem({ id: 'a', publicKey: new Uint8Array(32), gateways: ['*'] })) ?? '', /small order/);
    assert.match((await reg.deviceProblem({ id: 'a', publicKey: key, gateways: ['group:'] })) ?? '', /gateway id/);
    assert.match((await reg.deviceProblem({ id: 'a', publicKey: key, gateways: ['*'], policy: { pub: ['#/x'], sub: [] } })) ?? '', /pub/);
    assert.match(
      (await reg.deviceProblem({ id: 'a', publicKey: key, gateways: ['*'], policy: { pub: [], sub: [], extra: [] } as never })) ?? '',
      /exactly/,
    );
    await reg.addDevice({ id: 'a', publicKey: key, gateways: ['*'] });
    assert.match((await reg.deviceProblem({ id: 'a', publicKey: key, gateways: ['*'] })) ?? '', /already exists/);
    await assert.rejects(reg.addGateway({ id: 'gw', tpmPublicKeyPem: 'nothing' }), (e: unknown) => e instanceof RegistryError && e.code === 'GH_REGISTRY_BAD_KEY');
    const ed = generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }).toString();
    await assert.rejects(reg.addGateway({ id: 'gw', tpmPublicKeyPem: ed }), /P-256/);
  });
});

for (const kind of STORE_KINDS) describe(`backend/store: the nonce window [${kind}]`, () => {
  const store = suiteStore(kind);
  let dir: string;
  let url: string;
  let reg: BackendStore;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-nonces-'));
    url = (await store.fresh()) ?? `sqlite:${join(dir, 'r.sqlite')}`;
    reg = await openStore(url, { noncesPerKeyid: 3 });
  });
  afterEach(async () => {
    await reg.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a replay within the window and forgets after it', async () => {
    assert.equal(await reg.checkNonce('k', 'n1', 1000, 1000), 'fresh');
    assert.equal(await reg.checkNonce('k', 'n1', 1000, 1200), 'replay');
    assert.equal(await reg.checkNonce('other', 'n1', 1000, 1200), 'fresh');
    assert.equal(await reg.checkNonce('k', 'n1', 1000, 1300), 'replay');
    assert.equal(await reg.checkNonce('k', 'n1', 1000, 1301), 'fresh');
  });

  it('still refuses the nonce after the registry is closed and opened again', async () => {
    assert.equal(await reg.checkNonce('session:gw-1', 'n1', 1000, 1000), 'fresh');
    await reg.close();
    reg = await openStore(url, { noncesPerKeyid: 3 });
    assert.equal(await reg.checkNonce('session:gw-1', 'n1', 1000, 1010), 'replay');
  });

  it('answers full for one keyid over its quota while another keyid is unaffected, and recovers once entries expire', async () => {
    for (const n of ['a', 'b', 'c']) assert.equal(await reg.checkNonce('k', n, 1000, 1000), 'fresh');
    assert.equal(await reg.checkNonce('k', 'd', 1000, 1000), 'full');
    assert.equal(await reg.checkNonce('other', 'd', 1000, 1000), 'fresh');
    assert.equal(await reg.checkNonce('k', 'a', 1000, 1000), 'replay');
    assert.equal(await reg.checkNonce('k', 'd', 1301, 1301), 'fresh');
    // The sweep deleted every expired row; only the new one is left.
    assert.equal(await reg.nonceCount(), 1);
  });
});

describe('backend/registry: SQLite schema upgrade', () => {
  let dir: string;
  const now = 1000;
  let reg: Registry;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'gh-registry-'));
    reg = Registry.open(join(dir, 'r.sqlite'), { now: () => now });
  });
  afterEach(() => {
    reg.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('upgrades a schema-1 registry: every device counts as verified at each gateway it is allowed at', () => {
    reg.addGateway({ id: 'gw-1', tpmPublicKeyPem: p256Pem(), groups: ['north'] });
    reg.addGateway({ id: 'gw-2', tpmPublicKeyPem: p256Pem() });
    reg.addDevice({ id: 'd1', publicKey: Ed25519Signer.generate('d1').publicKeyRaw, gateways: ['group:north'] });
    reg.addDevice({ id: 'd2', publicKey: Ed25519Signer.generate('d2').publicKeyRaw, gateways: ['*'] });
    reg.close();
    const raw = new Database(join(dir, 'r.sqlite'));
    raw.exec("DROP TABLE device_gateways; DROP TABLE device_v2; DROP TABLE grants; DROP TABLE nonces; UPDATE meta SET value = '1' WHERE key = 'schema'");
    raw.close();
    reg = Registry.open(join(dir, 'r.sqlite'), { now: () => now });
    assert.deepEqual(reg.gatewaysVerifiedAt('d1'), ['gw-1']);
    assert.deepEqual(reg.gatewaysVerifiedAt('d2'), ['gw-1', 'gw-2']);
    reg.revokeDevice('d1');
    assert.deepEqual(reg.revocationsSince(0, undefined, 'gw-1').devices, ['d1']);
    assert.deepEqual(reg.revocationsSince(0, undefined, 'gw-2').devices, []);
    reg.close();
    const check = new Database(join(dir, 'r.sqlite'), { readonly: true });
    assert.equal(check.prepare<[], { value: string }>("SELECT value FROM meta WHERE key = 'schema'").get()?.value, String(SCHEMA_VERSION));
    check.close();
    reg = Registry.open(join(dir, 'r.sqlite'), { now: () => now });
  });

  it('upgrades a schema-2 registry to 3: the data-plane tables are added, the rest is kept', () => {
    reg.addDevice({ id: 'd3', publicKey: Ed25519Signer.generate('d3').publicKeyRaw, gateways: ['*'] });
    reg.close();
    const raw = new Database(join(dir, 'r.sqlite'));
    raw.exec("DROP TABLE telemetry; DROP TABLE commands; DROP TABLE command_counters; UPDATE meta SET value = '2' WHERE key = 'schema'");
    raw.close();
    reg = Registry.open(join(dir, 'r.sqlite'), { now: () => now });
    assert.equal(reg.getDevice('d3')?.id, 'd3');
    assert.equal(reg.dataPlane.nextCommandId('d3'), 1);
    assert.deepEqual(reg.dataPlane.telemetryLast(10), []);
    reg.close();
    const check = new Database(join(dir, 'r.sqlite'), { readonly: true });
    assert.equal(check.prepare<[], { value: string }>("SELECT value FROM meta WHERE key = 'schema'").get()?.value, '3');
    check.close();
    reg = Registry.open(join(dir, 'r.sqlite'), { now: () => now });
  });
});

describe('backend/registry file and directory modes', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'gh-modes-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('creates the database, its -wal and -shm 0600 even with umask 000', () => {
    const old = process.umask(0o000);
    let reg: Registry | undefined;
    try {
      reg = Registry.open(join(dir, 'r.sqlite'));
      reg.addDevice({ id: 'd', publicKey: Ed25519Signer.generate('d').publicKeyRaw, gateways: ['*'] });
      for (const f of ['r.sqlite', 'r.sqlite-wal', 'r.sqlite-shm']) assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, f);
    } finally {
      reg?.close();
      process.umask(old);
    }
  });

  it('tightens an existing database file readable by others', () => {
    Registry.open(join(dir, 'r.sqlite')).close();
    chmodSync(join(dir, 'r.sqlite'), 0o644);
    Registry.open(join(dir, 'r.sqlite')).close();
    assert.equal(statSync(join(dir, 'r.sqlite')).mode & 0o777, 0o600);
  });

  it('sets the data directory to 0700 whenever it is ensured, not only when it is created', () => {
    const data = join(dir, 'data');
    mkdirSync(data, { mode: 0o755 });
    chmodSync(data, 0o755);
    ensureDataDir(data);
    assert.equal(statSync(data).mode & 0o777, 0o700);
    ensureDataDir(join(dir, 'new', 'deeper'));
    assert.equal(statSync(join(dir, 'new', 'deeper')).mode & 0o777, 0o700);
  });
});

describe('backend/signing-key', () => {
  const tmp = tempDirEach('gh-skey-');

  it('creates once, then loads the same key', async () => {
    const a = await ensureSigningKey(tmp.path);
    const b = await ensureSigningKey(tmp.path);
    assert.equal(a.created, true);
    assert.equal(b.created, false);
    assert.deepEqual(a.signer.publicKeyRaw, b.signer.publicKeyRaw);
    assert.match(a.signer.kid, /^S-[0-9a-f]{16}$/);
  });

  it('refuses a key file others can read, a missing one and a non-key', async () => {
    assert.throws(() => loadSigningKey(tmp.path), (e: unknown) => e instanceof BackendKeyError && e.code === 'GH_BACKEND_KEY_MISSING');
    await ensureSigningKey(tmp.path);
    chmodSync(join(tmp.path, SIGNING_KEY_FILE), 0o644);
    assert.throws(() => loadSigningKey(tmp.path), (e: unknown) => e instanceof BackendKeyError && e.code === 'GH_BACKEND_KEY_MODE');
    writeFileSync(join(tmp.path, SIGNING_KEY_FILE), 'not a key', { mode: 0o600 });
    chmodSync(join(tmp.path, SIGNING_KEY_FILE), 0o600);
    assert.throws(() => loadSigningKey(tmp.path), (e: unknown) => e instanceof BackendKeyError && e.code === 'GH_BACKEND_KEY_INVALID');
  });
});
