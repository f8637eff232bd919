/**
 * Protocol errors: a message or signature failed a protocol check.
 */
import { GatehouseError } from '../common/errors.js';
import type { ReasonCode } from './reasons.js';

/**
 * A message or signature failed a protocol check. `reason` is the protocol-v1 reason code a
 * reject for this failure carries.
 */
export class ProtocolError extends GatehouseError {
  readonly reason: ReasonCode;

  constructor(code: string, reason: ReasonCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.reason = reason;
  }
}
