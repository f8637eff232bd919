/**
 * Mutation fuzzing of the peripheral-facing decoders (hello, challenge-request, the up-message
 * dispatcher) and the BLE reassembler. Seeds are the protocol-v1 test vectors; every input must
 * either decode or fail with a typed error (ProtocolError, BleFrameError). Anything else is a crash.
 * Deterministic: the PRNG seed is printed and can be given back.
 */
import { readFileSync } from 'node:fs';
import { decodeChallengeRequest, decodeUpMessage, parseHello, ProtocolError } from '../protocol/index.js';
import { BleFrameError, frameMessage, MAX_ATT_MTU, MIN_ATT_MTU, Reassembler } from '../protocol/ble.js';
import { decodeChallengeRequestV2, decodeFramePayload, decodeUpMessageV2, parseHelloV2, parseFrameEnvelope } from '../protocol/v2/index.js';

/** xorshift32: small, fast, reproducible. */
export class Prng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let x = this.#s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#s = x >>> 0;
    return this.#s;
  }
  int(n: number): number {
    return this.next() % n;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)] as T;
  }
}

// CBOR heads that stress a decoder: every major type's length forms, indefinite lengths,
// tags (18 is the only one allowed), simple values, breaks.
const INTERESTING = [0x00, 0x01, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1f, 0x40, 0x58, 0x5f, 0x60, 0x78, 0x7f, 0x80, 0x98, 0x9f, 0xa0, 0xb8, 0xbf, 0xc0, 0xd2, 0xd8, 0xf4, 0xf5, 0xf6, 0xf7, 0xf9, 0xfa, 0xfb, 0xff];

