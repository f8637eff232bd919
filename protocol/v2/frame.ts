/**
 * protocol-v2 "Frames": `16([h'a1010a', {6: piv}, ciphertext])`, AES-CCM-16-64-128 under the
 * direction's key, nonce = iv XOR seq (13-byte big-endian), AAD = Enc_structure
 * `["Encrypt0", h'a1010a', sid]`. Receiving decrypts first, then decodes: a frame that fails
 * any envelope rule, decryption or the replay window is a *drop* (no answer, counted); one that
 * decrypts but whose plaintext is not a valid frame payload is *denied* (it consumed its seq).
 */
import { CborError, CborTag, decodeCbor, encodeCbor, type CborValue } from '../cbor.js';
import { bytesEqual } from '../crypto.js';
import { ProtocolError, type FrameDropCode } from '../errors.js';

export type { FrameDropCode };
import { MAX_SEQ } from '../payload.js';
import { aesCcmOpen, aesCcmSeal, AES_CCM_NONCE_BYTES, COSE_ENCRYPT0_TAG, encStructure } from './encrypt0.js';
import { decodeFramePayload, encodeFramePayload, MAX_FRAME_BYTES } from './frame-payloads.js';
import type { DirectionKeys } from './key-schedule.js';
import { ReplayWindow } from './replay-window.js';
import type { FrameDirection, FramePayload } from './types.js';

/** The only protected header a frame may carry: `{1: 10}` (alg AES-CCM-16-64-128). */
export const FRAME_PROTECTED = Uint8Array.of(0xa1, 0x01, 0x0a);
/** RFC 9052 §3.1 header label 6: Partial IV. */
const HDR_PARTIAL_IV = 6;
const MAX_PIV_BYTES = 5;
/** protocol-v2: after 16 dropped frames in one session the receiver ends it (`bye`, `malformed`). */
export const MAX_DROPS = 16;


/** A frame to drop without an answer. `reason` is always `malformed`. */
export class FrameDropError extends ProtocolError {
  declare readonly code: FrameDropCode;
  constructor(code: FrameDropCode, message: string, options?: { cause?: unknown }) {
    super(code, 'malformed', message, options);
  }
}

/** `seq` as the shortest big-endian byte string, 1–5 bytes (`h'00'` for 0). */
export function encodePiv(seq: number): Uint8Array {
  if (!Number.isSafeInteger(seq) || seq < 0 || seq > MAX_SEQ) throw new ProtocolError('GH_FRAME_SEQ_RANGE', 'internal', `seq ${seq} is outside 0 to 2^40 - 1`);
  const out: number[] = [];
  let v = seq;
  do {
    out.unshift(v % 256);
    v = Math.floor(v / 256);
  } while (v > 0);
  return Uint8Array.from(out);
}

/** The seq of a piv; drops an empty, over-long or non-shortest piv. */
export function decodePiv(piv: Uint8Array): number {
  if (piv.length === 0) throw new FrameDropError('GH_FRAME_PIV', 'piv is empty');
  if (piv.length > MAX_PIV_BYTES) throw new FrameDropError('GH_FRAME_PIV', `piv is ${piv.length} bytes, at most ${MAX_PIV_BYTES}`);
  if (piv.length > 1 && piv[0] === 0) throw new FrameDropError('GH_FRAME_PIV', 'piv has a leading zero byte');
  let seq = 0;
  for (const b of piv) seq = seq * 256 + b;
  return seq;
}

/** nonce = iv XOR seq as a 13-byte big-endian integer. */
export function frameNonce(iv: Uint8Array, seq: number): Uint8Array {
  if (!(iv instanceof Uint8Array) || iv.length !== AES_CCM_NONCE_BYTES) throw new ProtocolError('GH_AEAD_INPUT', 'internal', 'a frame IV is 13 bytes');
  const nonce = Uint8Array.from(iv);
  const piv = encodePiv(seq);
  for (let i = 0; i < piv.length; i++) {
    const at = AES_CCM_NONCE_BYTES - piv.length + i;
    nonce[at] = (nonce[at] as number) ^ (piv[i] as number);
  }
  return nonce;
}

