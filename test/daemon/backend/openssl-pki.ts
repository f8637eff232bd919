/**
 * Test certificates made at test time with the openssl CLI: a CA and leaves with chosen
 * subjectAltNames, a CN-only leaf and an expired leaf. Everything lives in one temp dir that
 * `dispose()` removes.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Pem {
  key: string;
  cert: string;
}

export interface LeafOptions {
  /** DNS names for subjectAltName; none means a CN-only certificate. */
  dns?: string[];
  ip?: string[];
  cn?: string;
  /** Issue an already expired certificate. */
  expired?: boolean;
}

export class OpensslPki {
  private readonly dir = mkdtempSync(join(tmpdir(), 'gh-pki-'));
  private serial = 1;

  private run(args: string[]): void {
    execFileSync('openssl', args, { cwd: this.dir, stdio: ['ignore', 'ignore', 'pipe'] });
  }

  /** A self-signed CA. */
  ca(name: string): Pem {
    const base = `ca-${name}`;
    this.run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${base}.key`,
      '-out', `${base}.pem`, '-subj', `/CN=${name}`, '-days', '2',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    return this.read(base);
  }

  /** A leaf signed by `ca`. */
  leaf(ca: Pem, opts: LeafOptions): Pem {
    const base = `leaf-${this.serial}`;
    const serial = String(this.serial++);
    writeFileSync(join(this.dir, 'ca.key'), ca.key);
    writeFileSync(join(this.dir, 'ca.pem'), ca.cert);
    this.run(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${base}.key`,
      '-out', `${base}.csr`, '-subj', `/CN=${opts.cn ?? 'leaf'}`]);
    const sans = [...(opts.dns ?? []).map((d) => `DNS:${d}`), ...(opts.ip ?? []).map((i) => `IP:${i}`)];
    const ext = ['basicConstraints=CA:FALSE', 'extendedKeyUsage=serverAuth'];
    if (sans.length > 0) ext.push(`subjectAltName=${sans.join(',')}`);
    writeFileSync(join(this.dir, `${base}.ext`), `${ext.join('\n')}\n`);
    // openssl 3.0 takes -days -1 and gives a notAfter a day before notBefore: expired now.
    this.run(['x509', '-req', '-in', `${base}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', serial,
      '-days', opts.expired === true ? '-1' : '2', '-extfile', `${base}.ext`, '-out', `${base}.pem`]);
    return this.read(base);
  }

  private read(base: string): Pem {
    return {
      key: readFileSync(join(this.dir, `${base}.key`), 'utf8'),
      cert: readFileSync(join(this.dir, `${base}.pem`), 'utf8'),
    };
  }

  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
