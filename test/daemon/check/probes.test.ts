import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:tls';
import { createTestPki, type CertFiles, type TestPki } from '../../../backend/pki.js';
import { probeBackendTls } from '../../../daemon/check/probes/backend-tls.js';
import { probeTpm } from '../../../daemon/check/probes/tpm.js';
import { parseConfigText } from '../../../daemon/config/load.js';
import { type GatehouseConfig } from '../../../daemon/config/schema.js';
import { provisionTpmKey } from '../../../tpm/provision.js';
import { minimalConfigYaml } from '../../../testkit/config.js';
import { Swtpm } from '../../../testkit/swtpm.js';

function listen(cert: CertFiles): Promise<{ server: Server; port: number }> {
  return new Promise((resolve) => {
    const server = createServer({ cert: cert.certPem, key: cert.keyPem }, (s) => s.end());
    server.listen(0, '127.0.0.1', () => {
      const a = server.address();
      resolve({ server, port: typeof a === 'object' && a !== null ? a.port : 0 });
    });
  });
}

describe('daemon/check/probes', () => {
  describe('backend TLS (real certificates, loopback TLS)', () => {
    let dir: string;
    let pki: TestPki;
    const servers: Server[] = [];

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'gh-probe-'));
      pki = await createTestPki(dir, { dnsNames: ['backend.test'], ips: ['127.0.0.1'] });
    });
    after(async () => {
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
      await rm(dir, { recursive: true, force: true });
    });

    async function probe(cert: CertFiles, extra: Partial<GatehouseConfig['backend']> = {}) {
      const { server, port } = await listen(cert);
      servers.push(server);
      const cfg = parseConfigText(minimalConfigYaml()).backend;
      return probeBackendTls({ ...cfg, url: `https://127.0.0.1:${port}`, caFile: pki.ca.certPath, serverName: 'backend.test', ...extra });
    }

    it('accepts the genuine certificate for the configured name, and its pin', async () => {
      const spki = new X509Certificate(pki.server.certPem).publicKey.export({ type: 'spki', format: 'der' });
      const r = await probe(pki.server, { pinSha256: createHash('sha256').update(spki).digest('hex') });
      assert.equal(r.ok, true, r.detail);
      assert.match(r.detail, /TLS ok for backend\.test/);
    });

    it('names each failure', async () => {
      assert.equal((await probe(pki.wrongName)).code, 'GH_CHECK_TLS_NAME');
      assert.equal((await probe(pki.cnOnly)).code, 'GH_CHECK_TLS_NAME');
      assert.equal((await probe(pki.untrusted)).code, 'GH_CHECK_TLS_UNTRUSTED');
      assert.equal((await probe(pki.expired)).code, 'GH_CHECK_TLS_EXPIRED');
      assert.equal((await probe(pki.server, { pinSha256: 'a'.repeat(64) })).code, 'GH_CHECK_TLS_PIN');
      assert.equal((await probe(pki.server, { caFile: join(dir, 'absent.pem') })).code, 'GH_CHECK_CA_FILE');
    });

    it('reports a refused connection', async () => {
      const { server, port } = await listen(pki.server);
      await new Promise((r) => server.close(r));
      const cfg = parseConfigText(minimalConfigYaml()).backend;
      const r = await probeBackendTls({ ...cfg, url: `https://127.0.0.1:${port}`, caFile: pki.ca.certPath });
      assert.equal(r.ok, false);
      assert.equal(r.code, 'GH_CHECK_CONNECT');
      assert.match(r.detail, /ECONNREFUSED/);
    });
  });

  describe('TPM (real swtpm)', () => {
    let tpm: Swtpm;
    let stateDir: string;
    before(async () => {
      tpm = await Swtpm.start();
      stateDir = await mkdtemp(join(tmpdir(), 'gh-probe-state-'));
    });
    after(async () => {
      await tpm.dispose();
      await rm(stateDir, { recursive: true, force: true });
    });

    function config(tcti: string): GatehouseConfig {
      const c = parseConfigText(minimalConfigYaml());
      c.tpm.tcti = tcti;
      c.gateway.stateDir = stateDir;
      return c;
    }

    it('finds no key before provisioning, then the key', async () => {
      const before = await probeTpm(config(tpm.tcti));
      assert.equal(before.reachable, true, before.detail);
      assert.equal(before.keyPresent, false);
      await provisionTpmKey({ tcti: tpm.tcti, stateDir });
      const after = await probeTpm(config(tpm.tcti));
      assert.deepEqual([after.reachable, after.keyPresent], [true, true], after.detail);
      assert.match(after.detail ?? '', /^thumbprint [0-9a-f]{16}/);
    });

    it('reports an unreachable TPM', async () => {
      const r = await probeTpm(config('swtpm:host=127.0.0.1,port=1'), { timeoutMs: 5000 });
      assert.equal(r.reachable, false, r.detail);
      assert.equal(r.keyPresent, false);
    });
  });
});
