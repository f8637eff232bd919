/**
 * A TCP pass-through in front of the backend (TLS passes through untouched) that can hold what
 * the gateway sends: while held, bytes towards the backend are queued, so requests made in that
 * time are provably in flight until `release()`. Lets a test put a SIGTERM exactly there.
 */
import net from 'node:net';

interface Pair {
  down: net.Socket;
  up: net.Socket;
  queue: Buffer[];
}

export class HoldProxy {
  #held = false;
  readonly #pairs = new Set<Pair>();
  readonly #server: net.Server;
  readonly #heldWaiters: (() => void)[] = [];
  /** Bytes towards the backend queued since `hold()`. */
  heldBytes = 0;

  /** `listenPort` 0 picks a free port; give one when the backend must know the proxy's origin in advance. */
  constructor(
    readonly target: { host: string; port: number },
    readonly listenPort = 0,
  ) {
    this.#server = net.createServer((down) => this.#accept(down));
  }

  /** The bound port (after `start()`). */
  get port(): number {
    const a = this.#server.address();
    return typeof a === 'object' && a !== null ? a.port : 0;
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.listenPort, '127.0.0.1', () => resolve());
    });
  }

  /** From now on, queue what the gateway sends. */
  hold(): void {
    this.#held = true;
    this.heldBytes = 0;
  }

  /** Resolves once at least one byte was held (a request is caught in flight); rejects after `timeoutMs`. */
  caughtSomething(timeoutMs: number): Promise<void> {
    if (this.heldBytes > 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no request towards the backend within ${timeoutMs} ms`)), timeoutMs);
      this.#heldWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Forward everything queued and pass through again. */
  release(): void {
    this.#held = false;
    for (const p of this.#pairs) {
      for (const b of p.queue) p.up.write(b);
      p.queue.length = 0;
    }
  }

  async close(): Promise<void> {
    for (const p of this.#pairs) {
      p.down.destroy();
      p.up.destroy();
    }
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(down: net.Socket): void {
    const up = net.connect(this.target);
    const pair: Pair = { down, up, queue: [] };
    this.#pairs.add(pair);
    down.on('data', (b: Buffer) => {
      if (!this.#held) {
        up.write(b);
        return;
      }
      pair.queue.push(b);
      this.heldBytes += b.length;
      for (const w of this.#heldWaiters.splice(0)) w();
    });
    up.on('data', (b: Buffer) => down.write(b));
    const end = (): void => {
      this.#pairs.delete(pair);
      down.destroy();
      up.destroy();
    };
    for (const s of [down, up]) {
      s.on('error', end);
      s.on('close', end);
    }
  }
}
