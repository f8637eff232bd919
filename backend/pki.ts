/**
 * A test and demo PKI made with the `openssl` CLI: a CA, server certificates with chosen
 * subjectAltNames, and the hostile variants a MITM test needs (another CA, another name, names
 * that merely contain the expected one, CN-only, expired). Never for production: keys are made
 * unencrypted on the local disk (mode 0600).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { CodedError } from '../common/errors.js';

export type PkiErrorCode =
  /** A file stem, CN or subjectAltName that is not acceptable (or no DNS name given). */
  | 'GH_PKI_BAD_NAME'
  /** openssl failed while making the test PKI. */
  | 'GH_PKI_OPENSSL';

/** The test PKI could not be made. */
export class PkiError extends CodedError<PkiErrorCode> {}

/** A certificate and its key, as files and as PEM text. */
export interface CertFiles {
  certPath: string;
  keyPath: string;
  certPem: string;
  keyPem: string;
}

export interface PkiCommonOptions {
  /** Per openssl invocation. Default 20 s. */
  timeoutMs?: number;
}

export interface CaOptions extends PkiCommonOptions {
  /** File stem: `<name>.pem`, `<name>.key`. */
  name: string;
  /** Subject CN; defaults to `name`. */
  cn?: string;
  /** Default 3650. */
  days?: number;
}

export interface CertOptions extends PkiCommonOptions {
  /** File stem: `<name>.pem`, `<name>.key`. */
  name: string;
  /** subjectAltName entries: DNS names and IP addresses (each classified by `net.isIP`). */
  sans?: readonly string[];
  /** Subject CN; defaults to the first SAN or `name`. With no SAN this is a CN-only certificate. */
  cn?: string;
  /** Default 825. */
  days?: number;
  /** Issue a certificate whose notAfter is already past. */
  expired?: boolean;
}

const NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;
const SAN_RE = /^[A-Za-z0-9.*:-]{1,253}$/;

function runOpenssl(args: readonly string[], cwd: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd, timeout: timeoutMs, maxBuffer: 1 << 20 }, (err, _stdout, stderr) => {
      if (err) {
        const detail = stderr.trim().split('\n').slice(-2).join(' ');
        reject(new PkiError('GH_PKI_OPENSSL', `openssl ${args[0] ?? ''} failed: ${detail || err.message}`, { cause: err }));
      } else {
        resolve();
      }
    });
  });
}

function checkName(name: string): void {
  if (!NAME_RE.test(name)) throw new PkiError('GH_PKI_BAD_NAME', `bad file stem "${name}"`);
}

/** A positive random 127-bit serial in hex, so two certificates never share one. */
function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f;
  return `0x${b.toString('hex')}`;
}

async function readPair(dir: string, name: string): Promise<CertFiles> {
  const certPath = join(dir, `${name}.pem`);
  const keyPath = join(dir, `${name}.key`);
  await chmod(keyPath, 0o600);
  return { certPath, keyPath, certPem: await readFile(certPath, 'utf8'), keyPem: await readFile(keyPath, 'utf8') };
}

/** A self-signed P-256 CA in `dir`. */
export async function createCa(dir: string, opts: CaOptions): Promise<CertFiles> {
  checkName(opts.name);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const cn = opts.cn ?? opts.name;
  if (!SAN_RE.test(cn.replace(/ /g, '-'))) throw new PkiError('GH_PKI_BAD_NAME', `bad CN "${cn}"`);
  await runOpenssl(
    [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', `${opts.name}.key`, '-out', `${opts.name}.pem`, '-subj', `/CN=${cn}`,
      '-days', String(opts.days ?? 3650), '-set_serial', serial(),
      '-addext', 'basicConstraints=critical,CA:TRUE',
      '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      '-addext', 'subjectKeyIdentifier=hash',
    ],
    dir,
    opts.timeoutMs ?? 20_000,
  );
  return readPair(dir, opts.name);
}

