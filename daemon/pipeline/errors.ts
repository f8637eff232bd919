/**
 * Errors of the authentication pipeline. Code branches on `code`, never on message text.
 */
import { CodedError } from '../../common/errors.js';

/** Stable codes of the pipeline area. */
export type PipelineErrorCode =
  /** An option is out of range (named in the message). */
  | 'GH_PIPELINE_BAD_OPTION'
  /** The verifier did not answer before its deadline. */
  | 'GH_PIPELINE_VERIFY_TIMEOUT'
  /** The pipeline was closed while a request was pending. */
  | 'GH_PIPELINE_CLOSED';

export class PipelineError extends CodedError<PipelineErrorCode> {}
