/** protocol-v1 "Parties and keys": ids (`dev`, `gw`) are 1–64 characters of `[A-Za-z0-9._:-]`. */
const ID_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/;

/** True when `s` is a valid protocol-v1 device or gateway id. */
export function isValidId(s: unknown): s is string {
  return typeof s === 'string' && ID_PATTERN.test(s);
}