/** A P-256 server certificate signed by `ca`, in `dir`. */
export async function issueCert(dir: string, ca: CertFiles, opts: CertOptions): Promise<CertFiles> {
  checkName(opts.name);
  const sans = opts.sans ?? [];
  for (const s of sans) if (!SAN_RE.test(s)) throw new PkiError('GH_PKI_BAD_NAME', `bad subjectAltName "${s}"`);
  const cn = opts.cn ?? sans[0] ?? opts.name;
  if (!SAN_RE.test(cn)) throw new PkiError('GH_PKI_BAD_NAME', `bad CN "${cn}"`);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const csr = `${opts.name}.csr`;
  const ext = `${opts.name}.ext`;
  const lines = ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature', 'extendedKeyUsage=serverAuth'];
  if (sans.length > 0) lines.push(`subjectAltName=${sans.map((s) => (isIP(s) ? `IP:${s}` : `DNS:${s}`)).join(',')}`);
  try {
    await runOpenssl(
      ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
        '-keyout', `${opts.name}.key`, '-out', csr, '-subj', `/CN=${cn}`],
      dir,
      timeoutMs,
    );
    await writeFile(join(dir, ext), `${lines.join('\n')}\n`, { mode: 0o600 });
    // openssl 3.0 accepts `-days -1`: notAfter lands a day before notBefore, so expired now.
    await runOpenssl(
      ['x509', '-req', '-in', csr, '-CA', ca.certPath, '-CAkey', ca.keyPath, '-set_serial', serial(),
        '-days', opts.expired === true ? '-1' : String(opts.days ?? 825), '-extfile', ext, '-out', `${opts.name}.pem`],
      dir,
      timeoutMs,
    );
  } finally {
    await rm(join(dir, csr), { force: true });
    await rm(join(dir, ext), { force: true });
  }
  return readPair(dir, opts.name);
}

/** Everything a TLS test or the demo needs, all under one directory. */
export interface TestPki {
  dir: string;
  /** The CA the gateway trusts. */
  ca: CertFiles;
  /** The genuine backend certificate: every given DNS name and IP as a SAN. */
  server: CertFiles;
  /** A CA nobody trusts, and a certificate from it for the right names. */
  untrustedCa: CertFiles;
  untrusted: CertFiles;
  /** Trusted CA, another name (`other.example.net`). */
  wrongName: CertFiles;
  /** Trusted CA, `<name>.attacker.test`: contains the expected name as a prefix. */
  suffixed: CertFiles;
  /** Trusted CA, `attacker-<name>`: contains the expected name as a suffix. */
  prefixed: CertFiles;
  /** Trusted CA, the expected name only in the subject CN, no subjectAltName. */
  cnOnly: CertFiles;
  /** Trusted CA, right names, notAfter in the past. */
  expired: CertFiles;
}

/**
 * Make a CA, a server certificate for `dnsNames` + `ips`, and the hostile variants, in `dir`.
 * `dnsNames[0]` is the name the hostile variants imitate.
 */
export async function createTestPki(
  dir: string,
  opts: { dnsNames: readonly string[]; ips?: readonly string[] } & PkiCommonOptions,
): Promise<TestPki> {
  const expected = opts.dnsNames[0];
  if (expected === undefined) throw new PkiError('GH_PKI_BAD_NAME', 'at least one DNS name is required');
  const common = opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs };
  const sans = [...opts.dnsNames, ...(opts.ips ?? [])];
  const ca = await createCa(dir, { name: 'ca', cn: 'Gatehouse Test CA', ...common });
  const untrustedCa = await createCa(dir, { name: 'untrusted-ca', cn: 'Gatehouse Test CA', ...common });
  return {
    dir,
    ca,
    untrustedCa,
    server: await issueCert(dir, ca, { name: 'server', sans, ...common }),
    untrusted: await issueCert(dir, untrustedCa, { name: 'untrusted', sans, ...common }),
    wrongName: await issueCert(dir, ca, { name: 'wrong-name', sans: ['other.example.net'], ...common }),
    suffixed: await issueCert(dir, ca, { name: 'suffixed', sans: [`${expected}.attacker.test`], ...common }),
    prefixed: await issueCert(dir, ca, { name: 'prefixed', sans: [`attacker-${expected}`], ...common }),
    cnOnly: await issueCert(dir, ca, { name: 'cn-only', cn: expected, ...common }),
    expired: await issueCert(dir, ca, { name: 'expired', sans, expired: true, ...common }),
  };
}
