/**
 * An independent check of the requests the gateway sends: the RFC 9421 signature base is rebuilt
 * here by hand (not with protocol/http-signature.ts) and verified with node:crypto, and the
 * RFC 9530 Content-Digest is recomputed.
 */
import assert from 'node:assert/strict';
import { createHash, verify, type KeyObject } from 'node:crypto';
import type { RecordedRequest } from './backend-env.js';

export interface CheckedSignature {
  keyid: string;
  alg: string;
  created: number;
  nonce: string;
  covered: string[];
}

export function checkRequestSignature(req: RecordedRequest, origin: string, key: KeyObject): CheckedSignature {
  const input = req.headers['signature-input'];
  const sig = req.headers['signature'];
  assert.ok(input !== undefined && sig !== undefined, 'signature headers present');
  const m = /^gh=(\(([^)]*)\)(.*))$/.exec(input);
  assert.ok(m, `Signature-Input is labelled gh: ${input}`);
  const paramsLine = m[1] as string;
  const covered = (m[2] as string).split(' ').map((c) => c.replace(/^"|"$/g, ''));
  const params = new Map<string, string>();
  for (const p of (m[3] as string).split(';').filter((x) => x !== '')) {
    const eq = p.indexOf('=');
    params.set(p.slice(0, eq), p.slice(eq + 1).replace(/^"|"$/g, ''));
  }
  const s = /^gh=:([A-Za-z0-9+/=]+):$/.exec(sig);
  assert.ok(s, 'Signature is a byte sequence labelled gh');
  const signature = Buffer.from(s[1] as string, 'base64');

  const values: Record<string, string> = {
    '@method': req.method,
    '@target-uri': `${origin}${req.path}`,
  };
  if (req.body !== undefined) {
    const digest = `sha-256=:${createHash('sha256').update(req.body).digest('base64')}:`;
    assert.equal(req.headers['content-digest'], digest, 'Content-Digest matches the body');
    values['content-digest'] = digest;
    values['content-type'] = req.headers['content-type'] ?? '';
    assert.deepEqual(covered, ['@method', '@target-uri', 'content-digest', 'content-type']);
  } else {
    assert.deepEqual(covered, ['@method', '@target-uri']);
  }
  const lines = covered.map((c) => `"${c}": ${values[c] ?? ''}`);
  lines.push(`"@signature-params": ${paramsLine}`);
  const base = Buffer.from(lines.join('\n'), 'utf8');
  const alg = params.get('alg') ?? '';
  const ok = alg === 'ed25519'
    ? verify(null, base, key, signature)
    : verify('sha256', base, { key, dsaEncoding: 'ieee-p1363' }, signature);
  assert.ok(ok, `signature verifies independently (${alg})`);
  return {
    keyid: params.get('keyid') ?? '',
    alg,
    created: Number(params.get('created')),
    nonce: params.get('nonce') ?? '',
    covered,
  };
}