/** One to four mutations of `seed`, sometimes spliced with `other`. */
export function mutate(r: Prng, seed: Uint8Array, other: Uint8Array): Uint8Array {
  let b = Array.from(seed);
  const n = 1 + r.int(4);
  for (let k = 0; k < n; k += 1) {
    const at = b.length === 0 ? 0 : r.int(b.length);
    switch (r.int(9)) {
      case 0:
        if (b.length > 0) b[at] = (b[at] as number) ^ (1 << r.int(8));
        break;
      case 1:
        if (b.length > 0) b[at] = r.pick(INTERESTING);
        break;
      case 2:
        b.splice(at, 0, ...Array.from({ length: 1 + r.int(8) }, () => r.int(256)));
        break;
      case 3:
        b.splice(at, 1 + r.int(8));
        break;
      case 4:
        b = b.slice(0, at);
        break;
      case 5: {
        const len = 1 + r.int(Math.max(1, Math.min(32, b.length)));
        b.splice(r.int(b.length + 1), 0, ...b.slice(at, at + len));
        break;
      }
      case 6: {
        const from = r.int(Math.max(1, other.length));
        b.splice(at, r.int(16), ...Array.from(other.subarray(from, from + 1 + r.int(32))));
        break;
      }
      case 7:
        b.push(...Array.from({ length: 1 + r.int(4) }, () => r.pick(INTERESTING)));
        break;
      default:
        // A length field made huge: the decoder must bound it, never allocate it.
        if (b.length > 0) b.splice(at, 1, r.pick([0x1b, 0x5b, 0x7b, 0x9b, 0xbb]), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
    }
  }
  return Uint8Array.from(b.length > 2048 ? b.slice(0, 2048) : b);
}

export interface FuzzCount {
  inputs: number;
  decoded: number;
  typedErrors: number;
  /** Untyped errors (each a bug); the first 20 are kept in `crashes`. */
  crashCount: number;
  crashes: { target: string; input: string; error: string }[];
}

/** Loads the vector messages and frames (hex) as seeds. */
export function loadSeeds(file: string): Uint8Array[] {
  const v = JSON.parse(readFileSync(file, 'utf8')) as { messages: { hex?: string }[]; frames?: { hex?: string }[] };
  return [...v.messages, ...(v.frames ?? [])].filter((m) => typeof m.hex === 'string').map((m) => new Uint8Array(Buffer.from(m.hex ?? '', 'hex')));
}

const DECODERS: [string, (b: Uint8Array) => unknown][] = [
  ['decodeUpMessage', decodeUpMessage],
  ['parseHello', parseHello],
  ['decodeChallengeRequest', decodeChallengeRequest],
  // protocol-v2: what a gateway decodes from a peripheral before any key is known.
  ['decodeUpMessageV2', decodeUpMessageV2],
  ['parseHelloV2', parseHelloV2],
  ['decodeChallengeRequestV2', decodeChallengeRequestV2],
  ['parseFrameEnvelope', parseFrameEnvelope],
  ['decodeFramePayload', (b) => decodeFramePayload(b)],
];

/** `n` mutated inputs, each through every decoder. */
export function fuzzDecoders(seeds: Uint8Array[], n: number, r: Prng): FuzzCount {
  const c: FuzzCount = { inputs: 0, decoded: 0, typedErrors: 0, crashCount: 0, crashes: [] };
  for (let i = 0; i < n; i += 1) {
    const input = mutate(r, r.pick(seeds), r.pick(seeds));
    c.inputs += 1;
    for (const [name, decode] of DECODERS) {
      try {
        decode(input);
        c.decoded += 1;
      } catch (err) {
        if (err instanceof ProtocolError) c.typedErrors += 1;
        else {
          c.crashCount += 1;
          if (c.crashes.length < 20) c.crashes.push({ target: name, input: Buffer.from(input).toString('hex'), error: String(err) });
        }
      }
    }
  }
  return c;
}

/**
 * `n` chunk sequences: a seed framed at a random MTU, then chunks dropped, repeated, swapped,
 * emptied, enlarged, their headers flipped, or random chunks added. A sequence left unmutated
 * must reassemble to exactly the seed.
 */
export function fuzzReassembler(seeds: Uint8Array[], n: number, r: Prng): FuzzCount & { roundTripFailures: number } {
  const c = { inputs: 0, decoded: 0, typedErrors: 0, crashCount: 0, crashes: [] as FuzzCount['crashes'], roundTripFailures: 0 };
  for (let i = 0; i < n; i += 1) {
    const seed = (r.int(8) === 0 ? mutate(r, r.pick(seeds), r.pick(seeds)) : r.pick(seeds)).subarray(0, 1024);
    const mtu = MIN_ATT_MTU + r.int(MAX_ATT_MTU - MIN_ATT_MTU + 1);
    let chunks: Uint8Array[] = frameMessage(seed, mtu).map((x) => Uint8Array.from(x));
    const intact = r.int(4) === 0;
    if (!intact) {
      for (let k = 1 + r.int(3); k > 0 && chunks.length > 0; k -= 1) {
        const at = r.int(chunks.length);
        const ch = chunks[at] as Uint8Array;
        switch (r.int(8)) {
          case 0:
            chunks.splice(at, 1);
            break;
          case 1:
            chunks.splice(at, 0, ch);
            break;
          case 2:
            if (chunks.length > 1) chunks = [...chunks.slice(1), chunks[0] as Uint8Array];
            break;
          case 3:
            chunks[at] = new Uint8Array(0);
            break;
          case 4:
            chunks[at] = Uint8Array.from([...ch, ...Array.from({ length: r.int(600) }, () => r.int(256))]);
            break;
          case 5:
            if (ch.length > 0) ch[0] = (ch[0] as number) ^ (1 << r.int(8));
            break;
          case 6:
            chunks.splice(at, 0, Uint8Array.from({ length: r.int(64) }, () => r.int(256)));
            break;
          default:
            // 130 chunks: the 7-bit index wraps (mod 128), which must still be accepted in order.
            chunks = Array.from({ length: 130 }, (_, j) => Uint8Array.from([(j % 128) | (j === 129 ? 0x80 : 0), r.int(256)]));
        }
      }
    }
    c.inputs += 1;
    const ra = new Reassembler(r.int(2) === 0 ? { mtu } : {});
    let out: Uint8Array | undefined;
    try {
      for (const ch of chunks) out = ra.push(ch) ?? out;
      c.decoded += 1;
      if (intact && (out === undefined || Buffer.compare(Buffer.from(out), Buffer.from(seed)) !== 0)) c.roundTripFailures += 1;
    } catch (err) {
      if (err instanceof BleFrameError) {
        c.typedErrors += 1;
        if (intact) c.roundTripFailures += 1;
        // protocol-v1: the exchange aborts; every later chunk is refused the same typed way.
        try {
          ra.push(Uint8Array.from([0x80]));
          c.crashCount += 1;
          c.crashes.push({ target: 'Reassembler', input: 'chunk after abort', error: 'accepted' });
        } catch (e2) {
          if (!(e2 instanceof BleFrameError)) {
            c.crashCount += 1;
            c.crashes.push({ target: 'Reassembler', input: 'chunk after abort', error: String(e2) });
          }
        }
      } else {
        c.crashCount += 1;
        if (c.crashes.length < 20) c.crashes.push({ target: 'Reassembler', input: chunks.map((x) => Buffer.from(x).toString('hex')).join(' ').slice(0, 400), error: String(err) });
      }
    }
  }
  return c;
}
