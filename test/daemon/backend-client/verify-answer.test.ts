/**
 * readVerifyAnswer with objects and bytes only: no server, no client, the time a number.
 */
import assert from 'node:assert/strict';
import { readVerifyAnswer, type HelloVerdict } from '../../../daemon/backend-client/verify-answer.js';
import { BoundedSet } from '../../../common/bounded-set.js';
import { base64UrlEncode, DEFAULT_POLICY, Ed25519Signer, signLease, type Lease } from '../../../protocol/index.js';

const GW = 'gw-a';
const NOW_S = 1_900_000_000;

describe('daemon/backend-client/verify-answer', () => {
  const backend = Ed25519Signer.generate('backend-1');
  const impostor = Ed25519Signer.generate('backend-1');
  const ctx = { gw: GW, backendKeys: new Map([[backend.kid, backend.publicKeyRaw]]), nowS: NOW_S };
  const sent = new Map([['1', 'dev-1'], ['2', 'dev-2'], ['3', 'dev-3']]);

  async function lease(dev: string, o: { gw?: string; exp?: number; signer?: Ed25519Signer } = {}): Promise<string> {
    const l: Lease = {
      type: 'lease', version: 1, dev, gw: o.gw ?? GW, dpk: Ed25519Signer.generate(dev).publicKeyRaw,
      policy: { ...DEFAULT_POLICY, pub: [...DEFAULT_POLICY.pub], sub: [...DEFAULT_POLICY.sub] }, iat: NOW_S - 10, exp: o.exp ?? NOW_S + 3600,
    };
    return base64UrlEncode(await signLease(l, o.signer ?? backend));
  }

  function kinds(verdicts: Map<string, HelloVerdict>): Record<string, string> {
    return Object.fromEntries([...verdicts].map(([id, v]) => [id, v.kind === 'fault' ? `fault:${v.fault}` : v.kind === 'reject' ? `reject:${v.reason}` : 'welcome']));
  }

  it('reads a welcome with its lease, a reject with its reason, and leaves an uncovered hello without a verdict', async () => {
    const a = readVerifyAnswer({ results: [{ id: '1', ok: true, dev: 'dev-1', lease: await lease('dev-1') }, { id: '2', ok: false, reason: 'unknown-device' }] }, sent, ctx);
    assert.equal(a.refused, undefined);
    assert.deepEqual(kinds(a.verdicts), { 1: 'welcome', 2: 'reject:unknown-device' });
    const w = a.verdicts.get('1');
    assert.ok(w?.kind === 'welcome');
    assert.equal(w.lease.dev, 'dev-1');
    assert.equal(w.lease.gw, GW);
    assert.ok(w.leaseBytes.length > 0);
    assert.equal(a.verdicts.has('3'), false);
  });

  it('faults a result with an unknown reason, for another device, or not a boolean ok', async () => {
    const a = readVerifyAnswer({
      results: [
        { id: '1', ok: false, reason: 'because' },
        { id: '2', ok: true, dev: 'dev-1', lease: await lease('dev-1') },
        { id: '3', ok: 'yes', dev: 'dev-3', lease: await lease('dev-3') },
      ],
    }, sent, ctx);
    assert.deepEqual(kinds(a.verdicts), { 1: 'fault:reason', 2: 'fault:result', 3: 'fault:result' });
  });

  it('faults leases that are expired, for another gateway, not base64url, or under an unknown kid', async () => {
    const other = Ed25519Signer.generate('backend-2');
    const a = readVerifyAnswer({
      results: [
        { id: '1', ok: true, dev: 'dev-1', lease: await lease('dev-1', { exp: NOW_S }) },
        { id: '2', ok: true, dev: 'dev-2', lease: await lease('dev-2', { gw: 'gw-b' }) },
        { id: '3', ok: true, dev: 'dev-3', lease: '***' },
      ],
    }, sent, ctx);
    assert.deepEqual(kinds(a.verdicts), { 1: 'fault:lease', 2: 'fault:lease', 3: 'fault:lease' });
    assert.match((a.verdicts.get('1') as { why: string }).why, /expired/);
    assert.match((a.verdicts.get('2') as { why: string }).why, /gateway gw-b/);
    const b = readVerifyAnswer({ results: [{ id: '1', ok: true, dev: 'dev-1', lease: await lease('dev-1', { signer: other }) }] }, sent, ctx);
    assert.match((b.verdicts.get('1') as { why: string }).why, /unknown backend kid/);
  });

  it('skips only the signature of a lease text it already verified; a forged lease for the same device is still refused', async () => {
    const verified = new BoundedSet(16);
    const genuine = await lease('dev-1');
    const first = readVerifyAnswer({ results: [{ id: '1', ok: true, dev: 'dev-1', lease: genuine }] }, sent, { ...ctx, verified });
    assert.deepEqual(kinds(first.verdicts), { 1: 'welcome' });
    assert.equal(verified.size, 1);
    // The same text again: welcomed (its other checks still run: expired, it is refused).
    assert.deepEqual(kinds(readVerifyAnswer({ results: [{ id: '1', ok: true, dev: 'dev-1', lease: genuine }] }, sent, { ...ctx, verified }).verdicts), { 1: 'welcome' });
    assert.deepEqual(kinds(readVerifyAnswer({ results: [{ id: '1', ok: true, dev: 'dev-1', lease: genuine }] }, sent, { ...ctx, nowS: NOW_S + 7200, verified }).verdicts), { 1: 'fault:lease' });
    // An impostor's lease (same kid, other key) for the same device: verified, and refused.
    const forged = await lease('dev-1', { signer: impostor });
    const f = readVerifyAnswer({ results: [{ id: '1', ok: true, dev: 'dev-1', lease: forged }] }, sent, { ...ctx, verified });
    assert.deepEqual(kinds(f.verdicts), { 1: 'fault:lease' });
    assert.equal(verified.size, 1, 'the forged lease was not remembered');
  });

  it('verifies the signature of every lease of an answer, for its own device (security finding 5)', async () => {
    // An impostor (same kid, other key) signs the first and third; the fourth is genuine but for
    // another device; only the genuine second and fifth pass, wherever they stand.
    const a = readVerifyAnswer({
      results: [
        { id: '1', ok: true, dev: 'dev-1', lease: await lease('dev-1', { signer: impostor }) },
        { id: '2', ok: true, dev: 'dev-2', lease: await lease('dev-2') },
        { id: '3', ok: true, dev: 'dev-3', lease: await lease('dev-3', { signer: impostor }) },
      ],
    }, sent, ctx);
    assert.deepEqual(kinds(a.verdicts), { 1: 'fault:lease', 2: 'welcome', 3: 'fault:lease' });
    assert.match((a.verdicts.get('1') as { why: string }).why, /does not verify/);
    assert.match((a.verdicts.get('3') as { why: string }).why, /does not verify/);
    const b = readVerifyAnswer({
      results: [
        { id: '1', ok: true, dev: 'dev-1', lease: await lease('dev-1') },
        { id: '2', ok: true, dev: 'dev-2', lease: await lease('dev-1') },
        { id: '3', ok: true, dev: 'dev-3', lease: await lease('dev-3') },
      ],
    }, sent, ctx);
    assert.deepEqual(kinds(b.verdicts), { 1: 'welcome', 2: 'fault:lease', 3: 'welcome' });
    assert.match((b.verdicts.get('2') as { why: string }).why, /for device dev-1/);
  });

  it('refuses the rest of an answer at a repeated or unknown id, keeping the verdicts read before it', async () => {
    const a = readVerifyAnswer({ results: [{ id: '2', ok: false, reason: 'revoked' }, { id: '2', ok: false, reason: 'revoked' }, { id: '1', ok: false, reason: 'revoked' }] }, sent, ctx);
    assert.deepEqual(kinds(a.verdicts), { 2: 'reject:revoked' });
    assert.match(a.refused ?? '', /unknown or repeated id 2/);
    const b = readVerifyAnswer({ results: [{ id: '9', ok: false, reason: 'revoked' }] }, sent, ctx);
    assert.equal(b.verdicts.size, 0);
    assert.match(b.refused ?? '', /unknown or repeated id 9/);
  });

  it('refuses answers that are not an object with a results array no longer than the hellos sent', () => {
    for (const [json, why] of [
      [null, /results is not an array/],
      [[], /results is not an array/],
      [{ results: {} }, /results is not an array/],
      [{ results: [{}, {}, {}, {}] }, /more results than hellos/],
      [{ results: [{ id: 1 }] }, /without a string id/],
      [{ results: ['1'] }, /without a string id/],
    ] as const) {
      const a = readVerifyAnswer(json, sent, ctx);
      assert.equal(a.verdicts.size, 0);
      assert.match(a.refused ?? '', why, JSON.stringify(json));
    }
  });
});
