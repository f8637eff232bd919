import assert from 'node:assert/strict';
import { IssuedLeases } from '../../backend/issued-leases.js';
import { DEFAULT_POLICY, Ed25519Signer, parseLease, verifySign1 } from '../../protocol/index.js';

describe('backend/issued-leases', () => {
  const signer = Ed25519Signer.generate('backend-1');
  const dpk = Ed25519Signer.generate('dev-1').publicKeyRaw;
  const policy = { pub: [...DEFAULT_POLICY.pub], sub: [...DEFAULT_POLICY.sub] };
  const T0 = 1_900_000_000;
  const base = { dev: 'dev-1', gw: 'gw-1', dpk, policy, now: T0, leaseSeconds: 3600 };

  it('answers the same signed bytes while the lease has half its life left, and a new lease after that', async () => {
    const l = new IssuedLeases();
    const first = (await l.lease(base, signer)).bytes;
    assert.equal(verifySign1(parseLease(first), signer.publicKeyRaw), true);
    assert.deepEqual((await l.lease({ ...base, now: T0 + 1800 }, signer)).bytes, first);
    const later = (await l.lease({ ...base, now: T0 + 1801 }, signer)).bytes;
    assert.notDeepEqual(later, first);
    assert.deepEqual({ iat: parseLease(later).payload.iat, exp: parseLease(later).payload.exp }, { iat: T0 + 1801, exp: T0 + 1801 + 3600 });
  });

  it('signs a new lease when anything it says would change: policy, device key, gateway, signing key, a shorter lifetime', async () => {
    const l = new IssuedLeases();
    const first = (await l.lease(base, signer)).bytes;
    const cases = [
      { ...base, policy: { pub: ['x/{dev}'], sub: [] } },
      { ...base, dpk: Ed25519Signer.generate('dev-1').publicKeyRaw },
      { ...base, gw: 'gw-2' },
      { ...base, leaseSeconds: 600 },
    ];
    for (const c of cases) {
      const l2 = new IssuedLeases();
      await l2.lease(base, signer);
      const b = (await l2.lease(c, signer)).bytes;
      assert.notDeepEqual(b, first);
      const p = parseLease(b).payload;
      assert.deepEqual([p.gw, p.policy, p.exp - p.iat], [c.gw, c.policy, c.leaseSeconds]);
    }
    const other = Ed25519Signer.generate('backend-2');
    const byOther = (await l.lease(base, other)).bytes;
    assert.equal(verifySign1(parseLease(byOther), other.publicKeyRaw), true);
  });

  it('is bounded: the least recently used device is forgotten first', async () => {
    const l = new IssuedLeases(2);
    const a = (await l.lease({ ...base, dev: 'a' }, signer)).bytes;
    await l.lease({ ...base, dev: 'b' }, signer);
    await l.lease({ ...base, dev: 'c' }, signer);
    assert.equal(l.size, 2);
    assert.notDeepEqual((await l.lease({ ...base, dev: 'a', now: T0 + 1 }, signer)).bytes, a);
  });
});
