/**
 * protocol-v1 "BLE transport" framing, so that any ATT MTU works down to the minimum of 23.
 *
 * Each write or notification is one chunk: a header byte (bit 7 set on the last chunk of a
 * message, bits 0–6 the chunk's index in its message, mod 128), then up to MTU−4 bytes of the
 * message. A gap in the indices or a message over 1024 bytes aborts the exchange.
 *
 * Why MTU−4: an ATT Write Request and a Handle Value Notification both spend 3 bytes of the MTU
 * on opcode + handle (Core 5.3 Vol 3 Part F §3.4.5.1, §3.4.7.1), leaving MTU−3 for the value, and
 * the header byte takes one more. Pure: no I/O, no timers.
 */
import { CodedError } from '../common/errors.js';

/** protocol-v1 "BLE transport": the service Gatehouse peripherals advertise. */
export const GATEHOUSE_SERVICE_UUID = '84987abc-71fe-493c-a15d-1ddd7d599687';
/** protocol-v1: the characteristic that carries the messages (write with response + notify). */
export const GATEHOUSE_CHARACTERISTIC_UUID = '84987abd-71fe-493c-a15d-1ddd7d599687';
/** protocol-v2 "BLE transport (v2)": the v2 characteristic, in the same service. */
export const GATEHOUSE_V2_CHARACTERISTIC_UUID = '84987abe-71fe-493c-a15d-1ddd7d599687';

/** Stable codes of the chunk framing. */
export type BleFrameErrorCode =
  /** A gap in chunk indices. */
  | 'GH_BLE_FRAME_GAP'
  /** A message over the bound (1024 bytes in protocol-v1). */
  | 'GH_BLE_FRAME_OVERSIZE'
  /** A chunk without its header byte, or longer than the ATT MTU allows. */
  | 'GH_BLE_FRAME_INVALID'
  /** A chunk arrived after the reassembler had aborted or the exchange expected no more. */
  | 'GH_BLE_FRAME_UNEXPECTED';

/** A chunk-framing failure; `code` is a {@link BleFrameErrorCode}. */
export class BleFrameError extends CodedError<BleFrameErrorCode> {}

/** protocol-v1: the minimum ATT MTU the framing must work at (the BLE default). */
export const MIN_ATT_MTU = 23;
/** The largest ATT MTU this transport negotiates or accepts (what BlueZ and most stacks offer). */
export const MAX_ATT_MTU = 517;
/** protocol-v1 "Encoding": no message is over 1024 bytes. */
export const MAX_FRAMED_MESSAGE_BYTES = 1024;
/** protocol-v2: the reassembly bound on the v2 characteristic (a v2 welcome, a frame). */
export const MAX_FRAMED_MESSAGE_BYTES_V2 = 1280;
/** Bytes of every ATT write/notification PDU that are not the attribute value: opcode + handle. */
export const ATT_PDU_OVERHEAD = 3;
/** Core 5.3 Vol 3 Part F §3.2.9: an attribute value is at most 512 bytes, whatever the MTU. */
export const MAX_ATTRIBUTE_VALUE = 512;

const LAST_FLAG = 0x80;
const INDEX_MASK = 0x7f;

function checkMtu(mtu: number): void {
  if (!Number.isInteger(mtu) || mtu < MIN_ATT_MTU || mtu > MAX_ATT_MTU) {
    throw new RangeError(`ATT MTU must be an integer in ${MIN_ATT_MTU}..${MAX_ATT_MTU}, got ${mtu}`);
  }
}

/**
 * The most message bytes one chunk may carry at `mtu`: MTU−4 (protocol-v1), and never more
 * than an attribute value can hold minus the header (511) at MTUs above 516.
 */
export function chunkPayloadSize(mtu: number): number {
  checkMtu(mtu);
  return Math.min(mtu - ATT_PDU_OVERHEAD - 1, MAX_ATTRIBUTE_VALUE - 1);
}

/**
 * The largest chunk (header + payload) a receiver accepts at `mtu`: MTU−3, the whole value of a
 * write or notification. Senders stay at `chunkPayloadSize(mtu) + 1`, which is smaller above MTU
 * 516; receivers accept what protocol-v1 allows.
 */
export function maxChunkBytes(mtu: number): number {
  checkMtu(mtu);
  return mtu - ATT_PDU_OVERHEAD;
}

/**
 * One chunk: the header byte then `payload`. Low-level: `frameMessage` is what senders use;
 * this exists so misbehaving test peripherals can build wrong sequences on purpose.
 */
export function encodeChunk(index: number, last: boolean, payload: Uint8Array): Uint8Array {
  if (!Number.isInteger(index) || index < 0) throw new RangeError(`chunk index must be a non-negative integer, got ${index}`);
  const chunk = new Uint8Array(payload.length + 1);
  // protocol-v1: bit 7 marks the last chunk, bits 0–6 are the index mod 128.
  chunk[0] = (last ? LAST_FLAG : 0) | (index & INDEX_MASK);
  chunk.set(payload, 1);
  return chunk;
}

/** Options of `frameMessage`. */
export interface FrameOptions {
  /**
   * Carry at most this many message bytes per chunk (1..chunkPayloadSize(mtu)); default the
   * maximum. Smaller chunks are allowed by protocol-v1 ("up to MTU−4 bytes").
   */
  payloadSize?: number;
  /** The bound of the characteristic: 1024 (v1, the default) or 1280 (v2). */
  maxMessageBytes?: number;
}

/**
 * Split `message` into chunks for one ATT MTU. Throws `GH_BLE_FRAME_OVERSIZE` for a message over
 * 1024 bytes: the sender refuses what the receiver would abort on.
 */
