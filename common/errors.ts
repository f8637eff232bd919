/**
 * The base of the project's one error hierarchy. Code branches on `code` or class, never on
 * message text. Each area (protocol, tpm, backend client, transports, config, CLI) subclasses
 * `CodedError` with its own closed union of stable `GH_…` codes and chains the underlying error
 * as `cause`.
 */
export class GatehouseError extends Error {
  /** Stable machine-readable code, e.g. `GH_CBOR_TRAILING_BYTES`, `GH_TPM_LOCKOUT`. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/**
 * Base of an area's error class whose `code` is one of a closed union of stable codes, so code
 * branching on it is type-checked: `export class BleError extends CodedError<BleErrorCode> {}`.
 */
export class CodedError<C extends string> extends GatehouseError {
  declare readonly code: C;

  constructor(code: C, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
