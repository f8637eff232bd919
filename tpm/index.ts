/** Public surface of the TPM area: the key store interface, both stores, provisioning, errors. */
export { type KeyStore, type SignOptions, es256Signer, spkiToPem } from './key-store.js';
export { TpmKeyStore, type TpmKeyStoreOptions, DEFAULT_KEY_HANDLE, parseHandle, handleHex } from './tpm-key-store.js';
export { SoftwareKeyStore, type SoftwareKeyStoreOptions } from './software-key-store.js';
export { provisionTpmKey, type ProvisionOptions, type ProvisionResult } from './provision.js';
export { TpmError, type TpmErrorCode, TPM_ERROR_CODES, adviceFor } from './errors.js';
export { DEFAULT_TCTI } from './tpm-connection.js';
export { type RateLimit, DEFAULT_SIGN_RATE_LIMIT } from './rate-limiter.js';
export { createKeyStore, type KeyStoreConfig, SIGN_BURST } from './factory.js';
