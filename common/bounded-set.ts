/**
 * A set of at most `max` strings that forgets the least recently added or touched one first: for
 * remembering work already done (a signature already verified) without growing with the fleet.
 */
export class BoundedSet {
  readonly #items = new Set<string>();

  constructor(readonly max: number) {
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError('BoundedSet: max must be a positive integer');
  }

  get size(): number {
    return this.#items.size;
  }

  /** True when `key` is held; a hit makes it the most recent. */
  has(key: string): boolean {
    if (!this.#items.delete(key)) return false;
    this.#items.add(key);
    return true;
  }

  add(key: string): void {
    this.#items.delete(key);
    this.#items.add(key);
    if (this.#items.size > this.max) this.#items.delete(this.#items.values().next().value as string);
  }
}