export function frameMessage(message: Uint8Array, mtu: number, options: FrameOptions = {}): Uint8Array[] {
  const max = chunkPayloadSize(mtu);
  const size = options.payloadSize ?? max;
  if (!Number.isInteger(size) || size < 1 || size > max) {
    throw new RangeError(`payloadSize must be an integer in 1..${max} at MTU ${mtu}, got ${size}`);
  }
  const bound = Math.min(options.maxMessageBytes ?? MAX_FRAMED_MESSAGE_BYTES, MAX_FRAMED_MESSAGE_BYTES_V2);
  if (message.length > bound) {
    throw new BleFrameError('GH_BLE_FRAME_OVERSIZE', `message of ${message.length} bytes is over ${bound}`);
  }
  if (message.length === 0) return [encodeChunk(0, true, message)];
  const chunks: Uint8Array[] = [];
  for (let offset = 0, index = 0; offset < message.length; offset += size, index++) {
    const end = Math.min(offset + size, message.length);
    chunks.push(encodeChunk(index, end === message.length, message.subarray(offset, end)));
  }
  return chunks;
}

/** Options of a `Reassembler`. */
export interface ReassemblerOptions {
  /** When given, a chunk longer than `maxChunkBytes(mtu)` (MTU−3) aborts: protocol-v1 allows no more. */
  mtu?: number;
  /** At most this many bytes per message (default 1024; up to 1280 on the v2 characteristic). */
  maxMessageBytes?: number;
}

/**
 * Strict, bounded reassembly of one direction of a BLE link. `push` each received chunk; it
 * returns the message when its last chunk arrives, else `undefined`. Any violation throws a
 * `BleFrameError` and leaves the reassembler aborted: protocol-v1 says the exchange aborts, so every
 * later chunk throws `GH_BLE_FRAME_UNEXPECTED` until `reset()`. Memory is bounded by
 * `maxMessageBytes`; the number of chunks per message by `maxMessageBytes + 1` (empty non-last
 * chunks are legal, endless ones are not).
 */
export class Reassembler {
  readonly #maxChunk: number | undefined;
  readonly #maxMessage: number;
  #parts: Uint8Array[] = [];
  #bytes = 0;
  #count = 0;
  #aborted: BleFrameError | undefined;

  constructor(options: ReassemblerOptions = {}) {
    this.#maxChunk = options.mtu === undefined ? undefined : maxChunkBytes(options.mtu);
    const maxMessage = options.maxMessageBytes ?? MAX_FRAMED_MESSAGE_BYTES;
    if (!Number.isInteger(maxMessage) || maxMessage < 0 || maxMessage > MAX_FRAMED_MESSAGE_BYTES_V2) {
      throw new RangeError(`maxMessageBytes must be an integer in 0..${MAX_FRAMED_MESSAGE_BYTES_V2}, got ${maxMessage}`);
    }
    this.#maxMessage = maxMessage;
  }

  /** The error that aborted this reassembler, if any. */
  get aborted(): BleFrameError | undefined {
    return this.#aborted;
  }

  /** Bytes of the message in progress. */
  get bufferedBytes(): number {
    return this.#bytes;
  }

  /** True between the first and the last chunk of a message. */
  get inProgress(): boolean {
    return this.#count > 0;
  }

  /** Forget the message in progress and any abort. */
  reset(): void {
    this.#parts = [];
    this.#bytes = 0;
    this.#count = 0;
    this.#aborted = undefined;
  }

  /** Feed one chunk; returns the whole message on its last chunk. */
  push(chunk: Uint8Array): Uint8Array | undefined {
    if (this.#aborted) {
      throw new BleFrameError('GH_BLE_FRAME_UNEXPECTED', `chunk after the reassembler aborted (${this.#aborted.code})`, {
        cause: this.#aborted,
      });
    }
    const header = chunk[0];
    if (header === undefined) return this.#abort('GH_BLE_FRAME_INVALID', 'empty chunk: no header byte');
    if (this.#maxChunk !== undefined && chunk.length > this.#maxChunk) {
      return this.#abort('GH_BLE_FRAME_INVALID', `chunk of ${chunk.length} bytes exceeds ${this.#maxChunk} for the MTU`);
    }
    const index = header & INDEX_MASK;
    const expected = this.#count % 128;
    // protocol-v1: a gap in the indices aborts the exchange.
    if (index !== expected) {
      return this.#abort('GH_BLE_FRAME_GAP', `chunk index ${index}, expected ${expected}`);
    }
    const payloadLength = chunk.length - 1;
    // protocol-v1: a message over 1024 bytes aborts the exchange; checked before buffering.
    if (this.#bytes + payloadLength > this.#maxMessage) {
      return this.#abort('GH_BLE_FRAME_OVERSIZE', `message exceeds ${this.#maxMessage} bytes`);
    }
    if (this.#count >= this.#maxMessage + 1) {
      return this.#abort('GH_BLE_FRAME_INVALID', `more than ${this.#maxMessage + 1} chunks in one message`);
    }
    // Copy: the caller's buffer may be reused by the BLE stack.
    this.#parts.push(chunk.slice(1));
    this.#bytes += payloadLength;
    this.#count++;
    if ((header & LAST_FLAG) === 0) return undefined;
    const message = new Uint8Array(this.#bytes);
    let offset = 0;
    for (const part of this.#parts) {
      message.set(part, offset);
      offset += part.length;
    }
    this.#parts = [];
    this.#bytes = 0;
    this.#count = 0;
    return message;
  }

  #abort(code: 'GH_BLE_FRAME_INVALID' | 'GH_BLE_FRAME_GAP' | 'GH_BLE_FRAME_OVERSIZE', message: string): never {
    this.#parts = [];
    this.#bytes = 0;
    this.#aborted = new BleFrameError(code, message);
    throw this.#aborted;
  }
}
