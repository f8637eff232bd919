/**
 * protocol-v2 "Frames", receiving: a 64-wide replay window. A seq is refused when it was
 * received already or is 64 or more below the highest received; a seq settled as `lost`
 * counts as received, so a late copy is refused too.
 */
import { MAX_SEQ } from '../payload.js';

export const REPLAY_WINDOW = 64;

export type WindowVerdict = 'fresh' | 'replay' | 'too-old';

export class ReplayWindow {
  /** Highest seq received, or -1 before the first. */
  private top = -1;
  /** Bit i set: seq `top - i` received (bit 0 is `top` itself). */
  private bits = 0n;

  get highest(): number {
    return this.top;
  }

  /** What receiving `seq` would mean; does not change the window. */
  check(seq: number): WindowVerdict {
    if (!Number.isSafeInteger(seq) || seq < 0 || seq > MAX_SEQ) return 'too-old';
    if (seq > this.top) return 'fresh';
    const back = this.top - seq;
    if (back >= REPLAY_WINDOW) return 'too-old';
    return (this.bits >> BigInt(back)) & 1n ? 'replay' : 'fresh';
  }

  /** Record `seq` as received (a frame that decrypted, or a seq settled as lost). */
  mark(seq: number): void {
    if (this.check(seq) !== 'fresh') return;
    if (seq > this.top) {
      const shift = this.top < 0 ? REPLAY_WINDOW : seq - this.top;
      this.bits = shift >= REPLAY_WINDOW ? 0n : (this.bits << BigInt(shift)) & ((1n << BigInt(REPLAY_WINDOW)) - 1n);
      this.bits |= 1n;
      this.top = seq;
    } else {
      this.bits |= 1n << BigInt(this.top - seq);
    }
  }

  /** Whether `seq` counts as received. */
  has(seq: number): boolean {
    return this.check(seq) === 'replay';
  }
}
