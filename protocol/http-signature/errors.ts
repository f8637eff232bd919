/** Errors of the RFC 9421 / RFC 9530 module (protocol/http-signature.ts). */
import { CodedError } from '../../common/errors.js';

/** Stable codes: `GH_HTTPSIG_*` for the signature, `GH_DIGEST_*` for Content-Digest. */
export type HttpSignatureErrorCode =
  | 'GH_HTTPSIG_MALFORMED'
  | 'GH_HTTPSIG_MISSING'
  | 'GH_HTTPSIG_COVERAGE'
  | 'GH_HTTPSIG_COMPONENT'
  | 'GH_HTTPSIG_STALE'
  | 'GH_HTTPSIG_UNKNOWN_KEY'
  | 'GH_HTTPSIG_ALG'
  | 'GH_HTTPSIG_BAD_SIGNATURE'
  | 'GH_DIGEST_MISSING'
  | 'GH_DIGEST_MALFORMED'
  | 'GH_DIGEST_MISMATCH';

/** An RFC 9421 / RFC 9530 check failed; `code` is a {@link HttpSignatureErrorCode}. */
export class HttpSignatureError extends CodedError<HttpSignatureErrorCode> {}
