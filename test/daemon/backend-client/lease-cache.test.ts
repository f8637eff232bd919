import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { lstat, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import winston from 'winston';
import { checkLease } from '../../../daemon/backend-client/lease-check.js';
import { LeaseCache } from '../../../daemon/backend-client/lease-cache.js';
import { BACKEND_CLIENT_DEFAULTS } from '../../../testkit/component-defaults.js';
import { DEFAULT_POLICY, Ed25519Signer, signLease, type Lease } from '../../../protocol/index.js';
import { ManualClock } from '../../../testkit/manual-clock.js';
import { tempDirEach } from '../../../testkit/temp-dir.js';

const GW = 'gw-lab-1';
const silent = winston.createLogger({ silent: true });

describe('daemon/backend-client/lease-cache', () => {
  const tmp = tempDirEach('gh-leases-');
  let clock: ManualClock;
  const backend = Ed25519Signer.generate('backend-1');
  const impostor = Ed25519Signer.generate('backend-1');
  const backendKeys = new Map([[backend.kid, backend.publicKeyRaw]]);

  beforeEach(() => {
    clock = new ManualClock();
  });

  const nowS = (): number => Math.floor(clock.now() / 1000);

  async function lease(dev: string, opts: { gw?: string; exp?: number; iat?: number; signer?: Ed25519Signer } = {}): Promise<{ lease: Lease; bytes: Uint8Array }> {
    const l: Lease = {
      type: 'lease', version: 1, dev, gw: opts.gw ?? GW, dpk: Ed25519Signer.generate(dev).publicKeyRaw,
      policy: { ...DEFAULT_POLICY, pub: [...DEFAULT_POLICY.pub], sub: [...DEFAULT_POLICY.sub] }, iat: opts.iat ?? nowS(), exp: opts.exp ?? nowS() + 3600,
    };
    return { lease: l, bytes: await signLease(l, opts.signer ?? backend) };
  }

  const opened: LeaseCache[] = [];
  afterEach(() => {
    for (const c of opened.splice(0)) c.close();
  });

  function cache(extra: { maxLeases?: number; maxBytes?: number } = {}): LeaseCache {
    const c = new LeaseCache({ gw: GW, backendKeys, stateDir: tmp.path, clock, logger: silent, maxLeases: BACKEND_CLIENT_DEFAULTS.maxLeases, ...extra });
    opened.push(c);
    return c;
  }

  it('checkLease refuses a lease signed by another key, for another gateway or device, or expired', async () => {
    const opts = { gw: GW, backendKeys, nowS: nowS() };
    assert.ok(checkLease((await lease('d1')).bytes, opts).ok);
    assert.match(String((checkLease((await lease('d1', { signer: impostor })).bytes, opts) as { why: string }).why), /does not verify/);
    assert.match(String((checkLease((await lease('d1', { gw: 'gw-other' })).bytes, opts) as { why: string }).why), /gateway/);
    assert.match(String((checkLease((await lease('d1')).bytes, { ...opts, dev: 'd2' }) as { why: string }).why), /device/);
    assert.match(String((checkLease((await lease('d1', { iat: nowS() - 10, exp: nowS() })).bytes, opts) as { why: string }).why), /expired/);
    assert.match(String((checkLease(new Uint8Array([1, 2, 3]), opts) as { why: string }).why), /parse/);
  });

  it('checkLease without the signature check still refuses what is not for this gateway, device or time', async () => {
    const opts = { gw: GW, backendKeys, nowS: nowS(), verifySignature: false };
    assert.ok(checkLease((await lease('d1', { signer: impostor })).bytes, opts).ok, 'only the signature is left out');
    assert.match(String((checkLease((await lease('d1', { gw: 'gw-other' })).bytes, opts) as { why: string }).why), /gateway/);
    assert.match(String((checkLease((await lease('d1')).bytes, { ...opts, dev: 'd2' }) as { why: string }).why), /device/);
    assert.match(String((checkLease((await lease('d1', { iat: nowS() - 10, exp: nowS() })).bytes, opts) as { why: string }).why), /expired/);
    assert.match(String((checkLease((await lease('d1', { signer: Ed25519Signer.generate('backend-other') })).bytes, opts) as { why: string }).why), /unknown backend kid/);
  });

  it('evicts the least recently used beyond the count bound', async () => {
    const c = cache({ maxLeases: 2 });
    for (const d of ['a', 'b']) {
      const l = await lease(d);
      c.put(l.lease, l.bytes);
    }
    assert.ok(c.get('a')); // a is now the most recently used
    const l = await lease('c');
    c.put(l.lease, l.bytes);
    assert.equal(c.size, 2);
    assert.equal(c.get('b'), undefined);
    assert.ok(c.get('a'));
    assert.ok(c.get('c'));
  });

  it('bounds the total bytes', async () => {
    const one = await lease('a');
    const c = cache({ maxBytes: one.bytes.length * 2 + 1 });
    c.put(one.lease, one.bytes);
    for (const d of ['b', 'c', 'd']) {
      const l = await lease(d);
      c.put(l.lease, l.bytes);
    }
    assert.equal(c.size, 2);
    assert.ok(c.totalBytes <= one.bytes.length * 2 + 1);
  });

  it('expired leases are not returned and are dropped', async () => {
    const c = cache();
    const l = await lease('a', { exp: nowS() + 10 });
    c.put(l.lease, l.bytes);
    assert.ok(c.get('a'));
    clock.advance(10_000);
    assert.equal(c.get('a'), undefined);
    assert.equal(c.size, 0);
  });

  function rows(): { dev: string; bytes: Buffer }[] {
    const db = new Database(join(tmp.path, 'leases.db'));
    try {
      return db.prepare<[], { dev: string; bytes: Buffer }>('SELECT dev, bytes FROM leases ORDER BY dev').all();
    } finally {
      db.close();
    }
  }

  it('persists after the coalescing delay into a 0600 SQLite file and reopens it, refusing tampered entries at use', async () => {
    const c = cache();
    assert.equal(await c.load(), 0);
    for (const d of ['a', 'b']) {
      const l = await lease(d);
      c.put(l.lease, l.bytes);
    }
    assert.equal(clock.pending, 1, 'one coalesced write armed');
    clock.advance(30_000);
    await c.flush();
    const file = join(tmp.path, 'leases.db');
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.deepEqual(rows().map((r) => r.dev), ['a', 'b']);
    const reloaded = cache();
    assert.equal(await reloaded.load(), 2);
    assert.ok(reloaded.get('a'));
    reloaded.close();
    // Replace one entry with a lease signed by someone else: it must not be relied on.
    const forged = await lease('a', { signer: impostor });
    const db = new Database(file);
    db.prepare('UPDATE leases SET bytes = ? WHERE dev = ?').run(forged.bytes, 'a');
    db.close();
    const again = cache();
    assert.equal(await again.load(), 2, 'opening reads no lease');
    assert.equal(again.get('a'), undefined, 'the forged lease is refused at use');
    assert.equal(again.size, 1, 'and dropped');
    assert.ok(again.get('b'));
    assert.equal(await again.flush(), true);
    assert.deepEqual(rows().map((r) => r.dev), ['b']);
  });

  it('keeps the LRU order and both bounds across a reopen', async () => {
    const c = cache({ maxLeases: 3 });
    await c.load();
    for (const d of ['a', 'b', 'c']) {
      const l = await lease(d);
      c.put(l.lease, l.bytes);
    }
    await c.flush();
    const r = cache({ maxLeases: 3 });
    await r.load();
    assert.ok(r.get('a')); // a is now the most recently used
    const d = await lease('d');
    r.put(d.lease, d.bytes);
    assert.equal(r.size, 3);
    assert.equal(r.get('b'), undefined, 'b was the least recently used');
    await r.flush();
    const smaller = cache({ maxLeases: 2 });
    assert.equal(await smaller.load(), 2, 'a smaller bound evicts at open');
    assert.equal(smaller.get('c'), undefined);
    assert.ok(smaller.get('a'));
    assert.ok(smaller.get('d'));
  });

  it('a revocation committed by flush() is gone after a crash (the file is all that is left)', async () => {
    const c = cache();
    await c.load();
    for (const d of ['a', 'b']) {
      const l = await lease(d);
      c.put(l.lease, l.bytes);
    }
    assert.equal(await c.flush(), true);
    assert.equal(c.revoke(['a']), 1);
    assert.equal(await c.flush(), true);
    // No close(): the process is gone; a new cache opens the same file.
    const after = cache();
    assert.equal(await after.load(), 1);
    assert.equal(after.get('a'), undefined);
    assert.ok(after.get('b'));
  });

  it('imports a leases.json of an earlier version once, then removes it', async () => {
    const a = await lease('a');
    const b = await lease('b');
    const foreign = await lease('c', { gw: 'gw-other' });
    const legacy = join(tmp.path, 'leases.json');
    await writeFile(legacy, JSON.stringify({ version: 1, leases: [a, b, foreign].map((l) => Buffer.from(l.bytes).toString('base64url')) }));
    const c = cache();
    assert.equal(await c.load(), 2, 'the lease for another gateway is not imported');
    assert.equal(existsSync(legacy), false);
    assert.deepEqual(c.get('a')?.bytes, a.bytes);
    assert.ok(c.get('b'));
    assert.equal(c.get('c'), undefined);
    c.close();
    assert.equal(await cache().load(), 2, 'the next start opens the file only');
  });

  it('an unreadable lease file does not stop the start: the cache starts empty and the file is replaced', async () => {
    const file = join(tmp.path, 'leases.db');
    await writeFile(file, 'this is not a database, just some bytes that are long enough to have a header');
    const c = cache();
    assert.equal(await c.load(), 0);
    const l = await lease('a');
    c.put(l.lease, l.bytes);
    assert.equal(await c.flush(), true);
    assert.deepEqual(rows().map((r) => r.dev), ['a']);
  });

  it('a symlink at the lease file is not followed', async () => {
    const target = join(tmp.path, 'elsewhere');
    await writeFile(target, 'keep me');
    await symlink(target, join(tmp.path, 'leases.db'));
    const c = cache();
    assert.equal(await c.load(), 0);
    assert.equal(await readFile(target, 'utf8'), 'keep me');
    assert.equal((await lstat(join(tmp.path, 'leases.db'))).isFile(), true);
  });

  it('revoke drops the leases of the named devices', async () => {
    const c = cache();
    const l = await lease('a');
    c.put(l.lease, l.bytes);
    assert.equal(c.revoke(['a', 'zz']), 1);
    assert.equal(c.get('a'), undefined);
  });
});
