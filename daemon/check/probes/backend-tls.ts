/**
 * A TLS handshake with the backend: reachable, chains to the configured CA, carries the
 * configured name, matches the pin. No HTTP request is made (nothing to sign).
 */
import { createHash, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { checkServerIdentity, connect, type PeerCertificate } from 'node:tls';
import type { GatehouseConfig } from '../../config/schema.js';
import type { BackendProbeResult } from '../types.js';

const EXPIRED = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);
const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
]);

function classify(err: NodeJS.ErrnoException): BackendProbeResult {
  const code = err.code ?? '';
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return { ok: false, code: 'GH_CHECK_TLS_NAME', detail: `certificate name mismatch: ${err.message}` };
  if (EXPIRED.has(code)) return { ok: false, code: 'GH_CHECK_TLS_EXPIRED', detail: `certificate ${code === 'CERT_HAS_EXPIRED' ? 'expired' : 'not yet valid'}` };
  if (UNTRUSTED.has(code)) return { ok: false, code: 'GH_CHECK_TLS_UNTRUSTED', detail: `certificate not trusted (${code})` };
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'EPERM' || code === 'ECONNRESET') {
    return { ok: false, code: 'GH_CHECK_CONNECT', detail: `cannot connect (${code})` };
  }
  return { ok: false, code: 'GH_CHECK_CONNECT', detail: `TLS handshake failed (${code || 'error'})` };
}

export interface BackendProbeOptions {
  timeoutMs?: number;
}

export async function probeBackendTls(cfg: GatehouseConfig['backend'], opts: BackendProbeOptions = {}): Promise<BackendProbeResult> {
  const url = new URL(cfg.url);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = url.port === '' ? 443 : Number(url.port);
  const name = cfg.serverName ?? host;
  let ca: Buffer | undefined;
  if (cfg.caFile !== undefined) {
    try {
      ca = await readFile(cfg.caFile);
    } catch (err) {
      return { ok: false, code: 'GH_CHECK_CA_FILE', detail: `${cfg.caFile}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}` };
    }
  }
  const timeoutMs = opts.timeoutMs ?? cfg.connectTimeoutMs;
  return new Promise<BackendProbeResult>((resolve) => {
    let settled = false;
    const finish = (r: BackendProbeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    const socket = connect({
      host,
      port,
      servername: /^[\d.]+$|:/.test(name) ? undefined : name,
      ...(ca === undefined ? {} : { ca }),
      rejectUnauthorized: true,
      ALPNProtocols: ['http/1.1'],
      // The name checked is serverName, not necessarily the host we dialled.
      checkServerIdentity: (_host: string, cert: PeerCertificate) => identityError(name, cert),
    });
    const timer = setTimeout(() => finish({ ok: false, code: 'GH_CHECK_TIMEOUT', detail: `no TLS handshake within ${timeoutMs} ms` }), timeoutMs);
    socket.once('secureConnect', () => {
      const der = socket.getPeerX509Certificate();
      if (cfg.pinSha256 !== undefined) {
        const spki = der === undefined ? undefined : spkiOf(der);
        const got = spki === undefined ? '' : createHash('sha256').update(spki).digest('hex');
        if (got !== cfg.pinSha256.toLowerCase()) {
          finish({ ok: false, code: 'GH_CHECK_TLS_PIN', detail: 'certificate key does not match backend.pinSha256' });
          return;
        }
      }
      const until = der?.validTo ?? 'unknown';
      finish({ ok: true, detail: `${url.host}: TLS ok for ${name} (certificate valid until ${until})` });
    });
    socket.once('error', (err: NodeJS.ErrnoException) => finish(classify(err)));
  });
}

/**
 * Node falls back to the subject CN when a certificate has no subjectAltName; RFC 6125 §6.4.4
 * and the backend client do not, so neither does this check.
 */
function identityError(name: string, cert: PeerCertificate): Error | undefined {
  if (!/(?:^|, )(?:DNS|IP Address):/.test(cert.subjectaltname ?? '')) {
    const err: NodeJS.ErrnoException = new Error(`certificate has no subjectAltName for ${name} (a CN-only name is not accepted)`);
    err.code = 'ERR_TLS_CERT_ALTNAME_INVALID';
    return err;
  }
  return checkServerIdentity(name, cert);
}

function spkiOf(cert: X509Certificate): Buffer {
  return cert.publicKey.export({ type: 'spki', format: 'der' });
}
