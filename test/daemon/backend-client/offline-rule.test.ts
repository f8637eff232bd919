/**
 * decideOffline with bytes and objects only: real signatures, a lease lookup and the time injected.
 */
import assert from 'node:assert/strict';
import { decideOffline, type HeldLease } from '../../../daemon/backend-client/offline-rule.js';
import { DEFAULT_POLICY, Ed25519Signer, randomNonce, signHello, type Lease } from '../../../protocol/index.js';

const NOW_S = 1_900_000_000;

describe('daemon/backend-client/offline-rule', () => {
  const device = Ed25519Signer.generate('dev-1');
  const stranger = Ed25519Signer.generate('dev-1');

  function held(dev: string, dpk: Uint8Array, exp = NOW_S + 3600): HeldLease {
    const lease: Lease = {
      type: 'lease', version: 1, dev, gw: 'gw-a', dpk,
      policy: { ...DEFAULT_POLICY, pub: [...DEFAULT_POLICY.pub], sub: [...DEFAULT_POLICY.sub] }, iat: NOW_S - 60, exp,
    };
    return { lease, bytes: new Uint8Array([0xd2, 1, 2, 3]) };
  }

  function hello(dev: string, signer: Ed25519Signer): Promise<Uint8Array> {
    return signHello({ type: 'hello', version: 1, dev, pn: randomNonce(16), gn: randomNonce(16) }, signer);
  }

  const only = (h: HeldLease | undefined) => (dev: string): HeldLease | undefined => (h !== undefined && h.lease.dev === dev ? h : undefined);

  it('welcomes a hello that verifies under the leased dpk, with that lease and its bytes', async () => {
    const h = held('dev-1', device.publicKeyRaw);
    const v = decideOffline(await hello('dev-1', device), 'dev-1', only(h), NOW_S);
    assert.deepEqual(v, { kind: 'welcome', dev: 'dev-1', lease: h.lease, leaseBytes: h.bytes });
  });

  it('answers bad-signature when the hello does not verify under the leased dpk', async () => {
    const v = decideOffline(await hello('dev-1', stranger), 'dev-1', only(held('dev-1', device.publicKeyRaw)), NOW_S);
    assert.deepEqual(v, { kind: 'bad-signature', dev: 'dev-1' });
  });

  it('answers no-lease without a lease, with an expired one (whatever the lookup did), or with one for another device', async () => {
    const bytes = await hello('dev-1', device);
    assert.deepEqual(decideOffline(bytes, 'dev-1', only(undefined), NOW_S), { kind: 'no-lease', dev: 'dev-1' });
    const h = held('dev-1', device.publicKeyRaw, NOW_S + 1);
    assert.equal(decideOffline(bytes, 'dev-1', () => h, NOW_S).kind, 'welcome');
    assert.deepEqual(decideOffline(bytes, 'dev-1', () => h, NOW_S + 1), { kind: 'no-lease', dev: 'dev-1' });
    assert.deepEqual(decideOffline(bytes, 'dev-1', () => held('dev-2', device.publicKeyRaw), NOW_S), { kind: 'no-lease', dev: 'dev-1' });
  });

  it('answers malformed for bytes that are not a hello, or a hello naming another device', async () => {
    let asked = 0;
    const lookup = (dev: string): HeldLease | undefined => {
      asked += 1;
      return held(dev, device.publicKeyRaw);
    };
    assert.deepEqual(decideOffline(new Uint8Array([0xa0]), 'dev-1', lookup, NOW_S), { kind: 'malformed' });
    assert.deepEqual(decideOffline(await hello('dev-2', Ed25519Signer.generate('dev-2')), 'dev-1', lookup, NOW_S), { kind: 'malformed' });
    assert.equal(asked, 0, 'no lease is looked up for a hello that is not what it claims');
  });
});
