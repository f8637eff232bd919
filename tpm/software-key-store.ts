/**
 * Development-only key store: a P-256 key in a PKCS#8 PEM file (mode 0600). It exists so the
 * daemon runs on a laptop without a TPM; it warns at every open and refuses to open when the
 * caller says it is a production deployment. The key is exportable, which protocol-v1 forbids for
 * a real gateway.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'winston';
import { silentLogger } from '../common/log/logger.js';
import { writeFileAtomic } from '../common/atomic-file.js';
import { sha256 } from '../protocol/index.js';
import type { Signer } from '../protocol/index.js';
import { TpmError } from './errors.js';
import { checkDigest, es256Signer, spkiToPem, type KeyStore, type SignOptions } from './key-store.js';
import { p256SignDigest } from './p256.js';
import { rawEcdsaToDer } from './tpm2-wire.js';

export interface SoftwareKeyStoreOptions {
  /** PKCS#8 PEM file; created (0600) when missing. Omitted: an ephemeral in-memory key (demos). */
  keyFile?: string;
  /** True in production: the store then refuses to open (GH_TPM_SOFTWARE_KEY_REFUSED). */
  production?: boolean;
  logger?: Logger;
}

/** The key while the store is open. */
interface OpenSoftwareKey {
  priv: KeyObject;
  spki: Uint8Array;
  thumbprint: Uint8Array;
}

export class SoftwareKeyStore implements KeyStore {
  readonly kind = 'software' as const;
  readonly #logger: Logger;
  #key: OpenSoftwareKey | undefined;

  readonly #opts: SoftwareKeyStoreOptions;

  constructor(opts: SoftwareKeyStoreOptions) {
    this.#opts = opts;
    this.#logger = opts.logger ?? silentLogger();
  }

  async open(): Promise<void> {
    if (this.#opts.production) {
      throw new TpmError('GH_TPM_SOFTWARE_KEY_REFUSED', 'the software key store is for development only and is refused in production: use the TPM key store');
    }
    const keyFile = this.#opts.keyFile;
    this.#logger.warn('using the SOFTWARE key store: the gateway key is not in a TPM (development only)', {
      keyFile: keyFile ?? '(ephemeral, in memory)',
    });
    const priv = keyFile === undefined ? generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey : await this.#loadOrCreate(keyFile);
    if (priv.asymmetricKeyType !== 'ec' || priv.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      throw new TpmError('GH_TPM_KEY_ATTRIBUTES', `${keyFile ?? 'the key'} is not a P-256 key`);
    }
    const spki = new Uint8Array(createPublicKey(priv).export({ format: 'der', type: 'spki' }));
    this.#key = { priv, spki, thumbprint: sha256(spki) };
  }

  async #loadOrCreate(keyFile: string): Promise<KeyObject> {
    let pem: string;
    try {
      const st = await stat(keyFile);
      if ((st.mode & 0o077) !== 0) {
        // Keep the key private even if someone loosened it.
        await chmod(keyFile, 0o600);
      }
      pem = await readFile(keyFile, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new TpmError('GH_TPM_STATE', `cannot read ${keyFile}`, { cause: err });
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
      await mkdir(dirname(keyFile), { recursive: true, mode: 0o700 });
      await writeFileAtomic(keyFile, pem);
      this.#logger.info('software key created', { keyFile });
    }
    try {
      return createPrivateKey(pem);
    } catch (cause) {
      throw new TpmError('GH_TPM_STATE', `${keyFile} is not a private key`, { cause });
    }
  }

  async close(): Promise<void> {
    this.#key = undefined;
  }

  #opened(): OpenSoftwareKey {
    if (!this.#key) throw new TpmError('GH_TPM_CLOSED', 'the software key store is not open');
    return this.#key;
  }

  publicKeySpkiDer(): Uint8Array {
    return this.#opened().spki.slice();
  }

  publicKeyPem(): string {
    return spkiToPem(this.#opened().spki);
  }

  thumbprint(): Uint8Array {
    return this.#opened().thumbprint.slice();
  }

  async sign(digest32: Uint8Array, opts?: SignOptions): Promise<Uint8Array> {
    checkDigest(digest32);
    const raw = p256SignDigest(this.#opened().priv, digest32);
    return opts?.format === 'der' ? rawEcdsaToDer(raw) : raw;
  }

  signer(kid: string): Signer {
    return es256Signer(this, kid);
  }
}