/** AAD = Enc_structure ["Encrypt0", h'a1010a', sid]. */
export function frameAad(sid: Uint8Array): Uint8Array {
  return encStructure(FRAME_PROTECTED, sid);
}

/** Seal one plaintext at `seq` (no payload check: see {@link sealFrame}). */
export function sealFramePlaintext(keys: DirectionKeys, seq: number, plaintext: Uint8Array): Uint8Array {
  const ct = aesCcmSeal(keys.key, frameNonce(keys.iv, seq), frameAad(keys.sid), plaintext);
  const bytes = encodeCbor(new CborTag(COSE_ENCRYPT0_TAG, [FRAME_PROTECTED, new Map([[HDR_PARTIAL_IV, encodePiv(seq)]]), ct]));
  if (bytes.length > MAX_FRAME_BYTES) throw new ProtocolError('GH_FRAME_TOO_LARGE', 'internal', `frame of ${bytes.length} bytes exceeds ${MAX_FRAME_BYTES}`);
  return bytes;
}

/** Encode and seal a frame payload at `seq`. */
export function sealFrame(keys: DirectionKeys, seq: number, payload: FramePayload): Uint8Array {
  return sealFramePlaintext(keys, seq, encodeFramePayload(payload));
}

/** The envelope of a frame, checked, not yet decrypted. */
export interface FrameEnvelope {
  seq: number;
  piv: Uint8Array;
  ciphertext: Uint8Array;
}

/** Check a frame's envelope (every drop rule before decryption). Throws {@link FrameDropError}. */
export function parseFrameEnvelope(bytes: Uint8Array): FrameEnvelope {
  if (!(bytes instanceof Uint8Array)) throw new FrameDropError('GH_FRAME_STRUCTURE', 'frame must be a Uint8Array');
  if (bytes.length > MAX_FRAME_BYTES) throw new FrameDropError('GH_FRAME_TOO_LARGE', `frame of ${bytes.length} bytes exceeds ${MAX_FRAME_BYTES}`);
  // Anything that is not tag 16 is dropped: check the first byte before decoding, so a
  // COSE_Sign1 or a bare map gets the precise code.
  if (bytes[0] !== 0xd0) throw new FrameDropError('GH_FRAME_NOT_TAG16', 'not a tag-16 COSE_Encrypt0');
  let top: CborValue;
  try {
    top = decodeCbor(bytes, { maxBytes: MAX_FRAME_BYTES, topLevelTag: COSE_ENCRYPT0_TAG });
  } catch (cause) {
    if (cause instanceof CborError) throw new FrameDropError('GH_FRAME_NOT_CBOR', `frame: ${cause.message}`, { cause });
    throw cause;
  }
  if (!(top instanceof CborTag) || top.tag !== COSE_ENCRYPT0_TAG) throw new FrameDropError('GH_FRAME_NOT_TAG16', 'not a tag-16 COSE_Encrypt0');
  const body = top.value;
  if (!Array.isArray(body) || body.length !== 3) throw new FrameDropError('GH_FRAME_STRUCTURE', 'COSE_Encrypt0 must be an array of 3 items');
  const [prot, unprot, ct] = body as [CborValue, CborValue, CborValue];
  if (!(prot instanceof Uint8Array) || !bytesEqual(prot, FRAME_PROTECTED)) throw new FrameDropError('GH_FRAME_PROTECTED', "protected header is not exactly h'a1010a'");
  if (!(unprot instanceof Map) || unprot.size !== 1 || !unprot.has(HDR_PARTIAL_IV)) throw new FrameDropError('GH_FRAME_UNPROTECTED', 'unprotected header is not exactly {6: piv}');
  const piv = unprot.get(HDR_PARTIAL_IV);
  if (!(piv instanceof Uint8Array)) throw new FrameDropError('GH_FRAME_PIV', 'piv is not a byte string');
  if (!(ct instanceof Uint8Array)) throw new FrameDropError('GH_FRAME_STRUCTURE', 'ciphertext is not a byte string');
  return { seq: decodePiv(piv), piv, ciphertext: ct };
}

