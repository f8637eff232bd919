/**
 * Long polls of `GET /v1/gateways/{gw}/commands` waiting in this process: each waits for a
 * command queued (or moved) for its gateway, for the end of its `wait`, or for the server to
 * close, whichever is first. Bounded: beyond `max` waiters a poll is answered `busy`.
 */
export class CommandWaiters {
  readonly #max: number;
  readonly #waiting = new Map<string, Set<() => void>>();
  #count = 0;
  #closed = false;

  constructor(max: number) {
    this.#max = max;
  }

  get size(): number {
    return this.#count;
  }

  /**
   * Register a waiter for `gw` now (so nothing queued from here on is missed) and return what
   * settles it, or undefined when full. `cancel` settles it at once.
   */
  register(gw: string, ms: number): { settled: Promise<void>; cancel(): void } | undefined {
    if (this.#closed || this.#count >= this.#max) return undefined;
    let done!: () => void;
    const settled = new Promise<void>((resolve) => (done = resolve));
    const set = this.#waiting.get(gw) ?? new Set();
    this.#waiting.set(gw, set);
    this.#count++;
    const finish = (): void => {
      if (!set.delete(finish)) return;
      this.#count--;
      if (set.size === 0 && this.#waiting.get(gw) === set) this.#waiting.delete(gw);
      clearTimeout(timer);
      done();
    };
    set.add(finish);
    const timer = setTimeout(finish, ms);
    return { settled, cancel: finish };
  }

  /** Wake the waiters of `gw` (`*`: all). */
  notify(gw: string): void {
    const sets = gw === '*' ? [...this.#waiting.values()] : [this.#waiting.get(gw)].filter((s) => s !== undefined);
    for (const set of sets) for (const f of [...set]) f();
  }

  /** Settle every waiter and refuse new ones. */
  close(): void {
    this.#closed = true;
    this.notify('*');
  }
}
