/**
 * RFC 9421 HTTP Message Signatures and RFC 9530 Content-Digest, pure (no I/O): the generic part
 * (http-signature/rfc9421.ts: structured fields, the signature base, signing through an async
 * callback so a TPM can sign, verification with node:crypto) and the protocol's profile
 * (http-signature/gatehouse.ts).
 */
export * from './http-signature/rfc9421.js';
export * from './http-signature/gatehouse.js';