/** What became of a received frame. */
export type FrameResult =
  | { kind: 'frame'; seq: number; payload: FramePayload }
  /** Decrypted (its seq is consumed) but the plaintext is not a valid frame payload. */
  | { kind: 'denied'; seq: number; error: ProtocolError }
  /** Dropped without an answer; `limitReached` once this session has dropped 16. */
  | { kind: 'drop'; code: FrameDropCode; detail: string; drops: number; limitReached: boolean };

/**
 * The receiving end of one direction of one session: replay window, drop count, decryption
 * then decoding. `direction` is the direction of the frames it receives.
 */
export class FrameReceiver {
  private readonly window = new ReplayWindow();
  private dropCount = 0;

  constructor(
    private readonly keys: DirectionKeys,
    readonly direction: FrameDirection,
  ) {}

  get drops(): number {
    return this.dropCount;
  }

  get highest(): number {
    return this.window.highest;
  }

  /** Settle a seq as lost: it counts as received, so a late copy is dropped (protocol-v2). */
  settleLost(seq: number): void {
    this.window.mark(seq);
  }

  /** Whether `seq` was received (or settled as lost) and is still inside the window. */
  received(seq: number): boolean {
    return this.window.has(seq);
  }

  open(bytes: Uint8Array): FrameResult {
    let env: FrameEnvelope;
    try {
      env = parseFrameEnvelope(bytes);
      const verdict = this.window.check(env.seq);
      if (verdict === 'replay') throw new FrameDropError('GH_FRAME_REPLAY', `seq ${env.seq} was already received`);
      if (verdict === 'too-old') throw new FrameDropError('GH_FRAME_TOO_OLD', `seq ${env.seq} is 64 or more below the highest received (${this.window.highest})`);
    } catch (e) {
      return this.drop(e);
    }
    let plaintext: Uint8Array;
    try {
      plaintext = aesCcmOpen(this.keys.key, frameNonce(this.keys.iv, env.seq), frameAad(this.keys.sid), env.ciphertext);
    } catch (e) {
      return this.drop(new FrameDropError('GH_FRAME_DECRYPT', 'frame does not decrypt under this session\'s key', { cause: e }));
    }
    // Decrypt first, then decode: a frame that decrypts consumes its seq, whatever its plaintext.
    this.window.mark(env.seq);
    try {
      return { kind: 'frame', seq: env.seq, payload: decodeFramePayload(plaintext, this.direction) };
    } catch (e) {
      if (e instanceof ProtocolError) return { kind: 'denied', seq: env.seq, error: e };
      throw e;
    }
  }

  private drop(e: unknown): FrameResult {
    if (!(e instanceof FrameDropError)) throw e;
    this.dropCount++;
    return { kind: 'drop', code: e.code, detail: e.message, drops: this.dropCount, limitReached: this.dropCount >= MAX_DROPS };
  }
}

/** The sending end of one direction of one session: seq from 0, never past 2^40 − 1. */
export class FrameSender {
  private seq = 0;

  constructor(private readonly keys: DirectionKeys) {}

  /** The seq the next frame will carry. */
  get nextSeq(): number {
    return this.seq;
  }

  /** Whether no further frame can be sent (the session must end). */
  get exhausted(): boolean {
    return this.seq > MAX_SEQ;
  }

  /** Seal `payload` with the next seq. Throws `GH_FRAME_SEQ_EXHAUSTED` past 2^40 − 1. */
  seal(payload: FramePayload): { seq: number; bytes: Uint8Array } {
    if (this.seq > MAX_SEQ) throw new ProtocolError('GH_FRAME_SEQ_EXHAUSTED', 'internal', 'seq would pass 2^40 - 1: end the session');
    const bytes = sealFrame(this.keys, this.seq, payload);
    return { seq: this.seq++, bytes };
  }

  /** For tests and vectors: start at `seq` (e.g. near 2^40). */
  static startingAt(keys: DirectionKeys, seq: number): FrameSender {
    const s = new FrameSender(keys);
    s.seq = seq;
    return s;
  }
}

