/**
 * Coalescing queue for backend calls: items wait until `maxBatch` are queued or `maxWaitMs`
 * has passed, at most `maxInFlight` batches run at once, at most `maxQueue` items wait (beyond
 * that `submit` refuses, and the caller answers `busy`). With `flushWhenIdle` (the default), an
 * item that finds no batch in flight leaves at the end of the current event-loop turn (with
 * whatever else arrived in that turn) instead of waiting `maxWaitMs`: an idle link has nothing
 * to wait for. Items arriving while a batch is in flight wait as above, or until that batch
 * answers and frees its slot, so under load batches still fill (self-clocking, as Nagle).
 * Every item has a deadline and an optional AbortSignal; whichever comes first of its batch's
 * answer, its deadline, its abort or `drain()` settles it, exactly once.
 */
import type { TimerClock, TimerHandle } from '../../common/clock.js';

export interface BatchItem<Req, Res> {
  readonly req: Req;
  /** Our id on the wire (never the caller's, so two callers cannot collide). */
  readonly wireId: string;
  /** Unix ms. */
  readonly deadline: number;
  settled: boolean;
  resolve: (r: Res) => void;
  timer: TimerHandle | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

export interface BatcherOptions<Req, Res> {
  clock: TimerClock;
  maxBatch: number;
  maxWaitMs: number;
  maxInFlight: number;
  maxQueue: number;
  /** Send at once (end of this turn) when no batch is in flight (default true). */
  flushWhenIdle?: boolean;
  /** Send one batch; settle its items through `settle`. Must not throw. */
  run: (items: BatchItem<Req, Res>[]) => Promise<void>;
  /** The answer for an item whose deadline passed first. */
  onDeadline: (item: BatchItem<Req, Res>) => Res;
  /** The answer for an item whose caller aborted. */
  onAbort: (item: BatchItem<Req, Res>) => Res;
  /** Called with every answer given (for counters). */
  onSettled?: (res: Res) => void;
}

export class Batcher<Req, Res> {
  readonly #queue: BatchItem<Req, Res>[] = [];
  #flushTimer: TimerHandle | undefined;
  #idleFlush: NodeJS.Immediate | undefined;
  #running = 0;
  #seq = 0;

  readonly #o: BatcherOptions<Req, Res>;

  constructor(o: BatcherOptions<Req, Res>) {
    this.#o = o;
  }

  get inFlight(): number {
    return this.#running;
  }

  get queued(): number {
    return this.#queue.length;
  }

  /** Queue `req` with a deadline `timeoutMs` from now; undefined when the queue is full. */
  submit(req: Req, timeoutMs: number, signal?: AbortSignal): Promise<Res> | undefined {
    if (this.#queue.length >= this.#o.maxQueue) return undefined;
    return new Promise<Res>((resolve) => {
      const item: BatchItem<Req, Res> = {
        req, wireId: String(++this.#seq), deadline: this.#o.clock.now() + timeoutMs, settled: false, resolve,
        timer: undefined, signal, onAbort: undefined,
      };
      item.timer = this.#o.clock.setTimeout(() => {
        item.timer = undefined;
        this.settle(item, this.#o.onDeadline(item));
      }, timeoutMs);
      if (signal !== undefined) {
        item.onAbort = () => this.settle(item, this.#o.onAbort(item));
        signal.addEventListener('abort', item.onAbort, { once: true });
      }
      this.#queue.push(item);
      this.#schedule();
    });
  }

  /** Answer an item, once; later answers are ignored. */
  settle(item: BatchItem<Req, Res>, res: Res): void {
    if (item.settled) return;
    item.settled = true;
    if (item.timer !== undefined) this.#o.clock.clearTimeout(item.timer);
    if (item.signal !== undefined && item.onAbort !== undefined) item.signal.removeEventListener('abort', item.onAbort);
    this.#o.onSettled?.(res);
    item.resolve(res);
  }

  /** Stop the batch timer and answer everything still queued with `answer`. */
  drain(answer: (item: BatchItem<Req, Res>) => Res): void {
    if (this.#flushTimer !== undefined) this.#o.clock.clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    if (this.#idleFlush !== undefined) clearImmediate(this.#idleFlush);
    this.#idleFlush = undefined;
    for (const item of this.#queue.splice(0)) this.settle(item, answer(item));
  }

  #schedule(): void {
    if (this.#queue.length >= this.#o.maxBatch) {
      this.#flush();
    } else if (this.#running === 0 && this.#o.flushWhenIdle !== false) {
      // setImmediate, not a clock timer: "the end of this turn" is not a duration to fake.
      this.#idleFlush ??= setImmediate(() => {
        this.#idleFlush = undefined;
        this.#flush();
      });
    } else if (this.#flushTimer === undefined) {
      this.#flushTimer = this.#o.clock.setTimeout(() => {
        this.#flushTimer = undefined;
        this.#flush();
      }, this.#o.maxWaitMs);
    }
  }

  #flush(): void {
    while (this.#running < this.#o.maxInFlight && this.#queue.length > 0) {
      const batch: BatchItem<Req, Res>[] = [];
      while (batch.length < this.#o.maxBatch && this.#queue.length > 0) {
        const item = this.#queue.shift() as BatchItem<Req, Res>;
        if (!item.settled) batch.push(item);
      }
      if (batch.length === 0) break;
      this.#running += 1;
      void this.#o.run(batch).finally(() => {
        this.#running -= 1;
        // A freed slot takes what queued meanwhile at once: it has already waited.
        if (this.#queue.length > 0) this.#flush();
      });
    }
  }
}
