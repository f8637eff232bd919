import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
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

  function cache(extra: { maxLeases?: number; maxBytes?: number } = {}): LeaseCache {
    return new LeaseCache({ gw: GW, backendKeys, stateDir: tmp.path, clock, logger: silent, maxLeases: BACKEND_CLIENT_DEFAULTS.maxLeases, ...extra });
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

  it('persists atomically (0600) after the coalescing delay and reloads, dropping tampered entries', async () => {
    const c = cache();
    for (const d of ['a', 'b']) {
      const l = await lease(d);
      c.put(l.lease, l.bytes);
    }
    assert.equal(clock.pending, 1, 'one coalesced write armed');
    clock.advance(30_000);
    await c.flush();
    const file = join(tmp.path, 'leases.json');
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const reloaded = cache();
    assert.equal(await reloaded.load(), 2);
    // Replace one entry with a lease signed by someone else: it must not survive a load.
    const forged = await lease('a', { signer: impostor });
    const content = JSON.parse(await readFile(file, 'utf8')) as { version: number; leases: string[] };
    content.leases[0] = Buffer.from(forged.bytes).toString('base64url');
    await writeFile(file, JSON.stringify(content));
    const again = cache();
    assert.equal(await again.load(), 1);
    assert.equal(again.get('a'), undefined);
    assert.ok(again.get('b'));
  });

  it('an unreadable lease file does not stop the start: the cache starts empty and the next write replaces it', async () => {
    const file = join(tmp.path, 'leases.json');
    await writeFile(file, '{"version":1,"leases":[');
    const c = cache();
    assert.equal(await c.load(), 0);
    assert.equal(await c.flush(), true);
    assert.deepEqual(JSON.parse(await readFile(file, 'utf8')), { version: 1, leases: [] });
  });

  it('revoke drops the leases of the named devices', async () => {
    const c = cache();
    const l = await lease('a');
    c.put(l.lease, l.bytes);
    assert.equal(c.revoke(['a', 'zz']), 1);
    assert.equal(c.get('a'), undefined);
  });
});
