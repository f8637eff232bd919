/**
 * protocol-v2 frame plaintexts: the payload maps of `pub`, `ack`, `ping`, `receipt`, `msg`,
 * `cmd` and `bye`, checked by the same table machinery as every message (unknown keys refused,
 * each field typed), plus the receipt's own rules.
 */
import { CborError, decodeCbor, encodeCbor, type CborMap, type CborValue } from '../cbor.js';
import { ProtocolError, type ProtocolErrorCode } from '../errors.js';
import { buildPayloadIn, checkPayloadIn, F, payloadTypeIn, type FieldSpec, type PayloadProfile } from '../payload.js';
import type { DownFramePayload, FrameDirection, FramePayload, FrameType, ReceiptFrame, UpFramePayload } from './types.js';

/** protocol-v2: a frame is at most 1,280 bytes on the wire, its plaintext at most 1,264. */
export const MAX_FRAME_BYTES = 1280;
export const MAX_PLAINTEXT_BYTES = 1264;
/** protocol-v2: a `pub` or `msg` body is at most 1,024 bytes. */
export const MAX_PUB_BODY_BYTES = 1024;

const FRAME_SCHEMAS: Readonly<Record<FrameType, readonly FieldSpec[]>> = {
  pub: [F.topic, { ...F.body, max: MAX_PUB_BODY_BYTES }, { ...F.mid, optional: true }],
  ack: [F.cid, F.status],
  ping: [],
  receipt: [{ ...F.retry, optional: true }, F.upto, { ...F.denied, optional: true }, { ...F.busy, optional: true }, { ...F.lost, optional: true }],
  msg: [F.topic, { ...F.body, max: MAX_PUB_BODY_BYTES }],
  cmd: [F.cmd],
  bye: [{ key: 13, name: 'reason', kind: 'bye-reason', optional: true }],
};

/** Frame plaintexts carry no version (key 2 is an unknown key in them). */
export const FRAME_PROFILE: PayloadProfile = { name: 'frame', schemas: FRAME_SCHEMAS, version: null };

const UP_TYPES: ReadonlySet<string> = new Set(['pub', 'ack', 'ping', 'bye']);
const DOWN_TYPES: ReadonlySet<string> = new Set(['receipt', 'msg', 'cmd', 'ping', 'bye']);

function malformed(code: ProtocolErrorCode, message: string): ProtocolError {
  return new ProtocolError(code, 'malformed', message);
}

/** protocol-v2 receipt: retry only with busy; the lists sorted (checked per field), disjoint, at most upto. */
function checkReceipt(r: ReceiptFrame): void {
  if ((r.retry === undefined) !== (r.busy === undefined)) {
    throw malformed('GH_MSG_BAD_RECEIPT', 'a receipt carries retry (16) exactly when it carries busy (29)');
  }
  const seen = new Set<number>();
  for (const list of [r.denied, r.busy, r.lost]) {
    for (const seq of list ?? []) {
      if (seq > r.upto) throw malformed('GH_MSG_BAD_RECEIPT', `receipt lists seq ${seq} above upto ${r.upto}`);
      if (seen.has(seq)) throw malformed('GH_MSG_BAD_RECEIPT', `receipt lists seq ${seq} in two lists`);
      seen.add(seq);
    }
  }
}

/** Check a decoded plaintext map as a frame payload (any direction). */
export function checkFramePayload(map: CborValue): FramePayload {
  const type = payloadTypeIn(map, FRAME_PROFILE) as FrameType;
  const p = checkPayloadIn<FramePayload>(map, type, FRAME_PROFILE);
  if (p.type === 'receipt') checkReceipt(p);
  return p;
}

/**
 * Decode a frame plaintext: one CBOR map under v1's decoder rules (deterministic, strict),
 * at most 1,264 bytes, a known frame type allowed in `direction`. Throws a ProtocolError.
 */
export function decodeFramePayload(plaintext: Uint8Array, direction?: FrameDirection): FramePayload {
  if (!(plaintext instanceof Uint8Array)) throw malformed('GH_MSG_INPUT', 'plaintext must be a Uint8Array');
  if (plaintext.length > MAX_PLAINTEXT_BYTES) throw malformed('GH_FRAME_PLAINTEXT_TOO_LARGE', `plaintext of ${plaintext.length} bytes exceeds ${MAX_PLAINTEXT_BYTES}`);
  let map: CborValue;
  try {
    map = decodeCbor(plaintext, { maxBytes: MAX_PLAINTEXT_BYTES, allowTopLevelTag: false });
  } catch (cause) {
    if (cause instanceof CborError) throw new CborError(cause.code, `frame plaintext: ${cause.message}`, { cause });
    throw cause;
  }
  const p = checkFramePayload(map);
  if (direction !== undefined && !(direction === 'p2g' ? UP_TYPES : DOWN_TYPES).has(p.type)) {
    throw malformed('GH_FRAME_WRONG_DIRECTION', `a ${p.type} frame does not travel ${direction === 'p2g' ? 'peripheral to gateway' : 'gateway to peripheral'}`);
  }
  return p;
}

/** The deterministic plaintext of a frame payload, checked by the decoder's own rules first. */
export function encodeFramePayload(p: FramePayload): Uint8Array {
  const map: CborMap = buildPayloadIn(p, p.type, FRAME_PROFILE);
  if (p.type === 'receipt') checkReceipt(checkFramePayload(map) as ReceiptFrame);
  const bytes = encodeCbor(map);
  if (bytes.length > MAX_PLAINTEXT_BYTES) throw malformed('GH_FRAME_PLAINTEXT_TOO_LARGE', `plaintext of ${bytes.length} bytes exceeds ${MAX_PLAINTEXT_BYTES}`);
  return bytes;
}

export type { DownFramePayload, UpFramePayload };
